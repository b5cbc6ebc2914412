"""The simulator path of benchmarks/quality.py: pipeline/apps/sim events -> facts -> rule hits -> Items.

Facts come from ``features.engine.FeatureEngine`` (the simulator's intelligence leads loaded as watchlists),
hits from rules/packs/starter.yaml: the same pure core the stream runs. Ground truth comes from
``Simulator.truth_for``; inspection outcomes and their delays from ``InspectionOracle`` (lane-dependent
detection), per strategy.
"""

from __future__ import annotations

from typing import Any

from benchmarks.quality_common import DAY_MS, Item, World
from features.watchlist import Watchlists
from pipeline.apps.sim.oracle import InspectionOracle
from pipeline.apps.sim.scenario import load_scenario
from pipeline.apps.sim.world import Simulator
from pipeline.contracts import events as c
from pipeline.core.assemble import build_joiner
from rules.engine import load_default_pack

FEATURES = "features.engine + rules/packs/starter.yaml"


def _pipeline(sim: Simulator, split_threshold_cny: float) -> tuple[Any, Any, Watchlists]:
    """The shipped feature engine (with the scenario's split threshold) and starter pack; the simulator's
    intelligence leads as live watchlists (leads added mid-run join the watchlists at their time)."""
    w = Watchlists()
    return build_joiner(watchlists=w, split_threshold_cny=split_threshold_cny), load_default_pack(), w


def sim_items(scenario: str, days: int, seed: int | None = None) -> World:
    """The scenario's items over ``days``; ``seed`` None is the scenario's own seed."""
    sc = load_scenario(scenario)
    sim = Simulator(sc, seed=seed)
    joiner, rules, watch = _pipeline(sim, sc.split_threshold_cny)
    items: list[Item] = []
    n_leads = 0
    pending: list[dict[str, Any]] = []

    def leads_until(ts_ms: int) -> None:
        nonlocal n_leads, pending
        if len(sim.intel) > n_leads:
            pending = sorted(pending + sim.intel[n_leads:], key=lambda x: x.get("ts_ms", 0))
            n_leads = len(sim.intel)
        while pending and pending[0].get("ts_ms", 0) <= ts_ms:
            lead = pending.pop(0)
            watch.add(lead["kind"], lead["id"], lead.get("source", "intel"), sim.start_ms + 365 * DAY_MS)

    def add(readies: list[Any]) -> None:
        for r in readies:
            truth = sim.truth_for(r.decl["decl_id"]) or {}
            fraud = bool(truth.get("is_fraud"))
            ts = max(r.trigger_ts_ms, r.decl["ts_ms"])
            items.append(
                Item(
                    ts,
                    r.decl,
                    r.facts,
                    list(rules.evaluate(r.facts)),
                    fraud,
                    float(truth.get("value_at_stake_cny", 0.0)) if fraud else 0.0,
                    truth.get("typology", "") if fraud else "",
                    0,
                )
            )

    last = sim.start_ms
    leads_until(sim.start_ms)
    for topic, _key, ev in sim.events(days * DAY_MS):
        if topic.startswith("bad:") or topic not in c.TOPIC_KIND:
            continue
        leads_until(ev["ts_ms"])
        add(joiner.on_event(topic, ev))
        if ev["ts_ms"] - last > 60_000:
            last = ev["ts_ms"]
            add(joiner.advance(last))
    add(joiner.advance(sim.start_ms + days * DAY_MS + DAY_MS))
    items.sort(key=lambda it: it.ts_ms)
    # the drift check follows the first typology that a phase brings from zero prevalence
    drift_day, new_typology = None, None
    for ph in sc.phases:
        for typ, share in ph.prevalence.items():
            if share > 0 and sc.prevalence.get(typ, 0.0) == 0.0 and new_typology is None:
                drift_day, new_typology = int(ph.at_day), typ
    return World(
        items,
        sim.start_ms,
        drift_day,
        new_typology,
        lambda: InspectionOracle(sim.truth_for, sim.seed, delay_min=sc.inspection_delay_min),
        seed=sim.seed,
        budget=sc.budget_share,
    )
