"""Valuation: a declaration's unit value against the rolling median of its (HS code, origin).

Cross-conveyance state keyed by (HS code, origin) in a ``KeyedStore``. The median is read before the
declaration joins it. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from features.aggregates import MedianState, RecentMedian
from features.config import FeatureConfig
from features.store import KeyedStore, MemoryStore


class Valuation:
    def __init__(self, cfg: FeatureConfig, medians: KeyedStore[tuple[str, str], MedianState] | None = None):
        self.median = RecentMedian(cfg.hs_median_size)
        self.medians: KeyedStore[tuple[str, str], MedianState] = medians or MemoryStore(cfg.max_keys)

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
        self.medians.put(key, st, ts)
