"""benchmarks/core_bench.py --worker in smoke mode: the worker's batch path with Redis, in process, reports
CPU and wall per record and the per-stage timings, and dispatches commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration


def test_core_bench_worker_smoke() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "core_bench.py"), "--worker", "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert res["records"] > 0 and res["cpu_us_per_record"] > 0 and res["wall_us_per_record"] > 0
    assert res["commands"] > 0
    stages = res["stage_us_per_record"]
    assert stages["decode"] > 0 and stages["join"] > 0 and stages["redis"] > 0
