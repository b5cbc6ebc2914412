"""The pure core in-process: events/s on one core, against a naive implementation in the same run.

Both paths see the same recorded simulator stream (a realistic mix: GPS points ~100x declarations, logistics,
declarations) and decode it from JSON bytes like the worker does:

* ``core``  — the shipped path: contracts validation, features.engine.FeatureEngine (join + every feature),
  the starter rule pack (CEL), the river model and the decision policy (pipeline.core.engine.Engine).
* ``naive`` — the obvious implementation: every event appended to per-key lists, and every declaration's
  features recomputed by scanning those lists (no incremental state), then the same rules, model and policy.

    .venv/bin/python benchmarks/core_bench.py            # 1 simulated day (~330k events)
    .venv/bin/python benchmarks/core_bench.py --smoke    # a few seconds

The last stdout line is JSON with ``events_per_s`` and ``baseline_events_per_s``.

``--worker`` measures the worker's batch path instead, in process: ``agents.runtime.Runtime`` with the
production engine, the changelog and the shared state on an embedded valkey, fed the generator's mix (the e2e
benchmark's input) in batches grouped by topic-partition as the consumer delivers them, the producer stubbed
(every record acknowledged at once): no broker, no Faust, no other process but Redis. It prints CPU and wall
microseconds per record and the per-stage timings (the worker's own ``bukong_stage_seconds``), with the
worker's garbage collector (``GC_THRESHOLDS``, and agents/collector.py freezing what is alive after every
batch since 2026-12-01; ``--python-gc`` for Python's default, as the figures before 2026-12-01 were: its
full collections also walked the 120,000 records generated up front). Compare two trees
by alternating runs, CPU per record first (the machine is shared):

    .venv/bin/python benchmarks/core_bench.py --worker --records 100000 --batch 2000
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from pipeline.core.assemble import build_engine, build_joiner

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from features.engine import Ready  # noqa: E402
from features.geometry import distance_to_polyline_km, haversine_km  # noqa: E402
from features.schema import declaration_facts  # noqa: E402
from pipeline.apps.sim.scenario import load_scenario  # noqa: E402
from pipeline.apps.sim.world import Simulator  # noqa: E402
from pipeline.contracts import sites  # noqa: E402
from pipeline.core.engine import Engine, ReplayClock  # noqa: E402
from pipeline.io.codec import decode_event  # noqa: E402

CROSSINGS = tuple(sites.CROSSINGS.values())
CORRIDORS = tuple(sites.CORRIDORS.values())
HOUR = 3_600_000
DAY = 24 * HOUR


class NaiveJoin:
    """Keeps every event in lists per key and recomputes the features of a declaration by scanning them."""

    def __init__(self) -> None:
        self.by_conv: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        self.by_ent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.by_hs: dict[str, list[float]] = defaultdict(list)

    def on_event(self, topic: str, ev: dict[str, Any]) -> list[Ready]:
        key = ev.get("conveyance_id", "")
        self.by_conv[key].append((topic, ev))
        if topic != "declarations":
            return []
        ts = ev["ts_ms"]
        facts = declaration_facts(ev)
        weighs = [
            e
            for t, e in self.by_conv[key]
            if t == "logistics" and e["kind"] == "weighbridge" and abs(e["ts_ms"] - ts) <= 8 * HOUR
        ]
        if weighs:
            w = float(weighs[-1]["measured_gross_kg"])
            facts.update(
                weigh_present=True, weigh_gross_kg=w, weigh_excess_ratio=w / float(ev["gross_kg"]) - 1
            )
        pts = sorted(
            (
                (e["ts_ms"], e)
                for t, e in self.by_conv[key]
                if t == "tracks" and ts - 8 * HOUR <= e["ts_ms"] <= ts
            ),
            key=lambda p: p[0],
        )
        if pts:  # the whole track statistics, recomputed from every point
            facts["track_present"] = True
            facts["gps_gap_max_s"] = max((b[0] - a[0] for a, b in pairwise(pts)), default=0) / 1000
            facts["border_dwell_s"] = sum(
                (b[0] - a[0]) / 1000
                for a, b in pairwise(pts)
                if b[1]["speed_kmh"] < 5
                and min(haversine_km((b[1]["lat"], b[1]["lon"]), x) for x in CROSSINGS) < 5
            )
            facts["corridor_dev_km"] = max(
                min(distance_to_polyline_km((e["lat"], e["lon"]), line) for line in CORRIDORS) for _, e in pts
            )
        ent = self.by_ent[ev["enterprise_id"]]
        ent.append(ev)
        facts["ent_decl_24h"] = sum(1 for e in ent if ts - DAY < e["ts_ms"] <= ts)
        facts["ent_decl_7d"] = sum(1 for e in ent if ts - 7 * DAY < e["ts_ms"] <= ts)
        hist = self.by_hs[ev["hs_code"]]
        if hist:
            med = sorted(hist)[len(hist) // 2]
            facts["hs_median_unit_value"] = med
            facts["unit_value_ratio"] = float(facts["unit_value"]) / med if med else 1.0  # type: ignore[arg-type]
        hist.append(float(facts["unit_value"]))  # type: ignore[arg-type]
        return [Ready(ev, facts, [], topic, ts)]

    def advance(self, watermark_ms: int) -> list[Ready]:
        return []


def engine(joiner: Any) -> Engine:
    return build_engine(joiner=joiner)


def run(name: str, eng: Engine, records: list[tuple[str, bytes]], now_ms: int) -> dict[str, Any]:
    gc.collect()
    decisions = 0
    t0 = time.perf_counter()
    decoded = (
        (topic, decode_event(topic, raw, now_ms))
        for topic, raw in tqdm(records, desc=name, file=sys.stderr, mininterval=1.0, leave=False)
    )
    clock = ReplayClock(decoded)
    for topic, ev, tick in clock:  # deadlines, as a worker's timer fires them
        decisions += len(eng.process(topic, ev))
        if tick is not None:
            decisions += len(eng.advance(tick))
    decisions += len(eng.advance(clock.latest + DAY))  # the declarations still waiting at the end
    dt = time.perf_counter() - t0
    return {
        "events": len(records),
        "seconds": round(dt, 3),
        "events_per_s": round(len(records) / dt, 1),
        "decisions": decisions,
    }


def worker_batches(n: int, batch: int, partitions: int, seed: int = 7) -> list[list[Any]]:
    """The generator's mix as the fast path hands it over: ``batch`` records at a time, grouped by
    topic-partition (keyed like the producer's partitioner), offsets counted per topic-partition."""
    from agents.changelog import kafka_partition
    from agents.runtime import Record
    from pipeline.apps.generator import Generator, GeneratorConfig

    base = int(time.time() * 1000) - n
    offsets: dict[tuple[str, int], int] = {}
    out: list[list[Any]] = []
    chunk: list[tuple[str, bytes, bytes]] = []
    for topic, key, value, _ in Generator(GeneratorConfig(seed=seed)).stream(iter(range(base, 10**15))):
        chunk.append((topic, key, value))
        if len(chunk) < batch:
            continue
        by_tp: dict[tuple[str, int], list[Any]] = {}
        for t, k, v in chunk:
            tp = (t, kafka_partition(k, partitions))
            offsets[tp] = offsets.get(tp, -1) + 1
            by_tp.setdefault(tp, []).append(Record(t, tp[1], offsets[tp], base, k, v))
        out.append([rec for recs in by_tp.values() for rec in recs])
        chunk = []
        if len(out) * batch >= n:
            return out
    return out


async def _worker_run(
    warm: int, n: int, batch: int, partitions: int = 6, python_gc: bool = False
) -> dict[str, Any]:
    import asyncio
    import tempfile

    from prometheus_client import CollectorRegistry

    from agents.changelog import RedisChangelog
    from agents.collector import Collector
    from agents.globalstate import SharedFacts
    from agents.redisclient import redis_client
    from agents.runtime import GC_THRESHOLDS, Runtime
    from agents.stages import STAGES
    from pipeline.contracts.settings import Settings
    from pipeline.io.embedded import start_valkey
    from pipeline.io.metrics import Metrics

    class Acked:
        def __init__(self, partition: int, offset: int) -> None:
            self.partition, self.offset = partition, offset

    loop = asyncio.get_running_loop()
    sent: dict[int, int] = {}

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None) -> Any:
        p = partition or 0
        sent[p] = sent.get(p, -1) + 1
        fut = loop.create_future()
        fut.set_result(Acked(p, sent[p]))
        return fut

    batches = worker_batches(warm + n, batch, partitions)
    if not python_gc:  # the worker's collector (run_worker), not Python's default
        gc.set_threshold(*GC_THRESHOLDS)
    server = start_valkey()
    r = redis_client(f"redis://127.0.0.1:{server.port}")  # the worker's client
    try:
        metrics = Metrics.create(CollectorRegistry())
        settings = Settings.from_env()
        eng = build_engine(settings, Path(tempfile.mkdtemp()) / "model.ckpt")
        rt = Runtime(engine=eng, redis=r, send=send, metrics=metrics, dispatch_partitions=partitions)
        rt.changelog = RedisChangelog(r, partitions, namespace="bench")
        rt.changelog.shared = SharedFacts(r, eng.joiner, namespace="bench")
        # the worker's collector (agents/collector.py): it freezes what is alive each tick, ten times a second
        # there, after every batch here
        collector = Collector(metrics, 0 if python_gc else settings.gc_full_every_s)
        collector.start()
        k = max(1, warm // batch)
        for b in batches[:k]:
            await rt.process(b, time.monotonic())
            collector.tick()

        def spent() -> dict[str, float]:
            return {st: metrics.stage_seconds.labels(st)._sum.get() for st in STAGES}

        s0, c0, w0 = spent(), time.process_time(), time.perf_counter()
        for b in batches[k:]:
            await rt.process(b, time.monotonic())
            collector.tick()
        c1, w1, s1 = time.process_time(), time.perf_counter(), spent()
        collector.stop()
    finally:
        await r.aclose()
        server.stop()
    records = sum(len(b) for b in batches[k:])
    return {
        "records": records,
        "batch": batch,
        "commands": rt.stats.commands,
        "cpu_us_per_record": round((c1 - c0) / records * 1e6, 2),
        "wall_us_per_record": round((w1 - w0) / records * 1e6, 2),
        "stage_us_per_record": {st: round((s1[st] - s0[st]) / records * 1e6, 2) for st in STAGES},
    }


def worker_main(args: argparse.Namespace) -> int:
    import asyncio

    n = 6_000 if args.smoke else args.records
    res = asyncio.run(_worker_run(min(n // 3, 20_000), n, min(args.batch, n), python_gc=args.python_gc))
    print(
        "| records | batch | CPU us/record | wall us/record | "
        + " | ".join(res["stage_us_per_record"])
        + " |"
    )
    print("|---" * (4 + len(res["stage_us_per_record"])) + "|")
    stages = " | ".join(str(v) for v in res["stage_us_per_record"].values())
    print(
        f"| {res['records']} | {res['batch']} | {res['cpu_us_per_record']} | {res['wall_us_per_record']} | "
        f"{stages} |"
    )
    print(orjson.dumps(res).decode())
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="baseline")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--worker", action="store_true", help="the worker's batch path with Redis, in process")
    ap.add_argument("--records", type=int, default=100_000, help="--worker: records timed")
    ap.add_argument("--batch", type=int, default=2_000, help="--worker: records per batch")
    ap.add_argument(
        "--python-gc",
        action="store_true",
        help="--worker: Python's default GC thresholds, not the worker's (the figures before 2026-12-01)",
    )
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args)
    hours = 2.0 if args.smoke else args.hours
    sim = Simulator(load_scenario(args.scenario))
    records = [(t, orjson.dumps(e)) for t, _, e in sim.events(int(hours * HOUR))]
    now_ms = sim.start_ms + int(hours * HOUR)
    core = run("core", engine(build_joiner()), records, now_ms)
    naive = run("naive", engine(NaiveJoin()), records, now_ms)
    out = {
        "events": len(records),
        "declarations": sim.counts.get("declarations", 0),
        "events_per_s": core["events_per_s"],
        "baseline_events_per_s": naive["events_per_s"],
        "speedup": round(core["events_per_s"] / naive["events_per_s"], 2),
        "core": core,
        "naive": naive,
    }
    print("| path | events | seconds | events/s | decisions |\n|---|---|---|---|---|")
    for name in ("core", "naive"):
        r = out[name]
        print(f"| {name} | {r['events']} | {r['seconds']} | {r['events_per_s']:.0f} | {r['decisions']} |")
    print(orjson.dumps(out).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
