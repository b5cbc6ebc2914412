"""Decision policy: budget held under a spike, random share flagged, determinism, hard rules, credit."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.core.decision.budget import BudgetConfig
from pipeline.core.policy import (
    INSPECTION_LANES,
    DecisionPolicy,
    PolicyConfig,
    first_design,
    importance_weight,
    uniform,
)

HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01
ROSTERS = {"ERL": [f"erl-{i}" for i in range(8)], "ERL:squad": ["sq-1", "sq-2", "sq-3"], "MZL": ["mzl-1"]}


@dataclass
class Hit:
    rule_id: str
    lane: str = "document_check"
    severity: str = "medium"
    status: str = "active"
    action: str = "dispatch"
    reason: str = "rule fired"
    evidence: dict[str, Any] = field(default_factory=dict)


def decl(i: int, port: str = "ERL", credit: str = "general") -> dict[str, Any]:
    return {"decl_id": f"D{i:07d}", "port": port, "credit_grade": credit, "conveyance_id": "C", "ts_ms": T0}


def run(policy, scores, start=0, port="ERL", hits_for=lambda i: [], facts_for=lambda i: {}, step_ms=1000):
    out = []
    for n, s in enumerate(scores):
        i = start + n
        out.append(policy.decide(decl(i, port), facts_for(i), hits_for(i), s, T0 + i * step_ms))
    return out


def inspected(ds):
    return sum(d.lane in INSPECTION_LANES for d in ds) / len(ds)


def test_budget_controller_holds_the_share_when_a_spike_of_risky_traffic_arrives():
    rng = random.Random(7)
    normal = [rng.random() ** 4 for _ in range(6000)]
    spike = [rng.random() ** 0.5 for _ in range(6000)]  # scores shift up: a surge of risky-looking traffic
    policy = DecisionPolicy(PolicyConfig(), ROSTERS)
    before = run(policy, normal)
    during = run(policy, spike, start=6000, step_ms=200)  # and five times the volume
    assert inspected(before[2000:]) == pytest.approx(0.05, abs=0.012)
    assert inspected(during[3000:]) == pytest.approx(0.05, abs=0.012)
    # a fixed threshold tuned on normal traffic would have inspected far more during the spike
    fixed = sorted(normal)[int(0.955 * len(normal))]
    assert sum(s >= fixed for s in spike) / len(spike) > 0.25
    assert 0.6 < policy.use_ratio("ERL") < 1.6


def test_shift_capacity_caps_inspections_and_sends_the_rest_to_post_clearance_audit():
    cfg = PolicyConfig(budget=BudgetConfig(shift_capacity={"ERL": 20}))
    policy = DecisionPolicy(cfg, ROSTERS)
    rng = random.Random(1)
    ds = run(policy, [rng.random() for _ in range(5000)], step_ms=5000)  # ~7 h: one shift
    assert sum(d.lane in INSPECTION_LANES for d in ds) == 20
    blue = [d for d in ds if d.lane == "post_clearance_audit"]
    assert blue and all(d.dispatch and not d.officers for d in blue)


def _random_run(**cfg: Any) -> tuple[DecisionPolicy, list[Any]]:
    policy = DecisionPolicy(PolicyConfig(random_share=0.1, **cfg), ROSTERS)
    rng = random.Random(3)
    scores = [rng.random() ** 3 for _ in range(40_000)]
    return policy, run(policy, scores, hits_for=lambda i: [Hit("r1")] if i % 10 == 0 else [])


def test_random_share_is_honoured_flagged_and_drawn_over_every_declaration_not_selected():
    policy, ds = _random_run()
    insp = [d for d in ds if d.lane in INSPECTION_LANES]
    rand = [d for d in insp if d.selection == "random"]
    assert len(rand) / len(insp) == pytest.approx(0.1, abs=0.03)
    p = policy.base_random_prob
    assert all(d.selection_prob == pytest.approx(p) and d.lane == "physical_inspection" for d in rand)
    others = [d for d in insp if d.selection != "random"]
    assert all(d.selection_prob == 1.0 for d in others)
    # 双随机 is uniform over what the targeting left: a rule hit below the threshold, which would go to an
    # audit after clearance, is drawn with the same probability as a declaration without a hit
    hit_left = [
        i for i in range(0, 40_000, 10) if ds[i].selection != "rule" or ds[i].lane == "post_clearance_audit"
    ]
    hit_random = [i for i in hit_left if ds[i].selection == "random"]
    assert hit_random and len(hit_random) / len(hit_left) == pytest.approx(p, rel=0.5)
    assert all(any(r.get("rule_id") == "r1" for r in ds[i].reasons) for i in hit_random)


def test_random_picks_can_be_kept_to_declarations_without_a_hit():
    _, ds = _random_run(random_over_hits=False)
    assert any(d.selection == "random" for d in ds)
    assert all(ds[i].selection != "random" for i in range(0, 40_000, 10))


@pytest.mark.parametrize(
    ("selection", "prob", "want"),
    [
        ("random", 0.5, 2.0),
        ("random", 0.001, 10.0),
        ("model", 0.2, 1.0),
        ("hard_rule", 1.0, 1.0),
        ("random", 0.0, 1.0),
    ],
)
def test_importance_weight(selection, prob, want):
    assert importance_weight(selection, prob) == want


def test_replay_gives_the_same_decisions_selections_and_officers():
    rng = random.Random(11)
    scores = [rng.random() ** 3 for _ in range(3000)]
    a = run(DecisionPolicy(PolicyConfig(), ROSTERS), scores)
    b = run(DecisionPolicy(PolicyConfig(), ROSTERS), scores)
    assert [(d.lane, d.selection, d.officers) for d in a] == [(d.lane, d.selection, d.officers) for d in b]
    team = [d.officers for d in a if d.lane in INSPECTION_LANES]
    assert all(len(o) == 2 and set(o) <= set(ROSTERS["ERL"]) for o in team)
    assert len({tuple(o) for o in team}) > 5  # officers rotate
    assert uniform("D1", "random") == uniform("D1", "random") != uniform("D2", "random")


def test_snapshot_restore_continues_with_the_same_decisions():
    rng = random.Random(5)
    scores = [rng.random() ** 3 for _ in range(4000)]
    one = DecisionPolicy(PolicyConfig(), ROSTERS)
    run(one, scores[:2000])
    two = DecisionPolicy(PolicyConfig(), ROSTERS)
    two.restore(one.snapshot())
    a, b = run(one, scores[2000:], start=2000), run(two, scores[2000:], start=2000)
    assert [(d.lane, d.selection, d.threshold) for d in a] == [(d.lane, d.selection, d.threshold) for d in b]


@pytest.mark.parametrize(
    ("hit", "facts", "lane"),
    [
        (Hit("watch", lane="physical_inspection"), {"watch_conveyance": True}, "physical_inspection"),
        (Hit("track", lane="intercept", severity="critical"), {}, "intercept"),
        (Hit("hold", lane="document_check", action="hard"), {}, "document_check"),
    ],
)
def test_hard_rules_always_dispatch_even_over_budget_and_are_counted(hit, facts, lane):
    policy = DecisionPolicy(first_design(), ROSTERS)  # the graded design caps them (test_graded.py)
    ds = run(policy, [0.01] * 300, hits_for=lambda i: [hit], facts_for=lambda i: facts)
    assert all(d.dispatch and d.selection == "hard_rule" and d.lane == lane for d in ds)
    assert policy.budget.stats("ERL")["over_budget_day"] > 250
    assert policy.use_ratio("ERL") == pytest.approx(20.0)
    if lane == "intercept":
        assert set(ds[0].officers) <= set(ROSTERS["ERL:squad"])


def test_emergency_release_is_never_inspected():
    policy = DecisionPolicy(PolicyConfig(), ROSTERS)
    d = policy.decide(decl(1), {}, [Hit("med", action="emergency_release", lane="release")], 0.99, T0)
    assert (d.lane, d.dispatch, d.selection) == ("release", False, "release")


def test_credit_shifts_risk_and_random_share_documented_direction():
    policy = DecisionPolicy(PolicyConfig(), ROSTERS)
    aeo, gen, bad = (policy.combine(0.2, [], c) for c in ("aeo_advanced", "general", "distrusted"))
    assert aeo < gen < bad and gen == pytest.approx(0.2)
    assert policy.combine(0.2, [Hit("r", severity="high")], "general") > gen
    counts = {}
    for credit in ("aeo_advanced", "distrusted"):
        p = DecisionPolicy(PolicyConfig(), ROSTERS)
        ds = [p.decide(decl(i, credit=credit), {}, [], 0.0, T0 + i) for i in range(30_000)]
        counts[credit] = sum(d.selection == "random" for d in ds)
    assert counts["distrusted"] > 2.5 * counts["aeo_advanced"]


def test_soft_rule_hit_below_threshold_goes_to_audit_not_release():
    policy = DecisionPolicy(PolicyConfig(), ROSTERS)
    run(policy, [0.9] * 500)  # a site where everything scores high
    d = policy.decide(decl(999), {}, [Hit("low", severity="low")], 0.0, T0 + 10**6)
    assert d.lane == "post_clearance_audit" and d.dispatch and d.selection == "rule"
    assert any(r.get("rule_id") == "low" for r in d.reasons)
