"""Distances on the ground: the project's one geometry.

Two families, both pure: great-circle and local-projection distances for routing and the simulator
(``haversine_km``, ``distance_to_polyline_km``), and the equirectangular hot-path forms the feature engine
runs per GPS point (``km``, ``segments``, ``line_km``), within 0.5% of the great circle over the tens of km
that matter.
"""

from __future__ import annotations

import itertools
import math

LatLon = tuple[float, float]

EARTH_KM = 6371.0088


def haversine_km(a: LatLon, b: LatLon) -> float:
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def _to_xy(p: LatLon, lat0: float) -> tuple[float, float]:
    """Local equirectangular projection in km (good to a fraction of a percent over a few hundred km)."""
    return (math.radians(p[1]) * EARTH_KM * math.cos(math.radians(lat0)), math.radians(p[0]) * EARTH_KM)


def distance_to_segment_km(p: LatLon, a: LatLon, b: LatLon) -> float:
    lat0 = p[0]
    px, py = _to_xy(p, lat0)
    ax, ay = _to_xy(a, lat0)
    bx, by = _to_xy(b, lat0)
    dx, dy = bx - ax, by - ay
    seg2 = dx * dx + dy * dy
    t = 0.0 if seg2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / seg2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def distance_to_polyline_km(p: LatLon, line: tuple[LatLon, ...]) -> float:
    return min(distance_to_segment_km(p, line[i], line[i + 1]) for i in range(len(line) - 1))


def km(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    """Equirectangular distance: within 0.5% of the great circle over the tens of km that matter here."""
    kx = 111.32 * math.cos(math.radians((a_lat + b_lat) / 2))
    return math.hypot((a_lon - b_lon) * kx, (a_lat - b_lat) * 110.57)


Segments = tuple[tuple[float, float, float, float], ...]  # (a_lat, a_lon, b_lat - a_lat, b_lon - a_lon)


def segments(line: tuple[LatLon, ...]) -> Segments:
    return tuple((a[0], a[1], b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(line))


def line_km(lat: float, lon: float, segs: Segments, kx: float) -> float:
    """Distance in km from a point to a polyline, equirectangular around the point (``kx`` = km per degree
    of longitude there), clamped to each segment: the per-GPS-point hot path, so one loop, no calls."""
    best = math.inf
    for a_lat, a_lon, d_lat, d_lon in segs:
        ax, ay = (a_lon - lon) * kx, (a_lat - lat) * 110.57
        dx, dy = d_lon * kx, d_lat * 110.57
        L = dx * dx + dy * dy
        t = 0.0 if L == 0 else -(ax * dx + ay * dy) / L
        t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
        px, py = ax + t * dx, ay + t * dy
        d2 = px * px + py * py
        if d2 < best:
            best = d2
    return math.sqrt(best)
