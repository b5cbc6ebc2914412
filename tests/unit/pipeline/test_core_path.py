"""The first scoring path on the pure core, no broker: join in any order, deadline, rule, one decision."""

from __future__ import annotations

import itertools

import orjson
import pytest

from features.engine import FeatureConfig, FeatureEngine
from pipeline.contracts import events as c
from pipeline.contracts.commands import command_id
from pipeline.core.engine import Decision, Engine, replay
from rules.engine import load_default_pack

T0 = 1_790_000_000_000
PACK = load_default_pack()


def decl(plate: str, gross: float = 30_000.0, ts: int = T0, mode: str = "road") -> dict:
    return {
        "decl_id": f"D-{plate}",
        "ts_ms": ts,
        "enterprise_id": "E1",
        "credit_grade": "general",
        "hs_code": "270112",
        "goods": "coal",
        "origin": "MN",
        "port": "GQM",
        "mode": mode,
        "conveyance_id": plate,
        "gross_kg": gross,
        "net_kg": gross - 2000,
        "quantity": 1.0,
        "value_cny": 1.0,
    }


def weigh(plate: str, kg: float, ts: int = T0) -> dict:
    return {
        "event_id": f"W-{plate}-{ts}",
        "kind": "weighbridge",
        "ts_ms": ts,
        "conveyance_id": plate,
        "port": "GQM",
        "measured_gross_kg": kg,
    }


def engine() -> Engine:
    return Engine(
        joiner=FeatureEngine(FeatureConfig(join_window_ms=3_600_000, deadline_ms=600_000)), rules=PACK
    )


@pytest.mark.parametrize(
    ("measured", "lane", "dispatch"),
    [
        (34_500.0, "physical_inspection", True),
        (31_600.0, "physical_inspection", True),
        (31_400.0, "release", False),
        (30_000.0, "release", False),
        (25_000.0, "release", False),
    ],
)
@pytest.mark.parametrize("order", list(itertools.permutations([0, 1])))
def test_weight_deviation_decides_lane_in_any_order(
    measured: float, lane: str, dispatch: bool, order: tuple
) -> None:
    events = [(c.DECLARATIONS, decl("A")), (c.LOGISTICS, weigh("A", measured, T0 + 60_000))]
    e = engine()
    out = [d for i in order for d in e.process(*events[i])]
    assert len(out) == 1
    d = out[0]
    assert (d.lane, d.dispatch) == (lane, dispatch)
    assert d.facts["weigh_excess_kg"] == pytest.approx(measured - 30_000)
    if dispatch:
        assert d.command is not None and d.command["command_id"] == command_id("D-A")
        assert d.command["trigger"]["topic"] == events[order[1]][0]


def test_reading_outside_window_is_not_joined_and_deadline_decides_with_missing() -> None:
    e = engine()
    assert e.process(c.LOGISTICS, weigh("B", 40_000, T0 - 2 * 3_600_000)) == []
    assert e.process(c.DECLARATIONS, decl("B")) == []
    assert e.advance(T0 + 599_999) == []
    out = e.advance(T0 + 600_000)
    assert len(out) == 1 and out[0].lane == "release"
    assert out[0].facts["weigh_present"] is False


def test_a_declaration_is_decided_once_even_if_redelivered() -> None:
    e = engine()
    e.process(c.LOGISTICS, weigh("C", 40_000))
    first = e.process(c.DECLARATIONS, decl("C"))
    again = e.process(c.DECLARATIONS, decl("C"))
    assert len(first) == 1 and again == []


def test_replay_flushes_pending_declarations_at_the_end() -> None:
    events = [(c.DECLARATIONS, decl("D")), (c.DECLARATIONS, decl("E", mode="self_drive"))]
    out = list(replay(engine(), events))
    assert sorted(d.decl["decl_id"] for d in out) == ["D-D", "D-E"]


def test_replay_fires_a_deadline_when_the_worker_would_have() -> None:
    """A replay decides as the stream does: an overweight truck weighed after its declaration's deadline
    (10 min here) was decided live without the reading, and a replay of the day must not join it."""
    events = [
        (c.DECLARATIONS, decl("F")),
        (c.LOGISTICS, weigh("G", 30_000.0, T0 + 11 * 60_000)),  # another truck moves event time on
        (c.LOGISTICS, weigh("F", 40_000.0, T0 + 12 * 60_000)),
    ]
    (d,) = replay(engine(), events)
    assert d.facts["weigh_present"] is False and d.lane == "release"
    assert d.command is None and d.facts["missing"][0] == "weighbridge"


def test_an_inspection_result_teaches_the_violation_history_the_next_declaration_reads() -> None:
    """Workers hand results to Engine.on_result, not to process: the parties' history learns there too."""
    from pipeline.core.assemble import build_engine

    eng = build_engine()

    def decide(plate: str, ts: int, weighed_kg: float) -> Decision:
        d = {**decl(plate, ts=ts), "decl_id": f"D-{plate}-{ts}"}
        out = eng.process(c.DECLARATIONS, d) + eng.process(c.LOGISTICS, weigh(plate, weighed_kg, ts + 1_000))
        out += eng.advance(ts + 3_600_000)
        return next(x for x in out if x.decl["decl_id"] == d["decl_id"])

    first = decide("MN-H1", T0, 36_000.0)  # 6 t over the declared weight: inspected
    assert first.command is not None
    result = {
        "command_id": first.command["command_id"],
        "decl_id": first.decl["decl_id"],
        "ts_ms": T0 + 3_700_000,
        "outcome": "violation",
        "site": "GQM",
        "officer_id": "GQM-001",
    }
    assert eng.on_result(result) is not None, "the engine dispatched it, so it knows its snapshot"
    second = decide("MN-H2", T0 + 3_800_000, 30_000.0)
    assert second.facts["ent_violation_rate"] > first.facts["ent_violation_rate"]


def test_a_restarted_worker_rebuilds_the_same_snapshot_metadata_from_the_stored_command() -> None:
    """After a restart the snapshots are gone and a result's metadata comes from the stored command: it must
    grade the same rules, lead source and watched entities as the snapshot taken at decision time."""
    from pipeline.core.assemble import build_engine

    eng = build_engine()
    eng.joiner.watch.add("enterprise", "E1", "informant", 2**62)
    d = {**decl("MN-S1", ts=T0), "decl_id": "D-MN-S1"}
    out = eng.process(c.DECLARATIONS, d) + eng.process(c.LOGISTICS, weigh("MN-S1", 36_000.0, T0 + 1_000))
    (decision,) = [x for x in out if x.decl["decl_id"] == "D-MN-S1"]
    assert decision.command is not None
    kept = eng.snapshots.get("D-MN-S1") if eng.snapshots is not None else None
    assert kept is not None
    rebuilt = eng.snapshot_meta(orjson.loads(orjson.dumps(decision.command)))
    assert rebuilt == kept.meta
    assert "lead:informant" in rebuilt["grade_keys"] and "watch:enterprise:E1" in rebuilt["grade_keys"]
