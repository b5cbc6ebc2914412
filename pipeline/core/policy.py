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
   with ``rank_by_value`` (off: it lowered precision and value recall, docs/policy.md) the ranked quantity,
   and the threshold's window, is risk x m(declared value / the site's median value) instead of the risk;
6. otherwise a random pick (双随机) with probability ``selection_prob`` among the rest, the rule hits that
   would go to an audit included (``random_over_hits``) -> physical inspection, flagged
   ``selection="random"``; the learner weights its label by ``importance_weight``;
   with ``explore_share`` (off by default) a declaration the random draw left may then be drawn for an
   exploration inspection with a probability that rises with the model's uncertainty
   (``selection="explore"``, its own propensity, taken from the ranked share: docs/policy.md);
7. officers for every inspection are drawn from the site roster by a RNG seeded from the decl_id, so a
   replay or a redelivered event gives the same decision, the same random pick and the same officers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.contracts.commands import SEVERITY_BY_LANE
from pipeline.core.decision.budget import BudgetConfig, BudgetController
from pipeline.core.decision.grades import Grades

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
    random_share: float = 0.1  # share of inspections picked at random among the declarations not selected
    # the random draw also covers rule hits below the threshold (which would go to an audit), so the 双随机
    # sample is uniform over every declaration not selected, not only over those without a hit
    random_over_hits: bool = True
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
    # graded results (docs/policy.md, "Graded design"); FIRST_DESIGN turns them off
    grade_results: bool = True  # rule and lead-source weights from their inspection results
    lead_clean_limit: int = 3  # > 0: a watched entity loses its hard status after this many clean results
    lead_override_sources: frozenset[str] = frozenset({"risk-centre"})  # never demoted (risk-centre override)
    watch_rule_ids: frozenset[str] = frozenset({"watchlist_hit"})  # rules that are the watchlist
    hard_cap_points: float | None = 1.0  # a site this far over its daily share: hard hits ranked instead
    # graded hard rules (docs/policy.md, "Graded hard rules with a value gate"; 0: off, the default): a
    # hard rule (not the watchlist) whose hit rate stays under this floor after ``hard_rule_min_results``
    # results is ranked instead, except on a declaration worth at least ``hard_value_gate`` x the site's
    # median declared value (None: no gate), where a find would be worth most
    hard_rule_floor: float = 0.0
    hard_rule_min_results: int = 20
    hard_value_gate: float | None = None
    # pacing (None: off): ranked picks only while the site's inspections today stay within target x its
    # declarations + this many, and a site behind by more ranks a larger share until it catches up (the
    # day's spend follows its traffic). Random picks are not paced.
    pace_slack: float | None = 1.0
    pace_slack_cold: float = 5.0  # the slack while a site is cold (its first ``budget.min_window``)
    grade_pseudo: float = 8.0  # pseudo-inspections of the prior in a graded rate
    # ranking by value at stake (docs/policy.md, "Ranking by value"): the ranked selection and its threshold
    # use risk x m(declared value), m from the site's median declared value (the last ``budget.window``)
    rank_by_value: bool = False
    # m: "ratio" v / median; "sqrt" its square root; "log" log1p(v) / log1p(median)
    value_transform: str = "ratio"
    value_cap: float = 10.0  # m clipped to [1/cap, cap]: one huge declaration weighs at most cap median ones
    # exploration where the model is uncertain (docs/policy.md, "Exploration where the model is uncertain"):
    # this share of inspections, taken from the ranked share (the budget is the same), is drawn among the
    # declarations the targeting and the 双随机 draw left, with a probability proportional to an uncertainty
    # u over the site's running mean of u; 0: off (the default: it did not win, docs/policy.md)
    explore_share: float = 0.0
    # u: "score" 4s(1-s) of the credit-adjusted model score; "hits" 4r(1-r) of the risk for a rule hit below
    # the threshold (on its way to an audit) and 0 for a declaration without a hit; "near" (risk /
    # threshold)^4: the declarations just below the ranked selection's threshold, hit or not (the risk, not
    # the rank of ``rank_by_value``)
    explore_shape: str = "score"
    explore_alpha: float = 0.005  # the weight of one declaration in the site's running mean of u

    def __post_init__(self) -> None:
        if self.value_transform not in VALUE_TRANSFORMS:
            raise ValueError(f"value_transform {self.value_transform!r}: one of {VALUE_TRANSFORMS}")
        if self.explore_shape not in EXPLORE_SHAPES:
            raise ValueError(f"explore_shape {self.explore_shape!r}: one of {EXPLORE_SHAPES}")
        if not 0.0 <= self.explore_share < 1.0 - self.random_share:
            raise ValueError(f"explore_share {self.explore_share}: in [0, 1 - random_share)")


FIRST_DESIGN: dict[str, Any] = {
    "grade_results": False,
    "lead_clean_limit": 0,
    "hard_cap_points": None,
    "random_over_hits": False,
    "rank_by_value": False,
    "pace_slack": None,
}
VALUE_TRANSFORMS = ("ratio", "sqrt", "log")
EXPLORE_SHAPES = ("score", "hits", "near")
DRAWN_SELECTIONS = frozenset({"random", "explore"})  # picks drawn with a propensity below 1


def first_design(**over: Any) -> PolicyConfig:
    """The first design (severity weights, watchlists and hard rules always inspected), for comparison."""
    return PolicyConfig(**{**FIRST_DESIGN, **over})


def graded_policy(**over: Any) -> PolicyConfig:
    """The graded design measured in docs/policy.md: weights from results, leads demoted after 3 clean
    inspections in a row, hard hits held to the site's daily budget + 1 point."""
    base: dict[str, Any] = {"grade_results": True, "lead_clean_limit": 3, "hard_cap_points": 1.0}
    return PolicyConfig(**{**base, **over})


@dataclass(slots=True)
class Decision:
    lane: str
    severity: str
    selection: str  # "rule", "hard_rule", "model", "random", "explore", "release"
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
    """Weight of a label in learning: 1/p for random and exploration picks (clipped at ``cap``), 1 for the
    rest."""
    if selection not in DRAWN_SELECTIONS or selection_prob <= 0:
        return 1.0
    return min(1.0 / selection_prob, cap)


def _g(obj: Any, name: str, default: Any = "") -> Any:
    return obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)


class DecisionPolicy:
    def __init__(
        self, config: PolicyConfig | None = None, rosters: Mapping[str, Sequence[str]] | None = None
    ):
        self.config = cfg = config or PolicyConfig()
        self.rosters = {k: list(v) for k, v in (rosters or {}).items()}
        b = cfg.budget
        if cfg.explore_share > 0:  # exploration picks come out of the ranked share: the same budget
            b = dataclasses.replace(
                b, model_share=max(0.0, b.model_share - b.target_share * cfg.explore_share)
            )
        self.budget = BudgetController(b)
        self.grades = Grades(cfg.grade_pseudo)
        # random picks are random_share of inspections: p * (1 - target) ~= target * random_share
        self.base_random_prob = b.target_share * cfg.random_share / max(1e-9, 1 - b.target_share)
        # exploration picks likewise, before the uncertainty's tilt (u over the site's running mean of u)
        self.base_explore_prob = b.target_share * cfg.explore_share / max(1e-9, 1 - b.target_share)
        self.explore_mean: dict[str, float] = {}  # site -> running mean of u over the candidates

    # ------------------------------------------------------------------------------------------ parts
    def adjusted_score(self, score: float, credit: str) -> float:
        k = self.config.credit_odds.get(credit, 1.0)
        s = min(max(score, 1e-9), 1 - 1e-9)
        odds = s / (1 - s) * k
        return odds / (1 + odds)

    def hit_weight(self, hit: Any, facts: Mapping[str, Any] | None = None) -> float:
        """A hit's weight in the risk: its severity's, or (graded) its rule's or lead source's hit rate."""
        cfg = self.config
        w = cfg.severity_weight.get(_g(hit, "severity"), 0.0)
        if not cfg.grade_results:
            return w
        rule_id = _g(hit, "rule_id")
        if rule_id in cfg.watch_rule_ids and facts is not None and facts.get("watch_source"):
            return self.grades.rate(f"lead:{facts['watch_source']}", w)
        return self.grades.rate(f"rule:{rule_id}", w)

    def combine(
        self, score: float, hits: Sequence[Any], credit: str, facts: Mapping[str, Any] | None = None
    ) -> float:
        keep = 1.0 - self.adjusted_score(score, credit)
        for h in hits:
            keep *= 1.0 - self.hit_weight(h, facts)
        return 1.0 - keep

    def value_weight(self, site: str, decl: Mapping[str, Any], facts: Mapping[str, Any]) -> float:
        """m(value) of ``rank_by_value``: the declared value against the site's median (1 when the
        declaration states no positive value). Adds the value to the site's window."""
        cfg = self.config
        raw = decl.get("value_cny", facts.get("value_cny"))
        value = float(raw) if isinstance(raw, int | float) and raw == raw else 0.0
        if value <= 0:
            return 1.0
        median = self.budget.value_scale(site, value)
        if cfg.value_transform == "log":
            m = math.log1p(value) / math.log1p(median)
        else:
            m = value / median if cfg.value_transform == "ratio" else math.sqrt(value / median)
        return min(max(m, 1.0 / cfg.value_cap), cfg.value_cap)

    def is_hard(self, hit: Any) -> bool:
        cfg = self.config
        return _g(hit, "action") in cfg.hard_actions or _g(hit, "severity") in cfg.hard_severities

    def officers(self, decl_id: str, site: str, lane: str) -> list[str]:
        roster = self.rosters.get(f"{site}:squad" if lane == "intercept" else site) or self.rosters.get(site)
        if not roster:
            return []
        rng = random.Random(int(uniform(decl_id, "officers") * 2**53))
        return rng.sample(roster, min(self.config.officers_per_inspection, len(roster)))

    # ----------------------------------------------------------------------------------- graded results
    def grade_keys(self, decl: Mapping[str, Any], facts: Mapping[str, Any], hits: Sequence[Any]) -> list[str]:
        """What an inspection result of this declaration grades: its rules, its lead source, its watched
        entities. Kept in the snapshot's metadata and given back to ``on_result``."""
        keys = [f"rule:{_g(h, 'rule_id')}" for h in hits if _g(h, "status", "active") == "active"]
        if facts.get("watch_source"):
            keys.append(f"lead:{facts['watch_source']}")
        for kind in _WATCH_KINDS:
            if facts.get(f"watch_{kind}"):
                keys.append(f"watch:{kind}:{decl.get(f'{kind}_id') or facts.get(f'{kind}_id') or ''}")
        return keys

    def on_result(self, meta: Mapping[str, Any], violation: bool) -> None:
        """An inspection result graded against the keys its decision recorded (``grade_keys``)."""
        keys = meta.get("grade_keys") or [f"rule:{r}" for r in meta.get("rule_ids", ())]
        self.grades.add(keys, violation)

    def _lead_demoted(self, decl: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
        cfg = self.config
        if cfg.lead_clean_limit <= 0 or facts.get("watch_source") in cfg.lead_override_sources:
            return False
        keys = [k for k in self.grade_keys(decl, facts, ()) if k.startswith("watch:")]
        return bool(keys) and all(self.grades.clean_streak(k) >= cfg.lead_clean_limit for k in keys)

    def _rule_demoted(self, hit: Any, m: float) -> bool:
        """A hard rule graded below ``hard_rule_floor`` over enough results, on a declaration under the
        value gate (``m``: its declared value over the site's median)."""
        cfg = self.config
        rule_id = _g(hit, "rule_id")
        if cfg.hard_rule_floor <= 0 or rule_id in cfg.watch_rule_ids:
            return False
        n, found = self.grades.observed(f"rule:{rule_id}")
        if n < cfg.hard_rule_min_results or found >= cfg.hard_rule_floor * n:
            return False
        return cfg.hard_value_gate is None or m < cfg.hard_value_gate

    def _demotion_reasons(self, active: Sequence[Any], m: float, reasons: list[dict[str, Any]]) -> None:
        """Say why a hard rule's hit is ranked instead: the results that graded it below the floor."""
        for h in active:
            if self.is_hard(h) and self._rule_demoted(h, m):
                n, found = self.grades.observed(f"rule:{_g(h, 'rule_id')}")
                floor = self.config.hard_rule_floor
                reasons.append(
                    {
                        "kind": "graded",
                        "text": f"hard rule {_g(h, 'rule_id')} ranked: {found} of the {n} inspections "
                        f"graded so far found a violation, under the {floor:.0%} floor",
                    }
                )

    def _hard(
        self, decl: Mapping[str, Any], facts: Mapping[str, Any], active: Sequence[Any], site: str, m: float
    ) -> bool:
        cfg = self.config
        watch = cfg.watchlist_is_hard and any(facts.get(f) for f in _WATCH_FACTS)
        demoted = watch and self._lead_demoted(decl, facts)
        hard = (watch and not demoted) or any(
            self.is_hard(h)
            and not (demoted and _g(h, "rule_id") in cfg.watch_rule_ids)
            and not self._rule_demoted(h, m)
            for h in active
        )
        if (
            hard
            and cfg.hard_cap_points is not None
            and facts.get("watch_source") not in cfg.lead_override_sources
        ):
            share = self.budget.use_ratio(site) * cfg.budget.target_share
            hard = share < cfg.budget.target_share + cfg.hard_cap_points / 100
        return hard

    # ----------------------------------------------------------------------------------------- decide
    def decide(
        self, decl: Mapping[str, Any], facts: Mapping[str, Any], hits: Sequence[Any], score: float, ts_ms: int
    ) -> Decision:
        decl_id = str(decl.get("decl_id") or facts.get("decl_id") or "")
        site = str(decl.get("port") or facts.get("port") or "unknown")
        credit = str(decl.get("credit_grade") or facts.get("credit_grade") or "general")
        active = [h for h in hits if _g(h, "status", "active") == "active"]
        if score != score:  # NaN from a broken model must not decide anything
            score = 0.0
        reasons = [
            {"rule_id": _g(h, "rule_id"), "text": _g(h, "reason"), "evidence": _g(h, "evidence", {})}
            for h in active
        ]
        if any(_g(h, "action") == "emergency_release" for h in active):
            return Decision("release", "low", "release", 1.0, [], site, reasons, False, 0.0, 1.0)
        risk = self.combine(score, active, credit, facts)
        cfg = self.config
        valued = cfg.rank_by_value or (cfg.hard_rule_floor > 0 and cfg.hard_value_gate is not None)
        worth = self.value_weight(site, decl, facts) if valued else 1.0
        m = worth if cfg.rank_by_value else 1.0
        rank = risk * m  # the ranked quantity: the threshold is a quantile of the site's recent ranks
        threshold = self.budget.observe(site, rank, ts_ms, self.config.pace_slack, ref=decl_id)
        rule_lane, severity = "release", "low"
        if active:
            rule_lane = max((_g(h, "lane", "release") for h in active), key=lane_rank)
            severity = max((_g(h, "severity", "low") for h in active), key=_sev_rank)
        ctx = (decl_id, site, risk, threshold)
        if self._hard(decl, facts, active, site, worth):
            watch = any(facts.get(f) for f in _WATCH_FACTS) and cfg.watchlist_is_hard
            return self._dispatch_hard(ctx, rule_lane, severity, watch, reasons)
        if cfg.hard_rule_floor > 0:
            self._demotion_reasons(active, worth, reasons)
        paced = cfg.pace_slack is None or self.budget.within_pace(site, cfg.pace_slack, cfg.pace_slack_cold)
        if rank >= threshold and paced:
            scored = (score, self._what(risk, m))
            return self._ranked(ctx, bool(active), rule_lane, severity, scored, credit, reasons)
        if active and rule_lane != "release":
            picked = self._random_pick(ctx, credit, reasons) if cfg.random_over_hits else None
            if picked is None:
                picked, _ = self._explore_pick(ctx, (score, credit, True), reasons)
            if picked is not None:
                return picked
            what = self._what(risk, m)
            why = (
                f"{what} below site threshold {threshold:.2f}"
                if rank < threshold
                else f"{what} >= site threshold {threshold:.2f}, but the site's inspections today are ahead "
                "of its budget"
            )
            reasons.append({"kind": "budget", "text": f"{why}: audit later"})
            self.budget.record(site, False)
            return self._dispatch(
                decl_id, site, "post_clearance_audit", "low", "rule", 1.0, reasons, risk, threshold
            )
        return self._random_or_release(ctx, (score, credit, False), reasons)

    def _what(self, risk: float, m: float) -> str:
        """The ranked quantity in words (for the reasons of the declarations that need it)."""
        return f"risk {risk:.2f}" if not self.config.rank_by_value else f"risk {risk:.2f} x value {m:.2f}"

    def _dispatch_hard(
        self,
        ctx: tuple[str, str, float, float],
        rule_lane: str,
        severity: str,
        watch: bool,
        reasons: list[Any],
    ) -> Decision:
        decl_id, site, risk, threshold = ctx
        lane = rule_lane if lane_rank(rule_lane) >= lane_rank("document_check") else "physical_inspection"
        if watch:
            reasons.append({"kind": "watchlist", "text": "on a live watchlist: always inspected"})
        over = self.budget.record(site, True, hard=True)
        if over:
            reasons.append({"kind": "budget", "text": "hard rule: inspected over the site budget"})
        sev = max(severity, "high", key=_sev_rank)
        return self._dispatch(decl_id, site, lane, sev, "hard_rule", 1.0, reasons, risk, threshold, over)

    def _ranked(
        self,
        ctx: tuple[str, str, float, float],
        any_hit: bool,
        rule_lane: str,
        severity: str,
        scored: tuple[float, str],
        credit: str,
        reasons: list[Any],
    ) -> Decision:
        cfg = self.config
        decl_id, site, risk, threshold = ctx
        score, what = scored
        if any_hit:
            selection, lane = "rule", (rule_lane if rule_lane != "release" else "document_check")
        else:  # selected: rank >= threshold; the lane follows the risk alone (red above red_risk)
            selection = "model"
            lane = "physical_inspection" if risk >= cfg.red_risk else "document_check"
            severity = "high" if lane == "physical_inspection" else "medium"
        credit_note = "" if credit == "general" else f", credit {credit}"
        reasons.append(
            {
                "kind": selection,
                "text": f"{what} >= site threshold {threshold:.2f} "
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

    def _random_prob(self, credit: str) -> float:
        """The probability of a random pick (双随机) for a declaration of this credit grade."""
        return min(1.0, self.base_random_prob * self.config.credit_random.get(credit, 1.0))

    def _random_pick(
        self, ctx: tuple[str, str, float, float], credit: str, reasons: list[Any]
    ) -> Decision | None:
        """The random inspection (双随机) if this declaration's draw picks it, else None."""
        decl_id, site, risk, threshold = ctx
        p = self._random_prob(credit)
        if uniform(decl_id, "random") < p and self.budget.capacity_left(site):
            credit_note = "" if credit == "general" else f", credit {credit}"
            reasons.append({"kind": "random", "text": f"random inspection (双随机), p={p:.4f}{credit_note}"})
            self.budget.record(site, True)
            return self._dispatch(
                decl_id, site, "physical_inspection", "medium", "random", p, reasons, risk, threshold
            )
        return None

    def uncertainty(self, score: float, credit: str, risk: float, hit: bool, near: float = 0.0) -> float:
        """The exploration's u in [0, 1] (``explore_shape``): 4s(1-s) of the adjusted score, 4r(1-r) of the
        risk for a rule hit left below the threshold (0 without a hit), or ``near`` (the risk over the
        threshold) to the 4th power."""
        if self.config.explore_shape == "hits":
            return 4.0 * risk * (1.0 - risk) if hit else 0.0
        if self.config.explore_shape == "near":
            return min(max(near, 0.0), 1.0) ** 4
        s = self.adjusted_score(score, credit)
        return 4.0 * s * (1.0 - s)

    def _explore_pick(
        self, ctx: tuple[str, str, float, float], why: tuple[float, str, bool], reasons: list[Any]
    ) -> tuple[Decision | None, float]:
        """The exploration inspection if this declaration's draw picks it, else None; and the probability
        used: ``base_explore_prob`` x u / the site's running mean of u (this declaration's u included), so
        the picks stay ``explore_share`` of inspections whatever the scale of u. Off: (None, 0)."""
        cfg = self.config
        if cfg.explore_share <= 0:
            return None, 0.0
        decl_id, site, risk, threshold = ctx
        near = risk / threshold if 0.0 < threshold < math.inf else 0.0
        u = self.uncertainty(why[0], why[1], risk, why[2], near)
        mean = self.explore_mean.get(site, 1.0)  # starts at u's bound: few picks until the mean settles
        mean += cfg.explore_alpha * (u - mean)
        self.explore_mean[site] = mean
        p = min(1.0, self.base_explore_prob * u / max(mean, 1e-3))
        if uniform(decl_id, "explore") < p and self.budget.capacity_left(site):
            reasons.append(
                {
                    "kind": "explore",
                    "text": f"exploration inspection where the model is uncertain (u={u:.2f}), p={p:.4f}: "
                    "not a random check (双随机)",
                }
            )
            self.budget.record(site, True)
            decision = self._dispatch(
                decl_id, site, "physical_inspection", "medium", "explore", p, reasons, risk, threshold
            )
            return decision, p
        return None, p

    def _random_or_release(
        self, ctx: tuple[str, str, float, float], why: tuple[float, str, bool], reasons: list[Any]
    ) -> Decision:
        credit, p_explore = why[1], 0.0
        picked = self._random_pick(ctx, credit, reasons)
        if picked is None:
            picked, p_explore = self._explore_pick(ctx, why, reasons)
        if picked is not None:
            return picked
        _, site, risk, threshold = ctx
        self.budget.record(site, False)
        p = self._random_prob(credit)
        keep = (1.0 - p) * (1.0 - p_explore)  # the probability that neither draw picked it
        return Decision("release", "low", "release", keep, [], site, reasons, False, risk, threshold)

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

    def budget_share(self) -> float | None:
        return self.config.budget.target_share

    def snapshot(self) -> dict[str, Any]:
        out = {"budget": self.budget.snapshot(), "grades": self.grades.snapshot()}
        if self.explore_mean:  # only with exploration on: a snapshot without it is as before
            out["explore"] = dict(self.explore_mean)
        return out

    def restore(self, state: Mapping[str, Any]) -> None:
        self.budget.restore(state.get("budget", {}))
        self.grades.restore(state.get("grades", {}))
        self.explore_mean = {str(k): float(v) for k, v in state.get("explore", {}).items()}


_WATCH_KINDS = ("conveyance", "enterprise", "declarant")
_WATCH_FACTS = tuple(f"watch_{k}" for k in _WATCH_KINDS)


def lane_rank(lane: str) -> int:
    return _LANE_PRIORITY.get(lane, 0)


def _sev_rank(sev: str) -> int:
    return _SEVERITIES.index(sev) if sev in _SEVERITIES else 0


class RulePolicy:
    """The decision with rules alone: no model, no budget, no random picks (the first path, rule tests).

    The most intrusive lane among the active hits decides, an active ``emergency_release`` releases, the
    highest severity among the hits (else the lane's own) is the command's.
    """

    def decide(
        self, decl: Mapping[str, Any], facts: Mapping[str, Any], hits: Sequence[Any], score: float, ts_ms: int
    ) -> Decision:
        active = [h for h in hits if h.status == "active"]
        lane = "release"
        if not any(h.action == "emergency_release" for h in active):
            for h in active:
                if lane_rank(h.lane) > lane_rank(lane):  # the more intrusive lane wins
                    lane = h.lane
        severity = max((h.severity for h in active), key=_sev_rank, default=SEVERITY_BY_LANE[lane])
        reasons = [{"rule_id": h.rule_id, "text": h.reason, "evidence": h.evidence} for h in active]
        return Decision(lane, severity, "rule", 1.0, [], decl["port"], reasons, lane != "release", score, 0.0)

    def officers(self, decl_id: str, site: str, lane: str) -> list[str]:
        return []

    def grade_keys(self, decl: Mapping[str, Any], facts: Mapping[str, Any], hits: Sequence[Any]) -> list[str]:
        return []

    def on_result(self, meta: Mapping[str, Any], violation: bool) -> None:
        return None

    def use_ratios(self) -> dict[str, float]:
        return {}

    def budget_share(self) -> float | None:
        return None
