"""`python -m pipeline drill` / `make drill`: run the drills, print a table and, last, one JSON line.

    python -m pipeline drill                  # everything: ~15 minutes (the soak is 10 of them)
    python -m pipeline drill --quick          # small numbers, each drill in seconds (the tests run this)
    python -m pipeline drill --only a,c --fuzzed 5000
    python -m pipeline drill --soak-minutes 2 --kills 3

Drills: a fuzzed records, b kill -9, c Redis outage, d broker pause, e hostile rule packs, f API attacks,
g soak. Exit code 0 when every check passed, 1 otherwise. The stack (tansu, valkey, one worker) is the
drill's own: KAFKA_BROKER and REDIS_URL are ignored, since the drill must pause, kill and restart them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from pipeline.apps.drill.drills import DRILLS, Config, DrillResult

NAMES = {
    "a": "fuzz",
    "b": "kill -9",
    "c": "redis outage",
    "d": "broker pause",
    "e": "hostile packs",
    "f": "api attacks",
    "g": "soak",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small numbers: each drill takes seconds")
    p.add_argument("--only", default="", help="comma-separated drills to run, e.g. a,c (default: all a..g)")
    p.add_argument("--fuzzed", type=int, default=None, help="fuzzed records (default 100000, quick 2000)")
    p.add_argument("--kills", type=int, default=None, help="kill -9 of the worker (default 10, quick 2)")
    p.add_argument("--soak-minutes", type=float, default=None, help="soak length (default 10, quick 0.5)")
    p.add_argument("--streams", type=int, default=None, help="concurrent live streams (default 500)")
    p.add_argument("--redis-pause", type=float, default=None, help="seconds Redis is paused (default 30)")
    p.add_argument(
        "--broker-pause", type=float, default=None, help="seconds the broker is paused (default 20)"
    )
    p.add_argument("--partitions", type=int, default=None, help="input partitions (default 4, quick 2)")
    p.add_argument(
        "--retention-s",
        type=int,
        default=300,
        help="topic retention on the drill's broker (bounds its memory)",
    )
    p.add_argument(
        "--keep-logs", action="store_true", help="keep the worker logs even when every check passed"
    )
    p.add_argument("--report", type=Path, help="also write every drill's checks and figures here (JSON)")


def config_from(args: argparse.Namespace) -> Config:
    cfg = Config.quick_config() if args.quick else Config()
    for attr, value in (
        ("fuzzed", args.fuzzed),
        ("kills", args.kills),
        ("soak_minutes", args.soak_minutes),
        ("streams", args.streams),
        ("redis_pause_s", args.redis_pause),
        ("broker_pause_s", args.broker_pause),
    ):
        if value is not None:
            setattr(cfg, attr, value)
    return cfg


def summary(results: list[DrillResult], stack: Any, seconds: float) -> dict[str, Any]:
    by = {r.name: r.figures for r in results}
    a, b, c, d, e, f, g = (by.get(k, {}) for k in "abcdefg")
    recovered = [x["self_recovered"] for x in (c, d) if "self_recovered" in x]
    failed = [f"{r.name}: {what}" for r in results for what, ok, _ in r.checks if not ok]
    return {
        "passed": not failed,
        "drills": "".join(r.name for r in results),
        "fuzzed": a.get("fuzzed"),
        "dead_lettered": a.get("dead_lettered"),
        "good_decided": a.get("good_decided"),
        "good_sent": a.get("good_sent"),
        "kills": b.get("kills"),
        "lost": b.get("lost"),
        "doubled": stack.tracker.doubled() if stack is not None else None,
        "redis_outage_lost": c.get("redis_outage_lost"),
        "broker_outage_lost": d.get("broker_outage_lost"),
        "self_recovered": all(recovered) if recovered else None,
        "hostile_packs": e.get("hostile_packs"),
        "hostile_packs_rejected": e.get("hostile_packs_rejected"),
        "api_5xx": f.get("api_5xx"),
        "api_unexpected": len(f["api_unexpected"]) if "api_unexpected" in f else None,
        "soak_rss_growth_mb": g.get("soak_rss_growth_mb"),
        "soak_max_lag": g.get("soak_max_lag"),
        "worker_deaths": list(stack.worker_deaths) if stack is not None else [],
        "dead_letter_reasons": dict(stack.tracker.dead_reasons) if stack is not None else {},
        "failed_checks": failed,
        "duration_s": round(seconds, 1),
    }


def table(results: list[DrillResult]) -> str:
    rows = [("drill", "check", "result", "evidence")]
    for r in results:
        for what, ok, detail in r.checks:
            rows.append((f"{r.name} {NAMES[r.name]}", what, "pass" if ok else "FAIL", detail[:160]))
        rows.append((f"{r.name} {NAMES[r.name]}", f"({r.seconds:.0f} s)", "", ""))
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(f"{row[0]:<{w[0]}}  {row[1]:<{w[1]}}  {row[2]:<{w[2]}}  {row[3]}".rstrip())
        if i == 0:
            lines.append(f"{'-' * w[0]}  {'-' * w[1]}  {'-' * w[2]}  {'-' * 8}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipeline.apps.drill.harness import Stack
    from pipeline.contracts.settings import Settings

    cfg = config_from(args)
    only = [x.strip() for x in args.only.split(",") if x.strip()] or list(DRILLS)
    unknown = [x for x in only if x not in DRILLS]
    if unknown:
        print(f"error: unknown drill(s) {unknown}: choose from {','.join(DRILLS)}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    partitions = args.partitions or (2 if cfg.quick else settings.partitions)
    root = settings.data_dir / "drill"
    root.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))
    results: list[DrillResult] = []
    t0 = time.monotonic()
    stack = None
    bar = tqdm(
        total=len(only), desc="drills", unit="drill", file=sys.stderr, dynamic_ncols=True, mininterval=0.5
    )
    try:
        bar.set_postfix_str("starting tansu, valkey and a worker")
        stack = Stack(partitions, args.retention_s * 1000, log_dir)
        stack.start_worker()
        if not stack.wait_ready(120):
            print(f"error: the worker did not start; see {log_dir}/worker-0.log", file=sys.stderr)
            return 1
        for name in only:
            bar.set_description(f"drill {name} ({NAMES[name]})")

            def progress(msg: str) -> None:
                bar.set_postfix_str(msg, refresh=False)
                bar.update(0)

            t, load0 = time.monotonic(), os.getloadavg()[0]
            try:
                res = DRILLS[name](stack, cfg, progress)
            except Exception as exc:
                res = DrillResult(name, NAMES[name])
                res.check("the drill ran to the end", False, f"{type(exc).__name__}: {exc}")
            res.seconds = time.monotonic() - t
            res.figures["load_avg_1m"] = [round(load0, 1), round(os.getloadavg()[0], 1)]  # this machine's
            results.append(res)
            bar.update(1)
    finally:
        bar.close()
        out = summary(results, stack, time.monotonic() - t0)
        if stack is not None:
            stack.close()
    print(table(results), flush=True)
    for r in results:
        print(f"{r.name}: " + orjson.dumps(r.figures, default=str).decode(), flush=True)
    if out["passed"] and not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        print(f"worker logs: {log_dir}", file=sys.stderr)
    if args.report:
        detail = [
            {
                "name": r.name,
                "title": r.title,
                "passed": r.passed,
                "seconds": round(r.seconds, 1),
                "checks": [{"check": w, "ok": ok, "evidence": d} for w, ok, d in r.checks],
                "figures": r.figures,
            }
            for r in results
        ]
        args.report.write_bytes(orjson.dumps({"summary": out, "drills": detail}, default=str))
    print(orjson.dumps(out, default=str).decode(), flush=True)
    return 0 if out["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.apps.drill", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))
