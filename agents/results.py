"""Decisions counted per batch; inspection results: learn from the facts as scored, count results and
confirmed violations per rule, site and intelligence-lead source, move the command's status.

A result names a command; its scoring-time snapshot comes from the engine's store, or (scored by another
worker or before a restart) from the command Redis holds. Called by ``Runtime.on_results`` under its lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from agents.delivery import LEAD_STATS_LUA, RESULT_LUA, Out, Record, log
from pipeline.contracts import events as c
from pipeline.contracts.commands import (
    DRIFT_STREAM_KEY,
    LEAD_OTHER,
    LEAD_STATS_KEY,
    MAX_LEAD_SOURCE_CHARS,
    MAX_LEAD_SOURCES,
    RULE_STATS_KEY,
    STATUS_PREFIX,
)
from pipeline.contracts.events import ContractError
from pipeline.core.decision.snapshots import Snapshot
from pipeline.core.engine import Decision, Learned
from pipeline.io.codec import decode_event
from pipeline.io.metrics import Metrics

if TYPE_CHECKING:
    from agents.runtime import Runtime


async def on_results(rt: Runtime, records: Sequence[Record]) -> list[Learned]:
    """Inspection results: learn from the scoring-time snapshot, grade rules, update command status."""
    m = rt.metrics
    now_ms = rt.clock_ms()
    dead: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for rec in records:
        m.events_in.labels(rec.topic).inc()
        try:
            results.append(decode_event(rec.topic, rec.value, now_ms))
        except ContractError as exc:
            dead.append(rt._dead(rec, exc, now_ms))
    stored = await _stored_snapshots(rt, results)
    learned, incr, drifts = _learn(rt, results, stored)
    leads = lead_counts(learned)
    if rt.engine.model is not None:
        m.model_version.set(rt.engine.model.version)
    keys = [STATUS_PREFIX + r["command_id"] for r in results]
    args: list[Any] = []
    for r in results:
        args += [r["outcome"], now_ms, r.get("found_value_cny") or 0]

    def write() -> Awaitable[Any]:
        pipe = rt.redis.pipeline(transaction=False)
        if keys:
            pipe.eval(RESULT_LUA, len(keys), *keys, *args)
        for k, v in incr.items():
            pipe.hincrby(RULE_STATS_KEY, k, v)
        if leads:
            pipe.eval(LEAD_STATS_LUA, 1, LEAD_STATS_KEY, MAX_LEAD_SOURCES, LEAD_OTHER, *leads)
        for d in drifts:
            pipe.xadd(DRIFT_STREAM_KEY, {"d": d}, maxlen=1000, approximate=True)
        return pipe.execute()

    if keys or incr or leads or drifts:
        res = await rt.retry("redis", "saving inspection results", write)
        if keys:
            unknown = [r["command_id"] for r, ok in zip(results, res[0], strict=True) if not int(ok)]
            if unknown:
                m.results_unknown_command.inc(len(unknown))
                log.warning(
                    "%d inspection results name commands that do not exist (first: %s); status not "
                    "recorded. Results must reference a dispatched command id",
                    len(unknown),
                    unknown[0],
                )
    if dead:
        await rt._deliver([Out(c.DEAD_LETTER, None, orjson.dumps(dl)) for dl in dead])
    return learned


async def _stored_snapshots(rt: Runtime, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Snapshots of results scored by another worker or before a restart: the command holds the facts it
    used (one pipelined read)."""
    missing = [
        r for r in results if rt.engine.snapshots is None or rt.engine.snapshots.get(r["decl_id"]) is None
    ]
    stored: dict[str, Any] = {}
    if not missing:
        return stored

    def lookup() -> Awaitable[Any]:
        pipe = rt.redis.pipeline(transaction=False)
        for r in missing:
            pipe.hget(STATUS_PREFIX + r["command_id"], "command")
        return pipe.execute()

    bodies = await rt.retry("redis", "reading commands for results", lookup)
    for r, body in zip(missing, bodies, strict=True):
        if body:
            cmd = orjson.loads(body)
            meta = rt.engine.snapshot_meta(cmd)
            stored[r["decl_id"]] = Snapshot(cmd["decl_id"], cmd["decided_ts_ms"], cmd["facts"], meta)
    return stored


def _learn(
    rt: Runtime, results: list[dict[str, Any]], stored: dict[str, Any]
) -> tuple[list[Learned], dict[str, int], list[bytes]]:
    """The engine learns from each result; rule grades counted per batch; drift events serialised."""
    m = rt.metrics
    learned: list[Learned] = []
    incr: dict[str, int] = {}
    drifts: list[bytes] = []
    for r in results:
        m.inspection_results.labels(r["outcome"]).inc()
        out = rt.engine.on_result(r, stored.get(r["decl_id"]))
        if out is None:
            continue
        learned.append(out)
        if out.learned:
            m.model_learned.inc()
        if out.outcome == "violation":
            for rule in out.rule_ids:
                m.rule_confirmed.labels(rule, out.port).inc()
                k = f"{rule}|{out.port}|confirmed"
                incr[k] = incr.get(k, 0) + 1
        for rule in out.rule_ids:
            k = f"{rule}|{out.port}|results"
            incr[k] = incr.get(k, 0) + 1
        if out.drift is not None:
            m.drift_events.inc()
            drifts.append(orjson.dumps(out.drift.as_dict()))
    return learned, incr, drifts


def lead_counts(learned: Sequence[Learned]) -> list[Any]:
    """Results and confirmed violations per lead source of the watched declarations among ``learned``, as
    ``LEAD_STATS_LUA`` takes them: (source, results, confirmed) flattened. Counted as the rules count theirs:
    every result, confirmed when the outcome is a violation."""
    per: dict[str, list[int]] = {}
    for out in learned:
        if out.lead_source:
            n = per.setdefault(out.lead_source[:MAX_LEAD_SOURCE_CHARS], [0, 0])
            n[0] += 1
            n[1] += out.outcome == "violation"
    return [x for src, (results, confirmed) in per.items() for x in (src, results, confirmed)]


def tally(
    decisions: list[Decision], m: Metrics
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """The batch's commands and notifications, and its rule counters: counted per batch, then one inc
    per label set (a labels() lookup per event costs more than the rest)."""
    commands = []
    notes = []
    rule_counts: dict[str, int] = {}
    by_lane: dict[str, int] = {}
    by_hit: dict[tuple[str, str], int] = {}
    by_rule: dict[tuple[str, str, str], int] = {}
    for d in decisions:
        by_lane[d.lane] = by_lane.get(d.lane, 0) + 1
        port = d.decl["port"]
        for h in d.hits:
            hk = (h.rule_id, h.lane)
            by_hit[hk] = by_hit.get(hk, 0) + 1
            rk = (h.rule_id, port, "active")
            by_rule[rk] = by_rule.get(rk, 0) + 1
            k = f"{h.rule_id}|{port}|hits"
            rule_counts[k] = rule_counts.get(k, 0) + 1
            if d.dispatch:
                k = f"{h.rule_id}|{port}|dispatched"
                rule_counts[k] = rule_counts.get(k, 0) + 1
        for h in d.shadow_hits:
            rk = (h.rule_id, port, "shadow")
            by_rule[rk] = by_rule.get(rk, 0) + 1
            k = f"{h.rule_id}|{port}|shadow_hits"
            rule_counts[k] = rule_counts.get(k, 0) + 1
        if d.command is not None:
            commands.append(d.command)
        if d.notification is not None:
            notes.append(d.notification)
    for lane, count in by_lane.items():
        m.decisions.labels(lane).inc(count)
    for (rule_id, lane), count in by_hit.items():
        m.hits.labels(rule_id, lane).inc(count)
    for labels, count in by_rule.items():
        m.rule_hits.labels(*labels).inc(count)
    return commands, notes, rule_counts
