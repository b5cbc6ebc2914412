"""The online model: priors rank before labels, learning from scoring-time snapshots, checkpoints, drift."""

from __future__ import annotations

import math
import random

import pytest

from features.schema import FACT_TYPES
from pipeline.core.decision.encode import encode
from pipeline.core.model import DriftEvent, RiskModel, SnapshotStore

NEUTRAL = {"decl_id": "d0", "credit_grade": "general", "mode": "road", "port": "ERL", "unit_value_ratio": 1.0}


def facts(**kw):
    return {**NEUTRAL, **kw}


@pytest.mark.parametrize(
    "risky",
    [
        {"weigh_excess_ratio": 0.15},
        {"unit_value_ratio": 0.4},
        {"watch_conveyance": True},
        {"corridor_dev_km": 8.0, "unscheduled_stops": 2},
        {"split_count_24h": 4},
        {"credit_grade": "distrusted"},
        {"ent_violation_rate": 0.4},
    ],
)
def test_cold_start_priors_rank_anomalies_above_a_clean_declaration(risky):
    m = RiskModel()
    clean, bad = m.score(facts()), m.score(facts(**risky))
    assert 0.0 < clean < 0.1
    assert bad > clean * 1.5


@pytest.mark.parametrize(
    "junk",
    [
        {"weigh_excess_ratio": float("nan")},
        {"value_cny": "12x"},
        {"gross_kg": None, "missing": "weighbridge"},
        {"unit_value_ratio": 0.0},
        {"unit_value_ratio": -5.0, "corridor_dev_km": float("inf")},
        {},
    ],
)
def test_bad_values_never_raise_and_give_a_probability(junk):
    m = RiskModel()
    p = m.score(junk)
    assert 0.0 <= p <= 1.0 and not math.isnan(p)
    m.learn(junk, True)
    assert m.n_learned == 1


def _stream(n, seed, key="sd_crossings_24h"):
    rng = random.Random(seed)
    for _ in range(n):
        pos = rng.random() < 0.3
        yield facts(**{key: rng.randint(6, 12) if pos else rng.randint(0, 1)}), pos


def test_learns_a_pattern_the_priors_do_not_know():
    m = RiskModel()
    hot, cold = facts(sd_crossings_24h=9), facts(sd_crossings_24h=1)
    before = m.score(hot) - m.score(cold)
    for f, y in _stream(3000, 1):
        m.learn(f, y)
    after = m.score(hot) - m.score(cold)
    assert abs(before) < 0.01
    assert after > 0.3


def test_learning_uses_the_snapshot_taken_at_scoring_not_later_facts():
    store = SnapshotStore(max_items=100, ttl_ms=10_000)
    at_scoring = facts(decl_id="d1", weigh_excess_ratio=0.3, sd_crossings_24h=9)
    live = dict(at_scoring)
    m_snap, m_orig, m_late = RiskModel(), RiskModel(), RiskModel()
    m_snap.score(live)
    store.put("d1", live, ts_ms=1_000, score=0.2)
    # the facts keep changing after scoring (new history, a late reading)...
    live["weigh_excess_ratio"] = 0.0
    live["sd_crossings_24h"] = 0
    live["ent_violation_rate"] = 0.9
    # ...and the label arrives later
    snap = store.pop("d1", now_ms=5_000)
    assert snap is not None and snap.meta["score"] == 0.2
    m_snap.learn(snap.facts, True)
    m_orig.learn(at_scoring, True)
    m_late.learn(live, True)
    assert m_snap.weights == m_orig.weights
    assert m_snap.weights != m_late.weights


def test_snapshot_store_is_bounded_in_size_and_time_and_counts_what_it_drops():
    store = SnapshotStore(max_items=3, ttl_ms=1_000)
    for i in range(5):
        store.put(f"d{i}", facts(), ts_ms=100 * i)
    assert len(store) == 3 and store.evicted == 2
    assert store.pop("d0", now_ms=500) is None and store.unknown == 1
    assert store.pop("d4", now_ms=500) is not None
    assert store.pop("d2", now_ms=1_300) is None and store.expired >= 1
    restored = SnapshotStore.restore(store.snapshot())
    assert restored.snapshot() == store.snapshot()


def test_snapshot_keeps_only_what_the_model_reads():
    store = SnapshotStore()
    f = facts(goods="coal " * 50, weigh_excess_ratio=0.2, value_cny=1e6)
    store.put("d", f, ts_ms=0)
    snap = store.get("d")
    assert snap is not None and "goods" not in snap.facts
    assert encode(snap.facts) == encode(f)


def test_checkpoint_restore_gives_identical_scores_and_a_new_version(tmp_path):
    m = RiskModel()
    for f, y in _stream(500, 2):
        m.learn(f, y)
    probes = [facts(sd_crossings_24h=k, weigh_excess_ratio=k / 50) for k in range(10)]
    path = tmp_path / "model.ckpt"
    m.checkpoint(path)
    fresh = RiskModel()
    assert fresh.restore(path)
    assert [fresh.score(p) for p in probes] == [m.score(p) for p in probes]
    assert fresh.version == m.version + 1 and fresh.n_learned == 500
    assert RiskModel.from_bytes(m.to_bytes()).score(probes[3]) == m.score(probes[3])
    assert not RiskModel().restore(tmp_path / "absent.ckpt")


def test_explanations_name_real_facts_in_plain_words():
    m = RiskModel()
    f = facts(weigh_excess_ratio=0.12, credit_grade="distrusted", watch_conveyance=True, missing=["track"])
    factors = m.explain(f, k=3)
    assert len(factors) == 3
    assert all(x["feature"] in FACT_TYPES for x in factors)
    assert [x["contribution"] for x in factors] == sorted((x["contribution"] for x in factors), reverse=True)
    texts = {x["feature"]: x["text"] for x in factors}
    assert texts["weigh_excess_ratio"] == "weighbridge 12% over declared weight (+0.96)"
    assert texts["credit_grade"].startswith("enterprise credit: distrusted")
    assert m.explain(facts(), k=3) == []  # nothing stands out on a neutral declaration


def test_drift_on_the_error_stream_is_reported_and_a_stable_stream_is_quiet():
    stable, drifting = RiskModel(), RiskModel()
    events = [stable.learn(f, y, ts_ms=i) for i, (f, y) in enumerate(_stream(3000, 3))]
    assert [e for e in events if e is not None] == []
    for i, (f, y) in enumerate(_stream(2000, 4)):
        drifting.learn(f, y, ts_ms=i)
    # the concept flips: what was clean is now the violation
    found = [drifting.learn(f, not y, ts_ms=10_000 + i) for i, (f, y) in enumerate(_stream(1000, 5))]
    found = [e for e in found if e is not None]
    assert found and isinstance(found[0], DriftEvent)
    assert drifting.drift_count == len(found) and found[0].ts_ms >= 10_000
    assert found[0].error_after > found[0].error_before


def _warm(m, n=300):
    for f, y in _stream(n, 8, key="ent_decl_24h"):
        m.learn(f, y)


@pytest.mark.parametrize(("outcome", "stays_high"), [(True, True), (False, False)])
def test_memory_explores_a_region_without_labels_and_keeps_it_only_if_it_is_bad(outcome, stays_high):
    m, linear_only = RiskModel(), RiskModel(use_memory=False)
    _warm(m)
    _warm(linear_only)
    new = facts(mode="self_drive", sd_crossings_24h=8)  # a region no label has covered
    assert m.score(new) > 3 * linear_only.score(new)
    assert any(x["feature"] == "sd_crossings_24h" and "worth a look" in x["text"] for x in m.explain(new))
    for _ in range(6):
        m.learn(new, outcome)
    assert (m.score(new) > 0.3) is stays_high
    if stays_high:
        assert any("found violations 100% of the time" in x["text"] for x in m.explain(new))


def test_memory_is_bounded_and_forgets_the_least_recently_updated_bins():
    from pipeline.core.decision.memory import BinMemory

    mem = BinMemory(max_bins=10)
    for i in range(50):
        mem.learn({f"hs4={i}": 1.0}, label=i % 2 == 0)
    assert len(mem.bins) == 10
    assert sum(len(d) for d in mem.lifts.values()) == 10
    assert ("hs4=49", 4) in mem.bins and ("hs4=0", 4) not in mem.bins


def test_explain_after_score_reuses_its_encoding_and_gives_the_same_factors():
    m = RiskModel()
    _warm(m)
    new = facts(mode="self_drive", sd_crossings_24h=8, weigh_excess_ratio=0.1)
    cold = RiskModel.from_bytes(m.to_bytes())
    expected = cold.explain(dict(new))  # no score before: encodes by itself
    m.score(new)
    assert m.explain(new) == expected
    for _ in range(6):  # a label changes the memory's lift: the kept encoding of the last score is dropped
        m.learn(new, False)
        cold.learn(new, False)
    assert m.explain(new) == cold.explain(dict(new))
    m.score(new)
    assert "_scored" not in RiskModel.from_bytes(m.to_bytes()).__dict__  # the last scoring: not checkpointed


def test_slim_drops_neutral_values_of_every_type():
    from pipeline.core.decision.encode import MODEL_FACTS, slim

    kept = facts(weigh_excess_ratio=0.2, sd_crossings_24h=3, watch_conveyance=True)
    kept.update(unit_value_ratio=0.5, missing=("x",))
    neutral = {name: v for name, v in zip(sorted(MODEL_FACTS), [0, 0.0, None, "", False] * 20, strict=False)}
    assert slim({**neutral, "unit_value_ratio": 1.0}) == {}
    out = slim(kept)
    assert out["weigh_excess_ratio"] == 0.2 and out["sd_crossings_24h"] == 3
    assert out["watch_conveyance"] is True
    assert out["unit_value_ratio"] == 0.5 and out["missing"] == ["x"] and "decl_id" not in out
