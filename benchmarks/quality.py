"""Quality benchmark: which selection strategy finds the most fraud at a 5% inspection budget?

Runs one recorded scenario through the pure core, each strategy with its own model and its own labels (a
label exists only for what that strategy inspected and arrives after its delay), and compares in the same run:

- ``random``  : 5% of declarations picked uniformly (the floor);
- ``rules``   : rule hits ranked by severity under the budget controller, no model, no random share;
- ``model``   : the online river model under the budget controller (+ random share), no rules;
- ``hybrid``  : rules + model + random share: the production policy (docs/policy.md);
- ``batch``   : sklearn HistGradientBoostingClassifier retrained every simulated day on its labels so far,
                ranked under the same controller (+ random share), no rules.

Reports precision (hit rate of inspections), fraud-value recall, and detection per typology per day (PNG in
benchmarks/results/). The last line of stdout is JSON: ``{strategy: {precision, value_recall, ...}, ...}``.

    .venv/bin/python -m benchmarks.quality --scenario baseline
    .venv/bin/python -m benchmarks.quality --scenario drift
    .venv/bin/python -m benchmarks.quality --smoke

Source of the stream: the simulator + feature engine + rule pack (pipeline/apps/sim, features/engine.py,
rules/engine.py) when they are importable, else (or with ``--world synthetic``) the small synthetic facts
world in benchmarks/quality_world.py, which draws facts, rule hits and ground truth directly.
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

from pipeline.core.decision.budget import BudgetConfig
from pipeline.core.decision.encode import encode
from pipeline.core.decision.snapshots import SnapshotStore
from pipeline.core.model import RiskModel
from pipeline.core.policy import INSPECTION_LANES, DecisionPolicy, PolicyConfig, importance_weight, uniform

DAY_MS = 86_400_000
RESULTS = Path(__file__).parent / "results"
TARGET = 0.05


@dataclass(slots=True)
class Item:
    """One decided declaration with what the benchmark knows and the core must not see."""

    ts_ms: int
    decl: dict[str, Any]
    facts: dict[str, Any]
    hits: list[Any]
    violation: bool
    fraud_value: float
    typology: str  # "" when clean
    label_delay_ms: int


@dataclass
class World:
    items: list[Item]
    start_ms: int
    drift_day: int | None
    new_typology: str | None
    oracle_factory: Callable[[], Any] | None  # InspectionOracle per strategy; None: labels are the truth


@dataclass
class Tally:
    inspections: int = 0
    found: int = 0
    found_value: float = 0.0
    per_day: dict[tuple[int, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    # selection (hard_rule, rule, model, random) -> [inspections, found]: where the precision comes from
    by_selection: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))


class Strategy:
    def __init__(self, name: str, use_rules: bool, use_model: bool, random_share: float, seed: int) -> None:
        self.name = name
        self.oracle: Any = None
        self.open: dict[str, tuple[int, str, str]] = {}  # decl_id -> (day, typology, selection) awaiting
        self.use_rules = use_rules
        self.model = RiskModel(seed=seed) if use_model else None
        budget = BudgetConfig(target_share=TARGET, model_share=TARGET * (1 - random_share))
        self.policy = DecisionPolicy(PolicyConfig(budget=budget, random_share=random_share), {})
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

    def on_result(self, res: dict[str, Any], learn: bool) -> None:
        day, typology, selection = self.open.pop(res["decl_id"], (0, "", ""))
        snap = self.snaps.pop(res["decl_id"], res["ts_ms"])
        found = res["outcome"] == "violation"
        if found:
            self.tally.found += 1
            self.tally.found_value += float(res.get("found_value_cny", 0.0))
            self.tally.per_day[(day, typology)][0] += 1
            self.tally.by_selection[selection][1] += 1
        if learn and snap is not None:
            self.on_label(snap.facts, found, snap.meta, res["ts_ms"])

    def finish(self) -> None:
        """Count the results still in flight at the end of the stream (found, not learned)."""
        if self.oracle is not None:
            for res in self.oracle.due(2**62):
                self.on_result(res, learn=False)

    def step(self, item: Item, score: float, day: int) -> None:
        self.learn_due(item.ts_ms)
        lane, selection, prob = self.select(item, score)
        t = self.tally
        if item.typology:
            t.per_day[(day, item.typology)][1] += 1
        if lane not in INSPECTION_LANES:
            return
        t.inspections += 1
        t.by_selection[selection][0] += 1
        decl_id = item.decl["decl_id"]
        if self.oracle is not None:
            self.snaps.put(decl_id, item.facts, item.ts_ms, selection=selection, selection_prob=prob)
            self.open[decl_id] = (day, item.typology, selection)
            cmd = {
                "command_id": f"cmd-{decl_id}",
                "decl_id": decl_id,
                "lane": lane,
                "decided_ts_ms": item.ts_ms,
            }
            self.oracle.on_command(cmd, item.ts_ms)
            return
        if item.violation:
            t.found += 1
            t.found_value += item.fraud_value
            t.per_day[(day, item.typology)][0] += 1
            t.by_selection[selection][1] += 1
        decl_id = item.decl["decl_id"]
        self.snaps.put(decl_id, item.facts, item.ts_ms, selection=selection, selection_prob=prob)
        heapq.heappush(self.pending, (item.ts_ms + item.label_delay_ms, decl_id, item.violation))


class RandomStrategy(Strategy):
    def select(self, item: Item, score: float) -> tuple[str, str, float]:
        picked = uniform(item.decl["decl_id"], "bench-random") < TARGET
        return ("physical_inspection" if picked else "release"), "random", TARGET


class BatchStrategy(Strategy):
    """HistGradientBoosting retrained at each simulated day boundary on all its labels so far."""

    def __init__(self, name: str, random_share: float, seed: int) -> None:
        super().__init__(name, use_rules=False, use_model=False, random_share=random_share, seed=seed)
        self.rows: list[tuple[dict[str, float], bool, float]] = []
        self.keys: dict[str, int] = {}
        self.clf: Any = None
        self.seed = seed

    def on_label(self, facts: dict[str, Any], label: bool, meta: dict[str, Any], ts_ms: int) -> None:
        self.rows.append((encode(facts), label, importance_weight(meta["selection"], meta["selection_prob"])))

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


def make_strategies(seed: int) -> list[Strategy]:
    return [
        RandomStrategy("random", False, False, 0.0, seed),
        Strategy("rules", use_rules=True, use_model=False, random_share=0.0, seed=seed),
        Strategy("model", use_rules=False, use_model=True, random_share=0.1, seed=seed),
        Strategy("hybrid", use_rules=True, use_model=True, random_share=0.1, seed=seed),
        BatchStrategy("batch", random_share=0.1, seed=seed),
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
    items: Iterable[Item],
    start_ms: int,
    seed: int,
    total: int | None = None,
    oracle_factory: Callable[[], Any] | None = None,
) -> list[Strategy]:
    strategies = make_strategies(seed)
    for s in strategies:
        s.oracle = oracle_factory() if oracle_factory is not None else None
    bar = tqdm(total=total, desc="quality", unit="decl", file=sys.stderr, mininterval=1.0)
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
        bar.update(len(bucket))
    bar.close()
    for s in strategies:
        s.finish()
    return strategies


def summarize(
    strategies: Sequence[Strategy], items_value: float, drift_day: int | None, new_typology: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in strategies:
        t = s.tally
        row: dict[str, Any] = {
            "precision": round(t.found / t.inspections, 4) if t.inspections else 0.0,
            "value_recall": round(t.found_value / items_value, 4) if items_value else 0.0,
            "inspections": t.inspections,
            "found": t.found,
            "by_selection": {
                sel: {"inspections": n, "precision": round(f / n, 3) if n else 0.0}
                for sel, (n, f) in sorted(t.by_selection.items())
            },
        }
        if drift_day is not None and new_typology is not None:
            row["new_typology"] = new_typology
            row["new_typology_detection_drift_day"] = _detection(t, drift_day, new_typology)
            row["new_typology_detection_day_after_drift"] = _detection(t, drift_day + 1, new_typology)
            row["drift_events"] = len(s.drift_events)
        out[s.name] = row
    return out


def _detection(t: Tally, day: int, typology: str) -> float | None:
    found, occurred = t.per_day.get((day, typology), [0, 0])
    return round(found / occurred, 3) if occurred else None


NEW_TYPOLOGY = "self_drive_shuttle"


def plot(strategies: Sequence[Strategy], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    typologies = sorted({typ for s in strategies for (_, typ) in s.tally.per_day})
    fig, axes = plt.subplots(1, len(typologies), figsize=(3.2 * len(typologies), 3.2), squeeze=False)
    for ax, typ in zip(axes[0], typologies, strict=True):
        for s in strategies:
            days = sorted(d for (d, ty) in s.tally.per_day if ty == typ)
            ax.plot(days, [_detection(s.tally, d, typ) or 0.0 for d in days], marker="o", label=s.name)
        ax.set_title(typ, fontsize=9)
        ax.set_xlabel("day")
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("share detected")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def cost_table(items: Sequence[Item], n: int = 2000) -> dict[str, dict[str, float]]:
    """Microseconds per score and per learn of the candidate learners on the same facts, and the ratio of
    each to the bare river logistic regression on already-encoded dicts, measured in the same run. Rows not
    named "preencoded" include turning the raw facts into their input."""
    import time

    from river import compose, preprocessing, tree
    from river import linear_model as lm

    sample = items[:n]
    xs = [encode(it.facts) for it in sample]
    ys = [it.violation for it in sample]
    cats = ["credit_grade", "mode", "port", "hs4", "origin", "grade"]
    raw = [
        {**dict.fromkeys(cats, ""), **{k: v for k, v in it.facts.items() if isinstance(v, int | float | str)}}
        for it in sample
    ]
    candidates: dict[str, tuple[Any, Any]] = {
        "river_logreg_preencoded": (lm.LogisticRegression(), xs),
        "bukong_risk_model": (None, None),
        "river_onehot_scaler_logreg": (
            (
                (compose.Select(*cats) | preprocessing.OneHotEncoder())
                + (compose.SelectType(int, float) | preprocessing.StandardScaler())
            )
            | lm.LogisticRegression(),
            raw,
        ),
        "river_hat_preencoded": (tree.HoeffdingAdaptiveTreeClassifier(seed=1), xs),
    }
    out: dict[str, dict[str, float]] = {}
    for name, (model, data) in candidates.items():
        if name == "bukong_risk_model":
            rm = RiskModel()
            facts = [it.facts for it in sample]
            t0 = time.perf_counter()
            for f, y in zip(facts, ys, strict=True):
                rm.learn(f, y)
            t1 = time.perf_counter()
            for f in facts:
                rm.score(f)
            t2 = time.perf_counter()
        else:
            t0 = time.perf_counter()
            for x, y in zip(data, ys, strict=True):
                model.learn_one(x, y)
            t1 = time.perf_counter()
            for x in data:
                model.predict_proba_one(x)
            t2 = time.perf_counter()
        out[name] = {"learn_us": (t1 - t0) / n * 1e6, "score_us": (t2 - t1) / n * 1e6}
    base = out["river_logreg_preencoded"]
    for row in out.values():
        row["score_ratio"] = row["score_us"] / base["score_us"]
        row["learn_ratio"] = row["learn_us"] / base["learn_us"]
    return out


def load_world(scenario: str, world: str, days: int, seed: int) -> World:
    if world == "sim":
        from benchmarks.quality_sim import sim_items  # the simulator + features + rules path

        return sim_items(scenario, days, seed)
    from benchmarks.quality_world import synthetic_items

    return synthetic_items(scenario, days, seed)


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="baseline", help="baseline | drift | a scenario file")
    ap.add_argument("--world", choices=("auto", "sim", "synthetic"), default="auto")
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="a few seconds: small stream, no plot")
    ap.add_argument("--cost", action="store_true", help="also time the candidate learners (us per call)")
    args = ap.parse_args(argv)
    world = args.world
    if world == "auto":
        try:
            import benchmarks.quality_sim  # noqa: F401

            world = "sim"
        except ImportError:
            world = "synthetic"
    days = 2 if args.smoke else args.days
    w = load_world(args.scenario, world, days, args.seed)
    items = w.items[:6000] if args.smoke else w.items
    if args.cost:
        for name, row in cost_table(items).items():
            out(
                f"cost {name:30s} score {row['score_us']:6.1f} us ({row['score_ratio']:.1f}x)  "
                f"learn {row['learn_us']:6.1f} us ({row['learn_ratio']:.1f}x)"
            )
    strategies = run(items, w.start_ms, args.seed, total=len(items), oracle_factory=w.oracle_factory)
    total_value = sum(it.fraud_value for it in items if it.violation)
    result = summarize(strategies, total_value, w.drift_day, w.new_typology)
    if world == "sim":
        from benchmarks import quality_sim

        out(f"facts: {quality_sim.FEATURES}")
    name = Path(args.scenario).stem
    for s, row in result.items():
        out(
            f"{s:8s} precision {row['precision']:.3f}  value_recall {row['value_recall']:.3f}  "
            f"inspections {row['inspections']}  by selection: "
            + ", ".join(
                f"{k} {v['inspections']} @ {v['precision']:.2f}" for k, v in row["by_selection"].items()
            )
        )
    rnd = result["random"]["precision"] or 1e-9
    out(
        f"hybrid/random precision {result['hybrid']['precision'] / rnd:.1f}x; "
        f"hybrid/batch {result['hybrid']['precision'] / (result['batch']['precision'] or 1e-9):.2f}x "
        f"({world} world, scenario {name}, {len(items)} declarations)"
    )
    if not args.smoke:
        png = RESULTS / f"quality_{world}_{name}.png"
        plot(strategies, png, f"detection per typology per day — {name} ({world})")
        record = json.dumps({"world": world, **result}, indent=1)
        (RESULTS / f"quality_{world}_{name}.json").write_text(record)
        out(f"plot: {png}")
    out(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
