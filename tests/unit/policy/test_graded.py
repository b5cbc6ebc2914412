"""Graded results: a lead that keeps coming back clean stops being hard (unless the risk centre says so), hard
hits are held to the site's daily budget, rules and lead sources weigh what their results say; the default
configuration decides exactly as before."""

from __future__ import annotations

import random
from typing import Any

from pipeline.core.policy import DecisionPolicy, PolicyConfig, first_design, graded_policy
from tests.unit.policy.test_policy import ROSTERS, T0, Hit, decl

WATCH = Hit("watchlist_hit", lane="physical_inspection", severity="critical", action="hard")
FACTS = {"watch_enterprise": True, "watch_source": "hotline", "enterprise_id": "E1"}


def warm(policy: DecisionPolicy, n: int = 400) -> None:
    rng = random.Random(3)
    for i in range(n):
        policy.decide(decl(i), {}, [], rng.random() ** 6, T0 + i * 1000)


def watched(policy: DecisionPolicy, i: int, facts: dict[str, Any] = FACTS) -> Any:
    d = {**decl(10_000 + i), "enterprise_id": "E1"}
    return policy.decide(d, facts, [WATCH], 0.01, T0 + 500_000 + i * 1000)


def test_a_lead_loses_its_hard_status_after_n_clean_inspections() -> None:
    policy = DecisionPolicy(graded_policy(lead_clean_limit=3, hard_cap_points=None), ROSTERS)
    warm(policy)
    keys = policy.grade_keys({**decl(1), "enterprise_id": "E1"}, FACTS, [WATCH])
    assert {"rule:watchlist_hit", "lead:hotline", "watch:enterprise:E1"} <= set(keys)
    for i in range(3):
        assert watched(policy, i).selection == "hard_rule"
        policy.on_result({"grade_keys": keys}, False)
    assert watched(policy, 3).selection != "hard_rule"
    policy.on_result({"grade_keys": keys}, True)  # a violation restores the lead
    assert watched(policy, 4).selection == "hard_rule"


def test_the_risk_centre_override_is_never_demoted() -> None:
    policy = DecisionPolicy(graded_policy(lead_clean_limit=1), ROSTERS)
    warm(policy)
    facts = {**FACTS, "watch_source": "risk-centre"}
    keys = policy.grade_keys({**decl(1), "enterprise_id": "E1"}, facts, [WATCH])
    for _ in range(5):
        policy.on_result({"grade_keys": keys}, False)
    assert watched(policy, 0, facts).selection == "hard_rule"


def test_hard_hits_are_held_to_the_daily_budget_plus_the_cap() -> None:
    policy = DecisionPolicy(graded_policy(lead_clean_limit=0, hard_cap_points=1.0), ROSTERS)
    warm(policy)
    picks = [watched(policy, i).selection for i in range(200)]  # every declaration on a hard watchlist
    assert picks[0] == "hard_rule"
    assert picks.count("hard_rule") < 40  # the site's share stops near 5% + 1 point of its day


def test_graded_weights_follow_results() -> None:
    policy = DecisionPolicy(graded_policy(), ROSTERS)
    good, bad = Hit("good", severity="medium"), Hit("bad", severity="medium")
    for _ in range(30):
        policy.on_result({"grade_keys": ["rule:good"]}, True)
        policy.on_result({"grade_keys": ["rule:bad"]}, False)
    assert policy.hit_weight(good) > 0.6 > 0.15 > policy.hit_weight(bad)
    state = policy.snapshot()
    other = DecisionPolicy(graded_policy(), ROSTERS)
    other.restore(state)
    assert other.hit_weight(good) == policy.hit_weight(good)
    assert policy.grades.stats("rule:")["good"]["hit_rate"] == 1.0


def test_the_default_is_the_graded_design_and_the_first_design_ignores_results() -> None:
    assert PolicyConfig() == graded_policy()
    a, b = DecisionPolicy(first_design(), ROSTERS), DecisionPolicy(first_design(), ROSTERS)
    for _ in range(10):
        b.on_result({"grade_keys": ["rule:watchlist_hit", "lead:hotline", "watch:enterprise:E1"]}, False)
    warm(a)
    warm(b)
    assert [watched(a, i).lane for i in range(50)] == [watched(b, i).lane for i in range(50)]


def _risky_morning(policy: DecisionPolicy) -> list[str]:
    """A quiet day that teaches the site its threshold, then the next day opens with a run of risky-looking
    declarations: the selections of that next day's first 100."""
    warm(policy, 600)
    day2 = T0 + 86_400_000
    rng = random.Random(5)
    return [
        policy.decide(decl(20_000 + i), {}, [], 0.6 + 0.4 * rng.random(), day2 + i * 1000).selection
        for i in range(100)
    ]


def test_the_days_spend_cannot_run_ahead_of_its_traffic() -> None:
    target = graded_policy().budget.target_share
    paced = _risky_morning(DecisionPolicy(graded_policy(), ROSTERS))
    unpaced = _risky_morning(DecisionPolicy(graded_policy(pace_slack=None), ROSTERS))
    spent = 0
    for n, sel in enumerate(paced, start=1):  # at every moment of the day: within target x seen + 1
        spent += sel in ("model", "rule", "hard_rule", "random")
        assert spent <= target * n + 1.0
    assert spent >= 4  # the day still spends its budget (5 of 100), only not all in its first hour
    assert sum(s == "model" for s in unpaced[:20]) > 5  # without pacing the morning burst takes it all


CONCEAL = Hit("gps_concealment", lane="physical_inspection", severity="high", action="hard")


def test_a_hard_rule_that_keeps_finding_little_is_ranked_except_on_valuable_loads() -> None:
    cfg = graded_policy(
        hard_rule_floor=0.25, hard_rule_min_results=20, hard_value_gate=2.0, hard_cap_points=None
    )
    policy = DecisionPolicy(cfg, ROSTERS)
    rng = random.Random(5)
    for i in range(400):  # the site's declared values: a median of about 100,000
        policy.decide(
            {**decl(i), "value_cny": rng.uniform(50_000, 150_000)}, {}, [], rng.random() ** 6, T0 + i
        )

    def hit(i: int, value: float, rule: Hit = CONCEAL) -> str:
        d = {**decl(20_000 + i), "value_cny": value}
        return policy.decide(d, {}, [rule], 0.01, T0 + 1_000_000 + i).selection

    keys = ["rule:gps_concealment"]
    for n in range(19):  # 19 results, 1 found: too few results to judge the rule yet
        policy.on_result({"grade_keys": keys}, n == 0)
    assert hit(0, 100_000) == "hard_rule"
    policy.on_result({"grade_keys": keys}, False)  # 20 results, 5% found
    assert hit(1, 100_000) != "hard_rule"  # an ordinary load: ranked like any other hit
    ranked = policy.decide({**decl(20_100), "value_cny": 100_000}, {}, [CONCEAL], 0.01, T0 + 1_100_000)
    assert any("1 of the 20 inspections graded so far" in r["text"] for r in ranked.reasons), ranked.reasons
    assert hit(2, 400_000) == "hard_rule"  # 4x the median: a find would be worth most, still inspected
    for _ in range(10):  # the rule starts finding: 11 of 30
        policy.on_result({"grade_keys": keys}, True)
    assert hit(3, 100_000) == "hard_rule"
    # the watchlist is graded per lead (lead_clean_limit), never by this floor
    for _ in range(40):
        policy.on_result({"grade_keys": ["rule:watchlist_hit"]}, False)
    assert hit(4, 100_000, WATCH) == "hard_rule"


def test_without_the_value_gate_every_load_of_a_demoted_rule_is_ranked() -> None:
    policy = DecisionPolicy(graded_policy(hard_rule_floor=0.25, hard_cap_points=None), ROSTERS)
    warm(policy)
    for _ in range(20):
        policy.on_result({"grade_keys": ["rule:gps_concealment"]}, False)
    d = {**decl(30_000), "value_cny": 10_000_000}
    assert policy.decide(d, {}, [CONCEAL], 0.01, T0 + 2_000_000).selection != "hard_rule"
    assert DecisionPolicy(graded_policy(), ROSTERS).config.hard_rule_floor == 0  # off by default
