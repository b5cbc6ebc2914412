"""Every Prometheus metric Bukong exports, built in one typed container from a passed registry.

Tests build a fresh ``CollectorRegistry`` and read values with ``registry.get_sample_value``.
docker/grafana dashboards may only refer to names defined here (a test checks it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CORE_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1)
STAGE_BUCKETS: tuple[float, ...] = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3)
STAGE_BUCKETS += (2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INTERNAL_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics(NamedTuple):
    events_in: Counter
    dead_letters: Counter
    scoring_seconds: Histogram
    e2e_latency_seconds: Histogram
    decisions: Counter
    hits: Counter
    commands: Counter
    duplicates_suppressed: Counter
    rule_evaluations: Counter
    rule_hits: Counter
    rule_confirmed: Counter
    inspection_results: Counter
    budget_use: Gauge
    model_version: Gauge
    model_learned: Counter
    drift_events: Counter
    rule_pack_version: Gauge
    consumer_lag: Gauge
    batch_size: Histogram
    notifications: Counter
    dependency_retries: Counter
    dependency_wait_seconds: Counter
    dependency_up: Gauge
    rule_errors: Counter
    results_unknown_command: Counter
    resent_records: Counter
    shared_keys_read: Counter
    watchlist_entries: Gauge
    watchlist_reloads: Counter
    partition_stuck: Gauge
    input_clock_behind: Gauge
    input_clock_partitions: Gauge
    input_paused: Gauge
    input_pauses: Counter
    fetch_wait_seconds: Gauge
    stage_seconds: Histogram
    stage_event_seconds: Histogram
    worker_latency_seconds: Histogram
    loop_lag_seconds: Histogram
    gc_pause_seconds: Histogram
    gc_frozen: Gauge
    gc_full_freed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        r = registry
        return cls(**_flow(r), **_rules(r), **_state(r), **_ops(r), **_timings(r), **_shared(r))


def _flow(r: CollectorRegistry) -> dict[str, Any]:
    """Records in, decisions, commands: the event path."""
    return dict(
        events_in=Counter("bukong_events_in", "Records received, by topic", ["topic"], registry=r),
        dead_letters=Counter(
            "bukong_dead_letters", "Records dead-lettered, by reason", ["reason"], registry=r
        ),
        scoring_seconds=Histogram(
            "bukong_scoring_seconds",
            "Time the pure core spends on one record (features, rules, model, decision)",
            buckets=CORE_BUCKETS,
            registry=r,
        ),
        e2e_latency_seconds=Histogram(
            "bukong_e2e_latency_seconds",
            "Triggering record produced -> its dispatch command produced",
            buckets=LATENCY_BUCKETS,
            registry=r,
        ),
    )


def _rules(r: CollectorRegistry) -> dict[str, Any]:
    """Rule hits and the feedback of inspection results."""
    return dict(
        decisions=Counter("bukong_decisions", "Declarations decided, by lane", ["lane"], registry=r),
        hits=Counter("bukong_hits", "Rule hits, by rule and lane", ["rule", "lane"], registry=r),
        commands=Counter(
            "bukong_commands",
            "Dispatch commands produced, by site and lane",
            ["site", "lane"],
            registry=r,
        ),
        duplicates_suppressed=Counter(
            "bukong_duplicates_suppressed",
            "Decisions not dispatched again (redelivery/replay)",
            registry=r,
        ),
        rule_evaluations=Counter(
            "bukong_rule_evaluations", "Rule evaluations, by rule", ["rule"], registry=r
        ),
        rule_hits=Counter(
            "bukong_rule_hits",
            "Rule hits by rule, port and status (active/shadow)",
            ["rule", "port", "status"],
            registry=r,
        ),
        rule_confirmed=Counter(
            "bukong_rule_confirmed",
            "Hits confirmed by an inspection result, by rule and port",
            ["rule", "port"],
            registry=r,
        ),
        inspection_results=Counter(
            "bukong_inspection_results",
            "Inspection results received, by outcome",
            ["outcome"],
            registry=r,
        ),
    )


def _state(r: CollectorRegistry) -> dict[str, Any]:
    """Model, pack, lag and notifications."""
    return dict(
        budget_use=Gauge(
            "bukong_budget_use_ratio", "Dispatched share / target share, by site", ["site"], registry=r
        ),
        model_version=Gauge("bukong_model_version", "Version number of the champion model", registry=r),
        model_learned=Counter("bukong_model_learned", "Labels the model learned from", registry=r),
        drift_events=Counter("bukong_drift_events", "Drift detected on the model's error stream", registry=r),
        rule_pack_version=Gauge("bukong_rule_pack_version", "Version of the live rule pack", registry=r),
        consumer_lag=Gauge(
            "bukong_consumer_lag",
            "Records behind the end of the log, by topic and partition",
            ["topic", "partition"],
            registry=r,
        ),
        batch_size=Histogram(
            "bukong_batch_size",
            "Records per processed batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        ),
        notifications=Counter("bukong_notifications", "Notifications sent, by kind", ["kind"], registry=r),
    )


def _shared(r: CollectorRegistry) -> dict[str, Any]:
    """What a worker reads of the state it shares with the group and the risk centre (Redis)."""
    return dict(
        shared_keys_read=Counter(
            "bukong_shared_keys_read",
            "Shared enterprise and commodity keys a batch needed, by how they were read: full (the key's "
            "state loaded from Redis) or held (held here as the group wrote it: only its version checked)",
            ["read"],
            registry=r,
        ),
        watchlist_entries=Gauge(
            "bukong_watchlist_entries", "Watchlist entries this worker holds, by kind", ["kind"], registry=r
        ),
        watchlist_reloads=Counter(
            "bukong_watchlist_reloads",
            "Watchlists reloaded from Redis (every 2 s while Redis answers)",
            registry=r,
        ),
        input_clock_behind=Gauge(
            "bukong_input_clock_behind_seconds",
            "Event time between the latest record read and the slowest input partition still behind it: "
            "declarations after that (plus the slack) wait for it (a backlog read unevenly); 0 when no "
            "partition is behind by more than the slack",
            registry=r,
        ),
        input_clock_partitions=Gauge(
            "bukong_input_clock_partitions_behind",
            "Input partitions with records left to read, not reported stuck (they hold the input clock)",
            registry=r,
        ),
        input_paused=Gauge(
            "bukong_input_partitions_paused",
            "Input partitions paused for being read more than BUKONG_ALIGN_AHEAD_MS past the input clock "
            "(resumed when it comes near)",
            registry=r,
        ),
        input_pauses=Counter(
            "bukong_input_partition_pauses",
            "Times an input partition was paused for being read too far past the input clock",
            registry=r,
        ),
    )


def _ops(r: CollectorRegistry) -> dict[str, Any]:
    """Dependencies and stuck partitions."""
    return dict(
        dependency_retries=Counter(
            "bukong_dependency_retries",
            "Retries of a Redis or broker operation that failed (dependency = redis | broker)",
            ["dependency"],
            registry=r,
        ),
        dependency_wait_seconds=Counter(
            "bukong_dependency_wait_seconds",
            "Seconds the worker held its work waiting for a dependency (redis | broker)",
            ["dependency"],
            registry=r,
        ),
        dependency_up=Gauge(
            "bukong_dependency_up",
            "1 when the worker's last use of the dependency succeeded, 0 while it waits for it",
            ["dependency"],
            registry=r,
        ),
        rule_errors=Counter(
            "bukong_rule_errors",
            "Rule evaluations that ended in a run-time error, by rule",
            ["rule"],
            registry=r,
        ),
        results_unknown_command=Counter(
            "bukong_results_unknown_command",
            "Inspection results naming a command id that does not exist (status not recorded)",
            registry=r,
        ),
        resent_records=Counter(
            "bukong_resent_records",
            "Records sent again after a failed delivery, by topic (commands only when not on the log; "
            "dead letters and notifications may be doubles)",
            ["topic"],
            registry=r,
        ),
        partition_stuck=Gauge(
            "bukong_partition_stuck",
            "1 while an input partition has lag and its position has not moved for BUKONG_STUCK_AFTER_S",
            ["topic", "partition"],
            registry=r,
        ),
        fetch_wait_seconds=Gauge(
            "bukong_fetch_wait_seconds",
            "The consumer's current fetch wait (raised when lagging partitions return nothing)",
            registry=r,
        ),
    )


def _timings(r: CollectorRegistry) -> dict[str, Any]:
    """Where a worker's time goes: per stage, fetched to acknowledged, the loop's lag, the collector."""
    return dict(
        stage_seconds=Histogram(
            "bukong_stage_seconds",
            "Seconds one input batch spent in a stage (decode, join, rules, model, policy, dispatch, "
            "redis, acks)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        ),
        stage_event_seconds=Histogram(
            "bukong_stage_event_seconds",
            "Seconds per input record in a stage (a batch's stage time over its records)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        ),
        worker_latency_seconds=Histogram(
            "bukong_worker_latency_seconds",
            "Worker-internal latency of a dispatch command: input batch fetched -> command acknowledged "
            "by the broker",
            buckets=INTERNAL_BUCKETS,
            registry=r,
        ),
        loop_lag_seconds=Histogram(
            "bukong_event_loop_lag_seconds",
            "How late the worker's event loop woke from a 100 ms sleep: the time something held the loop "
            "(a long batch, a timer, a garbage collection), which every batch waiting then waits too",
            buckets=INTERNAL_BUCKETS,
            registry=r,
        ),
        gc_pause_seconds=Histogram(
            "bukong_gc_pause_seconds",
            "Seconds the worker's garbage collector held the loop, per collection, by generation (0 young, "
            "2 full): the part of the loop's lag no stage shows",
            ["generation"],
            buckets=(0.0001, 0.00025, *INTERNAL_BUCKETS),
            registry=r,
        ),
        gc_frozen=Gauge(
            "bukong_gc_frozen_objects",
            "Objects the collector leaves out of automatic collections (frozen, agents/collector.py)",
            registry=r,
        ),
        gc_full_freed=Counter(
            "bukong_gc_full_freed_objects",
            "Unreachable objects freed by the worker's periodic full collections (cycles that became garbage "
            "after being frozen: a steady rise is a leak the full collection bounds)",
            registry=r,
        ),
    )


class WebMetrics(NamedTuple):
    """The web process's metrics (live view and command API), on its own registry."""

    streams_open: Gauge
    streams_refused: Counter
    streams_dropped: Counter
    requests_refused: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WebMetrics:
        r = registry
        return cls(
            streams_open=Gauge("bukong_web_streams_open", "Live streams open, by role", ["role"], registry=r),
            streams_refused=Counter(
                "bukong_web_streams_refused",
                "Live streams refused at a cap, by cap (role, global)",
                ["cap"],
                registry=r,
            ),
            streams_dropped=Counter(
                "bukong_web_streams_dropped",
                "Live streams closed because the client fell behind (its queue filled)",
                registry=r,
            ),
            requests_refused=Counter(
                "bukong_web_requests_refused",
                "Requests refused, by reason (unauthenticated, forbidden, cross_origin, body_too_large, ...)",
                ["reason"],
                registry=r,
            ),
        )
