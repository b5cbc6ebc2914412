"""A deep copy of a keyed store is a store of its own (a replay or a test forks an engine's state)."""

from __future__ import annotations

import copy

from features.store import ChangelogStore, MemoryStore


def test_a_copied_store_reads_and_writes_its_own_data() -> None:
    a: MemoryStore[str, list[int]] = MemoryStore(2)
    a.put("k", [1], 10)
    b = copy.deepcopy(a)
    b.put("k", [2], 20)
    b.put("j", [3], 30)
    b.put("i", [4], 40)  # over the bound: "k" goes
    assert a.get("k") == [1] and a.get("j") is None and len(a) == 1
    assert b.get("k") is None and b.get("i") == [4] and b.evicted == 1 and a.evicted == 0
    a.get("k").append(5)  # type: ignore[union-attr]
    assert b.get("j") == [3]


def test_a_copied_changelog_store_keeps_its_own_changes() -> None:
    a: ChangelogStore[str, dict[str, int]] = ChangelogStore(10, None, to_dict=dict, from_dict=dict)
    a.put("k", {"n": 1}, 10)
    b = copy.deepcopy(a)
    b.put("j", {"n": 2}, 20)
    assert a.get("j") is None and b.get("j") == {"n": 2}
    assert set(a.drain_changes()) == {"k"}
    assert set(b.drain_changes()) == {"k", "j"}
