"""The pure scoring core: events in, decisions out. No faust, no redis, no prometheus_client, no wall clock.

The same Engine runs inside the Faust agent, in replay/backtest from a file, and in the in-process benchmark:

    engine = Engine.default()
    for topic, ev in events:
        for cmd in engine.process(topic, ev):
            ...
    engine.advance(watermark_ms)   # deadline scoring when no more events come for a conveyance

Joining and features live in features/, rules in rules/, the model and policy in pipeline/core/model.py and
pipeline/core/policy.py; this module wires them and turns each decided declaration into at most one command.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from features.geometry import distance_to_polyline_km, haversine_km
from pipeline.contracts import events as c
from pipeline.contracts.commands import make_command
from pipeline.core.policy import RulePolicy, importance_weight
from pipeline.core.ports import Joiner, Model, Policy, SnapshotStore

DEFAULT_DEADLINE_MS = 30 * 60 * 1000  # a command must be acted on within 30 min of event time
MIN = 60_000
# how long a site has to act, by lane: before the truck leaves the inspection area / the audit window closes
LANE_DEADLINE_MS = {
    "physical_inspection": 45 * MIN,
    "document_check": 90 * MIN,
    "intercept": 30 * MIN,  # replaced by the time the vehicle needs to reach the border, when it is tracked
    "post_clearance_audit": 30 * 24 * 60 * MIN,
    "release": 0,
}
INTERCEPT_SPEED_KMH = 50.0
LEARNED_KEEP = 20_000  # results learnt here and not yet published to the consumer group, at most


class ReadyLike(Protocol):
    decl: dict[str, Any]
    facts: dict[str, Any]
    missing: list[str]
    trigger_topic: str
    trigger_ts_ms: int


class HitLike(Protocol):
    rule_id: str
    lane: str
    severity: str
    status: str
    action: str
    reason: str
    evidence: dict[str, Any]


class RuleSet(Protocol):
    version: int

    def evaluate(self, facts: dict[str, Any]) -> list[Any]: ...

    def errors(self) -> dict[str, int]: ...  # evaluations per rule that ended in an error (no hit)

    def last_errors(self) -> dict[str, str]: ...  # the last error message per failing rule


@dataclass(slots=True)
class Decision:
    """What the core decided for one declaration."""

    decl: dict[str, Any]
    facts: dict[str, Any]
    lane: str
    dispatch: bool
    command: dict[str, Any] | None
    hits: list[Any] = field(default_factory=list)
    shadow_hits: list[Any] = field(default_factory=list)
    notification: dict[str, Any] | None = None


@dataclass(slots=True)
class Learned:
    """What an inspection result taught: for hit-rate bookkeeping and the live view."""

    decl_id: str
    command_id: str
    outcome: str
    rule_ids: list[str]
    port: str
    selection: str
    learned: bool
    drift: Any = None
    lead_source: str = ""  # the watchlist lead's source (facts' watch_source), if the declaration was watched


@dataclass
class Engine:
    """Join -> facts -> rules + model -> policy -> at most one command per declaration.

    Without a model or policy (the first path, tests) an active rule hit decides the lane by itself.
    """

    joiner: Joiner
    rules: RuleSet
    model: Model | None = None  # without one, an active hit scores 1 and none scores 0
    policy: Policy = field(default_factory=RulePolicy)  # owns the whole decision
    snapshots: SnapshotStore | None = None
    deadline_ms: int = DEFAULT_DEADLINE_MS
    explain_k: int = 3
    squads: tuple[Any, ...] = ()  # mobile squads (id, lat, lon, roster): intercepts go to the nearest one
    border: tuple[tuple[float, float], ...] = ()  # the border line: an intercept must happen before it
    lane_deadline_ms: dict[str, int] = field(default_factory=lambda: dict(LANE_DEADLINE_MS))
    decided: int = 0
    # once shared by a consumer group (share_group()): the results learnt here, to publish
    learned_journal: list[list[Any]] | None = None
    learned_dropped: int = 0  # journalled results dropped unpublished (over LEARNED_KEEP)
    _learned_refs: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def process(
        self, topic: str, ev: dict[str, Any], trigger: dict[str, Any] | None = None
    ) -> list[Decision]:
        """Fold one validated event in; return the decisions it completed (usually none)."""
        ready = self.joiner.on_event(topic, ev)
        if not ready:
            return []
        return [self._decide(r, trigger) for r in ready]

    def advance(self, watermark_ms: int) -> list[Decision]:
        """Event time has reached ``watermark_ms``: decide declarations whose join deadline passed."""
        return [self._decide(r, None) for r in self.joiner.advance(watermark_ms)]

    def release(self) -> list[Decision]:
        """Decide the declarations held behind the input clock that it has passed (features/engine.py
        ``hold``; a joiner without an input clock holds none)."""
        release = getattr(self.joiner, "release", None)
        return [self._decide(r, None) for r in release()] if release is not None else []

    def swap_rules(self, rules: RuleSet) -> None:
        """Atomically replace the rule pack (between events: no event sees half a pack)."""
        self.rules = rules

    def _decide(self, ready: ReadyLike, trigger: dict[str, Any] | None) -> Decision:
        self.decided += 1
        facts = ready.facts
        decl = ready.decl
        decided_ts = max(ready.trigger_ts_ms, decl["ts_ms"])
        all_hits = self.rules.evaluate(facts)
        hits = [h for h in all_hits if h.status == "active"]
        shadow = [h for h in all_hits if h.status != "active"]
        notification = None
        emergency = [h for h in hits if h.action == "emergency_release"]
        if emergency:
            notification = {
                "kind": "emergency_release",
                "decl_id": decl["decl_id"],
                "conveyance_id": decl["conveyance_id"],
                "port": decl["port"],
                "ts_ms": decided_ts,
                "text": "; ".join(h.reason for h in emergency),
            }
        score = self.model.score(facts) if self.model is not None else (1.0 if hits else 0.0)
        pd = self.policy.decide(decl, facts, all_hits, score, decided_ts)
        lane, dispatch, severity, reasons = pd.lane, pd.dispatch, pd.severity, pd.reasons
        selection, prob, officers, site, risk = pd.selection, pd.selection_prob, pd.officers, pd.site, pd.risk
        command = None
        deadline = decided_ts + self.lane_deadline_ms.get(lane, self.deadline_ms)
        if dispatch and lane == "intercept" and facts.get("track_present") and self.squads:
            site, officers, deadline = self._route_intercept(decl["decl_id"], facts, decided_ts, officers)
        if dispatch:
            factors = self.model.explain(facts, self.explain_k) if self.model is not None else []
            model_version = self.model.version if self.model is not None else 0
            command = make_command(
                decl=decl,
                lane=lane,
                site=site,
                severity=severity,
                score=risk,
                reasons=reasons,
                rule_ids=[h.rule_id for h in hits],
                pack_version=self.rules.version,
                decided_ts_ms=decided_ts,
                deadline_ts_ms=deadline,
                facts=facts,
                missing=list(ready.missing),
                factors=factors,
                model_version=model_version,
                selection=selection,
                selection_prob=prob,
                officers=officers,
                trigger=dict(trigger or {}, topic=ready.trigger_topic),
            )
            if self.snapshots is not None:
                self.snapshots.put(decl["decl_id"], facts, decided_ts, **self.snapshot_meta(command))
        return Decision(decl, facts, lane, dispatch, command, hits, shadow, notification)

    def _route_intercept(
        self, decl_id: str, facts: dict[str, Any], decided_ts: int, officers: list[str]
    ) -> tuple[str, list[str], int]:
        """The mobile squad nearest the vehicle's latest fix, its officers, and the time to the border."""
        pos = (float(facts["last_lat"]), float(facts["last_lon"]))
        squad = min(self.squads, key=lambda s: haversine_km(pos, (s.lat, s.lon)))
        officers = self.policy.officers(decl_id, squad.id, "intercept")
        deadline = decided_ts + self.lane_deadline_ms["intercept"]
        if self.border:
            km = distance_to_polyline_km(pos, self.border)
            eta = int(km / INTERCEPT_SPEED_KMH * 60 * MIN)
            deadline = decided_ts + max(15 * MIN, min(eta, 120 * MIN))
        return squad.id, officers, deadline

    def snapshot_meta(self, command: dict[str, Any]) -> dict[str, Any]:
        """What a dispatched command's result needs to teach: how it was selected and what it grades.

        Built from the command alone, so a worker that restarted (its snapshots gone) rebuilds the same
        metadata from the command it stored."""
        facts = command["facts"]
        return {
            "selection": command["selection"],
            "selection_prob": command["selection_prob"],
            "rule_ids": command["rule_ids"],
            "port": command["port"],
            "command_id": command["command_id"],
            "grade_keys": self.policy.grade_keys(facts, facts, [{"rule_id": r} for r in command["rule_ids"]]),
        }

    def on_result(self, ev: dict[str, Any], snapshot: Any = None) -> Learned | None:
        """An inspection result: learn from the facts as they were when the declaration was scored.

        ``snapshot`` may be supplied by the caller (e.g. loaded from Redis after a restart); otherwise the
        engine's own SnapshotStore is used. Returns None when no snapshot is known (counted by the store).
        """
        snap = snapshot
        if snap is None and self.snapshots is not None:
            snap = self.snapshots.pop(ev["decl_id"], ev["ts_ms"])
        if snap is None:
            return None
        # the parties' violation history (features/history.py): once per result, as the snapshot pops once
        self.joiner.on_event(c.INSPECTION_RESULTS, ev)
        meta = snap.meta
        label = ev["outcome"] == "violation"
        drift = None
        learned = False
        if ev["outcome"] in ("violation", "clean"):
            self.policy.on_result(meta, label)  # grades the rules, lead source and watched entities
            weight = importance_weight(meta.get("selection", "rule"), meta.get("selection_prob", 1.0))
            if self.model is not None:
                drift = self.model.learn(snap.facts, label, weight, ev["ts_ms"])
                learned = True
            self._journal_learned(ev, int(label), weight, meta, snap.facts)
        return Learned(
            ev["decl_id"],
            ev["command_id"],
            ev["outcome"],
            list(meta.get("rule_ids", [])),
            meta.get("port", ""),
            meta.get("selection", "rule"),
            learned,
            drift,
            str(snap.facts.get("watch_source") or ""),
        )

    # -- shared by a consumer group ----------------------------------------------------------------------
    def share_group(self) -> None:
        """Journal what a consumer group must hold alike: every decision's effect on its site's budget and
        every result learnt (model and grades). The agents publish ``drain_group()`` and fold the other
        workers' entries with ``apply_group()`` (agents/globalstate.py), so every worker's budget, grades and
        model follow the same sequence."""
        budget = getattr(self.policy, "budget", None)
        if budget is not None:
            budget.share()
        if self.learned_journal is None:
            self.learned_journal = []

    def drain_group(self) -> list[list[Any]]:
        """This worker's entries since the last drain: ``["b", *budget entry]`` per decision (see
        ``BudgetController.apply``), ``["l", decl_id, ts, label, weight, grading, facts]`` per result
        (``grading``: the snapshot's ``grade_keys``/``rule_ids``, as ``policy.on_result`` reads them)."""
        budget = getattr(self.policy, "budget", None)
        out = [["b", *e] for e in budget.drain()] if budget is not None else []
        if self.learned_journal:
            out += [["l", *e] for e in self.learned_journal]
            self.learned_journal = []
        return out

    def apply_group(self, entries: Iterable[Sequence[Any]]) -> int:
        """Fold in other workers' entries, in their order; returns how many changed state. An entry already
        folded (or made here) is skipped; one of another shape raises ValueError/TypeError/IndexError."""
        budget = getattr(self.policy, "budget", None)
        n = 0
        for entry in entries:
            kind = entry[0]
            if kind == "b" and budget is not None:
                n += budget.apply(list(entry[1:]))
            elif kind == "l":
                n += self._apply_learned(*entry[1:])
        return n

    def _journal_learned(
        self, ev: dict[str, Any], label: int, weight: float, meta: Any, facts: dict[str, Any]
    ) -> None:
        """A result learnt here, for the other workers: what ``policy.on_result`` grades and the facts."""
        journal = self.learned_journal
        if journal is None:
            return
        self._remember_learned(ev["decl_id"])
        grading = {k: meta[k] for k in ("grade_keys", "rule_ids") if k in meta}
        journal.append([ev["decl_id"], ev["ts_ms"], label, weight, grading, facts])
        if len(journal) > LEARNED_KEEP:  # nobody drains it (no batch saved for that long)
            del journal[0]
            self.learned_dropped += 1

    def _apply_learned(
        self, decl_id: str, ts_ms: int, label: int, weight: float, grading: Any, facts: dict[str, Any]
    ) -> bool:
        if not isinstance(grading, dict) or not isinstance(facts, dict):
            raise TypeError("a learnt result's grading and facts must be objects")
        if decl_id in self._learned_refs:
            return False
        self._remember_learned(decl_id)
        self.policy.on_result(grading, bool(label))
        if self.model is not None:
            self.model.learn(facts, bool(label), float(weight), int(ts_ms))
        return True

    def _remember_learned(self, decl_id: str) -> None:
        self._learned_refs[decl_id] = None
        if len(self._learned_refs) > 200_000:
            self._learned_refs.popitem(last=False)


REPLAY_TICK_MS = 1_000  # event time between deadline checks in a replay (the worker's timer: 1 s)


def replay(engine: Engine, events: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[Decision]:
    """Run recorded (topic, event) pairs through the core in order, moving event time on every second of it
    as a worker's timer does live (so a deadline fires when it would have), then flush every pending one."""
    clock = ReplayClock(events)
    for topic, ev, tick in clock:
        yield from engine.process(topic, ev)
        if tick is not None:
            yield from engine.advance(tick)
    yield from engine.advance(clock.latest + 10 * engine.deadline_ms)


class ReplayClock:
    """Iterates (topic, event, tick): ``tick`` is the event time to advance deadlines to after the event
    (every ``REPLAY_TICK_MS`` of event time, as a worker's timer), else None; ``latest`` is the latest event
    time so far. The one clock of every replay, backtest and benchmark."""

    def __init__(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        self.events = events
        self.latest = 0

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any], int | None]]:
        ticked_at = 0
        for topic, ev in self.events:
            ts = ev.get("ts_ms") or 0
            if ts > self.latest:
                self.latest = ts
            if self.latest - ticked_at >= REPLAY_TICK_MS:
                ticked_at = self.latest
                yield topic, ev, self.latest
            else:
                yield topic, ev, None
