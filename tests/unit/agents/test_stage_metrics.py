"""Per-stage timings on a real worker (embedded broker and Redis): exported on /metrics, counting events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.stages import STAGES
from pipeline.contracts import events as c
from pipeline.io.embedded import Servers, free_port
from tests.conftest import (
    PARTITIONS,
    Stack,
    declaration,
    scrape_metrics,
    stop_worker,
    wait_metrics,
    wait_ready,
    weighbridge,
)


@pytest.fixture(scope="module")
def worker(embedded: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    import redis

    from pipeline.io.harness import spawn_worker

    redis.Redis.from_url(embedded.redis_url).delete("bukong:workers:ready")
    port = free_port()
    log_dir: Path = tmp_path_factory.mktemp("stage-worker")
    env = {"BUKONG_APP_ID": "bukong-stages", "BUKONG_PARTITIONS": str(PARTITIONS)}
    proc = spawn_worker(embedded.kafka, embedded.redis_url, 0, log_dir, metrics_port=port, extra_env=env)
    st = Stack(embedded, proc, log_dir / "worker-0.log")
    try:
        wait_ready(embedded)
        wait_metrics(port)
        yield st, port
    finally:
        stop_worker(proc)
        if st._producer is not None:
            st._producer.close()


def test_stage_histograms_are_exported_and_count_the_events_that_flowed(
    worker: tuple[Stack, int], uid: str
) -> None:
    stack, port = worker
    stack.send(c.LOGISTICS, weighbridge(uid, "HEAVY", measured_kg=34_500))  # +15%: the weight rule fires
    stack.send(c.DECLARATIONS, declaration(uid, "HEAVY", gross_kg=30_000))
    for i in range(5):
        stack.send(c.LOGISTICS, weighbridge(uid, f"OTHER{i}", measured_kg=30_000))
    busy = ("decode", "join", "rules", "model", "policy", "redis", "acks")

    def spent(stage: str) -> float:
        return seen.get(("bukong_stage_seconds_sum", (("stage", stage),)), 0.0)

    deadline = time.monotonic() + 90  # a loaded machine: the records flow in well under a second here
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    events = 0.0
    while time.monotonic() < deadline:
        seen = scrape_metrics(port)
        events = sum(v for (name, _), v in seen.items() if name == "bukong_events_in_total")
        done = seen.get(("bukong_worker_latency_seconds_count", ()), 0) >= 1 and events >= 7
        if done and all(spent(st) > 0 for st in busy):
            break
        time.sleep(0.3)
    assert events >= 7
    for stage in STAGES:
        key = (("stage", stage),)
        assert seen.get(("bukong_stage_seconds_count", key), 0) >= 1, stage  # one per batch
        assert seen.get(("bukong_stage_event_seconds_count", key), 0) >= 1, stage
    # every stage that does work on these records spent measurable time in it
    for stage in busy:
        assert spent(stage) > 0, stage
    # the overweight truck's command: fetched -> acknowledged, counted once per command
    assert seen[("bukong_worker_latency_seconds_count", ())] >= 1
    assert seen[("bukong_worker_latency_seconds_sum", ())] > 0


def test_the_event_loop_lag_is_sampled_ten_times_a_second(worker: tuple[Stack, int]) -> None:
    """``bukong_event_loop_lag_seconds``: how late the loop woke from a 100 ms sleep, on the worker's own
    loop (what held it shows there and in no stage)."""
    _, port = worker
    first = scrape_metrics(port).get(("bukong_event_loop_lag_seconds_count", ()), 0.0)
    time.sleep(1.5)
    after = scrape_metrics(port)
    assert after[("bukong_event_loop_lag_seconds_count", ())] - first >= 5  # ~15 in 1.5 s, on a loaded box
    mean = (
        after[("bukong_event_loop_lag_seconds_sum", ())] / after[("bukong_event_loop_lag_seconds_count", ())]
    )
    assert 0 <= mean < 0.1  # an idle worker's loop is not held for a whole sleep at a time
    # the collector's pauses are exported by generation from the start, collected or not yet
    for gen in "012":
        assert ("bukong_gc_pause_seconds_count", (("generation", gen),)) in after


def test_each_garbage_collection_is_timed_under_its_generation() -> None:
    """The collector's callback times the collections the process runs, young and full, until stopped."""
    import gc

    from prometheus_client import CollectorRegistry

    from agents.collector import Collector
    from pipeline.io.metrics import Metrics

    registry = CollectorRegistry()
    collector = Collector(Metrics.create(registry), full_every_s=0)  # Python's own collector: no freezing

    def count(gen: int) -> float:
        return registry.get_sample_value("bukong_gc_pause_seconds_count", {"generation": str(gen)}) or 0.0

    collector.start()
    collector.start()  # once only
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        collector.stop()
    assert count(0) >= 1 and count(2) >= 2
    assert (registry.get_sample_value("bukong_gc_pause_seconds_sum", {"generation": "2"}) or 0) > 0
    before = count(2)
    gc.collect(2)
    assert count(2) == before and collector not in gc.callbacks
    assert gc.get_freeze_count() == 0


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_frozen_cycles_are_freed_by_the_next_full_collection_and_not_before() -> None:
    """Ticks freeze what is alive, so a cycle that becomes garbage after a tick waits for the full
    collection, which comes ``full_every_s`` later (on the collector's clock) and frees it."""
    import gc

    from prometheus_client import CollectorRegistry

    from agents.collector import Collector
    from pipeline.io.metrics import Metrics

    now = [0.0]
    registry = CollectorRegistry()
    collector = Collector(Metrics.create(registry), full_every_s=60, clock=lambda: now[0])
    try:
        collector.start()  # a full collection, then everything start-up built is frozen
        assert gc.get_freeze_count() > 0
        nodes = [_Node() for _ in range(2_000)]
        for a, b in zip(nodes[::2], nodes[1::2], strict=True):
            a.other, b.other = b, a
        now[0] = 30.0
        collector.tick()  # the 1,000 pairs are frozen while alive
        del nodes, a, b
        gc.collect()  # an automatic collection does not see them: nothing of them is freed
        freed = registry.get_sample_value("bukong_gc_full_freed_objects_total") or 0.0
        now[0] = 59.0
        collector.tick()
        assert registry.get_sample_value("bukong_gc_full_freed_objects_total") == freed  # not due yet
        now[0] = 61.0
        collector.tick()  # due: everything is collected, the pairs with it
        assert (registry.get_sample_value("bukong_gc_full_freed_objects_total") or 0.0) - freed >= 2_000
        assert registry.get_sample_value("bukong_gc_frozen_objects") == gc.get_freeze_count() > 0
    finally:
        collector.stop()
    assert gc.get_freeze_count() == 0  # stopped: nothing is left frozen
