"""`python -m pipeline simulate`: record a scenario to files, or play it live onto Kafka.

    python -m pipeline simulate --scenario baseline --seed 1 --duration 1d --out events.jsonl
    python -m pipeline simulate --scenario drift --to-kafka --rate 500 --broker 127.0.0.1:9092

A recording is JSON lines ``{"topic", "key", "event"}`` (broken records as ``{"topic", "key", "raw_b64"}``);
the ground truth goes to ``<out>.truth.jsonl`` and the intelligence leads to ``<out>.intel.jsonl``, files the
pipeline never reads. The last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import orjson
from tqdm import tqdm

from pipeline.apps.sim.scenario import ScenarioError, load_scenario
from pipeline.apps.sim.world import DAY_MS, HOUR_MS, Simulator
from pipeline.contracts.settings import Settings

_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"duration {text!r}: use a number and a unit, e.g. 90s, 30m, 12h, 7d"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default="baseline", help="baseline, drift, border-surge, or a YAML file")
    p.add_argument("--seed", type=int, default=None, help="overrides the scenario's seed")
    p.add_argument(
        "--duration",
        type=parse_duration_ms,
        default=parse_duration_ms("1d"),
        help="simulated time, e.g. 12h, 7d (recording) or wall time to run (live)",
    )
    p.add_argument("--out", type=Path, help="write the recording here (JSON lines)")
    p.add_argument("--bad-events", type=int, default=None, help="broken records to inject")
    p.add_argument("--to-kafka", action="store_true", help="play live onto Kafka instead of recording")
    p.add_argument("--rate", type=float, default=200.0, help="live: events per second")
    p.add_argument("--broker", help="live: Kafka host:port (default: KAFKA_BROKER)")
    p.add_argument("--no-feedback", action="store_true", help="live: do not answer dispatch commands")


def run(args: argparse.Namespace) -> int:
    try:
        sc = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.bad_events is not None:
        from dataclasses import replace

        sc = replace(sc, bad_events=args.bad_events)
    if args.to_kafka:
        return _live(args, sc)
    if not args.out:
        print("error: give --out FILE to record, or --to-kafka to play live", file=sys.stderr)
        return 2
    for msg in sc.beyond(args.duration / DAY_MS):
        print(f"warning: {msg}", file=sys.stderr)
    summary = record(sc, args.seed, args.duration, args.out)
    print(orjson.dumps(summary).decode())
    return 0


def record(sc: Any, seed: int | None, duration_ms: int, out: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    sim = Simulator(sc, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    hours = max(1, duration_ms // HOUR_MS)
    bar = tqdm(total=hours, desc=f"simulate {sc.name}", unit="h", file=sys.stderr)
    last_hour = sim.start_ms
    with open(out, "wb") as fh:
        for topic, key, ev in sim.events(duration_ms):
            if topic.startswith("bad:"):
                raw = cast(bytes, ev)  # broken records are raw bytes, not events
                line = {"topic": topic[4:], "key": key, "raw_b64": base64.b64encode(raw).decode()}
                fh.write(orjson.dumps(line) + b"\n")
                continue
            fh.write(orjson.dumps({"topic": topic, "key": key, "event": ev}) + b"\n")
            step = (ev["ts_ms"] - last_hour) // HOUR_MS
            if step > 0:
                bar.update(min(step, hours - bar.n))
                last_hour += step * HOUR_MS
    bar.update(hours - bar.n)
    bar.close()
    truth_path = out.with_suffix(".truth.jsonl")
    with open(truth_path, "wb") as fh:
        for t in sim.truth_records():
            fh.write(orjson.dumps(t) + b"\n")
    with open(out.with_suffix(".intel.jsonl"), "wb") as fh:
        for x in sim.intel:
            fh.write(orjson.dumps(x) + b"\n")
    typ = Counter(t["typology"] for t in sim.truth_records())
    n_decl = sum(typ.values())
    return {
        "scenario": sc.name,
        "seed": sim.seed,
        "duration_ms": duration_ms,
        "events": sim.counts,
        "bad_injected": sim.bad_injected,
        "declarations": n_decl,
        "typologies": dict(sorted(typ.items())),
        "fraud_share": round((n_decl - typ.get("none", 0)) / n_decl, 4) if n_decl else 0.0,
        "out": str(out),
        "truth": str(truth_path),
        "seconds": round(time.monotonic() - t0, 2),
    }


def _live(args: argparse.Namespace, sc: Any) -> int:
    from pipeline.apps.sim.live import LiveSim

    broker = args.broker or Settings.from_env().kafka_broker
    if not broker:
        print("error: --to-kafka needs --broker host:port (or KAFKA_BROKER)", file=sys.stderr)
        return 2
    live = LiveSim(
        broker, sc, args.rate, seed=args.seed, bad_events=sc.bad_events, feedback=not args.no_feedback
    )
    duration_s = args.duration / 1000
    live.start(duration_s)
    try:
        with tqdm(
            total=int(duration_s), desc=f"live {sc.name} x{live.speed:.0f}", unit="s", file=sys.stderr
        ) as bar:
            t0 = time.monotonic()
            while time.monotonic() - t0 < duration_s and not live._done.is_set():
                time.sleep(1)
                bar.update(1)
    except KeyboardInterrupt:
        pass
    live.stop()
    print(orjson.dumps(live.summary()).decode())
    return 0
