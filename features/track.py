"""The GPS track of a conveyance's current trip: O(1) statistics per point (docs/features.md, the catalogue).

Distances are features/geometry.py's equirectangular hot-path forms: a few multiplications per point.
Pure: event time in, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from features.config import MIN
from features.geometry import km, line_km, segments

FOLDED, LATE = 1, 2  # what fold() did with a point older than the trip's latest fix (0: a new latest fix)


@dataclass(slots=True)
class Track:
    """Statistics of the current trip. ``fix`` is the latest (lat, lon, ts_ms); None: no trip under way."""

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "fix": list(self.fix) if self.fix else None,
            "first_ts": self.first_ts,
            "points": self.points,
            "gap_max": self.gap_max,
            "dwell": self.dwell,
            "dev_max": self.dev_max,
            "stops": self.stops,
            "stop_from": self.stop_from,
            "stop_counted": self.stop_counted,
            "corridor": self.corridor,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Track:
        fix = d.get("fix")
        return cls(
            tuple(fix) if fix else None,
            d["first_ts"],
            d["points"],
            d["gap_max"],
            d["dwell"],
            d["dev_max"],
            d["stops"],
            d["stop_from"],
            d["stop_counted"],
            d["corridor"],
        )


class TrackStats:
    """Folds GPS points into a ``Track`` with the geography of one configuration."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.corridors = tuple(segments(line) for line in cfg.corridors)

    def fold(self, tr: Track, ts: int, lat: float, lon: float, v: float) -> int:
        """Take one point in; returns 0, ``FOLDED`` (older than the latest fix, counted) or ``LATE`` (older
        than the allowed lateness: not taken in)."""
        cfg = self.cfg
        fix = tr.fix
        if fix is not None and ts < fix[2]:
            if fix[2] - ts > cfg.track_lateness_ms:
                return LATE
            tr.points += 1  # folded in: counted, the trip's latest fix stays the latest
            return FOLDED
        if fix is None or ts - fix[2] > cfg.track_trip_gap_ms:  # a new trip
            tr.first_ts, tr.points, tr.gap_max, tr.dwell, tr.dev_max, tr.stops = ts, 0, 0, 0, 0.0, 0
            tr.stop_from, tr.stop_counted, tr.corridor = None, False, self.nearest_corridor(lat, lon)
            gap = 0
        else:
            gap = ts - fix[2]
            if gap > tr.gap_max:
                tr.gap_max = gap
        tr.fix = (lat, lon, ts)
        tr.points += 1
        near = cfg.crossings and v < cfg.slow_kmh and gap
        if near and min(km(lat, lon, c[0], c[1]) for c in cfg.crossings) < cfg.border_km:
            tr.dwell += min(gap, 15 * MIN)
        if tr.corridor >= 0:
            d = line_km(lat, lon, self.corridors[tr.corridor], 111.32 * math.cos(math.radians(lat)))
            if d > tr.dev_max:
                tr.dev_max = d
        if v < cfg.stop_kmh:
            if tr.stop_from is None:
                tr.stop_from, tr.stop_counted = ts, False
            elif not tr.stop_counted and ts - tr.stop_from >= cfg.stop_min_ms:
                if all(km(lat, lon, s[0], s[1]) > cfg.site_radius_km for s in cfg.sites):
                    tr.stops += 1
                tr.stop_counted = True
        else:
            tr.stop_from = None
        return 0

    def nearest_corridor(self, lat: float, lon: float) -> int:
        best, best_d = -1, math.inf
        kx = 111.32 * math.cos(math.radians(lat))
        for i, segs in enumerate(self.corridors):
            d = line_km(lat, lon, segs, kx)
            if d < best_d:
                best, best_d = i, d
        return best

    def facts(self, tr: Track, dts: int, facts: dict[str, Any]) -> bool:
        """The track facts of a declaration at ``dts``; False when no fix lies within the join window."""
        fix = tr.fix
        if fix is None or abs(dts - fix[2]) > self.cfg.join_window_ms:
            return False
        facts.update(
            track_present=True,
            track_points=tr.points,
            gps_gap_max_s=tr.gap_max / 1000,
            border_dwell_s=tr.dwell / 1000,
            corridor_dev_km=round(tr.dev_max, 3),
            unscheduled_stops=tr.stops,
            last_lat=fix[0],
            last_lon=fix[1],
            last_fix_ts_ms=fix[2],
        )
        return True
