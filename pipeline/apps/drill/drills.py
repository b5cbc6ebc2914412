"""The seven drills. Each returns a DrillResult: named checks (pass/fail with the evidence) and figures."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.apps.drill.harness import Pair, Stack, rss_mb
from pipeline.apps.drill.records import must_dispatch
from pipeline.contracts import events as c

INVALID_PACK = 'bukong_dead_letters_total{reason="invalid_rule_pack"}'
PACK_VERSION = "bukong_rule_pack_version"


@dataclass
class Config:
    quick: bool = False
    fuzzed: int = 100_000
    huge: int = 20  # 1 MB values among the fuzzed records
    good_every: int = 20  # one must-dispatch pair per this many fuzzed records
    kills: int = 10
    redis_pause_s: float = 30.0
    broker_pause_s: float = 20.0
    streams: int = 500
    soak_minutes: float = 10.0
    soak_rate: float = 200.0  # the demo's rate
    soak_preroll_s: float | None = None  # simulated seconds sent at once first (None: the demo's 1.5 h)
    load_rate: float = 50.0  # must-dispatch pairs per second (100 records/s) in the kill and outage drills
    drain_stall_s: float = 60.0  # after a drill, wait while the pipeline makes progress; give up after this
    drain_cap_s: float = 900.0  # ... still stalled, or at the latest after this
    seed: int = 7

    @classmethod
    def quick_config(cls) -> Config:
        return cls(
            quick=True,
            fuzzed=2_000,
            huge=2,
            good_every=20,
            kills=2,
            load_rate=50.0,
            redis_pause_s=4.0,
            broker_pause_s=4.0,
            streams=60,
            soak_minutes=0.5,
            soak_preroll_s=600.0,
            drain_stall_s=30.0,
            drain_cap_s=180.0,
        )


@dataclass
class DrillResult:
    name: str
    title: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((what, bool(ok), detail))
        return ok

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


Progress = Callable[[str], None]


class Load:
    """Must-dispatch pairs at a steady rate from a thread, until stopped."""

    def __init__(self, stack: Stack, run: str, rate: float) -> None:
        self.stack, self.run, self.rate = stack, run, rate
        self.pairs: list[Pair] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"load-{run}", daemon=True)

    def _loop(self) -> None:
        i, t0 = 0, time.monotonic()
        while not self._stop.is_set():
            due = t0 + i / self.rate
            if due > time.monotonic():
                self._stop.wait(due - time.monotonic())
                continue
            try:
                self.pairs.append(self.stack.send_pair(*must_dispatch(self.run, i)))
            except Exception:
                self.errors += 1
                self._stop.wait(0.05)
            i += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def flush(stack: Stack, timeout_s: float = 120.0) -> None:
    try:
        stack.producer.flush(timeout=timeout_s)
    except Exception:
        pass


def drain(cfg: Config, remaining: Callable[[], int], progress: Progress, what: str) -> int:
    """Wait while ``remaining()`` goes down: until it is 0, or it has not moved for ``drain_stall_s``, or
    ``drain_cap_s`` has passed. A backlog is not a loss; a pipeline that stopped moving has lost them."""
    start = time.monotonic()
    last, moved = remaining(), start
    while (
        last and time.monotonic() - moved < cfg.drain_stall_s and time.monotonic() - start < cfg.drain_cap_s
    ):
        time.sleep(0.5)
        now = remaining()
        if now < last:
            last, moved = now, time.monotonic()
        progress(f"waiting for {now} {what} ({time.monotonic() - start:.0f} s)")
    return last


def wait_decided(stack: Stack, decl_ids: set[str], cfg: Config, progress: Progress) -> set[str]:
    """Wait until every declaration has a command on dispatch-commands; return the ones that have none."""
    missing = set(decl_ids)

    def remaining() -> int:
        missing.difference_update([d for d in missing if d in stack.tracker.decided])
        return len(missing)

    drain(cfg, remaining, progress, f"of {len(decl_ids)} commands")
    return missing


def acked_ids(pairs: list[Pair]) -> tuple[set[str], int]:
    ok = {p.decl_id for p in pairs if p.acked()}
    return ok, len(pairs) - len(ok)


def _ensure_worker(stack: Stack, during: str, res: DrillResult) -> bool:
    """True when the worker is still the one the drill started; otherwise note it and start a new one."""
    if stack.note_unexpected_exit(during):
        res.check("worker stays up", False, stack.worker_deaths[-1] + " (restarted by the drill)")
        stack.start_worker()
        stack.wait_ready()
        return False
    return True


def _loss_checks(
    stack: Stack, res: DrillResult, pairs: list[Pair], cfg: Config, progress: Progress, label: str
) -> int:
    flush(stack)
    sent, unacked = acked_ids(pairs)
    missing = wait_decided(stack, sent, cfg, progress)
    cids = {stack.tracker.decided[d] for d in sent if d in stack.tracker.decided}
    doubled = stack.tracker.doubled(cids)
    res.figures.update({"must_dispatch_sent": len(sent), "not_acked_by_broker": unacked, label: len(missing)})
    res.figures["doubled"] = doubled
    sample = ", ".join(sorted(missing)[:3])
    res.check(
        f"{label} = 0", not missing, f"{len(missing)} of {len(sent)} without a command {sample}".strip()
    )
    res.check("doubled = 0", doubled == 0, f"{doubled} extra commands")
    return len(missing)


# --------------------------------------------------------------------------------------------------- (a)
def drill_fuzz(stack: Stack, cfg: Config, progress: Progress) -> DrillResult:
    from pipeline.apps.drill.records import fuzzed

    res = DrillResult("a", "fuzzed records interleaved with must-dispatch ones")
    rng = random.Random(cfg.seed)
    huge_at = set(rng.sample(range(cfg.fuzzed), min(cfg.huge, cfg.fuzzed)))
    sent: list[tuple[Any, str]] = []
    pairs: list[Pair] = []
    p = stack.producer
    for i in range(cfg.fuzzed):
        topic, key, value, kind = fuzzed(rng, "huge_1mb" if i in huge_at else None)
        sent.append((p.send(topic, key=key, value=value), kind))
        if i % cfg.good_every == 0:
            pairs.append(stack.send_pair(*must_dispatch("A", i // cfg.good_every)))
        if i % 1000 == 0:
            progress(f"sent {i} fuzzed")
    flush(stack)
    coords: dict[tuple[str, int, int], str] = {}
    refused: Counter[str] = Counter()
    for fut, kind in sent:
        if fut.is_done and fut.succeeded():
            md = fut.value
            coords[(md.topic, md.partition, md.offset)] = kind
        else:
            refused[f"{kind}: {type(fut.exception).__name__ if fut.is_done else 'no answer'}"] += 1
    good, _ = acked_ids(pairs)
    dead = stack.tracker.dead
    open_coords, open_good = set(coords), set(good)

    def remaining() -> int:
        open_coords.difference_update([k for k in open_coords if k in dead])
        open_good.difference_update([d for d in open_good if d in stack.tracker.decided])
        return len(open_coords) + len(open_good)

    drain(cfg, remaining, progress, "fuzzed records to dead-letter and good ones to decide")
    missing_by_kind = Counter(kind for k, kind in coords.items() if k not in dead)
    reasons = Counter(dead[k] for k in coords if k in dead)
    decided = sum(1 for d in good if d in stack.tracker.decided)
    cids = {stack.tracker.decided[d] for d in good if d in stack.tracker.decided}
    dead_lettered = sum(reasons.values())
    res.figures.update(
        {
            "fuzzed": len(coords),
            "dead_lettered": dead_lettered,
            "dead_letter_reasons": dict(reasons.most_common()),
            "not_dead_lettered_by_kind": dict(missing_by_kind),
            "refused_by_broker": dict(refused),
            "good_sent": len(good),
            "good_decided": decided,
            "doubled": stack.tracker.doubled(cids),
        }
    )
    res.check(
        "every fuzzed record dead-lettered with a reason",
        dead_lettered == len(coords),
        f"{dead_lettered}/{len(coords)}"
        + (f"; missing by kind {dict(missing_by_kind)}" if missing_by_kind else ""),
    )
    res.check(
        "the broker took every fuzzed record",
        not refused,
        f"refused: {dict(refused)}" if refused else f"{len(coords)} acknowledged",
    )
    res.check("every good record decided", decided == len(good), f"{decided}/{len(good)}")
    _ensure_worker(stack, "fuzz drill", res)
    return res


# --------------------------------------------------------------------------------------------------- (b)
def drill_kills(stack: Stack, cfg: Config, progress: Progress) -> DrillResult:
    res = DrillResult("b", f"{cfg.kills} x kill -9 of the worker under load, restarted each time")
    rng = random.Random(cfg.seed + 1)
    kills, not_ready = 0, 0
    with Load(stack, "K", cfg.load_rate) as load:
        time.sleep(2)
        for k in range(cfg.kills):
            time.sleep(rng.uniform(0.5, 4.0))  # a random instant under load
            if stack.note_unexpected_exit("kill drill"):
                res.check("worker stays up between kills", False, stack.worker_deaths[-1])
            stack.kill_worker(signal.SIGKILL)
            kills += 1
            stack.start_worker()
            progress(f"kill {k + 1}/{cfg.kills}: restarting")
            if not stack.wait_ready(120):
                not_ready += 1
        time.sleep(2)
    res.figures.update({"kills": kills, "restarts_not_ready": not_ready, "load_errors": load.errors})
    res.check(
        "the worker came back after every kill", not_ready == 0, f"{not_ready} restarts never got ready"
    )
    lost = _loss_checks(stack, res, load.pairs, cfg, progress, "lost")
    res.figures["lost"] = lost
    return res


# --------------------------------------------------------------------------------------------------- (c)
def drill_redis(stack: Stack, cfg: Config, progress: Progress) -> DrillResult:
    res = DrillResult("c", f"Redis paused {cfg.redis_pause_s:.0f} s, then killed and restarted")
    starts = stack.worker_starts
    with Load(stack, "R", cfg.load_rate) as load:
        time.sleep(2)
        os.kill(stack.valkey.proc.pid, signal.SIGSTOP)
        progress(f"Redis paused for {cfg.redis_pause_s:.0f} s")
        time.sleep(cfg.redis_pause_s)
        os.kill(stack.valkey.proc.pid, signal.SIGCONT)
        time.sleep(3)
        progress("Redis killed, restarting on the same port")
        stack.restart_valkey()
        time.sleep(5)
    recovered = _ensure_worker(stack, "Redis drill", res)
    lost = _loss_checks(stack, res, load.pairs, cfg, progress, "redis_outage_lost")
    res.figures.update({"self_recovered": recovered and lost == 0 and stack.worker_starts == starts})
    return res


# --------------------------------------------------------------------------------------------------- (d)
def drill_broker(stack: Stack, cfg: Config, progress: Progress) -> DrillResult:
    res = DrillResult("d", f"broker paused {cfg.broker_pause_s:.0f} s")
    starts = stack.worker_starts
    with Load(stack, "B", cfg.load_rate) as load:
        time.sleep(2)
        os.kill(stack.tansu.proc.pid, signal.SIGSTOP)
        progress(f"broker paused for {cfg.broker_pause_s:.0f} s")
        time.sleep(cfg.broker_pause_s)
        os.kill(stack.tansu.proc.pid, signal.SIGCONT)
        time.sleep(5)
    recovered = _ensure_worker(stack, "broker drill", res)
    lost = _loss_checks(stack, res, load.pairs, cfg, progress, "broker_outage_lost")
    res.figures.update({"self_recovered": recovered and lost == 0 and stack.worker_starts == starts})
    return res


# --------------------------------------------------------------------------------------------------- (e)
def drill_packs(stack: Stack, cfg: Config, progress: Progress) -> DrillResult:
    from pipeline.apps.drill.packs import hostile_packs, local_verdicts

    res = DrillResult("e", "hostile rule packs published while scoring")
    corpus = hostile_packs()
    before = stack.worker_metrics()
    v0 = before.get(PACK_VERSION)
    r0 = before.get(INVALID_PACK, 0.0)
    starts = stack.worker_starts
    with Load(stack, "P", cfg.load_rate) as load:
        time.sleep(1)
        for i, (name, raw) in enumerate(corpus):
            progress(f"publishing hostile pack {i + 1}/{len(corpus)}: {name}")
            stack.producer.send(c.RULE_PACKS, key=b"pack", value=raw)
            time.sleep(0.3)
        flush(stack)
        deadline = time.monotonic() + 30
        rejected = 0.0
        while time.monotonic() < deadline:
            m = stack.worker_metrics()
            rejected = m.get(INVALID_PACK, 0.0) - r0
            if rejected >= len(corpus) or not stack.worker_alive():
                break
            time.sleep(0.5)
        time.sleep(2)
    after = stack.worker_metrics()
    same_worker = stack.worker_starts == starts
    _ensure_worker(stack, "hostile pack drill", res)
    try:
        verdicts = local_verdicts()
    except Exception as exc:
        verdicts = {"<local check failed>": f"{type(exc).__name__}: {exc}"}
    accepted = [n for n, v in verdicts.items() if not v.startswith("rejected")]
    res.figures.update(
        {
            "hostile_packs": len(corpus),
            "hostile_packs_rejected": int(rejected) if same_worker else None,
            "pack_version_before": v0,
            "pack_version_after": after.get(PACK_VERSION),
            "accepted_by_local_check": accepted,
        }
    )
    res.check("the worker answers /metrics", bool(before) and bool(after), "scraped before and after")
    res.check("every hostile pack rejected", rejected == len(corpus), f"{int(rejected)}/{len(corpus)}")
    res.check(
        "the live pack is unchanged",
        v0 is not None and after.get(PACK_VERSION) == v0,
        f"version {v0} -> {after.get(PACK_VERSION)}",
    )
    res.check("the validator refuses each one here too", not accepted, ", ".join(accepted) or "all refused")
    _loss_checks(stack, res, load.pairs, cfg, progress, "lost_while_publishing")
    return res


# --------------------------------------------------------------------------------------------------- (f)
def drill_api(stack: Stack, cfg: Config, progress: Progress) -> DrillResult:
    from pipeline.apps.drill.api import api_drill

    res = DrillResult("f", f"API attack corpus, {cfg.streams} streams")
    cid = stack.tracker.last_command_id
    if cid is None:  # no drill has dispatched yet: make one command
        pair = stack.send_pair(*must_dispatch("F", 0))
        flush(stack)
        wait_decided(stack, {pair.decl_id}, cfg, progress)
        cid = stack.tracker.decided.get(pair.decl_id)
    progress("attacking the API")
    report = api_drill(stack.kafka, stack.redis_url, cid or "cmd-none", cfg.streams)
    res.figures.update(
        {
            "api_requests": report.attacks,
            "api_5xx": report.api_5xx,
            "api_unexpected": report.unexpected,
            "streams_opened": report.streams_opened,
            "streams_refused": report.streams_refused,
            "streams_failed": report.streams_failed,
        }
    )
    res.check("api_5xx = 0", report.api_5xx == 0, f"{report.api_5xx} server errors")
    res.check(
        "every attack answered as it should",
        not report.unexpected,
        "; ".join(report.unexpected) or f"{report.attacks} requests",
    )
    res.check(
        f"{cfg.streams} streams: none fails, the server still answers",
        report.streams_failed == 0 and report.streams_5xx == 0 and report.healthy_under_streams,
        f"opened {report.streams_opened}, refused {report.streams_refused}, failed {report.streams_failed}, "
        f"5xx {report.streams_5xx}, /healthz {'ok' if report.healthy_under_streams else 'NOT answering'}",
    )
    _ensure_worker(stack, "API drill", res)
    return res


# --------------------------------------------------------------------------------------------------- (g)
def _soak_samples(
    stack: Stack, sim: Any, duration: float, every: float, group: str, progress: Progress
) -> list[dict[str, Any]]:
    """Run the simulator for ``duration`` seconds; every ``every`` seconds, the memory of each process and
    the group's lag."""
    samples: list[dict[str, Any]] = []
    sim.start()
    t0 = time.monotonic()
    try:
        while (el := time.monotonic() - t0) < duration:
            pids = {
                "worker": stack.worker.pid if stack.worker_alive() and stack.worker else None,
                "tansu": stack.tansu.proc.pid,
                "valkey": stack.valkey.proc.pid,
            }
            s: dict[str, Any] = {"t": el, "rss": {k: rss_mb(p) for k, p in pids.items()}}
            s["lag"] = stack.group_lag(group)
            samples.append(s)
            lag_txt = max((s["lag"] or {}).values(), default="?")
            progress(f"soak {el:.0f}/{duration:.0f} s, sent {sim.sent}, max lag {lag_txt}")
            time.sleep(every)
    finally:
        sim.stop()
    return samples


def drill_soak(stack: Stack, cfg: Config, progress: Progress, group: str = "bukong") -> DrillResult:
    from pipeline.apps.sim.live import LiveSim
    from pipeline.apps.sim.scenario import load_scenario

    minutes = cfg.soak_minutes
    res = DrillResult("g", f"{minutes:g}-minute soak at {cfg.soak_rate:.0f} events/s")
    sim = LiveSim(
        stack.kafka, load_scenario("baseline"), cfg.soak_rate, seed=cfg.seed, partitions=stack.partitions
    )
    if cfg.soak_preroll_s is not None:
        sim.preroll_s = cfg.soak_preroll_s
    duration = minutes * 60
    warmup = max(min(60.0, duration / 3), duration / 5)
    every = 5.0 if duration >= 120 else 1.0
    starts = stack.worker_starts
    samples = _soak_samples(stack, sim, duration, every, group, progress)
    alive = stack.worker_alive() and stack.worker_starts == starts
    warm = [s for s in samples if s["t"] >= warmup] or samples[-1:]
    mid = warm[len(warm) // 2] if warm else None
    growth: dict[str, float | None] = {}
    late_growth: dict[str, float | None] = {}
    for proc in ("worker", "tansu", "valkey"):
        vals = [s["rss"][proc] for s in warm if s["rss"][proc] is not None]
        growth[proc] = round(vals[-1] - vals[0], 1) if len(vals) >= 2 else None
        m = mid["rss"][proc] if mid else None
        late_growth[proc] = round(vals[-1] - m, 1) if vals and m is not None else None
    lags = [s["lag"] for s in warm if s["lag"] is not None]
    max_lag: dict[str, int] = {}
    for lag in lags:
        for t, v in lag.items():
            max_lag[t] = max(max_lag.get(t, 0), v)
    final_lag = lags[-1] if lags else {}
    lag_bound = int(cfg.soak_rate * 10)  # ten seconds of input
    res.figures.update(
        {
            "soak_seconds": round(duration),
            "soak_events": sim.sent,
            "soak_rss_mb_after_warmup": {
                p: round(v, 1) if (v := warm[0]["rss"][p]) is not None else None for p in growth
            }
            if warm
            else {},
            "soak_rss_growth_mb": growth,
            "soak_rss_growth_second_half_mb": late_growth,
            "soak_max_lag": max_lag,
            "soak_final_lag": final_lag,
            "soak_lag_samples": len(lags),
        }
    )
    res.check("the worker stays up through the soak", alive, "no restart")
    res.check("consumer lag sampled", bool(lags), f"{len(lags)} samples of the group's committed offsets")
    for proc, g in late_growth.items():
        base = mid["rss"][proc] if mid else None
        bound = max(16.0, 0.05 * (base or 0.0))
        res.check(
            f"{proc} memory plateaus",
            g is not None and g <= bound,
            f"+{g} MB over the second half (bound {bound:.0f} MB); +{growth[proc]} MB after warm-up",
        )
    res.check(
        "lag bounded on every topic",
        bool(max_lag) and max(max_lag.values()) <= lag_bound,
        f"max {max_lag} (bound {lag_bound} = 10 s of input)",
    )
    return res


DRILLS: dict[str, Callable[[Stack, Config, Progress], DrillResult]] = {
    "a": drill_fuzz,
    "b": drill_kills,
    "c": drill_redis,
    "d": drill_broker,
    "e": drill_packs,
    "f": drill_api,
    "g": drill_soak,
}
