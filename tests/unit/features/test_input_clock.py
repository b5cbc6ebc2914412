"""A backlog read unevenly across partitions is joined as it happened (features/join.py ``hold``,
agents/inputclock.py): a declaration after the input clock waits for the partitions behind it."""

from __future__ import annotations

import collections
import lzma
import zlib
from typing import Any

import orjson
import pytest

from agents.inputclock import InputClock
from features.engine import HOUR, MIN, FeatureEngine
from tests.golden.replay import EVENTS, INTEL, NEVER
from tests.unit.features.test_engine import T0, cfg, decl, logi, point, run


def test_a_complete_declaration_after_the_clock_waits_for_the_track_behind_it() -> None:
    e = FeatureEngine(cfg())
    e.hold(T0 - 10 * MIN)  # the tracks partition has been read up to 10 minutes before the declaration
    assert run([("logistics", logi("weighbridge", T0, measured_gross_kg=30_000.0))], e) == []
    assert run([("declarations", decl(ts=T0 + MIN))], e) == []  # complete, but after the clock
    assert e.advance(T0 - 10 * MIN) == []  # the worker advances deadlines to the clock at most
    run([("tracks", point(T0 - 5 * MIN, 42.6, 106.85)), ("tracks", point(T0, 42.4, 106.85))], e)
    e.hold(T0 + 2 * MIN)
    assert [d["decl_id"] for d in e.releasable()] == ["D1"]
    (ready,) = e.release()  # a batch decides it (a tick's advance would too)
    assert ready.trigger_topic == "input_clock" and ready.decl["decl_id"] == "D1"
    assert ready.facts["weigh_present"] and ready.facts["track_points"] == 2 and "track" not in ready.missing


def test_a_weighbridge_reading_after_the_clock_holds_the_declarations_it_completes() -> None:
    e = FeatureEngine(cfg())
    e.hold(T0 - HOUR)
    run([("declarations", decl(ts=T0))], e)
    assert run([("logistics", logi("weighbridge", T0 + MIN, measured_gross_kg=30_000.0))], e) == []
    assert e.due(T0) == []  # complete, held behind the clock
    e.hold(None)  # every partition caught up: everything held is decided
    assert e.due(T0) == [e.pending("MN-1")[0]]  # listed for the read of the shared state before advance
    assert [r.decl["decl_id"] for r in e.advance(T0 + MIN)] == ["D1"]
    assert e.pending("MN-1") == [] and e.advance(T0 + 3 * HOUR) == []


def test_without_a_clock_nothing_waits_and_held_declarations_survive_a_restore() -> None:
    e = FeatureEngine(cfg())
    run([("logistics", logi("weighbridge", T0, measured_gross_kg=30_000.0))], e)
    assert len(run([("declarations", decl(ts=T0))], e)) == 1  # live: no clock, decided at once
    e.hold(T0)
    run([("declarations", decl(2, ts=T0 + 5 * MIN))], e)
    restored = FeatureEngine(cfg())
    restored.restore_keys({k: v for k, v in e.drain_dirty().items() if v is not None})
    restored.hold(T0 + 4 * MIN)
    assert restored.advance(T0 + 4 * MIN) == []
    restored.hold(T0 + 5 * MIN)
    assert [r.decl["decl_id"] for r in restored.advance(T0 + 5 * MIN)] == ["D2"]


# ------------------------------------------------------------------------------- the recorded day
PARTITIONS = 12
PARTS = ("weigh_gross_kg", "gate_in_to_decl_s", "manifest_gross_kg")  # the logistics a declaration meets


def _day() -> list[tuple[str, dict[str, Any]]]:
    return [tuple(orjson.loads(line)) for line in lzma.decompress(EVENTS.read_bytes()).splitlines()]  # type: ignore[misc]


def _engine() -> Any:
    from pipeline.contracts.settings import Settings
    from pipeline.core.assemble import build_engine

    engine = build_engine(Settings())
    for lead in orjson.loads(INTEL.read_bytes()):
        engine.joiner.watch.add(lead["kind"], lead["id"], lead.get("source", "intel"), NEVER)  # type: ignore[attr-defined]
    return engine


def _joined(decisions: Any) -> dict[str, dict[str, Any]]:
    return {d.facts["decl_id"]: {k: d.facts.get(k) for k in (*PARTS, "missing")} for d in decisions}


def _live(events: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each declaration's logistics as the day happened: read in event order, deadlines checked every
    second of event time (pipeline/core/engine.py ``replay``, as a worker's timer)."""
    from pipeline.core.engine import replay

    return _joined(replay(_engine(), events))


def _drain(
    events: list[tuple[str, dict[str, Any]]], aligned: bool, chunk: int, ahead_ms: int = 0
) -> tuple[dict[str, dict[str, Any]], int]:
    """The day read as a backlog, as the worker reads it: each topic-partition's next ``chunk`` records in
    turn (partitions the input clock paused skipped, with ``ahead_ms``); the clock before each chunk, the
    held declarations it passed after it, then deadlines (the worker's timer) on the clock, or on the latest
    event time read (without the clock, ``aligned`` False). Returns each declaration's logistics and the
    most declarations held at once."""
    queues: dict[str, list[Any]] = collections.defaultdict(list)
    for topic, ev in events:
        queues[f"{topic}:{zlib.crc32(ev['conveyance_id'].encode()) % PARTITIONS}"].append((topic, ev))
    hw = {tp: len(recs) for tp, recs in queues.items()}
    applied = {tp: -1 for tp in queues}
    engine = _engine()
    clock = InputClock(lambda: hw, pacer=(lambda stop, go: None) if ahead_ms else None, ahead_ms=ahead_ms)
    out: dict[str, dict[str, Any]] = {}
    watermark = most_held = 0
    while any(applied[tp] + 1 < hw[tp] for tp in queues):
        for tp in sorted(queues):
            if applied[tp] + 1 >= hw[tp] or tp in clock.paused:
                continue
            if aligned:
                clock.apply(engine.joiner, watermark, applied)
            for topic, ev in queues[tp][applied[tp] + 1 : applied[tp] + 1 + chunk]:
                watermark = max(watermark, ev["ts_ms"])
                clock.seen(tp, ev["ts_ms"])
                out.update(_joined(engine.process(topic, ev)))
            out.update(_joined(engine.release()))
            applied[tp] = min(applied[tp] + chunk, hw[tp] - 1)
            held = clock.apply(engine.joiner, watermark, applied) if aligned else None
            most_held = max(most_held, len(engine.joiner.join.held))  # type: ignore[attr-defined]
            out.update(_joined(engine.advance(watermark if held is None else held)))
    engine.joiner.hold(None)  # type: ignore[attr-defined]
    out.update(_joined(engine.advance(watermark + 10 * HOUR)))
    return out, most_held


@pytest.fixture(scope="module")
def day() -> list[tuple[str, dict[str, Any]]]:
    return _day()


@pytest.fixture(scope="module")
def live(day: list[Any]) -> dict[str, dict[str, Any]]:
    return _live(day)


def test_a_backlog_read_partition_by_partition_is_joined_as_it_happened(
    day: list[Any], live: dict[str, dict[str, Any]]
) -> None:
    def lacking(decided: dict[str, dict[str, Any]], part: str) -> int:
        return sum(part in d["missing"] for d in decided.values())

    def differ(decided: dict[str, dict[str, Any]]) -> int:
        return sum(any(d[k] != live[i][k] for k in PARTS) for i, d in decided.items())

    n = sum(topic == "declarations" for topic, _ in day)
    unaligned, _ = _drain(day, aligned=False, chunk=2000)
    aligned, _ = _drain(day, aligned=True, chunk=2000)
    assert len(live) == len(unaligned) == len(aligned) == n  # every declaration decided once, either way
    # read partition by partition without the clock, most declarations lose their track and weighbridge
    assert lacking(unaligned, "track") > n // 2 and lacking(unaligned, "weighbridge") > n // 2
    assert differ(unaligned) > n // 2
    # with it, each meets the weighbridge reading, gate-in and manifest it met live, though the logistics
    # partitions were read trips ahead of it (a conveyance keeps its last readings, not only the latest),
    # and its track: a gate-out read before the trip's last points does not end the trip early
    assert differ(aligned) == 0
    assert lacking(aligned, "track") == lacking(live, "track")


def test_partitions_read_far_ahead_are_paused_which_bounds_the_declarations_held(
    day: list[Any], live: dict[str, dict[str, Any]]
) -> None:
    """Read in smaller chunks, the declarations partitions run hours ahead of the tracks: without pausing,
    nearly every declaration of the day is held at once; paused 10 minutes past the clock, far fewer, and
    every declaration is still joined as live."""
    n = sum(topic == "declarations" for topic, _ in day)
    free, held_free = _drain(day, aligned=True, chunk=200)
    paced, held_paced = _drain(day, aligned=True, chunk=200, ahead_ms=10 * MIN)
    assert len(paced) == len(free) == n
    assert held_free > n * 3 // 4 and held_paced < held_free // 2
    assert all(paced[i][k] == live[i][k] for i in live for k in PARTS)
    assert [i for i in live if ("track" in paced[i]["missing"]) != ("track" in live[i]["missing"])] == []


def test_the_clock_is_the_slowest_partition_behind_plus_the_slack() -> None:
    hw: dict[str, int] | None = {"tracks:0": 100, "tracks:1": 50, "declarations:0": 10}
    stuck: list[str] = []
    clock = InputClock(lambda: hw, lambda: stuck, slack_ms=60_000)
    applied = {
        "tracks:0": 49,
        "tracks:1": 49,
        "declarations:0": 9,
    }  # tracks:0 is behind, the others caught up
    clock.seen("tracks:0", T0)
    clock.seen("tracks:1", T0 - HOUR)  # older, but read to its end: it holds nothing
    clock.seen("declarations:0", T0 + HOUR)
    assert clock.update(T0 + HOUR, applied) == T0 + 60_000 and clock.behind == 1
    assert clock.deadline_watermark(T0 + HOUR) == T0
    stuck.append("tracks:0")  # reported stuck: a partition the broker stopped serving holds nothing
    assert clock.update(T0 + HOUR, applied) is None
    stuck.clear()
    assert hw is not None
    hw["tracks:2"] = 5  # records to read and none read yet: nothing can be decided until it is read
    assert clock.update(T0 + HOUR, applied) == 60_000 and clock.deadline_watermark(T0 + HOUR) == 0
    del hw["tracks:2"]
    clock.seen("tracks:0", T0 + HOUR - 30_000)  # behind, but within the slack: live, no clock
    assert clock.update(T0 + HOUR, applied) is None
    assert clock.deadline_watermark(T0 + HOUR) == T0 + HOUR
    clock.seen("tracks:0", T0 + 2 * HOUR)
    clock.forget(["tracks:0"])  # revoked: what was read of it no longer counts
    assert "tracks:0" not in clock.read
    hw = None  # the consumer between generations: the clock stays where it was
    assert clock.update(T0 + 3 * HOUR, applied) is None


def test_partitions_read_far_past_the_clock_are_paused_until_it_comes_near() -> None:
    hw = {"tracks:0": 100, "declarations:0": 10, "logistics:0": 10}
    calls: list[tuple[set[str], set[str]]] = []
    clock = InputClock(lambda: hw, slack_ms=60_000, pacer=lambda stop, go: calls.append((stop, go)))
    applied = {"tracks:0": 9, "declarations:0": 4, "logistics:0": 4}  # every partition has records left
    clock.seen("tracks:0", T0)
    clock.seen("declarations:0", T0 + 2 * HOUR)  # read two hours ahead of the tracks
    clock.seen("logistics:0", T0 + 5 * MIN)  # within the 10 minutes past the clock
    e = FeatureEngine(cfg())
    clock.apply(e, T0 + 2 * HOUR, applied)
    assert calls == [({"declarations:0"}, set())] and clock.paused == {"declarations:0"}
    clock.apply(e, T0 + 2 * HOUR, applied)
    assert len(calls) == 1  # nothing changed: no call
    clock.seen("tracks:0", T0 + 2 * HOUR - 5 * MIN)  # the others came within 10 minutes (less the slack)
    clock.seen("logistics:0", T0 + 2 * HOUR - 5 * MIN)
    clock.apply(e, T0 + 2 * HOUR, applied)
    assert calls[-1] == (set(), {"declarations:0"}) and clock.paused == set()
    hw["tracks:1"], applied["tracks:1"] = 50, -1  # a partition with records and none read: all read wait
    clock.apply(e, T0 + 2 * HOUR, applied)
    assert calls[-1][0] == {"declarations:0", "logistics:0", "tracks:0"}
    del hw["tracks:1"]
    applied.update({"tracks:0": 99, "declarations:0": 9, "logistics:0": 9})  # all read: no clock
    clock.apply(e, T0 + 2 * HOUR, applied)
    assert calls[-1] == (set(), {"declarations:0", "logistics:0", "tracks:0"}) and clock.paused == set()


def test_a_failed_pause_is_tried_again_and_revoked_partitions_are_forgotten() -> None:
    hw = {"tracks:0": 100, "declarations:0": 10}
    fail = [True]
    calls: list[set[str]] = []

    def pacer(stop: set[str], go: set[str]) -> None:
        if fail[0]:
            raise RuntimeError("the consumer is between generations")
        calls.append(stop)

    clock = InputClock(lambda: hw, pacer=pacer)
    clock.seen("tracks:0", T0)
    clock.seen("declarations:0", T0 + HOUR)
    applied = {"tracks:0": 9, "declarations:0": 4}
    clock.apply(FeatureEngine(cfg()), T0 + HOUR, applied)
    assert clock.paused == set()  # not paused: tried again with the next batch
    fail[0] = False
    clock.apply(FeatureEngine(cfg()), T0 + HOUR, applied)
    assert calls == [{"declarations:0"}] and clock.paused == {"declarations:0"}
    clock.forget(["declarations:0"])  # revoked: another worker's now, and the consumer forgot the pause
    assert clock.paused == set()
