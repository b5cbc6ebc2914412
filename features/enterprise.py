"""Enterprise facts: declaration velocity and value, the share of new HS codes, split-shipment counters.

Cross-conveyance state, keyed by enterprise and by (enterprise, HS code), each in a ``KeyedStore``. A
declaration is taken in when it arrives (``take``) and its facts read when it is decided (``facts``).
Pure: event time in, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from features.aggregates import Buckets, NewShare, RecentValues, SeenState, WindowSums
from features.config import DAY, HOUR, MIN, FeatureConfig
from features.store import KeyedStore, MemoryStore

VELOCITY = WindowSums(10 * MIN, 7 * DAY, (HOUR, DAY, 7 * DAY))
Member = tuple[str, int, str, float, str]  # a declaration taken in: enterprise, ts, decl_id, value, HS code
BY_TIME = itemgetter(1, 2)  # members in (event time, declaration id) order
NEW_HS = NewShare(7 * DAY, 200)
SPLITS = RecentValues(DAY, 100)


@dataclass(slots=True)
class EntState:
    sums: Buckets  # declarations and their value in 10-minute buckets over 7 days
    seen: SeenState  # HS codes first and last declared

    def to_dict(self) -> dict[str, Any]:
        return {"sums": VELOCITY.to_dict(self.sums), "hs": NEW_HS.to_dict(self.seen)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EntState:
        return cls(VELOCITY.from_dict(d["sums"]), NEW_HS.from_dict(d["hs"]))


class Enterprise:
    def __init__(
        self,
        cfg: FeatureConfig,
        ents: KeyedStore[str, EntState] | None = None,
        splits: KeyedStore[tuple[str, str], Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.ents: KeyedStore[str, EntState] = ents or MemoryStore(cfg.max_enterprises)
        self.splits: KeyedStore[tuple[str, str], Any] = splits or MemoryStore(cfg.max_keys)
        # declarations taken in since the last drain, for a store shared by several workers (None: not kept)
        self.shared: list[Member] | None = None

    def take(self, d: dict[str, Any]) -> None:
        """The declaration joins its enterprise's velocity, HS history and split-shipment counters."""
        ts, ent_id, hs, value = d["ts_ms"], d["enterprise_id"], d["hs_code"], float(d["value_cny"])
        st = self.ents.get(ent_id)
        if st is None:
            st = EntState(VELOCITY.initial(ts), NEW_HS.initial(ts))
        VELOCITY.update(st.sums, ts, value)
        NEW_HS.update(st.seen, ts, hs)
        self.ents.put(ent_id, st, ts)
        if self.shared is not None:
            self.shared.append((ent_id, ts, d["decl_id"], value, hs))
        if self._split(value):
            key = (ent_id, hs)
            q = self.splits.get(key)
            self.splits.put(key, SPLITS.update(SPLITS.initial(ts) if q is None else q, ts, value), ts)

    def _split(self, value: float) -> bool:
        T = self.cfg.split_threshold_cny
        return self.cfg.split_low * T <= value < T

    def load(self, ent_id: str, since: int, first: dict[str, int], members: list[Member]) -> None:
        """Replace an enterprise's state by the one its declarations define, whoever took them in: ``since``
        (its first declaration's time), ``first`` (each HS code's first declaration) and ``members`` (its
        declarations of the last 7 days, any order, each once). The result does not depend on the order in
        which workers took them in: members are applied in (event time, declaration id) order."""
        members = sorted(members, key=BY_TIME)
        st = EntState(VELOCITY.initial(since), SeenState(since, dict(first)))
        VELOCITY.extend(st.sums, [(m[1], m[3]) for m in members])
        NEW_HS.extend(st.seen, [(m[1], m[4]) for m in members])
        splits: dict[str, Any] = {}
        for _, ts, _, value, hs in members:
            if self._split(value):
                q = splits.get(hs)
                splits[hs] = SPLITS.update(SPLITS.initial(ts) if q is None else q, ts, value)
        last = members[-1][1] if members else since
        self.ents.put(ent_id, st, last)
        for hs, q in splits.items():
            self.splits.put((ent_id, hs), q, q[-1][0])

    def incremental(self, ent_id: str) -> bool:
        """Whether taking an enterprise's next declarations in (event time, declaration id) order leaves the
        state ``load`` would build from all of them: it is held here and has never dropped an HS code for
        the bound (a dropped code's first time is forgotten here and kept by the shared store)."""
        st = self.ents.get(ent_id)
        return st is not None and len(st.seen.last) < NEW_HS.bound

    def facts(self, d: dict[str, Any], facts: dict[str, Any]) -> None:
        dts = d["ts_ms"]
        st = self.ents.get(d["enterprise_id"])
        if st is not None:
            (n1, _), (n24, v24), (n7, v7) = VELOCITY.result(st.sums, dts)
            facts["ent_decl_1h"], facts["ent_decl_24h"], facts["ent_value_24h"] = n1, n24, v24
            facts["ent_decl_7d"], facts["ent_value_7d"] = n7, v7
            share = NEW_HS.result(st.seen, dts)
            if share is not None:
                facts["ent_new_hs_share"] = share
        q = self.splits.get((d["enterprise_id"], d["hs_code"]))
        if q:
            facts["split_count_24h"], facts["split_value_24h"] = SPLITS.result(q, dts)
