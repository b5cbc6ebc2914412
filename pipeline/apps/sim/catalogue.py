"""Commodities the ports see, with unit-price distributions, weights per truck and duty rates."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Commodity:
    hs_code: str
    goods: str
    price_cny_per_kg: float  # median unit value
    price_sigma: float  # lognormal sigma of an honest declaration's unit value
    net_kg: tuple[float, float]  # per truck
    duty: float  # duty + VAT share at stake when evaded
    grade_prices: tuple[tuple[str, float], ...] = ()  # grade -> CNY/kg (coal)
    misclass_to: str = ""  # lower-duty HS code it is misdeclared under


COMMODITIES: tuple[Commodity, ...] = (
    Commodity(
        "270112",
        "bituminous coal",
        0.80,
        0.08,
        (30_000, 42_000),
        0.16,
        grade_prices=(("A", 0.95), ("B", 0.62)),
    ),
    Commodity(
        "260300", "copper ores and concentrates", 12.0, 0.12, (25_000, 35_000), 0.13, misclass_to="261790"
    ),
    Commodity("270900", "crude petroleum oil", 3.8, 0.06, (24_000, 30_000), 0.13),
    Commodity("440320", "coniferous logs", 1.2, 0.10, (18_000, 28_000), 0.13),
    Commodity("252922", "fluorspar", 1.8, 0.10, (28_000, 36_000), 0.13),
    Commodity("510211", "fine cashmere, not carded", 420.0, 0.15, (1_500, 6_000), 0.22, misclass_to="510219"),
    Commodity("020450", "mutton, frozen", 28.0, 0.10, (15_000, 22_000), 0.25),
    Commodity("261790", "other ores and concentrates", 3.0, 0.15, (25_000, 35_000), 0.05),
    Commodity("510219", "other fine animal hair", 90.0, 0.15, (1_500, 6_000), 0.10),
    Commodity("843149", "parts of mining machinery", 35.0, 0.25, (3_000, 12_000), 0.18),
)
BY_HS = {c.hs_code: c for c in COMMODITIES}

# what each loading point mostly sends
MAIN_BY_SOURCE = {
    "coal": ("270112",),
    "copper": ("260300", "252922"),
    "mixed": ("270112", "260300", "270900", "440320", "510211", "020450", "843149"),
}

# the honest world: every heading has honest importers (no heading is a label, no median is built from fraud)
HONEST_MAIN_BY_SOURCE = {
    "coal": ("270112",),
    "copper": ("260300", "252922", "261790"),
    "mixed": tuple(c.hs_code for c in COMMODITIES),
}

SELF_DRIVE_GOODS = (
    ("210690", "food preparations, personal"),
    ("330499", "cosmetics, personal"),
    ("640399", "footwear, personal"),
)
