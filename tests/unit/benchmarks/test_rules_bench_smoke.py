"""benchmarks/rules_bench.py in smoke mode: 100 rules, fast path and CEL runtime agree on every hit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[3]


def test_rules_bench_smoke() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "rules_bench.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    res = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert res["rules"] == 100 and res["disagreements"] == 0
    assert res["fast_us_per_event"] > 0 and res["runtime_us_per_event"] > 0
