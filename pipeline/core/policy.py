"""The decision policy: rule hits + model score + enterprise credit + budget -> lane and selection.

Pure core (no faust/redis/prometheus_client, no wall clock). The policy in words is in docs/policy.md:

1. an active ``emergency_release`` hit releases at once (no command, a notification is the caller's job);
2. credit shifts the model's odds (aeo_advanced x0.5, distrusted x2) and the random share (x0.5, x2);
3. risk = noisy-OR of the adjusted score and each active rule hit's severity weight;
4. hard rules (watchlists, ``action`` in ``hard_actions`` or severity critical) are always dispatched,
   over the budget if need be (counted);
5. otherwise risk >= the site's adaptive threshold (budget.py) -> inspected: the rules' lane if a rule hit,
   else physical inspection above ``red_risk`` and a document check below; with the shift's capacity used
   up, the same declaration goes to post-clearance audit instead (blue: no site capacity);
   a rule hit below the threshold also goes to post-clearance audit, never silently released;
6. otherwise a random pick (双随机) with probability ``selection_prob`` among the rest -> physical inspection,
   flagged ``selection="random"``; the learner weights its label by ``importance_weight``;
7. officers for every inspection are drawn from the site roster by a RNG seeded from the decl_id, so a
   replay or a redelivered event gives the same decision, the same random pick and the same officers.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.decision.budget import BudgetConfig, BudgetController

INSPECTION_LANES = frozenset({"document_check", "physical_inspection", "intercept"})
_LANE_PRIORITY = {
    "release": 0,
    "post_clearance_audit": 1,
    "document_check": 2,
    "physical_inspection": 3,
    "intercept": 4,
}
_SEVERITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    random_share: float = 0.1  # share of inspections picked at random among non-hits
    credit_odds: Mapping[str, float] = field(
        default_factory=lambda: {"aeo_advanced": 0.5, "general": 1.0, "distrusted": 2.0}
    )
    credit_random: Mapping[str, float] = field(
        default_factory=lambda: {"aeo_advanced": 0.5, "general": 1.0, "distrusted": 2.0}
    )
    severity_weight: Mapping[str, float] = field(
        default_factory=lambda: {"low": 0.05, "medium": 0.15, "high": 0.35, "critical": 0.6}
    )
    hard_actions: frozenset[str] = frozenset({"hard", "intercept", "hold"})
    hard_severities: frozenset[str] = frozenset({"critical"})
    watchlist_is_hard: bool = True
    red_risk: float = 0.5  # model selections at or above this risk get a physical inspection
    officers_per_inspection: int = 2
    max_importance_weight: float = 10.0


@dataclass(slots=True)
class Decision:
    lane: str
    severity: str
    selection: str  # "rule", "hard_rule", "model", "random", "release"
    selection_prob: float
    officers: list[str]
    site: str
    reasons: list[dict[str, Any]]
    dispatch: bool
    risk: float
    threshold: float
    over_budget: bool = False


def uniform(decl_id: str, salt: str) -> float:
    """A number in [0, 1) that depends only on (salt, decl_id): replays and redeliveries agree."""
    h = hashlib.blake2b(f"{salt}:{decl_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def importance_weight(selection: str, selection_prob: float, cap: float = 10.0) -> float:
    """Weight of a label in learning: 1/p for random picks (clipped at ``cap``), 1 for the rest."""
    if selection != "random" or selection_prob <= 0:
        return 1.0
    return min(1.0 / selection_prob, cap)


def _g(obj: Any, name: str, default: Any = "") -> Any:
    return obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)


class DecisionPolicy:
    def __init__(
        self, config: PolicyConfig | None = None, rosters: Mapping[str, Sequence[str]] | None = None
    ):
        self.config = config or PolicyConfig()
        self.rosters = {k: list(v) for k, v in (rosters or {}).items()}
        self.budget = BudgetController(self.config.budget)
        b = self.config.budget
        # random picks are random_share of inspections: p * (1 - target) ~= target * random_share
        self.base_random_prob = b.target_share * self.config.random_share / max(1e-9, 1 - b.target_share)

    # ------------------------------------------------------------------------------------------ parts
    def adjusted_score(self, score: float, credit: str) -> float:
        k = self.config.credit_odds.get(credit, 1.0)
        s = min(max(score, 1e-9), 1 - 1e-9)
        odds = s / (1 - s) * k
        return odds / (1 + odds)

    def combine(self, score: float, hits: Sequence[Any], credit: str) -> float:
        keep = 1.0 - self.adjusted_score(score, credit)
        for h in hits:
            keep *= 1.0 - self.config.severity_weight.get(_g(h, "severity"), 0.0)
        return 1.0 - keep

    def is_hard(self, hit: Any) -> bool:
        cfg = self.config
        return _g(hit, "action") in cfg.hard_actions or _g(hit, "severity") in cfg.hard_severities

    def officers(self, decl_id: str, site: str, lane: str) -> list[str]:
        roster = self.rosters.get(f"{site}:squad" if lane == "intercept" else site) or self.rosters.get(site)
        if not roster:
            return []
        rng = random.Random(int(uniform(decl_id, "officers") * 2**53))
        return rng.sample(roster, min(self.config.officers_per_inspection, len(roster)))

    # ----------------------------------------------------------------------------------------- decide
    def decide(
        self, decl: Mapping[str, Any], facts: Mapping[str, Any], hits: Sequence[Any], score: float, ts_ms: int
    ) -> Decision:
        cfg = self.config
        decl_id = str(decl.get("decl_id") or facts.get("decl_id") or "")
        site = str(decl.get("port") or facts.get("port") or "unknown")
        credit = str(decl.get("credit_grade") or facts.get("credit_grade") or "general")
        active = [h for h in hits if _g(h, "status", "active") == "active"]
        if score != score:  # NaN from a broken model must not decide anything
            score = 0.0
        rule_reasons = [
            {"rule_id": _g(h, "rule_id"), "text": _g(h, "reason"), "evidence": _g(h, "evidence", {})}
            for h in active
        ]
        if any(_g(h, "action") == "emergency_release" for h in active):
            return Decision("release", "low", "release", 1.0, [], site, rule_reasons, False, 0.0, 1.0)

        risk = self.combine(score, active, credit)
        threshold = self.budget.observe(site, risk, ts_ms)
        watch = cfg.watchlist_is_hard and any(
            facts.get(k) for k in ("watch_conveyance", "watch_enterprise", "watch_declarant")
        )
        hard = watch or any(self.is_hard(h) for h in active)
        rule_lane = max((_g(h, "lane", "release") for h in active), key=lane_rank, default="release")
        severity = max((_g(h, "severity", "low") for h in active), key=_sev_rank, default="low")
        reasons = list(rule_reasons)
        credit_note = "" if credit == "general" else f", credit {credit}"

        if hard:
            lane = rule_lane if lane_rank(rule_lane) >= lane_rank("document_check") else "physical_inspection"
            if watch:
                reasons.append({"kind": "watchlist", "text": "on a live watchlist: always inspected"})
            over = self.budget.record(site, True, hard=True)
            if over:
                reasons.append({"kind": "budget", "text": "hard rule: inspected over the site budget"})
            sev = max(severity, "high", key=_sev_rank)
            return self._dispatch(decl_id, site, lane, sev, "hard_rule", 1.0, reasons, risk, threshold, over)

        if risk >= threshold:
            if active:
                selection, lane = "rule", (rule_lane if rule_lane != "release" else "document_check")
            else:
                selection = "model"
                lane = "physical_inspection" if risk >= max(cfg.red_risk, threshold) else "document_check"
                severity = "high" if lane == "physical_inspection" else "medium"
            reasons.append(
                {
                    "kind": selection,
                    "text": f"risk {risk:.2f} >= site threshold {threshold:.2f} "
                    f"(model {score:.2f}{credit_note}; budget {cfg.budget.target_share:.0%})",
                }
            )
            if not self.budget.capacity_left(site):
                reasons.append({"kind": "budget", "text": "shift capacity used up: post-clearance audit"})
                self.budget.record(site, False)
                return self._dispatch(
                    decl_id, site, "post_clearance_audit", "low", selection, 1.0, reasons, risk, threshold
                )
            self.budget.record(site, lane in INSPECTION_LANES)
            return self._dispatch(decl_id, site, lane, severity, selection, 1.0, reasons, risk, threshold)

        if active and rule_lane != "release":
            reasons.append(
                {
                    "kind": "budget",
                    "text": f"risk {risk:.2f} below site threshold {threshold:.2f}: audit later",
                }
            )
            self.budget.record(site, False)
            return self._dispatch(
                decl_id, site, "post_clearance_audit", "low", "rule", 1.0, reasons, risk, threshold
            )

        p = min(1.0, self.base_random_prob * cfg.credit_random.get(credit, 1.0))
        if uniform(decl_id, "random") < p and self.budget.capacity_left(site):
            reasons.append({"kind": "random", "text": f"random inspection (双随机), p={p:.4f}{credit_note}"})
            self.budget.record(site, True)
            return self._dispatch(
                decl_id, site, "physical_inspection", "medium", "random", p, reasons, risk, threshold
            )
        self.budget.record(site, False)
        return Decision("release", "low", "release", 1.0 - p, [], site, reasons, False, risk, threshold)

    def _dispatch(
        self,
        decl_id: str,
        site: str,
        lane: str,
        severity: str,
        selection: str,
        prob: float,
        reasons: list[dict[str, Any]],
        risk: float,
        threshold: float,
        over: bool = False,
    ) -> Decision:
        officers = self.officers(decl_id, site, lane) if lane in INSPECTION_LANES else []
        return Decision(lane, severity, selection, prob, officers, site, reasons, True, risk, threshold, over)

    # ------------------------------------------------------------------------------------ state, metrics
    def use_ratio(self, site: str) -> float:
        return self.budget.use_ratio(site)

    def use_ratios(self) -> dict[str, float]:
        return {site: self.budget.use_ratio(site) for site in self.budget.sites}

    def snapshot(self) -> dict[str, Any]:
        return {"budget": self.budget.snapshot()}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.budget.restore(state.get("budget", {}))


def lane_rank(lane: str) -> int:
    return _LANE_PRIORITY.get(lane, 0)


def _sev_rank(sev: str) -> int:
    return _SEVERITIES.index(sev) if sev in _SEVERITIES else 0
