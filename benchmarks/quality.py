"""Quality benchmark: which selection strategy finds the most fraud at an inspection budget?

Replays a scenario through the pure core, each strategy with its own model and its own labels (a label exists
only for what that strategy inspected, after the scenario's inspection delay), and compares in the same run:

- ``random``      : the expectation over >= 200 uniform draws of the budget share of each site and day, with
                    its spread (2.5th-97.5th percentile): the floor, not one lucky or unlucky draw;
- ``rules``       : rule hits ranked by severity under the budget controller, no model, no random share;
- ``rules_random``: the same rules and policy with the hybrid's random share (双随机, mandated policy): the
                    rules-only office as it would run, so that the hybrid's random picks are not its handicap;
- ``model``       : the online river model under the budget controller (+ random share), no rules;
- ``batch``       : sklearn HistGradientBoosting retrained every simulated day on its labels, no rules;
- ``batch_rules`` : the same boosting with the same rules and policy as the hybrid (the fair peer);
- ``hybrid``      : rules + online model + policy: the production decision (docs/policy.md).

Each over ``--seeds`` worlds (the scenario's seed, then the next ones): mean and 95% interval.
Precision counts site inspections (physical, documentary, intercept); post-clearance audits, which use no
site capacity, are reported apart. ``precision_targeted`` counts only the targeted inspections (hard rule,
rule, model), ``precision_random`` only the random picks, and ``random_share_of_inspections`` says how many
of the inspections were random. The largest deviation of a site's daily inspected share from the budget
is reported per strategy. Curves of precision and value recall against the budget (``--budgets``, default
1, 2, 5, 10%) go to a PNG in benchmarks/results/; the last line of stdout is a JSON summary.

    .venv/bin/python -m benchmarks.quality --scenario baseline
    .venv/bin/python -m benchmarks.quality --scenario all --seeds 5 --budgets 0.05
    .venv/bin/python -m benchmarks.quality --smoke

Source of the stream: the simulator + feature engine + rule pack (pipeline/apps/sim, features/engine.py,
rules/engine.py), or with ``--world synthetic`` the small synthetic facts world in
benchmarks/quality_world.py, which draws facts, rule hits and ground truth directly.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks.quality_common import (
    DAY_MS,
    NEW_TYPOLOGY,
    TARGET,
    Item,
    World,
    budget_list,
    check_scenarios,
    mean_ci,
    positive_int,
    warn_beyond,
)
from benchmarks.quality_learners import BlendedModel, parse_learners
from pipeline.core.decision.budget import BudgetConfig
from pipeline.core.decision.encode import encode
from pipeline.core.decision.snapshots import SnapshotStore
from pipeline.core.model import RiskModel
from pipeline.core.policy import INSPECTION_LANES, DecisionPolicy, PolicyConfig, importance_weight

__all__ = ["DAY_MS", "NEW_TYPOLOGY", "TARGET", "Item", "World"]
RESULTS = Path(__file__).parent / "results"
AUDIT = "post_clearance_audit"


@dataclass
class Tally:
    inspections: int = 0
    found: int = 0
    found_value: float = 0.0
    per_day: dict[tuple[int, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    # selection (hard_rule, rule, model, random) -> [inspections, found]: where the precision comes from
    by_selection: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    # (site, day) -> [declarations, site inspections]: the budget per site and day
    site_day: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    audits: list[float] = field(default_factory=lambda: [0, 0, 0.0])  # post-clearance: [n, found, value]


class Strategy:
    def __init__(
        self,
        name: str,
        use_rules: bool,
        use_model: bool,
        random_share: float,
        seed: int,
        target: float = TARGET,
        policy: PolicyConfig | None = None,
        model: RiskModel | None = None,
    ) -> None:
        self.name = name
        self.oracle: Any = None
        self.open: dict[str, tuple[int, str, str]] = {}  # decl_id -> (day, typology, selection) awaiting
        self.use_rules = use_rules
        self.model = (model or RiskModel(seed=seed)) if use_model else None
        budget = BudgetConfig(target_share=target, model_share=target * (1 - random_share))
        cfg = policy or PolicyConfig()
        self.policy = DecisionPolicy(_with(cfg, budget=budget, random_share=random_share), {})
        self.snaps = SnapshotStore(max_items=100_000, ttl_ms=3 * DAY_MS)
        self.pending: list[tuple[int, str, bool]] = []
        self.tally = Tally()
        self.drift_events: list[int] = []

    def score(self, item: Item) -> float:
        return self.model.score(item.facts) if self.model is not None else 0.0

    def select(self, item: Item, score: float) -> tuple[str, str, float]:
        hits = item.hits if self.use_rules else []
        d = self.policy.decide(item.decl, item.facts, hits, score, item.ts_ms)
        return d.lane, d.selection, d.selection_prob

    def learn_due(self, now_ms: int) -> None:
        if self.oracle is not None:
            for res in self.oracle.due(now_ms):
                self.on_result(res, learn=True)
            return
        while self.pending and self.pending[0][0] <= now_ms:
            due, decl_id, label = heapq.heappop(self.pending)
            snap = self.snaps.pop(decl_id, due)
            if snap is not None:
                self.on_label(snap.facts, label, snap.meta, due)

    def on_label(self, facts: dict[str, Any], label: bool, meta: dict[str, Any], ts_ms: int) -> None:
        if self.model is not None:
            w = importance_weight(meta["selection"], meta["selection_prob"])
            if self.model.learn(facts, label, w, ts_ms) is not None:
                self.drift_events.append(ts_ms)
        self.policy.on_result(meta, label)

    def on_result(self, res: dict[str, Any], learn: bool) -> None:
        day, typology, selection = self.open.pop(res["decl_id"], (0, "", ""))
        snap = self.snaps.pop(res["decl_id"], res["ts_ms"])
        found = res["outcome"] == "violation"
        self._count(day, typology, selection, found, float(res.get("found_value_cny", 0.0)))
        if learn and snap is not None:
            self.on_label(snap.facts, found, snap.meta, res["ts_ms"])

    def _count(self, day: int, typology: str, selection: str, found: bool, value: float) -> None:
        t = self.tally
        if selection == AUDIT:
            t.audits[1] += found
            t.audits[2] += value if found else 0.0
            return
        if found:
            t.found += 1
            t.found_value += value
            t.per_day[(day, typology)][0] += 1
            t.by_selection[selection][1] += 1

    def finish(self) -> None:
        """Count the results still in flight at the end of the stream (found, not learned)."""
        if self.oracle is not None:
            for res in self.oracle.due(2**62):
                self.on_result(res, learn=False)

    def step(self, item: Item, score: float, day: int) -> None:
        self.learn_due(item.ts_ms)
        lane, selection, prob = self.select(item, score)
        t = self.tally
        site_day = t.site_day[(str(item.decl.get("port", "")), day)]
        site_day[0] += 1
        if item.typology:
            t.per_day[(day, item.typology)][1] += 1
        if lane == AUDIT:
            t.audits[0] += 1
            selection_key = AUDIT
        elif lane in INSPECTION_LANES:
            t.inspections += 1
            t.by_selection[selection][0] += 1
            site_day[1] += 1
            selection_key = selection
        else:
            return
        decl_id = item.decl["decl_id"]
        hits = item.hits if self.use_rules else []
        meta = {"selection": selection, "selection_prob": prob}
        meta["grade_keys"] = self.policy.grade_keys(item.decl, item.facts, hits)
        self.snaps.put(decl_id, item.facts, item.ts_ms, **meta)
        if self.oracle is not None:
            self.open[decl_id] = (day, item.typology, selection_key)
            cmd = {
                "command_id": f"cmd-{decl_id}",
                "decl_id": decl_id,
                "lane": lane,
                "decided_ts_ms": item.ts_ms,
            }
            self.oracle.on_command(cmd, item.ts_ms)
            return
        self._count(day, item.typology, selection_key, item.violation, item.fraud_value)
        heapq.heappush(self.pending, (item.ts_ms + item.label_delay_ms, decl_id, item.violation))


def _with(cfg: PolicyConfig, **changes: Any) -> PolicyConfig:
    import dataclasses

    return dataclasses.replace(cfg, **changes)


class BatchStrategy(Strategy):
    """HistGradientBoosting retrained at each simulated day boundary on all its labels so far; with
    ``use_rules`` it decides through the same rules and policy as the hybrid (the fair peer)."""

    def __init__(
        self,
        name: str,
        random_share: float,
        seed: int,
        target: float = TARGET,
        use_rules: bool = False,
        policy: PolicyConfig | None = None,
    ) -> None:
        super().__init__(name, use_rules, False, random_share, seed, target, policy)
        self.rows: list[tuple[dict[str, float], bool, float]] = []
        self.keys: dict[str, int] = {}
        self.clf: Any = None
        self.seed = seed

    def on_label(self, facts: dict[str, Any], label: bool, meta: dict[str, Any], ts_ms: int) -> None:
        self.rows.append((encode(facts), label, importance_weight(meta["selection"], meta["selection_prob"])))
        self.policy.on_result(meta, label)

    def retrain(self) -> None:
        import numpy as np
        from sklearn.ensemble import HistGradientBoostingClassifier

        labels = [y for _, y, _ in self.rows]
        if len(set(labels)) < 2:
            return
        for x, _, _ in self.rows:
            for k in x:
                self.keys.setdefault(k, len(self.keys))
        X = self._matrix([x for x, _, _ in self.rows])
        clf = HistGradientBoostingClassifier(max_iter=100, random_state=self.seed)
        clf.fit(X, np.array(labels), sample_weight=np.array([w for _, _, w in self.rows]))
        self.clf = clf

    def _matrix(self, xs: Sequence[dict[str, float]]) -> Any:
        import numpy as np

        m = np.zeros((len(xs), max(1, len(self.keys))))
        for i, x in enumerate(xs):
            for k, v in x.items():
                j = self.keys.get(k)
                if j is not None:
                    m[i, j] = v
        return m

    def score_day(self, items: Sequence[Item]) -> list[float]:
        """The model is fixed within a day, so a whole day is scored in one call."""
        if self.clf is None:
            prior = RiskModel()
            return [prior.score(it.facts) for it in items]
        return list(self.clf.predict_proba(self._matrix([encode(it.facts) for it in items]))[:, 1])


STRATEGIES = ("rules", "rules_random", "model", "batch", "batch_rules", "hybrid")
RANDOM_SHARE = 0.1  # the random share (of inspections) of every strategy but ``rules``


def make_strategies(
    seed: int, target: float = TARGET, policy: PolicyConfig | None = None, learners: Sequence[str] = ()
) -> list[Strategy]:
    """Every strategy but random (an expectation, see quality_report.random_expectation); for each of
    ``learners`` (benchmarks/quality_learners.py) the online model alone and the hybrid with that learner
    beside the production model, as ``model+<learner>`` and ``hybrid+<learner>``."""

    extra: list[Strategy] = []
    for name in learners:
        for base, rules in (("model", False), ("hybrid", True)):
            model = BlendedModel(name, seed=seed)
            extra.append(Strategy(f"{base}+{name}", rules, True, RANDOM_SHARE, seed, target, policy, model))
    return [
        *extra,
        Strategy("rules", True, False, 0.0, seed, target, policy),
        Strategy("rules_random", True, False, RANDOM_SHARE, seed, target, policy),
        Strategy("model", False, True, RANDOM_SHARE, seed, target, policy),
        BatchStrategy("batch", RANDOM_SHARE, seed, target, policy=policy),
        BatchStrategy("batch_rules", RANDOM_SHARE, seed, target, use_rules=True, policy=policy),
        Strategy("hybrid", True, True, RANDOM_SHARE, seed, target, policy),
    ]


def by_day(items: Iterable[Item], start_ms: int) -> Iterable[tuple[int, list[Item]]]:
    day, bucket = 0, list[Item]()
    for it in items:
        d = (it.ts_ms - start_ms) // DAY_MS
        if d != day and bucket:
            yield day, bucket
            bucket = []
        day = d
        bucket.append(it)
    if bucket:
        yield day, bucket


def run(
    items: Sequence[Item],
    start_ms: int,
    seed: int,
    oracle_factory: Callable[[], Any] | None = None,
    target: float = TARGET,
    policy: PolicyConfig | None = None,
    bar: Any = None,
    learners: Sequence[str] = (),
) -> list[Strategy]:
    strategies = make_strategies(seed, target, policy, learners)
    for s in strategies:
        s.oracle = oracle_factory() if oracle_factory is not None else None
    for day, bucket in by_day(items, start_ms):
        for s in strategies:
            if isinstance(s, BatchStrategy):
                s.learn_due(bucket[0].ts_ms)
                s.retrain()
                day_scores = s.score_day(bucket)
                for it, sc in zip(bucket, day_scores, strict=True):
                    s.step(it, sc, day)
            else:
                for it in bucket:
                    s.step(it, s.score(it), day)
            if bar is not None:
                bar.update(len(bucket))
    for s in strategies:
        s.finish()
    return strategies


def load_world(scenario: str, world: str, days: int, seed: int | None) -> World:
    if world == "sim":
        from benchmarks.quality_sim import sim_items  # the simulator + features + rules path

        return sim_items(scenario, days, seed)
    from benchmarks.quality_world import synthetic_items

    return synthetic_items(scenario, days, seed if seed is not None else 1)


POLICIES = (
    "today",
    "graded",
    "graded-unpaced",
    "graded-random-nohits",
    "graded-nocap",
    "graded-cap05",
    "graded-value",
    "graded-value-sqrt",
    "graded-value-log",
    "graded-explore",
    "graded-explore-hits",
    "graded-explore-near",
    "graded-red0",
    "graded-hardfloor",
    "graded-hardfloor-value1",
    "graded-hardfloor-value2",
)
EXPLORE_SHARE = 0.1  # the exploration variants' share of inspections (taken from the ranked share)


def _policy(name: str) -> PolicyConfig:
    """The decision design under test: ``today`` (the first design), ``graded`` (docs/policy.md), or graded
    with one change: ``-unpaced`` (no pacing of the day's spend), ``-random-nohits`` (random picks only among
    declarations without a rule hit, as before), ``-nocap`` (hard hits not held to the daily budget),
    ``-cap05`` (held to the budget + 0.5 point instead of 1), ``-value[-sqrt|-log]`` (ranked by risk x
    m(value); ratio by default), ``-explore[-hits|-near]`` (``EXPLORE_SHARE`` of inspections drawn where the
    model is uncertain: 4s(1-s) of the score, among the rule hits below the threshold, or just below it),
    ``-red0`` (every model pick a physical inspection), ``-hardfloor[-value1|-value2]`` (a hard rule under a
    25% hit rate after 20 results ranked, but for a declared value >= 1x or 2x the site's median)."""
    from pipeline.core.policy import first_design, graded_policy

    if name == "today":
        return first_design()
    if name == "graded-nocap":
        return graded_policy(hard_cap_points=None)
    if name == "graded-cap05":
        return graded_policy(hard_cap_points=0.5)
    if name == "graded-unpaced":
        return graded_policy(pace_slack=None)
    if name == "graded-red0":
        return graded_policy(red_risk=0.0)
    if name.startswith("graded-hardfloor"):
        gate = name.removeprefix("graded-hardfloor").removeprefix("-value")
        return graded_policy(hard_rule_floor=0.25, hard_value_gate=float(gate) if gate else None)
    if name == "graded-random-nohits":
        return graded_policy(random_over_hits=False)
    if name.startswith("graded-explore"):
        shape = name.removeprefix("graded-explore").removeprefix("-") or "score"
        return graded_policy(explore_share=EXPLORE_SHARE, explore_shape=shape)
    if name.startswith("graded-value"):
        transform = name.removeprefix("graded-value").removeprefix("-") or "ratio"
        return graded_policy(rank_by_value=True, value_transform=transform)
    return graded_policy(rank_by_value=False)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--scenario", default="baseline", help="baseline | drift | border-surge | FILE | all")
    ap.add_argument("--world", choices=("sim", "synthetic"), default="sim")
    ap.add_argument(
        "--days", type=positive_int, default=None, help="default 3, or through the day after a new typology"
    )
    ap.add_argument(
        "--seeds", type=positive_int, default=5, help="worlds: the scenario's seed and the next ones"
    )
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: the scenario's)")
    ap.add_argument(
        "--budgets", type=budget_list, default="0.01,0.02,0.05,0.10", help="budgets for the curves"
    )
    ap.add_argument("--draws", type=int, default=200, help="random draws for the random expectation")
    ap.add_argument(
        "--policy",
        default="graded",
        help=f"one or several (comma-separated, same worlds in one run) of {', '.join(POLICIES)}",
    )
    ap.add_argument("--smoke", action="store_true", help="seconds: one seed, a small stream, no plot")
    ap.add_argument("--cost", action="store_true", help="also time the candidate learners (us per call)")
    ap.add_argument(
        "--learners",
        default="",
        help="also run the online model and the hybrid with these river learners beside the production "
        "model (comma-separated: hat, arf, bag; benchmarks/quality_learners.py)",
    )
    return ap.parse_args(argv)


def _scenarios(arg: str, world: str) -> list[str]:
    if arg != "all":
        return [arg]
    if world == "synthetic":
        return ["baseline", "drift"]
    from pipeline.apps.sim.scenario import SCENARIO_DIR

    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def evaluate(
    args: argparse.Namespace, name: str, budgets: list[float], bar: Any, out: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Every strategy over every seed and budget of one scenario, for each policy on the same worlds:
    figures at the main budget and curves, per policy."""
    from benchmarks import quality_report as rep

    policies = _policies(args.policy)
    learners = parse_learners(args.learners)
    runs: dict[str, dict[float, list[dict[str, dict[str, Any]]]]] = {
        p: {b: [] for b in budgets} for p in policies
    }
    days = 1 if args.smoke else (args.days or _default_days(name, args.world))
    if args.world == "sim":
        warn_beyond(name, days)
    main_budget, world_seed = TARGET, args.seed
    for k in range(args.seeds):
        seed = None if world_seed is None and k == 0 else (world_seed or 0) + k
        w = load_world(name, args.world, days, seed)
        if world_seed is None:
            world_seed = w.seed
        items = w.items[:6000] if args.smoke else w.items
        main_budget = w.budget if w.budget in budgets else budgets[len(budgets) // 2]
        if args.cost and k == 0:
            from benchmarks.quality_cost import cost_table

            for learner, r in cost_table(items).items():
                out(f"cost {learner:30s} score {r['score_us']:6.1f} us  learn {r['learn_us']:6.1f} us")
        n_strategies = len(STRATEGIES) + 2 * len(learners)
        bar.total = (bar.total or 0) + len(items) * n_strategies * len(budgets) * len(policies)
        value = sum(it.fraud_value for it in items if it.violation)
        for b in budgets:
            rnd = rep.random_expectation(w, items, b, args.draws)
            for p in policies:
                strategies = run(items, w.start_ms, w.seed, w.oracle_factory, b, _policy(p), bar, learners)
                rows = {"random": rnd}
                rows.update({s.name: rep.row(s, value, b, w) for s in strategies})
                runs[p][b].append(rows)
    results = {p: _result(args, name, r, main_budget, days, p, out) for p, r in runs.items()}
    first = policies[0]
    for p in policies[1:]:  # paired per seed against the first policy: same worlds, same oracle draws
        results[p][f"hybrid_vs_{first}"] = _paired(runs[p][main_budget], runs[first][main_budget])
    return results


def _paired(runs: list[dict[str, dict[str, Any]]], base: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The hybrid's precision and value recall under a policy over the same under ``base``, per seed."""
    out: dict[str, Any] = {}
    for key in ("precision", "value_recall"):
        xs = [
            r["hybrid"][key] / b["hybrid"][key] for r, b in zip(runs, base, strict=True) if b["hybrid"][key]
        ]
        out[key] = mean_ci(xs)
    return out


def _policies(arg: str) -> list[str]:
    names = [p.strip() for p in arg.split(",") if p.strip()]
    bad = [p for p in names if p not in POLICIES]
    if bad or not names:
        raise SystemExit(f"--policy {arg!r}: one or several of {', '.join(POLICIES)}")
    return names


def _result(
    args: argparse.Namespace,
    name: str,
    runs: dict[float, list[dict[str, dict[str, Any]]]],
    main_budget: float,
    days: int,
    policy: str,
    out: Callable[[str], None],
) -> dict[str, Any]:
    """One policy's figures at the main budget, its curves (and their PNG over several budgets)."""
    from benchmarks import quality_report as rep

    curves = {b: rep.aggregate(r) for b, r in runs.items()}
    result = {"budget": main_budget, "seeds": args.seeds, "days": days, "policy": policy}
    result.update(curves[main_budget])
    result["curves"] = {
        str(b): {
            s: {k: v["mean"] for k, v in row.items() if k in ("precision", "value_recall")}
            for s, row in c.items()
        }
        for b, c in curves.items()
    }
    if not args.smoke and len(runs) > 1:
        png = RESULTS / f"quality_{args.world}_{Path(name).stem}{_suffix(policy, args.learners)}.png"
        rep.plot_curves(curves, png, f"{Path(name).stem}: mean over {args.seeds} seeds, 95% interval")
        out(f"plot: {png}")
    return result


def _suffix(policy: str, learners: str = "") -> str:
    """The results file's suffix: the policy unless the default, and ``_learners`` with ``--learners``
    (their rows do not overwrite the default run's file)."""
    return ("" if policy == "graded" else f"_{policy}") + ("_learners" if learners else "")


def _default_days(name: str, world: str) -> int:
    """Three days, or through the day after the last phase of a sim scenario (its new typology's test)."""
    if world != "sim":
        return 3
    from pipeline.apps.sim.scenario import load_scenario

    phases = load_scenario(name).phases
    return max(3, int(max((ph.at_day for ph in phases), default=0)) + 2)


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> dict[str, Any]:
    from benchmarks import quality_report as rep

    args = _parse(argv)
    if args.smoke:
        args.seeds, args.draws = min(args.seeds, 2), min(args.draws, 200)
    budgets = sorted(float(x) for x in args.budgets.split(","))
    if args.smoke:
        budgets = [TARGET]
    summary: dict[str, Any] = {}
    if args.world == "sim":  # a scenario file's mistakes as one line naming file:line, before any work
        check_scenarios(_scenarios(args.scenario, args.world))
    bar = tqdm(total=0, desc="quality", unit="decision", file=sys.stderr, mininterval=1.0)
    for name in _scenarios(args.scenario, args.world):
        for policy, r in evaluate(args, name, budgets, bar, out).items():
            key = Path(name).stem if "," not in args.policy else f"{Path(name).stem}:{policy}"
            summary[key] = r
    bar.close()
    compare: dict[str, dict[str, Any]] = defaultdict(dict)  # several policies: one file per scenario
    for key, r in summary.items():
        rep.print_report(key, r, out, STRATEGIES)
        stem = key.split(":")[0]
        compare[stem][r["policy"]] = r
        if not args.smoke and "," not in args.policy:
            RESULTS.mkdir(parents=True, exist_ok=True)
            path = RESULTS / f"quality_{args.world}_{stem}{_suffix(r['policy'], args.learners)}.json"
            path.write_text(json.dumps(r, indent=1))
    if not args.smoke and "," in args.policy:
        RESULTS.mkdir(parents=True, exist_ok=True)
        tail = _suffix("graded", args.learners)
        for stem, by_policy in compare.items():
            path = RESULTS / f"quality_{args.world}_{stem}_policies{tail}.json"
            path.write_text(json.dumps(by_policy, indent=1))
    out(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
