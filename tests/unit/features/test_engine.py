"""The feature engine, table-driven with hand-computed values: join, windows, track statistics, history."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from features.aggregates import RecentMedian, WindowSums
from features.engine import DAY, HOUR, MIN, FeatureConfig, FeatureEngine
from features.schema import FACT_TYPES
from features.watchlist import Watchlists
from features.windows import hopping_windows, session_windows, tumbling_window

T0 = 1_790_000_000_000
CROSSING = (42.33, 106.85)
CORRIDOR = ((43.0, 106.85), (42.33, 106.85), (42.25, 106.87))
PORT = (42.25, 106.87)


def cfg(**kw: Any) -> FeatureConfig:
    return FeatureConfig(crossings=(CROSSING,), corridors=(CORRIDOR,), sites=(PORT,), **kw)


def decl(n: int = 1, ts: int = T0, plate: str = "MN-1", **kw: Any) -> dict[str, Any]:
    d = {
        "decl_id": f"D{n}",
        "ts_ms": ts,
        "enterprise_id": "E1",
        "credit_grade": "general",
        "declarant_id": "B1",
        "hs_code": "270112",
        "goods": "coal",
        "origin": "MN",
        "port": "GQM",
        "mode": "road",
        "conveyance_id": plate,
        "gross_kg": 30_000.0,
        "net_kg": 29_000.0,
        "quantity": 29.0,
        "value_cny": 29_000.0,
    }
    d.update(kw)
    return d


def logi(kind: str, ts: int = T0, plate: str = "MN-1", **kw: Any) -> dict[str, Any]:
    return {"event_id": f"{kind}{ts}", "kind": kind, "ts_ms": ts, "conveyance_id": plate, "port": "GQM", **kw}


def point(ts: int, lat: float, lon: float, v: float = 40.0, plate: str = "MN-1") -> dict[str, Any]:
    return {"conveyance_id": plate, "ts_ms": ts, "lat": lat, "lon": lon, "speed_kmh": v}


def run(events: list[tuple[str, dict[str, Any]]], engine: FeatureEngine | None = None) -> list[Any]:
    e = engine or FeatureEngine(cfg())
    out = []
    for topic, ev in events:
        out += e.on_event(topic, ev)
    return out


# ------------------------------------------------------------------------------------------- geometry
def test_window_geometry() -> None:
    assert tumbling_window(T0 + 5, 1000) == (T0, T0 + 1000)
    assert hopping_windows(2500, 2000, 1000) == [(1000, 3000), (2000, 4000)]
    assert session_windows([0, 10, 20, 100, 105], gap_ms=30) == [(0, 20), (100, 105)]
    w = WindowSums(HOUR, DAY, (2 * HOUR, 30 * MIN))
    b = w.initial(T0)
    t = T0 - T0 % HOUR + 30 * MIN  # mid-bucket: the window's far edge cuts a bucket, which is counted whole
    for i in range(5):
        b = w.update(b, t + i * HOUR, 10.0)
    assert w.window(b, t + 4 * HOUR, 2 * HOUR) == (3, 30.0)
    assert w.result(b, t + 3 * HOUR + 10 * MIN)[1] == (1, 10.0)
    b = w.update(b, T0 + 3 * DAY, 1.0)
    assert len(b) == 1  # older buckets expired: bounded by the horizon
    med = RecentMedian(3)
    m = med.initial(T0)
    for x in (5.0, 1.0, 3.0, 100.0):
        m = med.update(m, T0, x)
    assert med.result(m, T0) == (3.0, 3)


# ----------------------------------------------------------------------------------------------- join
@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_join_in_every_arrival_order(order: tuple[int, ...]) -> None:
    parts = [
        ("declarations", decl(ts=T0 + 20 * MIN)),
        ("logistics", logi("weighbridge", T0 + 5 * MIN, measured_gross_kg=33_000.0)),
        ("logistics", logi("gate_in", T0)),
        ("logistics", logi("manifest", T0 - 2 * HOUR, manifest_gross_kg=30_300.0)),
    ]
    out = run([parts[i] for i in order])
    assert len(out) == 1
    f = out[0].facts
    assert (
        f["weigh_present"]
        and f["weigh_excess_kg"] == 3000.0
        and f["weigh_excess_ratio"] == pytest.approx(0.1)
    )
    assert f["decl_id"] == "D1"
    # gate-in and manifest join when they came before the weighbridge completed the declaration
    if order.index(2) < max(order.index(0), order.index(1)):
        assert f["gate_in_present"] and f["gate_in_to_decl_s"] == 1200.0
    if order.index(3) < max(order.index(0), order.index(1)):
        assert f["manifest_gap_ratio"] == pytest.approx(30_000 / 30_300 - 1)


def test_every_fact_is_filled_with_its_declared_type() -> None:
    f = run([("logistics", logi("weighbridge", measured_gross_kg=30_000.0)), ("declarations", decl())])[
        0
    ].facts
    assert set(f) == set(FACT_TYPES)
    py = {"bool": bool, "int": int, "double": float, "string": str, "list(string)": list}
    for name, t in FACT_TYPES.items():
        assert isinstance(f[name], py[t]) and not (t in ("int", "double") and isinstance(f[name], bool)), name


def test_deadline_decides_with_what_is_known_and_says_what_was_missing() -> None:
    e = FeatureEngine(cfg(deadline_ms=30 * MIN))
    assert run([("declarations", decl())], e) == []
    assert e.advance(T0 + 29 * MIN) == []
    out = e.advance(T0 + 30 * MIN)
    assert len(out) == 1 and out[0].trigger_topic == "deadline"
    assert out[0].missing == ["weighbridge", "gate_in", "manifest", "track"]
    assert out[0].facts["weigh_present"] is False


def test_reading_outside_the_join_window_does_not_join() -> None:
    e = FeatureEngine(cfg(join_window_ms=HOUR))
    run(
        [
            ("logistics", logi("weighbridge", T0 - 2 * HOUR, measured_gross_kg=40_000.0)),
            ("declarations", decl()),
        ],
        e,
    )
    assert e.advance(T0 + HOUR)[0].facts["weigh_present"] is False


def test_next_trip_is_never_judged_by_the_previous_trips_weighbridge_reading() -> None:
    """A truck back within the join window for its next load: its declaration (filed before it reaches the
    weighbridge) waits for its own reading instead of taking the previous, heavier one across the gate-out."""
    first = [
        ("logistics", logi("weighbridge", T0, measured_gross_kg=40_000.0)),
        ("declarations", decl(1, T0 + 10 * MIN, gross_kg=40_000.0)),
        ("logistics", logi("gate_out", T0 + HOUR)),
    ]
    e = FeatureEngine(cfg())
    assert [r.decl["decl_id"] for r in run(first, e)] == ["D1"]
    assert run([("declarations", decl(2, T0 + 3 * HOUR, gross_kg=30_000.0))], e) == []  # waits: not joined
    out = run([("logistics", logi("weighbridge", T0 + 3 * HOUR + 20 * MIN, measured_gross_kg=30_060.0))], e)
    assert [r.decl["decl_id"] for r in out] == ["D2"]
    assert out[0].facts["weigh_gross_kg"] == 30_060.0
    assert abs(out[0].facts["weigh_excess_ratio"]) < 0.01


def test_a_held_declaration_meets_its_own_trip_though_the_next_trips_were_read_first() -> None:
    """A backlog read unevenly: the logistics partition is read two trips ahead before the declaration is
    decided (held behind the input clock). It still meets its own trip's gate-in, manifest and weighbridge."""
    e = FeatureEngine(cfg())
    e.hold(T0 - HOUR)
    trips = [(T0, 40_000.0), (T0 + 3 * HOUR, 31_000.0), (T0 + 6 * HOUR, 25_000.0)]
    for start, kg in trips:
        run(
            [
                ("logistics", logi("gate_in", start - 20 * MIN)),
                ("logistics", logi("weighbridge", start, measured_gross_kg=kg)),
            ],
            e,
        )
        run([("logistics", logi("manifest", start - 10 * MIN, manifest_gross_kg=kg - 500))], e)
        run([("logistics", logi("gate_out", start + HOUR))], e)
    assert run([("declarations", decl(1, T0 + 10 * MIN, gross_kg=39_000.0))], e) == []  # held
    e.hold(None)
    (ready,) = e.release()
    f = ready.facts
    assert f["weigh_gross_kg"] == 40_000.0 and f["manifest_gross_kg"] == 39_500.0
    assert f["gate_in_to_decl_s"] == 30 * 60 and ready.missing == ["track"]
    restored = FeatureEngine(cfg())  # the histories survive a restart
    restored.restore_keys({k: v for k, v in e.drain_dirty().items() if v is not None})
    run([("declarations", decl(2, T0 + 3 * HOUR + 5 * MIN, gross_kg=31_000.0))], restored)
    assert restored.pending("MN-1") == []  # decided at once: its own trip's reading is there
    (ready,) = run([("declarations", decl(3, T0 + 3 * HOUR + 6 * MIN, gross_kg=30_000.0))], restored)
    assert ready.facts["weigh_gross_kg"] == 31_000.0


def test_a_gate_out_ends_the_trip_in_event_time_not_when_it_is_read() -> None:
    """Read ahead in a backlog, the gate-out comes before the trip's last GPS points: they still belong to
    the trip, the declaration decided before the gate-out has its track, and a point after the gate-out
    starts the next trip."""
    e = FeatureEngine(cfg())
    e.hold(T0 - HOUR)
    run([("logistics", logi("weighbridge", T0 - 5 * MIN, measured_gross_kg=30_000.0))], e)
    points = [("tracks", point(T0 - 20 * MIN + i * MIN, 42.6 - 0.01 * i, 106.85)) for i in range(20)]
    run([*points[:10], ("declarations", decl(1, T0))], e)  # held behind the clock
    run([("logistics", logi("gate_out", T0 + HOUR)), *points[10:]], e)  # the gate-out read before the rest
    e.hold(None)
    (ready,) = e.release()
    assert ready.facts["track_points"] == 20 and "track" not in ready.missing
    run([("tracks", point(T0 + 2 * HOUR, 43.0, 106.85))], e)  # after the gate-out: the next trip
    run([("logistics", logi("weighbridge", T0 + 2 * HOUR, measured_gross_kg=30_000.0))], e)
    (nxt,) = run([("declarations", decl(2, T0 + 2 * HOUR + MIN))], e)
    assert nxt.facts["track_points"] == 1
    (late,) = run([("declarations", decl(3, T0 + 30 * MIN))], e)  # a declaration of the first trip, late:
    assert "track" in late.missing  # the track is the next trip's, not its own


def test_a_reading_after_the_deadline_is_not_joined_as_live() -> None:
    """Live, a declaration is decided without its reading once its deadline passed; read ahead in a backlog,
    a later reading must not join it either (the decision would differ from the live one)."""
    e = FeatureEngine(cfg(deadline_ms=30 * MIN))
    e.hold(T0 - HOUR)
    run(
        [("declarations", decl()), ("logistics", logi("weighbridge", T0 + 40 * MIN, measured_gross_kg=1.0))],
        e,
    )
    e.hold(None)
    assert e.release() == []  # not complete: the reading came after its deadline
    (ready,) = e.advance(T0 + 30 * MIN)
    assert ready.trigger_topic == "deadline" and "weighbridge" in ready.missing


def test_redelivered_declaration_is_decided_once() -> None:
    e = FeatureEngine(cfg())
    evs = [("logistics", logi("weighbridge", measured_gross_kg=30_000.0)), ("declarations", decl())]
    assert len(run(evs, e)) == 1
    assert run([("declarations", decl())], e) == []


# ------------------------------------------------------------------------------------------- features
def test_unit_value_against_the_rolling_median_of_the_hs_code() -> None:
    e = FeatureEngine(cfg())
    evs: list[tuple[str, dict[str, Any]]] = []
    for i, v in enumerate(
        (20_000.0, 29_000.0, 30_000.0, 31_000.0, 40_000.0)
    ):  # unit values 0.69..1.38 CNY/kg
        evs.append(("declarations", decl(i, T0 + i * MIN, plate=f"P{i}", mode="self_drive", value_cny=v)))
    evs.append(("declarations", decl(9, T0 + 10 * MIN, plate="P9", mode="self_drive", value_cny=14_500.0)))
    out = run(evs, e)
    last = out[-1].facts
    assert last["hs_median_n"] == 5
    assert last["hs_median_unit_value"] == pytest.approx(30_000 / 29_000)
    assert last["unit_value_ratio"] == pytest.approx(0.5 / (30_000 / 29_000))
    assert out[0].facts["unit_value_ratio"] == 1.0 and out[0].facts["hs_median_n"] == 0


def test_enterprise_velocity_and_split_shipments() -> None:
    values = [
        (0, 45_000.0),
        (2 * HOUR, 46_000.0),
        (5 * HOUR, 49_000.0),
        (25 * HOUR, 48_000.0),
        (26 * HOUR + 15 * MIN, 10.0),
    ]
    evs = [
        ("declarations", decl(i, T0 + t, plate=f"S{i}", mode="self_drive", value_cny=v))
        for i, (t, v) in enumerate(values)
    ]
    out = run(evs)
    f = {r.decl["decl_id"]: r.facts for r in out}
    assert (f["D2"]["split_count_24h"], f["D2"]["split_value_24h"]) == (3, 140_000.0)
    assert (f["D3"]["split_count_24h"], f["D3"]["split_value_24h"]) == (
        3,
        143_000.0,
    )  # the 45k of hour 0 left the 24 h
    assert f["D4"]["split_count_24h"] == 2  # the pattern of the last 24 h; 10 CNY itself is not near the line
    assert (f["D2"]["ent_decl_1h"], f["D2"]["ent_decl_24h"]) == (1, 3)
    assert (f["D4"]["ent_decl_24h"], f["D4"]["ent_decl_7d"]) == (3, 5)
    assert f["D4"]["ent_value_7d"] == pytest.approx(sum(v for _, v in values))


@pytest.mark.parametrize(
    ("points", "gap_s", "dwell_s", "stops"),
    [
        # steady drive: points each minute, nothing suspicious
        ([(i * MIN, 42.60 - 0.01 * i, 106.85, 45.0) for i in range(10)], 60.0, 0.0, 0),
        # a 40-minute GPS gap
        ([(0, 42.60, 106.85, 45.0), (40 * MIN, 42.50, 106.85, 45.0)], 2400.0, 0.0, 0),
        # 30 minutes stopped next to the crossing: dwell near the border, and an unscheduled stop
        ([(i * 5 * MIN, 42.34, 106.85, 0.0) for i in range(7)], 300.0, 1800.0, 1),
        # stopped 20 minutes at the port itself: scheduled, no dwell (5+ km from the crossing)
        ([(i * 5 * MIN, 42.25, 106.87, 0.0) for i in range(5)], 300.0, 0.0, 0),
    ],
    ids=["steady", "gap", "dwell-near-border", "stop-at-port"],
)
def test_track_statistics(
    points: list[tuple[int, float, float, float]], gap_s: float, dwell_s: float, stops: int
) -> None:
    evs: list[tuple[str, dict[str, Any]]] = [("tracks", point(T0 + t, la, lo, v)) for t, la, lo, v in points]
    end = T0 + points[-1][0]
    evs += [
        ("logistics", logi("weighbridge", end, measured_gross_kg=30_000.0)),
        ("declarations", decl(ts=end)),
    ]
    f = run(evs)[0].facts
    assert (f["gps_gap_max_s"], f["border_dwell_s"], f["unscheduled_stops"]) == (gap_s, dwell_s, stops)
    assert f["track_points"] == len(points) and f["track_present"]


def test_corridor_deviation() -> None:
    evs = [
        ("tracks", point(T0, 42.60, 106.85)),
        ("tracks", point(T0 + MIN, 42.55, 106.97)),
        ("logistics", logi("weighbridge", T0 + MIN, measured_gross_kg=30_000.0)),
        ("declarations", decl(ts=T0 + MIN)),
    ]
    f = run(evs)[0].facts
    assert f["corridor_dev_km"] == pytest.approx(0.12 * 111.32 * 0.7372, rel=0.02)  # 0.12 deg of longitude


def test_out_of_order_points_fold_in_late_ones_are_returned() -> None:
    e = FeatureEngine(cfg(track_lateness_ms=10 * MIN))
    run(
        [
            ("tracks", point(T0 + 30 * MIN, 42.6, 106.85)),
            ("tracks", point(T0 + 25 * MIN, 42.6, 106.85)),
            ("tracks", point(T0, 42.6, 106.85)),
        ],
        e,
    )
    late = e.drain_late()
    assert [ev["ts_ms"] for _, ev in late] == [T0]
    assert e.convs.get("MN-1").track.points == 2


def test_self_drive_crossings_and_entries_not_written_off() -> None:
    evs: list[tuple[str, dict[str, Any]]] = []
    for i in range(3):
        t = T0 + i * 3 * HOUR
        evs.append(("logistics", logi("gate_in", t, plate="SD", ic_card="IC1", direction="in")))
        if i != 1:  # the second entry is never written off
            evs.append(("logistics", logi("gate_out", t + HOUR, plate="SD", ic_card="IC1", direction="out")))
    evs.append(("logistics", logi("gate_in", T0 + 9 * HOUR, plate="SD", ic_card="IC1", direction="in")))
    evs.append(("declarations", decl(ts=T0 + 9 * HOUR + MIN, plate="SD", mode="self_drive")))
    f = run(evs)[0].facts
    assert f["sd_crossings_24h"] == 4 and f["sd_open_entries"] == 1


def test_watchlist_update_takes_effect_and_expires() -> None:
    w = Watchlists()
    e = FeatureEngine(cfg(), watchlists=w)
    first = run([("declarations", decl(1, mode="self_drive"))], e)[0].facts
    w.add("enterprise", "E1", "informant", expires_ms=T0 + HOUR)
    second = run([("declarations", decl(2, T0 + MIN, mode="self_drive"))], e)[0].facts
    third = run([("declarations", decl(3, T0 + 2 * HOUR, mode="self_drive"))], e)[0].facts
    assert not first["watch_enterprise"]
    assert second["watch_enterprise"] and second["watch_source"] == "informant"
    assert not third["watch_enterprise"]


def test_violation_history_is_bayesian_smoothed() -> None:
    e = FeatureEngine(cfg(prior_violations=1.0, prior_clean=19.0))
    first = run([("declarations", decl(1, mode="self_drive"))], e)[0].facts
    assert first["ent_violation_rate"] == pytest.approx(0.05)  # a new enterprise is neither 0 nor 1
    run(
        [
            (
                "inspection-results",
                {"command_id": "c1", "decl_id": "D1", "ts_ms": T0 + HOUR, "outcome": "violation"},
            )
        ],
        e,
    )
    f = run([("declarations", decl(2, T0 + 2 * HOUR, mode="self_drive"))], e)[0].facts
    assert f["ent_violation_rate"] == pytest.approx(2 / 21)
    assert f["declarant_violation_rate"] == pytest.approx(2 / 21)


def test_state_expires_and_snapshots_round_trip() -> None:
    e = FeatureEngine(cfg(state_ttl_ms=HOUR))
    run([("tracks", point(T0, 42.6, 106.85)), ("declarations", decl(ts=T0))], e)
    dirty = e.drain_dirty()
    assert dirty["MN-1"] is not None
    restored = FeatureEngine(cfg(state_ttl_ms=HOUR))
    restored.restore_keys({k: v for k, v in dirty.items() if v is not None})
    assert restored.convs.get("MN-1").pending[0]["decl_id"] == "D1"
    out = restored.advance(T0 + 30 * MIN)  # the pending declaration's deadline survives the round trip
    assert [r.decl["decl_id"] for r in out] == ["D1"]
    restored.advance(T0 + 3 * HOUR)
    assert "MN-1" not in restored.convs and restored.drain_dirty() == {"MN-1": None}
