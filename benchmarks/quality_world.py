"""A small synthetic facts world for benchmarks/quality.py when the full simulator is not in use.

It draws the facts the feature engine would produce, the rule hits a typical pack would give, and the ground
truth, directly. Deterministic for a seed. Typologies (share of declarations):

- overweight (0.8%): weighbridge 6-30% over declared gross; rule: > 10% -> physical inspection;
- undervaluation (0.8%): unit value 30-65% of the usual; rule: < 50% -> document check;
- route deviation (0.4%): 2-20 km off the corridor, stops, GPS gaps; rule: > 5 km -> intercept (hard);
- structuring (0.4%): 3-6 near-threshold declarations in 24 h; no rule;
- repeat offenders (0.4%): enterprises with a bad record (violation rate 15-40%), nothing else visible;
- drift scenario only, from day 2: self-drive shuttle smuggling (1%): self-drive vehicles with 4-9 crossings
  in 24 h and open entries — a typology no rule and no prior knows.

Clean traffic has noise on the same facts (weighbridge ±2%, unit value ±20%, an odd stop or detour), and
0.1% of declarations hit a watchlist (hard rule), 40% of them real.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from benchmarks.quality_common import DAY_MS, NEW_TYPOLOGY, Item, World

START_MS = 1_767_196_800_000  # 2026-01-01 00:00 UTC+8
PER_DAY = 4000
PORTS = ("EHT", "CEK", "GQM", "ZGD")
HS = (
    ("2701", "coal", 600.0),
    ("2603", "copper ore", 9000.0),
    ("4403", "timber", 1500.0),
    ("8703", "cars", 80000.0),
)
TYPOLOGIES = (
    ("overweight", 0.008),
    ("undervaluation", 0.008),
    ("route_deviation", 0.004),
    ("structuring", 0.004),
    ("repeat_offender", 0.004),
)


@dataclass(slots=True)
class Hit:
    rule_id: str
    lane: str
    severity: str
    reason: str
    status: str = "active"
    action: str = "dispatch"
    evidence: dict[str, Any] | None = None


def _clean(rng: random.Random, i: int, ts_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
    hs4, goods, unit_price = rng.choice(HS)
    port = rng.choice(PORTS)
    self_drive = rng.random() < 0.1
    net = rng.uniform(200, 800) if self_drive else rng.uniform(5_000, 40_000)
    value = net * unit_price * math.exp(rng.gauss(0, 0.2))
    credit = rng.choices(("aeo_advanced", "general", "distrusted"), (0.2, 0.75, 0.05))[0]
    decl = {
        "decl_id": f"Q{i:08d}",
        "ts_ms": ts_ms,
        "port": port,
        "credit_grade": credit,
        "conveyance_id": f"V{rng.randrange(3000):05d}",
        "enterprise_id": f"E{rng.randrange(800):04d}",
    }
    facts: dict[str, Any] = {
        "decl_id": decl["decl_id"],
        "port": port,
        "hs4": hs4,
        "goods": goods,
        "origin": "MN",
        "mode": "self_drive" if self_drive else "road",
        "credit_grade": credit,
        "gross_kg": net * 1.05,
        "net_kg": net,
        "value_cny": value,
        "unit_value": value / net,
        "weigh_present": True,
        "weigh_excess_ratio": rng.gauss(0, 0.02),
        "unit_value_ratio": math.exp(rng.gauss(0, 0.2)),
        "track_present": True,
        "track_points": rng.randint(20, 60),
        "gps_gap_max_s": rng.uniform(20, 300),
        "corridor_dev_km": rng.expovariate(2.0),
        "unscheduled_stops": int(rng.random() < 0.05),
        "split_count_24h": int(rng.random() < 0.05),
        "ent_violation_rate": rng.betavariate(1, 60),
        "ent_decl_24h": rng.randint(0, 8),
        "sd_crossings_24h": rng.randint(0, 2) if self_drive else 0,
        "sd_open_entries": 0,
    }
    return decl, facts


def _apply(typ: str, rng: random.Random, f: dict[str, Any]) -> None:
    if typ == "overweight":
        f["weigh_excess_ratio"] = rng.uniform(0.06, 0.3)
    elif typ == "undervaluation":
        f["unit_value_ratio"] = rng.uniform(0.3, 0.65)
    elif typ == "route_deviation":
        f["corridor_dev_km"] = rng.uniform(2, 20)
        f["unscheduled_stops"] = rng.randint(1, 3)
        f["gps_gap_max_s"] = rng.uniform(600, 3600)
    elif typ == "structuring":
        f["split_count_24h"] = rng.randint(3, 6)
    elif typ == "repeat_offender":
        f["ent_violation_rate"] = rng.uniform(0.15, 0.4)
    elif typ == NEW_TYPOLOGY:
        f["mode"] = "self_drive"
        f["sd_crossings_24h"] = rng.randint(4, 9)
        f["sd_open_entries"] = rng.randint(0, 2)


def _rules(f: dict[str, Any]) -> list[Hit]:
    hits = []
    if f["weigh_excess_ratio"] > 0.1:
        hits.append(Hit("weigh_excess", "physical_inspection", "high", "weighbridge over declared by > 10%"))
    if f["unit_value_ratio"] < 0.5:
        hits.append(Hit("undervalued", "document_check", "medium", "unit value under half the usual"))
    if f["corridor_dev_km"] > 5:
        hits.append(
            Hit("off_corridor", "intercept", "high", "left the corridor by > 5 km", action="intercept")
        )
    if f.get("watch_conveyance"):
        hits.append(
            Hit("watchlist", "physical_inspection", "high", "conveyance on a watchlist", action="hard")
        )
    return hits


def synthetic_items(scenario: str, days: int, seed: int) -> World:
    rng = random.Random(seed)
    drift_day = 2 if scenario == "drift" else None
    items = []
    n = days * PER_DAY
    for i in range(n):
        ts = START_MS + int(i * DAY_MS / PER_DAY)
        decl, f = _clean(rng, i, ts)
        typ = ""
        u = rng.random()
        acc = 0.0
        for name, share in TYPOLOGIES:
            acc += share
            if u < acc:
                typ = name
                break
        if (
            drift_day is not None
            and not typ
            and (ts - START_MS) // DAY_MS >= drift_day
            and rng.random() < 0.01
        ):
            typ = NEW_TYPOLOGY
        if typ:
            _apply(typ, rng, f)
        violation = bool(typ) and rng.random() < 0.9  # a typology match is not always a finding
        if rng.random() < 0.001:
            f["watch_conveyance"] = True
            if not typ and rng.random() < 0.4:
                typ, violation = "watchlist", True
        fraud_value = f["value_cny"] * rng.uniform(0.2, 1.0) if violation else 0.0
        delay = int(rng.uniform(2, 10) * 3_600_000)
        items.append(Item(ts, decl, f, _rules(f), violation, fraud_value, typ if violation else "", delay))
    return World(items, START_MS, drift_day, NEW_TYPOLOGY if drift_day is not None else None, None)
