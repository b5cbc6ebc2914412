"""The drill stack: its own embedded tansu and valkey (so they can be paused, killed and restarted), one
worker process (so it can be killed with SIGKILL and restarted), a producer, and a tracker that reads every
dispatch command and dead-letter record back from the broker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.contracts import events as c
from pipeline.contracts.commands import READY_KEY
from pipeline.io.embedded import EmbeddedServer, free_port, start_tansu, start_valkey

SESSION_TIMEOUT_MS = "6000"  # a killed worker's partitions move after this


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process (VmRSS from /proc), in MB; None when it is gone."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


@dataclass
class Tracker:
    """Reads dispatch-commands and dead-letter from the beginning, for the whole run, in a thread."""

    kafka: str
    partitions: int
    command_counts: Counter[str] = field(default_factory=Counter)
    decided: dict[str, str] = field(default_factory=dict)  # decl_id -> command_id
    dead: dict[tuple[str, int, int], str] = field(
        default_factory=dict
    )  # (topic, partition, offset) -> reason
    dead_reasons: Counter[str] = field(default_factory=Counter)
    dead_total: int = 0
    last_command_id: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drill-tracker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        while not self._stop.is_set():
            try:
                consumer = KafkaConsumer(
                    bootstrap_servers=self.kafka,
                    fetch_max_wait_ms=20,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                )
                break
            except Exception:
                time.sleep(0.5)
        else:
            return
        tps = [TopicPartition(c.DISPATCH_COMMANDS, p) for p in range(self.partitions)]
        tps.append(TopicPartition(c.DEAD_LETTER, 0))
        consumer.assign(tps)
        consumer.seek_to_beginning()
        try:
            while not self._stop.is_set():
                try:
                    batch = consumer.poll(timeout_ms=200)
                except Exception:
                    time.sleep(0.2)
                    continue
                for tp, recs in batch.items():
                    for r in recs:
                        self._take(tp.topic, r.value)
        finally:
            consumer.close()

    def _take(self, topic: str, value: bytes) -> None:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            self.dead_reasons["<unreadable record on " + topic + ">"] += 1
            return
        if topic == c.DEAD_LETTER:
            self.dead_total += 1
            reason = str(obj.get("reason") or "")
            self.dead_reasons[reason or "<no reason>"] += 1
            where = (obj.get("source_topic"), obj.get("source_partition"), obj.get("source_offset"))
            if None not in where and reason:
                self.dead[(str(where[0]), int(where[1]), int(where[2]))] = reason
            return
        cid = obj["command_id"]
        self.command_counts[cid] += 1
        self.decided[obj["decl_id"]] = cid
        self.last_command_id = cid

    def doubled(self, command_ids: set[str] | None = None) -> int:
        return sum(
            n - 1
            for cid, n in self.command_counts.items()
            if n > 1 and (command_ids is None or cid in command_ids)
        )


@dataclass
class Pair:
    decl_id: str
    futures: list[Any]

    def acked(self) -> bool:
        return all(f.is_done and f.succeeded() for f in self.futures)


class Stack:
    """Embedded tansu + valkey + one worker subprocess, all owned by the drill."""

    def __init__(self, partitions: int, retention_ms: int, log_dir: Path) -> None:
        from pipeline.io.topics import create_topics

        self.partitions = partitions
        self.log_dir = log_dir
        self.tansu: EmbeddedServer = start_tansu()
        self.valkey: EmbeddedServer = start_valkey()
        self.redis_port = self.valkey.port
        create_topics(self.kafka, partitions, retention_ms)
        self.metrics_port = free_port()
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_starts = 0
        self.worker_deaths: list[str] = []  # exits the drill did not cause
        self._producer: Any = None
        self.tracker = Tracker(self.kafka, partitions)
        self.tracker.start()

    # ------------------------------------------------------------------------------------------- servers
    @property
    def kafka(self) -> str:
        return self.tansu.address

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def restart_valkey(self) -> None:
        """SIGKILL valkey and start a new one on the same port (its data is gone: no persistence)."""
        self.valkey.proc.kill()
        self.valkey.proc.wait(10)
        self.valkey.stop()
        deadline = time.monotonic() + 20
        while True:
            try:
                self.valkey = start_valkey(port=self.redis_port)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    # ------------------------------------------------------------------------------------------- worker
    def start_worker(self) -> None:
        from pipeline.io.harness import spawn_worker

        with contextlib.suppress(Exception):
            self.redis().delete(READY_KEY)
        env = {
            "BUKONG_PARTITIONS": str(self.partitions),
            "BUKONG_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
            "BUKONG_DATA_DIR": str(self.log_dir / "data"),
        }
        self.worker = spawn_worker(
            self.kafka, self.redis_url, 0, self.log_dir, metrics_port=self.metrics_port, extra_env=env
        )
        self.worker_starts += 1

    def worker_alive(self) -> bool:
        return self.worker is not None and self.worker.poll() is None

    def wait_ready(self, timeout_s: float = 90.0) -> bool:
        """True once the worker owns every input partition (it writes them to Redis on assignment)."""
        want = len(c.INPUT_TOPICS) * self.partitions
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.worker_alive():
                return False
            with contextlib.suppress(Exception):
                parts = [str(v) for v in self.redis().hgetall(READY_KEY).values()]
                assigned = {p for v in parts for p in v.split(",") if p}
                if len(assigned) >= want:
                    return True
            time.sleep(0.25)
        return False

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(sig)
            try:
                self.worker.wait(20)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(5)

    def note_unexpected_exit(self, during: str) -> bool:
        """Record (and return True) when the worker exited without the drill killing it."""
        if self.worker is not None and self.worker.poll() is not None:
            self.worker_deaths.append(f"{during}: exit code {self.worker.returncode}")
            return True
        return False

    def worker_metrics(self) -> dict[str, float]:
        """The worker's /metrics as {'name{labels}': value}; empty when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=3) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    # ------------------------------------------------------------------------------------------ clients
    def redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=3)

    @property
    def producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                bootstrap_servers=self.kafka,
                linger_ms=20,
                acks=1,
                batch_size=256 * 1024,
                max_request_size=4 * 1024 * 1024,
                retries=10,
                request_timeout_ms=40_000,
                delivery_timeout_ms=180_000,
            )
        return self._producer

    def send_pair(self, decl_id: str, key: str, decl: dict[str, Any], weigh: dict[str, Any]) -> Pair:
        k = key.encode()
        first, second = ((c.LOGISTICS, weigh), (c.DECLARATIONS, decl))
        if hash(decl_id) % 2:
            first, second = second, first
        futs = [
            self.producer.send(first[0], key=k, value=orjson.dumps(first[1])),
            self.producer.send(second[0], key=k, value=orjson.dumps(second[1])),
        ]
        return Pair(decl_id, futs)

    def end_offsets(self, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.kafka, enable_auto_commit=False)
        try:
            tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions)]
            return {(tp.topic, tp.partition): int(o) for tp, o in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def group_lag(self, group: str) -> dict[str, int] | None:
        """End offsets minus the consumer group's committed offsets, summed per input topic."""
        from kafka.admin import KafkaAdminClient

        topics = (*c.INPUT_TOPICS, c.INSPECTION_RESULTS)
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.kafka, client_id="bukong-drill")
            try:
                committed = admin.list_group_offsets(group).get(group, {})
            finally:
                admin.close()
            ends = self.end_offsets(topics)
        except Exception:
            return None
        done = {(tp.topic, tp.partition): o.offset for tp, o in committed.items()}
        lag: dict[str, int] = {t: 0 for t in topics}
        for (t, p), end in ends.items():
            lag[t] += max(0, end - max(0, done.get((t, p), 0)))
        return lag

    def close(self) -> None:
        self.tracker.stop()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close(timeout=5)
        self.kill_worker(signal.SIGTERM)
        for s in (self.valkey, self.tansu):
            with contextlib.suppress(Exception):
                if s.proc.poll() is None:
                    os.kill(s.proc.pid, signal.SIGCONT)
            s.stop()
