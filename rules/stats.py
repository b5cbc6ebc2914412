"""Per-rule, per-port counts and the hit rate (布控有效率): a pure accumulator, no clock, no I/O.

The agents feed it and export what ``snapshot()`` returns as Prometheus metrics (pipeline/io/metrics.py) and
through the API::

    stats = RuleStats()
    stats.on_evaluated(port, pack.in_scope(port))      # once per declaration: O(1), not O(rules)
    stats.on_hits(port, hits, dispatched=True)         # the RuleHits of that declaration
    stats.on_result(port, rule_ids, violation=True)    # a result for a declaration those rules hit

Per rule and per (rule, port): ``evaluations``, ``hits`` (active), ``shadow_hits``, ``dispatched``,
``results`` (inspection results received for declarations the rule hit), ``confirmed`` (results that found a
violation) and ``hit_rate = confirmed / results`` (None before the first result). State is bounded: at most
``max_keys`` (rule, port) pairs; pairs beyond that are counted under the port ``OTHER`` (never dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

COUNTS = ("evaluations", "hits", "shadow_hits", "dispatched", "results", "confirmed")
OTHER = "_other"


def hit_rate(confirmed: int, results: int) -> float | None:
    return round(confirmed / results, 4) if results else None


class RuleStats:
    __slots__ = ("_counts", "_evals", "max_keys")

    def __init__(self, max_keys: int = 20_000) -> None:
        self.max_keys = max_keys
        # (rule, port) -> [evaluations, hits, shadow_hits, dispatched, results, confirmed]
        self._counts: dict[tuple[str, str], list[int]] = {}
        # (port, rules in scope) -> declarations evaluated; expanded per rule only in snapshot()
        self._evals: dict[tuple[str, tuple[str, ...]], int] = {}

    def _row(self, rule: str, port: str) -> list[int]:
        key = (rule, port)
        row = self._counts.get(key)
        if row is None:
            if len(self._counts) >= self.max_keys:
                key = (rule, OTHER)
                row = self._counts.get(key)
                if row is not None:
                    return row
                if len(self._counts) >= self.max_keys + 1000:  # the overflow rows are bounded too
                    key = (OTHER, OTHER)
                    row = self._counts.get(key)
                    if row is not None:
                        return row
            row = self._counts[key] = [0] * len(COUNTS)
        return row

    def on_evaluated(self, port: str, rule_ids: tuple[str, ...], n: int = 1) -> None:
        """``n`` declarations at ``port`` were evaluated against ``rule_ids`` (pack.in_scope(port))."""
        key = (port, rule_ids)
        if key not in self._evals and len(self._evals) >= self.max_keys:
            key = (OTHER, rule_ids)
        self._evals[key] = self._evals.get(key, 0) + n

    def on_hits(self, port: str, hits: Iterable[Any], dispatched: bool) -> None:
        """The RuleHits of one declaration; ``dispatched``: a command went out for it."""
        for h in hits:
            row = self._row(h.rule_id, port)
            if h.status == "shadow":
                row[2] += 1
            else:
                row[1] += 1
                if dispatched:
                    row[3] += 1

    def on_result(self, port: str, rule_ids: Iterable[str], violation: bool) -> None:
        """An inspection result for a declaration that ``rule_ids`` hit (active or shadow)."""
        for rid in rule_ids:
            row = self._row(rid, port)
            row[4] += 1
            if violation:
                row[5] += 1

    def snapshot(self) -> dict[str, Any]:
        """``{"rules": {rule: {counts..., hit_rate, "ports": {port: {counts..., hit_rate}}}},
        "ports": {port: {counts..., hit_rate}}}``: plain JSON-able data."""
        cells: dict[tuple[str, str], list[int]] = {k: list(v) for k, v in self._counts.items()}
        for (port, rule_ids), n in self._evals.items():
            for rid in rule_ids:
                cells.setdefault((rid, port), [0] * len(COUNTS))[0] += n
        rules: dict[str, dict[str, Any]] = {}
        ports: dict[str, dict[str, Any]] = {}
        for (rid, port), row in sorted(cells.items()):
            r = rules.setdefault(rid, {**dict.fromkeys(COUNTS, 0), "ports": {}})
            p = ports.setdefault(port, dict.fromkeys(COUNTS, 0))
            r["ports"][port] = _with_rate(dict(zip(COUNTS, row, strict=True)))
            for name, v in zip(COUNTS, row, strict=True):
                r[name] += v
                p[name] += v
        for d in (*rules.values(), *ports.values()):
            d["hit_rate"] = hit_rate(d["confirmed"], d["results"])
        return {"rules": rules, "ports": ports}

    def merge(self, snapshot: Mapping[str, Any]) -> None:
        """Add another worker's ``snapshot()`` (per rule and port) into this one."""
        for rid, r in snapshot.get("rules", {}).items():
            for port, cell in r.get("ports", {}).items():
                row = self._row(rid, port)
                for i, name in enumerate(COUNTS):
                    row[i] += int(cell.get(name, 0))


def _with_rate(d: dict[str, Any]) -> dict[str, Any]:
    d["hit_rate"] = hit_rate(d["confirmed"], d["results"])
    return d
