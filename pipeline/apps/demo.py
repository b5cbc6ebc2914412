"""`python -m pipeline demo`: broker + Redis + Faust worker(s) + generator + live view, in one command."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson

from pipeline.contracts import events as c
from pipeline.contracts.commands import READY_KEY, STATS_KEY
from pipeline.contracts.settings import REPO_ROOT, Settings
from pipeline.io.embedded import die_with_parent, servers
from pipeline.io.topics import create_topics


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


def run_demo(
    settings: Settings,
    duration_s: float | None,
    workers: int = 1,
    rate: float = 200.0,
    bad_events: int = 10,
    web: bool = True,
    scenario: str = "baseline",
    worker_metrics_port: int | None = None,
) -> dict[str, Any]:
    """Run the whole stack; return the summary (also printed as the last stdout line by the CLI).

    ``worker_metrics_port``: worker i serves /metrics on this port + i (for a Prometheus to scrape)."""
    with servers(settings.kafka_broker, settings.redis_url) as srv:
        create_topics(srv.kafka, settings.partitions, settings.topic_retention_ms)
        import redis

        r = redis.Redis.from_url(srv.redis_url)
        r.delete(READY_KEY, STATS_KEY)
        _say(f"broker   {srv.kafka} ({'embedded tansu' if settings.embedded_kafka else 'external'})")
        _say(f"redis    {srv.redis_url} ({'embedded valkey' if settings.embedded_redis else 'external'})")
        log_dir = settings.data_dir / "logs"

        def metrics_port(i: int) -> int | None:
            return worker_metrics_port + i if worker_metrics_port else None

        procs = [spawn_worker(srv.kafka, srv.redis_url, i, log_dir, metrics_port(i)) for i in range(workers)]
        supervisor = Supervisor(
            lambda i: spawn_worker(srv.kafka, srv.redis_url, i, log_dir, metrics_port(i)), procs
        )
        _say(f"logs     {log_dir}/worker-*.log")
        if worker_metrics_port:
            ports = ", ".join(str(metrics_port(i)) for i in range(workers))
            _say(f"metrics  workers' /metrics on 127.0.0.1 port {ports}")
        web_runner = None
        try:
            wait_workers_ready(srv.redis_url, workers, len(c.INPUT_TOPICS), settings.partitions)
            _say(f"workers  {workers} joined the consumer group '{settings.app_id}'")
            if web:
                web_runner = start_web(settings, srv.kafka, srv.redis_url)
            watcher = Watcher(srv.kafka, settings.partitions)
            watcher.start()
            from pipeline.apps.sim.live import LiveSim
            from pipeline.apps.sim.scenario import load_scenario

            feeder = LiveSim(
                srv.kafka,
                load_scenario(scenario),
                rate,
                bad_events=bad_events,
                partitions=settings.partitions,
            )
            t0 = time.monotonic()
            feeder.start()
            _say(
                f"simulator scenario '{scenario}' at {rate:.0f} events/s (time x{feeder.speed:.0f}), "
                f"{bad_events} bad records injected; Ctrl-C to stop"
            )
            _feed_and_drain(feeder, watcher, supervisor, r, t0, duration_s)
            stats = {k.decode(): int(v) for k, v in cast(dict[bytes, bytes], r.hgetall(STATS_KEY)).items()}
        finally:
            if web_runner is not None:
                web_runner()
            _stop_workers(procs)
    return _summary(feeder, watcher, supervisor, stats, workers, duration_s)


def _feed_and_drain(
    feeder: Any, watcher: Watcher, supervisor: Supervisor, r: Any, t0: float, duration_s: float | None
) -> None:
    """Feed until the duration is over or Ctrl-C, then let the workers finish what is in flight."""
    stop = threading.Event()
    watcher.latency_from_ms = 1 << 62  # measure latency once the simulator's pre-roll burst is out
    with _interrupts(stop):
        while not stop.is_set() and (duration_s is None or time.monotonic() - t0 < duration_s):
            stop.wait(0.2)
            supervisor.check()
            if feeder.live_from_ms and watcher.latency_from_ms > feeder.live_from_ms:
                watcher.latency_from_ms = feeder.live_from_ms
    feeder.stop()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        processed = int(r.hget(STATS_KEY, "events") or 0)
        if (
            watcher.dead_letters >= feeder.bad_sent
            and processed >= feeder.sent + feeder.bad_sent
            and time.monotonic() - watcher.last_record_wall > 2
        ):
            break
        time.sleep(0.2)
        supervisor.check()
    watcher.stop()


def _stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def _summary(
    feeder: Any,
    watcher: Watcher,
    supervisor: Supervisor,
    stats: dict[str, int],
    workers: int,
    duration_s: float | None,
) -> dict[str, Any]:
    return {
        "events_produced": feeder.sent + feeder.bad_sent,
        "events_in": stats.get("events", 0),
        "bad_injected": feeder.bad_sent,
        "dead_letters": watcher.dead_letters,
        "decisions": stats.get("decisions", 0),
        "hits": stats.get("hits", 0),
        "dispatch_commands": watcher.commands,
        "duplicate_commands": watcher.duplicates,
        "latency_ms_p50": percentile(watcher.latencies_ms, 0.50),
        "latency_ms_p95": percentile(watcher.latencies_ms, 0.95),
        "latency_ms_p99": percentile(watcher.latencies_ms, 0.99),
        "inspection_results": feeder.results_sent,
        "workers": workers,
        "worker_restarts": supervisor.restarts,
        "duration_s": duration_s,
    }


def start_web(settings: Settings, kafka: str, redis_url: str) -> Any:
    """Serve the live view in a background thread; print where to look; return a stop function."""
    from pipeline.apps.web.server import ensure_tokens, run_web_in_thread

    settings = ensure_tokens(settings)
    try:
        stop: Any = run_web_in_thread(settings, redis_url, kafka)
    except OSError as exc:
        _say(f"live view not started: port {settings.web_port} is busy ({exc}); use --web-port")
        return None
    base = f"http://{settings.web_host}:{settings.web_port}/"
    analyst, operator = settings.analyst_token.get_secret_value(), settings.operator_token.get_secret_value()
    _say(f"live     {base}#token={analyst}   (analyst: read-only)")
    _say(f"         {base}#token={operator}   (operator: acknowledge, report results)")
    _say(f"metrics  {base}metrics")
    return stop


@contextlib.contextmanager
def _interrupts(stop: threading.Event) -> Any:
    def handler(signum: int, frame: Any) -> None:
        _say("stopping ...")
        stop.set()

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
