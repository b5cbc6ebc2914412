"""Inspection budget per site: an adaptive score threshold that keeps the dispatched share near a target.

For each site the controller keeps the last ``window`` risk values (all declarations, dispatched or not) and
sets the threshold at their ``1 - r`` quantile, so that about a share ``r`` of traffic ranks above it whatever
the score distribution does (a surge of risky-looking traffic raises the threshold instead of the load).
``r`` starts at the model's share of the budget and an integral term corrects it from the dispatched share
actually observed (hard rules and random picks eat into the same budget). A per-shift capacity is a hard cap
on inspections; hard rules may exceed it and are counted as ``over_budget``.

State per site is small and bounded (window length; at most ``max_sites`` sites, least recently seen dropped)
and round-trips through ``snapshot()``/``restore()``. Event time only: days and shifts are ``ts_ms`` buckets.

**Shared by a consumer group** (``share()``): a site's budget is the site's, whichever worker decides its
declarations. Every decision is then also written to ``journal`` as one entry ``[ref, site, ts, rank, value,
inspected, hard]`` (``ref`` the declaration id, ``value`` the declared value when ranking by value); the
agents publish the entries, and every other worker folds them in with ``apply()`` (the same state changes,
in the same order; an entry whose ``ref`` was already folded or decided here is skipped). The state is a
function of the sequence of entries, so workers that fold the same sequence hold the same thresholds, daily
counts and pace.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DAY_MS = 86_400_000
CATCH_UP = 4.0  # a site behind its day's pace ranks at most this many times its usual share


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    target_share: float = 0.05  # inspections / declarations per site per day
    model_share: float = 0.045  # part of it the ranked selection aims at (the rest: random picks)
    shift_ms: int = 8 * 3_600_000
    shift_capacity: Mapping[str, int] = field(default_factory=dict)  # site -> inspections per shift
    default_shift_capacity: int | None = None  # None: no cap
    window: int = 2000
    min_window: int = 100  # fewer risks than this: cold, use cold_threshold
    cold_threshold: float = 0.5
    gain: float = 0.002
    max_sites: int = 10_000
    day_offset_ms: int = 8 * 3_600_000  # local day boundary (UTC+8)


class SiteBudget:
    __slots__ = (
        "day",
        "dispatched_day",
        "integ",
        "over_budget_day",
        "recent",
        "seen_day",
        "shift",
        "shift_dispatched",
        "sorted",
        "values",
    )

    def __init__(self) -> None:
        self.recent: deque[float] = deque()
        self.sorted: list[float] = []
        self.integ = 0.0
        self.day = -1
        self.seen_day = 0
        self.dispatched_day = 0
        self.over_budget_day = 0
        self.shift = -1
        self.shift_dispatched = 0
        self.values: ValueWindow | None = None  # declared values, only when the policy ranks by value


class ValueWindow:
    """The last ``window`` declared values of a site, sorted: their median is the site's value scale."""

    __slots__ = ("recent", "sorted")

    def __init__(self, values: list[float] | None = None) -> None:
        self.recent: deque[float] = deque(values or ())
        self.sorted: list[float] = sorted(self.recent)

    def add(self, value: float, window: int) -> float:
        """Add one value; return the median of the window (the value itself for the first)."""
        self.recent.append(value)
        bisect.insort(self.sorted, value)
        if len(self.recent) > window:
            old = self.recent.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]
        return self.sorted[len(self.sorted) // 2]


Entry = list[Any]  # [ref, site, ts_ms, rank, value or None, inspected 0/1, hard 0/1]
APPLIED_KEEP = 200_000  # declaration ids remembered to skip an entry folded twice


class BudgetController:
    def __init__(self, config: BudgetConfig | None = None) -> None:
        self.config = config or BudgetConfig()
        self.sites: OrderedDict[str, SiteBudget] = OrderedDict()
        self.journal: list[Entry] | None = None  # this worker's decisions, once shared (``share()``)
        self._open: Entry | None = None  # the decision being made: observed, not yet recorded
        self._value: float | None = None  # the value ``value_scale`` took in for it
        self._applied: OrderedDict[str, None] = OrderedDict()

    # -- shared by a consumer group ------------------------------------------------------------------
    def share(self) -> None:
        """Journal every decision from now on (``drain()`` takes the entries)."""
        if self.journal is None:
            self.journal = []

    def drain(self) -> list[Entry]:
        """The decisions made since the last drain, in order."""
        out = self.journal or []
        if self.journal is not None:
            self.journal = []
        return out

    def apply(self, entry: Entry) -> bool:
        """Fold in one decision another worker made (its ``journal`` entry): the state changes its
        ``observe``/``value_scale``/``record`` made there. False when ``ref`` was already folded or decided
        here (a redelivered entry). Raises ValueError/TypeError on an entry of another shape."""
        ref, site, ts, rank, value, inspected, hard = entry
        where, ts, rank = str(site), int(ts), float(rank)  # the shape checked before anything changes
        value = None if value is None else float(value)
        if ref and ref in self._applied:
            return False
        if ref:
            self._remember(str(ref))
        journal, self.journal = self.journal, None
        try:
            if value is not None:
                self.value_scale(where, value)
            self.observe(where, rank, ts)
            self.record(where, bool(inspected), bool(hard))
        finally:
            self.journal = journal
        return True

    def _remember(self, ref: str) -> None:
        self._applied[ref] = None
        if len(self._applied) > APPLIED_KEEP:
            self._applied.popitem(last=False)

    def _site(self, site: str) -> SiteBudget:
        s = self.sites.get(site)
        if s is None:
            s = self.sites[site] = SiteBudget()
            if len(self.sites) > self.config.max_sites:
                self.sites.popitem(last=False)
        else:
            self.sites.move_to_end(site)
        return s

    def _roll(self, s: SiteBudget, ts_ms: int) -> None:
        cfg = self.config
        day = (ts_ms + cfg.day_offset_ms) // DAY_MS
        if day != s.day:
            s.day, s.seen_day, s.dispatched_day, s.over_budget_day = day, 0, 0, 0
        shift = ts_ms // cfg.shift_ms
        if shift != s.shift:
            s.shift, s.shift_dispatched = shift, 0

    def observe(self, site: str, risk: float, ts_ms: int, pace: float | None = None, ref: str = "") -> float:
        """Add one declaration's risk; return the site's threshold for it. With ``pace`` (inspections of
        slack), a site whose inspections today are behind ``target_share`` x its declarations by more than
        ``pace`` ranks a larger share for a while (one more share of ``r`` per inspection behind, at most
        ``CATCH_UP`` times ``r``): the day's spend catches up with its traffic instead of being lost.
        ``ref`` names the decision (the declaration id) in the journal."""
        cfg = self.config
        s = self._site(site)
        if self.journal is not None:
            self._open = [ref, site, ts_ms, risk, self._value, 0, 0]
            if ref:
                self._remember(ref)
        self._value = None
        self._roll(s, ts_ms)
        s.seen_day += 1
        s.recent.append(risk)
        bisect.insort(s.sorted, risk)
        if len(s.recent) > cfg.window:
            old = s.recent.popleft()
            del s.sorted[bisect.bisect_left(s.sorted, old)]
        n = len(s.sorted)
        if n < cfg.min_window:
            return cfg.cold_threshold
        r = min(max(cfg.model_share + s.integ, 0.0), 1.0)
        if pace is not None:
            behind = cfg.target_share * s.seen_day - s.dispatched_day - pace
            if behind > 0:
                r = min(r * (1.0 + min(behind, CATCH_UP - 1.0)), 1.0)
        if r <= 0.0:
            return float("inf")
        return s.sorted[min(n - 1, max(0, int((1.0 - r) * n)))]

    def value_scale(self, site: str, value: float) -> float:
        """Add a declaration's declared value to the site's window; return the window's median value
        (the scale of ``PolicyConfig.rank_by_value``). Bounded like the risks (``window`` per site)."""
        s = self._site(site)
        if s.values is None:
            s.values = ValueWindow()
        self._value = value
        return s.values.add(value, self.config.window)

    def within_pace(self, site: str, slack: float, cold_slack: float | None = None) -> bool:
        """Whether one more inspection today keeps the site within ``target_share`` x its declarations so
        far (this one included) + ``slack`` inspections: the day's spend cannot run ahead of its traffic.
        A cold site (fewer than ``min_window`` risks seen, the threshold not yet a quantile) has
        ``cold_slack`` instead, when larger: a new site's first hits are not held back by a single one."""
        s = self._site(site)
        if cold_slack is not None and len(s.sorted) < self.config.min_window:
            slack = max(slack, cold_slack)
        return s.dispatched_day + 1 <= self.config.target_share * s.seen_day + slack

    def capacity_left(self, site: str) -> bool:
        cap = self.config.shift_capacity.get(site, self.config.default_shift_capacity)
        return cap is None or self._site(site).shift_dispatched < cap

    def record(self, site: str, inspected: bool, hard: bool = False) -> bool:
        """Count the outcome of one observed declaration; returns True if it went over the budget."""
        cfg = self.config
        s = self._site(site)
        over = False
        if inspected:
            over = hard and (
                not self.capacity_left(site) or s.dispatched_day >= cfg.target_share * max(s.seen_day, 1)
            )
            s.dispatched_day += 1
            s.shift_dispatched += 1
            s.over_budget_day += over
        if self._open is not None and self._open[1] == site:
            self._open[5], self._open[6] = int(inspected), int(hard)
            if self.journal is not None:
                self.journal.append(self._open)
            self._open = None
        bound = cfg.target_share
        s.integ = min(max(s.integ + cfg.gain * (cfg.target_share - float(inspected)), -bound), bound)
        return over

    def use_ratio(self, site: str) -> float:
        """Dispatched share today / target share (the bukong_budget_use_ratio gauge)."""
        s = self.sites.get(site)
        if s is None or s.seen_day == 0:
            return 0.0
        return (s.dispatched_day / s.seen_day) / self.config.target_share

    def stats(self, site: str) -> dict[str, Any]:
        s = self._site(site)
        return {
            "seen_day": s.seen_day,
            "dispatched_day": s.dispatched_day,
            "over_budget_day": s.over_budget_day,
            "shift_dispatched": s.shift_dispatched,
            "use_ratio": self.use_ratio(site),
        }

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for site, s in self.sites.items():
            out[site] = {
                "recent": list(s.recent),
                "integ": s.integ,
                "day": s.day,
                "counts": [s.seen_day, s.dispatched_day, s.over_budget_day],
                "shift": s.shift,
                "shift_dispatched": s.shift_dispatched,
            }
            if s.values is not None:
                out[site]["values"] = list(s.values.recent)
        return out

    def restore(self, state: Mapping[str, Any]) -> None:
        self.sites.clear()
        for site, st in state.items():
            s = self._site(site)
            s.recent = deque(float(v) for v in st["recent"][-self.config.window :])
            s.sorted = sorted(s.recent)
            s.integ = float(st["integ"])
            s.day = int(st["day"])
            s.seen_day, s.dispatched_day, s.over_budget_day = (int(v) for v in st["counts"])
            s.shift = int(st["shift"])
            s.shift_dispatched = int(st["shift_dispatched"])
            if "values" in st:
                s.values = ValueWindow([float(v) for v in st["values"][-self.config.window :]])
