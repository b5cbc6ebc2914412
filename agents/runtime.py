"""The worker's per-batch loop, independent of Faust: decode -> core -> dispatch, with I/O batched.

Delivery protocol (docs/reliability.md): a dispatch command is first reserved in Redis as ``pending``
(with the dispatch partition it is sent to and a hint offset below which it cannot be), in the same Lua
round trip that checks it was not dispatched before; then sent with an explicit partition; then, once the
broker acknowledged it, marked ``sent`` together with the batch's join state and applied input offsets. Input
offsets are committed only after that. A re-decided command that finds ``pending`` left by a worker that
died reads its dispatch partition from the hint to the end and sends it only if it is not there.

Outages of Redis or the broker never crash the worker: every I/O step is retried with bounded backoff
(0.1 s doubling to 5 s) and the batch is not finished, so consumption holds, until it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from agents.changelog import RedisChangelog, kafka_partition
from pipeline.contracts import events as c
from pipeline.contracts.commands import (
    DRIFT_STREAM_KEY,
    LIVE_STREAM_KEY,
    NOTIFY_STREAM_KEY,
    RULE_STATS_KEY,
    STATS_KEY,
    STATUS_PREFIX,
)
from pipeline.contracts.events import ContractError
from pipeline.core.decision.snapshots import Snapshot
from pipeline.core.engine import Decision, Engine, Learned
from pipeline.io.codec import dead_letter, decode_event
from pipeline.io.metrics import Metrics

log = logging.getLogger("bukong.worker")
T = TypeVar("T")

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0
ACK_PATIENCE_S = 2.0  # no ack for this long: the broker counts as unavailable (health), we keep waiting


class BrokerUnavailable(Exception):
    """The producer could not hand a record to the broker (raised by the app's send function)."""


REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    BrokerUnavailable,
    KafkaError,
    OSError,
    asyncio.TimeoutError,
)

# Reserve commands. KEYS: status hashes. ARGV: token, now_ms, ttl_s, then (partition, hint, body) per key.
# A hash with a "command" field is a reserved or sent command; anything else is claimed as new.
# Returns per key: "new" (reserved now, by this token), "sent", or "pending|<partition>|<hint>|<token>".
RESERVE_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  local b = 3 + (i - 1) * 3
  if redis.call('HEXISTS', key, 'command') == 0 then
    redis.call('HSET', key, 'status', 'pending', 'token', ARGV[1], 'partition', ARGV[b + 1],
               'hint', ARGV[b + 2], 'pending_ms', ARGV[2], 'command', ARGV[b + 3])
    redis.call('EXPIRE', key, ARGV[3])
    out[i] = 'new'
  else
    local st = redis.call('HMGET', key, 'status', 'token', 'partition', 'hint')
    if st[1] == 'pending' then
      if st[2] == ARGV[1] then
        out[i] = 'new'
      else
        out[i] = 'pending|' .. (st[3] or '0') .. '|' .. (st[4] or '0') .. '|' .. (st[2] or '')
      end
    else
      out[i] = 'sent'
    end
  end
end
return out
"""

# Take over a pending reservation left by another token (compare-and-set). KEYS[1]; ARGV: old token,
# new token, partition, hint, now_ms, body, ttl_s. Returns 1 if taken over.
CLAIM_LUA = """
local st = redis.call('HMGET', KEYS[1], 'status', 'token')
if st[1] ~= 'pending' or (st[2] or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'partition', ARGV[3], 'hint', ARGV[4], 'pending_ms', ARGV[5],
           'command', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 1
"""

# Mark a command sent once the broker acknowledged it. KEYS[1]; ARGV: sent_ms, partition, offset, track,
# ttl_s. A status that moved on (acknowledged, result) is kept.
SENT_LUA = """
if redis.call('HEXISTS', KEYS[1], 'command') == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'status') == 'pending' then
  redis.call('HSET', KEYS[1], 'status', 'sent')
end
redis.call('HSET', KEYS[1], 'sent_ms', ARGV[1], 'partition', ARGV[2], 'offset', ARGV[3], 'track', ARGV[4])
redis.call('HDEL', KEYS[1], 'token', 'pending_ms')
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# An inspection result updates the status of a command that exists; it never creates a key.
# KEYS: status hashes; ARGV: (outcome, result_ms, found_value_cny) per key. Returns 1/0 per key.
RESULT_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  local b = (i - 1) * 3
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'status', 'result', 'outcome', ARGV[b + 1], 'result_ms', ARGV[b + 2],
               'found_value_cny', ARGV[b + 3])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""


@dataclass(slots=True)
class Record:
    """One input record as the broker delivered it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


# send(topic, key, value, partition) -> the broker's delivery future (resolves to the record's metadata,
# with .partition and .offset, once the broker acknowledged it). Raises BrokerUnavailable if it cannot queue.
SendFn = Callable[[str, bytes | None, bytes, int | None], Awaitable[Any]]


class DispatchLogReader:
    """What the dispatch-commands topic holds: its end offsets, and whether a command id is on a partition."""

    async def end_offsets(self) -> dict[int, int]:  # pragma: no cover - interface
        raise NotImplementedError

    async def find(self, partition: int, start: int, command_id: str) -> int | None:  # pragma: no cover
        raise NotImplementedError


class DispatchLog(DispatchLogReader):
    """Reads dispatch-commands with its own aiokafka consumer (no group); used only to resolve ``pending``."""

    def __init__(self, bootstrap: str, topic: str = c.DISPATCH_COMMANDS, timeout_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout_s = timeout_s
        self._consumer: Any = None

    async def _get(self) -> Any:
        import aiokafka

        if self._consumer is None:
            consumer = aiokafka.AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=20,
                request_timeout_ms=int(self.timeout_s * 1000),
            )
            await asyncio.wait_for(consumer.start(), self.timeout_s)
            self._consumer = consumer
        return self._consumer

    async def _reset(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await asyncio.wait_for(consumer.stop(), 2.0)
            except Exception:
                log.debug("dispatch log reader did not stop cleanly", exc_info=True)

    async def end_offsets(self) -> dict[int, int]:
        from aiokafka import TopicPartition

        try:
            consumer = await self._get()
            parts = consumer.partitions_for_topic(self.topic)
            if not parts:
                await asyncio.wait_for(consumer._client.force_metadata_update(), self.timeout_s)
                parts = consumer.partitions_for_topic(self.topic) or set()
            if not parts:
                raise BrokerUnavailable(f"topic {self.topic} has no partitions in the metadata")
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            ends = await asyncio.wait_for(consumer.end_offsets(tps), self.timeout_s)
            return {tp.partition: int(o) for tp, o in ends.items()}
        except BaseException:
            await self._reset()
            raise

    async def find(self, partition: int, start: int, command_id: str) -> int | None:
        from aiokafka import TopicPartition

        needle = b'"command_id":"' + command_id.encode() + b'"'
        tp = TopicPartition(self.topic, partition)
        try:
            consumer = await self._get()
            consumer.assign([tp])
            end = (await asyncio.wait_for(consumer.end_offsets([tp]), self.timeout_s))[tp]
            if start >= end:
                return None
            consumer.seek(tp, max(0, start))
            while True:
                batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=500), self.timeout_s)
                for rec in batch.get(tp, []):
                    if rec.value is not None and needle in rec.value:
                        return int(rec.offset)
                if await consumer.position(tp) >= end:
                    return None
        except BaseException:
            await self._reset()
            raise

    async def close(self) -> None:
        await self._reset()


@dataclass
class Health:
    """Which dependencies the worker is waiting for right now (for /healthz and the up gauge)."""

    metrics: Metrics | None = None
    waiting: dict[str, int] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    # input partitions with lag that have not moved for a while ("topic:partition"), from agents/flowwatch.py
    stuck_partitions: Callable[[], list[str]] = field(default=lambda: [])

    def down(self, dependency: str, error: str) -> None:
        self.waiting[dependency] = self.waiting.get(dependency, 0) + 1
        self.since.setdefault(dependency, time.monotonic())
        self.last_error[dependency] = error
        if self.metrics is not None:
            self.metrics.dependency_up.labels(dependency).set(0)

    def up(self, dependency: str) -> None:
        n = self.waiting.get(dependency, 0) - 1
        if n > 0:
            self.waiting[dependency] = n
            return
        self.waiting.pop(dependency, None)
        self.since.pop(dependency, None)
        if self.metrics is not None:
            self.metrics.dependency_up.labels(dependency).set(1)

    def report(self) -> tuple[bool, dict[str, Any]]:
        stuck = self.stuck_partitions()
        if not self.waiting and not stuck:
            return True, {"status": "ok"}
        body: dict[str, Any] = {"status": "degraded"}
        if self.waiting:
            now = time.monotonic()
            deps = sorted(self.waiting)
            body.update(
                waiting_for=deps,
                waiting_s={d: round(now - self.since.get(d, now), 1) for d in deps},
                last_error={d: self.last_error.get(d, "") for d in deps},
                action="the worker retries by itself; check that "
                + " and ".join("Redis (REDIS_URL)" if d == "redis" else "Kafka (KAFKA_BROKER)" for d in deps)
                + " is reachable",
            )
        if stuck:
            body["stuck_partitions"] = stuck
            body["stuck_action"] = (
                "these partitions have lag and have not moved: see the worker log (the fetch wait, "
                "BUKONG_FETCH_MAX_WAIT_CAP_MS) and bukong_partition_stuck"
            )
        return False, body


@dataclass
class Out:
    """One record to produce and, once acknowledged, its metadata."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    command: dict[str, Any] | None = None
    offset: int | None = None
    acked: bool = False
    tries: int = 0
    hint: int = 0  # an offset of this partition known acknowledged before the send: the command is after it


@dataclass
class BatchStats:
    events: int = 0
    dead_letters: int = 0
    decisions: int = 0
    commands: int = 0
    duplicates: int = 0
    notifications: int = 0
    recovered: int = 0  # pending commands found already on the log after a crash (not sent again)
    resent: int = 0  # pending commands sent again (not on the log after a crash)
    possible_doubles: int = 0  # dead letters / notifications sent again after a failed ack
    retries: int = 0


@dataclass
class Runtime:
    engine: Engine
    redis: Any  # redis.asyncio.Redis
    send: SendFn
    metrics: Metrics
    live_maxlen: int = 10_000
    dedupe_ttl_s: int = 7 * 24 * 3600
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    stats: BatchStats = field(default_factory=BatchStats)
    watermark_ms: int = 0
    changelog: RedisChangelog | None = None
    applied: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> last offset in our state
    _batch_applied: dict[str, int] = field(default_factory=dict)
    _key_partition: dict[str, int] = field(default_factory=dict)
    # recent GPS points per conveyance, in memory and bounded, written to Redis only for targeted vehicles
    tracks: OrderedDict[str, deque[dict[str, Any]]] = field(default_factory=OrderedDict)
    track_points: int = 60
    track_keys: int = 50_000
    # reads dispatch-commands to resolve a "pending" command left by a worker that died (None: trust Redis)
    dispatch_log: DispatchLogReader | None = None
    dispatch_partitions: int = 0  # 0: as many as the dispatch log reports (or the changelog's partitions)
    token: str = ""  # this worker's reservation token (unique per process)
    health: Health = field(default_factory=Health)
    _hint: dict[int, int] = field(default_factory=dict)  # dispatch partition -> an offset known acknowledged
    _hints_seeded: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if not self.token:
            import uuid

            self.token = uuid.uuid4().hex
        if self.health.metrics is None:
            self.health.metrics = self.metrics
        for dep in ("redis", "broker"):
            self.metrics.dependency_up.labels(dep).set(1)

    # -- retries ---------------------------------------------------------------------------------------

    async def retry(self, dependency: str, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` until it succeeds; on a Redis/broker error wait 0.1 s doubling to 5 s and try again."""
        errors = REDIS_ERRORS if dependency == "redis" else BROKER_ERRORS
        delay = BACKOFF_START_S
        waiting = False
        t0 = time.monotonic()
        try:
            while True:
                try:
                    return await fn()
                except errors as exc:
                    if not waiting:
                        waiting = True
                        self.health.down(dependency, f"{type(exc).__name__}: {exc}")
                        log.warning(
                            "%s unavailable while %s (%s: %s); holding and retrying every <= %.0f s",
                            dependency,
                            what,
                            type(exc).__name__,
                            exc,
                            BACKOFF_MAX_S,
                        )
                    self.metrics.dependency_retries.labels(dependency).inc()
                    self.stats.retries += 1
                    await asyncio.sleep(delay)
                    self.metrics.dependency_wait_seconds.labels(dependency).inc(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
        finally:
            if waiting:
                self.health.up(dependency)
                log.warning("%s back after %.1f s; %s resumed", dependency, time.monotonic() - t0, what)

    async def _wait_acks(self, futs: list[tuple[Out, Any]]) -> list[tuple[Out, BaseException]]:
        """Wait for every delivery future; a broker that stays silent marks the worker degraded meanwhile."""
        pending: dict[Any, Out] = {asyncio.ensure_future(f): o for o, f in futs}
        failed: list[tuple[Out, BaseException]] = []
        waiting = False
        try:
            while pending:
                done, _ = await asyncio.wait(list(pending), timeout=ACK_PATIENCE_S)
                for f in done:
                    o = pending.pop(f)
                    if f.cancelled():
                        failed.append((o, BrokerUnavailable("delivery cancelled")))
                        continue
                    exc = f.exception()
                    if exc is not None:
                        failed.append((o, exc))
                        continue
                    md = f.result()
                    o.acked = True
                    o.offset = getattr(md, "offset", None)
                    part = getattr(md, "partition", None)
                    if part is not None:
                        o.partition = part
                if pending:
                    if not waiting:
                        waiting = True
                        self.health.down("broker", f"no acknowledgement for {ACK_PATIENCE_S:.0f} s")
                        log.warning("broker has not acknowledged %d records yet; waiting", len(pending))
                    self.metrics.dependency_wait_seconds.labels("broker").inc(ACK_PATIENCE_S)
        finally:
            if waiting:
                self.health.up("broker")
        return failed

    async def _deliver(self, outs: list[Out]) -> None:
        """Produce every record and wait for the broker's ack of each; resend what failed (a command only
        after checking the log: its ack may have been lost although the broker has it)."""
        todo = [o for o in outs if not o.acked]
        delay = BACKOFF_START_S
        waiting = False
        try:
            while todo:
                futs: list[tuple[Out, Any]] = []
                failed: list[tuple[Out, BaseException]] = []
                for o in todo:
                    o.tries += 1
                    try:
                        futs.append((o, await self.send(o.topic, o.key, o.value, o.partition)))
                    except BROKER_ERRORS as exc:
                        failed.append((o, exc))
                failed += await self._wait_acks(futs)
                if not failed:
                    return
                first = failed[0][1]
                if not waiting:
                    waiting = True
                    self.health.down("broker", f"{type(first).__name__}: {first}")
                log.warning(
                    "broker refused %d records (%s: %s); retrying in %.1f s",
                    len(failed),
                    type(first).__name__,
                    first,
                    delay,
                )
                self.metrics.dependency_retries.labels("broker").inc()
                self.stats.retries += 1
                await asyncio.sleep(delay)
                self.metrics.dependency_wait_seconds.labels("broker").inc(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                todo = []
                for o, _ in failed:
                    if o.command is not None and o.partition is not None and self.dispatch_log is not None:
                        found = await self._find(o.partition, o.hint, o.command["command_id"])
                        if found is not None:
                            o.acked, o.offset = True, found
                            continue
                    elif o.command is None:
                        self.stats.possible_doubles += 1  # a lost ack may mean the broker has it already
                    self.metrics.resent_records.labels(o.topic).inc()
                    todo.append(o)
        finally:
            if waiting:
                self.health.up("broker")

    async def _find(self, partition: int, hint: int, command_id: str) -> int | None:
        log_ = self.dispatch_log
        assert log_ is not None
        return await self.retry(
            "broker",
            f"looking for {command_id} on {c.DISPATCH_COMMANDS}[{partition}]",
            lambda: log_.find(partition, hint, command_id),
        )

    async def prepare(self) -> None:
        """At start-up (partition assignment): read the dispatch log's end offsets, the first hints."""
        await self._ensure_hints()

    async def _ensure_hints(self) -> None:
        if self._hints_seeded:
            return
        if self.dispatch_log is not None:
            dl = self.dispatch_log
            ends = await self.retry("broker", "reading the dispatch log's end offsets", dl.end_offsets)
            for p, end in ends.items():
                self._hint[p] = max(self._hint.get(p, 0), end)
            if ends:  # the topic as it is (it may have been created with another partition count)
                self.dispatch_partitions = len(ends)
        if not self.dispatch_partitions:
            self.dispatch_partitions = self.changelog.partitions if self.changelog is not None else 1
        self._hints_seeded = True

    # -- state -----------------------------------------------------------------------------------------

    async def restore(self, partitions: set[int], topics: tuple[str, ...]) -> int:
        """Load the state of newly assigned partitions from the changelog; returns keys restored."""
        if self.changelog is None or not partitions:
            return 0
        cl = self.changelog
        async with self._lock:
            state, applied = await self.retry(
                "redis", "restoring partition state", lambda: cl.load(partitions, topics)
            )
            joiner: Any = self.engine.joiner
            if state and hasattr(joiner, "restore_keys"):
                joiner.restore_keys(state)
            self.applied.update(applied)
        return len(state)

    def _dead(self, rec: Record, exc: Exception, now_ms: int) -> dict[str, Any]:
        """The dead-letter record of one input record, counted by reason."""
        dl = dead_letter(
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            raw=rec.value,
            error=exc,
            now_ms=now_ms,
        )
        self.metrics.dead_letters.labels(dl["reason"]).inc()
        return dl

    def _remember_point(self, ev: dict[str, Any]) -> None:
        key = ev["conveyance_id"]
        ring = self.tracks.get(key)
        if ring is None:
            ring = self.tracks[key] = deque(maxlen=self.track_points)
            if len(self.tracks) > self.track_keys:
                self.tracks.popitem(last=False)
        ring.append(ev)

    def _partition_of(self, key: str) -> int:
        p = self._key_partition.get(key)
        if p is None:
            assert self.changelog is not None
            p = kafka_partition(key.encode(), self.changelog.partitions)
        return p

    async def process(self, records: Sequence[Record]) -> None:
        """Process one batch; returns once every output is acknowledged and the state saved (an outage of
        Redis or the broker makes it wait and retry, never raise)."""
        async with self._lock:
            await self._process(records)

    async def _process(self, records: Sequence[Record]) -> None:
        m = self.metrics
        now_ms = self.clock_ms()
        decisions: list[Decision] = []
        dead: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        applied = self.applied
        batch_applied = self._batch_applied
        per_topic: dict[str, int] = {}
        for rec in records:
            per_topic[rec.topic] = per_topic.get(rec.topic, 0) + 1  # counted once per batch below
            tp = f"{rec.topic}:{rec.partition}"
            if applied and rec.offset <= applied.get(tp, -1):
                continue  # already in the state restored from the changelog (redelivered after a failover)
            batch_applied[tp] = rec.offset
            if rec.key is not None:
                self._key_partition[rec.key.decode("utf-8", "replace")] = rec.partition
            try:
                ev = decode_event(rec.topic, rec.value, now_ms)
            except ContractError as exc:
                dead.append(self._dead(rec, exc, now_ms))
                continue
            try:
                ts = ev["ts_ms"]
                if ts > self.watermark_ms:
                    self.watermark_ms = ts
                if rec.topic == c.TRACKS:
                    self._remember_point(ev)
                trigger = {"partition": rec.partition, "offset": rec.offset, "produced_ms": rec.timestamp_ms}
                decisions += self.engine.process(rec.topic, ev, trigger)
            except Exception as exc:  # a bug in the core must not stop the worker: dead-letter and go on
                log.exception("core failed on %s[%s]@%s", rec.topic, rec.partition, rec.offset)
                dead.append(self._dead(rec, exc, now_ms))
        joiner: Any = self.engine.joiner
        if hasattr(joiner, "drain_late"):
            # too late to fold in: dead-lettered, never silently dropped
            for topic, ev in joiner.drain_late():
                err = ContractError(
                    "late_event",
                    f"{topic} record at ts_ms={ev['ts_ms']} is older than the "
                    "allowed lateness of its conveyance's stream",
                )
                dead.append(
                    dead_letter(
                        topic=topic,
                        partition=None,
                        offset=None,
                        raw=orjson.dumps(ev),
                        error=err,
                        now_ms=now_ms,
                    )
                )
                m.dead_letters.labels("late_event").inc()
        for topic, n in per_topic.items():
            m.events_in.labels(topic).inc(n)
        if records:
            m.scoring_seconds.observe((time.perf_counter() - t0) / len(records))
            m.batch_size.observe(len(records))
        self.stats.events += len(records)
        await self._emit(decisions, dead, events=len(records))

    async def tick(self, idle_advance_ms: int = 0) -> None:
        """Deadline scoring: called by a timer; moves event time on when the input is idle."""
        async with self._lock:
            wm = self.watermark_ms + idle_advance_ms
            if wm <= 0:
                return
            decisions = self.engine.advance(wm)
            if decisions:
                await self._emit(decisions, [])

    async def emit(self, decisions: list[Decision], dead: list[dict[str, Any]], events: int = 0) -> None:
        async with self._lock:
            await self._emit(decisions, dead, events)

    async def _emit(self, decisions: list[Decision], dead: list[dict[str, Any]], events: int = 0) -> None:
        m = self.metrics
        outs = [Out(c.DEAD_LETTER, None, orjson.dumps(dl)) for dl in dead]
        self.stats.dead_letters += len(dead)
        commands = []
        notes = []
        rule_counts: dict[str, int] = {}
        # counted per batch, then one inc per label set: a labels() lookup per event costs more than the rest
        by_lane: dict[str, int] = {}
        by_hit: dict[tuple[str, str], int] = {}
        by_rule: dict[tuple[str, str, str], int] = {}
        for d in decisions:
            by_lane[d.lane] = by_lane.get(d.lane, 0) + 1
            port = d.decl["port"]
            for h in d.hits:
                hk = (h.rule_id, h.lane)
                by_hit[hk] = by_hit.get(hk, 0) + 1
                rk = (h.rule_id, port, "active")
                by_rule[rk] = by_rule.get(rk, 0) + 1
                k = f"{h.rule_id}|{port}|hits"
                rule_counts[k] = rule_counts.get(k, 0) + 1
                if d.dispatch:
                    k = f"{h.rule_id}|{port}|dispatched"
                    rule_counts[k] = rule_counts.get(k, 0) + 1
            for h in d.shadow_hits:
                rk = (h.rule_id, port, "shadow")
                by_rule[rk] = by_rule.get(rk, 0) + 1
                k = f"{h.rule_id}|{port}|shadow_hits"
                rule_counts[k] = rule_counts.get(k, 0) + 1
            if d.command is not None:
                commands.append(d.command)
            if d.notification is not None:
                notes.append(d.notification)
        for lane, count in by_lane.items():
            m.decisions.labels(lane).inc(count)
        for (rule_id, lane), count in by_hit.items():
            m.hits.labels(rule_id, lane).inc(count)
        for labels, count in by_rule.items():
            m.rule_hits.labels(*labels).inc(count)
        self.stats.decisions += len(decisions)
        fresh, recovered = await self._reserve(commands) if commands else ([], [])
        now_ms = self.clock_ms()
        for o in fresh:
            cmd = o.command
            assert cmd is not None
            m.commands.labels(cmd["site"], cmd["lane"]).inc()
            produced = cmd.get("trigger", {}).get("produced_ms")
            if produced:
                m.e2e_latency_seconds.observe(max(0.0, (now_ms - produced) / 1000))
        outs += fresh
        for n in notes:
            outs.append(Out(c.NOTIFICATIONS, n["conveyance_id"].encode(), orjson.dumps(n)))
            m.notifications.labels(n["kind"]).inc()
        # every record acknowledged before Redis says "sent", before the state is saved, before offsets commit
        await self._deliver(outs)
        for o in fresh:
            if (
                o.partition is not None
                and o.offset is not None
                and o.offset > self._hint.get(o.partition, -1)
            ):
                self._hint[o.partition] = o.offset
        self.stats.commands += len(fresh)
        self.stats.notifications += len(notes)
        dirty: dict[str, bytes | None] = {}
        joiner: Any = self.engine.joiner
        if self.changelog is not None and hasattr(joiner, "drain_dirty"):
            dirty = joiner.drain_dirty()
        if not (events or decisions or dirty or recovered):
            return
        sent = fresh + recovered
        batch_applied = self._batch_applied
        counts = {
            "events": events,
            "dead_letters": len(dead),
            "decisions": len(decisions),
            "hits": sum(1 for d in decisions if d.hits),
            "commands": len(sent),
        }
        track_of = {
            o.command["command_id"]: orjson.dumps(list(self.tracks.get(o.command["conveyance_id"]) or []))
            for o in sent
            if o.command is not None
        }

        def write() -> Awaitable[Any]:
            pipe = self.redis.pipeline(transaction=self.changelog is not None)
            if self.changelog is not None:
                self.changelog.stage(pipe, dirty, batch_applied, self._partition_of)
            for k, v in counts.items():
                if v:
                    pipe.hincrby(STATS_KEY, k, v)
            for k, v in rule_counts.items():
                pipe.hincrby(RULE_STATS_KEY, k, v)
            for o in sent:
                assert o.command is not None
                cid = o.command["command_id"]
                pipe.eval(
                    SENT_LUA,
                    1,
                    STATUS_PREFIX + cid,
                    now_ms,
                    o.partition if o.partition is not None else -1,
                    o.offset if o.offset is not None else -1,
                    track_of[cid],
                    self.dedupe_ttl_s,
                )
                pipe.xadd(LIVE_STREAM_KEY, {"c": o.value}, maxlen=self.live_maxlen, approximate=True)
            for n in notes:
                pipe.xadd(
                    NOTIFY_STREAM_KEY, {"n": orjson.dumps(n)}, maxlen=self.live_maxlen, approximate=True
                )
            return pipe.execute()

        await self.retry("redis", "saving the batch (state, offsets, command status)", write)
        self.applied.update(batch_applied)
        self._batch_applied = {}
        self._key_partition.clear()

    async def _reserve(self, commands: list[dict[str, Any]]) -> tuple[list[Out], list[Out]]:
        """Reserve commands as ``pending`` unless already dispatched (one Lua round trip). Returns the
        commands to send now, and those a dead worker left pending that are on the log already."""
        seen: set[str] = set()
        unique = []
        for cmd in commands:
            if cmd["command_id"] not in seen:
                seen.add(cmd["command_id"])
                unique.append(cmd)
        await self._ensure_hints()
        now_ms = self.clock_ms()
        outs: list[Out] = []
        keys: list[str] = []
        args: list[Any] = [self.token, now_ms, self.dedupe_ttl_s]
        for cmd in unique:
            cmd["dispatched_ms"] = now_ms
            key = cmd["conveyance_id"].encode()
            p = kafka_partition(key, self.dispatch_partitions)
            hint = self._hint.get(p, 0)
            body = orjson.dumps(cmd)
            outs.append(Out(c.DISPATCH_COMMANDS, key, body, p, command=cmd, hint=hint))
            keys.append(STATUS_PREFIX + cmd["command_id"])
            args += [p, hint, body]
        res = await self.retry(
            "redis", "reserving commands", lambda: self.redis.eval(RESERVE_LUA, len(keys), *keys, *args)
        )
        fresh: list[Out] = []
        recovered: list[Out] = []
        dup = len(commands) - len(unique)
        for o, r in zip(outs, res, strict=True):
            verdict = r.decode() if isinstance(r, bytes) else str(r)
            if verdict == "new":
                fresh.append(o)
                continue
            if verdict == "sent":
                dup += 1
                continue
            # pending: reserved by a worker (or an earlier life of this one) that did not confirm the send
            assert o.command is not None
            cid = o.command["command_id"]
            _, part_s, hint_s, token = verdict.split("|", 3)
            part, hint = int(part_s), int(hint_s)
            found = None
            if self.dispatch_log is not None:
                found = await self._find(part, hint, cid)
            if found is not None:
                o.partition, o.offset, o.acked = part, found, True
                recovered.append(o)
                self.stats.recovered += 1
                log.warning(
                    "command %s was on %s[%s] already: not sent again", cid, c.DISPATCH_COMMANDS, part
                )
                continue
            key = STATUS_PREFIX + cid
            claimed = await self.retry(
                "redis",
                "claiming a pending command",
                lambda key=key, token=token, o=o: self.redis.eval(  # type: ignore[misc]
                    CLAIM_LUA,
                    1,
                    key,
                    token,
                    self.token,
                    o.partition,
                    o.hint,
                    now_ms,
                    o.value,
                    self.dedupe_ttl_s,
                ),
            )
            if int(claimed):
                fresh.append(o)
                self.stats.resent += 1
                self.metrics.resent_records.labels(c.DISPATCH_COMMANDS).inc()
                log.warning("command %s was reserved but never reached the broker: sending it now", cid)
            else:
                dup += 1  # another worker took it over in between
        if dup:
            self.metrics.duplicates_suppressed.inc(dup)
            self.stats.duplicates += dup
        return fresh, recovered

    async def on_results(self, records: Sequence[Record]) -> list[Learned]:
        """Inspection results: learn from the scoring-time snapshot, grade rules, update command status."""
        async with self._lock:
            return await self._on_results(records)

    async def _on_results(self, records: Sequence[Record]) -> list[Learned]:
        m = self.metrics
        now_ms = self.clock_ms()
        dead: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for rec in records:
            m.events_in.labels(rec.topic).inc()
            try:
                results.append(decode_event(rec.topic, rec.value, now_ms))
            except ContractError as exc:
                dead.append(self._dead(rec, exc, now_ms))
        missing = [
            r
            for r in results
            if self.engine.snapshots is None or self.engine.snapshots.get(r["decl_id"]) is None
        ]
        stored: dict[str, Any] = {}
        if missing:  # scored by another worker or before a restart: the command holds the facts it used

            def lookup() -> Awaitable[Any]:
                pipe = self.redis.pipeline(transaction=False)
                for r in missing:
                    pipe.hget(STATUS_PREFIX + r["command_id"], "command")
                return pipe.execute()

            bodies = await self.retry("redis", "reading commands for results", lookup)
            for r, body in zip(missing, bodies, strict=True):
                if body:
                    cmd = orjson.loads(body)
                    stored[r["decl_id"]] = Snapshot(
                        cmd["decl_id"],
                        cmd["decided_ts_ms"],
                        cmd["facts"],
                        {
                            "selection": cmd["selection"],
                            "selection_prob": cmd["selection_prob"],
                            "rule_ids": cmd["rule_ids"],
                            "port": cmd["port"],
                            "command_id": cmd["command_id"],
                        },
                    )
        learned: list[Learned] = []
        incr: dict[str, int] = {}
        drifts: list[bytes] = []
        for r in results:
            m.inspection_results.labels(r["outcome"]).inc()
            out = self.engine.on_result(r, stored.get(r["decl_id"]))
            if out is None:
                continue
            learned.append(out)
            if out.learned:
                m.model_learned.inc()
            if out.outcome == "violation":
                for rule in out.rule_ids:
                    m.rule_confirmed.labels(rule, out.port).inc()
                    k = f"{rule}|{out.port}|confirmed"
                    incr[k] = incr.get(k, 0) + 1
            for rule in out.rule_ids:
                k = f"{rule}|{out.port}|results"
                incr[k] = incr.get(k, 0) + 1
            if out.drift is not None:
                m.drift_events.inc()
                drifts.append(orjson.dumps(out.drift.as_dict()))
        if self.engine.model is not None:
            m.model_version.set(self.engine.model.version)
        keys = [STATUS_PREFIX + r["command_id"] for r in results]
        args: list[Any] = []
        for r in results:
            args += [r["outcome"], now_ms, r.get("found_value_cny") or 0]

        def write() -> Awaitable[Any]:
            pipe = self.redis.pipeline(transaction=False)
            if keys:
                pipe.eval(RESULT_LUA, len(keys), *keys, *args)
            for k, v in incr.items():
                pipe.hincrby(RULE_STATS_KEY, k, v)
            for d in drifts:
                pipe.xadd(DRIFT_STREAM_KEY, {"d": d}, maxlen=1000, approximate=True)
            return pipe.execute()

        if keys or incr or drifts:
            res = await self.retry("redis", "saving inspection results", write)
            if keys:
                unknown = [r["command_id"] for r, ok in zip(results, res[0], strict=True) if not int(ok)]
                if unknown:
                    m.results_unknown_command.inc(len(unknown))
                    log.warning(
                        "%d inspection results name commands that do not exist (first: %s); status not "
                        "recorded. Results must reference a dispatched command id",
                        len(unknown),
                        unknown[0],
                    )
        if dead:
            await self._deliver([Out(c.DEAD_LETTER, None, orjson.dumps(dl)) for dl in dead])
        return learned
