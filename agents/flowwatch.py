"""The worker's once-a-second look at its input partitions: adapt the fetch wait, report stuck partitions.

Reads each assigned input partition's high watermark and position from the consumer Faust runs (aiokafka, in
Faust's consumer thread), feeds agents/flow.py, and applies the result: the fetch wait on the live aiokafka
fetcher (read afresh for every fetch request), the ``bukong_partition_stuck`` and
``bukong_fetch_wait_seconds`` gauges, a log line on every change. ``stuck`` is read by the health check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from agents.flow import TP, FetchGovernor, Progress, StuckDetector
from pipeline.contracts import events as c
from pipeline.io.metrics import Metrics

log = logging.getLogger("bukong.flow")


def aiokafka_consumer(app: Any) -> Any:
    """The aiokafka consumer inside Faust's consumer thread, or None before it started."""
    thread = getattr(getattr(app, "consumer", None), "_thread", None)
    return getattr(thread, "_consumer", None)


def set_fetch_wait(app: Any, wait_ms: int) -> bool:
    """Change the fetch wait of the running consumer (its fetcher builds every request from it)."""
    fetcher = getattr(aiokafka_consumer(app), "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
        return False
    fetcher._fetch_max_wait_ms = int(wait_ms)
    return True


def _highwaters(aio: Any) -> list[tuple[Any, int]] | None:
    """(topic-partition, high watermark) of each assigned input partition whose high watermark the
    consumer knows (from its last fetch of it); None between generations."""
    try:
        tps = list(aio.assignment())
    except Exception:  # not started, or between generations
        return None
    out = []
    for tp in tps:
        if tp.topic not in c.INPUT_TOPICS:
            continue
        try:
            hw = aio.highwater(tp)
        except AssertionError:  # revoked since we listed it
            continue
        if hw is not None:
            out.append((tp, int(hw)))
    return out


def input_highwaters(app: Any) -> dict[str, int] | None:
    """ "topic:partition" -> high watermark of each assigned input partition the consumer has fetched (the
    input clock's, agents/inputclock.py); None before the consumer started or between generations."""
    aio = aiokafka_consumer(app)
    found = _highwaters(aio) if aio is not None else None
    return None if found is None else {f"{tp.topic}:{tp.partition}": hw for tp, hw in found}


def _position(aio: Any, tp: Any) -> int | None:
    try:
        return int(aio._subscription.subscription.assignment.state_value(tp).position)
    except (AttributeError, TypeError, ValueError, KeyError):
        return None


class FlowWatch:
    def __init__(self, metrics: Metrics, base_wait_ms: int, cap_wait_ms: int, stuck_after_s: float) -> None:
        self.metrics = metrics
        self.governor = FetchGovernor(base_ms=base_wait_ms, cap_ms=max(cap_wait_ms, base_wait_ms, 1))
        self.detector = StuckDetector(after_s=stuck_after_s)
        self.busy = False  # the batch handler is running (set by the agent around each batch)
        self._seen: dict[TP, Progress] = {}
        # partitions the worker paused on purpose (read too far past the input clock): not starved, not stuck
        self.paused: Callable[[], set[str]] = set

    @property
    def stuck(self) -> list[str]:
        return sorted(f"{t}:{p}" for t, p in self.detector.stuck)

    def progress(self, app: Any, applied: dict[str, int]) -> dict[TP, Progress]:
        """Per assigned input partition: high watermark and the next offset the worker needs."""
        aio = aiokafka_consumer(app)
        out: dict[TP, Progress] = {}
        paused = self.paused()
        for tp, hw in (_highwaters(aio) if aio is not None else None) or ():
            if paused and f"{tp.topic}:{tp.partition}" in paused:
                continue
            done = applied.get(f"{tp.topic}:{tp.partition}", -1) + 1
            pos = _position(aio, tp)
            if pos is not None and not self.busy:
                # fetched and handed over: with the handler idle, the position is what the worker has done
                done = max(done, pos)
            out[(tp.topic, tp.partition)] = Progress(hw, done)
        return out

    async def broker_answers(self, app: Any, timeout_s: float = 2.0) -> bool:
        """A cheap round trip to the broker (end offsets), to tell a starved fetch from a broker outage."""
        aio = aiokafka_consumer(app)
        if aio is None:
            return False
        try:
            tps = [tp for tp in aio.assignment() if tp.topic in c.INPUT_TOPICS][:1]
            if not tps:
                return False
            await asyncio.wait_for(app.consumer.highwaters(*tps), timeout_s)
            return True
        except Exception:
            return False

    async def tick(self, app: Any, applied: dict[str, int], now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        progress = self.progress(app, applied)
        moved = any(p != self._seen.get(tp, p) for tp, p in progress.items())
        self._seen = progress
        lagging = any(p.lag for p in progress.values())
        eligible = False
        if lagging and not self.busy:
            eligible = moved or await self.broker_answers(app)
        before = self.governor.wait_ms
        new_wait = self.governor.observe(progress, eligible)
        if new_wait is not None:
            set_fetch_wait(app, new_wait)
        if new_wait is not None and new_wait < before:
            log.info("no partition starved for a while: fetch wait lowered to %d ms", new_wait)
        elif new_wait is not None and new_wait > before:
            starved = sorted(f"{t}:{p}" for (t, p), pr in progress.items() if pr.lag)
            log.warning(
                "input partitions with lag return no records at the current fetch wait; raising it to %d ms "
                "(lagging: %s). The embedded broker needs longer waits as its partitions fill; "
                "BUKONG_FETCH_MAX_WAIT_CAP_MS bounds it.",
                new_wait,
                ", ".join(starved),
            )
        self.metrics.fetch_wait_seconds.set(self.governor.wait_ms / 1000)
        newly, recovered = self.detector.observe(progress, now_s)
        for topic, part in sorted(newly):
            p = progress[(topic, part)]
            log.error(
                "partition %s:%d is stuck: %d records behind, position %d unchanged for %.0f s",
                topic,
                part,
                p.lag,
                p.done,
                self.detector.after_s,
            )
        for topic, part in sorted(recovered):
            log.warning("partition %s:%d moves again", topic, part)
        for topic, part in newly | recovered:
            self.metrics.partition_stuck.labels(topic, str(part)).set(1 if (topic, part) in newly else 0)
        for topic, part in progress:
            if (topic, part) not in newly and (topic, part) not in self.detector.stuck:
                self.metrics.partition_stuck.labels(topic, str(part)).set(0)
