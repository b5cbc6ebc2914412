"""The honest world's intelligence and noise: graded lead sources whose reliability drifts, leads added
mid-run, true leads that go stale, and the honest traffic that looks like fraud on any single fact.

Used by ``world.Simulator`` when the scenario says ``world: honest``. Draws come from the simulator's RNG in a
fixed order, so a seed still gives one stream.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.apps.sim.scenario import Scenario
    from pipeline.apps.sim.world import Enterprise, Truck

DAY_MS = 86_400_000
# ports differ in how much fraud passes them (remote crossings, commodity mix); a scenario's port_fraud wins
PORT_FRAUD = {"EHT": 0.9, "GQM": 1.2, "CEK": 1.5, "ZGD": 0.8, "MDL": 1.1, "HET": 1.0}
CLUSTERS = 24  # enterprise clusters (trading groups, agencies, home towns)
ALTERNATOR_SHARE = 0.05  # enterprises that alternate clean and dirty shipments
HOPPER_SHARE = 0.06  # declarants who file for enterprises not their own
NIGHT_HOURS = frozenset({22, 23, 0, 1, 2, 3, 4, 5})  # local hours (UTC+8)
LOCAL_OFFSET_H = 8
LEAD_LIFE_DAYS = 12.0  # a true lead's target stays active for an exponential time with this mean
# how often honest traffic shows each single-fact anomaly (gps gap, stop, detour, discount, near threshold)
HONEST_NOISE = {
    "gap": 0.015,
    "stop": 0.015,
    "deviate": 0.008,
    "discount": 0.05,
    "near_threshold": 0.06,
    "part_load": 0.06,
}
# the honest world's wider price spread for catch-all headings (many different goods under one code)
WIDE_PRICE_SIGMA = {"261790": 0.45, "510219": 0.35}


@dataclass(slots=True)
class Lead:
    kind: str  # enterprise | conveyance | declarant
    id: str
    source: str
    ts_ms: int
    true: bool
    active_until_ms: int  # a true lead's target stops offending after this


class LeadBook:
    """Leads by source with graded reliability; a source's reliability walks from day to day."""

    def __init__(self, rng: random.Random, reliability: dict[str, float], drift_per_day: float) -> None:
        self.rng = rng
        self.base = dict(reliability)
        self.drift = drift_per_day
        self.walk: list[dict[str, float]] = [dict(reliability)]
        self.leads: list[Lead] = []
        self.by_id: dict[str, Lead] = {}

    def reliability(self, day: int) -> dict[str, float]:
        while len(self.walk) <= max(0, day):
            prev = self.walk[-1]
            self.walk.append(
                {s: min(0.95, max(0.02, r + self.rng.gauss(0, self.drift))) for s, r in prev.items()}
            )
        return self.walk[max(0, day)]

    def draw_source(self) -> str:
        return self.rng.choice(tuple(self.base))

    def add(self, lead: Lead) -> None:
        old = self.by_id.get(lead.id)
        if old is not None and old.true and not lead.true:
            return  # a second, false lead on a real target changes nothing
        self.leads.append(lead)
        self.by_id[lead.id] = lead

    def active(self, ident: str, ts_ms: int) -> bool:
        lead = self.by_id.get(ident)
        return lead is not None and lead.true and lead.ts_ms <= ts_ms < lead.active_until_ms

    def life_ms(self) -> int:
        return int(self.rng.expovariate(1 / LEAD_LIFE_DAYS) * DAY_MS)

    def intel(self, lead: Lead) -> dict[str, Any]:
        return {
            "kind": lead.kind,
            "id": lead.id,
            "source": lead.source,
            "ts_ms": lead.ts_ms,
        }


def season_factor(amplitude: float, month: int) -> float:
    """Fraud rises in winter (heating coal, year-end quotas): 1 + a*cos(2 pi (month - 1) / 12)."""
    return 1.0 + amplitude * math.cos(2 * math.pi * (month - 1) / 12)


def cluster_multipliers(rng: random.Random, sigma: float) -> list[float]:
    return [math.exp(rng.gauss(0, sigma) - sigma * sigma / 2) for _ in range(CLUSTERS)]


class HonestWorld:
    """The simulator's honest-world part (a mixin of ``world.Simulator``): leads, fraud multipliers,
    combination typologies and the honest anomalies."""

    rng: random.Random
    sc: Scenario
    honest: bool
    start_ms: int
    enterprises: list[Enterprise]
    trucks: list[Truck]
    declarants: list[str]
    hoppers: list[str]
    intel: list[dict[str, Any]]
    watched: set[str]
    watch_true: set[str]
    leads: LeadBook | None
    _lead_share: float
    _offenders: list[Enterprise]
    _aeo: list[Enterprise]

    # ------------------------------------------------------------------------------------ honest world
    def _honest_enterprises(self) -> None:
        rng, sc = self.rng, self.sc
        mults = cluster_multipliers(rng, sc.cluster_sigma)  # 0: no spread between clusters
        for e in self.enterprises:
            e.cluster = rng.randrange(CLUSTERS)
            e.propensity *= mults[e.cluster]
            e.alternator = rng.random() < ALTERNATOR_SHARE
        n_hop = max(1, round(len(self.declarants) * HOPPER_SHARE))
        self.hoppers = rng.sample(self.declarants, min(n_hop, len(self.declarants)))

    def _honest_leads(self) -> None:
        """The initial watchlist: each lead from a source, true with that source's reliability."""
        sc = self.sc
        self.leads = LeadBook(self.rng, sc.lead_reliability(), sc.lead_drift_per_day)
        n_off = max(5, len(self.enterprises) // 20)
        self._offenders = sorted(self.enterprises, key=lambda e: -e.propensity)[:n_off]
        self._aeo = [e for e in self.enterprises if e.credit == "aeo_advanced"] or self.enterprises
        for _ in range(sc.watchlist_size):
            self._new_lead(self.start_ms)

    def _new_lead(self, ts_ms: int) -> None:
        rng, book = self.rng, self.leads
        assert book is not None
        source = book.draw_source()
        true = rng.random() < book.reliability(int((ts_ms - self.start_ms) // DAY_MS))[source]
        kind = rng.choices(("enterprise", "conveyance", "declarant"), (0.55, 0.42, 0.03))[0]
        if kind == "declarant":
            ident = rng.choice(self.hoppers) if true else rng.choice(self.declarants)
        elif kind == "conveyance":
            ident = rng.choice(self.trucks).plate
        elif rng.random() < self.sc.leads_at_good_credit:
            ident = rng.choice(self._aeo).id
        else:
            ident = (rng.choice(self._offenders) if true else rng.choice(self.enterprises)).id
        lead = Lead(kind, ident, source, ts_ms, true, ts_ms + book.life_ms() if true else ts_ms)
        book.add(lead)
        self.intel.append(book.intel(lead))
        self.watched.add(ident)
        if true:
            self.watch_true.add(ident)
        self._lead_share = self._watch_share()

    def _watch_share(self) -> float:
        """The share of trips that touch a true lead's target (P(offend) = prevalence / share)."""
        book = self.leads
        assert book is not None
        share = 0.0
        n_ent, n_trucks = max(1, len(self.enterprises)), max(1, len(self.trucks))
        for lead in book.by_id.values():
            if lead.true and lead.kind == "enterprise":
                share += 1 / n_ent
            elif lead.true and lead.kind == "conveyance":
                share += 1 / n_trucks
        return share

    def _offends_on_lead(
        self, ent: Enterprise, truck: Truck, ts_ms: int, prevalence: dict[str, float]
    ) -> bool:
        """``prevalence`` is the one in force (a phase may bring ``watchlisted`` in or take it out)."""
        target = prevalence.get("watchlisted", 0.0)
        if self.leads is None:  # the legacy world: a true lead's target offends on a quarter of its trips
            touched = ent.id in self.watch_true or truck.plate in self.watch_true
            return touched and target > 0 and self.rng.random() < 0.25
        active = self.leads.active(ent.id, ts_ms) or self.leads.active(truck.plate, ts_ms)
        q = min(0.9, target / self._lead_share) if self._lead_share > 0 else 0.0
        return active and self.rng.random() < q

    def _honest_mult(self, port: str, month: int) -> float:
        sc = self.sc
        port_mult = sc.port_fraud.get(port, PORT_FRAUD.get(port, 1.0))
        return port_mult * season_factor(sc.season_amplitude, month)

    def _combination(self, prevalence: dict[str, float], ent: Enterprise, hour: int, r: float) -> str:
        """Typologies no single fact reveals (honest world), tried before the others."""
        if ent.alternator:
            ent.flip = not ent.flip
            p_alt = prevalence.get("alternating", 0.0) / (ALTERNATOR_SHARE * 0.5)
            if ent.flip and self.rng.random() < p_alt:
                return "alternating"
        p_night = prevalence.get("night_deviation", 0.0) / 0.06 if hour in NIGHT_HOURS else 0.0
        if r < p_night:
            return "night_deviation"
        if r < p_night + prevalence.get("declarant_hopping", 0.0):
            return "declarant_hopping"
        return ""

    def _combo_mass(self, prevalence: dict[str, float], hour: int) -> float:
        p_night = prevalence.get("night_deviation", 0.0) / 0.06 if hour in NIGHT_HOURS else 0.0
        return p_night + prevalence.get("declarant_hopping", 0.0)

    def _track_mode(self, typ: str, gate_in: int) -> str:
        """Honest world: an honest truck's gap, stop or detour (detours are common at night, when the
        approved road is closed); a night deviation shows as a detour, or as a gap or stop instead."""
        if not self.honest:
            return ""
        night = (gate_in // 3_600_000 + LOCAL_OFFSET_H) % 24 in NIGHT_HOURS  # local time, like the typology
        if typ == "night_deviation":
            return self.rng.choices(("night", "gap", "stop"), (0.6, 0.2, 0.2))[0]
        if typ:
            return ""
        r, acc = self.rng.random(), 0.0
        for mode in ("gap", "stop", "deviate"):
            acc += HONEST_NOISE[mode] * (4.0 if night and mode == "deviate" else 1.0)
            if r < acc:
                return mode
        return ""
