"""Per-stage timings of the worker, always on: where a batch's time goes, without a profiler.

The pure core takes no clock, so the agent times it from outside: the engine's parts (the joiner, the rule
pack, the model, the policy) are wrapped in ``Timed`` proxies that add the seconds of one method to a stage
and forward everything else. The runtime adds decode, Redis round trips and the wait for producer acks; what
is left of a batch (building commands, queueing records, bookkeeping) is ``dispatch``. Each batch's seconds
per stage go to two histograms: per batch, and per event (the batch's seconds over its records).
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.io.metrics import Metrics

# decode: bytes -> validated event; shared: the read of the consumer group's shared enterprise and
# commodity state (agents/globalstate.py); join: the joiner and every feature; rules, model, policy: the
# decision's parts; dispatch: commands built, records queued, bookkeeping; redis: round trips; acks: the
# wait for the broker to acknowledge what the batch produced
STAGES = ("decode", "shared", "join", "rules", "model", "policy", "dispatch", "redis", "acks")
CORE_PARTS = {
    "joiner": {"on_event": "join", "advance": "join", "release": "join"},
    "rules": {"evaluate": "rules"},
}
CORE_PARTS |= {"model": {"score": "model"}, "policy": {"decide": "policy"}}


class Timed:
    """Forwards every attribute to ``inner``; calls of the named methods add their seconds to a stage."""

    def __init__(self, inner: Any, methods: dict[str, str], spent: dict[str, float]) -> None:
        d = self.__dict__
        d["_inner"] = inner
        for name, stage in methods.items():
            fn = getattr(inner, name, None)
            if fn is not None:
                d[name] = _timed(fn, stage, spent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_inner"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__dict__["_inner"], name, value)


def _timed(fn: Any, stage: str, spent: dict[str, float]) -> Any:
    clock = time.perf_counter

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[stage] += clock() - t0

    return timed


class StageClock:
    """Seconds per stage of the batch in progress, and their export to the stage histograms."""

    def __init__(self, metrics: Metrics) -> None:
        self.spent: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._per_batch = {s: metrics.stage_seconds.labels(s) for s in STAGES}
        self._per_event = {s: metrics.stage_event_seconds.labels(s) for s in STAGES}
        self._internal = metrics.worker_latency_seconds

    def instrument(self, engine: Any) -> None:
        """Wrap the engine's parts that are not wrapped yet (a swapped rule pack arrives bare)."""
        for attr, methods in CORE_PARTS.items():
            part = getattr(engine, attr, None)
            if part is not None and not isinstance(part, Timed):
                setattr(engine, attr, Timed(part, methods, self.spent))

    def reset(self) -> None:
        for s in STAGES:
            self.spent[s] = 0.0

    def add(self, stage: str, seconds: float) -> None:
        self.spent[stage] += seconds

    def observe(self, events: int, batch_seconds: float) -> None:
        """The batch is done: what no stage claimed is dispatch; export per batch and per event."""
        s = self.spent
        s["dispatch"] = max(0.0, batch_seconds - sum(v for k, v in s.items() if k != "dispatch"))
        for stage, v in s.items():
            self._per_batch[stage].observe(v)
            if events:
                self._per_event[stage].observe(v / events)

    def fetched_to_acked(self, fetched_at: float | None, commands: int) -> None:
        """Worker-internal latency of each command this batch produced: record fetched -> broker ack."""
        if fetched_at is None or not commands:
            return
        lat = max(0.0, time.monotonic() - fetched_at)
        for _ in range(commands):
            self._internal.observe(lat)
