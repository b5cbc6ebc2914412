"""Results graded per key: each rule, each intelligence source, each watched entity (bounded).

A key's graded hit rate is Beta-smoothed towards a prior (the rule's severity weight, say):
``(found + prior * k) / (n + k)``. The decision policy reads it when ``PolicyConfig.grade_results`` is on,
and demotes a watched entity after ``lead_clean_limit`` clean inspections in a row. Pure core, no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any


class Grades:
    def __init__(self, pseudo: float = 8.0, max_keys: int = 20_000) -> None:
        self.pseudo = pseudo
        self.max_keys = max_keys
        self.book: OrderedDict[str, list[int]] = OrderedDict()  # key -> [inspections, found, clean streak]

    def add(self, keys: Iterable[str], found: bool) -> None:
        for key in keys:
            rec = self.book.get(key)
            if rec is None:
                rec = self.book[key] = [0, 0, 0]
                if len(self.book) > self.max_keys:
                    self.book.popitem(last=False)
            else:
                self.book.move_to_end(key)
            rec[0] += 1
            rec[1] += found
            rec[2] = 0 if found else rec[2] + 1

    def rate(self, key: str, prior: float) -> float:
        n, found, _ = self.book.get(key, (0, 0, 0))
        return (found + prior * self.pseudo) / (n + self.pseudo)

    def observed(self, key: str) -> tuple[int, int]:
        """Inspections graded under ``key`` and the violations they found."""
        n, found, _ = self.book.get(key, (0, 0, 0))
        return n, found

    def clean_streak(self, key: str) -> int:
        rec = self.book.get(key)
        return rec[2] if rec is not None else 0

    def stats(self, prefix: str = "") -> dict[str, dict[str, float]]:
        """Hit rate per key under ``prefix`` (``lead:``: per intelligence source, for /api/stats)."""
        return {
            k[len(prefix) :]: {"inspections": n, "found": f, "hit_rate": round(f / n, 4) if n else 0.0}
            for k, (n, f, _) in self.book.items()
            if k.startswith(prefix)
        }

    def snapshot(self) -> dict[str, Any]:
        return {"book": {k: list(v) for k, v in self.book.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.book = OrderedDict((str(k), [int(x) for x in v]) for k, v in dict(state.get("book", {})).items())
