"""The pure core must run without faust, redis or prometheus_client (replay, backtest, benchmarks)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE_MODULES = [
    "pipeline.core.engine",
    "pipeline.contracts.events",
    "pipeline.io.codec",
    "pipeline.contracts.commands",
    "features.engine",
    "rules.engine",
    "pipeline.core.model",
    "pipeline.core.policy",
    "pipeline.apps.sim.world",
    "features",
    "rules",
]
FORBIDDEN = ("faust", "redis", "prometheus_client", "aiokafka", "kafka")


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_no_io_framework(module: str) -> None:
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}); print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulled in {out.stdout.strip()}"
