"""The worker's per-batch loop, independent of Faust: decode -> core -> dispatch, with I/O batched.

One batch of input records costs at most two Redis round trips (a dedupe check when it produced commands,
and one pipelined write) and one wait for the producer's acks, whatever its size.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.changelog import RedisChangelog, kafka_partition
from pipeline import contracts as c
from pipeline.codec import dead_letter, decode_event
from pipeline.commands import (
    DRIFT_STREAM_KEY,
    LIVE_STREAM_KEY,
    NOTIFY_STREAM_KEY,
    RULE_STATS_KEY,
    STATS_KEY,
    STATUS_PREFIX,
)
from pipeline.contracts import ContractError
from pipeline.core import Decision, Engine, Learned
from pipeline.decision.snapshots import Snapshot
from pipeline.metrics import Metrics

log = logging.getLogger("bukong.worker")


@dataclass(slots=True)
class Record:
    """One input record as the broker delivered it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


# send(topic, key, value) -> awaitable that resolves when the broker acknowledged
SendFn = Callable[[str, bytes | None, bytes], Awaitable[Any]]


@dataclass
class BatchStats:
    events: int = 0
    dead_letters: int = 0
    decisions: int = 0
    commands: int = 0
    duplicates: int = 0
    notifications: int = 0


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

    async def restore(self, partitions: set[int], topics: tuple[str, ...]) -> int:
        """Load the state of newly assigned partitions from the changelog; returns keys restored."""
        if self.changelog is None or not partitions:
            return 0
        state, applied = await self.changelog.load(partitions, topics)
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
        """Process one batch. Raises only on broker/Redis failure (the batch is then redelivered)."""
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
        await self.emit(decisions, dead, events=len(records))

    async def tick(self, idle_advance_ms: int = 0) -> None:
        """Deadline scoring: called by a timer; moves event time on when the input is idle."""
        wm = self.watermark_ms + idle_advance_ms
        if wm <= 0:
            return
        decisions = self.engine.advance(wm)
        if decisions:
            await self.emit(decisions, [])

    async def emit(self, decisions: list[Decision], dead: list[dict[str, Any]], events: int = 0) -> None:
        m = self.metrics
        pending: list[Awaitable[Any]] = []
        for dl in dead:
            pending.append(self.send(c.DEAD_LETTER, None, orjson.dumps(dl)))
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
        fresh = await self._not_sent_yet(commands) if commands else []
        now_ms = self.clock_ms()
        for cmd in fresh:
            cmd["dispatched_ms"] = now_ms
            pending.append(self.send(c.DISPATCH_COMMANDS, cmd["conveyance_id"].encode(), orjson.dumps(cmd)))
            m.commands.labels(cmd["site"], cmd["lane"]).inc()
            produced = cmd.get("trigger", {}).get("produced_ms")
            if produced:
                m.e2e_latency_seconds.observe(max(0.0, (now_ms - produced) / 1000))
        for n in notes:
            pending.append(self.send(c.NOTIFICATIONS, n["conveyance_id"].encode(), orjson.dumps(n)))
            m.notifications.labels(n["kind"]).inc()
        for p in pending:
            await p  # every record acknowledged before Redis says "sent" and before offsets commit
        self.stats.commands += len(fresh)
        self.stats.notifications += len(notes)
        dirty: dict[str, bytes | None] = {}
        joiner: Any = self.engine.joiner
        if self.changelog is not None and hasattr(joiner, "drain_dirty"):
            dirty = joiner.drain_dirty()
        if events or decisions or dirty:
            pipe = self.redis.pipeline(transaction=self.changelog is not None)
            if self.changelog is not None:
                self.changelog.stage(pipe, dirty, self._batch_applied, self._partition_of)
                self.applied.update(self._batch_applied)
                self._batch_applied = {}
                self._key_partition.clear()
            counts = {
                "events": events,
                "dead_letters": len(dead),
                "decisions": len(decisions),
                "hits": sum(1 for d in decisions if d.hits),
                "commands": len(fresh),
            }
            for k, v in counts.items():
                if v:
                    pipe.hincrby(STATS_KEY, k, v)
            for k, v in rule_counts.items():
                pipe.hincrby(RULE_STATS_KEY, k, v)
            for cmd in fresh:
                # one hash per command: dedupe mark, status, the command and the recent track
                cid = cmd["command_id"]
                body = orjson.dumps(cmd)
                ring = self.tracks.get(cmd["conveyance_id"])
                status = {
                    "status": "sent",
                    "sent_ms": now_ms,
                    "command": body,
                    "track": orjson.dumps(list(ring) if ring else []),
                }
                pipe.hset(STATUS_PREFIX + cid, mapping=status)
                pipe.expire(STATUS_PREFIX + cid, self.dedupe_ttl_s)
                pipe.xadd(LIVE_STREAM_KEY, {"c": body}, maxlen=self.live_maxlen, approximate=True)
            for n in notes:
                pipe.xadd(
                    NOTIFY_STREAM_KEY, {"n": orjson.dumps(n)}, maxlen=self.live_maxlen, approximate=True
                )
            await pipe.execute()

    async def on_results(self, records: Sequence[Record]) -> list[Learned]:
        """Inspection results: learn from the scoring-time snapshot, grade rules, update command status."""
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
            pipe = self.redis.pipeline(transaction=False)
            for r in missing:
                pipe.hget(STATUS_PREFIX + r["command_id"], "command")
            for r, body in zip(missing, await pipe.execute(), strict=True):
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
        pipe = self.redis.pipeline(transaction=False)
        for r in results:
            m.inspection_results.labels(r["outcome"]).inc()
            out = self.engine.on_result(r, stored.get(r["decl_id"]))
            pipe.hset(
                STATUS_PREFIX + r["command_id"],
                mapping={
                    "status": "result",
                    "outcome": r["outcome"],
                    "result_ms": now_ms,
                    "found_value_cny": r.get("found_value_cny") or 0,
                },
            )
            if out is None:
                continue
            learned.append(out)
            if out.learned:
                m.model_learned.inc()
            if out.outcome == "violation":
                for rule in out.rule_ids:
                    m.rule_confirmed.labels(rule, out.port).inc()
                    pipe.hincrby(RULE_STATS_KEY, f"{rule}|{out.port}|confirmed", 1)
            for rule in out.rule_ids:
                pipe.hincrby(RULE_STATS_KEY, f"{rule}|{out.port}|results", 1)
            if out.drift is not None:
                m.drift_events.inc()
                pipe.xadd(
                    DRIFT_STREAM_KEY, {"d": orjson.dumps(out.drift.as_dict())}, maxlen=1000, approximate=True
                )
        if self.engine.model is not None:
            m.model_version.set(self.engine.model.version)
        await pipe.execute()
        if dead:
            for p in [self.send(c.DEAD_LETTER, None, orjson.dumps(dl)) for dl in dead]:
                await p
        return learned

    async def _not_sent_yet(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop commands already dispatched (redelivery, replay, a restarted worker). One round trip."""
        seen: set[str] = set()
        unique = []
        for cmd in commands:
            if cmd["command_id"] not in seen:
                seen.add(cmd["command_id"])
                unique.append(cmd)
        pipe = self.redis.pipeline(transaction=False)
        for cmd in unique:
            pipe.exists(STATUS_PREFIX + cmd["command_id"])
        exists = await pipe.execute()
        fresh = [cmd for cmd, e in zip(unique, exists, strict=True) if not e]
        dup = len(commands) - len(fresh)
        if dup:
            self.metrics.duplicates_suppressed.inc(dup)
            self.stats.duplicates += dup
        return fresh
