"""No single model input gives the fraud away: on every shipped scenario, the area under the ROC curve of each
encoded input, alone, separating fraud from clean stays at or below 0.95 — overall and per typology within its
mode of transport. Exempt, and documented in docs/policy.md: the weighbridge's physical measurement
(``weigh_excess_*``), which finds under-declared weight as it does at a real port."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from features.watchlist import Watchlists
from pipeline.apps.sim.scenario import SCENARIO_DIR, load_scenario
from pipeline.apps.sim.world import DAY_MS, HOUR_MS, Simulator
from pipeline.contracts import events as c
from pipeline.core.assemble import build_joiner
from pipeline.core.decision.encode import encode

PHYSICAL = ("weigh_excess_ratio", "weigh_excess_kg")
HOURS = 24
MAX_AUC = 0.95
SHIPPED = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def auc(pos: list[float], neg: list[float]) -> float:
    """Rank AUC of one input, either direction (max(a, 1 - a)), ties shared."""
    both = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    rank_sum, i = 0.0, 0
    while i < len(both):
        j = i
        while j < len(both) and both[j][0] == both[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2 * sum(lab for _, lab in both[i:j])
        i = j
    a = (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    return max(a, 1 - a)


def encoded_rows(name: str) -> list[tuple[dict[str, float], str, str]]:
    """(model input, typology, mode) of every declaration of the scenario's first day."""
    sc = load_scenario(name)
    sim = Simulator(sc)
    watch = Watchlists()
    for lead in sim.intel:
        watch.add(lead["kind"], lead["id"], lead["source"], sim.start_ms + 365 * DAY_MS)
    fe = build_joiner(watchlists=watch, split_threshold_cny=sc.split_threshold_cny)
    rows: list[tuple[dict[str, float], str, str]] = []

    def add(readies: list[Any]) -> None:
        for r in readies:
            truth = sim.truth_for(r.decl["decl_id"]) or {}
            rows.append((encode(r.facts), truth.get("typology", "none"), r.decl.get("mode", "road")))

    last = sim.start_ms
    for topic, _key, ev in sim.events(HOURS * HOUR_MS):
        if topic.startswith("bad:") or topic not in c.TOPIC_KIND:
            continue
        add(fe.on_event(topic, ev))
        if ev["ts_ms"] - last > 60_000:
            last = ev["ts_ms"]
            add(fe.advance(last))
    add(fe.advance(sim.start_ms + HOURS * HOUR_MS + DAY_MS))
    return rows


def leaks(pos: list[dict[str, float]], neg: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for x in pos for k in x} - set(PHYSICAL)
    found = {}
    for k in keys:
        a = auc([x.get(k, 0.0) for x in pos], [x.get(k, 0.0) for x in neg])
        if a > MAX_AUC:
            found[k] = round(a, 3)
    return found


@pytest.mark.parametrize("name", SHIPPED)
def test_no_single_input_separates_fraud_from_clean(name: str) -> None:
    rows = encoded_rows(name)
    fraud = [x for x, t, _ in rows if t != "none"]
    clean = [x for x, t, _ in rows if t == "none"]
    assert len(fraud) > 50 and len(clean) > 1000
    assert leaks(fraud, clean) == {}, "an input alone separates fraud from clean"
    by_typology: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for x, t, mode in rows:
        if t != "none":
            by_typology[(t, mode)].append(x)
    for (typ, mode), xs in by_typology.items():
        if len(xs) < 15:
            continue
        same_mode = [x for x, t, m in rows if t == "none" and m == mode]
        assert leaks(xs, same_mode) == {}, f"{name}: {typ} is given away by one input"


def test_watch_source_is_not_a_label() -> None:
    """Every lead source sends true and false leads (graded reliability, not a perfect label)."""
    sim = Simulator(load_scenario("drift"))
    list(sim.events(2 * DAY_MS))
    assert sim.leads is not None
    by_source: dict[str, set[bool]] = defaultdict(set)
    for lead in sim.leads.leads:
        by_source[lead.source].add(lead.true)
    assert len(by_source) >= 3
    assert all(v == {True, False} for v in by_source.values()), by_source
