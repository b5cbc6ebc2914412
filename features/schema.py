"""The fact schema: every name a rule or the model may read about one declaration, with its type and unit.

Rules are type-checked against this (a typo like ``unit_pric`` is an error at load). The join/feature code
must fill every name here (``None`` is never used for a number: absent facts have a ``*_present`` flag and a
neutral value, and are listed in ``missing``).

Types are CEL type names: bool, int, double, string, list(string).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Fact:
    name: str
    cel_type: str
    unit: str
    doc: str


_F = Fact

FACTS: Final[tuple[Fact, ...]] = (
    # --- the declaration itself
    _F("decl_id", "string", "", "declaration id"),
    _F("hs_code", "string", "", "HS code as declared (4-10 digits)"),
    _F("hs4", "string", "", "first four digits of the HS code (heading)"),
    _F("goods", "string", "", "goods description"),
    _F("grade", "string", "", "declared grade (coal: A/B), empty if none"),
    _F("origin", "string", "", "country of origin"),
    _F("port", "string", "", "port of entry (site code)"),
    _F("mode", "string", "", "road / rail / air / self_drive"),
    _F("purpose", "string", "", "self-drive purpose (e.g. medical), empty if none"),
    _F("conveyance_id", "string", "", "plate or container number"),
    _F("enterprise_id", "string", "", "declaring enterprise"),
    _F("declarant_id", "string", "", "declarant (broker), empty if none"),
    _F("credit_grade", "string", "", "aeo_advanced / general / distrusted"),
    _F("gross_kg", "double", "kg", "declared gross weight"),
    _F("net_kg", "double", "kg", "declared net weight"),
    _F("quantity", "double", "unit", "declared quantity"),
    _F("value_cny", "double", "CNY", "declared customs value"),
    _F("unit_value", "double", "CNY/kg", "declared value per net kg"),
    # --- weighbridge
    _F("weigh_present", "bool", "", "a weighbridge reading was joined"),
    _F("weigh_gross_kg", "double", "kg", "measured gross weight (0 if absent)"),
    _F("weigh_excess_kg", "double", "kg", "measured minus declared gross (0 if absent)"),
    _F("weigh_excess_ratio", "double", "ratio", "measured / declared gross - 1 (0 if absent)"),
    # --- gate and manifest
    _F("gate_in_present", "bool", "", "a gate-in record was joined"),
    _F("gate_in_to_decl_s", "double", "s", "declaration time minus gate-in time (0 if absent)"),
    _F("manifest_present", "bool", "", "a manifest was joined"),
    _F("manifest_gross_kg", "double", "kg", "manifest gross weight (0 if absent)"),
    _F("manifest_gap_ratio", "double", "ratio", "declared / manifest gross - 1 (0 if absent)"),
    # --- valuation
    _F("hs_median_unit_value", "double", "CNY/kg", "rolling median unit value for this HS code and origin"),
    _F("hs_median_n", "int", "count", "observations behind that median"),
    _F("unit_value_ratio", "double", "ratio", "unit_value / rolling median (1 if no median yet)"),
    # --- enterprise velocity and structuring
    _F("ent_decl_1h", "int", "count", "declarations by the enterprise in the last hour"),
    _F("ent_decl_24h", "int", "count", "declarations by the enterprise in the last 24 h"),
    _F("ent_decl_7d", "int", "count", "declarations by the enterprise in the last 7 days"),
    _F("ent_value_24h", "double", "CNY", "declared value by the enterprise in the last 24 h"),
    _F("ent_value_7d", "double", "CNY", "declared value by the enterprise in the last 7 days"),
    _F(
        "ent_new_hs_share",
        "double",
        "ratio",
        "share of the enterprise's 7-day declarations under HS codes new to it",
    ),
    _F(
        "split_count_24h",
        "int",
        "count",
        "same enterprise+HS declarations in 24 h just under the value threshold",
    ),
    _F("split_value_24h", "double", "CNY", "their summed value"),
    # --- conveyance track
    _F("track_present", "bool", "", "GPS points were joined"),
    _F("track_points", "int", "count", "GPS points in the track window"),
    _F("last_lat", "double", "deg", "latitude of the latest GPS fix (0 if none)"),
    _F("last_lon", "double", "deg", "longitude of the latest GPS fix (0 if none)"),
    _F("last_fix_ts_ms", "int", "ms", "event time of the latest GPS fix (0 if none)"),
    _F("gps_gap_max_s", "double", "s", "longest gap between consecutive GPS points"),
    _F("border_dwell_s", "double", "s", "time spent within the border zone while slow"),
    _F("corridor_dev_km", "double", "km", "largest distance from the approved corridor"),
    _F("unscheduled_stops", "int", "count", "stops outside ports and yards"),
    _F("night_trip", "bool", "", "the trip's latest fix (or the declaration) is at night, 22:00-06:00 local"),
    _F(
        "night_dev_km",
        "double",
        "km",
        "largest distance from the approved corridor on a night trip, if at least 1 km (else 0)",
    ),
    # --- self-drive vehicles (border residents)
    _F("sd_crossings_24h", "int", "count", "crossings of this self-drive vehicle in 24 h"),
    _F("sd_open_entries", "int", "count", "entries not written off by an exit"),
    # --- intelligence
    _F("watch_conveyance", "bool", "", "conveyance on a live watchlist"),
    _F("watch_enterprise", "bool", "", "enterprise on a live watchlist"),
    _F("watch_declarant", "bool", "", "declarant on a live watchlist"),
    _F("watch_source", "string", "", "source of the watchlist entry, empty if none"),
    # --- history from inspection results (Bayesian-smoothed)
    _F("ent_violation_rate", "double", "ratio", "smoothed violation rate of the enterprise"),
    _F("conv_violation_rate", "double", "ratio", "smoothed violation rate of the conveyance"),
    _F("declarant_violation_rate", "double", "ratio", "smoothed violation rate of the declarant"),
    # --- what the join could not find by the deadline
    _F("missing", "list(string)", "", "parts not joined when scored: weighbridge, gate_in, manifest, track"),
)

FACT_TYPES: Final[dict[str, str]] = {f.name: f.cel_type for f in FACTS}

_ZERO: Final[dict[str, object]] = {"bool": False, "int": 0, "double": 0.0, "string": "", "list(string)": []}
# the value of a fact nothing has observed: never one that looks suspicious to a rule or the model
NEUTRAL: Final[dict[str, object]] = {
    **{f.name: _ZERO[f.cel_type] for f in FACTS},
    "unit_value_ratio": 1.0,
    "ent_violation_rate": 0.05,
    "conv_violation_rate": 0.05,
    "declarant_violation_rate": 0.05,
}


def declaration_facts(decl: dict[str, object]) -> dict[str, object]:
    """Every fact, neutral, with the ones the declaration itself states filled in."""
    facts = dict(NEUTRAL)
    facts["missing"] = []
    for k in (
        "decl_id",
        "hs_code",
        "goods",
        "grade",
        "origin",
        "port",
        "mode",
        "purpose",
        "conveyance_id",
        "enterprise_id",
        "declarant_id",
        "credit_grade",
    ):
        v = decl.get(k)
        if v is not None:
            facts[k] = str(v)
    for k in ("gross_kg", "net_kg", "quantity", "value_cny"):
        facts[k] = float(decl[k])  # type: ignore[arg-type]
    facts["hs4"] = str(decl["hs_code"])[:4]
    net = float(decl["net_kg"])  # type: ignore[arg-type]
    facts["unit_value"] = float(decl["value_cny"]) / net if net > 0 else 0.0  # type: ignore[arg-type]
    return facts


NUMERIC_FACTS: Final[tuple[str, ...]] = tuple(
    f.name for f in FACTS if f.cel_type in ("int", "double", "bool")
)
