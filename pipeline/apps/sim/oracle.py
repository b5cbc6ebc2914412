"""Inspection results: the only way the truth reaches the pipeline.

A dispatched command gets a result after a realistic delay (event time), found with a probability that depends
on the lane and on how the fraud shows (papers vs the load), with the value found. Release gets nothing.
Deterministic: the draw for a declaration depends only on (seed, decl_id), not on arrival order.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Any

MIN_MS = 60_000
HOUR_MS = 3_600_000

DOCUMENTARY = frozenset({"undervaluation", "split_shipment", "hs_misclass", "coal_grade"})
# P(found | fraud) by lane, for typologies that show on paper vs only in the load
DETECT = {
    "physical_inspection": (0.80, 0.92),
    "intercept": (0.75, 0.90),
    "document_check": (0.70, 0.20),
    "post_clearance_audit": (0.60, 0.05),
}
DELAY_MIN = {
    "physical_inspection": (30, 240),
    "intercept": (20, 120),
    "document_check": (60, 360),
    "post_clearance_audit": (24 * 60, 72 * 60),
}


class InspectionOracle:
    def __init__(
        self,
        truth_lookup: Callable[[str], dict[str, Any] | None],
        seed: int = 0,
        time_scale: float = 1.0,
        delay_min: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        """``delay_min``: lane -> (min, max) minutes until the result, over the defaults (a scenario's
        ``inspection_delay_min``)."""
        self.truth_lookup = truth_lookup
        self.delay_min = {**DELAY_MIN, **(delay_min or {})}
        self.seed = seed
        self.time_scale = time_scale  # < 1 compresses delays (live runs faster than event time)
        self._due: list[tuple[int, int, dict[str, Any]]] = []
        self._seq = 0
        self.seen: set[str] = set()

    def _rng(self, decl_id: str) -> random.Random:
        h = hashlib.blake2b(f"{self.seed}:{decl_id}".encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(h, "big"))

    def on_command(self, cmd: dict[str, Any], now_ms: int) -> None:
        lane = cmd.get("lane", "release")
        if lane not in DETECT or cmd["command_id"] in self.seen:
            return
        self.seen.add(cmd["command_id"])
        truth = self.truth_lookup(cmd["decl_id"]) or {
            "is_fraud": False,
            "typology": "none",
            "value_at_stake_cny": 0.0,
        }
        rng = self._rng(cmd["decl_id"])
        lo, hi = self.delay_min[lane]
        delay = int(rng.uniform(lo, hi) * MIN_MS * self.time_scale)
        found = False
        if truth["is_fraud"]:
            p_doc, p_load = DETECT[lane]
            p = p_doc if truth["typology"] in DOCUMENTARY else p_load
            if truth["typology"] == "contraband":
                p *= 0.8
            found = rng.random() < p
        base = max(int(cmd.get("decided_ts_ms", now_ms)), now_ms)
        result = {
            "command_id": cmd["command_id"],
            "decl_id": cmd["decl_id"],
            "ts_ms": base + delay,
            "outcome": "violation" if found else "clean",
            "found_value_cny": round(truth["value_at_stake_cny"] * rng.uniform(0.7, 1.0), 2)
            if found
            else 0.0,
            "site": cmd.get("site", ""),
            "source": "simulator",
            "conveyance_id": cmd.get("conveyance_id", ""),
        }
        self._seq += 1
        heapq.heappush(self._due, (result["ts_ms"], self._seq, result))

    def due(self, now_ms: int) -> list[dict[str, Any]]:
        out = []
        while self._due and self._due[0][0] <= now_ms:
            out.append(heapq.heappop(self._due)[2])
        return out

    def pending(self) -> int:
        return len(self._due)
