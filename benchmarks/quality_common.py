"""What the quality benchmark's worlds and strategies share: the item a strategy decides, the world that
yields them, and small statistics. A module of its own so that benchmarks/quality.py, quality_sim.py and
quality_world.py import it and not each other (no import cycle)."""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

DAY_MS = 86_400_000
TARGET = 0.05
NEW_TYPOLOGY = "self_drive_shuttle"
# two-sided 95% Student t quantiles by degrees of freedom (1..30); above 30 the normal 1.96
_T975: tuple[float, ...] = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16)
_T975 += (2.14, 2.13, 2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05)
_T975 += (2.05, 2.04)


@dataclass(slots=True)
class Item:
    """One decided declaration with what the benchmark knows and the core must not see."""

    ts_ms: int
    decl: dict[str, Any]
    facts: dict[str, Any]
    hits: list[Any]
    violation: bool
    fraud_value: float
    typology: str  # "" when clean
    label_delay_ms: int


@dataclass
class World:
    items: list[Item]
    start_ms: int
    drift_day: int | None
    new_typology: str | None
    oracle_factory: Callable[[], Any] | None  # InspectionOracle per strategy; None: labels are the truth
    seed: int = 1
    budget: float = TARGET


def mean_ci(xs: Sequence[float], floor: float | None = None, ceil: float | None = None) -> dict[str, float]:
    """Mean and 95% interval (Student t) of per-seed figures; one figure gives a zero-width interval. The
    interval is clipped to [``floor``, ``ceil``] when given (a share cannot be below 0 or above 1)."""
    xs = [float(x) for x in xs]
    if not xs:
        return {"mean": 0.0, "lo": 0.0, "hi": 0.0, "n": 0}
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return {"mean": round(m, 4), "lo": round(m, 4), "hi": round(m, 4), "n": 1}
    t = _T975[len(xs) - 2] if len(xs) - 1 <= len(_T975) else 1.96
    half = t * statistics.stdev(xs) / math.sqrt(len(xs))
    lo, hi = m - half, m + half
    if floor is not None:
        lo = max(lo, floor)
    if ceil is not None:
        hi = min(hi, ceil)
    return {"mean": round(m, 4), "lo": round(lo, 4), "hi": round(hi, 4), "n": len(xs)}


# ---------------------------------------------------------------------------------- command-line input
def positive_int(text: str) -> int:
    """A command-line count: a whole number >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number >= 1")
    return n


def budget_list(text: str) -> str:
    """Comma-separated shares in (0, 1] (0.05, not 5%); checked here, parsed in main."""
    for x in text.split(","):
        try:
            ok = 0 < float(x) <= 1
        except ValueError:
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError(f"{x.strip()!r}: budgets are shares in (0, 1], e.g. 0.01,0.05")
    return text


def check_scenarios(names: Iterable[str]) -> None:
    """Every scenario loads, or one line naming its file:line and exit 2, before any work."""
    from pipeline.apps.sim.scenario import ScenarioError, load_scenario

    try:
        for name in names:
            load_scenario(name)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def warn_beyond(name: str, days: float) -> None:
    """A warning for each phase or surge of the scenario a run of ``days`` never reaches."""
    from pipeline.apps.sim.scenario import load_scenario

    for msg in load_scenario(name).beyond(days):
        print(f"warning: {msg}", file=sys.stderr)
