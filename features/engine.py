"""The stream join and the feature catalogue (docs/features.md). Pure: event time in, facts out.

Per conveyance (plate or container), whichever arrives first: declarations wait for their weighbridge reading
(road and rail) or a deadline; gate-in, manifest and the GPS track are folded in as they come. When a
declaration is ready, ``on_event``/``advance`` return a ``Ready`` with every fact in features/schema.py.

State is bounded: per-conveyance state expires ``state_ttl_ms`` after its last event, per-key collections have
size caps, cross-conveyance aggregates are LRU-bounded. Late rule: a GPS point older than the conveyance's
latest point by more than ``track_lateness_ms`` is not folded in; ``drain_late()`` returns it (the agent
dead-letters it as ``late_event``). Declarations and logistics are joined by time windows and never late.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from features.geometry import km, line_km, segments
from features.schema import declaration_facts
from features.watchlist import Watchlists
from features.windows import BucketSums, RollingMedian

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
LatLon = tuple[float, float]


@dataclass(frozen=True)
class FeatureConfig:
    join_window_ms: int = 8 * HOUR  # a weighbridge/gate/manifest this far from the declaration still joins
    deadline_ms: int = 30 * MIN  # a declaration still waiting this long is decided with what is known
    state_ttl_ms: int = 12 * HOUR  # a conveyance with no event for this long is forgotten
    track_lateness_ms: int = 10 * MIN
    track_trip_gap_ms: int = 6 * HOUR  # a longer silence starts a new trip's track statistics
    border_km: float = 5.0
    slow_kmh: float = 5.0
    stop_kmh: float = 3.0
    stop_min_ms: int = 10 * MIN
    site_radius_km: float = 3.0  # stops within this of a port or yard are scheduled
    split_threshold_cny: float = 50_000.0
    split_low: float = 0.8
    hs_median_size: int = 101
    prior_violations: float = 1.0
    prior_clean: float = 19.0
    max_conveyances: int = 200_000
    max_enterprises: int = 50_000
    max_keys: int = 50_000
    crossings: tuple[LatLon, ...] = ()  # where roads cross the border (border dwell)
    corridors: tuple[tuple[LatLon, ...], ...] = ()  # approved routes (deviation)
    sites: tuple[LatLon, ...] = ()  # ports and yards (scheduled stops)


@dataclass(slots=True)
class Ready:
    decl: dict[str, Any]
    facts: dict[str, Any]
    missing: list[str]
    trigger_topic: str
    trigger_ts_ms: int


@dataclass(slots=True)
class Conv:
    seen: int = 0
    weigh: tuple[float, int] | None = None
    gate_in: int | None = None
    manifest: tuple[float, int] | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    # track of the current trip
    fix: tuple[float, float, int] | None = None
    first_ts: int = 0
    points: int = 0
    gap_max: int = 0
    dwell: int = 0
    dev_max: float = 0.0
    stops: int = 0
    stop_from: int | None = None
    stop_counted: bool = False
    corridor: int = -1
    # self-drive
    sd_in: list[int] = field(default_factory=list)
    sd_open: int = 0
    gate_out: int | None = None  # event time of the last gate-out: the end of a trip

    def snapshot(self) -> bytes:
        return orjson.dumps(
            [
                self.seen,
                self.weigh,
                self.gate_in,
                self.manifest,
                self.pending,
                self.fix,
                self.first_ts,
                self.points,
                self.gap_max,
                self.dwell,
                self.dev_max,
                self.stops,
                self.stop_from,
                self.stop_counted,
                self.corridor,
                self.sd_in,
                self.sd_open,
                self.gate_out,
            ]
        )

    @classmethod
    def restore(cls, raw: bytes) -> Conv:
        v = orjson.loads(raw)
        c = cls(*v[:5])
        c.weigh = tuple(v[1]) if v[1] else None
        c.manifest = tuple(v[3]) if v[3] else None
        c.fix = tuple(v[5]) if v[5] else None
        (
            c.first_ts,
            c.points,
            c.gap_max,
            c.dwell,
            c.dev_max,
            c.stops,
            c.stop_from,
            c.stop_counted,
            c.corridor,
            c.sd_in,
            c.sd_open,
        ) = v[6:17]
        c.gate_out = v[17] if len(v) > 17 else None  # snapshots written before trips had an end
        return c


@dataclass(slots=True)
class Ent:
    buckets: BucketSums
    hs_first: dict[str, int] = field(default_factory=dict)
    hs_last: dict[str, int] = field(default_factory=dict)
    first_ts: int = 0


class FeatureEngine:
    def __init__(self, config: FeatureConfig | None = None, watchlists: Watchlists | None = None) -> None:
        self.cfg = config or FeatureConfig()
        self.watch = watchlists or Watchlists()
        self.convs: OrderedDict[str, Conv] = OrderedDict()
        self.ents: OrderedDict[str, Ent] = OrderedDict()
        self.medians: OrderedDict[tuple[str, str], RollingMedian] = OrderedDict()
        self.splits: OrderedDict[tuple[str, str], deque[tuple[int, float]]] = OrderedDict()
        self.history: OrderedDict[tuple[str, str], list[float]] = (
            OrderedDict()
        )  # (kind, id) -> [n, violations]
        self.decided: OrderedDict[str, tuple[int, str, str, str]] = (
            OrderedDict()
        )  # decl -> ts, ent, conv, decl'nt
        self.deadlines: list[tuple[int, str, str]] = []  # (due, decl_id, conveyance)
        self.dirty: set[str] = set()
        self.late: list[tuple[str, dict[str, Any]]] = []
        self.watermark = 0
        self._corridors = tuple(segments(line) for line in self.cfg.corridors)

    # ------------------------------------------------------------------------------------------ events
    def on_event(self, topic: str, ev: dict[str, Any]) -> list[Ready]:
        ts = ev["ts_ms"]
        if ts > self.watermark:
            self.watermark = ts
        if topic == "tracks":
            self._track(ev)
            return []
        if topic == "logistics":
            return self._logistics(ev)
        if topic == "declarations":
            return self._declaration(ev)
        if topic == "inspection-results":
            self._result(ev)
        return []

    def _conv(self, key: str, ts: int) -> Conv:
        st = self.convs.get(key)
        if st is None:
            st = self.convs[key] = Conv()
            if len(self.convs) > self.cfg.max_conveyances:
                self.dirty.add(self.convs.popitem(last=False)[0])
        else:
            self.convs.move_to_end(key)
        if ts > st.seen:
            st.seen = ts
        self.dirty.add(key)
        return st

    def _track(self, ev: dict[str, Any]) -> None:
        cfg = self.cfg
        ts = ev["ts_ms"]
        st = self._conv(ev["conveyance_id"], ts)
        lat, lon, v = float(ev["lat"]), float(ev["lon"]), float(ev["speed_kmh"])
        fix = st.fix
        if fix is not None and ts < fix[2]:
            if fix[2] - ts > cfg.track_lateness_ms:
                self.late.append(("tracks", ev))
            else:
                st.points += 1  # folded in: counted, the trip's latest fix stays the latest
            return
        if fix is None or ts - fix[2] > cfg.track_trip_gap_ms:  # a new trip
            st.first_ts, st.points, st.gap_max, st.dwell, st.dev_max, st.stops = ts, 0, 0, 0, 0.0, 0
            st.stop_from, st.stop_counted, st.corridor = None, False, self._nearest_corridor(lat, lon)
            gap = 0
        else:
            gap = ts - fix[2]
            if gap > st.gap_max:
                st.gap_max = gap
        st.fix = (lat, lon, ts)
        st.points += 1
        near = cfg.crossings and v < cfg.slow_kmh and gap
        if near and min(km(lat, lon, c[0], c[1]) for c in cfg.crossings) < cfg.border_km:
            st.dwell += min(gap, 15 * MIN)
        if st.corridor >= 0:
            d = line_km(lat, lon, self._corridors[st.corridor], 111.32 * math.cos(math.radians(lat)))
            if d > st.dev_max:
                st.dev_max = d
        if v < cfg.stop_kmh:
            if st.stop_from is None:
                st.stop_from, st.stop_counted = ts, False
            elif not st.stop_counted and ts - st.stop_from >= cfg.stop_min_ms:
                if all(km(lat, lon, s[0], s[1]) > cfg.site_radius_km for s in cfg.sites):
                    st.stops += 1
                st.stop_counted = True
        else:
            st.stop_from = None

    def _nearest_corridor(self, lat: float, lon: float) -> int:
        best, best_d = -1, math.inf
        kx = 111.32 * math.cos(math.radians(lat))
        for i, segs in enumerate(self._corridors):
            d = line_km(lat, lon, segs, kx)
            if d < best_d:
                best, best_d = i, d
        return best

    def _logistics(self, ev: dict[str, Any]) -> list[Ready]:
        ts, kind = ev["ts_ms"], ev["kind"]
        st = self._conv(ev["conveyance_id"], ts)
        if kind == "weighbridge":
            if st.weigh is None or ts >= st.weigh[1]:
                st.weigh = (float(ev["measured_gross_kg"]), ts)
            return self._release(st, ev["conveyance_id"], "logistics", ts)
        if kind == "gate_in":
            st.gate_in = ts
            if ev.get("direction") == "in" or ev.get("ic_card"):
                st.sd_in = [*[t for t in st.sd_in if t > ts - DAY][-50:], ts]
                st.sd_open = min(st.sd_open + 1, 50)
        elif kind == "gate_out":
            if st.gate_out is None or ts >= st.gate_out:
                st.gate_out = ts
            if ev.get("direction") == "out" or ev.get("ic_card"):
                st.sd_open = max(0, st.sd_open - 1)
            st.fix = None  # the trip is over: the next GPS point starts a new track
        elif kind == "manifest" and ev.get("manifest_gross_kg") is not None:
            st.manifest = (float(ev["manifest_gross_kg"]), ts)
        return []

    def _declaration(self, ev: dict[str, Any]) -> list[Ready]:
        if ev["decl_id"] in self.decided:
            return []  # redelivered: decided once
        ts = ev["ts_ms"]
        key = ev["conveyance_id"]
        st = self._conv(key, ts)
        self._account(ev)
        if ev["mode"] in ("road", "rail") and not self._joined(st.weigh, ts, st.gate_out):
            if all(p["decl_id"] != ev["decl_id"] for p in st.pending):
                st.pending.append(ev)
                heapq.heappush(self.deadlines, (ts + self.cfg.deadline_ms, ev["decl_id"], key))
            return []
        return [self._ready(ev, st, "declarations", ts)]

    def _release(self, st: Conv, key: str, topic: str, ts: int) -> list[Ready]:
        out = [
            self._ready(d, st, topic, ts)
            for d in st.pending
            if self._joined(st.weigh, d["ts_ms"], st.gate_out)
        ]
        if out:
            done = {r.decl["decl_id"] for r in out}
            st.pending = [d for d in st.pending if d["decl_id"] not in done]
        return out

    def _joined(self, part: tuple[float, int] | None, ts: int, trip_end: int | None = None) -> bool:
        """``part`` (value, event time) belongs with a declaration at ``ts``: within the join window and,
        when a gate-out is known, on the same side of it (the same trip: a truck back for its next load
        must not be judged by the previous load's weight)."""
        if part is None or abs(part[1] - ts) > self.cfg.join_window_ms:
            return False
        return trip_end is None or not (min(part[1], ts) < trip_end <= max(part[1], ts))

    def advance(self, watermark_ms: int) -> list[Ready]:
        """Decide declarations whose deadline passed; forget conveyances idle past their TTL."""
        if watermark_ms > self.watermark:
            self.watermark = watermark_ms
        out = []
        while self.deadlines and self.deadlines[0][0] <= watermark_ms:
            due, decl_id, key = heapq.heappop(self.deadlines)
            st = self.convs.get(key)
            if st is None:
                continue
            for d in st.pending:
                if d["decl_id"] == decl_id:
                    st.pending.remove(d)
                    self.dirty.add(key)
                    out.append(self._ready(d, st, "deadline", due))
                    break
        cutoff = watermark_ms - self.cfg.state_ttl_ms
        while self.convs:
            key, st = next(iter(self.convs.items()))
            if st.seen >= cutoff or st.pending:
                break
            del self.convs[key]
            self.dirty.add(key)
        return out

    # -------------------------------------------------------------------------------- cross-conveyance
    def _lru(self, table: OrderedDict[Any, Any], key: Any, make: Any, cap: int) -> Any:
        v = table.get(key)
        if v is None:
            v = table[key] = make()
            if len(table) > cap:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return v

    def _account(self, d: dict[str, Any]) -> None:
        """Enterprise velocity, HS history and split-shipment counters take the declaration in."""
        ts = d["ts_ms"]
        ent = self._lru(
            self.ents,
            d["enterprise_id"],
            lambda: Ent(BucketSums(10 * MIN, 7 * DAY), first_ts=ts),
            self.cfg.max_enterprises,
        )
        ent.buckets.update(ts, float(d["value_cny"]))
        hs = d["hs_code"]
        ent.hs_first.setdefault(hs, ts)
        ent.hs_last[hs] = ts
        if len(ent.hs_last) > 200:
            old = min(ent.hs_last, key=ent.hs_last.__getitem__)
            del ent.hs_last[old]
            ent.hs_first.pop(old, None)
        T = self.cfg.split_threshold_cny
        if self.cfg.split_low * T <= d["value_cny"] < T:
            q = self._lru(self.splits, (d["enterprise_id"], hs), deque, self.cfg.max_keys)
            q.append((ts, float(d["value_cny"])))
            while q and q[0][0] <= ts - DAY:
                q.popleft()
            while len(q) > 100:
                q.popleft()

    def _result(self, ev: dict[str, Any]) -> None:
        meta = self.decided.get(ev["decl_id"])
        if meta is None or ev["outcome"] not in ("violation", "clean"):
            return
        _, ent, conv, declarant = meta
        for kind, id_ in (("enterprise", ent), ("conveyance", conv), ("declarant", declarant)):
            if id_:
                h = self._lru(self.history, (kind, id_), lambda: [0.0, 0.0], self.cfg.max_keys * 4)
                h[0] += 1
                h[1] += ev["outcome"] == "violation"

    def _rate(self, kind: str, id_: str) -> float:
        a, b = self.cfg.prior_violations, self.cfg.prior_clean
        n, v = self.history.get((kind, id_), (0.0, 0.0))
        return (v + a) / (n + a + b)

    # ---------------------------------------------------------------------------------------- the facts
    def _ready(self, d: dict[str, Any], st: Conv, topic: str, ts: int) -> Ready:
        cfg = self.cfg
        facts = declaration_facts(d)
        dts = d["ts_ms"]
        missing: list[str] = []
        gross = float(d["gross_kg"])
        if self._joined(st.weigh, dts, st.gate_out):
            assert st.weigh is not None
            w = st.weigh[0]
            facts.update(
                weigh_present=True,
                weigh_gross_kg=w,
                weigh_excess_kg=w - gross,
                weigh_excess_ratio=(w / gross - 1.0) if gross > 0 else 0.0,
            )
        elif d["mode"] in ("road", "rail"):
            missing.append("weighbridge")
        if st.gate_in is not None and abs(dts - st.gate_in) <= cfg.join_window_ms:
            facts.update(gate_in_present=True, gate_in_to_decl_s=(dts - st.gate_in) / 1000)
        elif d["mode"] in ("road", "rail"):
            missing.append("gate_in")
        if self._joined(st.manifest, dts, st.gate_out):
            assert st.manifest is not None
            m = st.manifest[0]
            facts.update(
                manifest_present=True,
                manifest_gross_kg=m,
                manifest_gap_ratio=(gross / m - 1.0) if m > 0 else 0.0,
            )
        elif d["mode"] == "road":
            missing.append("manifest")
        if st.fix is not None and abs(dts - st.fix[2]) <= cfg.join_window_ms:
            facts.update(
                track_present=True,
                track_points=st.points,
                gps_gap_max_s=st.gap_max / 1000,
                border_dwell_s=st.dwell / 1000,
                corridor_dev_km=round(st.dev_max, 3),
                unscheduled_stops=st.stops,
                last_lat=st.fix[0],
                last_lon=st.fix[1],
                last_fix_ts_ms=st.fix[2],
            )
        elif d["mode"] == "road":
            missing.append("track")
        # valuation against the rolling median of this HS code and origin (before this declaration joins it)
        key = (d["hs_code"], d.get("origin", ""))
        med = self._lru(self.medians, key, lambda: RollingMedian(cfg.hs_median_size), cfg.max_keys)
        m = med.get()
        facts["hs_median_n"] = len(med)
        if m:
            facts["hs_median_unit_value"] = m
            facts["unit_value_ratio"] = float(facts["unit_value"]) / m  # type: ignore[arg-type]
        unit_value = float(facts["unit_value"])  # type: ignore[arg-type]
        if unit_value > 0:
            med.update(unit_value)
        ent = self.ents.get(d["enterprise_id"])
        if ent is not None:
            b = ent.buckets
            facts["ent_decl_1h"], _ = b.get(dts, HOUR)
            facts["ent_decl_24h"], facts["ent_value_24h"] = b.get(dts, DAY)
            facts["ent_decl_7d"], facts["ent_value_7d"] = b.get(dts, 7 * DAY)
            recent = [h for h, t in ent.hs_last.items() if t > dts - 7 * DAY]
            if recent and dts - ent.first_ts > 7 * DAY:
                new = sum(1 for h in recent if ent.hs_first[h] > dts - 7 * DAY)
                facts["ent_new_hs_share"] = new / len(recent)
        q = self.splits.get((d["enterprise_id"], d["hs_code"]))
        if q:
            live = [v for t, v in q if dts - DAY < t <= dts]
            facts["split_count_24h"], facts["split_value_24h"] = len(live), sum(live)
        if d["mode"] == "self_drive":
            facts["sd_crossings_24h"] = sum(1 for t in st.sd_in if dts - DAY < t <= dts)
            facts["sd_open_entries"] = max(0, st.sd_open - 1)
        for kind, fact, id_ in (
            ("conveyance", "watch_conveyance", d["conveyance_id"]),
            ("enterprise", "watch_enterprise", d["enterprise_id"]),
            ("declarant", "watch_declarant", d.get("declarant_id") or ""),
        ):
            src = self.watch.lookup(kind, id_, dts) if id_ else None
            if src is not None:
                facts[fact] = True
                facts["watch_source"] = src
        facts["ent_violation_rate"] = self._rate("enterprise", d["enterprise_id"])
        facts["conv_violation_rate"] = self._rate("conveyance", d["conveyance_id"])
        facts["declarant_violation_rate"] = self._rate("declarant", d.get("declarant_id") or "")
        facts["missing"] = missing
        self.decided[d["decl_id"]] = (
            dts,
            d["enterprise_id"],
            d["conveyance_id"],
            d.get("declarant_id") or "",
        )
        while len(self.decided) > 300_000 or (
            self.decided and next(iter(self.decided.values()))[0] < dts - 3 * DAY
        ):
            self.decided.popitem(last=False)
        return Ready(d, facts, missing, topic, ts)

    # ------------------------------------------------------------------------------------- durability
    def drain_dirty(self) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for key in self.dirty:
            st = self.convs.get(key)
            out[key] = None if st is None else st.snapshot()
        self.dirty.clear()
        return out

    def restore_keys(self, snaps: dict[str, bytes]) -> None:
        for key, raw in snaps.items():
            st = self.convs[key] = Conv.restore(raw)
            for d in st.pending:
                heapq.heappush(self.deadlines, (d["ts_ms"] + self.cfg.deadline_ms, d["decl_id"], key))

    def drain_late(self) -> list[tuple[str, dict[str, Any]]]:
        out, self.late = self.late, []
        return out
