"""End-to-end benchmark: produce -> Kafka -> pipeline -> output topic, on the embedded broker, in one run.

Every figure is measured in the same run against references on the same machine (shared and noisy):

* ``floor``  — raw aiokafka pass-through, no Faust: consume the input topics, orjson decode, produce a small
  record per declaration (two hops like the real path). The broker and client floor.
* ``naive``  — the Faust pipeline a newcomer writes: faust.Record models, one event at a time, a table update
  and a send per event, Faust's default settings (its 1.5 s fetch wait included).
* ``quix``   — the same naive workload (decode, keyed stateful count, produce) in Quix Streams,
  with a 5 ms fetch wait.
* ``bukong`` — the real pipeline as shipped: ``python -m pipeline worker`` (validation, join, features, rules,
  model, policy, dispatch with Redis dedupe, changelog); ``--workers 1,2,4`` (the default) also runs two and
  four in one group (four on a 2-core machine still gain: a worker waits on fetches and acks a quarter of
  the time, and the others fill it; the shared state's cost shows in the stage table).
  (benchmarks/peers.py holds the three references.)

Each pipeline runs on a fresh broker. First the sustained rate: a backlog (``--backlog``) is produced before
the pipeline starts and it is timed draining it from its first processed record to its last, and to its
last decision for Bukong (at most ``--hold`` seconds). Then at each fixed rate (``--rates``) a separate
producer process sends the generator's
realistic mix (per truck trip GPS points, gate, weighbridge, manifest, declaration) for ``--duration``
seconds; latency is the triggering record's producer timestamp -> its output record read back (both hops).
A rate counts as sustained if 2 s after the producer stopped the pipeline had processed 98% of what was
sent; where it was not, its p99 is reported as null. CPU of the pipeline process(es) and of the broker
comes from /proc.

    .venv/bin/python benchmarks/e2e.py                    # everything, about 8 minutes on 2 cores
    .venv/bin/python benchmarks/e2e.py --pipelines floor,bukong --workers 1
    .venv/bin/python benchmarks/e2e.py --smoke            # seconds per pipeline, for the test suite

Writes benchmarks/results/e2e-<date>.json and .png (latency percentiles vs rate; throughput bars), prints a
markdown table and the project's goals met or missed; the last stdout line is one JSON object with
floor/naive/quix/bukong ``_p99_ms_at_2000`` and ``_max_eps``, and the ratios between them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import peers  # noqa: E402
from benchmarks.e2e_report import (  # noqa: E402
    Samples,
    combine,
    goals,
    plot,
    scrape,
    stage_figures,
    stage_table,
    summary,
    table,
)
from pipeline.apps.generator import Generator, GeneratorConfig  # noqa: E402
from pipeline.contracts import events as c  # noqa: E402
from pipeline.io.embedded import Servers, free_port, proc_cpu_seconds, servers  # noqa: E402
from pipeline.io.harness import Watcher, percentile, spawn_worker, wait_workers_ready  # noqa: E402
from pipeline.io.topics import create_topics  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
PARTITIONS = 4


# ------------------------------------------------------------------------------------------ producer
def produce(kafka: str, rate: float, duration_s: float, seed: int, backlog: int, sent: Any) -> None:
    """Runs in its own process: the generator's mix at ``rate`` events/s, or ``backlog`` events at once.

    ``sent`` (shared) counts the records handed to the producer, so the caller can tell whether the pipeline
    kept up. The record's Kafka timestamp (set at send) is the start of the latency measurement.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=kafka,
        linger_ms=2 if not backlog else 20,
        batch_size=64 * 1024 if not backlog else 512 * 1024,
        acks=1,
    )
    gen = Generator(GeneratorConfig(seed=seed))
    base = int(time.time() * 1000)
    clock = iter(range(base - (backlog or 0), 10**15))
    n = 0
    interval = 1.0 / rate if rate else 0.0
    t0 = time.monotonic()
    t_next = t0
    for topic, key, value, _ in gen.stream(clock if backlog else _wall_clock()):
        producer.send(topic, key=key, value=value)
        n += 1
        if backlog:
            if n >= backlog:
                break
            continue
        if n % 64 == 0:
            sent.value = n
        t_next += interval
        delay = t_next - time.monotonic()
        if delay > 0.0005:
            time.sleep(delay)
        if time.monotonic() - t0 >= duration_s:
            break
    producer.flush()
    producer.close()
    sent.value = n


def _wall_clock() -> Any:
    while True:
        yield int(time.time() * 1000)


def run_producer(
    kafka: str, rate: float, duration_s: float, seed: int, backlog: int = 0
) -> tuple[mp.Process, Any]:
    ctx = mp.get_context("spawn")
    sent = ctx.Value("q", 0, lock=False)
    p = ctx.Process(target=produce, args=(kafka, rate, duration_s, seed, backlog, sent), daemon=True)
    p.start()
    return p, sent


# ------------------------------------------------------------------------------------------ pipelines
class Pipeline:
    """A pipeline under test: start, processed-record count, CPU, stop."""

    name = ""

    def start(self, srv: Servers, log_dir: Path, wait: bool = True) -> None: ...

    def processed(self) -> int: ...

    def decided(self) -> int:
        """Decisions made so far, for a pipeline that may decide after it has read a record (Bukong: a
        declaration held behind the input clock, agents/inputclock.py); 0 for the references."""
        return 0

    settle_s = 0.0  # a drain ends this long after the last decision changed (Bukong: its 1 s timer)

    def pids(self) -> list[int]: ...

    def stop(self) -> None: ...

    def alive(self) -> bool:
        return True

    def wait_assigned(self) -> None:
        """Block until every worker holds its partitions (a no-op for single-process pipelines)."""

    def scrape(self) -> Samples:
        """The pipeline's own metrics (Bukong's workers' /metrics, summed); empty for the references."""
        return {}


def warm_up(kafka: str, pipe: Pipeline, timeout_s: float = 120.0) -> None:
    """Block until the pipeline consumes from every input partition, so group-join time is not measured.

    Sends one generated truck trip to every partition of its topic, every few seconds, until the pipeline has
    processed a probe on each (its processed count covers them all).
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka, linger_ms=0)
    gen = Generator(GeneratorConfig(seed=424242))
    n0 = pipe.processed()
    deadline = time.monotonic() + timeout_s
    sent = 0
    try:
        while time.monotonic() < deadline:
            ts = int(time.time() * 1000)
            trip = gen.trip_events(ts)
            for topic in c.INPUT_TOPICS:
                ev = next(e for t, e in trip if t == topic)
                ev["ts_ms"] = ts
                for part in range(PARTITIONS):
                    producer.send(
                        topic, key=ev["conveyance_id"].encode(), value=orjson.dumps(ev), partition=part
                    )
                    sent += 1
            producer.flush()
            t_round = time.monotonic()
            while time.monotonic() - t_round < 4.0:
                if pipe.processed() - n0 >= sent:
                    time.sleep(0.5)  # let the probes' output records pass
                    return
                if not pipe.alive():
                    raise SystemExit(f"error: the {pipe.name} pipeline exited at start; see its log above")
                time.sleep(0.05)
        raise SystemExit(f"error: the {pipe.name} pipeline did not start consuming within {timeout_s:.0f} s")
    finally:
        producer.close()


class _ChildPipeline(Pipeline):
    """A reference pipeline in a spawned child process that counts processed records in shared memory."""

    sigterm_to_stop = True  # Faust and Quix stop on SIGTERM; the floor watches stop_event
    workdir = ""  # a state directory of its own (Faust's datadir, Quix's RocksDB), removed at stop

    def _target(self, srv: Servers) -> tuple[Any, tuple[Any, ...]]: ...

    def start(self, srv: Servers, log_dir: Path, wait: bool = True) -> None:
        ctx = mp.get_context("spawn")
        self.count = ctx.Value("q", 0, lock=False)  # written by the child only
        self.stop_event = ctx.Event()
        self.workdir = tempfile.mkdtemp(prefix=f"bukong-{self.name}-")
        target, args = self._target(srv)
        self.proc = ctx.Process(target=target, args=args, daemon=True, name=self.name)
        self.proc.start()
        if wait:
            warm_up(srv.kafka, self)

    def alive(self) -> bool:
        return self.proc.is_alive()

    def processed(self) -> int:
        return int(self.count.value)

    def pids(self) -> list[int]:
        return [self.proc.pid or 0]

    def stop(self) -> None:
        self.stop_event.set()
        if self.proc.is_alive() and self.sigterm_to_stop:
            self.proc.terminate()  # SIGTERM: Faust and Quix shut down cleanly and commit
        self.proc.join(20)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


class Floor(_ChildPipeline):
    name = "floor"
    sigterm_to_stop = False

    def _target(self, srv: Servers) -> tuple[Any, tuple[Any, ...]]:
        return peers.floor_entry, (srv.kafka, self.stop_event, self.count)


class Naive(_ChildPipeline):
    name = "naive"

    def _target(self, srv: Servers) -> tuple[Any, tuple[Any, ...]]:
        return peers.naive_entry, (srv.kafka, PARTITIONS, self.workdir, self.count)


class Quix(_ChildPipeline):
    name = "quix"

    def _target(self, srv: Servers) -> tuple[Any, tuple[Any, ...]]:
        return peers.quix_entry, (srv.kafka, self.workdir, self.count)


class Pathway(_ChildPipeline):
    name = "pathway"

    def _target(self, srv: Servers) -> tuple[Any, tuple[Any, ...]]:
        return peers.pathway_entry, (srv.kafka, self.count)


class Bukong(Pipeline):
    name = "bukong"

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        if workers > 1:
            self.name = f"bukong_{workers}w"

    def start(self, srv: Servers, log_dir: Path, wait: bool = True) -> None:
        import redis

        self.r = redis.Redis.from_url(srv.redis_url)
        self.r.delete("bukong:stats", "bukong:workers:ready")
        env = {"BUKONG_PARTITIONS": str(PARTITIONS)}
        self.ports = [free_port() for _ in range(self.workers)]  # /metrics: the per-stage timings
        self.procs = [
            spawn_worker(srv.kafka, srv.redis_url, i, log_dir, metrics_port=port, extra_env=env)
            for i, port in enumerate(self.ports)
        ]
        self.redis_url = srv.redis_url
        if wait:
            self.wait_assigned()
            warm_up(srv.kafka, self)

    def wait_assigned(self) -> None:
        wait_workers_ready(self.redis_url, self.workers, len(c.INPUT_TOPICS), PARTITIONS, timeout_s=120)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def processed(self) -> int:
        return int(self.r.hget("bukong:stats", "events") or 0)

    def decided(self) -> int:
        return int(self.r.hget("bukong:stats", "decisions") or 0)

    settle_s = 2.5  # held declarations are decided by the once-a-second timer after the last record

    def scrape(self) -> Samples:
        return scrape(self.ports)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


# ------------------------------------------------------------------------------------------ measuring
def _cpu(pipe: Pipeline, srv: Servers) -> tuple[float, float]:
    tansu = srv.server("tansu")
    return sum(proc_cpu_seconds(p) for p in pipe.pids()), (tansu.cpu_seconds() if tansu else 0.0)


def measure_rate(
    srv: Servers,
    pipe: Pipeline,
    rate: float,
    duration_s: float,
    seed: int,
    tail_s: float = 6.0,
    grace_s: float = 2.0,
) -> dict[str, Any]:
    """Offer ``rate`` events/s for ``duration_s``; latency of every output record; did the pipeline keep up?

    After the producer stops, wait up to ``tail_s`` for the pipeline to process what was sent (so the
    records in flight are measured too). The rate counts as sustained when, ``grace_s`` after the producer
    stopped, the pipeline had processed at least 98% of what was sent (bounded lag: a pipeline slower than
    the offered rate is a growing queue, and its latency figures describe the queue, not the pipeline).
    """
    watcher = Watcher(srv.kafka, PARTITIONS, latency_from_ms=int(time.time() * 1000))
    watcher.start()
    cpu0, b0 = _cpu(pipe, srv)
    m0 = pipe.scrape()
    n0 = pipe.processed()
    t0 = time.monotonic()
    prod, sent = run_producer(srv.kafka, rate, duration_s, seed)
    prod.join(duration_s + 60)
    t_end = time.monotonic()
    n_grace: int | None = None
    while time.monotonic() - t_end < tail_s and pipe.processed() - n0 < sent.value:
        if n_grace is None and time.monotonic() - t_end >= grace_s:
            n_grace = pipe.processed() - n0
        time.sleep(0.05)
    if n_grace is None:
        n_grace = pipe.processed() - n0
    time.sleep(0.3)  # the last output records
    watcher.stop()
    wall = time.monotonic() - t0
    n = pipe.processed() - n0
    lat = watcher.latencies_ms
    cpu1, b1 = _cpu(pipe, srv)
    m1 = pipe.scrape()
    return {
        "rate": rate,
        "sent": int(sent.value),
        "processed": n,
        "achieved_eps": round(n / max(t_end - t0, 1e-9), 1),
        "sustained": n_grace >= 0.98 * sent.value,
        "lag_at_end": max(0, int(sent.value) - n),
        "samples": len(lat),
        "p50_ms": percentile(lat, 0.50),
        "p95_ms": percentile(lat, 0.95),
        "p99_ms": percentile(lat, 0.99),
        "pipeline_cpu_pct": round((cpu1 - cpu0) / wall * 100, 1),
        "broker_cpu_pct": round((b1 - b0) / wall * 100, 1),
        "stages": stage_figures(m0, m1) if m1 else None,
    }


def measure_max(
    srv: Servers, pipe: Pipeline, backlog: int, seed: int, hold_s: float = 60.0
) -> dict[str, Any]:
    """Highest sustained rate: a backlog is produced before the pipeline starts, then it drains it.

    Timed from the moment the pipeline is consuming every partition (its first processed record, and for
    several workers also all of them assigned: group-join time is not counted) to its last record and its
    last decision (Bukong decides a declaration held behind its input clock after the records it waited
    for), or for ``hold_s`` seconds if the backlog lasts longer; ``held_s`` says how long the rate was held.
    """
    prod, _ = run_producer(srv.kafka, 0, 0, seed + 1, backlog=backlog)
    prod.join(600)
    pipe.start(srv, RESULTS / "logs", wait=False)
    pipe.wait_assigned()
    deadline = time.monotonic() + 120 + hold_s  # start-up allowance + the hold
    first: float | None = None
    n_first = n = d = 0
    cpu0 = b0 = 0.0
    m0: Samples = {}
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        n_now = pipe.processed()
        now = time.monotonic()
        if n_now and first is None:
            first, n_first = now, n_now
            cpu0, b0 = _cpu(pipe, srv)
            m0 = pipe.scrape()
        d_now = pipe.decided()
        if n_now != n or d_now != d:
            n, d, last_change = n_now, d_now, now
        if (n >= backlog and now - last_change > pipe.settle_s) or (
            first is not None and now - last_change > 5
        ):
            break
        if first is not None and now - first >= hold_s:
            last_change = now
            break
        if not pipe.alive():
            raise SystemExit(f"error: the {pipe.name} pipeline exited during the drain")
        time.sleep(0.01)
    if first is None:
        return {
            "max_eps": None,
            "held_s": 0.0,
            "drained": 0,
            "pipeline_cpu_pct": None,
            "broker_cpu_pct": None,
        }
    wall = max(last_change - first, 1e-3)
    cpu1, b1 = _cpu(pipe, srv)
    m1 = pipe.scrape()
    return {
        "max_eps": round((n - n_first) / wall, 1) if n > n_first else None,
        "held_s": round(wall, 1),
        "drained": n,
        "backlog": backlog,
        "pipeline_cpu_pct": round((cpu1 - cpu0) / wall * 100, 1),
        "broker_cpu_pct": round((b1 - b0) / wall * 100, 1),
        "stages": stage_figures(m0, m1) if m1 else None,
    }


def wait_drained(pipe: Pipeline, target: int, timeout_s: float = 180.0, stall_s: float = 10.0) -> None:
    """Wait until ``pipe`` has processed ``target`` records, it stops making progress, or the timeout."""
    deadline = time.monotonic() + timeout_s
    n, last_change = pipe.processed(), time.monotonic()
    while n < target and time.monotonic() < deadline and time.monotonic() - last_change < stall_s:
        time.sleep(0.1)
        n_now = pipe.processed()
        if n_now != n:
            n, last_change = n_now, time.monotonic()


PIPELINES = ("floor", "naive", "quix", "pathway", "bukong")


def make_pipelines(names: str, workers: str) -> list[Pipeline]:
    pipes: list[Pipeline] = []
    for name in names.split(","):
        if name == "floor":
            pipes.append(Floor())
        elif name == "naive":
            pipes.append(Naive())
        elif name == "quix":
            pipes.append(Quix())
        elif name == "pathway":
            pipes.append(Pathway())
        elif name == "bukong":
            pipes += [Bukong(int(w)) for w in workers.split(",")]
        else:
            raise SystemExit(f"error: unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
    return pipes


def run_once(args: argparse.Namespace, pipes: list[Pipeline], rates: list[float], bar: Any) -> dict[str, Any]:
    """Every pipeline once, each on a fresh broker: the drain, then each offered rate."""
    results: dict[str, Any] = {}
    for pipe in pipes:
        with servers(None, None) as srv:  # a fresh broker per pipeline: no leftover backlog
            create_topics(srv.kafka, PARTITIONS, 600_000)
            bar.set_postfix_str(f"{pipe.name} max (backlog {args.backlog:,})")
            mx = measure_max(srv, pipe, args.backlog, args.seed, args.hold)
            bar.update()
            # a pipeline slower than the backlog still has some of it queued after the hold: the rate
            # measurements start from an empty queue, or they would time the queue, not the pipeline
            wait_drained(pipe, args.backlog)
            warm_up(srv.kafka, pipe)
            per_rate = []
            for rate in rates:
                bar.set_postfix_str(f"{pipe.name} @ {rate:.0f}/s")
                per_rate.append(measure_rate(srv, pipe, rate, args.duration, args.seed))
                bar.update()
            pipe.stop()
            results[pipe.name] = {"rates": per_rate, **mx}
    return results


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``--repeat`` runs of every pipeline (the same input each time), combined: medians and every run."""
    rates = [float(r) for r in args.rates.split(",")]
    pipes = make_pipelines(args.pipelines, args.workers)
    runs: list[dict[str, Any]] = []
    steps = args.repeat * len(pipes) * (len(rates) + 1)
    with tqdm(total=steps, desc="e2e", file=sys.stderr, unit="step") as bar:
        for _ in range(args.repeat):
            runs.append(run_once(args, pipes, rates, bar))
    return combine(runs), runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--pipelines",
        default=",".join(PIPELINES),
        help=f"comma list of {', '.join(PIPELINES)} (default: all)",
    )
    ap.add_argument("--rates", default="500,1000,2000,5000", help="fixed offered rates, events/s")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    ap.add_argument("--backlog", type=int, default=200_000, help="records for the sustained-rate drain")
    ap.add_argument(
        "--hold", type=float, default=60.0, help="longest time the sustained-rate drain is timed, s"
    )
    ap.add_argument("--workers", default="1,2,4", help="Bukong worker counts to run, e.g. 1 or 1,2")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of every measurement; medians judged (make bench: 3)"
    )
    ap.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=peers.fetch_wait_ms(),
        help="the consumers' fetch wait, the same for every pipeline (default: the worker's setting)",
    )
    ap.add_argument("--smoke", action="store_true", help="tiny run (seconds) to check the benchmark works")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    os.environ[peers.FETCH_WAIT_ENV] = str(args.fetch_wait_ms)  # read by the workers and the peers' children
    if args.smoke:
        args.rates, args.duration, args.backlog, args.hold, args.workers = "200", 3.0, 20_000, 10.0, "1"
        args.repeat = 1
    t0 = time.monotonic()
    results, runs = run(args)
    s = summary(results)
    doc = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "wall_s": round(time.monotonic() - t0, 1),
        "results": results,
        "runs": runs if len(runs) > 1 else [],
        "goals": [{"goal": g, "met": ok, "figures": f} for g, ok, f in goals(s)],
        "summary": s,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "e2e-smoke" if args.smoke else f"e2e-{dt.date.today().isoformat()}"
    (args.out / f"{stem}.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    plot(results, args.out / f"{stem}.png")
    print(table(results))
    print()
    print(stage_table(results))
    print()
    if s.get("pathway_max_eps"):
        more = [n for n in s["pipelines"] if n.startswith("bukong_")]
        print(
            f"- gap to Pathway (sustained rate): 1 worker {s['bukong_vs_pathway_max_eps']}x"
            + "".join(f", {n[7:-1]} workers {s[f'{n}_vs_pathway_max_eps']}x" for n in more)
        )
    for n in [n for n in s["pipelines"] if n.startswith("bukong_")]:
        cores, k = os.cpu_count() or 1, int(n[7:-1])
        why = f" (more workers than the {cores} cores: they overlap each other's waits)" if k > cores else ""
        print(f"- {k} workers vs 1 (sustained rate): {s[f'{n}_vs_bukong_max_eps']}x{why}")
    for g in doc["goals"]:
        mark = {True: "met", False: "MISSED", None: "not measured"}[g["met"]]
        print(f"- {g['goal']}: {mark} ({g['figures']})")
    if s["not_sustained"]:
        print(f"- not sustained (p99 reported as null): {', '.join(s['not_sustained'])}")
    print(f"- results: {args.out / stem}.json and .png ({doc['wall_s']} s)")
    print(orjson.dumps(s).decode(), flush=True)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "e2e"
    sys.exit(main())
