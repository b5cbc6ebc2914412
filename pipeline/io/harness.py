"""Workers as processes, and what comes out of them: spawn and supervise `python -m pipeline worker`, wait
until the consumer group holds every partition, watch dispatch-commands and dead-letter, and the one
percentile.

Shared by the demo, the drills, the end-to-end benchmark and the integration tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson

from pipeline.contracts import events as c
from pipeline.contracts.commands import READY_KEY
from pipeline.contracts.settings import REPO_ROOT
from pipeline.io.embedded import die_with_parent


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return round(s[i], 2)


@dataclass
class Watcher:
    """Reads dispatch-commands and dead-letter from their current end: counts and produce->command latency."""

    kafka: str
    partitions: int
    commands: int = 0
    dead_letters: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    command_ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    last_record_wall: float = field(default_factory=time.monotonic)
    latency_from_ms: int = 0  # ignore triggers produced before this (a start-up burst)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.kafka,
            fetch_max_wait_ms=5,
            enable_auto_commit=False,
            consumer_timeout_ms=200,
        )
        tps = [TopicPartition(c.DISPATCH_COMMANDS, p) for p in range(self.partitions)]
        tps.append(TopicPartition(c.DEAD_LETTER, 0))
        consumer.assign(tps)
        consumer.seek_to_end()
        for tp in tps:
            consumer.position(tp)
        self._ready.set()
        try:
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=100)
                now = time.time() * 1000
                for tp, recs in batch.items():
                    for r in recs:
                        self.last_record_wall = time.monotonic()
                        if tp.topic == c.DEAD_LETTER:
                            self.dead_letters += 1
                            continue
                        cmd = orjson.loads(r.value)
                        if cmd["command_id"] in self.command_ids:
                            self.duplicates += 1
                        self.command_ids.add(cmd["command_id"])
                        self.commands += 1
                        produced = cmd.get("trigger", {}).get("produced_ms")
                        if produced and produced >= self.latency_from_ms:
                            self.latencies_ms.append(now - produced)
        finally:
            consumer.close()

    def start(self) -> None:
        threading.Thread(target=self.run, name="watcher", daemon=True).start()
        self._ready.wait(30)

    def stop(self) -> None:
        self._stop.set()


def spawn_worker(
    kafka: str,
    redis_url: str,
    index: int,
    log_dir: Path,
    metrics_port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `python -m pipeline worker` as a child; its output goes to log_dir/worker-N.log."""
    env = dict(os.environ, KAFKA_BROKER=kafka, REDIS_URL=redis_url, PYTHONUNBUFFERED="1", **(extra_env or {}))
    cmd = [sys.executable, "-m", "pipeline", "worker"]
    if metrics_port:
        cmd += ["--metrics-port", str(metrics_port)]
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"worker-{index}.log", "ab") as log:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


@dataclass
class Supervisor:
    """Restarts a worker process that died (crash, OOM kill): backoff 1 s doubling to 30 s, reset after a
    minute of uptime; each restart is logged and counted in the demo summary."""

    spawn: Any  # index -> subprocess.Popen
    procs: list[subprocess.Popen[bytes]]
    restarts: int = 0
    backoff_s: list[float] = field(default_factory=list)
    due: dict[int, float] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)
    min_backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def check(self) -> None:
        now = time.monotonic()
        if not self.backoff_s:
            self.backoff_s = [self.min_backoff_s] * len(self.procs)
        for i, p in enumerate(self.procs):
            rc = p.poll()
            if rc is None:
                if now - self.started.get(i, now) > 60:
                    self.backoff_s[i] = self.min_backoff_s
                continue
            if i not in self.due:
                self.due[i] = now + self.backoff_s[i]
                _say(
                    f"worker {i} (pid {p.pid}) exited with code {rc}; "
                    f"restarting in {self.backoff_s[i]:.0f} s (why: see worker-{i}.log)"
                )
                continue
            if now >= self.due[i]:
                del self.due[i]
                self.procs[i] = self.spawn(i)
                self.started[i] = now
                self.restarts += 1
                self.backoff_s[i] = min(self.backoff_s[i] * 2, self.max_backoff_s)
                _say(f"worker {i} restarted (pid {self.procs[i].pid}, restart #{self.restarts})")


def wait_workers_ready(
    redis_url: str, workers: int, topics: int, partitions: int, timeout_s: float = 90.0
) -> None:
    import redis

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    want = topics * partitions
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        parts = list(cast(dict[str, str], r.hgetall(READY_KEY)).values())
        assigned = {p for v in parts for p in v.split(",") if p}
        if len(parts) >= workers and len(assigned) >= want:
            return
        time.sleep(0.25)
    raise SystemExit(f"error: workers did not join the consumer group within {timeout_s:.0f} s")
