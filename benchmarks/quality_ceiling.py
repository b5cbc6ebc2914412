"""How much of a world's fraud the facts can reveal: rankers trained on labels no inspection gives.

benchmarks/quality.py measures strategies as they would run, each learning only from what it inspected.
This asks the question before it: if every declaration of the first days came with its true label, how
precisely could a ranker pick the last day's fraud at the budget? And how much of that is left with the
labels a risk centre really gets? Every ranker picks the top ``budget`` share of each site's declarations
on the last day; precision and fraud-value recall are against the truth (not against what an inspection
would detect, so they sit above the quality benchmark's figures).

- ``rules_severity``: noisy-OR of the active hits' severity weights (the rules as written, ungraded);
- ``model_prior``   : the production model (pipeline.core.model.RiskModel) with its prior weights only;
- ``model_random_N``: the production model after N labels drawn uniformly from the first days (the labels a
                      random-only inspection regime would give);
- ``model_all``     : the production model after every label of the first days, in event-time order;
- ``boosting_all``  : sklearn HistGradientBoosting on the model's inputs plus one input per active rule
                      hit, fitted on every label of the first days: the ceiling of these facts;
- ``oracle``        : the declarations with the most fraud value (the budget's own ceiling).

    .venv/bin/python -m benchmarks.quality_ceiling --scenario baseline --seeds 3 --days 3

The last line of stdout is JSON; the figures also go to benchmarks/results/quality_ceiling_<scenario>.json.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from benchmarks.quality_common import DAY_MS, TARGET, Item, mean_ci
from pipeline.core.decision.encode import encode
from pipeline.core.model import RiskModel
from pipeline.core.policy import PolicyConfig

RANDOM_LABELS = (300, 600)
Ranker = Callable[[Sequence[Item], Sequence[Item]], list[float]]


def top_share(items: Sequence[Item], scores: Sequence[float], share: float) -> dict[str, float]:
    """Precision and fraud-value recall of the top ``share`` of each site's declarations by score (ties
    broken by declaration id, so a constant score is an arbitrary pick, not the first ones in time)."""
    by_site: dict[str, list[tuple[float, str, Item]]] = defaultdict(list)
    for it, s in zip(items, scores, strict=True):
        by_site[str(it.decl.get("port", ""))].append((s, str(it.decl.get("decl_id", "")), it))
    picked = found = 0
    found_value = total_value = 0.0
    for rows in by_site.values():
        rows.sort(key=lambda r: (-r[0], r[1]))
        for _, _, it in rows[: max(1, round(share * len(rows)))]:
            picked += 1
            found += it.violation
            found_value += it.fraud_value if it.violation else 0.0
        total_value += sum(it.fraud_value for _, _, it in rows if it.violation)
    precision = found / picked if picked else 0.0
    return {"precision": precision, "value_recall": found_value / (total_value or 1.0)}


def _active(it: Item) -> list[Any]:
    return [h for h in it.hits if getattr(h, "status", "active") == "active"]


def rules_severity(train: Sequence[Item], test: Sequence[Item]) -> list[float]:
    weights = PolicyConfig().severity_weight
    out = []
    for it in test:
        keep = 1.0
        for h in _active(it):
            keep *= 1.0 - weights.get(getattr(h, "severity", ""), 0.0)
        out.append(1.0 - keep)
    return out


def _trained(labelled: Sequence[Item], test: Sequence[Item]) -> list[float]:
    model = RiskModel(seed=1)
    for it in sorted(labelled, key=lambda it: it.ts_ms):
        model.learn(it.facts, it.violation, 1.0, it.ts_ms)
    return [model.score(it.facts) for it in test]


def model_random(n: int) -> Ranker:
    def rank(train: Sequence[Item], test: Sequence[Item]) -> list[float]:
        return _trained(random.Random(n).sample(list(train), min(n, len(train))), test)

    return rank


def _inputs(it: Item) -> dict[str, float]:
    x = dict(encode(it.facts))
    for h in _active(it):
        x[f"hit={getattr(h, 'rule_id', '')}"] = 1.0
    return x


def boosting_all(train: Sequence[Item], test: Sequence[Item]) -> list[float]:
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    keys: dict[str, int] = {}
    rows = [_inputs(it) for it in train]
    for x in rows:
        for k in x:
            keys.setdefault(k, len(keys))

    def matrix(xs: Sequence[dict[str, float]]) -> Any:
        m = np.zeros((len(xs), max(1, len(keys))))
        for i, x in enumerate(xs):
            for k, v in x.items():
                if (j := keys.get(k)) is not None:
                    m[i, j] = v
        return m

    labels = np.array([it.violation for it in train])
    if len(set(labels.tolist())) < 2:
        return [0.0] * len(test)
    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
    clf.fit(matrix(rows), labels)
    return [float(p) for p in clf.predict_proba(matrix([_inputs(it) for it in test]))[:, 1]]


def rankers() -> dict[str, Ranker]:
    out: dict[str, Ranker] = {
        "rules_severity": rules_severity,
        "model_prior": lambda train, test: [RiskModel(seed=1).score(it.facts) for it in test],
    }
    out.update({f"model_random_{n}": model_random(n) for n in RANDOM_LABELS})
    out["model_all"] = _trained
    out["boosting_all"] = boosting_all
    out["oracle"] = lambda train, test: [it.fraud_value if it.violation else 0.0 for it in test]
    return out


def ceiling(
    items: Sequence[Item], start_ms: int, budget: float = TARGET, test_day: int | None = None
) -> dict[str, dict[str, float]]:
    """Every ranker trained on the days before ``test_day`` (by default the last) and measured on it.
    Declarations decided after the simulated days (the join's last flush) belong to no day."""
    last = max((it.ts_ms - start_ms) // DAY_MS for it in items) if test_day is None else test_day
    train = [it for it in items if (it.ts_ms - start_ms) // DAY_MS < last]
    test = [it for it in items if (it.ts_ms - start_ms) // DAY_MS == last]
    return {name: top_share(test, rank(train, test), budget) for name, rank in rankers().items()}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="baseline")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--days", type=int, default=3, help="simulated days; the last is the test day (>= 2)")
    ap.add_argument("--budget", type=float, default=TARGET)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> dict[str, Any]:
    from benchmarks.quality import RESULTS, load_world

    args = _parse(argv)
    if args.days < 2:
        raise SystemExit("--days must be at least 2: the rankers learn from the days before the last")
    per_seed: list[dict[str, dict[str, float]]] = []
    scenario_seed: int | None = None
    for k in tqdm(range(args.seeds), desc="ceiling", unit="seed"):
        seed = None if k == 0 else (scenario_seed or 0) + k
        w = load_world(args.scenario, "sim", args.days, seed)
        scenario_seed = w.seed if k == 0 else scenario_seed
        per_seed.append(ceiling(w.items, w.start_ms, args.budget, args.days - 1))
    summary: dict[str, Any] = {"scenario": args.scenario, "seeds": args.seeds, "days": args.days}
    summary["budget"] = args.budget
    last = args.days - 1
    out(f"{args.scenario}: {args.seeds} seeds, trained on days 0-{last - 1}, tested on day {last}:")
    for name in per_seed[0]:
        p = mean_ci([r[name]["precision"] for r in per_seed])
        v = mean_ci([r[name]["value_recall"] for r in per_seed])
        summary[name] = {"precision": p, "value_recall": v}
        interval = f"[{p['lo']:.3f}, {p['hi']:.3f}]"
        out(f"  {name:16s} precision {p['mean']:.3f} {interval}  value recall {v['mean']:.3f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"quality_ceiling_{args.scenario}.json").write_text(json.dumps(summary, indent=1) + "\n")
    out(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
