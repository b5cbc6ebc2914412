"""Cost of candidate learners on the quality benchmark's facts (``benchmarks.quality --cost``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.quality_common import Item
from benchmarks.quality_learners import LEARNERS, BlendedModel
from pipeline.core.decision.encode import encode
from pipeline.core.model import RiskModel


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
        "bukong_risk_model": (RiskModel(), [it.facts for it in sample]),
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
    for learner in LEARNERS:  # the production model with a tree learner beside it (quality --learners)
        facts = [it.facts for it in sample]
        candidates[f"bukong_risk_model+{learner}"] = (BlendedModel(learner, seed=1), facts)
    out: dict[str, dict[str, float]] = {}
    for name, (model, data) in candidates.items():
        if isinstance(model, RiskModel):  # the production model: its own encoding is part of its cost
            learn, score = model.learn, model.score
        else:
            learn, score = model.learn_one, model.predict_proba_one
        t0 = time.perf_counter()
        for x, y in zip(data, ys, strict=True):
            learn(x, y)
        t1 = time.perf_counter()
        for x in data:
            score(x)
        t2 = time.perf_counter()
        out[name] = {"learn_us": (t1 - t0) / n * 1e6, "score_us": (t2 - t1) / n * 1e6}
    base = out["river_logreg_preencoded"]
    for row in out.values():
        row["score_ratio"] = row["score_us"] / base["score_us"]
        row["learn_ratio"] = row["learn_us"] / base["learn_us"]
    return out
