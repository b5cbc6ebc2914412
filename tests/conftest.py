"""Shared fixtures. Integration tests start the real embedded broker (tansu) and Redis (valkey)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.contracts import events as c
from pipeline.io.embedded import EmbeddedServer, Servers, free_port, servers, start_valkey
from pipeline.io.topics import create_topics

PARTITIONS = 2
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def embedded() -> Iterator[Servers]:
    """One embedded broker + Redis for the whole test session."""
    with servers(None, None) as srv:
        create_topics(srv.kafka, PARTITIONS, 600_000)
        yield srv


@pytest.fixture(scope="module")
def valkey() -> Iterator[EmbeddedServer]:
    """A Redis server (valkey) of the module's own, for tests that drive the shared state in process."""
    srv = start_valkey()
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Stack:
    """A running worker on the embedded servers, plus a producer and readers for its outputs."""

    srv: Servers
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    metrics_port: int | None = None  # the worker's /metrics, when started with one
    _producer: Any = None
    _positions: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(bootstrap_servers=self.srv.kafka, linger_ms=0, acks=1)
        return self._producer

    def send(self, topic: str, ev: dict[str, Any] | bytes, key: str | None = None) -> None:
        value = ev if isinstance(ev, bytes) else orjson.dumps(ev)
        k = key if key is not None else (ev.get("conveyance_id") if isinstance(ev, dict) else None)
        self.producer.send(topic, key=k.encode() if k else b"x", value=value)
        self.producer.flush()

    def read(
        self,
        topic: str,
        *,
        want: int | None = None,
        timeout_s: float = 15.0,
        since_start: bool = True,
        where: Any = None,
    ) -> list[dict[str, Any]]:
        """Every record on ``topic`` (optionally filtered), waiting until ``want`` arrive or the timeout."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.srv.kafka, fetch_max_wait_ms=5, enable_auto_commit=False
        )
        parts = consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                for recs in consumer.poll(timeout_ms=100).values():
                    for r in recs:
                        obj = orjson.loads(r.value)
                        if where is None or where(obj):
                            out.append(obj)
                if want is not None and len(out) >= want:
                    # keep reading briefly so an unwanted extra record would be seen
                    extra_deadline = time.monotonic() + 1.5
                    while time.monotonic() < extra_deadline:
                        for recs in consumer.poll(timeout_ms=100).values():
                            out += [
                                o for o in (orjson.loads(r.value) for r in recs) if where is None or where(o)
                            ]
                    break
        finally:
            consumer.close()
        return out

    def worker_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def start_worker(
    srv: Servers,
    log_dir: Path,
    app_id: str = "bukong",
    extra_env: dict[str, str] | None = None,
    index: int = 0,
    metrics_port: int | None = None,
) -> subprocess.Popen[bytes]:
    from pipeline.io.harness import spawn_worker

    env = {"BUKONG_APP_ID": app_id, "BUKONG_PARTITIONS": str(PARTITIONS), **(extra_env or {})}
    proc = spawn_worker(srv.kafka, srv.redis_url, index, log_dir, metrics_port=metrics_port, extra_env=env)
    return proc


def scrape_metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a worker's /metrics: (name, sorted labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def wait_metrics(port: int, timeout_s: float = 60.0) -> None:
    """Until the worker's /metrics answers: it opens in one of the worker's tasks, which may start after the
    worker has reported its partitions ready."""
    import time
    import urllib.error

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            scrape_metrics(port)
            return
        except (urllib.error.URLError, ConnectionError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker's /metrics on port {port} did not answer: {e}") from e
            time.sleep(0.2)


def wait_ready(srv: Servers, n_workers: int = 1) -> None:
    from pipeline.io.harness import wait_workers_ready

    wait_workers_ready(srv.redis_url, n_workers, len(c.INPUT_TOPICS), PARTITIONS, timeout_s=60)


def stop_worker(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def stack(embedded: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One worker per test module, on the session's embedded servers: a fresh deployment, so without the
    consumer group's decision log and checkpoint of the modules before (their test traffic, nearly all hard
    hits at a few sites, would have spent those sites' budgets for the day)."""
    import redis

    redis.Redis.from_url(embedded.redis_url).delete("bukong:workers:ready", "bukong:g:log", "bukong:g:state")
    log_dir = tmp_path_factory.mktemp("worker-logs")
    port = free_port()
    proc = start_worker(embedded, log_dir, metrics_port=port)
    st = Stack(embedded, proc, log_dir / "worker-0.log", metrics_port=port)
    try:
        wait_ready(embedded)
        wait_metrics(port)
        yield st
    finally:
        stop_worker(proc)
        if st._producer is not None:
            st._producer.close()


@pytest.fixture
def uid() -> str:
    """A unique suffix so tests sharing a broker never see each other's records."""
    return uuid.uuid4().hex[:10]


def now_ms() -> int:
    return int(time.time() * 1000)


def declaration(uid: str, plate: str, gross_kg: float = 30_000.0, **over: Any) -> dict[str, Any]:
    ev = {
        "decl_id": f"D-{uid}-{plate}",
        "ts_ms": now_ms(),
        "enterprise_id": "E0001",
        "credit_grade": "general",
        "declarant_id": "B001",
        "hs_code": "270112",
        "goods": "coal",
        "grade": "A",
        "origin": "MN",
        "port": "EHT",
        "mode": "road",
        "conveyance_id": f"{plate}-{uid}",
        "gross_kg": gross_kg,
        "net_kg": gross_kg - 2000,
        "quantity": 28.0,
        "unit": "t",
        "value_cny": 17_000.0,
    }
    ev.update(over)
    return ev


def weighbridge(uid: str, plate: str, measured_kg: float, **over: Any) -> dict[str, Any]:
    ev = {
        "event_id": f"W-{uid}-{plate}",
        "kind": "weighbridge",
        "ts_ms": now_ms(),
        "conveyance_id": f"{plate}-{uid}",
        "port": "EHT",
        "measured_gross_kg": measured_kg,
    }
    ev.update(over)
    return ev


os.environ.setdefault("BUKONG_LOG_LEVEL", "WARNING")
