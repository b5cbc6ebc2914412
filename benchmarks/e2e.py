"""End-to-end benchmark: produce -> Kafka -> pipeline -> dispatch-commands, on the embedded broker.

Every figure is measured in the same run against a reference on the same broker:

* ``floor``  — raw aiokafka pass-through, no Faust: consume the input topics, decode with orjson, produce a
  small record per declaration to the output topic (two hops, like the real path).
* ``bukong`` — the real pipeline as shipped: ``python -m pipeline worker`` (Faust, join, rules, model,
  policy, dispatch with Redis dedupe).

For each pipeline and each fixed rate a separate producer process sends the generator's realistic mix (GPS
points, gate, weighbridge, declaration per truck trip) and this process reads the output topic: latency is
the triggering record's producer timestamp -> the output record read back (both hops). Then the highest
sustained rate: a backlog of records is produced up front and the pipeline's processing rate measured.
CPU of the pipeline process(es) and of the broker comes from /proc.

    .venv/bin/python benchmarks/e2e.py                    # rates 500,1000,2000 (about 3 minutes)
    .venv/bin/python benchmarks/e2e.py --smoke            # seconds, for the test suite
    .venv/bin/python benchmarks/e2e.py --workers 1,2      # Bukong with 1 and with 2 workers

Writes benchmarks/results/e2e-<date>.json and prints a markdown table; the last stdout line is the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import contracts as c  # noqa: E402
from pipeline.demo import Watcher, percentile, spawn_worker, wait_workers_ready  # noqa: E402
from pipeline.embedded import Servers, proc_cpu_seconds, servers  # noqa: E402
from pipeline.generator import Generator, GeneratorConfig  # noqa: E402
from pipeline.topics import create_topics  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
PARTITIONS = 4


# ------------------------------------------------------------------------------------------ producer
def produce(kafka: str, rate: float, duration_s: float, seed: int, backlog: int = 0) -> None:
    """Runs in its own process: the generator's mix at ``rate`` events/s, or ``backlog`` events at once."""
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
    sent = 0
    interval = 1.0 / rate if rate else 0.0
    t0 = time.monotonic()
    t_next = t0
    for topic, key, value, _ in gen.stream(clock if backlog else _wall_clock()):
        producer.send(topic, key=key, value=value)
        sent += 1
        if backlog:
            if sent >= backlog:
                break
            continue
        t_next += interval
        delay = t_next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if time.monotonic() - t0 >= duration_s:
            break
    producer.flush()
    producer.close()


def _wall_clock() -> Any:
    while True:
        yield int(time.time() * 1000)


def run_producer(kafka: str, rate: float, duration_s: float, seed: int, backlog: int = 0) -> mp.Process:
    p = mp.get_context("spawn").Process(
        target=produce, args=(kafka, rate, duration_s, seed, backlog), daemon=True
    )
    p.start()
    return p


# ------------------------------------------------------------------------------------------ pipelines
FLOOR_GROUP = "floor"


async def _floor(kafka: str, stop: Any, count: Any) -> None:
    import aiokafka

    consumer = aiokafka.AIOKafkaConsumer(
        *c.INPUT_TOPICS,
        bootstrap_servers=kafka,
        group_id=FLOOR_GROUP,
        fetch_max_wait_ms=5,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_poll_records=5000,
    )
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=1)
    await consumer.start()
    await producer.start()
    n = 0
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            futs = []
            for recs in batch.values():
                for r in recs:
                    ev = orjson.loads(r.value)
                    n += 1
                    if r.topic == c.DECLARATIONS:
                        out = {
                            "command_id": "cmd-" + ev["decl_id"],
                            "decl_id": ev["decl_id"],
                            "trigger": {"produced_ms": r.timestamp},
                        }
                        futs.append(await producer.send(c.DISPATCH_COMMANDS, orjson.dumps(out), key=r.key))
            for f in futs:
                await f
            count.value = n
    finally:
        await consumer.stop()
        await producer.stop()


def _floor_entry(kafka: str, stop: Any, count: Any) -> None:
    asyncio.run(_floor(kafka, stop, count))


class Pipeline:
    """A pipeline under test: start, processed-record count, CPU, stop."""

    name = ""

    def start(self, srv: Servers, log_dir: Path, wait: bool = True) -> None: ...

    def processed(self) -> int: ...

    def pids(self) -> list[int]: ...

    def stop(self) -> None: ...


class Floor(Pipeline):
    name = "floor"

    def start(self, srv: Servers, log_dir: Path, wait: bool = True) -> None:
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.count = ctx.Value("q", 0)
        self.proc = ctx.Process(
            target=_floor_entry, args=(srv.kafka, self.stop_event, self.count), daemon=True
        )
        self.proc.start()
        if wait:
            time.sleep(6)  # consumer group join on the embedded broker

    def processed(self) -> int:
        return int(self.count.value)

    def pids(self) -> list[int]:
        return [self.proc.pid or 0]

    def stop(self) -> None:
        self.stop_event.set()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


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
        self.procs = [
            spawn_worker(srv.kafka, srv.redis_url, i, log_dir, extra_env=env) for i in range(self.workers)
        ]
        if wait:
            wait_workers_ready(srv.redis_url, self.workers, len(c.INPUT_TOPICS), PARTITIONS, timeout_s=90)

    def processed(self) -> int:
        return int(self.r.hget("bukong:stats", "events") or 0)

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
def measure_rate(srv: Servers, pipe: Pipeline, rate: float, duration_s: float, seed: int) -> dict[str, Any]:
    watcher = Watcher(srv.kafka, PARTITIONS)
    watcher.start()
    tansu = srv.server("tansu")
    cpu0 = sum(proc_cpu_seconds(p) for p in pipe.pids())
    b0 = tansu.cpu_seconds() if tansu else 0.0
    n0 = pipe.processed()
    t0 = time.monotonic()
    prod = run_producer(srv.kafka, rate, duration_s, seed)
    prod.join(duration_s + 30)
    time.sleep(1.5)  # the tail of the run
    watcher.stop()
    wall = time.monotonic() - t0
    n = pipe.processed() - n0
    lat = watcher.latencies_ms
    return {
        "rate": rate,
        "achieved_eps": round(n / max(wall - 1.5, 1e-9), 1),
        "samples": len(lat),
        "p50_ms": percentile(lat, 0.50),
        "p95_ms": percentile(lat, 0.95),
        "p99_ms": percentile(lat, 0.99),
        "pipeline_cpu_pct": round((sum(proc_cpu_seconds(p) for p in pipe.pids()) - cpu0) / wall * 100, 1),
        "broker_cpu_pct": round(((tansu.cpu_seconds() if tansu else 0.0) - b0) / wall * 100, 1),
    }


def measure_max(
    srv: Servers, pipe: Pipeline, backlog: int, seed: int, timeout_s: float = 120
) -> dict[str, Any]:
    """Sustained rate: a backlog is produced while the pipeline is stopped, then the pipeline drains it.

    Timed from the first record it processed to the last, so group-join time is not counted.
    """
    pipe.stop()
    prod = run_producer(srv.kafka, 0, 0, seed + 1, backlog=backlog)
    prod.join(300)
    pipe.start(srv, RESULTS / "logs", wait=False)
    tansu = srv.server("tansu")
    deadline = time.monotonic() + timeout_s
    first = None
    n_first = 0
    n = 0
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        n_now = pipe.processed()
        now = time.monotonic()
        if n_now and first is None:
            first, n_first = now, n_now
            cpu0 = sum(proc_cpu_seconds(p) for p in pipe.pids())
            b0 = tansu.cpu_seconds() if tansu else 0.0
        if n_now != n:
            n, last_change = n_now, now
        if n >= backlog or (first is not None and now - last_change > 5):
            break
        time.sleep(0.01)
    if first is None:
        return {"max_eps": None, "drained": 0, "pipeline_cpu_pct": None, "broker_cpu_pct": None}
    wall = max(last_change - first, 1e-3)
    return {
        "max_eps": round((n - n_first) / wall, 1) if n > n_first else None,
        "drained": n,
        "pipeline_cpu_pct": round((sum(proc_cpu_seconds(p) for p in pipe.pids()) - cpu0) / wall * 100, 1),
        "broker_cpu_pct": round(((tansu.cpu_seconds() if tansu else 0.0) - b0) / wall * 100, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    rates = [float(r) for r in args.rates.split(",")]
    pipes: list[Pipeline] = []
    for name in args.pipelines.split(","):
        if name == "floor":
            pipes.append(Floor())
        elif name == "bukong":
            pipes += [Bukong(int(w)) for w in args.workers.split(",")]
        else:
            raise SystemExit(f"error: unknown pipeline {name!r} (floor, bukong)")
    results: dict[str, Any] = {}
    steps = len(pipes) * (len(rates) + 1)
    with tqdm(total=steps, desc="e2e", file=sys.stderr, unit="step") as bar:
        for pipe in pipes:
            with servers(None, None) as srv:  # a fresh broker per pipeline: no leftover backlog
                create_topics(srv.kafka, PARTITIONS, 600_000)
                pipe.start(srv, RESULTS / "logs")
                per_rate = []
                for rate in rates:
                    bar.set_postfix_str(f"{pipe.name} @ {rate:.0f}/s")
                    per_rate.append(measure_rate(srv, pipe, rate, args.duration, args.seed))
                    bar.update()
                bar.set_postfix_str(f"{pipe.name} max")
                mx = measure_max(srv, pipe, args.backlog, args.seed)
                bar.update()
                pipe.stop()
                results[pipe.name] = {"rates": per_rate, **mx}
    return results


def summary(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, r in results.items():
        for row in r["rates"]:
            out[f"{name}_p99_ms_at_{int(row['rate'])}"] = row["p99_ms"]
        out[f"{name}_max_eps"] = r["max_eps"]
    if "floor" in results and "bukong" in results:
        for row_b, row_f in zip(results["bukong"]["rates"], results["floor"]["rates"], strict=True):
            if row_b["p99_ms"] and row_f["p99_ms"]:
                out[f"bukong_vs_floor_p99_at_{int(row_b['rate'])}"] = round(
                    row_b["p99_ms"] / row_f["p99_ms"], 2
                )
        fm, bm = results["floor"]["max_eps"], results["bukong"]["max_eps"]
        out["bukong_vs_floor_max_eps"] = round(bm / fm, 3) if fm and bm else None
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        "| pipeline | rate/s | achieved/s | p50 ms | p95 ms | p99 ms | pipeline CPU % | broker CPU % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for row in r["rates"]:
            lines.append(
                f"| {name} | {row['rate']:.0f} | {row['achieved_eps']:.0f} | {row['p50_ms']} | "
                f"{row['p95_ms']} | {row['p99_ms']} | {row['pipeline_cpu_pct']} | {row['broker_cpu_pct']} |"
            )
        lines.append(
            f"| {name} | **max** | **{r['max_eps']}** | | | | {r['pipeline_cpu_pct']} | "
            f"{r['broker_cpu_pct']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipelines", default="floor,bukong", help="comma list: floor, bukong")
    ap.add_argument("--rates", default="500,1000,2000", help="fixed offered rates, events/s")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    ap.add_argument("--backlog", type=int, default=200_000, help="records for the sustained-rate run")
    ap.add_argument("--workers", default="1", help="Bukong worker counts to run, e.g. 1,2")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--smoke", action="store_true", help="tiny run (seconds) to check the benchmark works")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.smoke:
        args.rates, args.duration, args.backlog = "200", 3.0, 60_000
    results = run(args)
    doc = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": results,
        "summary": summary(results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "e2e-smoke.json" if args.smoke else f"e2e-{dt.date.today().isoformat()}.json"
    (args.out / name).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(table(results))
    print(orjson.dumps(doc["summary"]).decode(), flush=True)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "e2e"
    sys.exit(main())
