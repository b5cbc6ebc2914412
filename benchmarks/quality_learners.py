"""Richer river learners beside the production model, for ``benchmarks.quality --learners`` (issue 13).

The production model (pipeline/core/model.py) is a logistic regression on the encoded facts plus the memory
of hit rates per feature bin. A tree learner can find interactions the linear form cannot (a detour only at
night, undervaluation only under some headings), at a cost per call. Each candidate here is the production
model with a river tree learner beside it, trained on the same labels with the same importance weights; the
score blends the two probabilities:

    p = (1 - a) * p_production + a * p_tree,   a = share * n / (n + ramp)

where ``n`` is the number of labels the tree has learned: before it has seen any, the score is the production
model's (its priors carry the cold start), and the tree's say grows to ``share`` as labels arrive.

The tree reads the facts as a tree wants them: every numeric input of the encoding present (0 when neutral),
the categories (credit grade, mode, port, HS heading, origin, grade, watch source) as nominal values, which
river's trees split on directly.

Candidates (``LEARNERS``): ``hat`` (Hoeffding adaptive tree), ``arf`` (adaptive random forest, 10 trees),
``bag`` (online bagging of 5 Hoeffding trees). Not a candidate: river's aggregated Mondrian forest, which
takes numeric inputs only (the HS heading and origin would need an encoding of their own).
``benchmarks.quality --cost`` times each on the same facts (the model's scoring budget is 50 us per
declaration, docs/policy.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from pipeline.core.decision.encode import CATEGORICAL, NUMERIC, encode
from pipeline.core.model import RiskModel

_ZEROS: Final[dict[str, Any]] = {name: 0.0 for name, _ in NUMERIC} | dict.fromkeys(CATEGORICAL, "")
_CATS: Final = frozenset(CATEGORICAL)


def tree_input(x: Mapping[str, float]) -> dict[str, Any]:
    """The encoded facts as a tree reads them: numerics filled with 0, categories as nominal values ("" when
    neutral), so that every input is present (the forests fix their feature set on the first sample)."""
    out: dict[str, Any] = dict(_ZEROS)
    for key, v in x.items():
        name, sep, cat = key.partition("=")
        if sep and name in _CATS:
            out[name] = cat
        else:
            out[key] = v
    return out


def _hat(seed: int) -> Any:
    from river import tree

    return tree.HoeffdingAdaptiveTreeClassifier(grace_period=50, seed=seed)


def _arf(seed: int) -> Any:
    from river import forest

    return forest.ARFClassifier(n_models=10, seed=seed)


def _bag(seed: int) -> Any:
    from river import ensemble, tree

    return ensemble.BaggingClassifier(tree.HoeffdingTreeClassifier(grace_period=50), n_models=5, seed=seed)


LEARNERS: Final[dict[str, Callable[[int], Any]]] = {"hat": _hat, "arf": _arf, "bag": _bag}
# learners whose learn_one takes no sample weight: an importance weight w is learned round(w) times instead
_UNWEIGHTED: Final = frozenset({"arf"})


def parse_learners(arg: str) -> list[str]:
    names = [n.strip() for n in arg.split(",") if n.strip()]
    bad = [n for n in names if n not in LEARNERS]
    if bad:
        known = ", ".join(LEARNERS)
        raise SystemExit(f"--learners {arg!r}: unknown {', '.join(bad)}; one or several of {known}")
    return names


class BlendedModel(RiskModel):
    """The production model with a river tree learner beside it (module docstring)."""

    def __init__(self, learner: str, seed: int = 0, share: float = 0.5, ramp: float = 200.0) -> None:
        super().__init__(seed=seed)
        self.tree = LEARNERS[learner](seed)
        self.weighted = learner not in _UNWEIGHTED
        self.share, self.ramp = share, ramp
        self.tree_n = 0

    def _tree_p(self, x: Mapping[str, float]) -> float | None:
        if self.tree_n == 0:
            return None
        proba = self.tree.predict_proba_one(tree_input(x))
        p = proba.get(True)
        if p is None or not math.isfinite(p):
            return None
        return float(p)

    def score(self, facts: Mapping[str, Any]) -> float:
        p = super().score(facts)
        scored = self._scored
        x = scored[1] if scored is not None else encode(facts)
        pt = self._tree_p(x)
        if pt is None:
            return p
        a = self.share * self.tree_n / (self.tree_n + self.ramp)
        return (1.0 - a) * p + a * pt

    def learn(
        self, facts_snapshot: Mapping[str, Any], label: bool, weight: float = 1.0, ts_ms: int = 0
    ) -> Any:
        ev = super().learn(facts_snapshot, label, weight, ts_ms)
        if weight > 0 and math.isfinite(weight):
            xt = tree_input(encode(facts_snapshot))
            if self.weighted:
                self.tree.learn_one(xt, bool(label), w=weight)
            else:
                for _ in range(max(1, round(weight))):
                    self.tree.learn_one(xt, bool(label))
            self.tree_n += 1
        return ev
