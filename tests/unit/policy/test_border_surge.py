"""The budget controller on the border-surge scenario: Erenhot's truck traffic triples for 12 hours on day 2,
and the share of its declarations sent to inspection stays near the 5% target (the threshold rises instead of
the load), through the shipped feature engine, starter rule pack, river model and policy."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.quality import Item, Strategy, by_day
from benchmarks.quality_sim import sim_items
from pipeline.core.policy import INSPECTION_LANES

DAY_MS = 86_400_000
SURGE = (1.25, 1.75)  # pipeline/apps/sim/scenarios/border-surge.yaml: EHT x3 from day 1.25 to 1.75


class Recording(Strategy):
    def __init__(self) -> None:
        super().__init__("hybrid", use_rules=True, use_model=True, random_share=0.1, seed=11)
        self.seen: Counter[tuple[str, str]] = Counter()  # (period, port) -> declarations
        self.inspected: Counter[tuple[str, str]] = Counter()
        self.hard: Counter[tuple[str, str]] = Counter()
        self.start_ms = 0

    def select(self, item: Item, score: float) -> tuple[str, str, float]:
        lane, selection, prob = super().select(item, score)
        day = (item.ts_ms - self.start_ms) / DAY_MS
        period = "surge" if SURGE[0] <= day < SURGE[1] else "before" if 0.5 <= day < SURGE[0] else ""
        if period:
            key = (period, item.decl["port"])
            self.seen[key] += 1
            self.inspected[key] += lane in INSPECTION_LANES
            self.hard[key] += selection == "hard_rule"
        return lane, selection, prob


@pytest.fixture(scope="module")
def surge() -> Recording:
    world = sim_items("border-surge", days=2, seed=5)
    s = Recording()
    s.start_ms = world.start_ms
    s.oracle = world.oracle_factory() if world.oracle_factory else None
    for day, bucket in by_day(world.items, world.start_ms):
        for it in bucket:
            s.step(it, s.score(it), day)
    return s


def _hourly(s: Recording, period: str, port: str) -> float:
    hours = (SURGE[1] - SURGE[0]) * 24 if period == "surge" else (SURGE[0] - 0.5) * 24
    return s.seen[(period, port)] / hours


def test_the_surge_is_real_erenhot_declarations_per_hour_at_least_double(surge: Recording) -> None:
    assert _hourly(surge, "surge", "EHT") > 2.0 * _hourly(surge, "before", "EHT")


def test_erenhot_inspected_share_stays_near_the_budget_during_the_surge(surge: Recording) -> None:
    key = ("surge", "EHT")
    share = surge.inspected[key] / surge.seen[key]
    soft = (surge.inspected[key] - surge.hard[key]) / surge.seen[key]
    before = surge.inspected[("before", "EHT")] / surge.seen[("before", "EHT")]
    print(f"EHT inspected share: before {before:.3f}, surge {share:.3f} (without hard rules {soft:.3f})")
    # hard rules (watchlists, weighbridge excess, GPS concealment) spend the same budget: the ranked selection
    # yields to them, and the total holds near the 5% target under three times the volume
    assert 0.035 <= share <= 0.07, share
    assert 0.035 <= before <= 0.07, before
    assert soft < share
    assert surge.inspected[key] > 2.0 * surge.inspected[("before", "EHT")] * (12 / 18)  # per hour: load grows


def test_other_ports_keep_their_own_budget_during_erenhot_surge(surge: Recording) -> None:
    for port in {p for (period, p) in surge.seen if period == "surge" and p != "EHT"}:
        key = ("surge", port)
        if surge.seen[key] >= 200:
            assert surge.inspected[key] / surge.seen[key] <= 0.08, port
