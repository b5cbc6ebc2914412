"""Geography of the Inner Mongolia land ports: ports and gates, inland yards, mines across the border, the
corridors trucks drive, the border line, mobile squads and officer rosters. Pure data; distances are in
features/geometry.py.

Coordinates are approximate (WGS84 degrees); they only need to be consistent with each other.
"""

from __future__ import annotations

from dataclasses import dataclass

LatLon = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Port:
    code: str
    name: str
    lat: float
    lon: float
    gates: tuple[str, ...]
    modes: tuple[str, ...]
    seasonal_months: tuple[int, ...] | None  # None: open all year
    roster: tuple[str, ...]
    share: float  # share of the region's truck traffic

    @property
    def pos(self) -> LatLon:
        return (self.lat, self.lon)


def _roster(code: str, n: int) -> tuple[str, ...]:
    return tuple(f"{code}-{i:03d}" for i in range(1, n + 1))


PORTS: dict[str, Port] = {
    p.code: p
    for p in (
        Port(
            "EHT",
            "Erenhot 二连浩特",
            43.650,
            111.980,
            ("EHT-road-1", "EHT-road-2", "EHT-rail-1"),
            ("road", "rail", "self_drive"),
            None,
            _roster("EHT", 24),
            0.34,
        ),
        Port(
            "GQM",
            "Ganqimaodu 甘其毛都",
            42.250,
            106.870,
            ("GQM-road-1", "GQM-road-2"),
            ("road",),
            None,
            _roster("GQM", 18),
            0.30,
        ),
        Port("CEK", "Ceke 策克", 42.380, 101.200, ("CEK-road-1",), ("road",), None, _roster("CEK", 12), 0.16),
        Port(
            "ZGD",
            "Zhuengadabuqi 珠恩嘎达布其",
            45.050,
            116.800,
            ("ZGD-road-1",),
            ("road", "self_drive"),
            None,
            _roster("ZGD", 10),
            0.10,
        ),
        Port(
            "MDL",
            "Mandula 满都拉",
            42.520,
            110.150,
            ("MDL-road-1",),
            ("road",),
            (4, 5, 6, 7, 8, 9, 10, 11),
            _roster("MDL", 8),
            0.10,
        ),
        Port(
            "HET",
            "Hohhot Baita airport 呼和浩特",
            40.850,
            111.820,
            ("HET-cargo-1",),
            ("air",),
            None,
            _roster("HET", 8),
            0.0,
        ),
    )
}

# where the trucks go after clearance (China side)
YARDS: dict[str, LatLon] = {
    "EHT": (43.600, 112.060),
    "GQM": (41.900, 107.300),
    "CEK": (41.980, 101.080),
    "ZGD": (44.900, 116.600),
    "MDL": (42.200, 110.300),
    "HET": (40.840, 111.750),
}

# loading points across the border (Mongolia) and what they load
MINES: dict[str, tuple[LatLon, str]] = {
    "EHT": ((44.900, 110.150), "mixed"),  # Sainshand rail/road hub
    "GQM": ((43.600, 105.500), "coal"),  # Tavan Tolgoi
    "CEK": ((43.100, 101.300), "coal"),  # Nariin Sukhait
    "ZGD": ((46.400, 114.000), "mixed"),
    "MDL": ((43.600, 109.200), "copper"),
}

# where each port's road crosses the border (Mongolian side of the gate)
CROSSINGS: dict[str, LatLon] = {
    "EHT": (43.715, 111.915),
    "GQM": (42.330, 106.850),
    "CEK": (42.450, 101.150),
    "ZGD": (45.120, 116.720),
    "MDL": (42.580, 110.100),
}

# the approved route: loading point -> crossing -> port -> yard
CORRIDORS: dict[str, tuple[LatLon, ...]] = {
    code: (MINES[code][0], CROSSINGS[code], PORTS[code].pos, YARDS[code]) for code in CROSSINGS
}

# the China-Mongolia border near these ports, west to east
BORDER: tuple[LatLon, ...] = (
    (42.700, 99.500),
    (42.450, 101.150),
    (42.150, 103.500),
    (42.300, 105.200),
    (42.330, 106.850),
    (42.580, 108.600),
    (42.580, 110.100),
    (43.715, 111.915),
    (44.600, 113.600),
    (45.120, 116.720),
    (46.300, 119.300),
)


@dataclass(frozen=True, slots=True)
class Squad:
    id: str
    lat: float
    lon: float
    port: str
    roster: tuple[str, ...]


MOBILE_SQUADS: tuple[Squad, ...] = (
    Squad("SQ-EHT-N", 43.800, 111.700, "EHT", _roster("SQ-EHT-N", 6)),
    Squad("SQ-EHT-S", 43.300, 112.200, "EHT", _roster("SQ-EHT-S", 6)),
    Squad("SQ-GQM", 42.000, 106.900, "GQM", _roster("SQ-GQM", 6)),
    Squad("SQ-CEK", 42.100, 101.100, "CEK", _roster("SQ-CEK", 5)),
    Squad("SQ-ZGD", 44.950, 116.500, "ZGD", _roster("SQ-ZGD", 5)),
    Squad("SQ-MDL", 42.300, 110.200, "MDL", _roster("SQ-MDL", 5)),
)


def rosters() -> dict[str, list[str]]:
    """Officer rosters per site, squads under '<port>:squad' (the decision policy's convention)."""
    out: dict[str, list[str]] = {code: list(p.roster) for code, p in PORTS.items()}
    for s in MOBILE_SQUADS:
        out.setdefault(f"{s.port}:squad", []).extend(s.roster)
        out[s.id] = list(s.roster)
    return out
