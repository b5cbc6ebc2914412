"""Dispatch commands (布控指令): the record a site or squad acts on. Pure: no I/O, no wall clock.

One command per decision, with an id derived only from the declaration it decides on, so a redelivered
or replayed event maps to the same id and the dispatcher can refuse to send it twice.
"""

from __future__ import annotations

import hashlib
from typing import Any

# Redis key layout shared by the agents and the web
LIVE_STREAM_KEY = "bukong:hits"  # XADD, MAXLEN ~ settings.live_stream_maxlen; field "c" = command JSON
STATUS_PREFIX = "bukong:cmd:"  # HASH per command (TTL): status (pending, sent, ...), command, track
WATCHLIST_PREFIX = (
    "bukong:watch:"  # HASH per kind (conveyance/enterprise/declarant): id -> {source, expires_ms}
)
NOTIFY_STREAM_KEY = "bukong:notifications"
STATS_KEY = "bukong:stats"  # HASH of running totals: events, dead_letters, decisions, hits, commands
RULES_KEY = "bukong:rules"  # HASH rule id -> JSON {id, title, lane, severity, status, scope} of the live pack
RULE_STATS_KEY = "bukong:rulestats"  # HASH "rule|port|metric" -> count (hits, dispatched, results, confirmed)
# HASH "source|metric" -> count (results, confirmed) per intelligence-lead source (watch_source). Bounded:
# at most MAX_LEAD_SOURCES sources by name (cut to MAX_LEAD_SOURCE_CHARS), any further one counts under
# LEAD_OTHER
LEAD_STATS_KEY = "bukong:leadstats"
MAX_LEAD_SOURCES = 64
MAX_LEAD_SOURCE_CHARS = 64
LEAD_OTHER = "(other)"
DRIFT_STREAM_KEY = "bukong:drift"  # XADD drift events for the live view
META_KEY = "bukong:meta"  # HASH pack_version, model_version, updated_ms
READY_KEY = "bukong:workers:ready"  # HASH worker id -> assigned partitions, set on each rebalance

SEVERITY_BY_LANE = {
    "release": "low",
    "post_clearance_audit": "low",
    "document_check": "medium",
    "physical_inspection": "high",
    "intercept": "critical",
}


def command_id(decl_id: str) -> str:
    """Deterministic: the same declaration always gives the same command id."""
    return "cmd-" + hashlib.blake2b(decl_id.encode(), digest_size=10).hexdigest()


def make_command(
    *,
    decl: dict[str, Any],
    lane: str,
    site: str,
    severity: str,
    score: float,
    reasons: list[dict[str, Any]],
    rule_ids: list[str],
    pack_version: int,
    decided_ts_ms: int,
    deadline_ts_ms: int,
    facts: dict[str, Any] | None = None,
    missing: list[str] | None = None,
    factors: list[dict[str, Any]] | None = None,
    model_version: int = 0,
    selection: str = "rule",
    selection_prob: float = 1.0,
    officers: list[str] | None = None,
    trigger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "command_id": command_id(decl["decl_id"]),
        "decl_id": decl["decl_id"],
        "conveyance_id": decl["conveyance_id"],
        "enterprise_id": decl["enterprise_id"],
        "port": decl["port"],
        "site": site,
        "lane": lane,
        "severity": severity,
        "score": round(score, 4),
        "rule_ids": rule_ids,
        "reasons": reasons,
        "factors": factors or [],
        "pack_version": pack_version,
        "model_version": model_version,
        "selection": selection,
        "selection_prob": selection_prob,
        "officers": officers or [],
        "decided_ts_ms": decided_ts_ms,
        "deadline_ts_ms": deadline_ts_ms,
        "missing": missing or [],
        "facts": facts or {},
        "trigger": trigger or {},
    }
