"""The world: enterprises, trucks, self-drive vehicles, intelligence leads, and trips that become events.

``Simulator(scenario, seed, start_ms).events(duration_ms)`` yields ``(topic, key, event)`` in time order.
Ground truth never appears in an event: it is kept in ``truth`` (decl_id -> record) for the oracle and for
scoring benchmarks. Everything is drawn from one seeded RNG in a fixed order: the same seed and scenario give
byte-identical output.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from features import geometry
from pipeline.apps.sim import honest as hw
from pipeline.apps.sim.catalogue import (
    BY_HS,
    COMMODITIES,
    HONEST_MAIN_BY_SOURCE,
    MAIN_BY_SOURCE,
    Commodity,
)
from pipeline.apps.sim.scenario import (
    COMBINATION_TYPOLOGIES,
    CREDIT_GRADES,
    TYPOLOGIES,
    Scenario,
)
from pipeline.apps.sim.selfdrive import SelfDriveTraffic
from pipeline.contracts import events as c
from pipeline.contracts import sites

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
# trips per hour of the day (shifts, night lull)
# fmt: off
RHYTHM = (
    0.15, 0.1, 0.1, 0.1, 0.15, 0.3, 0.7, 1.1, 1.5, 1.6, 1.6, 1.4,
    1.1, 1.4, 1.6, 1.6, 1.5, 1.3, 1.0, 0.8, 0.6, 0.45, 0.3, 0.2,
)
# fmt: on
_RHYTHM_SUM = sum(RHYTHM)
TRUCK_PORTS = tuple(code for code in sites.CROSSINGS)
SELF_DRIVE_PORTS = ("EHT", "ZGD")
DEFAULT_START_MS = 1_780_272_000_000  # 2026-06-01T00:00Z
LOOKBACK_MS = 10 * HOUR_MS
SPLIT_PARTS = (3, 6)
SPLIT_MEAN = sum(SPLIT_PARTS) / 2  # no trip emits an event earlier than this before its gate-in


@dataclass(slots=True)
class Enterprise:
    id: str
    credit: str
    main_hs: str
    habit: float  # declared/true value habit of honest declarations
    propensity: float  # multiplier on the scenario's prevalence
    declarant: str
    cluster: int = 0
    alternator: bool = False  # honest world: alternates clean and dirty shipments
    flip: bool = False


@dataclass(slots=True)
class Truck:
    plate: str
    port: str
    propensity: float


def local_month(ts_ms: int) -> int:
    """The calendar month at the ports (UTC+8) of an event time."""
    return dt.datetime.fromtimestamp(ts_ms / 1000 + 8 * 3600, tz=dt.UTC).month


def local_hour(ts_ms: int) -> int:
    return int((ts_ms // HOUR_MS + 8) % 24)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class Simulator(hw.HonestWorld, SelfDriveTraffic):
    def __init__(self, scenario: Scenario, seed: int | None = None, start_ms: int | None = None) -> None:
        self.sc = scenario
        self.seed = scenario.seed if seed is None else seed
        self.rng = random.Random(self.seed)
        self.start_ms = start_ms if start_ms is not None else scenario.start_ms
        self.honest = scenario.world == "honest"
        self.leads: hw.LeadBook | None = None
        self.hoppers: list[str] = []
        self._lead_share = 0.0  # honest world: share of trips touching a true lead's target
        self.truth: dict[str, dict[str, Any]] = {}
        self.intel: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.bad_injected = 0
        self.emitted: list[str] = []  # declaration ids in emission order (truth is written for these)
        self._seq = 0
        self._heap: list[tuple[int, int, str, str, Any]] = []
        self._n_decl = 0
        self._sd_open: dict[str, int] = {}
        self._busy: dict[str, int] = {}  # plate -> end of its current trip
        self._build_world()

    # ------------------------------------------------------------------------------------------- world
    def _build_world(self) -> None:
        rng, sc = self.rng, self.sc
        self.declarants = [f"B{i:03d}" for i in range(sc.declarants)]
        self.enterprises: list[Enterprise] = []
        for i in range(sc.enterprises):
            credit = rng.choices(CREDIT_GRADES, [sc.credit_mix.get(g, 0.0) for g in CREDIT_GRADES])[0]
            prop = {"aeo_advanced": 0.3, "general": 1.0, "distrusted": 3.0}[credit]
            if rng.random() < 0.03:
                prop *= 6.0  # a habitual offender
            source = rng.choice(("coal", "copper", "mixed", "mixed"))
            table = HONEST_MAIN_BY_SOURCE if self.honest else MAIN_BY_SOURCE
            self.enterprises.append(
                Enterprise(
                    f"E{i:05d}",
                    credit,
                    rng.choice(table[source]),
                    rng.gauss(1.0, 0.04),
                    prop,
                    rng.choice(self.declarants),
                )
            )
        if self.honest:
            self._honest_enterprises()
        mean_prop = sum(e.propensity for e in self.enterprises) / max(1, len(self.enterprises))
        for e in self.enterprises:
            e.propensity /= mean_prop
        self.trucks: list[Truck] = []
        weights = [sites.PORTS[p].share for p in TRUCK_PORTS]
        for i in range(sc.trucks):
            port = rng.choices(TRUCK_PORTS, weights)[0]
            self.trucks.append(Truck(f"MN-{i:04d}-{port[:2]}", port, 3.0 if rng.random() < 0.05 else 1.0))
        self.trucks_by_port = {p: [t for t in self.trucks if t.port == p] for p in TRUCK_PORTS}
        self.self_drive = [
            (f"NM-SD-{i:04d}", f"IC{i:06d}", rng.choice(SELF_DRIVE_PORTS))
            for i in range(sc.self_drive_vehicles)
        ]
        self.watch_true: set[str] = set()
        self.watched: set[str] = set()
        if self.honest:
            self._honest_leads()
            return
        # intelligence: leads on conveyances and enterprises; a realistic share are false
        n_true = round(sc.watchlist_size * (1 - sc.false_lead_share))
        offenders = sorted(self.enterprises, key=lambda e: -e.propensity)[: max(1, n_true // 2)]
        risky_trucks = [t for t in self.trucks if t.propensity > 1][: max(1, n_true - len(offenders))]
        for e in offenders:
            self.watch_true.add(e.id)
            self.intel.append({"kind": "enterprise", "id": e.id, "source": "informant"})
        for t in risky_trucks:
            self.watch_true.add(t.plate)
            self.intel.append({"kind": "conveyance", "id": t.plate, "source": "border-police"})
        for _ in range(sc.watchlist_size - len(self.intel)):
            if rng.random() < 0.5:
                self.intel.append(
                    {
                        "kind": "enterprise",
                        "id": rng.choice(self.enterprises).id,
                        "source": "hotline",
                    }
                )
            else:
                self.intel.append(
                    {
                        "kind": "conveyance",
                        "id": rng.choice(self.trucks).plate,
                        "source": "hotline",
                    }
                )
        self.watched = {x["id"] for x in self.intel}

    # -------------------------------------------------------------------------------------------- events
    def _push(self, topic: str, ev: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (ev["ts_ms"], self._seq, topic, ev["conveyance_id"], ev))

    def events(self, duration_ms: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every event of ``duration_ms`` of simulated time from ``start_ms``, in ts order."""
        end = self.start_ms + duration_ms
        hour = self.start_ms
        bad_every = (
            max(1, int(duration_ms / HOUR_MS) // max(1, self.sc.bad_events)) if self.sc.bad_events else 0
        )
        hours = 0
        while hour < end:
            self._generate_hour(hour, min(HOUR_MS, end - hour))
            hour += HOUR_MS
            hours += 1
            if bad_every and hours % bad_every == 0 and self.bad_injected < self.sc.bad_events:
                self._push_bad(hour - 1)
            yield from self._drain(hour - LOOKBACK_MS, end)
        yield from self._drain(end, end)

    def _drain(self, upto: int, end: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
        heap = self._heap
        while heap and heap[0][0] < upto:
            ts, _, topic, key, ev = heapq.heappop(heap)
            if ts >= end:
                continue
            if topic.startswith("bad:"):
                self.bad_injected += 1
                yield topic, key, ev
                continue
            if ts < self.start_ms:
                continue
            self.counts[topic] = self.counts.get(topic, 0) + 1
            if topic == c.DECLARATIONS:
                self.emitted.append(ev["decl_id"])
            yield topic, key, ev

    def truth_records(self) -> Iterator[dict[str, Any]]:
        """Ground truth of every emitted declaration, in emission order (for the truth file)."""
        for decl_id in self.emitted:
            yield self.truth[decl_id]

    def truth_for(self, decl_id: str) -> dict[str, Any] | None:
        return self.truth.get(decl_id)

    def _push_bad(self, ts: int) -> None:
        from pipeline.apps.generator import BAD_KINDS, bad_record

        topic, key, raw = bad_record(BAD_KINDS[self.bad_injected % len(BAD_KINDS)], self.rng, ts)
        self._seq += 1
        heapq.heappush(self._heap, (ts, self._seq, "bad:" + topic, key.decode(), raw))

    def _generate_hour(self, hour_ms: int, span_ms: int) -> None:
        rng, sc = self.rng, self.sc
        day = (hour_ms - self.start_ms) / DAY_MS
        month = local_month(hour_ms)
        h = local_hour(hour_ms)  # the day's rhythm is the crossing's, on local time (UTC+8)
        if self.leads is not None and self.sc.leads_per_day > 0:
            for _ in range(_poisson(rng, self.sc.leads_per_day * span_ms / DAY_MS)):
                self._new_lead(hour_ms + int(rng.random() * span_ms))
        frac = span_ms / HOUR_MS
        prevalence = sc.prevalence_at(day)
        for port in TRUCK_PORTS:
            p = sites.PORTS[port]
            if p.seasonal_months is not None and month not in p.seasonal_months:
                continue
            lam = sc.trips_per_day * p.share * RHYTHM[h] / _RHYTHM_SUM * sc.surge_factor(port, day) * frac
            for _ in range(_poisson(rng, lam)):
                self._trip(port, hour_ms + int(rng.random() * span_ms), prevalence)
        lam = sc.self_drive_per_day * (RHYTHM[h] / _RHYTHM_SUM) * frac
        for _ in range(_poisson(rng, lam)):
            self._self_drive(hour_ms + int(rng.random() * span_ms), prevalence)

    # ------------------------------------------------------------------------------------------- trips
    def _pick_typology(
        self,
        prevalence: dict[str, float],
        ent: Enterprise,
        truck: Truck,
        com: Commodity,
        ts_ms: int = 0,
    ) -> str:
        if self._offends_on_lead(ent, truck, ts_ms, prevalence):
            return "watchlisted"
        mult = ent.propensity * truck.propensity
        r = self.rng.random()
        acc = 0.0
        if self.honest:
            mult *= self._honest_mult(truck.port, local_month(ts_ms))
            combo = self._combination(prevalence, ent, local_hour(ts_ms), r / mult if mult else 1.0)
            if combo:
                return combo
            acc = self._combo_mass(prevalence, local_hour(ts_ms)) * mult
        for t in TYPOLOGIES:
            if t in ("self_drive_abuse", "watchlisted") or t in COMBINATION_TYPOLOGIES:
                continue
            if (t == "coal_grade" and not com.grade_prices) or (t == "hs_misclass" and not com.misclass_to):
                continue  # prevalence is a share of the declarations a typology can apply to
            p = prevalence.get(t, 0.0) * mult
            if t == "split_shipment":
                p /= SPLIT_MEAN  # one decision makes SPLIT_MEAN declarations
            acc += p
            if r < acc:
                return t
        return ""

    def _trip(
        self,
        port: str,
        gate_in: int,
        prevalence: dict[str, float],
        forced: str = "",
        ent: Enterprise | None = None,
        com: Commodity | None = None,
    ) -> None:
        rng = self.rng
        truck = self._free_truck(port, gate_in)
        ent = ent or rng.choice(self.enterprises)
        if com is None:
            others = COMMODITIES if self.honest else COMMODITIES[:7]
            com = BY_HS[ent.main_hs] if rng.random() < 0.8 else rng.choice(others)
        typ = forced or self._pick_typology(prevalence, ent, truck, com, gate_in)
        if typ == "split_shipment" and not forced:
            self._split(port, gate_in, ent, prevalence)
            return
        self._n_decl += 1
        decl_id = f"D{self.seed % 1000:03d}-{self._n_decl:08d}"
        g = self._goods(com, ent, typ)
        decl_ts = (
            gate_in + int(rng.uniform(10, 40) * MIN_MS)
            if rng.random() > 0.2
            else gate_in - int(rng.uniform(5, 60) * MIN_MS)
        )
        self._track(truck.plate, port, gate_in, typ == "concealment", self._track_mode(typ, gate_in))
        gate = rng.choice(sites.PORTS[port].gates)
        self._logistics(decl_id, truck.plate, port, gate, gate_in, g["gross"], g["manifest"])
        decl = {
            "decl_id": decl_id,
            "ts_ms": decl_ts,
            "enterprise_id": ent.id,
            "credit_grade": ent.credit,
            "declarant_id": g["declarant"] or ent.declarant,
            "hs_code": g["hs"],
            "goods": BY_HS[g["hs"]].goods,
            "origin": "MN",
            "port": port,
            "mode": "road",
            "conveyance_id": truck.plate,
            "gross_kg": round(g["d_gross"], 1),
            "net_kg": round(g["d_net"], 1),
            "quantity": round(g["d_net"] / 1000, 3),
            "unit": "t",
            "value_cny": round(g["value"], 2),
        }
        if g["grade"]:
            decl["grade"] = g["grade"]
        self._push(c.DECLARATIONS, decl)
        self._push(
            c.LOGISTICS,
            {
                "event_id": f"O{decl_id}",
                "kind": "gate_out",
                "ts_ms": max(decl_ts, gate_in) + int(rng.uniform(20, 120) * MIN_MS),
                "conveyance_id": truck.plate,
                "port": port,
                "gate": gate,
            },
        )
        self._truth(decl_id, decl_ts, port, ent.id, truck.plate, typ, g["at_stake"])

    def _goods(self, com: Commodity, ent: Enterprise, typ: str) -> dict[str, Any]:
        """What the truck carries and what is declared (weights, heading, grade, value, value at stake)."""
        rng, honest = self.rng, self.honest
        net = rng.uniform(*com.net_kg)
        small = honest and not typ and com.price_cny_per_kg >= 20
        if (small and rng.random() < hw.HONEST_NOISE["near_threshold"]) or (
            honest and typ == "split_shipment"
        ):
            net = self.sc.split_threshold_cny * rng.uniform(0.8, 0.99) / com.price_cny_per_kg  # a small lot
        gross = net * rng.uniform(1.02, 1.05)
        grade = ""
        sigma = hw.WIDE_PRICE_SIGMA.get(com.hs_code, com.price_sigma) if honest else com.price_sigma
        price = com.price_cny_per_kg * math.exp(rng.gauss(0, sigma))
        if com.grade_prices:
            grade = rng.choice(("A", "B"))
            price = dict(com.grade_prices)[grade] * math.exp(rng.gauss(0, com.price_sigma / 2))
        true_value = net * price
        value = true_value * ent.habit
        if honest and not typ and rng.random() < hw.HONEST_NOISE["part_load"]:
            part = rng.uniform(0.01, 0.3)  # a part load, a sample, a small order
            net, gross, true_value = net * part, gross * part, true_value * part
        if honest and not typ and rng.random() < hw.HONEST_NOISE["discount"]:
            value = true_value * rng.uniform(0.55, 0.92)  # a real discount: damaged lot, long contract
        g = {
            "hs": com.hs_code,
            "grade": grade,
            "d_net": net,
            "d_gross": gross,
            "gross": gross,
            "manifest": gross,
        }
        if honest and rng.random() < 0.05:
            g["manifest"] = gross * rng.uniform(0.92, 1.08)  # a carrier's slip on the manifest
        g.update(value=value, at_stake=0.0, declarant="")
        if honest and not typ and rng.random() < 0.08:
            g["declarant"] = rng.choice(self.declarants)  # a declarant standing in for a colleague
        if typ:
            self._fraud(g, com, typ, net, gross, true_value)
        return g

    def _fraud(
        self,
        g: dict[str, Any],
        com: Commodity,
        typ: str,
        net: float,
        gross: float,
        true_value: float,
    ) -> None:
        rng = self.rng
        if typ == "undervaluation":
            g["value"] = true_value * (rng.uniform(0.4, 0.8) if self.honest else rng.uniform(0.35, 0.65))
            g["at_stake"] = (true_value - g["value"]) * com.duty
        elif typ == "coal_grade":
            g["grade"] = "B"
            price_a = dict(com.grade_prices)["A"] * math.exp(rng.gauss(0, com.price_sigma / 2))
            true_value = net * price_a
            g["value"] = net * dict(com.grade_prices)["B"] * math.exp(rng.gauss(0, 0.03))
            g["at_stake"] = (true_value - g["value"]) * com.duty
        elif typ == "weight_underdeclared":
            k = rng.uniform(0.78, 0.92)
            g["d_net"], g["d_gross"], g["value"] = net * k, gross * k, true_value * k
            if self.honest and rng.random() < 0.7:
                g["manifest"] = gross * k  # the carrier's papers agree with the declaration
            g["at_stake"] = (true_value - g["value"]) * com.duty
        elif typ == "hs_misclass":
            g["hs"] = com.misclass_to
            g["at_stake"] = true_value * (com.duty - BY_HS[g["hs"]].duty)
        elif typ in ("concealment", "watchlisted", "contraband", "night_deviation"):
            g["at_stake"] = rng.uniform(80_000, 600_000)
        elif typ == "split_shipment":
            if not self.honest:
                g["value"] = self.sc.split_threshold_cny * rng.uniform(0.86, 0.99)
            else:  # a small lot at its true price (see _goods), kept under the threshold
                g["value"] = min(g["value"], self.sc.split_threshold_cny * 0.99)
            g["at_stake"] = g["value"] * com.duty
        elif typ in ("alternating", "declarant_hopping"):
            g["value"] = true_value * rng.uniform(0.7, 0.9)
            g["at_stake"] = (true_value - g["value"]) * com.duty + rng.uniform(20_000, 150_000)
            if typ == "declarant_hopping" and self.hoppers:
                g["declarant"] = rng.choice(self.hoppers)

    def _logistics(
        self, decl_id: str, plate: str, port: str, gate: str, gate_in: int, gross: float, manifest: float
    ) -> None:
        rng = self.rng
        base = {"conveyance_id": plate, "port": port}
        self._push(
            c.LOGISTICS,
            {
                "event_id": f"G{decl_id}",
                "kind": "gate_in",
                "ts_ms": gate_in,
                **base,
                "gate": gate,
            },
        )
        self._push(
            c.LOGISTICS,
            {
                "event_id": f"W{decl_id}",
                "kind": "weighbridge",
                "ts_ms": gate_in + int(rng.uniform(3, 15) * MIN_MS),
                **base,
                "gate": gate,
                "measured_gross_kg": round(gross * (1 + rng.gauss(0, 0.0025)), 1),
            },
        )
        self._push(
            c.LOGISTICS,
            {
                "event_id": f"M{decl_id}",
                "kind": "manifest",
                "ts_ms": gate_in - int(rng.uniform(60, 360) * MIN_MS),
                **base,
                "manifest_id": f"MF{decl_id}",
                "manifest_gross_kg": round(manifest, 1),
                "manifest_items": 1,
            },
        )

    def _free_truck(self, port: str, gate_in: int) -> Truck:
        """A truck of that port not on another trip (a round trip takes about half a day)."""
        fleet = self.trucks_by_port[port]
        if not fleet:  # a small fleet left this port without a truck of its own: one is hired
            truck = Truck(f"MN-H{len(self.trucks):05d}-{port[:2]}", port, 1.0)
            self.trucks.append(truck)
            fleet.append(truck)
        truck = self.rng.choice(fleet)
        for _ in range(20):
            if self._busy.get(truck.plate, 0) <= gate_in - 4 * HOUR_MS:
                break
            truck = self.rng.choice(fleet)
        else:
            # every truck tried is still on a trip (a surge): a hired truck joins the port's fleet, as in
            # life, rather than one truck driving two trips at once
            truck = Truck(f"MN-H{len(self.trucks):05d}-{port[:2]}", port, 1.0)
            self.trucks.append(truck)
            fleet.append(truck)
        self._busy[truck.plate] = gate_in + 8 * HOUR_MS
        return truck

    def _split(self, port: str, t0: int, ent: Enterprise, prevalence: dict[str, float]) -> None:
        rng = self.rng
        if self.honest:  # any goods whose full truck is worth well over the threshold
            t = 2 * self.sc.split_threshold_cny
            com = rng.choice([x for x in COMMODITIES if x.price_cny_per_kg * x.net_kg[1] >= t])
        else:
            com = rng.choice([x for x in COMMODITIES if x.price_cny_per_kg >= 20])
        for _ in range(rng.randint(*SPLIT_PARTS)):
            self._trip(port, t0, prevalence, forced="split_shipment", ent=ent, com=com)
            t0 += int(rng.uniform(40, 300) * MIN_MS)

    def _truth(
        self,
        decl_id: str,
        ts: int,
        port: str,
        ent: str,
        conv: str,
        typ: str,
        at_stake: float,
    ) -> None:
        self.truth[decl_id] = {
            "decl_id": decl_id,
            "ts_ms": ts,
            "port": port,
            "enterprise_id": ent,
            "conveyance_id": conv,
            "is_fraud": bool(typ),
            "typology": typ or "none",
            "value_at_stake_cny": round(at_stake, 2),
        }

    def _track(self, plate: str, port: str, gate_in: int, conceal: bool, honest_mode: str = "") -> None:
        """GPS points along the corridor for the last 60-90 km before the gate (one every 30-60 s)."""
        rng = self.rng
        mine, crossing, gate_pos, _ = sites.CORRIDORS[port]
        dist = geometry.haversine_km(mine, crossing)
        km = min(rng.uniform(60, 90), dist) + geometry.haversine_km(crossing, gate_pos)
        speed = rng.uniform(40, 60)
        duration = int(km / speed * HOUR_MS)
        mode = rng.choice(("gap", "stop", "deviate")) if conceal else honest_mode
        off = {"deviate": 0.12, "night": rng.uniform(0.04, 0.08)}.get(mode, 0.0) if self.honest else 0.12
        if self.honest and mode == "deviate" and not conceal:
            off = rng.uniform(0.015, 0.08)  # an honest detour: roadworks, a fuel stop off the road
        stop_ms = int(rng.uniform(35, 70) * MIN_MS) if mode == "stop" else 0
        if stop_ms and not conceal:
            stop_ms = int(rng.uniform(10, 35) * MIN_MS)  # an honest rest stop
        t = gate_in - duration - stop_ms
        gap_from = t + int(duration * rng.uniform(0.3, 0.6)) if mode == "gap" else -1
        gap_min = (10, 40) if mode == "gap" and not conceal else (35, 90)  # honest: a tunnel, a dead zone
        gap_to = gap_from + int(rng.uniform(*gap_min) * MIN_MS) if mode == "gap" else -1
        stopped = 0
        while t < gate_in:
            frac = 1 - (gate_in - t - (stop_ms - stopped)) / duration if duration else 1.0
            frac = min(1.0, max(0.0, frac))
            rem_km = km * (1 - frac)
            to_crossing = geometry.haversine_km(crossing, gate_pos)
            if rem_km > to_crossing:  # still in Mongolia, on the mine -> crossing leg
                f = 1 - (rem_km - to_crossing) / dist
                a, b = mine, crossing
            else:
                f = 1 - rem_km / to_crossing if to_crossing else 1.0
                a, b = crossing, gate_pos
            lat = a[0] + (b[0] - a[0]) * f
            lon = a[1] + (b[1] - a[1]) * f
            v = speed * rng.uniform(0.85, 1.15)
            if mode in ("deviate", "night") and 0.25 < frac < 0.6:
                lat += off  # 0.12: ~13 km off the approved road
            if mode == "stop" and stopped < stop_ms and rem_km < to_crossing + 4:
                v = 0.0
                step = int(rng.uniform(30, 60) * 1000)
                stopped += step
            else:
                step = int(rng.uniform(30, 60) * 1000)
            if not (gap_from <= t < gap_to) and rng.random() > 0.02:
                self._push(
                    c.TRACKS,
                    {
                        "conveyance_id": plate,
                        "ts_ms": t,
                        "lat": round(lat + rng.gauss(0, 0.0004), 5),
                        "lon": round(lon + rng.gauss(0, 0.0004), 5),
                        "speed_kmh": round(v, 1),
                    },
                )
            t += step
