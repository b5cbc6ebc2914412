"""A worker that starts on a backlog joins each declaration with the GPS track read after it
(agents/inputclock.py).

The backlog is written before the worker starts, as after an outage: trucks' GPS points (most of the
records, so the tracks partitions take many fetches), then their weighbridge readings and declarations. The
worker reads the declarations and readings in its first fetches, long before it has read the points that
came before them. Without the input clock (``BUKONG_ALIGN_INPUTS=false``, as before) every declaration was
decided at once, its track still unread: "track" in its missing parts. With it, each waits until the tracks
partitions have been read up to it. Meanwhile the declarations and logistics partitions, read hours ahead of
the tracks, are paused (``BUKONG_ALIGN_AHEAD_MS``) and resumed once the tracks come near.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.contracts import events as c
from tests.conftest import (
    PARTITIONS,
    Stack,
    declaration,
    now_ms,
    scrape_metrics,
    start_worker,
    stop_worker,
    wait_metrics,
    weighbridge,
)

pytestmark = pytest.mark.integration

TRUCKS = 12
FILLER_TRUCKS, POINTS = 60, 700  # 42,000 GPS points before the declarations


def _backlog(st: Stack, uid: str) -> None:
    from kafka import KafkaProducer

    t_decl = now_ms() - 10 * 60_000
    start = t_decl - 3 * 3600_000
    step = (t_decl - 60_000 - start) // POINTS
    producer = KafkaProducer(bootstrap_servers=st.srv.kafka, linger_ms=20, batch_size=256 * 1024, acks=1)
    try:
        plates = [f"F{i:03d}-{uid}" for i in range(FILLER_TRUCKS)]
        plates += [f"T{i:02d}-{uid}" for i in range(TRUCKS)]
        for k in range(POINTS):  # in event time, every truck's k-th point: ours end the partitions
            for n, plate in enumerate(plates):
                lat = 43.0 - 0.6 * k / POINTS + 0.001 * (n % 7)
                ts = start + k * step
                point = {"conveyance_id": plate, "ts_ms": ts, "lat": lat, "lon": 106.85, "speed_kmh": 40.0}
                producer.send(c.TRACKS, key=plate.encode(), value=orjson.dumps(point))
        for i in range(TRUCKS):
            plate = f"T{i:02d}"
            w = weighbridge(uid, plate, 36_000.0, ts_ms=t_decl - 5 * 60_000)  # 20% over the declared weight
            producer.send(c.LOGISTICS, key=w["conveyance_id"].encode(), value=orjson.dumps(w))
            d = declaration(uid, plate, 30_000.0, ts_ms=t_decl + i * 1000)
            producer.send(c.DECLARATIONS, key=d["conveyance_id"].encode(), value=orjson.dumps(d))
        producer.flush()
    finally:
        producer.close()


def test_a_worker_on_a_backlog_decides_with_the_track_read_after_the_declaration(
    tmp_path: Path, uid: str
) -> None:
    from pipeline.io.embedded import free_port, servers
    from pipeline.io.harness import wait_workers_ready
    from pipeline.io.topics import create_topics

    with servers(None, None) as srv:
        create_topics(srv.kafka, PARTITIONS, 600_000)
        st = Stack(srv)
        _backlog(st, uid)
        port = free_port()
        proc = start_worker(srv, tmp_path, metrics_port=port)
        try:
            wait_workers_ready(srv.redis_url, 1, len(c.INPUT_TOPICS), PARTITIONS, timeout_s=90)
            cmds = st.read(
                c.DISPATCH_COMMANDS, want=TRUCKS, timeout_s=90, where=lambda x: f"-{uid}-T" in x["decl_id"]
            )
            assert proc.poll() is None, "the worker is still running"
            wait_metrics(port)
            metrics = _settled(port)
        finally:
            stop_worker(proc)
            if st._producer is not None:
                st._producer.close()
    assert len(cmds) == TRUCKS, "every overweight truck dispatched once"
    assert [x["decl_id"] for x in cmds if "track" in x["facts"].get("missing", [])] == []
    assert all(x["facts"]["weigh_present"] for x in cmds)
    # read up to the declaration, less the clock's slack (60 s: the last few points, one every ~15 s)
    points = [x["facts"]["track_points"] for x in cmds]
    assert all(p >= POINTS - 6 for p in points), points
    # the partitions read hours ahead were paused, and every one was resumed once the tracks caught up
    assert metrics[("bukong_input_partition_pauses_total", ())] >= 1
    assert metrics[("bukong_input_partitions_paused", ())] == 0


def _settled(port: int, timeout_s: float = 10.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The worker's metrics once no partition is paused (the gauge is set by its 1 s timer), or at the
    timeout."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        metrics = scrape_metrics(port)
        if metrics.get(("bukong_input_partitions_paused", ()), 1) == 0 or time.monotonic() > deadline:
            return metrics
        time.sleep(0.5)
