"""Facts that combine others a declaration already has: the time of travel with the route.

A typology may show on no single fact: a short detour from the approved corridor is common by day (roadworks,
a fuel stop) and rare on a night trip, when smuggling runs. These facts read only what the join, the track
and the valuation already put in ``facts``, so they need no state of their own. Pure: event time in.
"""

from __future__ import annotations

from typing import Any

from features.config import HOUR, FeatureConfig


def local_hour(cfg: FeatureConfig, ts_ms: int) -> int:
    """The hour of the day at the ports (``cfg.utc_offset_h``) of an event time."""
    return int((ts_ms // HOUR + cfg.utc_offset_h) % 24)


def is_night(cfg: FeatureConfig, ts_ms: int) -> bool:
    h, start, end = local_hour(cfg, ts_ms), cfg.night_from_h, cfg.night_to_h
    return h >= start or h < end if start > end else start <= h < end


def combination_facts(cfg: FeatureConfig, d: dict[str, Any], facts: dict[str, Any]) -> None:
    """``night_trip``: the trip's latest GPS fix (the declaration's time without a track) falls in the
    night hours; ``night_dev_km``: the trip's largest distance from the approved corridor, on a night trip and
    at least ``night_detour_min_km`` (below it, GPS noise and the road's bends), else 0."""
    ts = facts.get("last_fix_ts_ms") or d["ts_ms"]
    if is_night(cfg, ts):
        facts["night_trip"] = True
        dev = float(facts.get("corridor_dev_km") or 0.0)
        if dev >= cfg.night_detour_min_km:
            facts["night_dev_km"] = dev
