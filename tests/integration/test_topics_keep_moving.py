"""Every input topic keeps moving on the embedded broker, and a partition that does not is reported.

The embedded broker (tansu, memory storage) gives a fetch only the consumer's fetch wait to list a partition's
stored batches; with thousands of one-record batches a short wait returns nothing, at any offset, forever
(docs/reliability.md). The worker must notice and raise its wait; with the wait pinned it must say so.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiokafka
import orjson
import pytest
import redis

from pipeline.contracts import events as c
from pipeline.io.embedded import EmbeddedServer, Servers, free_port, start_tansu, start_valkey
from pipeline.io.topics import create_topics
from tests.conftest import PARTITIONS, now_ms, start_worker, stop_worker, wait_ready

pytestmark = pytest.mark.integration
TINY_BATCHES = 4000  # enough to starve a 1 ms fetch on this machine (2 ms too; 10 ms reads them all)
# for the stuck report the stall must not depend on how quiet the machine is: with 4,000 batches a quiet
# machine's broker sometimes answers a 1 ms fetch (the test then failed about one run in three)
STUCK_BATCHES = 12_000


@pytest.fixture
def own_servers() -> Iterator[Servers]:
    """A broker and Redis of this test's own: the tracks partition is filled with tiny batches."""
    started: list[EmbeddedServer] = [start_tansu(), start_valkey()]
    srv = Servers(started[0].address, f"redis://{started[1].address}/0", started)
    try:
        create_topics(srv.kafka, PARTITIONS, 600_000)
        yield srv
    finally:
        srv.stop()


async def _fill_tracks(kafka: str, n: int) -> int:
    """``n`` GPS points on tracks partition 0, each its own batch (as a slow trickle produces them)."""
    p = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=0, max_batch_size=16)
    await p.start()
    try:
        futs = []
        for i in range(n):
            ev = {
                "conveyance_id": f"FILL-{i % 50}",
                "ts_ms": now_ms(),
                "lat": 43.6,
                "lon": 111.9,
                "speed_kmh": 40.0,
            }
            futs.append(await p.send(c.TRACKS, orjson.dumps(ev), key=b"fill", partition=0))
        return (await futs[-1]).offset + 1
    finally:
        await p.stop()


def _applied(r: redis.Redis, app_id: str, tp: str) -> int:
    v = r.hget(f"{app_id}:applied", tp)
    return int(v) if v is not None else -1


def test_a_partition_of_tiny_batches_is_read_to_the_end(own_servers: Servers, tmp_path: Path) -> None:
    srv = own_servers
    end = asyncio.run(_fill_tracks(srv.kafka, TINY_BATCHES))
    app_id = f"flow-{uuid.uuid4().hex[:6]}"
    proc = start_worker(srv, tmp_path, app_id=app_id, extra_env={"BUKONG_FETCH_MAX_WAIT_MS": "1"})
    try:
        wait_ready(srv)
        r = redis.Redis.from_url(srv.redis_url)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _applied(r, app_id, "tracks:0") < end - 1:
            assert proc.poll() is None, (tmp_path / "worker-0.log").read_text()[-3000:]
            time.sleep(0.5)
        log = (tmp_path / "worker-0.log").read_text()
        assert _applied(r, app_id, "tracks:0") == end - 1, (
            f"tracks:0 not read to its end {end}\n{log[-3000:]}"
        )
        assert "raising it to" in log  # the worker said why it waits longer now
    finally:
        stop_worker(proc)


def test_a_partition_that_cannot_move_is_reported_stuck(own_servers: Servers, tmp_path: Path) -> None:
    srv = own_servers
    asyncio.run(_fill_tracks(srv.kafka, STUCK_BATCHES))
    port = free_port()
    env = {
        "BUKONG_FETCH_MAX_WAIT_MS": "1",
        "BUKONG_FETCH_MAX_WAIT_CAP_MS": "1",  # the wait may not adapt: the partition stays starved
        "BUKONG_STUCK_AFTER_S": "3",
        "BUKONG_METRICS_PORT": str(port),
    }
    proc = start_worker(srv, tmp_path, app_id=f"stuck-{uuid.uuid4().hex[:6]}", extra_env=env)
    try:
        wait_ready(srv)
        want = 'bukong_partition_stuck{partition="0",topic="tracks"} 1.0'
        seen, deadline = "", time.monotonic() + 60
        while time.monotonic() < deadline and want not in seen:
            time.sleep(1)
            try:
                seen = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
        assert want in seen, seen[-2000:]
        assert 'bukong_partition_stuck{partition="0",topic="declarations"} 0.0' in seen
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            raise AssertionError("/healthz answered 200 with a stuck partition")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            health = orjson.loads(exc.read())
        assert health["status"] == "degraded" and "tracks:0" in health["stuck_partitions"]
        assert "is stuck" in (tmp_path / "worker-0.log").read_text()
    finally:
        stop_worker(proc)
