"""The worker's garbage collector: no pause in the middle of the stream, and a bound on what it leaves.

CPython frees almost everything by reference counting; its cyclic collector exists for reference cycles, and
it finds them by walking every object of the generations it collects. The worker's join state is many
long-lived objects that survive the young generation, so each older collection walked all of it: measured
in process (the worker's batch path, benchmarks/README.md "The garbage collector"), young collections took
11-84 ms and the first middle-generation one 965 ms, after 2.2 million records: a stall of every partition of
the worker, with the thresholds raised as they are (``GC_THRESHOLDS``).

``Collector`` instead freezes (``gc.freeze``, O(1)) what is alive every ``tick`` (the loop watch calls it
ten times a second), so automatic collections only ever see what was allocated since the last tick, and runs
one full collection (``gc.unfreeze`` then ``gc.collect``) every ``full_every_s``: the cycles that became
garbage after being frozen are freed then, never later. Few such cycles are made (in process 167 objects in
1.3 million records; a live worker at 2,000 events/s 0-177 per 10 s); the full collection logs and counts
what it freed, so a leak would show, and its own pause is ``bukong_gc_pause_seconds{generation="2"}``
(0.2-0.4 s in that worker).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

from pipeline.io.metrics import Metrics

log = logging.getLogger("bukong.worker")


class Collector:
    """``tick()`` from the worker's loop; ``full()`` when a full collection is due (or asked for)."""

    def __init__(
        self, metrics: Metrics, full_every_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.metrics, self.full_every_s, self.clock = metrics, full_every_s, clock
        self._hist = [metrics.gc_pause_seconds.labels(str(g)) for g in range(3)]
        self._t0 = 0.0
        self._last_full = clock()

    @property
    def freezing(self) -> bool:
        return self.full_every_s > 0

    def start(self) -> None:
        """Time every collection; when freezing, collect once and freeze what start-up built."""
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        if self.freezing:
            self.full()

    def stop(self) -> None:
        """Stop timing; what was frozen goes back to Python's own collector."""
        if self in gc.callbacks:
            gc.callbacks.remove(self)
        if self.freezing:
            gc.unfreeze()

    def tick(self) -> None:
        if not self.freezing:
            return
        if self.clock() - self._last_full >= self.full_every_s:
            self.full()
        else:
            gc.freeze()  # O(1): the generations' lists are spliced onto the permanent one

    def full(self) -> int:
        """One full collection of everything, then freeze what is left: returns the objects it freed."""
        t0 = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        if self.freezing:
            gc.freeze()
            # counting walks the whole list: only here, never per tick
            self.metrics.gc_frozen.set(gc.get_freeze_count())
        self._last_full = self.clock()
        self.metrics.gc_full_freed.inc(freed)
        log.info(
            "full garbage collection: %d unreachable objects freed in %.0f ms",
            freed,
            (time.perf_counter() - t0) * 1000,
        )
        return freed

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        """``gc.callbacks``: each collection's pause, by generation."""
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self._hist[min(info.get("generation", 2), 2)].observe(time.perf_counter() - self._t0)
