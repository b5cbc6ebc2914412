"""`python -m pipeline demo`: broker + Redis + Faust worker(s) + generator + live view, in one command."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from typing import Any, cast

from pipeline.contracts import events as c
from pipeline.contracts.commands import READY_KEY, STATS_KEY
from pipeline.contracts.settings import Settings
from pipeline.io.embedded import servers
from pipeline.io.harness import Supervisor, Watcher, percentile, spawn_worker, wait_workers_ready
from pipeline.io.topics import create_topics


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
