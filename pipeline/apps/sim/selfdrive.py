"""Border residents' self-drive crossings (边民自驾车): IC-card entries and exit write-offs, and their abuse.

A mixin of ``world.Simulator``: the draws come from the simulator's RNG in its fixed order.
"""

from __future__ import annotations

import random
from typing import Any

from pipeline.apps.sim.catalogue import SELF_DRIVE_GOODS
from pipeline.contracts import events as c

HOUR_MS = 3_600_000
MIN_MS = 60_000


class SelfDriveTraffic:
    rng: random.Random
    honest: bool
    seed: int
    self_drive: list[tuple[str, str, str]]
    _n_decl: int

    def _push(self, topic: str, ev: dict[str, Any]) -> None:
        raise NotImplementedError

    def _truth(
        self, decl_id: str, ts: int, port: str, ent: str, conv: str, typ: str, at_stake: float
    ) -> None:
        raise NotImplementedError

    def _self_drive(self, ts: int, prevalence: dict[str, float]) -> None:
        rng = self.rng
        plate, card, port = rng.choice(self.self_drive)
        abuse = rng.random() < prevalence.get("self_drive_abuse", 0.0)
        crossings = rng.randint(5, 7) if abuse else 1
        if self.honest and not abuse and rng.random() < 0.2:
            crossings = rng.randint(3, 7)  # a border resident commuting: several crossings, all written off
        never_out = abuse and rng.random() < 0.4
        for i in range(crossings):
            t_in = ts + i * int(rng.uniform(2, 4) * HOUR_MS)
            self._n_decl += 1
            decl_id = f"D{self.seed % 1000:03d}-{self._n_decl:08d}"
            hs, goods = rng.choice(SELF_DRIVE_GOODS)
            medical = rng.random() < 0.01
            self._push(
                c.LOGISTICS,
                {
                    "event_id": f"SI{decl_id}",
                    "kind": "gate_in",
                    "ts_ms": t_in,
                    "conveyance_id": plate,
                    "port": port,
                    "ic_card": card,
                    "direction": "in",
                },
            )
            decl: dict[str, Any] = {
                "decl_id": decl_id,
                "ts_ms": t_in + int(rng.uniform(1, 5) * MIN_MS),
                "enterprise_id": f"R{card}",
                "credit_grade": "general",
                "hs_code": hs,
                "goods": goods,
                "origin": "MN",
                "port": port,
                "mode": "self_drive",
                "conveyance_id": plate,
                "gross_kg": round(rng.uniform(20, 300), 1),
                "net_kg": 0.0,
                "quantity": 1.0,
                "value_cny": round(rng.uniform(300, 3000), 2),
            }
            decl["net_kg"] = round(decl["gross_kg"] * 0.9, 1)
            if medical:
                decl["purpose"] = "medical"
            self._push(c.DECLARATIONS, decl)
            if not (never_out and i == crossings - 1):
                self._push(
                    c.LOGISTICS,
                    {
                        "event_id": f"SO{decl_id}",
                        "kind": "gate_out",
                        "ts_ms": t_in + int(rng.uniform(60, 110) * MIN_MS),
                        "conveyance_id": plate,
                        "port": port,
                        "ic_card": card,
                        "direction": "out",
                    },
                )
            typ = "self_drive_abuse" if abuse and i >= 3 else ""
            self._truth(
                decl_id,
                decl["ts_ms"],
                port,
                decl["enterprise_id"],
                plate,
                typ,
                rng.uniform(5_000, 40_000) if typ else 0.0,
            )
