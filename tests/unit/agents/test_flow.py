"""agents/flow.py: the fetch wait adapts to a starved partition; a partition that stands still is reported."""

from __future__ import annotations

import pytest

from agents.flow import FetchGovernor, Progress, StuckDetector

T0 = ("tracks", 0)
D0 = ("declarations", 0)


def test_a_lagging_partition_that_returns_nothing_raises_the_wait_until_the_cap() -> None:
    g = FetchGovernor(base_ms=5, cap_ms=200, patience=2)
    stalled = {T0: Progress(highwater=30_000, done=21_790), D0: Progress(500, 500)}
    # (D0 is caught up: calm, but the starved T0 keeps the wait from coming down)
    waits = [g.observe(stalled, eligible=True) for _ in range(12)]
    raised = [w for w in waits if w is not None]
    assert raised == [20, 40, 80, 160, 200]  # doubled (at least 20 ms), never past the cap
    assert g.wait_ms == 200


def test_the_wait_stays_when_the_partition_moves_or_the_worker_is_busy() -> None:
    g = FetchGovernor(base_ms=5, cap_ms=200, patience=2)
    for i in range(10):  # moving: lag, but the position advances every second
        assert g.observe({T0: Progress(30_000 + i, 1_000 * i)}, eligible=True) is None
    for _ in range(10):  # standing still while the handler is busy or the broker is away: not starved
        assert g.observe({T0: Progress(30_000, 9_000)}, eligible=False) is None
    for _ in range(10):  # caught up: nothing to fetch
        assert g.observe({T0: Progress(9_000, 9_000)}, eligible=True) is None
    assert g.wait_ms == 5


def test_a_raised_wait_comes_down_by_quarters_once_nothing_starves() -> None:
    g = FetchGovernor(base_ms=5, cap_ms=200, patience=2, calm_ticks=3)
    stalled = {T0: Progress(30_000, 100)}
    while g.observe(stalled, eligible=True) != 40:
        pass
    caught_up = {T0: Progress(30_000, 30_000)}
    changes = [g.observe(caught_up, eligible=True) for _ in range(30)]
    assert [w for w in changes if w is not None] == [30, 22, 16, 12, 9, 6, 5]  # down to the configured wait
    assert g.observe({T0: Progress(40_000, 30_000)}, eligible=True) is None  # starved once: patience
    assert g.observe({T0: Progress(40_000, 30_000)}, eligible=True) == 20  # too short again: back up


def test_a_revoked_partition_is_forgotten() -> None:
    g = FetchGovernor(base_ms=5, cap_ms=200, patience=2)
    g.observe({T0: Progress(100, 10)}, eligible=True)
    g.observe({D0: Progress(100, 100)}, eligible=True)  # T0 moved to another worker
    assert g.observe({T0: Progress(100, 10)}, eligible=True) is None  # first sight again, not starved yet


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        FetchGovernor(base_ms=50, cap_ms=10)


def test_a_partition_whose_position_stands_still_with_lag_is_reported_then_recovers() -> None:
    d = StuckDetector(after_s=30)
    assert d.observe({T0: Progress(100, 50)}, now_s=0) == (set(), set())
    assert d.observe({T0: Progress(120, 50)}, now_s=29) == (set(), set())
    assert d.observe({T0: Progress(140, 50)}, now_s=31) == ({T0}, set())
    assert d.stuck == {T0}
    assert d.observe({T0: Progress(150, 51)}, now_s=32) == (set(), {T0})
    assert d.stuck == set()


def test_an_idle_partition_without_lag_is_never_stuck() -> None:
    d = StuckDetector(after_s=5)
    for t in range(0, 100, 5):
        assert d.observe({T0: Progress(100, 100)}, now_s=t) == (set(), set())


def test_a_stuck_partition_revoked_counts_as_recovered_here() -> None:
    d = StuckDetector(after_s=5)
    d.observe({T0: Progress(100, 0)}, now_s=0)
    assert d.observe({T0: Progress(100, 0)}, now_s=6) == ({T0}, set())
    assert d.observe({}, now_s=7) == (set(), {T0})
