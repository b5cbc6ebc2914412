"""The quality benchmark's rules-only peer with the hybrid's random share; precision split by selection."""

from __future__ import annotations

from benchmarks import quality
from benchmarks.quality_report import _split, aggregate


def test_rules_random_is_the_rules_with_the_hybrids_random_share() -> None:
    by_name = {s.name: s for s in quality.make_strategies(seed=1)}
    assert set(quality.STRATEGIES) == set(by_name)
    rules, rules_random, hybrid = by_name["rules"], by_name["rules_random"], by_name["hybrid"]
    assert rules.policy.config.random_share == 0.0
    assert rules_random.policy.config.random_share == hybrid.policy.config.random_share > 0
    assert rules_random.use_rules and rules_random.model is None
    assert rules_random.policy.base_random_prob == hybrid.policy.base_random_prob


def test_precision_is_split_into_targeted_and_random() -> None:
    split = _split({"rule": [30, 12], "hard_rule": [10, 6], "model": [0, 0], "random": [10, 1]}, 50)
    assert split == {"precision_targeted": 0.45, "random_share_of_inspections": 0.2, "precision_random": 0.1}
    assert "precision_random" not in _split({"rule": [4, 1]}, 4)


def test_aggregate_gives_the_hybrid_over_both_rules_peers_all_and_targeted() -> None:
    def run(h: float, r: float, rr: float) -> dict[str, dict[str, float]]:
        rows = {"hybrid": (h, h + 0.02), "rules": (r, r), "rules_random": (rr, rr + 0.03)}
        keys = ("precision", "value_recall", "precision_targeted")
        return {k: dict(zip(keys, (p, 0.3, t), strict=True)) for k, (p, t) in rows.items()}

    ratios = aggregate([run(0.4, 0.5, 0.45), run(0.42, 0.5, 0.46)])["hybrid"]["ratios"]
    assert {"hybrid_over_rules", "hybrid_over_rules_random", "hybrid_over_rules_targeted"} <= set(ratios)
    assert ratios["hybrid_over_rules_random_targeted"]["n"] == 2
    assert round(ratios["hybrid_over_rules"]["mean"], 2) == 0.82


def test_exploration_picks_are_split_apart_from_targeted_and_random() -> None:
    split = _split({"rule": [30, 12], "explore": [5, 2], "random": [5, 0]}, 40)
    assert split["precision_targeted"] == 0.4 and split["precision_random"] == 0.0
    assert split["precision_explore"] == 0.4 and split["explore_share_of_inspections"] == 0.125
    assert "precision_explore" not in _split({"rule": [4, 1]}, 4)


def test_exploration_variants_are_the_graded_policy_with_an_exploration_share() -> None:
    for name, shape in (
        ("graded-explore", "score"),
        ("graded-explore-hits", "hits"),
        ("graded-explore-near", "near"),
    ):
        cfg = quality._policy(name)
        assert cfg.explore_share == quality.EXPLORE_SHARE and cfg.explore_shape == shape
        assert cfg.grade_results and not cfg.rank_by_value
    assert quality._policy("graded").explore_share == 0.0
