"""benchmarks/e2e.py in its smoke mode: the benchmark runs end to end and reports sane figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.integration


def test_e2e_smoke_reports_latency_and_throughput_for_floor_and_bukong(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "e2e.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = orjson.loads(out.stdout.strip().splitlines()[-1])
    for name in ("floor", "bukong"):
        assert summary[f"{name}_p99_ms_at_200"] > 0
        assert summary[f"{name}_max_eps"] > 0
    doc = orjson.loads((tmp_path / "e2e-smoke.json").read_bytes())
    for name in ("floor", "bukong"):
        row = doc["results"][name]["rates"][0]
        assert row["samples"] > 0
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["achieved_eps"] > 100
    assert "| floor |" in out.stdout and "| bukong |" in out.stdout
