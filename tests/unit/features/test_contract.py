"""One contract over every aggregator and every keyed store: state in and out, plain-dict snapshots that
round-trip, bounded size and age."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from features.aggregates import NewShare, RecentMedian, RecentValues, SmoothedRate, WindowSums
from features.config import DAY, HOUR, MIN, FeatureConfig
from features.enterprise import NEW_HS, SPLITS, VELOCITY
from features.join import Conv, conv_store
from features.store import ChangelogStore, KeyedStore, MemoryStore
from features.track import Track

T0 = 1_790_000_000_000

# every aggregator the engine uses, plus one of each kind with small bounds, and what it takes in
AGGREGATORS: dict[str, tuple[Any, Callable[[random.Random], Any]]] = {
    "velocity": (VELOCITY, lambda r: r.uniform(1, 1e5)),
    "new_hs": (NEW_HS, lambda r: f"{r.randrange(300):06d}"),
    "splits": (SPLITS, lambda r: r.uniform(40_000, 50_000)),
    "hs_median": (RecentMedian(101), lambda r: r.uniform(0.1, 100)),
    "violations": (SmoothedRate(1.0, 19.0), lambda r: r.random() < 0.1),
    "small_window_sums": (WindowSums(MIN, 10 * MIN, (MIN, 5 * MIN)), lambda r: r.uniform(0, 10)),
    "small_median": (RecentMedian(5), lambda r: r.uniform(0, 10)),
    "small_values": (RecentValues(HOUR, 7), lambda r: r.uniform(0, 10)),
    "small_new_share": (NewShare(HOUR, 4), lambda r: str(r.randrange(10))),
}


def _feed(agg: Any, draw: Callable[[random.Random], Any], n: int, seed: int = 1) -> tuple[Any, int]:
    r = random.Random(seed)
    ts = T0
    state = agg.initial(ts)
    for _ in range(n):
        ts += r.randrange(0, 20 * MIN)
        state = agg.update(state, ts, draw(r))
        assert agg.size(state) <= agg.bound, "state grew past its bound"
    return state, ts


@pytest.mark.parametrize("name", list(AGGREGATORS))
def test_aggregator_contract(name: str) -> None:
    agg, draw = AGGREGATORS[name]
    empty = agg.initial(T0)
    agg.result(empty, T0)  # a fresh state has a result (no KeyError, no division by zero)
    state, ts = _feed(agg, draw, 2_000)
    # the snapshot is a plain JSON object, and restoring it gives the same results now and later
    snap = agg.to_dict(state)
    assert isinstance(snap, dict)
    restored = agg.from_dict(orjson.loads(orjson.dumps(snap)))
    for later in (ts, ts + MIN, ts + HOUR, ts + 8 * DAY):
        assert agg.result(restored, later) == agg.result(state, later)
    r = random.Random(7)
    for _ in range(50):
        ts += r.randrange(0, 20 * MIN)
        x = draw(r)
        state, restored = agg.update(state, ts, x), agg.update(restored, ts, x)
        assert agg.result(restored, ts) == agg.result(state, ts)
    # the same input gives the same state: nothing depends on anything but the events
    again, _ = _feed(agg, draw, 2_000)
    assert agg.to_dict(again) == agg.to_dict(_feed(agg, draw, 2_000)[0])


def test_window_sums_are_as_of_event_time() -> None:
    w = WindowSums(10 * MIN, DAY, (HOUR, DAY))
    s = w.initial(T0)
    for i in range(20):
        s = w.update(s, T0 + i * HOUR, 1.0)
    assert w.result(s, T0 + 5 * HOUR) == [(2, 2.0), (6, 6.0)]  # later updates do not count before they happen


# ---------------------------------------------------------------------------------------------- stores
def _conv_store() -> ChangelogStore[str, Any]:
    return conv_store(FeatureConfig(max_conveyances=3, state_ttl_ms=HOUR))


STORES: dict[str, Callable[[], KeyedStore[str, Any]]] = {
    "memory": lambda: MemoryStore(3, HOUR),
    "changelog": lambda: ChangelogStore(3, HOUR, lambda v: {"v": v}, lambda d: d["v"]),
    "conveyances": _conv_store,
}


def _value(store: KeyedStore[str, Any], n: int) -> Any:
    return (
        Conv(seen=n, sd_open=n) if isinstance(store, ChangelogStore) and store.to_dict is Conv.to_dict else n
    )


@pytest.mark.parametrize("name", list(STORES))
def test_store_contract(name: str) -> None:
    s = STORES[name]()
    a, b, c, d = (_value(s, i) for i in range(4))
    assert s.get("a") is None and len(s) == 0
    s.put("a", a, T0)
    s.put("b", b, T0 + MIN)
    s.put("c", c, T0 + 2 * MIN)
    assert s.get("a") == a and "a" in s and len(s) == 3
    s.put("a", a, T0 + 3 * MIN)  # a write refreshes: "b" is now the least recently written
    s.put("d", d, T0 + 4 * MIN)
    assert "b" not in s and len(s) == 3, "bounded by size: the least recently written goes"
    assert s.get("c") == c  # a read does not refresh
    s.delete("c")
    s.delete("c")  # deleting what is not there is fine
    assert [k for k, _ in s.items()] == ["a", "d"]
    assert s.expire(T0 + HOUR + 3 * MIN, keep=lambda v: False) == []  # "a" written at +3 min: still live
    assert s.expire(T0 + HOUR + 3 * MIN + 1, keep=lambda v: v == d) == ["a"]
    assert s.expire(T0 + 9 * HOUR, keep=lambda v: v == d) == [], "keep holds on to a key"
    assert s.expire(T0 + 9 * HOUR) == ["d"] and len(s) == 0


@pytest.mark.parametrize("name", ["changelog", "conveyances"])
def test_changelog_store_drains_changes_as_plain_dicts(name: str) -> None:
    s = STORES[name]()
    assert isinstance(s, ChangelogStore)
    vals = [_value(s, i) for i in range(5)]
    for i, v in enumerate(vals[:4]):
        s.put(f"k{i}", v, T0 + i)  # k0 is evicted by k3
    s.delete("k1")
    changes = s.drain_changes()
    assert changes.keys() == {"k0", "k1", "k2", "k3"}
    assert changes["k0"] is None and changes["k1"] is None
    for k in ("k2", "k3"):
        snap = changes[k]
        assert isinstance(snap, dict)
        assert orjson.loads(orjson.dumps(snap)) == snap, "a snapshot is plain JSON"
        assert s.from_dict(snap) == s.get(k)
    assert s.drain_changes() == {}
    other = STORES[name]()
    assert isinstance(other, ChangelogStore)
    other.restore("k2", s.from_dict(changes["k2"]), T0)  # type: ignore[arg-type]
    assert other.get("k2") == s.get("k2") and other.drain_changes() == {}, "a restore is not a change"
    other.mark("k2")
    other.mark("nope")
    assert list(other.drain_changes()) == ["k2"]


def test_conveyance_snapshot_is_a_dict_and_reads_the_formats_written_before() -> None:
    c = Conv(seen=T0, weighs=[(30_000.0, T0)], pending=[{"decl_id": "D1", "ts_ms": T0}], gate_outs=[T0 - 1])
    c.track = Track(fix=(42.0, 106.0, T0), first_ts=T0 - HOUR, points=7, dev_max=1.5, corridor=0)
    snap = c.to_dict()
    assert snap["track"]["points"] == 7 and snap["weighs"] == [(30_000.0, T0)]
    assert Conv.from_dict(orjson.loads(orjson.dumps(snap))) == c
    # the latest reading of each kind too, for a worker of the previous version in a rolling upgrade
    assert snap["weigh"] == (30_000.0, T0) and snap["gate_out"] == T0 - 1 and snap["gate_in"] is None
    # a dict with the latest reading of each kind only (before the histories), then a positional list
    latest = {k: v for k, v in orjson.loads(orjson.dumps(snap)).items() if k not in ("weighs", "gate_outs")}
    latest |= {"weigh": [30_000.0, T0], "gate_in": None, "manifest": None, "gate_out": T0 - 1}
    assert Conv.from_dict({k: v for k, v in latest.items() if k not in ("gate_ins", "manifests")}) == c
    old = [T0, [30_000.0, T0], None, None, [{"decl_id": "D1", "ts_ms": T0}], [42.0, 106.0, T0], T0 - HOUR]
    old += [7, 0, 0, 1.5, 0, None, False, 0, [], 0, T0 - 1]
    assert Conv.from_dict(old) == c
