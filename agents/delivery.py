"""The worker's delivery primitives: input records, outputs, the Redis protocol's Lua scripts, the dispatch
log reader that resolves a ``pending`` command, and the worker's health (see agents/runtime.py for the loop
and docs/reliability.md for the protocol)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from pipeline.contracts import events as c
from pipeline.contracts.events import ContractError
from pipeline.core.ports import Joiner
from pipeline.io.codec import dead_letter
from pipeline.io.metrics import Metrics

log = logging.getLogger("bukong.worker")

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

# A batch's own writes after the broker's acks, as one command of its MULTI/EXEC (instead of a command per
# counter, per sent command and per stream entry). KEYS: stats hash, rule-stats hash, live stream,
# notification stream, then the status hash of each sent command. ARGV: sent_ms, ttl_s, stream maxlen; the
# number of stats counters, then (field, increment) each; the same for the rule counters; then per sent
# command (partition, offset, track, body); then the notification bodies. Each status is marked as
# SENT_LUA marks it, and every sent command and notification is added to its stream, in the same order as
# the commands this script replaces.
SAVE_LUA = """
local now, ttl, maxlen = ARGV[1], ARGV[2], ARGV[3]
local i = 4
for h = 1, 2 do
  local n = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, n do
    redis.call('HINCRBY', KEYS[h], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
end
for k = 5, #KEYS do
  local key = KEYS[k]
  if redis.call('HEXISTS', key, 'command') == 1 then
    if redis.call('HGET', key, 'status') == 'pending' then
      redis.call('HSET', key, 'status', 'sent')
    end
    redis.call('HSET', key, 'sent_ms', now, 'partition', ARGV[i], 'offset', ARGV[i + 1], 'track', ARGV[i + 2])
    redis.call('HDEL', key, 'token', 'pending_ms')
    redis.call('EXPIRE', key, ttl)
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'c', ARGV[i + 3])
  i = i + 4
end
while i <= #ARGV do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', 'n', ARGV[i])
  i = i + 1
end
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

# Results and confirmed violations per intelligence-lead source, bounded. KEYS: the lead-stats hash. ARGV:
# max sources, the name further sources count under, then (source, results, confirmed) per source. Every
# source has both fields, so the hash holds at most 2 * max fields plus the two of the overflow name.
LEAD_STATS_LUA = """
local max, other = tonumber(ARGV[1]), ARGV[2]
for i = 3, #ARGV, 3 do
  local src = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], src .. '|results') == 0 and redis.call('HLEN', KEYS[1]) >= 2 * max then
    src = other
  end
  redis.call('HINCRBY', KEYS[1], src .. '|results', ARGV[i + 1])
  redis.call('HINCRBY', KEYS[1], src .. '|confirmed', ARGV[i + 2])
end
return 1
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


def late_dead_letters(joiner: Joiner, metrics: Metrics, now_ms: int) -> list[dict[str, Any]]:
    """Events the joiner found too late to fold in: dead-lettered, never silently dropped."""
    dead = []
    for topic, ev in joiner.drain_late():
        err = ContractError(
            "late_event",
            f"{topic} record at ts_ms={ev['ts_ms']} is older than the "
            "allowed lateness of its conveyance's stream",
        )
        dead.append(
            dead_letter(
                topic=topic, partition=None, offset=None, raw=orjson.dumps(ev), error=err, now_ms=now_ms
            )
        )
        metrics.dead_letters.labels("late_event").inc()
    return dead
