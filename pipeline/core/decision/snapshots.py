"""Feature snapshots taken at scoring time, kept until the inspection result (the label) arrives.

Labels come hours later and the facts of a declaration keep changing (new GPS points, new history), so the
model must learn from what it saw when it scored, never from facts recomputed later. The store is bounded in
size (oldest evicted first) and in time (entries older than ``ttl_ms`` of event time are dropped), and counts
what it had to drop so nothing disappears silently. ``snapshot()``/``restore()`` let an agent persist it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.decision.encode import slim

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    decl_id: str
    ts_ms: int
    facts: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


class SnapshotStore:
    """``put(decl_id, facts, ts_ms, **meta)`` at scoring; ``pop(decl_id, now_ms)`` when the label arrives."""

    def __init__(self, max_items: int = 200_000, ttl_ms: int = 3 * DAY_MS) -> None:
        if max_items <= 0 or ttl_ms <= 0:
            raise ValueError("max_items and ttl_ms must be positive")
        self.max_items = max_items
        self.ttl_ms = ttl_ms
        self._items: OrderedDict[str, Snapshot] = OrderedDict()
        self.evicted = 0  # dropped for size
        self.expired = 0  # dropped for age
        self.unknown = 0  # labels with no snapshot (never scored here, or already dropped)

    def __len__(self) -> int:
        return len(self._items)

    def put(self, decl_id: str, facts: Mapping[str, Any], ts_ms: int, **meta: Any) -> None:
        """Keep a slim copy of ``facts`` (only what the model reads); a re-score replaces the entry."""
        self._items.pop(decl_id, None)
        self._items[decl_id] = Snapshot(decl_id, ts_ms, slim(facts), dict(meta))
        self._purge(ts_ms)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
            self.evicted += 1

    def get(self, decl_id: str) -> Snapshot | None:
        return self._items.get(decl_id)

    def pop(self, decl_id: str, now_ms: int) -> Snapshot | None:
        """The snapshot for a label arriving at ``now_ms``, or None (counted) if unknown or too old."""
        snap = self._items.pop(decl_id, None)
        if snap is None:
            self.unknown += 1
            return None
        if now_ms - snap.ts_ms > self.ttl_ms:
            self.expired += 1
            return None
        self._purge(now_ms)
        return snap

    def _purge(self, now_ms: int) -> None:
        # insertion order is scoring order, so the oldest entries are at the front
        items = self._items
        while items:
            first = next(iter(items.values()))
            if now_ms - first.ts_ms <= self.ttl_ms:
                break
            items.popitem(last=False)
            self.expired += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "max_items": self.max_items,
            "ttl_ms": self.ttl_ms,
            "counts": [self.evicted, self.expired, self.unknown],
            "items": [[s.decl_id, s.ts_ms, s.facts, s.meta] for s in self._items.values()],
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> SnapshotStore:
        store = cls(int(state["max_items"]), int(state["ttl_ms"]))
        store.evicted, store.expired, store.unknown = (int(v) for v in state["counts"])
        for decl_id, ts_ms, facts, meta in state["items"]:
            store._items[decl_id] = Snapshot(decl_id, int(ts_ms), dict(facts), dict(meta))
        return store
