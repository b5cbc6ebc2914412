"""Violation history: Bayesian-smoothed violation rates of enterprises, conveyances and declarants, learnt
from inspection results, and the decided declarations they are matched to.

State: ``decided`` (declaration id -> its enterprise, conveyance and declarant; at most 3 days and 300,000
declarations) and ``rates`` ((kind, id) -> trials and violations), each in a ``KeyedStore``. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from features.aggregates import SmoothedRate
from features.config import FeatureConfig
from features.store import KeyedStore, MemoryStore

KINDS = ("enterprise", "conveyance", "declarant")
Result = tuple[str, tuple[str, str, str], bool]  # decl_id, its (enterprise, conveyance, declarant), violation


class History:
    def __init__(
        self,
        cfg: FeatureConfig,
        decided: KeyedStore[str, tuple[str, str, str]] | None = None,
        rates: KeyedStore[tuple[str, str], list[float]] | None = None,
    ) -> None:
        self.rate = SmoothedRate(cfg.prior_violations, cfg.prior_clean)
        self.decided: KeyedStore[str, tuple[str, str, str]] = decided or MemoryStore(
            cfg.max_decided, cfg.decided_ttl_ms
        )
        self.rates: KeyedStore[tuple[str, str], list[float]] = rates or MemoryStore(cfg.max_keys * 4)
        # results learnt since the last drain, for a store shared by several workers (None: not kept)
        self.shared: list[Result] | None = None

    def remember(self, d: dict[str, Any]) -> None:
        """A decided declaration: its result, when it comes, teaches the history of its parties."""
        dts = d["ts_ms"]
        self.decided.put(
            d["decl_id"], (d["enterprise_id"], d["conveyance_id"], d.get("declarant_id") or ""), dts
        )
        self.decided.expire(dts)

    def on_result(self, ev: dict[str, Any]) -> None:
        parties = self.decided.get(ev["decl_id"])
        if parties is None or ev["outcome"] not in ("violation", "clean"):
            return
        ts, violated = ev["ts_ms"], ev["outcome"] == "violation"
        if self.shared is not None:
            self.shared.append((ev["decl_id"], parties, violated))
        for kind, id_ in zip(KINDS, parties, strict=True):
            if id_:
                key = (kind, id_)
                st = self.rates.get(key)
                if st is None:
                    st = self.rate.initial(ts)
                self.rates.put(key, self.rate.update(st, ts, violated), ts)

    def facts(self, d: dict[str, Any], facts: dict[str, Any]) -> None:
        ts = d["ts_ms"]
        for kind, fact, id_ in (
            ("enterprise", "ent_violation_rate", d["enterprise_id"]),
            ("conveyance", "conv_violation_rate", d["conveyance_id"]),
            ("declarant", "declarant_violation_rate", d.get("declarant_id") or ""),
        ):
            st = self.rates.get((kind, id_))
            facts[fact] = self.rate.result(st if st is not None else [0.0, 0.0], ts)

    def load(self, key: tuple[str, str], trials: float, violations: float) -> None:
        """Replace a party's history by the counts every worker's results add up to."""
        self.rates.put(key, [float(trials), float(violations)], 0)
