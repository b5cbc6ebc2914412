"""A batch's input records into the core: decode, skip what the state already holds, fold, decide.

Records arrive grouped by topic-partition, in offset order within each. A record at or below the offset the
restored state already applied is skipped (Kafka redelivers after a failover). GPS points, 60% of the input,
take a lean way: decoded and validated in one step (``codec.decode_track``: the same checks and dead
letters as ``decode_event``), no trigger built (a point never completes a declaration), and each run of
consecutive points folded by one call of the joiner's ``on_tracks`` (the same state as one ``on_event`` per
point; a joiner without it gets them one by one). Every other record goes through ``Engine.process`` in
order; a run of points is folded before the next record of another topic, so no declaration sees a point
that came after it. Called by ``Runtime._process`` under its lock, in two passes: ``decode`` (bytes ->
event, refusal, or skipped) runs while the read of the shared state is on its way to Redis, then ``ingest``
folds and decides in record order, dead-lettering refusals in that order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agents.delivery import Record, log
from pipeline.contracts import events as c
from pipeline.contracts.events import ContractError
from pipeline.core.engine import Decision
from pipeline.io.codec import decode_event, decode_track

if TYPE_CHECKING:
    from agents.runtime import Runtime


Decoded = dict[str, Any] | ContractError | None  # an event, its refusal, or None: already in the state


def decode(rt: Runtime, records: Sequence[Record], now_ms: int) -> list[Decoded]:
    """The first pass: every record decoded and validated, refused, or skipped (at or below the offset the
    restored state already applied). Reads only ``rt.applied``; ``ingest`` makes the dead letters."""
    out: list[Decoded] = []
    applied = rt.applied
    topic, partition, floor, track = "", -1, -1, False
    for rec in records:
        if rec.topic != topic or rec.partition != partition:
            topic, partition = rec.topic, rec.partition
            floor, track = applied.get(f"{topic}:{partition}", -1), topic == c.TRACKS
        if rec.offset <= floor:
            out.append(None)
            continue
        try:
            out.append(decode_track(rec.value, now_ms) if track else decode_event(topic, rec.value, now_ms))
        except ContractError as exc:
            out.append(exc)
    return out


def ingest(
    rt: Runtime, records: Sequence[Record], now_ms: int, decoded: Sequence[Decoded]
) -> tuple[list[Decision], list[dict[str, Any]], dict[str, int]]:
    """Decisions, dead letters (late points not included: the caller drains them) and records per topic,
    from the records and their ``decode`` results."""
    decisions: list[Decision] = []
    dead: list[dict[str, Any]] = []
    per_topic: dict[str, int] = {}
    batch_applied, key_partition = rt._batch_applied, rt._key_partition
    points: list[dict[str, Any]] = []  # the run of GPS points not folded yet, and their records
    point_recs: list[Record] = []
    topic, partition, tp, last_key, track = "", -1, "", b"", False
    clock = rt.input_clock
    read = -1  # the latest event time read on this topic-partition in the batch (the input clock's)
    for rec, ev in zip(records, decoded, strict=True):
        if rec.topic != topic or rec.partition != partition:  # the next topic-partition of the batch
            if clock is not None and read >= 0:
                clock.seen(tp, read)
            topic, partition, last_key, read = rec.topic, rec.partition, b"", -1
            tp, track = f"{topic}:{partition}", topic == c.TRACKS
        per_topic[topic] = per_topic.get(topic, 0) + 1  # counted once per batch by the caller
        if ev is None:
            continue  # already in the state restored from the changelog (redelivered after a failover)
        batch_applied[tp] = rec.offset
        key = rec.key
        if key is not None and key != last_key:
            last_key = key
            key_partition[key.decode("utf-8", "replace")] = partition
        if isinstance(ev, ContractError):
            dead.append(rt._dead(rec, ev, now_ms))
            # a refused record has no event time, but its partition was read past it: its producer's
            # timestamp, capped at the latest event time read, moves the partition's input clock, so a
            # partition carrying only malformed records does not hold every declaration back
            stamp = min(rec.timestamp_ms or 0, rt.watermark_ms)
            if stamp > read:
                read = stamp
            continue
        ts = ev["ts_ms"]
        if ts > rt.watermark_ms:
            rt.watermark_ms = ts
        if ts > read:
            read = ts
        if track:
            rt._remember_point(ev)
            points.append(ev)
            point_recs.append(rec)
            continue
        if points:
            _fold(rt, points, point_recs, dead, now_ms)
            points, point_recs = [], []
        try:
            trigger = {"partition": partition, "offset": rec.offset, "produced_ms": rec.timestamp_ms}
            decisions += rt.engine.process(topic, ev, trigger)
        except Exception as exc:  # a bug in the core must not stop the worker: dead-letter and go on
            log.exception("core failed on %s[%s]@%s", topic, partition, rec.offset)
            dead.append(rt._dead(rec, exc, now_ms))
    if points:
        _fold(rt, points, point_recs, dead, now_ms)
    if clock is not None and read >= 0:
        clock.seen(tp, read)
    return decisions, dead, per_topic


def _fold(
    rt: Runtime, points: list[dict[str, Any]], recs: list[Record], dead: list[dict[str, Any]], now_ms: int
) -> None:
    """Fold a run of GPS points into the join (its time is the ``join`` stage); a point the core fails on
    is dead-lettered, the others are folded."""
    on_tracks = getattr(rt.engine.joiner, "on_tracks", None)
    if on_tracks is None:  # a joiner without the batch call: one event at a time
        for ev, rec in zip(points, recs, strict=True):
            try:
                rt.engine.process(c.TRACKS, ev)
            except Exception as exc:
                log.exception("core failed on %s[%s]@%s", rec.topic, rec.partition, rec.offset)
                dead.append(rt._dead(rec, exc, now_ms))
        return
    t0 = time.perf_counter()
    failed = on_tracks(points)
    rt.stages.add("join", time.perf_counter() - t0)
    for i, err in failed:
        rec = recs[i]
        log.error("core failed on %s[%s]@%s", rec.topic, rec.partition, rec.offset, exc_info=err)
        dead.append(rt._dead(rec, err, now_ms))
