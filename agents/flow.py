"""Keep every input partition moving, and say so when one is not.

Two small state machines, fed once a second with each assigned partition's high watermark and the offset the
worker has processed up to (``done`` = last applied offset + 1). No I/O: the caller reads the numbers from the
consumer and applies the result.

``FetchGovernor`` adapts the consumer's fetch wait. The embedded broker (tansu, memory storage) gives each
fetch only ``fetch_max_wait_ms`` to list a partition's stored batches, and that listing grows with the number
of batches it holds (it never applies retention): past ~20-30k batches a 5 ms wait returns nothing, at any
offset, forever (docs/reliability.md). A partition that has lag, while the worker sits idle waiting for
records, and still makes no progress is *starved*: the governor doubles the wait (up to ``cap_ms``) until
records flow again. The broker also waits that long before it answers a fetch with nothing new, so a long
wait costs latency at low rates: after ``calm_ticks`` observations without starvation the governor lowers
the wait by a quarter (never below ``base_ms``), and raises it again if that was too short (a lagging
partition then waits ``patience`` observations). On Apache Kafka a fetch returns as soon as data is there,
nothing starves, and the wait stays where it was configured.

``StuckDetector`` reports a partition whose lag is positive while its position has stood still for
``after_s`` seconds, whatever the reason (a starved fetch, a blocked dependency, a poison record): the caller
turns that into the ``bukong_partition_stuck`` gauge, a log line and a degraded health check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TP = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True, slots=True)
class Progress:
    """One partition at one instant: the log end and the next offset the worker needs."""

    highwater: int
    done: int

    @property
    def lag(self) -> int:
        return max(0, self.highwater - self.done)


@dataclass
class FetchGovernor:
    base_ms: int = 5
    cap_ms: int = 2000
    patience: int = 2  # consecutive starved observations before the wait is raised
    calm_ticks: int = 60  # observations without starvation before the wait is lowered by a quarter
    wait_ms: int = 0
    raised: int = 0  # times the wait went up (for the log and tests)
    _calm: int = 0
    _last: dict[TP, int] = field(default_factory=dict)
    _starved: dict[TP, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.base_ms < 0 or self.cap_ms < max(1, self.base_ms):
            raise ValueError("fetch wait: need 0 <= base_ms <= cap_ms and cap_ms >= 1")
        self.wait_ms = self.wait_ms or self.base_ms

    def observe(self, progress: Mapping[TP, Progress], eligible: bool) -> int | None:
        """Feed one observation; return the new wait when it should change, else None.

        ``eligible``: the batch handler is idle (not busy, not blocked on a dependency) and the broker is
        answering, so a lagging partition that did not move was fetched from and came back empty.
        """
        starved = []
        for tp, p in progress.items():
            before = self._last.get(tp)
            self._last[tp] = p.done
            if before is None or not eligible or p.lag == 0 or p.done != before:
                self._starved.pop(tp, None)
                continue
            n = self._starved[tp] = self._starved.get(tp, 0) + 1
            if n >= self.patience:
                starved.append(tp)
        for tp in [tp for tp in self._last if tp not in progress]:  # revoked partitions
            self._last.pop(tp, None)
            self._starved.pop(tp, None)
        if not starved:
            self._calm += 1
            if self._calm < self.calm_ticks or self.wait_ms <= self.base_ms:
                return None
            self._calm = 0
            self.wait_ms = max(self.base_ms, self.wait_ms * 3 // 4)
            return self.wait_ms
        self._calm = 0
        if self.wait_ms >= self.cap_ms:
            return None
        self.wait_ms = min(self.cap_ms, max(2 * self.wait_ms, 20))
        self.raised += 1
        self._starved.clear()  # give the new wait a fair chance before judging again
        return self.wait_ms


@dataclass
class StuckDetector:
    after_s: float = 30.0
    _since: dict[TP, tuple[int, float]] = field(default_factory=dict)  # tp -> (done, when it last moved)
    stuck: set[TP] = field(default_factory=set)

    def observe(self, progress: Mapping[TP, Progress], now_s: float) -> tuple[set[TP], set[TP]]:
        """Feed one observation at monotonic time ``now_s``; return (newly stuck, recovered)."""
        newly, recovered = set(), set()
        for tp, p in progress.items():
            done, since = self._since.get(tp, (p.done, now_s))
            if p.done != done or p.lag == 0:
                since = now_s
            self._since[tp] = (p.done, since)
            is_stuck = p.lag > 0 and now_s - since >= self.after_s
            if is_stuck and tp not in self.stuck:
                self.stuck.add(tp)
                newly.add(tp)
            elif not is_stuck and tp in self.stuck:
                self.stuck.discard(tp)
                recovered.add(tp)
        for tp in [tp for tp in self._since if tp not in progress]:
            self._since.pop(tp, None)
            if tp in self.stuck:
                self.stuck.discard(tp)
                recovered.add(tp)
        return newly, recovered
