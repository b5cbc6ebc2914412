"""The feature engine's configuration: windows, bounds and the geography it measures tracks against."""

from __future__ import annotations

from dataclasses import dataclass

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
LatLon = tuple[float, float]


@dataclass(frozen=True)
class FeatureConfig:
    join_window_ms: int = 8 * HOUR  # a weighbridge/gate/manifest this far from the declaration still joins
    deadline_ms: int = 30 * MIN  # a declaration still waiting this long is decided with what is known
    state_ttl_ms: int = 12 * HOUR  # a conveyance with no event for this long is forgotten
    track_lateness_ms: int = 10 * MIN
    track_trip_gap_ms: int = 6 * HOUR  # a longer silence starts a new trip's track statistics
    border_km: float = 5.0
    slow_kmh: float = 5.0
    stop_kmh: float = 3.0
    stop_min_ms: int = 10 * MIN
    site_radius_km: float = 3.0  # stops within this of a port or yard are scheduled
    utc_offset_h: int = 8  # local time at the ports (China Standard Time)
    night_from_h: int = 22  # a trip is a night trip from this local hour...
    night_to_h: int = 6  # ...to this one
    night_detour_min_km: float = 1.0  # night_dev_km: a detour at least this far off (GPS noise ~0.1 km)
    split_threshold_cny: float = 50_000.0
    split_low: float = 0.8
    hs_median_size: int = 101
    prior_violations: float = 1.0
    prior_clean: float = 19.0
    max_conveyances: int = 200_000
    max_enterprises: int = 50_000
    max_keys: int = 50_000
    max_decided: int = 300_000  # declarations remembered (redelivery, results -> history), at most 3 days
    decided_ttl_ms: int = 3 * DAY
    crossings: tuple[LatLon, ...] = ()  # where roads cross the border (border dwell)
    corridors: tuple[tuple[LatLon, ...], ...] = ()  # approved routes (deviation)
    sites: tuple[LatLon, ...] = ()  # ports and yards (scheduled stops)
