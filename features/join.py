"""The per-conveyance join: declarations wait for their weighbridge reading or a deadline; gate-in, manifest,
gate-out, self-drive entries and the GPS track are folded in as they come (docs/features.md, the join).

State: one ``Conv`` per conveyance (the Kafka key, so one worker owns it) in a ``KeyedStore``; its snapshot
is a plain dict. Pure: event time in, no I/O.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from features.config import DAY, FeatureConfig
from features.store import ChangelogStore
from features.track import Track

READINGS = 8  # weighbridge readings, gate-ins, manifests and gate-outs a conveyance keeps (its last trips)

Reading = tuple[float, int]  # (kg, event time)


@dataclass(slots=True)
class Conv:
    """One conveyance. Its logistics readings are short histories in event-time order, not only the latest:
    a backlog read unevenly (agents/inputclock.py) brings a truck's next trips before a declaration held
    behind the input clock is decided, and the declaration must still meet its own trip's readings."""

    seen: int = 0  # latest event time of the conveyance
    weighs: list[Reading] = field(default_factory=list)  # (measured gross kg, ts)
    gate_ins: list[int] = field(default_factory=list)
    manifests: list[Reading] = field(default_factory=list)  # (manifest gross kg, ts)
    pending: list[dict[str, Any]] = field(default_factory=list)  # declarations waiting for their reading
    track: Track = field(default_factory=Track)
    sd_in: list[int] = field(default_factory=list)  # self-drive entries in the last 24 h
    sd_open: int = 0  # entries not written off by an exit
    gate_outs: list[int] = field(default_factory=list)  # gate-outs: each ends a trip

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "weighs": self.weighs,
            "gate_ins": self.gate_ins,
            "manifests": self.manifests,
            "pending": self.pending,
            "track": self.track.to_dict(),
            "sd_in": self.sd_in,
            "sd_open": self.sd_open,
            "gate_outs": self.gate_outs,
            # the latest of each, as written before the histories: a worker of the previous version taking
            # over the partition in a rolling upgrade reads these
            "weigh": self.weighs[-1] if self.weighs else None,
            "gate_in": self.gate_ins[-1] if self.gate_ins else None,
            "manifest": self.manifests[-1] if self.manifests else None,
            "gate_out": self.gate_outs[-1] if self.gate_outs else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | list[Any]) -> Conv:
        if isinstance(d, list):
            return cls._from_list(d)
        if "weighs" not in d:
            return cls._from_latest(d)
        return cls(
            d["seen"],
            [(float(kg), int(ts)) for kg, ts in d["weighs"]],
            d["gate_ins"],
            [(float(kg), int(ts)) for kg, ts in d["manifests"]],
            d["pending"],
            Track.from_dict(d["track"]),
            d["sd_in"],
            d["sd_open"],
            d["gate_outs"],
        )

    @classmethod
    def _from_latest(cls, d: dict[str, Any]) -> Conv:
        """A snapshot written before the histories: the latest reading of each kind, or None."""
        weigh, gate_in, manifest, gate_out = d["weigh"], d["gate_in"], d["manifest"], d.get("gate_out")
        return cls(
            d["seen"],
            [(float(weigh[0]), int(weigh[1]))] if weigh else [],
            [gate_in] if gate_in is not None else [],
            [(float(manifest[0]), int(manifest[1]))] if manifest else [],
            d["pending"],
            d["track"] if isinstance(d["track"], Track) else Track.from_dict(d["track"]),
            d["sd_in"],
            d["sd_open"],
            [gate_out] if gate_out is not None else [],
        )

    @classmethod
    def _from_list(cls, v: list[Any]) -> Conv:
        """A snapshot written before they were dicts (a positional list): read once after an upgrade."""
        keys = ("fix", "first_ts", "points", "gap_max", "dwell", "dev_max", "stops", "stop_from")
        track = Track.from_dict(
            {**dict(zip(keys, v[5:13], strict=True)), "stop_counted": v[13], "corridor": v[14]}
        )
        old = ("seen", "weigh", "gate_in", "manifest", "pending")
        return cls._from_latest(
            {**dict(zip(old, v[:5], strict=True)), "track": track, "sd_in": v[15], "sd_open": v[16]}
            | {"gate_out": v[17] if len(v) > 17 else None}
        )


def _keep(history: list[Any], item: Any, ts: int) -> None:
    """Put ``item`` (event time ``ts``) in its place in ``history`` (event-time order; one per time: a
    redelivered record replaces itself), keeping the last READINGS."""
    i = len(history)
    while i and _ts(history[i - 1]) > ts:
        i -= 1
    if i and _ts(history[i - 1]) == ts:
        history[i - 1] = item
    else:
        history.insert(i, item)
    if len(history) > READINGS:
        del history[0]


def end_trip(st: Conv, ts: int) -> None:
    """Before a GPS point at ``ts`` is folded in: a gate-out between the track's latest fix and the point
    ended the trip, and the point starts a new one. In event time, so a gate-out read before the trip's last
    points (a backlog, its logistics partition read ahead) does not cut the trip short."""
    fix = st.track.fix
    if fix is not None and _gate_out_between(st.gate_outs, fix[2], ts):
        st.track.fix = None


def _gate_out_between(outs: list[int], since: int, until: int) -> bool:
    """A gate-out in (since, until] (``outs`` in event-time order: the latest is checked first)."""
    return bool(outs) and outs[-1] > since and any(since < end <= until for end in outs)


def _ts(item: Reading | int) -> int:
    return item if isinstance(item, int) else item[1]


def conv_store(cfg: FeatureConfig) -> ChangelogStore[str, Conv]:
    """The conveyances: LRU-bounded, forgotten ``state_ttl_ms`` after their last event (unless one has a
    declaration pending), every change drained as a plain-dict snapshot for the changelog."""
    return ChangelogStore(cfg.max_conveyances, cfg.state_ttl_ms, Conv.to_dict, Conv.from_dict)


class Join:
    def __init__(self, cfg: FeatureConfig) -> None:
        self.cfg = cfg
        self.convs = conv_store(cfg)
        self.deadlines: list[tuple[int, str, str]] = []  # (due, decl_id, conveyance)
        # the input clock (``hold``): None, or the event time every input has been read up to; a declaration
        # after it waits, complete, in ``held`` until the clock passes it (a backlog read unevenly)
        self.clock: int | None = None
        self.held: list[tuple[int, str, str]] = []  # (ts, decl_id, conveyance), complete but ahead

    def conv(self, key: str, ts: int) -> Conv:
        """The conveyance's state, created if new; marked changed (its snapshot is drained)."""
        convs = self.convs
        st = convs.get(key)
        if st is None:
            st = Conv()
        if ts > st.seen:
            st.seen = ts
        convs.put(key, st, ts)
        return st

    def logistics(self, ev: dict[str, Any]) -> tuple[Conv, bool]:
        """Fold a logistics event in; True for a weighbridge reading (pending declarations may join)."""
        ts, kind = ev["ts_ms"], ev["kind"]
        st = self.conv(ev["conveyance_id"], ts)
        if kind == "weighbridge":
            _keep(st.weighs, (float(ev["measured_gross_kg"]), ts), ts)
            return st, True
        if kind == "gate_in":
            _keep(st.gate_ins, ts, ts)
            if ev.get("direction") == "in" or ev.get("ic_card"):
                st.sd_in = [*[t for t in st.sd_in if t > ts - DAY][-50:], ts]
                st.sd_open = min(st.sd_open + 1, 50)
        elif kind == "gate_out":
            _keep(st.gate_outs, ts, ts)
            if ev.get("direction") == "out" or ev.get("ic_card"):
                st.sd_open = max(0, st.sd_open - 1)
        elif kind == "manifest" and ev.get("manifest_gross_kg") is not None:
            _keep(st.manifests, (float(ev["manifest_gross_kg"]), ts), ts)
        return st, False

    def complete(self, st: Conv, d: dict[str, Any]) -> bool:
        """Everything the declaration waits for is there: its weighbridge reading (road and rail)."""
        return d["mode"] not in ("road", "rail") or self.weigh(st, d["ts_ms"]) is not None

    def ahead(self, ts: int) -> bool:
        """``ts`` is after the input clock: some input has not been read up to it yet."""
        return self.clock is not None and ts > self.clock

    def wait(self, st: Conv, key: str, d: dict[str, Any]) -> bool:
        """A road or rail declaration without its weighbridge reading waits (True), and so does one after
        the input clock (held until the clock passes it); else it is ready."""
        ts = d["ts_ms"]
        complete = self.complete(st, d)
        if complete and not self.ahead(ts):
            return False
        if all(p["decl_id"] != d["decl_id"] for p in st.pending):
            st.pending.append(d)
            heapq.heappush(self.deadlines, (ts + self.cfg.deadline_ms, d["decl_id"], key))
            if complete:
                heapq.heappush(self.held, (ts, d["decl_id"], key))
        return True

    def released(self, st: Conv, key: str = "") -> list[dict[str, Any]]:
        """The pending declarations a new reading completes, taken off the pending list; those after the
        input clock stay pending, held until it passes them."""
        out = []
        for d in st.pending:
            if self.weigh(st, d["ts_ms"]) is not None:
                if self.ahead(d["ts_ms"]):
                    heapq.heappush(self.held, (d["ts_ms"], d["decl_id"], key))
                else:
                    out.append(d)
        if out:
            done = {d["decl_id"] for d in out}
            st.pending = [d for d in st.pending if d["decl_id"] not in done]
        return out

    def release(self) -> list[tuple[dict[str, Any], Conv]]:
        """The held declarations the input clock has passed (all of them once it is None), taken off the
        pending list."""
        out = []
        held, convs = self.held, self.convs
        while held and not self.ahead(held[0][0]):
            _, decl_id, key = heapq.heappop(held)
            st = convs.get(key)
            if st is None:
                continue
            for d in st.pending:
                if d["decl_id"] == decl_id:
                    if self.complete(st, d):
                        st.pending.remove(d)
                        convs.mark(key)
                        out.append((d, st))
                    break
        return out

    def releasable(self) -> list[dict[str, Any]]:
        """The held declarations ``release`` would take (for the read of the shared state before it). Walks
        the heap from its root and only below entries the clock has passed: the time of what it returns."""
        out: list[dict[str, Any]] = []
        held, convs = self.held, self.convs
        todo = [0]
        while todo:
            i = todo.pop()
            if i >= len(held) or self.ahead(held[i][0]):
                continue  # a heap: everything below an entry after the clock is after it too
            _, decl_id, key = held[i]
            st = convs.get(key)
            if st is not None:
                out += [d for d in st.pending if d["decl_id"] == decl_id]
            todo += (2 * i + 1, 2 * i + 2)
        return out

    def joined(self, at: int, ts: int, trip_ends: list[int]) -> bool:
        """A reading at ``at`` belongs with a declaration at ``ts``: within the join window and on the same
        side of every gate-out (the same trip: a truck back for its next load must not be judged by the
        previous load's weight)."""
        if abs(at - ts) > self.cfg.join_window_ms:
            return False
        lo, hi = (at, ts) if at < ts else (ts, at)
        for end in trip_ends:  # noqa: SIM110 (a loop, not all(): it runs a few times per declaration)
            if lo < end <= hi:
                return False
        return True

    def weigh(self, st: Conv, ts: int, waits: bool = True) -> Reading | None:
        """The weighbridge reading of a declaration at ``ts``, as live: the latest one of its trip at or
        before it, else (if it ``waits`` for one: road and rail) the first one after it, up to its deadline
        (live, it is decided without one then)."""
        until, after = ts + self.cfg.deadline_ms if waits else ts, None
        for w in reversed(st.weighs):
            at = w[1]
            if at <= until and self.joined(at, ts, st.gate_outs):
                if at <= ts:
                    return w
                after = w
        return after

    def _latest(self, parts: list[Any], ts: int, at: int, trip_ends: list[int] | None) -> Any:
        """The latest of ``parts`` known at event time ``at`` that joins a declaration at ``ts`` (the trip
        checked when ``trip_ends`` is given), or None."""
        for part in reversed(parts):
            t = _ts(part)
            if t <= at:
                if abs(t - ts) > self.cfg.join_window_ms:
                    return None
                if trip_ends is None or self.joined(t, ts, trip_ends):
                    return part
        return None

    def due(self, watermark_ms: int) -> list[tuple[dict[str, Any], Conv, int]]:
        """Declarations whose deadline passed (declaration, its conveyance, the deadline); then forget
        conveyances idle past their TTL unless they hold a pending declaration."""
        out = []
        while self.deadlines and self.deadlines[0][0] <= watermark_ms:
            due, decl_id, key = heapq.heappop(self.deadlines)
            st = self.convs.get(key)
            if st is None:
                continue
            for d in st.pending:
                if d["decl_id"] == decl_id:
                    st.pending.remove(d)
                    self.convs.mark(key)
                    out.append((d, st, due))
                    break
        self.convs.expire(watermark_ms, _has_pending)
        return out

    def facts(self, d: dict[str, Any], st: Conv, facts: dict[str, Any], missing: list[str]) -> int:
        """Weighbridge, gate-in, manifest and self-drive facts of declaration ``d``; parts not found go to
        ``missing``. Returns the event time it is decided at, as live (for its track: ``track``)."""
        dts, mode = d["ts_ms"], d["mode"]
        gross = float(d["gross_kg"])
        waits = mode in ("road", "rail")
        weigh = self.weigh(st, dts, waits)
        # the event time it is decided at, live: its reading's, its deadline without one, else its own
        at = max(dts, weigh[1]) if weigh else dts + self.cfg.deadline_ms if waits else dts
        if weigh is not None:
            w = weigh[0]
            facts.update(
                weigh_present=True,
                weigh_gross_kg=w,
                weigh_excess_kg=w - gross,
                weigh_excess_ratio=(w / gross - 1.0) if gross > 0 else 0.0,
            )
        elif mode in ("road", "rail"):
            missing.append("weighbridge")
        gate_in = self._latest(st.gate_ins, dts, at, None)
        if gate_in is not None:
            facts.update(gate_in_present=True, gate_in_to_decl_s=(dts - gate_in) / 1000)
        elif mode in ("road", "rail"):
            missing.append("gate_in")
        manifest = self._latest(st.manifests, dts, at, st.gate_outs)
        if manifest is not None:
            m = manifest[0]
            facts.update(
                manifest_present=True,
                manifest_gross_kg=m,
                manifest_gap_ratio=(gross / m - 1.0) if m > 0 else 0.0,
            )
        elif mode == "road":
            missing.append("manifest")
        return at

    def track(self, st: Conv, ts: int, at: int) -> Track | None:
        """The conveyance's track if it is the trip of a declaration at ``ts`` decided at ``at``: no gate-out
        between its latest fix and the declaration (a later trip's, its points read ahead in a backlog), nor
        between the fix and ``at`` (live, the trip was over when it was decided)."""
        fix = st.track.fix
        if fix is None:
            return None
        if _gate_out_between(st.gate_outs, fix[2], at):
            return None
        return st.track if self.joined(fix[2], ts, st.gate_outs) else None

    def self_drive_facts(self, d: dict[str, Any], st: Conv, facts: dict[str, Any]) -> None:
        if d["mode"] == "self_drive":
            dts = d["ts_ms"]
            facts["sd_crossings_24h"] = sum(1 for t in st.sd_in if dts - DAY < t <= dts)
            facts["sd_open_entries"] = max(0, st.sd_open - 1)

    def restore(self, key: str, snap: dict[str, Any] | list[Any]) -> None:
        st = Conv.from_dict(snap)
        self.convs.restore(key, st, st.seen)
        for d in st.pending:
            heapq.heappush(self.deadlines, (d["ts_ms"] + self.cfg.deadline_ms, d["decl_id"], key))
            if self.complete(st, d):  # it was held behind the input clock when the state was saved
                heapq.heappush(self.held, (d["ts_ms"], d["decl_id"], key))


def _has_pending(st: Conv) -> bool:
    return bool(st.pending)
