"""Valuation: a declaration's unit value against the rolling median of its (HS code, origin).

Cross-conveyance state keyed by (HS code, origin) in a ``KeyedStore``. The median is read before the
declaration joins it. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from features.aggregates import MedianState, RecentMedian
from features.config import FeatureConfig
from features.store import KeyedStore, MemoryStore

Value = tuple[str, str, int, str, float]  # a unit value taken in: HS code, origin, ts, decl_id, CNY/kg


class Valuation:
    def __init__(self, cfg: FeatureConfig, medians: KeyedStore[tuple[str, str], MedianState] | None = None):
        self.median = RecentMedian(cfg.hs_median_size)
        self.medians: KeyedStore[tuple[str, str], MedianState] = medians or MemoryStore(cfg.max_keys)
        # unit values taken in since the last drain, for a store shared by several workers (None: not kept)
        self.shared: list[Value] | None = None

    def facts(self, d: dict[str, Any], facts: dict[str, Any]) -> None:
        """``hs_median_unit_value``, ``hs_median_n``, ``unit_value_ratio``; then the unit value joins."""
        key = (d["hs_code"], d.get("origin", ""))
        agg, ts = self.median, d["ts_ms"]
        st = self.medians.get(key)
        if st is None:
            st = agg.initial(ts)
        m, n = agg.result(st, ts)
        facts["hs_median_n"] = n
        unit_value = float(facts["unit_value"])
        if m:
            facts["hs_median_unit_value"] = m
            facts["unit_value_ratio"] = unit_value / m
        if unit_value > 0:
            agg.update(st, ts, unit_value)
            if self.shared is not None:
                self.shared.append((key[0], key[1], ts, d["decl_id"], unit_value))
        self.medians.put(key, st, ts)

    def incremental(self, key: tuple[str, str]) -> bool:
        """Whether taking a pair's next unit values in (event time, declaration id) order leaves the state
        ``load`` would build from all of them: it is held here (the median keeps the latest values)."""
        return key in self.medians

    def load(self, key: tuple[str, str], values: list[Value]) -> None:
        """Replace a (HS code, origin)'s median state by the one its latest unit values define, whoever took
        them in, applied in (event time, declaration id) order."""
        agg = self.median
        values = sorted(values, key=lambda v: (v[2], v[3]))
        st = agg.initial(0)
        for v in values[-agg.bound :]:
            agg.update(st, v[2], v[4])
        self.medians.put(key, st, values[-1][2] if values else 0)
