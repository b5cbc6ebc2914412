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

from agents.changelog import RedisChangelog, kafka_partition
from agents.delivery import (  # re-exported: the app and the tests import them from here
    ACK_PATIENCE_S,
    BACKOFF_MAX_S,
    BACKOFF_START_S,
    BROKER_ERRORS,
    CLAIM_LUA,
    REDIS_ERRORS,
    RESERVE_LUA,
    RESULT_LUA,
    SAVE_LUA,
    SENT_LUA,
    BatchStats,
    BrokerUnavailable,
    DispatchLog,
    DispatchLogReader,
    Health,
    Out,
    Record,
    SendFn,
    late_dead_letters,
)
from agents.ingest import Decoded, decode, ingest
from agents.inputclock import InputClock
from agents.results import on_results, tally
from agents.stages import StageClock
from pipeline.contracts import events as c
from pipeline.contracts.commands import (
    LIVE_STREAM_KEY,
    NOTIFY_STREAM_KEY,
    RULE_STATS_KEY,
    STATS_KEY,
    STATUS_PREFIX,
)
from pipeline.core.engine import Decision, Engine, Learned
from pipeline.io.codec import dead_letter
from pipeline.io.metrics import Metrics

__all__ = [  # the delivery primitives, re-exported for the app and the tests
    "ACK_PATIENCE_S",
    "BROKER_ERRORS",
    "REDIS_ERRORS",
    "RESULT_LUA",
    "SENT_LUA",
    "BatchStats",
    "BrokerUnavailable",
    "DispatchLog",
    "Health",
    "Out",
    "Record",
    "Runtime",
    "SendFn",
]
log = logging.getLogger("bukong.worker")
T = TypeVar("T")
# the collector's thresholds in the worker (run_worker): the join state is many small long-lived objects, and
# full collections of them stall the loop for 100s of ms (agents/collector.py freezes them besides)
GC_THRESHOLDS = (50_000, 50, 1000)


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
    # how far every input partition has been read (agents/inputclock.py); None: not aligned (in-process)
    input_clock: InputClock | None = None
    _hint: dict[int, int] = field(default_factory=dict)  # dispatch partition -> an offset known acknowledged
    _hints_seeded: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stages: StageClock = field(init=False)

    def __post_init__(self) -> None:
        self.stages = StageClock(self.metrics)
        if not self.token:
            import uuid

            self.token = uuid.uuid4().hex
        if self.health.metrics is None:
            self.health.metrics = self.metrics
        for dep in ("redis", "broker"):
            self.metrics.dependency_up.labels(dep).set(1)

    # -- retries ---------------------------------------------------------------------------------------

    async def retry(
        self, dependency: str, what: str, fn: Callable[[], Awaitable[T]], stage: str = "redis"
    ) -> T:
        """Run ``fn`` until it succeeds; on a Redis/broker error wait 0.1 s doubling to 5 s and try again.
        The time of a Redis call, waits included, goes to ``stage`` of the per-stage timings."""
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
            if dependency == "redis":
                self.stages.add(stage, time.monotonic() - t0)
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
                t_acks = time.perf_counter()
                failed += await self._wait_acks(futs)
                self.stages.add("acks", time.perf_counter() - t_acks)
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
            if state:
                self.engine.joiner.restore_keys(state)
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

    async def process(self, records: Sequence[Record], fetched_at: float | None = None) -> None:
        """Process one batch; returns once every output is acknowledged and the state saved (an outage of
        Redis or the broker makes it wait and retry, never raise). ``fetched_at`` (time.monotonic()) is
        when the batch was fetched: the start of the worker-internal latency of the commands it decides."""
        async with self._lock:
            stages = self.stages
            stages.reset()
            stages.instrument(self.engine)
            t0 = time.perf_counter()
            await self._process(records, fetched_at)
            if self.input_clock is not None:  # the batch may have brought the partitions behind up to date
                await self.input_clock.after_batch(self, fetched_at)
            stages.observe(len(records), time.perf_counter() - t0)

    async def _process(self, records: Sequence[Record], fetched_at: float | None) -> None:
        m = self.metrics
        now_ms = self.clock_ms()
        clock = time.perf_counter
        if self.input_clock is not None:  # before the batch: which declarations wait, which are released
            self.input_clock.apply(self.engine.joiner, self.watermark_ms, self.applied)
        decoded, decode_s = await self._decode_while_reading(records, now_ms)
        t0 = clock()
        decisions, dead, per_topic = ingest(self, records, now_ms, decoded)
        if self.input_clock is not None:
            decisions += self.input_clock.release(self.engine)
        dead += late_dead_letters(self.engine.joiner, self.metrics, now_ms)
        self.stages.add("decode", decode_s)
        for topic, n in per_topic.items():
            m.events_in.labels(topic).inc(n)
        if records:
            m.scoring_seconds.observe((clock() - t0) / len(records))
            m.batch_size.observe(len(records))
        self.stats.events += len(records)
        await self._emit(decisions, dead, events=len(records), fetched_at=fetched_at)

    async def _decode_while_reading(
        self, records: Sequence[Record], now_ms: int
    ) -> tuple[list[Decoded], float]:
        """Decode the batch while its read of the shared state is on its way to Redis (the read goes out
        first; its reply is taken once the decode is done). Returns the decoded records and the decode's
        seconds; the ``shared`` stage keeps only what the decode did not overlap."""
        read = None
        if self.changelog is not None and self.changelog.shared is not None:
            read = asyncio.ensure_future(self._prefetch_shared(records, None))
            await asyncio.sleep(0)  # the read runs up to its round trip
        in_flight = read is not None and not read.done()
        t0 = time.perf_counter()
        try:
            decoded = decode(self, records, now_ms)
        except BaseException:
            if read is not None:
                read.cancel()
            raise
        decode_s = time.perf_counter() - t0
        if read is not None:
            await read
            if in_flight:
                self.stages.add("shared", -decode_s)
        return decoded, decode_s

    async def _prefetch_shared(self, records: Sequence[Record], watermark_ms: int | None) -> None:
        """Load the consumer group's shared enterprise and commodity state the batch reads
        (agents/globalstate.py); its time is the ``shared`` stage."""
        shared = self.changelog.shared if self.changelog is not None else None
        if shared is not None:
            what = "reading the shared enterprise and commodity state"
            held, full = shared.held.skipped, shared.held.full
            await self.retry("redis", what, lambda: shared.prefetch(records, watermark_ms), "shared")
            self.metrics.shared_keys_read.labels("held").inc(shared.held.skipped - held)
            self.metrics.shared_keys_read.labels("full").inc(shared.held.full - full)

    async def tick(self, idle_advance_ms: int = 0) -> None:
        """Deadline scoring: called by a timer; moves event time on when the input is idle. With an input
        clock, declarations held behind it are decided once it passes them, and deadlines fire on it."""
        async with self._lock:
            wm = self.watermark_ms + idle_advance_ms
            if self.input_clock is not None:
                held = self.input_clock.apply(self.engine.joiner, self.watermark_ms, self.applied)
                behind_s = 0.0 if held is None else (self.watermark_ms - held) / 1000
                self.metrics.input_clock_behind.set(behind_s)
                self.metrics.input_clock_partitions.set(self.input_clock.behind)
                self.metrics.input_paused.set(len(self.input_clock.paused))
                wm = wm if held is None else held
            if wm <= 0:
                return
            await self._prefetch_shared((), wm)
            decisions = self.engine.advance(wm)
            if decisions:
                await self._emit(decisions, [])

    async def emit(self, decisions: list[Decision], dead: list[dict[str, Any]], events: int = 0) -> None:
        async with self._lock:
            await self._emit(decisions, dead, events)

    async def _emit(
        self,
        decisions: list[Decision],
        dead: list[dict[str, Any]],
        events: int = 0,
        fetched_at: float | None = None,
    ) -> None:
        m = self.metrics
        outs = [Out(c.DEAD_LETTER, None, orjson.dumps(dl)) for dl in dead]
        self.stats.dead_letters += len(dead)
        commands, notes, rule_counts = tally(decisions, self.metrics)
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
        note_bodies = [orjson.dumps(n) for n in notes]  # one serialisation: the record and the live stream
        for n, body in zip(notes, note_bodies, strict=True):
            outs.append(Out(c.NOTIFICATIONS, n["conveyance_id"].encode(), body))
            m.notifications.labels(n["kind"]).inc()
        # every record acknowledged before Redis says "sent", before the state is saved, before offsets commit
        await self._deliver(outs)
        self.stages.fetched_to_acked(fetched_at, len(fresh))
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
        if self.changelog is not None:
            dirty = self.engine.joiner.drain_dirty()
        if not (events or decisions or dirty or recovered):
            return
        counts = {
            "events": events,
            "dead_letters": len(dead),
            "decisions": len(decisions),
            "hits": sum(1 for d in decisions if d.hits),
            "commands": len(fresh) + len(recovered),
        }
        await self._save(fresh + recovered, dirty, counts, rule_counts, note_bodies, now_ms)

    async def _save(
        self,
        sent: list[Out],
        dirty: dict[str, bytes | None],
        counts: dict[str, int],
        rule_counts: dict[str, int],
        note_bodies: list[bytes],
        now_ms: int,
    ) -> None:
        """One Redis round trip after the acks: state and applied offsets (MULTI/EXEC with a changelog),
        then counters, each sent command's status and live-stream entry and the notifications in one script
        (SAVE_LUA)."""
        batch_applied = self._batch_applied
        track_of = {
            o.command["command_id"]: orjson.dumps(list(self.tracks.get(o.command["conveyance_id"]) or []))
            for o in sent
            if o.command is not None
        }

        keys = [STATS_KEY, RULE_STATS_KEY, LIVE_STREAM_KEY, NOTIFY_STREAM_KEY]
        counters = [(k, v) for k, v in counts.items() if v]
        args: list[Any] = [now_ms, self.dedupe_ttl_s, self.live_maxlen, len(counters)]
        for kv in counters:
            args += kv
        args.append(len(rule_counts))
        for kv in rule_counts.items():
            args += kv
        for o in sent:
            assert o.command is not None
            cid = o.command["command_id"]
            keys.append(STATUS_PREFIX + cid)
            part = o.partition if o.partition is not None else -1
            args += [part, o.offset if o.offset is not None else -1, track_of[cid], o.value]
        args += note_bodies
        own = bool(counters or rule_counts or sent or note_bodies)

        def write() -> Awaitable[Any]:
            pipe = self.redis.pipeline(transaction=self.changelog is not None)
            if self.changelog is not None:
                self.changelog.stage(pipe, dirty, batch_applied, self._partition_of)
            if own:  # counters, each sent command's status and live-stream entry, notifications
                pipe.eval(SAVE_LUA, len(keys), *keys, *args)
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
            outcome = await self._pending(o, verdict, now_ms)
            if outcome == "fresh":
                fresh.append(o)
            elif outcome == "recovered":
                recovered.append(o)
            else:
                dup += 1  # another worker took it over in between
        if dup:
            self.metrics.duplicates_suppressed.inc(dup)
            self.stats.duplicates += dup
        return fresh, recovered

    async def _pending(self, o: Out, verdict: str, now_ms: int) -> str:
        """A command another token left ``pending``: "recovered" if the dispatch log has it, else "fresh"
        once taken over (compare-and-set), or "dup" if another worker took it over first."""
        assert o.command is not None
        cid = o.command["command_id"]
        _, part_s, hint_s, token = verdict.split("|", 3)
        part, hint = int(part_s), int(hint_s)
        found = None
        if self.dispatch_log is not None:
            found = await self._find(part, hint, cid)
        if found is not None:
            o.partition, o.offset, o.acked = part, found, True
            self.stats.recovered += 1
            log.warning("command %s was on %s[%s] already: not sent again", cid, c.DISPATCH_COMMANDS, part)
            return "recovered"
        key = STATUS_PREFIX + cid
        args = (token, self.token, o.partition, o.hint, now_ms, o.value, self.dedupe_ttl_s)
        claimed = await self.retry(
            "redis", "claiming a pending command", lambda: self.redis.eval(CLAIM_LUA, 1, key, *args)
        )
        if not int(claimed):
            return "dup"
        self.stats.resent += 1
        self.metrics.resent_records.labels(c.DISPATCH_COMMANDS).inc()
        log.warning("command %s was reserved but never reached the broker: sending it now", cid)
        return "fresh"

    async def on_results(self, records: Sequence[Record]) -> list[Learned]:
        """Inspection results: learn from the scoring-time snapshot, grade rules, update command status."""
        async with self._lock:
            return await on_results(self, records)
