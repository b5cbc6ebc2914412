"""What a batch's declarations add to the consumer group's shared enterprise state (one script per batch):
every member with its event time as score, members older than the 7-day horizon trimmed, the first time each
HS code was seen kept at its minimum across batches, every key expiring; and a worker reads it back."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from agents.delivery import Record
from agents.globalstate import HORIZON_MS, SharedFacts
from features.enterprise import Member
from pipeline.core.assemble import build_joiner
from pipeline.io.embedded import EmbeddedServer

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000
DAY = 86_400_000


class _Joiner:
    """Hands the members of one batch to ``stage`` as the feature engine would."""

    def __init__(self) -> None:
        self.members: list[Member] = []
        engine = build_joiner()
        self.enterprise, self.valuation = engine.enterprise, engine.valuation

    def share(self) -> None:
        return None

    def drain_shared(self) -> tuple[list[Member], list[Any], list[Any]]:
        out, self.members = self.members, []
        return out, [], []


async def _stage(r: Any, shared: SharedFacts, joiner: _Joiner, members: list[Member]) -> None:
    joiner.members = members
    pipe = r.pipeline(transaction=True)
    shared.stage(pipe)
    await pipe.execute()


def test_a_batch_of_members_lands_trimmed_with_first_seen_minimums(valkey: EmbeddedServer) -> None:
    async def body() -> None:
        r: Any = aioredis.from_url(f"redis://{valkey.address}/0")
        await r.flushall()
        joiner = _Joiner()
        shared = SharedFacts(r, joiner, namespace="t")
        old = ("E1", T0 - 8 * DAY, "D-old", 10.0, "2701")
        many = [("E2", T0 + i, f"D2-{i}", float(i), "7208") for i in range(2_500)]  # one enterprise, a lot
        await _stage(
            r, shared, joiner, [old, ("E1", T0, "D1", 100.0, "2701"), ("E1", T0 - DAY, "D0", 5.0, "9999")]
        )
        await _stage(
            r,
            shared,
            joiner,
            [("E1", T0 + DAY, "D3", 1.0, "2701"), ("E1", T0 - 2 * DAY, "D4", 2.0, "2701"), *many],
        )
        rows = await r.zrange("t:g:ent:E1", 0, -1, withscores=True)
        assert [(orjson.loads(m), int(s)) for m, s in rows] == [
            ([T0 - 2 * DAY, "D4", 2.0, "2701"], T0 - 2 * DAY),
            ([T0 - DAY, "D0", 5.0, "9999"], T0 - DAY),
            ([T0, "D1", 100.0, "2701"], T0),
            ([T0 + DAY, "D3", 1.0, "2701"], T0 + DAY),
        ]  # D-old: more than the horizon before the batch's latest
        assert T0 - 8 * DAY < T0 - HORIZON_MS
        first = {k.decode(): int(v) for k, v in (await r.hgetall("t:g:hsfirst:E1")).items()}
        assert first.pop("_v") < 0, "written by a worker that did not hold E1: a version no worker holds"
        assert first == {"2701": T0 - 8 * DAY, "9999": T0 - DAY, "_since": T0 - 8 * DAY}
        assert await r.zcard("t:g:ent:E2") == 2_500
        for key in ("t:g:ent:E1", "t:g:hsfirst:E1", "t:g:ent:E2", "t:g:hsfirst:E2"):
            assert 0 < await r.ttl(key) <= shared.ttl_s

        # another worker reads it back: E1's declarations count in its velocity
        reader_joiner = build_joiner()
        reader = SharedFacts(r, reader_joiner, namespace="t")
        decl = {"decl_id": "D9", "ts_ms": T0 + DAY, "enterprise_id": "E1", "hs_code": "2701", "origin": "MN"}
        await reader.prefetch([Record("declarations", 0, 0, 0, b"x", orjson.dumps(decl))])
        facts: dict[str, Any] = {}
        reader_joiner.enterprise.facts({**decl, "value_cny": 1.0}, facts)
        assert facts["ent_decl_7d"] == 4
        await r.aclose()

    asyncio.run(body())
