"""Per-rule and per-site counts and the hit rate (布控有效率), from the counters the workers keep.

The workers count in Redis, in the hash ``RULE_STATS_KEY`` (pipeline/contracts/commands.py):
``"rule|port|metric" -> count``, metric one of hits, shadow_hits, dispatched, results, confirmed. The web API
(``GET /api/stats``) and ``bukong rules stats`` read that hash and turn it into figures here, the one place
where the hit rate is computed: ``hit_rate = confirmed / results`` (None before the first result). The same
for intelligence-lead sources, from the hash ``LEAD_STATS_KEY`` (``"source|metric" -> count``, metric results
or confirmed): ``leads()``. Pure: the callers read Redis, this module never does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def hit_rate(confirmed: int, results: int) -> float | None:
    """confirmed / results, rounded to 3 decimals; None before the first result."""
    return round(confirmed / results, 3) if results else None


def tally(counters: Mapping[bytes, bytes]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``(per_rule, per_site)`` from the raw hash: each ``{metric: count, ..., "hit_rate": float | None}``.
    Keys not of the form ``rule|port|metric`` and values that are not counts are skipped."""
    per_rule: dict[str, dict[str, Any]] = {}
    per_site: dict[str, dict[str, Any]] = {}
    for k, v in counters.items():
        parts = k.decode(errors="replace").split("|")
        if len(parts) != 3 or not v.isdigit():
            continue
        rule, port, metric = parts
        for bucket, name in ((per_rule, rule), (per_site, port)):
            d = bucket.setdefault(name, {})
            d[metric] = d.get(metric, 0) + int(v)
    for d in (*per_rule.values(), *per_site.values()):
        d["hit_rate"] = hit_rate(d.get("confirmed", 0), d.get("results", 0))
    return per_rule, per_site


def leads(counters: Mapping[bytes, bytes]) -> dict[str, dict[str, Any]]:
    """Per lead source ``{"results", "confirmed", "hit_rate"}`` from the raw lead-stats hash. A source may
    hold ``|`` (the metric is after the last one); other metrics, malformed keys and non-counts are
    skipped."""
    out: dict[str, dict[str, Any]] = {}
    for k, v in counters.items():
        source, sep, metric = k.decode(errors="replace").rpartition("|")
        if not sep or metric not in ("results", "confirmed") or not v.isdigit():
            continue
        d = out.setdefault(source, {"results": 0, "confirmed": 0})
        d[metric] += int(v)
    for d in out.values():
        d["hit_rate"] = hit_rate(d["confirmed"], d["results"])
    return out
