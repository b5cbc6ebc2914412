"""``Enterprise.load`` builds an enterprise's state in one pass per aggregator (``WindowSums.extend``,
``NewShare.extend``): the same state as taking its members in one ``update`` at a time, in (event time,
declaration id) order."""

from __future__ import annotations

import random
from typing import Any

import pytest

from features.aggregates import NewShare, SeenState, WindowSums
from features.config import DAY, HOUR, MIN, FeatureConfig
from features.enterprise import NEW_HS, SPLITS, VELOCITY, Enterprise, EntState, Member

T0 = 1_790_000_000_000


def _members(r: random.Random, n: int, span_ms: int, codes: int) -> list[Member]:
    out: list[Member] = []
    for i in range(n):
        ts = T0 + r.randrange(span_ms)
        if r.random() < 0.2 and out:
            ts = out[-1][1]  # ties in event time: ordered by declaration id
        value = r.choice([r.uniform(1, 1e5), r.uniform(40_000, 50_000)])
        out.append(("E1", ts, f"D{r.randrange(10**6):06d}-{i}", value, f"{r.randrange(codes):06d}"))
    r.shuffle(out)
    return out


def _one_at_a_time(ent: Enterprise, ent_id: str, since: int, first: dict[str, int], members: list[Member]):
    """The reference: each member taken in by ``update``, in (event time, declaration id) order."""
    st = EntState(VELOCITY.initial(since), SeenState(since, dict(first)))
    splits: dict[str, Any] = {}
    for _, ts, _, value, hs in sorted(members, key=lambda m: (m[1], m[2])):
        VELOCITY.update(st.sums, ts, value)
        NEW_HS.update(st.seen, ts, hs)
        if ent._split(value):
            q = splits.get(hs)
            splits[hs] = SPLITS.update(SPLITS.initial(ts) if q is None else q, ts, value)
    return st, splits


@pytest.mark.parametrize("seed", range(12))
def test_load_is_the_members_taken_in_one_at_a_time(seed: int) -> None:
    r = random.Random(seed)
    span = r.choice([HOUR, DAY, 9 * DAY, 30 * DAY])  # beyond the 7-day horizon: buckets dropped
    codes = r.choice([3, 40, 260])  # over NEW_HS's bound of 200: codes evicted
    members = _members(r, r.randrange(1, 600), span, codes)
    first = {f"{c:06d}": T0 - r.randrange(DAY) for c in range(0, codes, 7)}
    since = T0 - DAY
    ent = Enterprise(FeatureConfig())
    ent.load("E1", since, first, members)
    st, splits = _one_at_a_time(ent, "E1", since, first, members)
    got = ent.ents.get("E1")
    assert got is not None
    assert list(got.sums.items()) == list(st.sums.items())  # the buckets, their order and their sums
    assert got.to_dict() == st.to_dict()
    assert list(got.seen.first.items()) == list(st.seen.first.items())
    assert list(got.seen.last.items()) == list(st.seen.last.items())
    for hs, q in splits.items():
        assert list(ent.splits.get(("E1", hs)) or []) == list(q)


@pytest.mark.parametrize("seed", range(8))
def test_extend_is_update_in_ascending_time(seed: int) -> None:
    r = random.Random(seed)
    sums = WindowSums(MIN, 10 * MIN, (MIN, 5 * MIN))
    share = NewShare(HOUR, 4)
    ts = T0
    items = []
    for _ in range(400):
        ts += r.choice([0, 1, 10_000, MIN, 7 * MIN, 30 * MIN])
        items.append((ts, r.uniform(0, 10), str(r.randrange(10))))
    start = r.randrange(len(items))  # a state already holding the first items, then the rest at once
    a, b = sums.initial(T0), sums.initial(T0)
    s1, s2 = share.initial(T0), share.initial(T0)
    for t, x, c in items[:start]:
        sums.update(a, t, x), sums.update(b, t, x), share.update(s1, t, c), share.update(s2, t, c)
    for t, x, c in items[start:]:
        sums.update(a, t, x)
        share.update(s1, t, c)
    sums.extend(b, [(t, x) for t, x, _ in items[start:]])
    share.extend(s2, [(t, c) for t, _, c in items[start:]])
    assert list(a.items()) == list(b.items())
    assert (list(s1.first.items()), list(s1.last.items())) == (list(s2.first.items()), list(s2.last.items()))
