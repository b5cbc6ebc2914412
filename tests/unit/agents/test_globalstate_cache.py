"""The read-through cache of the consumer group's shared state (agents/globalstate.py), on a real Redis.

A second read of keys nobody changed transfers nothing (Redis answers 0 for them); a write by another worker
is seen on the next read; and with the cache or without it, workers decide exactly alike.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from agents.delivery import Record
from agents.globalstate import SharedFacts
from pipeline.core.assemble import build_engine
from pipeline.core.engine import Engine
from pipeline.io.embedded import EmbeddedServer, start_valkey
from tests.conftest import declaration

T0 = 1_790_000_000_000
HOUR = 3_600_000


@pytest.fixture(scope="module")
def valkey() -> Iterator[EmbeddedServer]:
    srv = start_valkey()
    try:
        yield srv
    finally:
        srv.stop()


class Spy:
    """The Redis client, keeping every script reply (the shared-state reads)."""

    def __init__(self, r: Any) -> None:
        self.r = r
        self.replies: list[Any] = []

    async def eval(self, *args: Any) -> Any:
        out = await self.r.eval(*args)
        self.replies.append(out)
        return out

    def pipeline(self, *args: Any, **kw: Any) -> Any:
        return self.r.pipeline(*args, **kw)


class Worker:
    def __init__(self, r: Any, ns: str, cache_keys: int = 50_000) -> None:
        self.engine: Engine = build_engine()
        self.redis = Spy(r)
        self.shared = SharedFacts(self.redis, self.engine.joiner, namespace=ns, cache_keys=cache_keys)

    async def decide(self, decl: dict[str, Any]) -> dict[str, Any]:
        """One batch of one declaration: read, decide, save (as the runtime does); the decision's facts."""
        rec = Record("declarations", 0, 0, decl["ts_ms"], decl["conveyance_id"].encode(), orjson.dumps(decl))
        await self.shared.prefetch([rec])
        out = self.engine.process("declarations", decl)
        pipe = self.redis.pipeline(transaction=True)
        self.shared.stage(pipe)
        await pipe.execute()
        assert len(out) == 1
        return dict(out[0].facts)


def _decl(i: int, ts: int, ent: str = "E-C1", **over: Any) -> dict[str, Any]:
    return declaration(f"c{i}", f"P{i}", ts_ms=ts, enterprise_id=ent, mode="self_drive", **over)


def test_unchanged_keys_come_back_empty_and_another_workers_write_is_seen(valkey: EmbeddedServer) -> None:
    url = f"redis://127.0.0.1:{valkey.port}/0"

    async def main() -> None:
        r = aioredis.from_url(url)
        a, b = Worker(r, "cache1"), Worker(r, "cache1")
        f1 = await a.decide(_decl(1, T0))
        assert f1["ent_decl_1h"] == 1
        assert (a.shared.cache_hits, a.shared.cache_misses) == (0, 2)  # enterprise and median: new keys

        # the same keys again, written only by this worker since: Redis sends nothing of them
        f2 = await a.decide(_decl(2, T0 + 60_000))
        assert f2["ent_decl_1h"] == 2 and f2["hs_median_n"] == 1
        assert (a.shared.cache_hits, a.shared.cache_misses) == (2, 2)
        ent_doc, med_doc = orjson.loads(a.redis.replies[-1])[:2]
        assert (ent_doc, med_doc) == (0, 0)
        assert b"D-c1-P1" not in a.redis.replies[-1]

        # another worker adds to the enterprise and the median: the next read of the first sends them whole
        fb = await b.decide(_decl(3, T0 + 120_000))
        assert fb["ent_decl_1h"] == 3 and fb["hs_median_n"] == 2
        f4 = await a.decide(_decl(4, T0 + 180_000))
        assert f4["ent_decl_1h"] == 4 and f4["hs_median_n"] == 3
        assert (a.shared.cache_hits, a.shared.cache_misses) == (2, 4)
        assert b"D-c3-P3" in a.redis.replies[-1]

        # and once read, unchanged again
        await a.decide(_decl(5, T0 + 240_000))
        assert (a.shared.cache_hits, a.shared.cache_misses) == (4, 4)
        await r.aclose()

    asyncio.run(main())


def test_the_cache_is_bounded(valkey: EmbeddedServer) -> None:
    url = f"redis://127.0.0.1:{valkey.port}/0"

    async def main() -> None:
        r = aioredis.from_url(url)
        w = Worker(r, "cache2", cache_keys=3)
        for i in range(6):
            await w.decide(_decl(i, T0 + i * 60_000, ent=f"E-B{i}", hs_code=f"27011{i}"))
            await w.decide(_decl(10 + i, T0 + i * 60_000 + 1, ent=f"E-B{i}", hs_code=f"27011{i}"))
        assert len(w.shared._cache) == 3
        await r.aclose()

    asyncio.run(main())


def test_workers_decide_alike_with_and_without_the_cache(valkey: EmbeddedServer) -> None:
    """Two workers taking declarations in turn at random, out of time order within the hour, over 10 days (the
    7-day trim), 160 unit values of one HS code and origin (the median keeps 101): the same facts with the
    cache as reading everything each time."""
    url = f"redis://127.0.0.1:{valkey.port}/0"
    rng = random.Random(7)
    decls = []
    for i in range(240):
        ts = T0 + i * HOUR + rng.randrange(-HOUR // 2, HOUR // 2)
        hs = rng.choice(["270112", "270112", "260300"])
        value = rng.choice([17_000.0, 9_000.0, 45_500.5, 1_200.0])
        decls.append(_decl(i, ts, ent=rng.choice(["E-A", "E-B", "E-C"]), hs_code=hs, value_cny=value))
    turns = [rng.randrange(2) for _ in decls]

    async def run(ns: str, cache_keys: int) -> tuple[list[dict[str, Any]], int]:
        r = aioredis.from_url(url)
        workers = [Worker(r, ns, cache_keys), Worker(r, ns, cache_keys)]
        facts = [await workers[t].decide(d) for t, d in zip(turns, decls, strict=True)]
        await r.aclose()
        return facts, sum(w.shared.cache_hits for w in workers)

    cached, hits = asyncio.run(run("cache3", 50_000))
    uncached, no_hits = asyncio.run(run("cache4", 0))
    assert no_hits == 0 and hits > 100
    assert cached == uncached
