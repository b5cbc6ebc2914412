"""BUKONG_POLICY: a deployment sets its inspection budget and policy knobs without code; a wrong name,
type or range stops the worker at start-up with the setting named, and the engine decides under it."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.contracts.settings import Settings
from pipeline.core.assemble import build_engine
from pipeline.core.policy import PolicyConfig
from pipeline.core.policy_settings import policy_config
from tests.unit.policy.test_policy import T0, decl

REPO = Path(__file__).resolve().parents[3]


def test_no_overrides_give_the_documented_defaults() -> None:
    assert policy_config() == PolicyConfig()
    assert policy_config({}) == PolicyConfig()


def test_overrides_are_typed_and_a_new_budget_carries_the_ranked_share_with_it() -> None:
    cfg = policy_config(
        {
            "budget": {"target_share": 0.03, "shift_capacity": {"ERL": 40}},
            "hard_rule_floor": 0.25,
            "hard_rule_min_results": 30.0,  # JSON has one number type: a whole one is accepted for an int
            "hard_value_gate": 1,
            "hard_cap_points": None,
            "lead_override_sources": ["risk-centre", "border-police"],
            "credit_odds": {"aeo_advanced": 0.4, "general": 1, "distrusted": 3},
        }
    )
    assert cfg.budget.target_share == 0.03
    assert cfg.budget.model_share == pytest.approx(0.03 * (1 - cfg.random_share))  # 2.7% of a 3% budget
    assert cfg.budget.shift_capacity == {"ERL": 40}
    assert cfg.hard_rule_floor == 0.25 and cfg.hard_value_gate == 1.0 and cfg.hard_cap_points is None
    assert cfg.hard_rule_min_results == 30 and isinstance(cfg.hard_rule_min_results, int)
    assert cfg.lead_override_sources == frozenset({"risk-centre", "border-police"})
    assert cfg.credit_odds["distrusted"] == 3
    assert policy_config({"budget": {"target_share": 0.1, "model_share": 0.1}}).budget.model_share == 0.1


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"hard_floor": 0.25}, "unknown policy setting 'hard_floor'; the settings are: "),
        ({"budget": {"target": 0.03}}, "unknown policy setting 'budget.target'"),
        ({"budget": 0.03}, "budget: an object of "),
        ({"random_over_hits": "yes"}, "random_over_hits: true or false"),
        ({"hard_rule_min_results": 2.5}, "hard_rule_min_results: a whole number"),
        ({"red_risk": "high"}, "red_risk: a finite number"),
        ({"red_risk": None}, "red_risk: may not be null"),
        ({"lead_override_sources": "risk-centre"}, "lead_override_sources: a list of names"),
        ({"severity_weight": {"high": "a lot"}}, "severity_weight: an object of name -> number"),
        ({"budget": {"target_share": 1.5}}, "budget.target_share: a share of declarations in (0, 1)"),
        ({"budget": {"target_share": 0.05, "model_share": 0.08}}, "budget.model_share: in [0, "),
        ({"random_share": 1.2}, "random_share: in [0, 1]"),
        ({"explore_shape": "wild"}, "explore_shape 'wild'"),
    ],
)
def test_a_wrong_setting_is_named_with_what_it_takes(overrides: dict, says: str) -> None:
    with pytest.raises(ValueError) as err:
        policy_config(overrides)
    assert says in str(err.value), str(err.value)


def test_the_setting_must_be_a_json_object() -> None:
    assert Settings.from_env({"BUKONG_POLICY": '{"red_risk": 0.6}'}).policy_overrides == {"red_risk": 0.6}
    assert Settings().policy_overrides == {}
    for bad in ("{red_risk: 0.6}", "[0.6]"):
        with pytest.raises(SystemExit, match="BUKONG_POLICY="):
            Settings.from_env({"BUKONG_POLICY": bad})


def test_the_engine_decides_under_the_deployments_budget() -> None:
    rng = random.Random(11)
    scores = [rng.random() ** 4 for _ in range(6000)]

    def inspected(settings: Settings) -> float:
        policy = build_engine(settings).policy
        picks = [policy.decide(decl(i), {}, [], s, T0 + i * 1000).lane for i, s in enumerate(scores)]
        return sum(lane != "release" and lane != "post_clearance_audit" for lane in picks) / len(picks)

    default = inspected(Settings())
    smaller = inspected(Settings(policy='{"budget": {"target_share": 0.02}}'))
    assert 0.04 < default < 0.06, default
    assert 0.01 < smaller < 0.03, smaller


def test_a_worker_refuses_to_start_on_a_wrong_policy(tmp_path: Path) -> None:
    code = (
        "from pipeline.contracts.settings import Settings; from agents.app import run_worker; "
        "run_worker(Settings.from_env({'BUKONG_POLICY': '{\"budget\": {\"target_shares\": 0.03}}'}), "
        "'127.0.0.1:1', 'redis://127.0.0.1:1/0')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode != 0
    assert "error: BUKONG_POLICY: unknown policy setting 'budget.target_shares'" in out.stderr, out.stderr[
        -2000:
    ]
