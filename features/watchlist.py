"""Watchlists from intelligence (conveyance, enterprise, declarant), with a source and an expiry. Pure.

The agents keep a copy in Redis (hash ``bukong:watch:<kind>``: id -> {"source", "expires_ms"}) that analysts
update live; workers reload it every few seconds into this object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("conveyance", "enterprise", "declarant")


@dataclass
class Watchlists:
    max_entries: int = 100_000
    entries: dict[str, dict[str, tuple[str, int]]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def add(self, kind: str, id_: str, source: str, expires_ms: int) -> None:
        if kind not in KINDS:
            raise ValueError(f"watchlist kind must be one of {KINDS}, got {kind!r}")
        book = self.entries[kind]
        book[id_] = (source, expires_ms)
        if len(book) > self.max_entries:  # the oldest-expiring entry goes first
            del book[min(book, key=lambda k: book[k][1])]

    def remove(self, kind: str, id_: str) -> None:
        self.entries[kind].pop(id_, None)

    def lookup(self, kind: str, id_: str, ts_ms: int) -> str | None:
        """The source of a live entry, or None (an expired entry is dropped)."""
        hit = self.entries[kind].get(id_)
        if hit is None:
            return None
        if hit[1] <= ts_ms:
            del self.entries[kind][id_]
            return None
        return hit[0]

    def replace(self, other: Watchlists) -> None:
        self.entries = other.entries
