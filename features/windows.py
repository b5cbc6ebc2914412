"""Window geometry and small bounded aggregates, as pure functions of event time (milliseconds).

Geometry: which windows a timestamp belongs to (tumbling, hopping, sliding, session). Aggregates: state in,
state out, every one bounded by its window or a size.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field


def tumbling_window(ts_ms: int, size_ms: int) -> tuple[int, int]:
    """The [start, end) tumbling window containing ``ts_ms``."""
    start = ts_ms - ts_ms % size_ms
    return start, start + size_ms


def hopping_windows(ts_ms: int, size_ms: int, step_ms: int) -> list[tuple[int, int]]:
    """Every [start, end) window of length ``size_ms`` advancing by ``step_ms`` that contains ``ts_ms``."""
    if step_ms <= 0 or size_ms <= 0 or size_ms % step_ms:
        raise ValueError("size_ms must be a positive multiple of step_ms")
    last = ts_ms - ts_ms % step_ms
    return [(s, s + size_ms) for s in range(last - size_ms + step_ms, last + step_ms, step_ms)]


def sliding_window(ts_ms: int, size_ms: int) -> tuple[int, int]:
    """The window of the ``size_ms`` before and including ``ts_ms``: (ts - size, ts]."""
    return ts_ms - size_ms, ts_ms


def session_windows(timestamps: list[int], gap_ms: int) -> list[tuple[int, int]]:
    """Group sorted timestamps into sessions separated by more than ``gap_ms``; [first, last] per session."""
    out: list[tuple[int, int]] = []
    for ts in timestamps:
        if out and ts - out[-1][1] <= gap_ms:
            out[-1] = (out[-1][0], ts)
        else:
            out.append((ts, ts))
    return out


@dataclass
class BucketSums:
    """Counts and sums in fixed buckets over a horizon: O(1) update, O(horizon/bucket) query, bounded."""

    bucket_ms: int
    horizon_ms: int
    buckets: dict[int, list[float]] = field(default_factory=dict)  # bucket start -> [count, sum]

    def update(self, ts_ms: int, value: float = 0.0) -> None:
        b = ts_ms - ts_ms % self.bucket_ms
        cell = self.buckets.get(b)
        if cell is None:
            self.buckets[b] = [1.0, value]
            self._expire(ts_ms)
        else:
            cell[0] += 1
            cell[1] += value

    def _expire(self, now_ms: int) -> None:
        floor = now_ms - self.horizon_ms - self.bucket_ms
        for b in [b for b in self.buckets if b < floor]:
            del self.buckets[b]

    def get(self, now_ms: int, window_ms: int) -> tuple[int, float]:
        """(count, sum) of updates in (now - window, now], to bucket resolution."""
        lo = now_ms - window_ms
        n, s = 0.0, 0.0
        for b, (c, v) in self.buckets.items():
            if lo < b + self.bucket_ms and b <= now_ms:
                n += c
                s += v
        return int(n), s

    def snapshot(self) -> dict[str, list[float]]:
        return {str(k): v for k, v in self.buckets.items()}

    @classmethod
    def restore(cls, bucket_ms: int, horizon_ms: int, snap: dict[str, list[float]]) -> BucketSums:
        return cls(bucket_ms, horizon_ms, {int(k): list(v) for k, v in snap.items()})


@dataclass
class RollingMedian:
    """Median of the last ``size`` values (a sorted list plus a FIFO): O(log n) search, bounded memory."""

    size: int = 101
    fifo: deque[float] = field(default_factory=deque)
    ordered: list[float] = field(default_factory=list)

    def update(self, x: float) -> None:
        self.fifo.append(x)
        bisect.insort(self.ordered, x)
        if len(self.fifo) > self.size:
            old = self.fifo.popleft()
            del self.ordered[bisect.bisect_left(self.ordered, old)]

    def get(self) -> float | None:
        n = len(self.ordered)
        if not n:
            return None
        mid = n // 2
        return self.ordered[mid] if n % 2 else (self.ordered[mid - 1] + self.ordered[mid]) / 2

    def __len__(self) -> int:
        return len(self.ordered)
