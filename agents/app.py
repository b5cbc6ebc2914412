"""The Faust app and its agents. Thin: take a batch of records, hand it to the Runtime, nothing else.

Input topics are keyed by conveyance id and co-partitioned, so one agent reads all three and joins without a
repartition hop: producer -> input topic -> agent -> dispatch-commands is the whole path (two hops).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.exceptions import ProducerSendError
from faust.types import TP
from prometheus_client import CollectorRegistry

from agents import faust_tuning, watchlists
from agents.changelog import RedisChangelog
from agents.collector import Collector
from agents.fastpath import BatchConsumer, BatchTransport, OffsetCommitter
from agents.flowwatch import FlowWatch, input_highwaters
from agents.globalstate import SharedFacts
from agents.inputclock import InputClock
from agents.redisclient import redis_client
from agents.runtime import (
    GC_THRESHOLDS,
    REDIS_ERRORS,
    BrokerUnavailable,
    DispatchLog,
    Health,
    Record,
    Runtime,
)
from pipeline.contracts import events as c
from pipeline.contracts.commands import META_KEY, READY_KEY, RULES_KEY
from pipeline.contracts.settings import Settings
from pipeline.core.assemble import build_engine
from pipeline.core.policy_settings import policy_config
from pipeline.io.metrics import Metrics
from pipeline.io.topics import MAX_RECORD_BYTES

log = logging.getLogger("bukong.agents")


def _tp(name: str) -> TP:
    topic, _, part = name.rpartition(":")
    return TP(topic, int(part))


MAX_BATCH = 2000  # records per fetched batch: bounds memory and the latency a batch adds to its first record
REDIS_TIMEOUT_S = 3.0  # a Redis call that has not answered in this long is retried (SIGSTOPped, partitioned)
RULE_ERROR_LOG_EVERY_S = 60.0  # at most one log line a minute per failing rule


def _faust_app(settings: Settings, kafka: str) -> faust.App:
    faust_tuning.set_fetch_max_wait_ms(settings.fetch_max_wait_ms)
    if settings.producer_acks == "all":
        faust_tuning.set_idempotent_producer()
    return faust.App(
        settings.app_id,
        broker=f"kafka://{kafka}",
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=settings.producer_linger_ms,
        producer_acks=-1 if settings.producer_acks == "all" else int(settings.producer_acks),
        broker_commit_interval=0.5,
        broker_max_poll_records=MAX_BATCH,
        consumer_max_fetch_size=2 * MAX_RECORD_BYTES,  # the largest record never blocks a partition
        producer_max_request_size=MAX_RECORD_BYTES,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 4),
        broker_rebalance_timeout=max(10.0, settings.session_timeout_s * 2),
        stream_recovery_delay=0.0,
        web_enabled=False,
        loghandlers=[],
    )


@dataclass
class _Worker:
    """What the app's agents, timers and callbacks share: the settings, the metrics and the lazily built
    Runtime and offset committer (built inside the worker's loop, on first use)."""

    settings: Settings
    kafka: str
    redis_url: str
    app: faust.App
    metrics: Metrics
    health: Health
    flow: FlowWatch
    model_path: Path
    worker_id: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    state: dict[str, Any] = field(default_factory=dict)

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> Any:
        """Queue one record; returns the broker's delivery future (the Runtime awaits it)."""
        try:
            return await self.app.producer.send(
                topic, key, value, partition=partition, timestamp=None, headers=None
            )
        except (ProducerSendError, RuntimeError) as exc:  # KafkaError is a RuntimeError
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def runtime(self) -> Runtime:
        rt = self.state.get("runtime")
        if rt is None:
            s = self.settings
            rt = self.state["runtime"] = Runtime(
                engine=build_engine(s, self.model_path),
                # a stalled Redis must surface as an error the Runtime retries, not as a hang
                redis=redis_client(
                    self.redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
                ),
                send=self.send,
                metrics=self.metrics,
                live_maxlen=s.live_stream_maxlen,
                dedupe_ttl_s=s.dedupe_ttl_s,
                dispatch_log=DispatchLog(self.kafka),
                dispatch_partitions=s.partitions,
                health=self.health,
            )
            if s.align_inputs:
                clock = rt.input_clock = InputClock(
                    lambda: input_highwaters(self.app),
                    lambda: self.flow.stuck,
                    s.align_slack_ms,
                    pacer=self.pace,
                    ahead_ms=s.align_ahead_ms,
                )
                self.flow.paused = lambda: clock.paused
            rt.changelog = RedisChangelog(rt.redis, s.partitions, namespace=s.app_id)
            rt.changelog.shared = SharedFacts(
                rt.redis, rt.engine.joiner, namespace=s.app_id, group=rt.engine, hold=s.held_reads
            )
        return rt

    def pace(self, stop: set[str], go: set[str]) -> None:
        """Pause and resume input partitions ("topic:partition") for the input clock (agents/inputclock.py)"""
        consumer = self.app.consumer
        if stop:
            consumer.pause_partitions({_tp(name) for name in stop})
            self.metrics.input_pauses.inc(len(stop))
            log.info(
                "input clock: paused %s, read too far ahead of the partitions behind", ", ".join(sorted(stop))
            )
        if go:
            consumer.resume_partitions({_tp(name) for name in go})
            log.info("input clock: resumed %s", ", ".join(sorted(go)))

    def committer(self) -> OffsetCommitter:
        cm = self.state.get("committer")
        if cm is None:
            cm = self.state["committer"] = OffsetCommitter(self.app.consumer)  # type: ignore[arg-type]
        return cm


def create_app(settings: Settings, kafka: str, redis_url: str, metrics_port: int | None = None) -> faust.App:
    app = _faust_app(settings, kafka)
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    health = Health(metrics)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # keeps every input partition moving (adaptive fetch wait) and reports the ones that do not
    flow = FlowWatch(
        metrics, settings.fetch_max_wait_ms, settings.fetch_max_wait_cap_ms, settings.stuck_after_s
    )
    app.bukong_flow = flow  # type: ignore[attr-defined]
    health.stuck_partitions = lambda: flow.stuck
    w = _Worker(
        settings,
        kafka,
        redis_url,
        app,
        metrics,
        health,
        flow,
        settings.data_dir / f"model-{settings.app_id}.ckpt",
    )
    _install_batch_path(w)
    _install_feedback(w)
    _install_timers(w)
    _install_rebalance(w)

    if metrics_port:  # first: its port opens before the collector's start-up collection holds the loop

        @app.task
        async def serve_metrics() -> None:
            """GET /metrics and /healthz on the worker's metrics port, in the worker's own loop."""
            host = "127.0.0.1" if kafka.startswith("127.") else "0.0.0.0"
            await start_health_server(host, metrics_port, registry, health)

    @app.task
    async def watch_loop() -> None:
        """The event loop's lag and the collector's pauses: where a tail latency comes from."""
        collector = Collector(metrics, settings.gc_full_every_s)
        collector.start()
        try:
            await _watch_loop(metrics, collector.tick)
        finally:
            collector.stop()

    app.bukong_metrics = metrics  # type: ignore[attr-defined]
    app.bukong_registry = registry  # type: ignore[attr-defined]
    return app


def _install_batch_path(w: _Worker) -> None:
    """The scoring agent: every fetched batch of declarations, logistics and tracks, in one call."""
    app = w.app

    async def score_batch(batch: dict[Any, list[Any]], fetched_at: float) -> None:
        records = [
            Record(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)
            for recs in batch.values()
            for r in recs
        ]
        w.flow.busy = True
        try:
            await w.runtime().process(records, fetched_at)
            cm = w.committer()
            cm.processed(batch)
            await cm.maybe_commit()
        finally:
            w.flow.busy = False
        w.state["last_input_wall"] = time.monotonic()

    class Consumer(BatchConsumer):
        hot_topics = frozenset(c.INPUT_TOPICS)

        async def batch_handler(self, batch: dict[Any, list[Any]], fetched_at: float) -> None:
            await score_batch(batch, fetched_at)

    class Transport(BatchTransport):
        pass

    Transport.Consumer = Consumer
    app.transport = Transport(app.conf.broker_consumer, app)
    # subscribe: the batch path, not a per-message agent, consumes these
    app.topics.add(app.topic(*c.INPUT_TOPICS, value_serializer="raw", key_serializer="raw"))


async def _watch_loop(metrics: Metrics, tick: Callable[[], None], every_s: float = 0.1) -> None:
    """Sleep ``every_s`` in a loop and record how much later than asked the loop woke: time held by a batch,
    a timer or the collector shows here, not in any stage's timing. Each wake-up ticks the collector."""
    clock = time.perf_counter
    while True:
        t0 = clock()
        await asyncio.sleep(every_s)
        metrics.loop_lag_seconds.observe(max(0.0, clock() - t0 - every_s))
        tick()


def _install_feedback(w: _Worker) -> None:
    """The rule-pack follower and the inspection-result agent."""
    app, metrics = w.app, w.metrics

    @app.task
    async def rule_pack_reloader() -> None:
        """Every worker reads the whole rule-packs topic (a broadcast, not a group) and swaps packs atomically
        between batches: no event is scored by half a pack."""
        delay = 0.1
        while True:
            try:
                await follow_rule_packs(w.kafka, w.runtime(), metrics)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: the live pack stays, follow again with backoff
                metrics.dependency_retries.labels("broker").inc()
                log.warning(
                    "rule-pack follower stopped (%s: %s); the live pack stays, following again in %.1f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    results = app.topic(c.INSPECTION_RESULTS, value_serializer="raw", key_serializer="raw")

    @app.agent(results, name="bukong.feedback")
    async def feedback(stream: Any) -> None:
        """Inspection results: the model learns, rules are graded, the command's status moves on."""
        rt = w.runtime()
        async for events in stream.take_events(200, within=0.05):
            recs = [_record(e.message) for e in events]
            try:
                await rt.on_results(recs)  # waits out Redis/broker outages by itself
            except Exception as exc:  # a bug must not stop the feedback loop: dead-letter the batch, go on
                log.exception("inspection results at %s failed; dead-lettered", [r.offset for r in recs])
                await _dead_letter_results(rt, recs, exc)


def _install_timers(w: _Worker) -> None:
    """Watchlists every 2 s, the model checkpoint every 30 s; deadlines, gauges, flow watch every 1 s."""
    app, metrics = w.app, w.metrics

    @app.timer(interval=2.0)
    async def reload_watchlists() -> None:
        rt = w.runtime()
        try:
            lists = await watchlists.load(rt.redis)
            rt.engine.joiner.watch.replace(lists)
            for kind, book in lists.entries.items():
                metrics.watchlist_entries.labels(kind).set(len(book))
            metrics.watchlist_reloads.inc()
        except REDIS_ERRORS as exc:  # the previous lists stay in force; tried again in 2 s
            metrics.dependency_retries.labels("redis").inc()
            log.warning(
                "watchlists not reloaded (%s: %s); keeping the previous ones", type(exc).__name__, exc
            )
        except Exception:
            log.exception("watchlists not reloaded; keeping the previous ones")

    @app.timer(interval=30.0)
    async def checkpoint() -> None:
        rt = w.runtime()
        if rt.engine.model is not None:
            try:
                rt.engine.model.checkpoint(w.model_path)
            except Exception:  # a full disk must not stop scoring: the next checkpoint tries again
                log.exception(
                    "model checkpoint to %s failed; check the disk of BUKONG_DATA_DIR", w.model_path
                )

    @app.timer(interval=1.0)
    async def deadlines() -> None:
        await _deadlines(w)

    @app.timer(interval=1.0)
    async def watch_flow() -> None:
        """Adapt the fetch wait when lagging partitions come back empty; report stuck partitions."""
        try:
            await w.flow.tick(app, w.runtime().applied)
        except Exception:  # observation only: never let it stop the worker
            log.warning("flow watch failed", exc_info=True)


async def _deadlines(w: _Worker) -> None:
    """Deadline scoring, the gauges and the live view's meta, once a second."""
    rt = w.runtime()
    last = w.state.get("last_input_wall")
    idle_ms = int((time.monotonic() - last) * 1000) if last else 0
    try:
        await rt.tick(idle_advance_ms=idle_ms)  # waits out Redis/broker outages by itself
        await w.committer().maybe_commit()
    except Exception:  # a bug in deadline scoring must not stop the worker; logged, tried next second
        log.exception("deadline scoring failed")
    model = rt.engine.model
    try:
        _export_gauges(rt, w.app, w.metrics)
        _export_rule_errors(rt, w.metrics, w.state)
    except Exception:
        log.exception("metrics export failed")
    meta = {
        "pack_version": rt.engine.rules.version,
        "model_version": model.version if model is not None else 0,
        "budget_share": rt.engine.policy.budget_share() or "",  # BUKONG_POLICY's, for the live view
        "updated_ms": int(time.time() * 1000),
    }
    try:
        await rt.redis.hset(META_KEY, mapping=meta)
    except REDIS_ERRORS as exc:  # informational; written again next second
        log.debug("meta not written: %s", exc)


def _install_rebalance(w: _Worker) -> None:
    """Commit on revoke; on assignment restore the new partitions' state and announce readiness."""
    app = w.app

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        await w.committer().commit()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        rt = w.runtime()
        owned = w.state.setdefault("owned", set())
        mine = {tp.partition for tp in assigned if tp.topic in c.INPUT_TOPICS}
        restored = await rt.restore(mine - owned, c.INPUT_TOPICS)  # retries Redis by itself
        await rt.prepare()  # the dispatch log's end offsets: where a pending command can be looked for
        w.state["owned"] = mine
        if rt.input_clock is not None:  # revoked partitions no longer hold the input clock
            now = {f"{tp.topic}:{tp.partition}" for tp in assigned}
            rt.input_clock.forget([tp for tp in rt.input_clock.read if tp not in now])
            rt.input_clock.paused.intersection_update(now)  # as Faust keeps them, or none resumes them
        if restored:
            log.info("restored %d state keys for partitions %s", restored, sorted(mine - owned))
        parts = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)
        await rt.retry(
            "redis",
            "announcing the assignment",
            lambda: rt.redis.hset(READY_KEY, w.worker_id, ",".join(parts)),
        )
        log.info("assigned %d partitions", len(parts))


async def follow_rule_packs(kafka: str, rt: Runtime, metrics: Metrics) -> None:
    import aiokafka

    from rules.engine import CompiledPack
    from rules.pack import PackError, pack_from_bytes

    metrics.rule_pack_version.set(rt.engine.rules.version)
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=kafka, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    tp = aiokafka.TopicPartition(c.RULE_PACKS, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    # catch up first and put only the newest valid pack live: replaying history (at start, or when this
    # follower restarts after a broker error) must never swap older packs in, even for a moment
    end = (await consumer.end_offsets([tp]))[tp]
    caught_up = end == 0
    newest: Any = None
    try:
        while True:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for rec in batch.get(tp, []):
                if rec.key != b"pack":
                    continue
                try:
                    pack = CompiledPack.compile(pack_from_bytes(rec.value))
                except Exception as exc:  # any refusal (PackError, RecursionError...) keeps the live pack
                    log.error(
                        "rule pack at offset %d rejected, keeping version %d: %s%s",
                        rec.offset,
                        rt.engine.rules.version,
                        "" if isinstance(exc, PackError) else f"{type(exc).__name__}: ",
                        exc,
                    )
                    metrics.dead_letters.labels("invalid_rule_pack").inc()
                    continue
                if caught_up:
                    await _go_live(rt, metrics, pack)
                else:
                    newest = pack
            if not caught_up and await consumer.position(tp) >= end:
                caught_up = True
                live = rt.engine.rules
                if newest is not None and (newest.version, newest.name) != (
                    live.version,
                    getattr(live, "name", None),
                ):
                    await _go_live(rt, metrics, newest)
                newest = None
    finally:
        await consumer.stop()


async def _go_live(rt: Runtime, metrics: Metrics, pack: Any) -> None:
    """Swap the pack in (between batches), then tell the live view which rules are live (bukong:rules)."""
    rt.engine.swap_rules(pack)
    metrics.rule_pack_version.set(pack.version)
    log.warning("rule pack '%s' version %d live (%d rules)", pack.name, pack.version, len(pack.rules))
    fields = ("id", "title", "lane", "severity", "status", "scope")
    rules = {r.rule.id: orjson.dumps({f: getattr(r.rule, f) for f in fields}) for r in pack.rules}
    try:
        pipe = rt.redis.pipeline(transaction=True)
        pipe.delete(RULES_KEY)  # bounded: one field per rule of the live pack
        if rules:
            pipe.hset(RULES_KEY, mapping=rules)
        await pipe.execute()
    except Exception as exc:  # the live view then shows the start-up pack's names: not worth stopping for
        log.warning("could not publish the live rules to Redis (%s); the live view may show stale names", exc)


def _export_gauges(rt: Runtime, app: faust.App, metrics: Metrics) -> None:
    """Once a second: budget use per site, model version, consumer lag per hot partition."""
    policy = rt.engine.policy
    if policy is not None:
        for site, ratio in policy.use_ratios().items():
            metrics.budget_use.labels(site).set(ratio)
    if rt.engine.model is not None:
        metrics.model_version.set(rt.engine.model.version)
    try:
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic not in c.INPUT_TOPICS:
                continue
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            done = rt.applied.get(f"{tp.topic}:{tp.partition}", -1) + 1
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - done))
    except Exception:  # the consumer is not ready during a rebalance: try again next second
        log.debug("lag not available", exc_info=True)


async def start_health_server(host: str, port: int, registry: CollectorRegistry, health: Health) -> Any:
    """Serve /metrics (Prometheus text) and /healthz (200 ok / 503 degraded, JSON); returns the runner."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        ok, body = health.report()
        return web.json_response(body, status=200 if ok else 503)

    webapp = web.Application()
    webapp.router.add_get("/metrics", metrics_page)
    webapp.router.add_get("/healthz", healthz)
    runner = web.AppRunner(webapp, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics and health on http://%s:%d/metrics and /healthz", host, port)
    return runner


def _export_rule_errors(rt: Runtime, metrics: Metrics, state: dict[str, Any]) -> None:
    """Once a second: CompiledPack.errors() (cumulative per rule) as bukong_rule_errors deltas, and at most
    one log line a minute per failing rule."""
    pack = rt.engine.rules
    counts = pack.errors()
    seen = state.get("rule_errors_pack")
    if seen is not pack:  # a new pack counts from zero
        state["rule_errors_pack"] = pack
        state["rule_errors_last"] = {}
    last: dict[str, int] = state["rule_errors_last"]
    logged: dict[str, float] = state.setdefault("rule_errors_logged", {})
    last_errors = pack.last_errors()
    now = time.monotonic()
    for rule, n in counts.items():
        delta = n - last.get(rule, 0)
        if delta <= 0:
            continue
        last[rule] = n
        metrics.rule_errors.labels(rule).inc(delta)
        if now - logged.get(rule, -RULE_ERROR_LOG_EVERY_S) >= RULE_ERROR_LOG_EVERY_S:
            logged[rule] = now
            msg = last_errors.get(rule)
            log.warning(
                "rule %s failed %d times at run time (pack version %s)%s; fix the rule or the facts it reads",
                rule,
                n,
                getattr(pack, "version", "?"),
                f": {msg}" if msg else "",
            )
    if len(logged) > 10_000:  # bound: rules of past packs
        logged.clear()


async def _dead_letter_results(rt: Runtime, recs: list[Record], exc: Exception) -> None:
    from agents.runtime import Out
    from pipeline.io.codec import dead_letter

    now_ms = int(time.time() * 1000)
    outs = []
    for r in recs:
        dl = dead_letter(
            topic=r.topic, partition=r.partition, offset=r.offset, raw=r.value, error=exc, now_ms=now_ms
        )
        rt.metrics.dead_letters.labels(dl["reason"]).inc()
        outs.append(Out(c.DEAD_LETTER, None, orjson.dumps(dl)))
    await rt._deliver(outs)


def _record(msg: Any) -> Record:
    return Record(msg.topic, msg.partition, msg.offset, int(msg.timestamp * 1000), msg.key, msg.value)


class QuietWorker(faust.Worker):
    """Faust's worker without its terminal spinner. To spin on every log record, the spinner sets the root
    logger to DEBUG whatever the log level asked for, so every library's ``log.debug`` built a record that the
    handler then dropped: aiokafka logs each request it sends, ~7% of a worker's busy samples at 1,000
    events/s (py-spy). Without it the root logger keeps the configured level."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, level)


def run_worker(settings: Settings, kafka: str, redis_url: str, metrics_port: int | None = None) -> None:
    """Run one Faust worker until SIGTERM/SIGINT (joins the consumer group named settings.app_id)."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    gc.set_threshold(*GC_THRESHOLDS)  # agents/runtime.py and agents/collector.py say why
    try:  # a policy nobody meant is refused at start-up, not met at the first declaration
        policy_config(settings.policy_overrides)
    except ValueError as e:
        raise SystemExit(f"error: BUKONG_POLICY: {e}") from None
    app = create_app(settings, kafka, redis_url, metrics_port)
    worker = QuietWorker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    asyncio.set_event_loop(worker.loop)
    worker.execute_from_commandline()
