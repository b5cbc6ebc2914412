"""The learnability ceiling: rankers trained on every label of the first days, measured on the last."""

from __future__ import annotations

import random

from benchmarks.quality_ceiling import ceiling, top_share
from benchmarks.quality_common import DAY_MS, Item
from features.schema import NEUTRAL
from rules.engine import RuleHit

START = 1_700_000_000_000


def _hit(severity: str) -> RuleHit:
    return RuleHit("noise_rule", "document_check", severity, "active", "global", "", "", {})


def _world(days: int = 3, per_day: int = 600) -> list[Item]:
    """Fraud shows in one fact (a weighbridge excess) that no rule reads; a high-severity rule fires on a
    random tenth of the declarations, fraud or not."""
    rng = random.Random(7)
    items = []
    for d in range(days):
        for i in range(per_day):
            fraud = rng.random() < 0.15
            facts = dict(NEUTRAL, decl_id=f"D{d}-{i:04d}", port=("ERL", "MZL")[i % 2])
            facts["weigh_present"] = True
            facts["weigh_excess_ratio"] = rng.uniform(0.15, 0.3) if fraud else rng.uniform(-0.02, 0.02)
            hits = [_hit("high")] if rng.random() < 0.1 else []
            ts = START + d * DAY_MS + i * (DAY_MS // per_day)
            decl = {"decl_id": facts["decl_id"], "port": facts["port"]}
            items.append(Item(ts, decl, facts, hits, fraud, 1000.0 * fraud, "t" if fraud else "", 0))
    return items


def test_a_fact_no_rule_reads_is_learnt_from_every_label_not_by_the_rules() -> None:
    r = ceiling(_world(), START, budget=0.05)
    assert r["boosting_all"]["precision"] >= 0.9
    assert r["model_all"]["precision"] >= 0.9
    assert r["rules_severity"]["precision"] < 0.3  # the rule is noise: about the base rate
    assert r["oracle"] == {"precision": 1.0, "value_recall": r["oracle"]["value_recall"]}
    assert 0 < r["oracle"]["value_recall"] <= 1.0


def test_the_budget_is_taken_per_site_and_ties_do_not_pick_the_first_in_time() -> None:
    items = [
        Item(START + i, {"decl_id": f"D{(i * 37) % 100:03d}", "port": "ERL"}, {}, [], i >= 90, 1.0, "", 0)
        for i in range(100)
    ] + [
        Item(START + i, {"decl_id": f"M{i:03d}", "port": "MZL"}, {}, [], True, 1.0, "", 0) for i in range(20)
    ]
    flat = top_share(items, [0.0] * len(items), 0.1)  # 10 of ERL and 2 of MZL, by declaration id
    assert flat["precision"] == (1 + 2) / 12  # D000..D009 hold one late (fraud) one, D004
    ranked = top_share(items, [float(it.violation) for it in items], 0.1)
    assert ranked["precision"] == 1.0
