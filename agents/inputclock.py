"""The input clock: how far in event time every input partition of this worker has been read.

Live, every partition is read up to now and a declaration is joined with what came before it. A backlog (a
worker restarted after an outage, a new worker taking over partitions, a burst above what it sustains) is
read unevenly: a fetch takes a partition's next megabyte, which is hours of declarations but minutes of GPS
points. Read that way, a declaration was decided when its own partition was read, and its weighbridge
reading and GPS track were still unread on the other topics' partitions; the event-time deadline fired at
once, because the fastest partition had moved the watermark hours on. Measured on the recorded day
(tests/golden), read in 2,000-record chunks per partition in turn: 2,360 of 2,740 declarations were decided
with their weighbridge, gate-in, manifest and track all missing; read in event order, none lacks its track.

So the worker computes, before each batch and once a second, the input clock: the lowest event time read on
the partitions that still have records to read (their high watermark beyond what the worker applied), plus a
slack. The feature engine holds a complete declaration after the clock until the clock passes it
(``FeatureEngine.hold``), and deadlines fire on the clock rather than on the fastest partition. Where no
partition is behind by more than the slack (live operation), the clock is None and nothing changes. A
partition reported stuck (agents/flow.py) no longer holds the clock: a broker that stops serving one partition
cannot stop every decision. A partition with records to read and none read yet holds every declaration until
it has been read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("bukong.inputclock")

Backlog = Callable[[], Mapping[str, int] | None]  # "topic:partition" -> high watermark, None: unknown
Pacer = Callable[[set[str], set[str]], None]  # (partitions to pause, partitions to resume)


@dataclass
class InputClock:
    backlog: Backlog
    stuck: Callable[[], Iterable[str]] = lambda: ()
    slack_ms: int = 60_000
    read: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> latest event time read
    clock: int | None = None  # the last clock computed (the engine's)
    behind: int = 0  # partitions holding it
    pacer: Pacer | None = None  # pauses and resumes partitions (the consumer's); None: never pause
    ahead_ms: int = 10 * 60_000
    paused: set[str] = field(default_factory=set)  # partitions paused for being read too far ahead

    def seen(self, tp: str, ts: int) -> None:
        if ts > self.read.get(tp, -1):
            self.read[tp] = ts

    def forget(self, tps: Iterable[str]) -> None:
        """Partitions revoked: they no longer hold the clock (their backlog is another worker's)."""
        for tp in tps:
            self.read.pop(tp, None)
            self.paused.discard(tp)

    def update(self, watermark_ms: int, applied: Mapping[str, int]) -> int | None:
        """The clock for ``watermark_ms`` (the latest event time read on any partition): None, or the
        lowest event time read on a partition with records left to read, plus the slack."""
        highwater = self.backlog()
        if highwater is None:  # the consumer is not running (start-up, a rebalance): keep the clock
            return self.clock
        stuck = set(self.stuck())
        low: int | None = None
        behind = 0
        for tp, hw in highwater.items():
            if tp in stuck or applied.get(tp, -1) + 1 >= hw:
                continue
            behind += 1
            ts = self.read.get(tp, 0)  # records to read and none read yet: nothing after them is decided
            low = ts if low is None else min(low, ts)
        self.behind = behind
        if low is None or (low > 0 and low >= watermark_ms - self.slack_ms):
            self.clock = None
        else:
            self.clock = low + self.slack_ms
        return self.clock

    def apply(self, joiner: Any, watermark_ms: int, applied: Mapping[str, int]) -> int | None:
        """Update the clock and hand it to the feature engine (``hold``); returns the event time deadlines
        fire on while partitions are behind, None when none is (the watermark as it is)."""
        clock = self.update(watermark_ms, applied)
        hold = getattr(joiner, "hold", None)
        if hold is not None:
            hold(clock)
        self.pace()
        return None if clock is None else self.deadline_watermark(watermark_ms)

    def ahead(self) -> set[str]:
        """The partitions read more than ``ahead_ms`` past the clock (none without a clock)."""
        if self.clock is None:
            return set()
        limit = self.clock + self.ahead_ms
        return {tp for tp, ts in self.read.items() if ts > limit}

    def pace(self) -> None:
        """Pause the partitions read too far past the clock and resume those it has come near (all of them
        once it is None). Without it a backlog's fast partitions are read to their end while the slow ones
        hold the clock: every declaration read meanwhile is held in memory, and state that folds what it
        reads (a truck's track, the commodity medians) sees records far after the declarations it decides.
        The slowest partition behind is never paused: the clock is its time plus the slack."""
        if self.pacer is None or self.ahead_ms <= 0:
            return
        ahead = self.ahead()
        stop, go = ahead - self.paused, self.paused - ahead
        if not stop and not go:
            return
        try:
            self.pacer(stop, go)
        except Exception:  # the consumer between generations: the next batch or tick tries again
            log.warning("pausing or resuming input partitions failed", exc_info=True)
            return
        self.paused = ahead

    def release(self, engine: Any) -> list[Any]:
        """The held declarations the clock has passed, decided in the batch (their shared state was read
        with it). A failure of the core is logged, as one in deadline scoring is, and the batch goes on."""
        try:
            return list(engine.release())
        except Exception:
            log.exception("the core failed deciding declarations held behind the input clock")
            return []

    async def after_batch(self, rt: Any, fetched_at: float | None) -> None:
        """After a batch is saved (its offsets applied): the declarations it released by bringing the
        partitions behind up to date are decided at once, within the batch, rather than by the next batch or
        the 1 s timer (the last batch of a backlog has no next one)."""
        if self.clock is None:
            return
        self.apply(rt.engine.joiner, rt.watermark_ms, rt.applied)
        releasable = getattr(rt.engine.joiner, "releasable", None)
        if releasable is None or not releasable():
            return
        await rt._prefetch_shared((), None)  # lists the releasable declarations
        decisions = self.release(rt.engine)
        if decisions:
            await rt._emit(decisions, [], fetched_at=fetched_at)

    def deadline_watermark(self, watermark_ms: int) -> int:
        """The event time deadlines fire on: the watermark, or under the clock while partitions are behind
        (a declaration's weighbridge reading may still be unread on a partition behind it)."""
        if self.clock is None:
            return watermark_ms
        return min(watermark_ms, self.clock - self.slack_ms)
