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
from pipeline.core.engine import Engine  # noqa: E402
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
    for topic, raw in tqdm(records, desc=name, file=sys.stderr, mininterval=1.0, leave=False):
        ev = decode_event(topic, raw, now_ms)
        decisions += len(eng.process(topic, ev))
    dt = time.perf_counter() - t0
    return {
        "events": len(records),
        "seconds": round(dt, 3),
        "events_per_s": round(len(records) / dt, 1),
        "decisions": decisions,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="baseline")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
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
