"""The world: enterprises, trucks, self-drive vehicles, intelligence leads, and trips that become events.

``Simulator(scenario, seed, start_ms).events(duration_ms)`` yields ``(topic, key, event)`` in time order.
Ground truth never appears in an event: it is kept in ``truth`` (decl_id -> record) for the oracle and for
scoring benchmarks. Everything is drawn from one seeded RNG in a fixed order: the same seed and scenario give
byte-identical output.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from features.geometry import haversine_km
from pipeline.apps.sim.catalogue import BY_HS, COMMODITIES, MAIN_BY_SOURCE, SELF_DRIVE_GOODS, Commodity
from pipeline.apps.sim.scenario import TYPOLOGIES, Scenario
from pipeline.contracts import events as c
from pipeline.contracts import sites

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
# trips per hour of the day (shifts, night lull)
RHYTHM = (
    0.15,
    0.1,
    0.1,
    0.1,
    0.15,
    0.3,
    0.7,
    1.1,
    1.5,
    1.6,
    1.6,
    1.4,
    1.1,
    1.4,
    1.6,
    1.6,
    1.5,
    1.3,
    1.0,
    0.8,
    0.6,
    0.45,
    0.3,
    0.2,
)
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


@dataclass(slots=True)
class Truck:
    plate: str
    port: str
    propensity: float


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


class Simulator:
    def __init__(self, scenario: Scenario, seed: int | None = None, start_ms: int | None = None) -> None:
        self.sc = scenario
        self.seed = scenario.seed if seed is None else seed
        self.rng = random.Random(self.seed)
        self.start_ms = start_ms if start_ms is not None else DEFAULT_START_MS
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
            credit = rng.choices(("aeo_advanced", "general", "distrusted"), (0.1, 0.82, 0.08))[0]
            prop = {"aeo_advanced": 0.3, "general": 1.0, "distrusted": 3.0}[credit]
            if rng.random() < 0.03:
                prop *= 6.0  # a habitual offender
            source = rng.choice(("coal", "copper", "mixed", "mixed"))
            self.enterprises.append(
                Enterprise(
                    f"E{i:05d}",
                    credit,
                    rng.choice(MAIN_BY_SOURCE[source]),
                    rng.gauss(1.0, 0.04),
                    prop,
                    rng.choice(self.declarants),
                )
            )
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
        # intelligence: leads on conveyances and enterprises; a realistic share are false
        self.watch_true: set[str] = set()
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
                    {"kind": "enterprise", "id": rng.choice(self.enterprises).id, "source": "hotline"}
                )
            else:
                self.intel.append(
                    {"kind": "conveyance", "id": rng.choice(self.trucks).plate, "source": "hotline"}
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
        month = int(((hour_ms // DAY_MS) % 365) / 30.5) + 1
        h = (hour_ms // HOUR_MS) % 24
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
        self, prevalence: dict[str, float], ent: Enterprise, truck: Truck, com: Commodity
    ) -> str:
        if (ent.id in self.watch_true or truck.plate in self.watch_true) and self.rng.random() < 0.25:
            return "watchlisted"
        mult = ent.propensity * truck.propensity
        r = self.rng.random()
        acc = 0.0
        for t in TYPOLOGIES:
            if t in ("self_drive_abuse", "watchlisted"):
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
            com = BY_HS[ent.main_hs] if rng.random() < 0.8 else rng.choice(COMMODITIES[:7])
        typ = forced or self._pick_typology(prevalence, ent, truck, com)
        if typ == "split_shipment" and not forced:
            self._split(port, gate_in, ent, prevalence)
            return
        self._n_decl += 1
        decl_id = f"D{self.seed % 1000:03d}-{self._n_decl:08d}"
        net = rng.uniform(*com.net_kg)
        gross = net * rng.uniform(1.02, 1.05)
        grade = ""
        price = com.price_cny_per_kg * math.exp(rng.gauss(0, com.price_sigma))
        if com.grade_prices:
            grade = rng.choice(("A", "B"))
            price = dict(com.grade_prices)[grade] * math.exp(rng.gauss(0, com.price_sigma / 2))
        true_value = net * price
        value = true_value * ent.habit
        hs = com.hs_code
        d_net, d_gross, at_stake = net, gross, 0.0
        if typ == "undervaluation":
            value = true_value * rng.uniform(0.35, 0.65)
            at_stake = (true_value - value) * com.duty
        elif typ == "coal_grade":
            grade = "B"
            price_a = dict(com.grade_prices)["A"] * math.exp(rng.gauss(0, com.price_sigma / 2))
            true_value = net * price_a
            value = net * dict(com.grade_prices)["B"] * math.exp(rng.gauss(0, 0.03))
            at_stake = (true_value - value) * com.duty
        elif typ == "weight_underdeclared":
            k = rng.uniform(0.78, 0.92)
            d_net, d_gross, value = net * k, gross * k, true_value * k
            at_stake = (true_value - value) * com.duty
        elif typ == "hs_misclass":
            hs = com.misclass_to
            at_stake = true_value * (com.duty - BY_HS[hs].duty)
        elif typ in ("concealment", "watchlisted", "contraband"):
            at_stake = rng.uniform(80_000, 600_000)
        elif typ == "split_shipment":
            value = self.sc.split_threshold_cny * rng.uniform(0.86, 0.99)
            at_stake = value * com.duty
        decl_ts = (
            gate_in + int(rng.uniform(10, 40) * MIN_MS)
            if rng.random() > 0.2
            else gate_in - int(rng.uniform(5, 60) * MIN_MS)
        )
        self._track(truck.plate, port, gate_in, typ == "concealment")
        gate = rng.choice(sites.PORTS[port].gates)
        self._push(
            c.LOGISTICS,
            {
                "event_id": f"G{decl_id}",
                "kind": "gate_in",
                "ts_ms": gate_in,
                "conveyance_id": truck.plate,
                "port": port,
                "gate": gate,
            },
        )
        self._push(
            c.LOGISTICS,
            {
                "event_id": f"W{decl_id}",
                "kind": "weighbridge",
                "ts_ms": gate_in + int(rng.uniform(3, 15) * MIN_MS),
                "conveyance_id": truck.plate,
                "port": port,
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
                "conveyance_id": truck.plate,
                "port": port,
                "manifest_id": f"MF{decl_id}",
                "manifest_gross_kg": round(gross, 1),
                "manifest_items": 1,
            },
        )
        decl = {
            "decl_id": decl_id,
            "ts_ms": decl_ts,
            "enterprise_id": ent.id,
            "credit_grade": ent.credit,
            "declarant_id": ent.declarant,
            "hs_code": hs,
            "goods": BY_HS[hs].goods,
            "origin": "MN",
            "port": port,
            "mode": "road",
            "conveyance_id": truck.plate,
            "gross_kg": round(d_gross, 1),
            "net_kg": round(d_net, 1),
            "quantity": round(d_net / 1000, 3),
            "unit": "t",
            "value_cny": round(value, 2),
        }
        if grade:
            decl["grade"] = grade
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
        self._truth(decl_id, decl_ts, port, ent.id, truck.plate, typ, at_stake)

    def _free_truck(self, port: str, gate_in: int) -> Truck:
        """A truck of that port not on another trip (a round trip takes about half a day)."""
        fleet = self.trucks_by_port[port]
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
        com = rng.choice([x for x in COMMODITIES if x.price_cny_per_kg >= 20])
        for _ in range(rng.randint(*SPLIT_PARTS)):
            self._trip(port, t0, prevalence, forced="split_shipment", ent=ent, com=com)
            t0 += int(rng.uniform(40, 300) * MIN_MS)

    def _truth(
        self, decl_id: str, ts: int, port: str, ent: str, conv: str, typ: str, at_stake: float
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

    def _track(self, plate: str, port: str, gate_in: int, conceal: bool) -> None:
        """GPS points along the corridor for the last 60-90 km before the gate (one every 30-60 s)."""
        rng = self.rng
        mine, crossing, gate_pos, _ = sites.CORRIDORS[port]
        dist = haversine_km(mine, crossing)
        km = min(rng.uniform(60, 90), dist) + haversine_km(crossing, gate_pos)
        speed = rng.uniform(40, 60)
        duration = int(km / speed * HOUR_MS)
        mode = rng.choice(("gap", "stop", "deviate")) if conceal else ""
        stop_ms = int(rng.uniform(35, 70) * MIN_MS) if mode == "stop" else 0
        t = gate_in - duration - stop_ms
        gap_from = t + int(duration * rng.uniform(0.3, 0.6)) if mode == "gap" else -1
        gap_to = gap_from + int(rng.uniform(35, 90) * MIN_MS) if mode == "gap" else -1
        stopped = 0
        while t < gate_in:
            frac = 1 - (gate_in - t - (stop_ms - stopped)) / duration if duration else 1.0
            frac = min(1.0, max(0.0, frac))
            rem_km = km * (1 - frac)
            to_crossing = haversine_km(crossing, gate_pos)
            if rem_km > to_crossing:  # still in Mongolia, on the mine -> crossing leg
                f = 1 - (rem_km - to_crossing) / dist
                a, b = mine, crossing
            else:
                f = 1 - rem_km / to_crossing if to_crossing else 1.0
                a, b = crossing, gate_pos
            lat = a[0] + (b[0] - a[0]) * f
            lon = a[1] + (b[1] - a[1]) * f
            v = speed * rng.uniform(0.85, 1.15)
            if mode == "deviate" and 0.25 < frac < 0.6:
                lat += 0.12  # ~13 km off the approved road
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

    def _self_drive(self, ts: int, prevalence: dict[str, float]) -> None:
        rng = self.rng
        plate, card, port = rng.choice(self.self_drive)
        abuse = rng.random() < prevalence.get("self_drive_abuse", 0.0)
        crossings = rng.randint(5, 7) if abuse else 1
        never_out = abuse and rng.random() < 0.4
        for i in range(crossings):
            t_in = ts + i * int(rng.uniform(2, 4) * HOUR_MS)
            self._n_decl += 1
            decl_id = f"D{self.seed % 1000:03d}-{self._n_decl:08d}"
            hs, goods = rng.choice(SELF_DRIVE_GOODS)
            medical = rng.random() < 0.01
            self._push(
                c.LOGISTICS,
                {
                    "event_id": f"SI{decl_id}",
                    "kind": "gate_in",
                    "ts_ms": t_in,
                    "conveyance_id": plate,
                    "port": port,
                    "ic_card": card,
                    "direction": "in",
                },
            )
            decl: dict[str, Any] = {
                "decl_id": decl_id,
                "ts_ms": t_in + int(rng.uniform(1, 5) * MIN_MS),
                "enterprise_id": f"R{card}",
                "credit_grade": "general",
                "hs_code": hs,
                "goods": goods,
                "origin": "MN",
                "port": port,
                "mode": "self_drive",
                "conveyance_id": plate,
                "gross_kg": round(rng.uniform(20, 300), 1),
                "net_kg": 0.0,
                "quantity": 1.0,
                "value_cny": round(rng.uniform(300, 3000), 2),
            }
            decl["net_kg"] = round(decl["gross_kg"] * 0.9, 1)
            if medical:
                decl["purpose"] = "medical"
            self._push(c.DECLARATIONS, decl)
            if not (never_out and i == crossings - 1):
                self._push(
                    c.LOGISTICS,
                    {
                        "event_id": f"SO{decl_id}",
                        "kind": "gate_out",
                        "ts_ms": t_in + int(rng.uniform(60, 110) * MIN_MS),
                        "conveyance_id": plate,
                        "port": port,
                        "ic_card": card,
                        "direction": "out",
                    },
                )
            typ = "self_drive_abuse" if abuse and i >= 3 else ""
            self._truth(
                decl_id,
                decl["ts_ms"],
                port,
                decl["enterprise_id"],
                plate,
                typ,
                rng.uniform(5_000, 40_000) if typ else 0.0,
            )
