"""Exploration where the model is uncertain (``PolicyConfig.explore_share``): drawn only among the
declarations nothing else picked, its share as configured, its propensity the probability used, 双随机 and
the budget untouched, off by default."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pipeline.core.policy import (
    INSPECTION_LANES,
    DecisionPolicy,
    PolicyConfig,
    graded_policy,
    importance_weight,
    uniform,
)
from tests.unit.policy.test_policy import ROSTERS, Hit, inspected, run

N = 40_000


def _hits(i: int) -> list[Hit]:
    if i % 97 == 0:
        return [Hit("hard_one", lane="physical_inspection", action="hard")]
    return [Hit("r1")] if i % 10 == 0 else []


def _scores() -> list[float]:
    rng = random.Random(3)
    return [rng.random() ** 3 for _ in range(N)]


def _run(**cfg: Any) -> tuple[DecisionPolicy, list[Any]]:
    base: dict[str, Any] = {"random_share": 0.1, "pace_slack": None, "grade_results": False}
    policy = DecisionPolicy(PolicyConfig(**{**base, **cfg}), ROSTERS)
    return policy, run(policy, _scores(), hits_for=_hits)


def _left(d: Any) -> bool:
    """The declarations that reached the random and exploration draws: released, sent to an audit below
    the threshold, or picked by one of the two draws."""
    return d.selection in ("random", "explore", "release") or d.lane == "post_clearance_audit"


def test_off_by_default_and_the_same_decisions_when_off():
    assert PolicyConfig().explore_share == 0.0 and graded_policy().explore_share == 0.0
    a, da = _run()
    _, db = _run(explore_share=0.0, explore_shape="hits")
    assert [(d.lane, d.selection, d.selection_prob, d.threshold) for d in da] == [
        (d.lane, d.selection, d.selection_prob, d.threshold) for d in db
    ]
    assert not any(d.selection == "explore" for d in da)
    releases = [d for d in da if d.selection == "release"]  # as before exploration: 1 - the random draw's p
    assert releases and all(d.selection_prob == pytest.approx(1 - a.base_random_prob) for d in releases)
    assert "explore" not in a.snapshot() and a.budget.config.model_share == PolicyConfig().budget.model_share


@pytest.mark.parametrize("shape", ["score", "hits", "near"])
def test_exploration_picks_only_what_nothing_else_picked_at_the_configured_share(shape):
    policy, ds = _run(explore_share=0.1, explore_shape=shape)
    insp = [d for d in ds if d.lane in INSPECTION_LANES]
    explore = [i for i, d in enumerate(ds) if d.selection == "explore"]
    assert len(explore) / len(insp) == pytest.approx(0.1, abs=0.03)
    p_random = policy.base_random_prob
    for i in explore:
        d = ds[i]
        assert d.risk < d.threshold  # below the ranked selection's threshold (no pacing here)
        assert uniform(f"D{i:07d}", "random") >= p_random  # and not drawn by 双随机
        assert i % 97 != 0  # never a hard hit (those are inspected as hard rules)
        assert d.lane == "physical_inspection" and d.dispatch
        assert d.reasons[-1]["kind"] == "explore" and "not a random check" in d.reasons[-1]["text"]
    if shape == "hits":  # only rule hits below the threshold are explored
        assert all(i % 10 == 0 for i in explore)
    elif shape == "near":  # just below the threshold: far closer to it than the typical left-over
        left = [d.risk / d.threshold for d in ds[2000:] if _left(d)]
        near = [ds[i].risk / ds[i].threshold for i in explore if i >= 2000]
        assert sum(near) / len(near) > 0.6 > 2 * sum(left) / len(left)
    else:  # uncertainty 4s(1-s): the explored scores sit well above the typical left-over score
        left = [s for s, d in zip(_scores(), ds, strict=True) if _left(d)]
        picked = [_scores()[i] for i in explore]
        assert sum(picked) / len(picked) > 1.5 * sum(left) / len(left)
    # the same budget: the ranked share gives way, inspections stay at the target
    assert policy.budget.config.model_share == pytest.approx(0.045 - 0.05 * 0.1)
    assert inspected(ds[2000:]) == pytest.approx(0.05, abs=0.012)


@pytest.mark.parametrize("shape", ["score", "hits", "near"])
def test_propensity_is_the_probability_the_draw_used(shape):
    policy, ds = _run(explore_share=0.1, explore_shape=shape)
    cfg, scores = policy.config, _scores()
    mean: dict[str, float] = {}
    p_random = policy.base_random_prob
    checked = 0
    for i, d in enumerate(ds):
        if not _left(d) or d.selection == "random":
            continue
        near = d.risk / d.threshold if 0 < d.threshold < float("inf") else 0.0
        u = policy.uncertainty(scores[i], "general", d.risk, bool(_hits(i)), near)
        m = mean.get("ERL", 1.0)
        m += cfg.explore_alpha * (u - m)
        mean["ERL"] = m
        p = min(1.0, policy.base_explore_prob * u / max(m, 1e-3))
        drawn = uniform(f"D{i:07d}", "explore") < p
        assert (d.selection == "explore") == drawn
        if d.selection == "explore":
            assert d.selection_prob == pytest.approx(p)
            assert importance_weight("explore", d.selection_prob) == pytest.approx(min(1 / p, 10.0))
            checked += 1
        elif d.selection == "release":
            assert d.selection_prob == pytest.approx((1 - p_random) * (1 - p))
    assert checked > 100
    assert policy.snapshot()["explore"]["ERL"] == pytest.approx(mean["ERL"])


def test_the_random_share_is_unchanged():
    off, d_off = _run()
    on, d_on = _run(explore_share=0.1)
    assert on.base_random_prob == off.base_random_prob
    for ds in (d_off, d_on):
        insp = [d for d in ds if d.lane in INSPECTION_LANES]
        rand = [d for d in insp if d.selection == "random"]
        assert len(rand) / len(insp) == pytest.approx(0.1, abs=0.03)
        assert all(d.selection_prob == pytest.approx(on.base_random_prob) for d in rand)
    # every declaration the targeting left whose 双随机 draw picks it is a random pick, never an exploration
    for i, d in enumerate(d_on):
        if _left(d) and uniform(f"D{i:07d}", "random") < on.base_random_prob:
            assert d.selection == "random"


def test_running_mean_survives_a_snapshot():
    policy, _ = _run(explore_share=0.1)
    state = policy.snapshot()
    other = DecisionPolicy(policy.config, ROSTERS)
    other.restore(state)
    assert other.explore_mean == policy.explore_mean and other.explore_mean


@pytest.mark.parametrize(
    "cfg",
    [{"explore_shape": "entropy"}, {"explore_share": -0.1}, {"explore_share": 0.95, "random_share": 0.1}],
)
def test_bad_exploration_settings_are_refused(cfg):
    with pytest.raises(ValueError):
        PolicyConfig(**cfg)
