"""A worker skips the read of a shared key it holds exactly as the group wrote it (agents/globalstate.py
``Held``), and decides as if it had read every key in full: two workers taking declarations of the same
enterprises and commodities in turns, in and out of event-time order, against a real Redis (valkey)."""

from __future__ import annotations

import asyncio
import copy
import random
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from agents.delivery import Record
from agents.globalstate import SharedFacts
from pipeline.core.assemble import build_joiner
from pipeline.io.embedded import EmbeddedServer

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000
MIN = 60_000


def _script(seed: int, n: int = 700) -> list[tuple[int, list[dict[str, Any]]]]:
    """Batches (worker, declarations) over ten days: mostly in event-time order, some late, some on the other
    worker; a few commodities, so that each median drops its oldest values, and now and then a new HS code."""
    rng = random.Random(seed)
    out: list[tuple[int, list[dict[str, Any]]]] = []
    ts, i, worker = T0, 0, 0
    while i < n:
        if rng.random() < 0.15:
            worker = 1 - worker
        batch = []
        for _ in range(rng.randint(1, 4)):
            ts += rng.randint(0, 40) * MIN
            late = rng.random() < 0.1
            batch.append(
                {
                    "decl_id": f"D{i:04d}",
                    "ts_ms": ts - (rng.randint(1, 2_000) * MIN if late else 0),
                    "enterprise_id": f"E{rng.randint(0, 3)}",
                    "hs_code": rng.choice(["2701", "2601", "7403"]) if rng.random() < 0.95 else f"9{i:03d}",
                    "origin": "MN",
                    "value_cny": float(rng.choice([20_000, 49_000, 120_000, 48_500])),
                    "unit_value": float(rng.randint(10, 90)),
                }
            )
            i += 1
        out.append((worker, batch))
    return out


async def _run(url: str, ns: str, script: list[Any], hold: bool) -> tuple[list[Any], list[SharedFacts]]:
    r: Any = aioredis.from_url(url)
    joiners = [build_joiner(), build_joiner()]
    shared = [SharedFacts(r, j, namespace=ns, hold=hold) for j in joiners]
    seen: list[Any] = []
    for worker, batch in script:
        j, s = joiners[worker], shared[worker]
        records = [Record("declarations", 0, 0, d["ts_ms"], b"k", orjson.dumps(d)) for d in batch]
        await s.prefetch(records)
        for d in batch:
            j.enterprise.take(d)
        for d in batch:  # decided after the batch took them in, as a weighbridge reading releases them
            facts: dict[str, Any] = {"unit_value": d["unit_value"]}
            j.enterprise.facts(d, facts)
            j.valuation.facts(d, facts)
            seen.append((d["decl_id"], sorted(facts.items())))
        pipe = r.pipeline(transaction=True)
        s.stage(pipe)
        await pipe.execute()
        if hold:
            await _holds_as_written(r, ns, s)
    await r.aclose()
    return seen, shared


async def _holds_as_written(r: Any, ns: str, s: SharedFacts) -> None:
    """Every key whose next read this worker would skip (the version it holds is the one Redis has): its
    state gives the facts the same worker would have after reading the key in full, for a declaration at the
    latest time it holds, and its median is the same values."""
    held = s.held
    keys = {k: (held.version[k], last) for k, last in held.last.items() if k in held.version}
    keys.update(held.pending)
    prefix = f"{ns}:g:"
    for key, (version, (ts, _)) in keys.items():
        kind, name = key[len(prefix) :].split(":", 1)
        at = r.hget(f"{prefix}hsfirst:{name}", "_v") if kind == "ent" else r.get(f"{prefix}medv:{name}")
        on_redis = await at
        if on_redis is None or on_redis.decode() != version:
            continue
        fresh = copy.deepcopy(s.joiner)  # the same worker, reading the key in full
        reader = SharedFacts(r, fresh, namespace=ns, hold=False)
        if kind == "ent":
            d = {"decl_id": "probe", "ts_ms": ts, "enterprise_id": name, "hs_code": "2701", "origin": "MN"}
            await reader.prefetch([Record("declarations", 0, 0, ts, b"k", orjson.dumps(d))])
            splits = s.joiner.enterprise.splits.items()
            codes = {hs for (ent, hs), _ in splits if ent == name} | {"2701", "2601"}
            for hs in sorted(codes):
                mine: dict[str, Any] = {}
                theirs: dict[str, Any] = {}
                s.joiner.enterprise.facts({**d, "hs_code": hs}, mine)
                fresh.enterprise.facts({**d, "hs_code": hs}, theirs)
                assert mine == theirs, f"{name} {hs}: held {mine}, written {theirs}"
        else:
            hs, origin = name.split("|")
            d = {"decl_id": "probe", "ts_ms": ts, "enterprise_id": "P", "hs_code": hs, "origin": origin}
            await reader.prefetch([Record("declarations", 0, 0, ts, b"k", orjson.dumps(d))])
            mine_m = s.joiner.valuation.medians.get((hs, origin))
            theirs_m = fresh.valuation.medians.get((hs, origin))
            assert mine_m is not None and theirs_m is not None
            assert list(mine_m.fifo) == list(theirs_m.fifo), f"median {name}: held and written differ"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_held_reads_decide_as_full_reads(valkey: EmbeddedServer, seed: int) -> None:
    url = f"redis://{valkey.address}/0"
    script = _script(seed)
    held, workers = asyncio.run(_run(url, f"held{seed}", script, hold=True))
    full, reference = asyncio.run(_run(url, f"full{seed}", script, hold=False))
    assert [h[0] for h in held] == [f[0] for f in full]
    diff = [(h, f) for h, f in zip(held, full, strict=True) if h != f]
    assert not diff, f"{len(diff)} declarations got other facts with held reads, e.g. {diff[0]}"
    skipped = sum(w.held.skipped for w in workers)
    assert skipped > 200, "a worker taking its keys in order skips their read"
    assert sum(w.held.full for w in workers) > 100, "the other worker's writes and late declarations are read"
    assert sum(w.held.skipped for w in reference) == 0


def test_a_key_written_by_another_worker_is_read_again(valkey: EmbeddedServer) -> None:
    async def body() -> None:
        url = f"redis://{valkey.address}/0"
        r: Any = aioredis.from_url(url)
        a, b = build_joiner(), build_joiner()
        sa, sb = SharedFacts(r, a, namespace="w2"), SharedFacts(r, b, namespace="w2")

        def decl(i: int, ts: int) -> dict[str, Any]:
            return {
                "decl_id": f"D{i}",
                "ts_ms": ts,
                "enterprise_id": "E1",
                "hs_code": "2701",
                "origin": "MN",
                "value_cny": 1_000.0,
            }

        async def batch(s: SharedFacts, j: Any, d: dict[str, Any]) -> int:
            await s.prefetch([Record("declarations", 0, 0, d["ts_ms"], b"k", orjson.dumps(d))])
            j.enterprise.take(d)
            pipe = r.pipeline(transaction=True)
            s.stage(pipe)
            await pipe.execute()
            facts: dict[str, Any] = {}
            j.enterprise.facts(d, facts)
            return int(facts["ent_decl_24h"])

        assert await batch(sa, a, decl(0, T0)) == 1
        assert await batch(sa, a, decl(1, T0 + MIN)) == 2  # read in full: its own first write is not held yet
        assert await batch(sa, a, decl(2, T0 + 2 * MIN)) == 3
        skipped = sa.held.skipped
        assert skipped >= 1, "its own in-order writes: held"
        assert await batch(sb, b, decl(3, T0 + 3 * MIN)) == 4  # the other worker reads what A wrote
        assert await batch(sa, a, decl(4, T0 + 4 * MIN)) == 5  # A reads B's write in full
        assert sa.held.skipped == skipped
        assert await batch(sa, a, decl(5, T0 + 5 * MIN)) == 6
        assert sa.held.skipped > skipped, "held again once its own write followed its read"

        # B writes between A's read and A's save: A's save cannot leave a version A holds
        d6, d7 = decl(6, T0 + 6 * MIN), decl(7, T0 + 7 * MIN)
        await sa.prefetch([Record("declarations", 0, 0, d6["ts_ms"], b"k", orjson.dumps(d6))])
        assert await batch(sb, b, d7) == 7  # D6 is not saved yet
        a.enterprise.take(d6)
        pipe = r.pipeline(transaction=True)
        sa.stage(pipe)
        await pipe.execute()
        assert await batch(sa, a, decl(8, T0 + 8 * MIN)) == 9, "A reads again and counts B's declaration"

        # A reads (B wrote in between: in full) after its engine took a declaration in and before staging it:
        # the load replaced what A took, so A does not hold the key after its write
        assert await batch(sb, b, decl(9, T0 + 9 * MIN)) == 10
        d10 = decl(10, T0 + 10 * MIN)
        a.enterprise.take(d10)
        await sa.prefetch([Record("declarations", 0, 0, d10["ts_ms"], b"k", orjson.dumps(d10))])
        pipe = r.pipeline(transaction=True)
        sa.stage(pipe)
        await pipe.execute()
        assert await batch(sa, a, decl(11, T0 + 11 * MIN)) == 12
        await r.aclose()

    asyncio.run(body())
