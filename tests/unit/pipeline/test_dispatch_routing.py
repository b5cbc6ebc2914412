"""Routing of commands: intercepts to the squad nearest the vehicle, deadlines, officers from rosters."""

from __future__ import annotations

from typing import Any

import pytest

from features.engine import FeatureEngine
from pipeline.contracts import events as c
from pipeline.contracts import sites
from pipeline.core.engine import LANE_DEADLINE_MS, Engine
from pipeline.core.policy import DecisionPolicy
from rules.engine import RuleHit

T0 = 1_790_000_000_000
MIN = 60_000


class LaneRule:
    """Hits every declaration with the lane it was built with (hard, so the budget never interferes)."""

    version = 7

    def __init__(self, lane: str) -> None:
        self.lane = lane

    def evaluate(self, facts: dict[str, Any]) -> list[RuleHit]:
        return [RuleHit("test_rule", self.lane, "high", "active", "global", "hard", "test reason", {})]


def engine(lane: str) -> Engine:
    return Engine(
        joiner=FeatureEngine(),
        rules=LaneRule(lane),
        policy=DecisionPolicy(rosters=sites.rosters()),
        squads=sites.MOBILE_SQUADS,
        border=sites.BORDER,
    )


def decide(e: Engine, plate: str, fix: tuple[float, float] | None, port: str = "GQM") -> dict[str, Any]:
    if fix:
        e.process(
            c.TRACKS,
            {"conveyance_id": plate, "ts_ms": T0 - MIN, "lat": fix[0], "lon": fix[1], "speed_kmh": 40.0},
        )
    e.process(
        c.LOGISTICS,
        {
            "event_id": "w",
            "kind": "weighbridge",
            "ts_ms": T0,
            "conveyance_id": plate,
            "port": port,
            "measured_gross_kg": 30_000.0,
        },
    )
    out = e.process(
        c.DECLARATIONS,
        {
            "decl_id": f"D-{plate}",
            "ts_ms": T0,
            "enterprise_id": "E1",
            "credit_grade": "general",
            "hs_code": "270112",
            "goods": "coal",
            "origin": "MN",
            "port": port,
            "mode": "road",
            "conveyance_id": plate,
            "gross_kg": 30_000.0,
            "net_kg": 29_000.0,
            "quantity": 29.0,
            "value_cny": 20_000.0,
        },
    )
    assert len(out) == 1 and out[0].command is not None
    return out[0].command


@pytest.mark.parametrize(
    ("fix", "squad"),
    [
        ((43.78, 111.72), "SQ-EHT-N"),
        ((43.25, 112.25), "SQ-EHT-S"),
        ((42.02, 106.95), "SQ-GQM"),
        ((42.10, 101.05), "SQ-CEK"),
    ],
)
def test_intercept_goes_to_the_nearest_squad_with_its_officers(fix: tuple[float, float], squad: str) -> None:
    cmd = decide(engine("intercept"), "MN-1", fix)
    assert cmd["lane"] == "intercept" and cmd["site"] == squad
    roster = next(s.roster for s in sites.MOBILE_SQUADS if s.id == squad)
    assert cmd["officers"] and set(cmd["officers"]) <= set(roster)


def test_intercept_deadline_is_the_time_to_reach_the_border() -> None:
    near = decide(engine("intercept"), "MN-2", (42.34, 106.86))  # at the crossing: the floor of 15 minutes
    far = decide(engine("intercept"), "MN-3", (41.40, 106.90))  # ~100 km inside: about two hours at 50 km/h
    assert near["deadline_ts_ms"] - near["decided_ts_ms"] == 15 * MIN
    assert 100 * MIN <= far["deadline_ts_ms"] - far["decided_ts_ms"] <= 120 * MIN


def test_untracked_vehicle_intercept_stays_with_the_port() -> None:
    cmd = decide(engine("intercept"), "MN-4", None)
    assert (
        cmd["site"] == "GQM" and cmd["deadline_ts_ms"] - cmd["decided_ts_ms"] == LANE_DEADLINE_MS["intercept"]
    )
    assert "track" in cmd["missing"]


def test_physical_inspection_officers_come_from_the_site_roster_deterministically() -> None:
    a = decide(engine("physical_inspection"), "MN-5", (42.3, 106.87))
    b = decide(engine("physical_inspection"), "MN-5", (42.3, 106.87))
    assert a["site"] == "GQM" and a["officers"] == b["officers"]
    assert set(a["officers"]) <= set(sites.PORTS["GQM"].roster) and len(a["officers"]) == 2
    assert a["deadline_ts_ms"] - a["decided_ts_ms"] == LANE_DEADLINE_MS["physical_inspection"]


class MedicalRule:
    version = 1

    def evaluate(self, facts: dict[str, Any]) -> list[RuleHit]:
        if facts["mode"] == "self_drive" and facts["purpose"] == "medical":
            return [
                RuleHit(
                    "emergency_medical",
                    "release",
                    "low",
                    "active",
                    "global",
                    "emergency_release",
                    "self-drive medical case: release at once",
                    {"purpose": "medical"},
                )
            ]
        return []


def test_emergency_medical_case_is_released_at_once_and_notified() -> None:
    e = Engine(joiner=FeatureEngine(), rules=MedicalRule(), policy=DecisionPolicy(rosters=sites.rosters()))
    out = e.process(
        c.DECLARATIONS,
        {
            "decl_id": "D-SD-1",
            "ts_ms": T0,
            "enterprise_id": "R1",
            "credit_grade": "general",
            "hs_code": "300490",
            "goods": "medicines, personal",
            "origin": "MN",
            "port": "EHT",
            "mode": "self_drive",
            "purpose": "medical",
            "conveyance_id": "NM-SD-1",
            "gross_kg": 80.0,
            "net_kg": 70.0,
            "quantity": 1.0,
            "value_cny": 500.0,
        },
    )
    assert len(out) == 1
    d = out[0]
    assert d.lane == "release" and not d.dispatch and d.command is None
    assert d.notification is not None and d.notification["kind"] == "emergency_release"
    assert d.notification["conveyance_id"] == "NM-SD-1" and "medical" in d.notification["text"]
