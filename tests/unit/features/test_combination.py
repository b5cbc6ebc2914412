"""Facts that combine others: a detour from the approved corridor on a night trip, in local time."""

from __future__ import annotations

from typing import Any

import pytest

from features.combination import is_night, local_hour
from features.engine import HOUR, MIN, FeatureConfig, FeatureEngine
from pipeline.core.decision.encode import encode
from pipeline.core.model import RiskModel
from tests.unit.features.test_engine import cfg, decl, logi, point

MIDNIGHT_LOCAL = 1_790_035_200_000 - 8 * HOUR  # 2026-09-22 00:00 at the ports (UTC+8)


def trip(start: int, detour_deg: float) -> dict[str, Any]:
    """A truck coming down the corridor (lon 106.85), ``detour_deg`` of longitude off it half way, then its
    weighbridge reading and declaration: the declaration's facts."""
    lons = (106.85, 106.85 + detour_deg, 106.85)
    evs = [("tracks", point(start + i * 10 * MIN, 42.70 - 0.1 * i, lon)) for i, lon in enumerate(lons)]
    end = start + 30 * MIN
    evs += [
        ("logistics", logi("weighbridge", end, measured_gross_kg=30_000.0)),
        ("declarations", decl(ts=end)),
    ]
    e = FeatureEngine(cfg())
    out = []
    for topic, ev in evs:
        out += e.on_event(topic, ev)
    assert len(out) == 1
    return out[0].facts


def test_night_hours_are_local_time() -> None:
    c = FeatureConfig()
    assert local_hour(c, MIDNIGHT_LOCAL) == 0
    assert [is_night(c, MIDNIGHT_LOCAL + h * HOUR) for h in (-3, -2, 0, 5, 6, 12)] == [
        False,  # 21:00
        True,  # 22:00
        True,
        True,  # 05:00
        False,  # 06:00
        False,
    ]
    assert is_night(c, MIDNIGHT_LOCAL + 6 * HOUR - 1) and not is_night(c, MIDNIGHT_LOCAL - 2 * HOUR - 1)


def test_a_detour_counts_as_a_night_detour_only_on_a_night_trip() -> None:
    night = trip(MIDNIGHT_LOCAL + 1 * HOUR, 0.06)  # ~4.9 km off the corridor at 01:00
    day = trip(MIDNIGHT_LOCAL + 13 * HOUR, 0.06)  # the same detour at 13:00
    assert night["corridor_dev_km"] == pytest.approx(day["corridor_dev_km"]) and day["corridor_dev_km"] > 4
    assert night["night_trip"] and night["night_dev_km"] == night["corridor_dev_km"]
    assert not day["night_trip"] and day["night_dev_km"] == 0.0


def test_gps_noise_at_night_is_not_a_detour() -> None:
    f = trip(MIDNIGHT_LOCAL + 2 * HOUR, 0.005)  # ~0.4 km: noise and the road's bends
    assert f["night_trip"] and 0 < f["corridor_dev_km"] < 1.0
    assert f["night_dev_km"] == 0.0


def test_without_a_track_the_declaration_time_decides() -> None:
    e = FeatureEngine(cfg())
    (r,) = e.on_event("declarations", decl(ts=MIDNIGHT_LOCAL + 23 * HOUR, mode="air"))
    assert r.facts["night_trip"] and r.facts["night_dev_km"] == 0.0 and not r.facts["track_present"]


def test_the_model_reads_a_night_detour_as_riskier_than_the_same_detour_by_day() -> None:
    night = trip(MIDNIGHT_LOCAL + 1 * HOUR, 0.06)
    day = trip(MIDNIGHT_LOCAL + 13 * HOUR, 0.06)
    assert "night_dev_km" in encode(night) and "night_dev_km" not in encode(day)
    model = RiskModel()
    assert model.score(night) > 2 * model.score(day)
    assert any("night trip" in f["text"] for f in model.explain(night, k=3))
