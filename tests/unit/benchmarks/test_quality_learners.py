"""The quality benchmark's richer river learners (``--learners``): a tree beside the production model."""

from __future__ import annotations

import random

import pytest

from benchmarks import quality
from benchmarks.quality_learners import LEARNERS, BlendedModel, parse_learners, tree_input
from benchmarks.quality_report import aggregate
from pipeline.core.decision.encode import CATEGORICAL, encode
from pipeline.core.model import RiskModel

CLEAN = {"credit_grade": "general", "mode": "road", "port": "ERL", "weigh_excess_ratio": 0.0}


def _facts(rng: random.Random, bad: bool) -> dict[str, object]:
    """A violation here is a heading AND a night trip together: neither alone tells it."""
    hs4 = rng.choice(["8471", "6403"]) if not bad else "8471"
    night = rng.random() < 0.5 if not bad else True
    if not bad and hs4 == "8471" and night:
        night = False
    return {**CLEAN, "hs4": hs4, "night_trip": night, "value_cny": rng.uniform(1e4, 1e5)}


def test_before_any_label_the_score_is_the_production_models() -> None:
    facts = {**CLEAN, "hs4": "8471", "weigh_excess_ratio": 0.15}
    for name in LEARNERS:
        assert BlendedModel(name, seed=3).score(facts) == RiskModel(seed=3).score(facts)


def test_the_tree_reads_every_input_with_categories_as_nominal_values() -> None:
    x = tree_input(encode({**CLEAN, "hs4": "8471", "weigh_excess_ratio": 0.15}))
    assert x["hs4"] == "8471" and x["port"] == "ERL" and x["origin"] == ""
    assert x["weigh_excess_ratio"] > 0 and x["night_trip"] == 0.0
    assert set(CATEGORICAL) <= set(x) and not any("=" in k and k.split("=")[0] in CATEGORICAL for k in x)


@pytest.mark.parametrize("name", ["hat", "bag"])
def test_the_tree_learns_an_interaction_the_linear_form_cannot(name: str) -> None:
    rng = random.Random(7)
    blended, linear = BlendedModel(name, seed=1, share=1.0, ramp=1.0), RiskModel(seed=1)
    for _ in range(3000):
        bad = rng.random() < 0.25
        f = _facts(rng, bad)
        blended.learn(f, bad)
        linear.learn(f, bad)
    both = {**CLEAN, "hs4": "8471", "night_trip": True, "value_cny": 5e4}
    one = {**CLEAN, "hs4": "8471", "night_trip": False, "value_cny": 5e4}
    assert blended.tree_n == 3000
    gap_tree = blended.score(both) - blended.score(one)
    gap_linear = linear.score(both) - linear.score(one)
    assert gap_tree > gap_linear and gap_tree > 0.5


def test_learners_add_a_model_and_a_hybrid_strategy_each_with_the_learner() -> None:
    by_name = {s.name: s for s in quality.make_strategies(seed=1, learners=["hat"])}
    assert set(by_name) == {*quality.STRATEGIES, "model+hat", "hybrid+hat"}
    assert isinstance(by_name["hybrid+hat"].model, BlendedModel) and by_name["hybrid+hat"].use_rules
    assert not by_name["model+hat"].use_rules
    assert type(by_name["hybrid"].model) is RiskModel
    with pytest.raises(SystemExit, match="unknown xgb"):
        parse_learners("hat,xgb")


def test_aggregate_pairs_each_learner_with_its_base_per_seed() -> None:
    def run(h: float, hx: float) -> dict[str, dict[str, float]]:
        rows = {"hybrid": h, "hybrid+hat": hx, "rules": 0.4, "batch_rules": 0.35}
        return {k: {"precision": p, "value_recall": 0.3} for k, p in rows.items()}

    ratios = aggregate([run(0.4, 0.44), run(0.5, 0.5)])["hybrid+hat"]["ratios"]
    assert ratios["precision_over_hybrid"]["mean"] == pytest.approx(1.05)
    assert ratios["value_recall_over_hybrid"]["mean"] == pytest.approx(1.0)
    assert ratios["precision_over_rules"]["n"] == 2
