"""benchmarks/core_bench.py in smoke mode: both paths decide the same declarations and report rates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[3]


def test_core_bench_smoke() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "core_bench.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert res["events_per_s"] > 0 and res["baseline_events_per_s"] > 0
    assert res["core"]["decisions"] > 0
    # the same stream through both paths: the same declarations get decided (deadlines fire as in a worker)
    assert abs(res["core"]["decisions"] - res["naive"]["decisions"]) <= 0.05 * res["naive"]["decisions"]
