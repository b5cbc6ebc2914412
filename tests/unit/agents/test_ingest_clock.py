"""The input clock as a batch moves it (agents/ingest.py): refused records count as read."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from agents.delivery import Record
from agents.ingest import decode, ingest
from agents.inputclock import InputClock

T = 1_780_000_000_000  # an event time (ms)


def test_a_partition_carrying_only_malformed_records_does_not_hold_the_clock() -> None:
    """A broken producer writing only garbage to one partition: every record is dead-lettered, none has an
    event time, yet the partition was read past them. Its records' producer timestamps (capped at the
    latest event time read anywhere) move its read time, so while its backlog is read the input clock does
    not sit at zero, holding every declaration and pausing every other partition."""
    hw = {"tracks:0": 10_000, "declarations:0": 10}
    applied = {"tracks:0": -1, "declarations:0": 9}
    clock = InputClock(lambda: hw)
    dead: list[Any] = []
    rt = SimpleNamespace(
        applied={},
        _batch_applied={},
        _key_partition={},
        input_clock=clock,
        watermark_ms=T,  # the declarations partition was read up to T
        _dead=lambda rec, exc, now: dead.append(exc.reason) or {"reason": exc.reason},
    )
    junk = [Record("tracks", 0, i, T - 5_000 + i, b"MN1", b"{not json") for i in range(100)]
    junk.append(Record("tracks", 0, 100, T + 3_600_000, b"MN1", b"[]"))  # a producer clock an hour ahead
    decisions, letters, _ = ingest(rt, junk, T, decode(rt, junk, T))  # type: ignore[arg-type]
    assert decisions == [] and len(letters) == len(junk) == len(dead)
    assert set(dead) == {"malformed_json", "not_an_object"}
    assert clock.read["tracks:0"] == T  # read up to its producer's time, never past the data read elsewhere
    applied["tracks:0"] = 100
    assert clock.update(T, applied) is None  # the partition is read up to now: nothing is held for it


def test_a_partition_with_no_record_read_yet_still_holds_the_clock() -> None:
    """The rule the refused records must not break: records to read and none read, nothing after them is
    decided yet (the clock stays at the slack)."""
    clock = InputClock(lambda: {"tracks:0": 10, "declarations:0": 10})
    assert clock.update(T, {"tracks:0": -1, "declarations:0": 9}) == clock.slack_ms
