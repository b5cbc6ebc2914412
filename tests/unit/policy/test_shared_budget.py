"""A site's budget held alike by several workers: one folds in the decisions the other journalled."""

from __future__ import annotations

import random

import pytest

from pipeline.contracts import sites
from pipeline.core.decision.budget import BudgetConfig, BudgetController
from pipeline.core.policy import DecisionPolicy, PolicyConfig

T0 = 1_780_000_000_000


def _decl(i: int, site: str) -> dict[str, object]:
    return {"decl_id": f"D{i:05d}", "port": site, "credit_grade": "general", "value_cny": 1000.0 + 37 * i}


def _hit(rule: str, severity: str) -> dict[str, object]:
    return {"rule_id": rule, "severity": severity, "lane": "physical_inspection", "status": "active"}


@pytest.mark.parametrize("by_value", [False, True])
def test_a_worker_folding_the_journal_holds_the_deciders_budget(by_value: bool) -> None:
    """Worker A decides 3,000 declarations over two days at two sites; worker B, folding A's journal, ends
    with the same thresholds, daily counts, pace and value windows, and decides the next one alike."""
    cfg = PolicyConfig(rank_by_value=by_value)
    a = DecisionPolicy(cfg, rosters=sites.rosters())
    b = DecisionPolicy(cfg, rosters=sites.rosters())
    a.budget.share()
    b.budget.share()
    rng = random.Random(7)
    site_names = ["EHT", "GQM"]
    for i in range(3000):
        hits = [_hit("r1", "high")] if rng.random() < 0.03 else []
        a.decide(_decl(i, site_names[i % 2]), {}, hits, rng.random() ** 3, T0 + i * 60_000)
    journal = a.budget.drain()
    assert len(journal) == 3000 and a.budget.drain() == []
    assert sum(e[5] for e in journal) > 100, "inspections were journalled"
    for entry in journal:
        assert b.budget.apply(entry)
    assert b.budget.snapshot() == a.budget.snapshot()
    assert b.budget.drain() == [], "folded entries are not journalled again"
    # an entry folded twice (a redelivery) and one of A's own come back: nothing changes
    assert not b.budget.apply(journal[10]) and not a.budget.apply(journal[-1])
    assert b.budget.snapshot() == a.budget.snapshot()
    nxt = _decl(3001, "EHT")
    da = a.decide(nxt, {}, [], 0.5, T0 + 3001 * 60_000)
    db = b.decide(nxt, {}, [], 0.5, T0 + 3001 * 60_000)
    assert (da.lane, da.threshold, da.reasons) == (db.lane, db.threshold, db.reasons)


def test_an_entry_of_another_shape_is_refused_not_half_applied() -> None:
    budget = BudgetController(BudgetConfig())
    budget.share()
    with pytest.raises(ValueError):
        budget.apply(["D1", "EHT", T0])  # too short
    with pytest.raises(ValueError):
        budget.apply(["D2", "EHT", T0, "high", None, 0, 0])  # a rank that is not a number
    assert budget.sites == {} or all(s.seen_day == 0 for s in budget.sites.values())


def test_an_unshared_budget_keeps_no_journal() -> None:
    """Replay, backtest and the benchmarks do not pay for the journal."""
    policy = DecisionPolicy(PolicyConfig(), rosters=sites.rosters())
    for i in range(200):
        policy.decide(_decl(i, "EHT"), {}, [], 0.3, T0 + i)
    assert policy.budget.journal is None and policy.budget.drain() == []


def test_a_refused_entry_does_not_block_the_good_one_after_it() -> None:
    budget = BudgetController(BudgetConfig())
    with pytest.raises(ValueError):
        budget.apply(["D3", "EHT", T0, "high", None, 1, 0])
    assert budget.apply(["D3", "EHT", T0, 0.4, None, 1, 0])
    assert budget.stats("EHT")["dispatched_day"] == 1


def test_results_journalled_for_the_group_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that learns results but saves no batch for a long time keeps at most LEARNED_KEEP of them
    to publish, counts the ones it drops, and still learns every one itself."""
    from pipeline.core import engine as engine_mod
    from pipeline.core.assemble import build_engine
    from pipeline.core.decision.snapshots import Snapshot

    monkeypatch.setattr(engine_mod, "LEARNED_KEEP", 3)
    eng = build_engine()
    eng.share_group()
    meta = {"selection": "rule", "selection_prob": 1.0, "rule_ids": ["r1"], "grade_keys": ["rule:r1"]}
    for i in range(5):
        ev = {"decl_id": f"D{i}", "command_id": f"C{i}", "ts_ms": T0 + i, "outcome": "violation"}
        assert eng.on_result(ev, Snapshot(f"D{i}", T0, {"port": "EHT"}, meta)) is not None
    entries = eng.drain_group()
    assert [e[1] for e in entries] == ["D2", "D3", "D4"] and eng.learned_dropped == 2
    assert eng.model is not None and eng.model.champion.n_learned == 5  # type: ignore[attr-defined]
