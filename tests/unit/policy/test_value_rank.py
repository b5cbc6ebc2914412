"""Ranking by value at stake (PolicyConfig.rank_by_value): the ranked selection orders risk x m(value), the
threshold is on that same quantity, and hard hits, random picks with their propensity, the budget and the
snapshot keep working."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from pipeline.core.decision.budget import BudgetConfig
from pipeline.core.policy import INSPECTION_LANES, DecisionPolicy, PolicyConfig, graded_policy
from tests.unit.policy.test_policy import ROSTERS, T0, Hit

TIGHT = BudgetConfig(target_share=0.02, model_share=0.018)


def _decl(i: int, value: float) -> dict[str, Any]:
    return {"decl_id": f"V{i:07d}", "port": "ERL", "credit_grade": "general", "value_cny": value}


def _warm(policy: DecisionPolicy, n: int = 3000, seed: int = 5) -> int:
    """Ordinary traffic: risks skewed low, declared values around 100k CNY (log-normal)."""
    rng = random.Random(seed)
    for i in range(n):
        value = 100_000 * math.exp(rng.gauss(0, 0.6))
        policy.decide(_decl(i, value), {}, [], rng.random() ** 4, T0 + i * 1000)
    return n


def _pair(policy: DecisionPolicy, start: int, score: float) -> tuple[Any, Any]:
    """Two declarations with the same score and no rule hit: 20k CNY and 5M CNY at stake."""
    small = policy.decide(_decl(start, 20_000), {}, [], score, T0 + start * 1000)
    large = policy.decide(_decl(start + 1, 5_000_000), {}, [], score, T0 + (start + 1) * 1000)
    return small, large


@pytest.mark.parametrize("transform", ["ratio", "sqrt"])
def test_same_risk_the_far_larger_value_is_selected_first_under_a_tight_budget(transform: str) -> None:
    policy = DecisionPolicy(
        graded_policy(budget=TIGHT, rank_by_value=True, value_transform=transform), ROSTERS
    )
    small, large = _pair(policy, _warm(policy), score=0.3)
    assert small.risk == pytest.approx(large.risk)
    assert large.selection == "model" and large.lane in INSPECTION_LANES
    assert small.selection != "model"  # released (or, by its own draw, a random pick): not ranked in
    assert large.threshold > large.risk  # the threshold is on risk x m(value), not on the risk
    assert any("x value" in r.get("text", "") for r in large.reasons)
    # without value ranking the two are one and the same case
    plain = DecisionPolicy(graded_policy(budget=TIGHT, rank_by_value=False), ROSTERS)
    a, b = _pair(plain, _warm(plain), score=0.3)
    assert (a.selection == "model") == (b.selection == "model")


def test_random_picks_keep_their_propensity_and_the_budget_holds_with_value_ranking() -> None:
    policy = DecisionPolicy(graded_policy(rank_by_value=True), ROSTERS)
    rng = random.Random(11)
    ds = []
    for i in range(30_000):
        value = 100_000 * math.exp(rng.gauss(0, 1.5))  # a wide spread of declared values
        ds.append(policy.decide(_decl(i, value), {}, [], rng.random() ** 3, T0 + i * 1000))
    insp = [d for d in ds if d.lane in INSPECTION_LANES]
    rand = [d for d in insp if d.selection == "random"]
    assert rand and all(d.selection_prob == pytest.approx(policy.base_random_prob) for d in rand)
    assert all(d.lane == "physical_inspection" for d in rand)
    assert sum(d.lane in INSPECTION_LANES for d in ds[2000:]) / len(ds[2000:]) == pytest.approx(
        0.05, abs=0.012
    )


def test_hard_hits_are_dispatched_and_a_missing_value_weighs_one() -> None:
    policy = DecisionPolicy(graded_policy(rank_by_value=True), ROSTERS)
    n = _warm(policy)
    hard = policy.decide(_decl(n, 1_000), {}, [Hit("crit", severity="critical")], 0.01, T0 + n * 1000)
    assert hard.selection == "hard_rule" and hard.lane in INSPECTION_LANES
    assert policy.value_weight("ERL", {"decl_id": "X"}, {}) == 1.0
    assert policy.value_weight("ERL", _decl(0, 10**12), {}) == policy.config.value_cap


def test_value_window_round_trips_through_the_snapshot() -> None:
    one = DecisionPolicy(graded_policy(rank_by_value=True), ROSTERS)
    n = _warm(one, 500)
    two = DecisionPolicy(graded_policy(rank_by_value=True), ROSTERS)
    two.restore(one.snapshot())
    a = [one.decide(_decl(n + i, 80_000 * (i + 1)), {}, [], 0.2, T0 + (n + i) * 1000) for i in range(50)]
    b = [two.decide(_decl(n + i, 80_000 * (i + 1)), {}, [], 0.2, T0 + (n + i) * 1000) for i in range(50)]
    assert [(d.lane, d.selection, d.threshold) for d in a] == [(d.lane, d.selection, d.threshold) for d in b]


def test_an_unknown_value_transform_is_an_error() -> None:
    with pytest.raises(ValueError, match="value_transform"):
        PolicyConfig(value_transform="cube")
