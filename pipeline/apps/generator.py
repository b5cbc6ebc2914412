"""A small built-in event generator for the demo and the end-to-end benchmark.

Trucks make trips to border ports: GPS points, gate-in, weighbridge, a declaration, gate-out. A share
of trucks is overweight (weighbridge well above the declared gross). It can also inject deliberately broken
records so the dead-letter path is visible. Deterministic for a seed; event time is passed in.
(The full customs world, with fraud typologies and inspection results, is pipeline/apps/sim.)
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.contracts import events as c
from pipeline.contracts import sites

PORTS = ("EHT", "CEK", "GQM", "ZGD")
GOODS = (("2701", "coal", 1.0, 600.0), ("2603", "copper ore", 1.0, 9000.0), ("4403", "timber", 1.0, 1500.0))

BAD_KINDS = ("malformed_json", "missing_field", "negative_weight", "bad_lat", "future_time", "oversize")


@dataclass
class GeneratorConfig:
    seed: int = 1
    overweight_share: float = 0.08
    trucks: int = 2000
    track_points: int = 6


def bad_record(kind: str, rng: random.Random, ts_ms: int) -> tuple[str, bytes, bytes]:
    key = f"BAD{rng.randrange(10**6):06d}".encode()
    if kind == "malformed_json":
        return c.DECLARATIONS, key, b'{"decl_id": "D-broken", "ts_ms": '
    if kind == "missing_field":
        return c.LOGISTICS, key, orjson.dumps({"event_id": "L-x", "kind": "gate_in", "ts_ms": ts_ms})
    if kind == "negative_weight":
        ev = {
            "event_id": "L-neg",
            "kind": "weighbridge",
            "ts_ms": ts_ms,
            "conveyance_id": key.decode(),
            "port": "EHT",
            "measured_gross_kg": -100.0,
        }
        return c.LOGISTICS, key, orjson.dumps(ev)
    if kind == "bad_lat":
        return (
            c.TRACKS,
            key,
            orjson.dumps(
                {"conveyance_id": key.decode(), "ts_ms": ts_ms, "lat": 123.0, "lon": 100.0, "speed_kmh": 50.0}
            ),
        )
    if kind == "future_time":
        return (
            c.TRACKS,
            key,
            orjson.dumps(
                {
                    "conveyance_id": key.decode(),
                    "ts_ms": ts_ms + 86_400_000,
                    "lat": 43.0,
                    "lon": 111.0,
                    "speed_kmh": 50.0,
                }
            ),
        )
    return c.TRACKS, key, b'{"pad": "' + b"x" * (c.MAX_MESSAGE_BYTES + 10) + b'"}'


def _logistics(event_id: str, kind: str, ts_ms: int, plate: str, port: str, **extra: Any) -> dict:
    return {"event_id": event_id, "kind": kind, "ts_ms": ts_ms, "conveyance_id": plate, "port": port, **extra}


class Generator:
    """Yields (topic, key, value bytes, is_bad) for trips; timestamps advance by ``step_ms`` per event."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.trip = 0

    def trip_events(self, ts_ms: int) -> list[tuple[str, dict]]:
        rng = self.rng
        self.trip += 1
        n = self.trip
        port = PORTS[n % len(PORTS)]
        plate = f"MN{n % 100_000:05d}"  # a truck makes one trip within the join window
        net = rng.uniform(20_000, 40_000)
        gross = net + rng.uniform(1500, 3000)
        over = rng.random() < self.cfg.overweight_share
        measured = gross * (rng.uniform(1.08, 1.25) if over else rng.uniform(0.995, 1.005))
        out: list[tuple[str, dict]] = self._track(plate, port, ts_ms)
        out.append((c.LOGISTICS, _logistics(f"G{n}", "gate_in", ts_ms, plate, port, gate=f"{port}-road-1")))
        weighed = _logistics(f"W{n}", "weighbridge", ts_ms, plate, port, measured_gross_kg=round(measured, 1))
        out.append((c.LOGISTICS, weighed))
        out.append((c.DECLARATIONS, self._declaration(n, ts_ms, port, plate, net, gross)))
        if rng.random() < 0.5:  # the weighbridge sometimes comes after the declaration
            out[-1], out[-2] = out[-2], out[-1]
        out.append((c.LOGISTICS, _logistics(f"O{n}", "gate_out", ts_ms, plate, port)))
        return out

    def _track(self, plate: str, port: str, ts_ms: int) -> list[tuple[str, dict]]:
        """GPS points on the approach road: from the border crossing to the port."""
        rng, points = self.rng, self.cfg.track_points
        (clat, clon), (plat, plon) = sites.CROSSINGS[port], sites.PORTS[port].pos
        out: list[tuple[str, dict]] = []
        for i in range(points):
            out.append(
                (
                    c.TRACKS,
                    {
                        "conveyance_id": plate,
                        "ts_ms": ts_ms,
                        "lat": clat + (plat - clat) * i / points + rng.gauss(0, 0.0003),
                        "lon": clon + (plon - clon) * i / points + rng.gauss(0, 0.0003),
                        "speed_kmh": rng.uniform(40, 70),
                    },
                )
            )
        return out

    def _declaration(self, n: int, ts_ms: int, port: str, plate: str, net: float, gross: float) -> dict:
        rng = self.rng
        hs, goods, _, price = GOODS[n % len(GOODS)]
        return {
            "decl_id": f"D{self.cfg.seed}-{n:08d}",
            "ts_ms": ts_ms,
            "enterprise_id": f"E{rng.randrange(500):04d}",
            "credit_grade": rng.choice(("general", "general", "aeo_advanced", "distrusted")),
            "declarant_id": f"B{rng.randrange(80):03d}",
            "hs_code": hs + "00",
            "goods": goods,
            "origin": "MN",
            "port": port,
            "mode": "road",
            "conveyance_id": plate,
            "gross_kg": round(gross, 1),
            "net_kg": round(net, 1),
            "quantity": round(net / 1000, 2),
            "unit": "t",
            "value_cny": round(net / 1000 * price, 2),
        }

    def stream(
        self, clock_ms: Iterator[int], bad_events: int = 0, bad_every: int = 50
    ) -> Iterator[tuple[str, bytes, bytes, bool]]:
        """Endless records; ``clock_ms`` gives each record's event time; a bad one every ``bad_every``."""
        bad_left = bad_events
        count = 0
        while True:
            ts = next(clock_ms)
            for topic, ev in self.trip_events(ts):
                ev["ts_ms"] = ts
                count += 1
                yield topic, ev["conveyance_id"].encode(), orjson.dumps(ev), False
                if bad_left and count % bad_every == 0:
                    bad_left -= 1
                    t, k, v = bad_record(BAD_KINDS[bad_left % len(BAD_KINDS)], self.rng, ts)
                    yield t, k, v, True
                ts = next(clock_ms)
