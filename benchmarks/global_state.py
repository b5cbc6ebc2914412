"""The cost of the enterprise and commodity state shared through Redis (agents/globalstate.py), per event.

In one run, on the embedded Redis (valkey), the same simulated stream (baseline scenario, seeded) in batches
of ``--batch`` records through production engines (pipeline.core.assemble):

* ``local``   — one worker, cross-conveyance state in its own memory (before the state was shared); each batch
  saved as the runtime saves it (changelog and applied offsets, one MULTI/EXEC);
* ``shared1`` — one worker with the shared state: per batch, one pipelined read before, the updates in the
  same MULTI/EXEC after, and one more read when a deadline is due;
* ``shared4`` — four workers (the batch split by the partition of its key), each reading and writing its part.

The figure is the added time per event against ``local`` in the same run, and the ratio of rates (each arm
run ``--repeat`` times, interleaved, the best kept).

    .venv/bin/python benchmarks/global_state.py            # 12 simulated hours (~130k events)
    .venv/bin/python benchmarks/global_state.py --smoke    # a few seconds

The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import redis.asyncio as aioredis  # noqa: E402

from agents.changelog import RedisChangelog, kafka_partition  # noqa: E402
from agents.delivery import Record  # noqa: E402
from agents.globalstate import SharedFacts  # noqa: E402
from pipeline.apps.sim.scenario import load_scenario  # noqa: E402
from pipeline.apps.sim.world import Simulator  # noqa: E402
from pipeline.core.assemble import build_engine  # noqa: E402
from pipeline.io.embedded import start_valkey  # noqa: E402

HOUR_MS = 3_600_000


def _records(hours: float) -> list[Record]:
    sim = Simulator(load_scenario("baseline"), seed=1)
    out = []
    for i, (topic, key, ev) in enumerate(sim.events(int(hours * HOUR_MS))):
        if topic.startswith("bad:"):
            continue
        k = key.encode() if isinstance(key, str) else key
        out.append(Record(topic, 0, i, ev["ts_ms"], k, orjson.dumps(ev)))
    return out


async def _run(url: str, ns: str, records: list[Record], batch: int, workers: int, share: bool) -> float:
    """Batches through ``workers`` engines, each batch saved like the runtime saves it: the changelog
    (changed conveyances, applied offsets) in one MULTI/EXEC, the shared state's updates in the same one."""
    r = aioredis.from_url(url)
    engines = [build_engine() for _ in range(workers)]
    logs = [RedisChangelog(r, 12, namespace=ns) for _ in engines]
    shared = [SharedFacts(r, e.joiner, namespace=ns, group=e) if share else None for e in engines]
    for log, sf in zip(logs, shared, strict=True):
        log.shared = sf
    owner = [kafka_partition(rec.key, 12) % workers if rec.key else 0 for rec in records]  # before timing
    t0 = time.perf_counter()
    for i in range(0, len(records), batch):
        parts: list[list[Record]] = [[] for _ in range(workers)]
        for j in range(i, min(i + batch, len(records))):
            parts[owner[j]].append(records[j])
        for engine, log, sf, part in zip(engines, logs, shared, parts, strict=True):
            if sf is not None:
                await sf.prefetch(part)
            wm = 0
            for rec in part:
                ev = orjson.loads(rec.value or b"{}")
                wm = max(wm, ev["ts_ms"])
                engine.process(rec.topic, ev)
            if wm:
                if sf is not None:
                    await sf.prefetch((), wm)
                engine.advance(wm)
            pipe = r.pipeline(transaction=True)
            dirty = engine.joiner.drain_dirty()  # type: ignore[attr-defined]
            log.stage(pipe, dirty, {f"in:{i}": i}, lambda key: 0)
            await pipe.execute()
    elapsed = time.perf_counter() - t0
    await r.aclose()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=12.0)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    hours = 2.0 if args.smoke else args.hours
    if args.smoke:
        args.repeat = 1
    records = _records(hours)
    n = len(records)
    srv = start_valkey()
    try:
        url = f"redis://127.0.0.1:{srv.port}/0"
        res: dict[str, Any] = {"events": n, "batch": args.batch}
        arms = {"local": (1, False), "shared1": (1, True), "shared4": (4, True)}
        for k in range(args.repeat):  # interleaved; the best of each arm (the least disturbed by neighbours)
            for arm, (workers, share) in arms.items():
                s = asyncio.run(_run(url, f"b{k}{arm}", records, args.batch, workers, share))
                res[f"{arm}_s"] = min(s, res.get(f"{arm}_s", s))
    finally:
        srv.stop()
    for arm in ("shared1", "shared4"):
        res[f"{arm}_added_us_per_event"] = round((res[f"{arm}_s"] - res["local_s"]) / n * 1e6, 2)
        res[f"{arm}_rate_ratio"] = round(res["local_s"] / res[f"{arm}_s"], 3)
    print("| arm | seconds | events/s | added µs/event | rate vs local |")
    print("|---|---|---|---|---|")
    print(f"| local | {res['local_s']:.2f} | {n / res['local_s']:,.0f} | | 1.000 |")
    for arm in ("shared1", "shared4"):
        s, added, ratio = res[f"{arm}_s"], res[f"{arm}_added_us_per_event"], res[f"{arm}_rate_ratio"]
        print(f"| {arm} | {s:.2f} | {n / s:,.0f} | {added} | {ratio} |")
    print(orjson.dumps(res).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
