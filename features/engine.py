"""The feature engine: wires the join and the facts of every concept (docs/features.md). Pure: event time in,
facts out.

* ``features/join.py``: per conveyance, declarations wait for their weighbridge reading (road and rail) or a
  deadline; gate-in, manifest and gate-out are folded in as they come;
* ``features/track.py``: the GPS track statistics of the conveyance's current trip;
* ``features/enterprise.py``: enterprise velocity and value, new-HS share, split-shipment counters;
* ``features/valuation.py``: unit value against the (HS code, origin) rolling median;
* ``features/history.py``: violation rates learnt from inspection results.

When a declaration is ready, ``on_event``/``advance`` return a ``Ready`` with every fact in
features/schema.py. Every table is a ``KeyedStore`` (features/store.py), bounded by size and, where it says
so, by event time. Late rule: a GPS point older than the conveyance's latest point by more than
``track_lateness_ms`` is not folded in; ``drain_late()`` returns it (the agent dead-letters it as
``late_event``). Declarations and logistics are joined by time windows and never late.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from features.combination import combination_facts
from features.config import DAY, HOUR, MIN, FeatureConfig
from features.enterprise import Enterprise, Member
from features.history import History, Result
from features.join import Conv, Join, end_trip
from features.schema import declaration_facts
from features.track import LATE, TrackStats
from features.valuation import Valuation, Value
from features.watchlist import Watchlists

__all__ = ["DAY", "HOUR", "MIN", "Conv", "FeatureConfig", "FeatureEngine", "Ready"]


@dataclass(slots=True)
class Ready:
    decl: dict[str, Any]
    facts: dict[str, Any]
    missing: list[str]
    trigger_topic: str
    trigger_ts_ms: int


class FeatureEngine:
    def __init__(
        self,
        config: FeatureConfig | None = None,
        watchlists: Watchlists | None = None,
        *,
        enterprise: Enterprise | None = None,
        valuation: Valuation | None = None,
        history: History | None = None,
    ) -> None:
        self.cfg = cfg = config or FeatureConfig()
        self.watch = watchlists or Watchlists()
        self.join = Join(cfg)
        self.tracks = TrackStats(cfg)
        self.enterprise = enterprise or Enterprise(cfg)
        self.valuation = valuation or Valuation(cfg)
        self.history = history or History(cfg)
        self.late: list[tuple[str, dict[str, Any]]] = []
        self.watermark = 0

    @property
    def convs(self) -> Any:
        """The per-conveyance join state (a ``ChangelogStore``)."""
        return self.join.convs

    # ------------------------------------------------------------------------------------------ events
    def on_event(self, topic: str, ev: dict[str, Any]) -> list[Ready]:
        ts = ev["ts_ms"]
        if ts > self.watermark:
            self.watermark = ts
        if topic == "tracks":
            st = self.join.conv(ev["conveyance_id"], ts)
            end_trip(st, ts)
            if (
                self.tracks.fold(st.track, ts, float(ev["lat"]), float(ev["lon"]), float(ev["speed_kmh"]))
                == LATE
            ):
                self.late.append(("tracks", ev))
            return []
        if topic == "logistics":
            st, weighed = self.join.logistics(ev)
            if not weighed:
                return []
            return [self._ready(d, st, "logistics", ts) for d in self.join.released(st, ev["conveyance_id"])]
        if topic == "declarations":
            return self._declaration(ev)
        if topic == "inspection-results":
            self.history.on_result(ev)
        return []

    def on_tracks(self, points: Sequence[dict[str, Any]]) -> list[tuple[int, Exception]]:
        """``on_event("tracks", p)`` for each point, in order, with a run of one conveyance's points looked
        up once (a truck's points arrive together). The same state as one call per point, late points
        included; returns (index, error) of points that failed (a bug: the agent dead-letters them)."""
        fold, conv, late, convs = self.tracks.fold, self.join.conv, self.late, self.join.convs
        failed: list[tuple[int, Exception]] = []
        key: str | None = None
        st = Conv()
        wm = self.watermark
        for i, ev in enumerate(points):
            try:
                ts = ev["ts_ms"]
                if ts > wm:
                    wm = ts
                k = ev["conveyance_id"]
                if k != key:
                    st, key = conv(k, ts), k
                elif ts > st.seen:  # the key written last: conv() would only move its time on
                    st.seen = ts
                    convs.rewrite(k, ts)
                if st.gate_outs:
                    end_trip(st, ts)
                if fold(st.track, ts, float(ev["lat"]), float(ev["lon"]), float(ev["speed_kmh"])) == LATE:
                    late.append(("tracks", ev))
            except Exception as exc:  # handed back: the agent dead-letters the point
                failed.append((i, exc))
                key = None
        self.watermark = wm
        return failed

    def _declaration(self, d: dict[str, Any]) -> list[Ready]:
        if d["decl_id"] in self.history.decided:
            return []  # redelivered: decided once
        key = d["conveyance_id"]
        st = self.join.conv(key, d["ts_ms"])
        self.enterprise.take(d)
        if self.join.wait(st, key, d):
            return []
        return [self._ready(d, st, "declarations", d["ts_ms"])]

    def hold(self, clock_ms: int | None) -> None:
        """Set the input clock: the event time every input has been read up to, or None (all of them are
        read up to now, the live case). A declaration after it waits until it passes (``advance``), so that
        a backlog read one partition at a time is joined as it happened: a declaration whose GPS points or
        weighbridge reading are still unread on another partition is not decided without them. The worker
        sets it (agents/runtime.py, the input clock); replays read in event order and leave it None."""
        self.join.clock = clock_ms

    def advance(self, watermark_ms: int) -> list[Ready]:
        """Decide the held declarations the input clock has passed, and those whose deadline passed; forget
        conveyances idle past their TTL."""
        if watermark_ms > self.watermark:
            self.watermark = watermark_ms
        out = self.release()
        return out + [self._ready(d, st, "deadline", due) for d, st, due in self.join.due(watermark_ms)]

    def release(self) -> list[Ready]:
        """The declarations held behind the input clock that it has passed (``hold``)."""
        return [self._ready(d, st, "input_clock", d["ts_ms"]) for d, st in self.join.release()]

    def releasable(self) -> list[dict[str, Any]]:
        """The held declarations ``release`` would decide (for the read of the shared state before it)."""
        return self.join.releasable()

    # ---------------------------------------------------------------------------------------- the facts
    def _ready(self, d: dict[str, Any], st: Conv, topic: str, ts: int) -> Ready:
        facts = declaration_facts(d)
        missing: list[str] = []
        at = self.join.facts(d, st, facts, missing)
        track = self.join.track(st, d["ts_ms"], at)
        if (track is None or not self.tracks.facts(track, d["ts_ms"], facts)) and d["mode"] == "road":
            missing.append("track")
        self.valuation.facts(d, facts)
        self.enterprise.facts(d, facts)
        self.join.self_drive_facts(d, st, facts)
        self._watch_facts(d, facts)
        self.history.facts(d, facts)
        combination_facts(self.cfg, d, facts)
        facts["missing"] = missing
        self.history.remember(d)
        return Ready(d, facts, missing, topic, ts)

    def _watch_facts(self, d: dict[str, Any], facts: dict[str, Any]) -> None:
        dts = d["ts_ms"]
        for kind, fact, id_ in (
            ("conveyance", "watch_conveyance", d["conveyance_id"]),
            ("enterprise", "watch_enterprise", d["enterprise_id"]),
            ("declarant", "watch_declarant", d.get("declarant_id") or ""),
        ):
            src = self.watch.lookup(kind, id_, dts) if id_ else None
            if src is not None:
                facts[fact] = True
                facts["watch_source"] = src

    # ------------------------------------------------------------------------------------- durability
    def drain_dirty(self) -> dict[str, bytes | None]:
        """The conveyances changed since the last call: their snapshots (JSON objects), None if gone."""
        return {
            k: None if snap is None else orjson.dumps(snap)
            for k, snap in self.join.convs.drain_changes().items()
        }

    def restore_keys(self, snaps: dict[str, bytes]) -> None:
        for key, raw in snaps.items():
            self.join.restore(key, orjson.loads(raw))

    # ------------------------------------------------------------------------ state shared by workers
    def share(self) -> None:
        """Keep what the cross-conveyance tables take in (declarations, unit values, results) for
        ``drain_shared``: a store shared by a consumer group's workers adds it up (agents/globalstate.py)."""
        self.enterprise.shared, self.valuation.shared, self.history.shared = [], [], []

    def drain_shared(self) -> tuple[list[Member], list[Value], list[Result]]:
        """What the cross-conveyance tables took in since the last call."""
        e, v, h = self.enterprise.shared, self.valuation.shared, self.history.shared
        if e is None or v is None or h is None:
            return [], [], []
        self.enterprise.shared, self.valuation.shared, self.history.shared = [], [], []
        return e, v, h

    def due(self, watermark_ms: int) -> list[dict[str, Any]]:
        """The pending declarations ``advance(watermark_ms)`` would decide."""
        convs = self.join.convs
        out = self.join.releasable()
        for due, decl_id, key in self.join.deadlines:
            st = convs.get(key) if due <= watermark_ms else None
            if st is not None:
                out += [d for d in st.pending if d["decl_id"] == decl_id]
        return out

    def pending(self, conveyance_id: str) -> list[dict[str, Any]]:
        """The declarations of a conveyance waiting for their weighbridge reading."""
        st = self.join.convs.get(conveyance_id)
        return list(st.pending) if st is not None else []

    def drain_late(self) -> list[tuple[str, dict[str, Any]]]:
        out, self.late = self.late, []
        return out
