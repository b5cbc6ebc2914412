"""Bounded aggregators with their state passed in and out (the river/quix shape), pure of event time.

Every aggregator has the same small contract, checked by tests/unit/features/test_contract.py:

* ``initial(ts_ms)`` -> a fresh state;
* ``update(state, ts_ms, x)`` -> the state with ``x`` taken in (the same object, changed in place: cheap);
* ``result(state, ts_ms)`` -> what the state says as of event time ``ts_ms``;
* ``to_dict(state)`` / ``from_dict(snap)`` -> a plain, JSON-able dict and back (snapshots, changelogs);
* ``size(state)`` <= ``bound``: no state grows past its window or its cap.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from features.windows import sliding_window, tumbling_window

S = TypeVar("S")
X = TypeVar("X", contravariant=True)
R = TypeVar("R", covariant=True)


class Aggregator(Protocol[S, X, R]):
    bound: int

    def initial(self, ts_ms: int) -> S: ...

    def update(self, state: S, ts_ms: int, x: X) -> S: ...

    def result(self, state: S, ts_ms: int) -> R: ...

    def to_dict(self, state: S) -> dict[str, Any]: ...

    def from_dict(self, snap: dict[str, Any]) -> S: ...

    def size(self, state: S) -> int: ...


# ---------------------------------------------------------------------------------- windowed counts and sums
Buckets = dict[int, list[float]]  # bucket start -> [count, sum]


@dataclass(frozen=True)
class WindowSums:
    """Counts and sums of values in tumbling buckets over a horizon; ``result`` gives (count, sum) for each
    sliding window in ``windows`` ending at ``ts_ms``, to bucket resolution (a bucket the window's far edge
    cuts is counted whole). O(1) update, O(horizon/bucket) result."""

    bucket_ms: int
    horizon_ms: int
    windows: tuple[int, ...]

    @property
    def bound(self) -> int:
        return self.horizon_ms // self.bucket_ms + 2

    def initial(self, ts_ms: int) -> Buckets:
        return {}

    def update(self, state: Buckets, ts_ms: int, x: float) -> Buckets:
        b = tumbling_window(ts_ms, self.bucket_ms)[0]
        cell = state.get(b)
        if cell is not None:
            cell[0] += 1
            cell[1] += x
            return state
        state[b] = [1.0, x]
        floor = ts_ms - self.horizon_ms - self.bucket_ms
        for old in [k for k in state if k < floor]:
            del state[old]
        return state

    def extend(self, state: Buckets, items: Iterable[tuple[int, float]]) -> Buckets:
        """``update(state, ts, x)`` for each (ts, x) of ``items``, which come in ascending ``ts``: the same
        state in one pass. Their floors only rise, so a bucket ``update`` drops on the way is one below the
        floor of the last bucket opened, and no later item lands in it: dropped once, at the end."""
        width, floor = self.bucket_ms, None
        for ts, x in items:
            b = ts - ts % width
            cell = state.get(b)
            if cell is not None:
                cell[0] += 1
                cell[1] += x
            else:
                state[b] = [1.0, x]
                floor = ts - self.horizon_ms - width
        if floor is not None:
            for old in [k for k in state if k < floor]:
                del state[old]
        return state

    def result(self, state: Buckets, ts_ms: int) -> list[tuple[int, float]]:
        return [self.window(state, ts_ms, w) for w in self.windows]

    def window(self, state: Buckets, ts_ms: int, window_ms: int) -> tuple[int, float]:
        lo, hi = sliding_window(ts_ms, window_ms)
        n, s, width = 0.0, 0.0, self.bucket_ms
        for b, (c, v) in state.items():
            if lo < b + width and b <= hi:
                n += c
                s += v
        return int(n), s

    def to_dict(self, state: Buckets) -> dict[str, Any]:
        return {"buckets": {str(b): list(cell) for b, cell in state.items()}}

    def from_dict(self, snap: dict[str, Any]) -> Buckets:
        return {int(b): [float(cell[0]), float(cell[1])] for b, cell in snap["buckets"].items()}

    def size(self, state: Buckets) -> int:
        return len(state)


# ------------------------------------------------------------------------------------------- rolling median
@dataclass(slots=True)
class MedianState:
    fifo: deque[float] = field(default_factory=deque)
    ordered: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class RecentMedian:
    """Median of the last ``bound`` values (a sorted list plus a FIFO): O(log n) search. ``result`` is
    (median or None, how many values)."""

    bound: int = 101

    def initial(self, ts_ms: int) -> MedianState:
        return MedianState()

    def update(self, state: MedianState, ts_ms: int, x: float) -> MedianState:
        state.fifo.append(x)
        bisect.insort(state.ordered, x)
        if len(state.fifo) > self.bound:
            old = state.fifo.popleft()
            del state.ordered[bisect.bisect_left(state.ordered, old)]
        return state

    def result(self, state: MedianState, ts_ms: int) -> tuple[float | None, int]:
        o = state.ordered
        n = len(o)
        if not n:
            return None, 0
        mid = n // 2
        return (o[mid] if n % 2 else (o[mid - 1] + o[mid]) / 2), n

    def to_dict(self, state: MedianState) -> dict[str, Any]:
        return {"values": list(state.fifo)}

    def from_dict(self, snap: dict[str, Any]) -> MedianState:
        values = [float(v) for v in snap["values"]]
        return MedianState(deque(values), sorted(values))

    def size(self, state: MedianState) -> int:
        return len(state.fifo)


# ------------------------------------------------------------------------------ recent values in a window
@dataclass(frozen=True)
class RecentValues:
    """The values of the last ``window_ms`` (at most ``bound``); ``result`` is (count, sum) of those in the
    sliding window ending at ``ts_ms``."""

    window_ms: int
    bound: int = 100

    def initial(self, ts_ms: int) -> deque[tuple[int, float]]:
        return deque()

    def update(self, state: deque[tuple[int, float]], ts_ms: int, x: float) -> deque[tuple[int, float]]:
        state.append((ts_ms, x))
        while state and state[0][0] <= ts_ms - self.window_ms:
            state.popleft()
        while len(state) > self.bound:
            state.popleft()
        return state

    def result(self, state: deque[tuple[int, float]], ts_ms: int) -> tuple[int, float]:
        lo, hi = sliding_window(ts_ms, self.window_ms)
        live = [v for t, v in state if lo < t <= hi]
        return len(live), sum(live)

    def to_dict(self, state: deque[tuple[int, float]]) -> dict[str, Any]:
        return {"ts_ms": [t for t, _ in state], "values": [v for _, v in state]}

    def from_dict(self, snap: dict[str, Any]) -> deque[tuple[int, float]]:
        return deque(zip(snap["ts_ms"], snap["values"], strict=True))

    def size(self, state: deque[tuple[int, float]]) -> int:
        return len(state)


# ------------------------------------------------------------------------------ codes new in a window
@dataclass(slots=True)
class SeenState:
    since: int  # event time of the first update: how long we have known the key
    first: dict[str, int] = field(default_factory=dict)  # code -> first seen
    last: dict[str, int] = field(default_factory=dict)  # code -> last seen


@dataclass(frozen=True)
class NewShare:
    """Of the codes seen in the last ``window_ms``, the share first seen in that window (``None`` while the
    state is younger than the window). At most ``bound`` codes: the least recently seen goes first."""

    window_ms: int
    bound: int = 200

    def initial(self, ts_ms: int) -> SeenState:
        return SeenState(ts_ms)

    def update(self, state: SeenState, ts_ms: int, x: str) -> SeenState:
        state.first.setdefault(x, ts_ms)
        state.last[x] = ts_ms
        if len(state.last) > self.bound:
            old = min(state.last, key=state.last.__getitem__)
            del state.last[old]
            state.first.pop(old, None)
        return state

    def extend(self, state: SeenState, items: Iterable[tuple[int, str]]) -> SeenState:
        """``update(state, ts, x)`` for each (ts, x) of ``items`` in order, in one call."""
        for ts, x in items:
            self.update(state, ts, x)
        return state

    def result(self, state: SeenState, ts_ms: int) -> float | None:
        lo = ts_ms - self.window_ms
        recent = [h for h, t in state.last.items() if t > lo]
        if not recent or ts_ms - state.since <= self.window_ms:
            return None
        return sum(1 for h in recent if state.first[h] > lo) / len(recent)

    def to_dict(self, state: SeenState) -> dict[str, Any]:
        return {"since": state.since, "first": dict(state.first), "last": dict(state.last)}

    def from_dict(self, snap: dict[str, Any]) -> SeenState:
        return SeenState(int(snap["since"]), dict(snap["first"]), dict(snap["last"]))

    def size(self, state: SeenState) -> int:
        return len(state.last)


# ----------------------------------------------------------------------------------- smoothed rate
@dataclass(frozen=True)
class SmoothedRate:
    """(hits + a) / (trials + a + b): a Beta(a, b) prior, so an unknown key is neither 0 nor 1."""

    prior_hits: float = 1.0
    prior_misses: float = 19.0
    bound: int = 2

    def initial(self, ts_ms: int) -> list[float]:
        return [0.0, 0.0]

    def update(self, state: list[float], ts_ms: int, x: bool) -> list[float]:
        state[0] += 1
        state[1] += x
        return state

    def result(self, state: list[float], ts_ms: int) -> float:
        n, v = state
        return (v + self.prior_hits) / (n + self.prior_hits + self.prior_misses)

    def to_dict(self, state: list[float]) -> dict[str, Any]:
        return {"trials": state[0], "hits": state[1]}

    def from_dict(self, snap: dict[str, Any]) -> list[float]:
        return [float(snap["trials"]), float(snap["hits"])]

    def size(self, state: list[float]) -> int:
        return len(state)
