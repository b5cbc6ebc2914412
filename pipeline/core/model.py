"""The online risk model: a river logistic regression on encoded facts, with priors, drift and checkpoints.

Pure core: no faust, redis or prometheus_client, no wall clock (event time is an argument).

    model = RiskModel(seed=0)
    p = model.score(facts)                       # probability of a violation, ~5 us
    factors = model.explain(facts, k=3)          # [{feature, value, contribution, text}]
    drift = model.learn(snapshot.facts, label=True, weight=1.0, ts_ms=result_ts)   # DriftEvent | None

Why this learner: measured here, a river StandardScaler+LogisticRegression pipeline costs ~48 us to predict,
a Hoeffding adaptive tree ~13 us, a bare LogisticRegression on a short numeric dict ~4.5 us. The core budget
is >= 30k events/s, so the model gets ~10 us. A fixed, stateless transform (pipeline/core/decision/encode.py)
does the scaling, the dot product is computed here on the same weights river learns (identical to
``predict_proba_one``), and the linear form gives exact per-factor contributions for the explanations.

Cold start: the weights start from documented priors (``PRIOR_WEIGHTS``, docs/policy.md), so before any label
the score already ranks weighbridge excess, undervaluation, track anomalies, watchlists and bad history
above the base rate; labels then move the weights. Drift: river's ADWIN watches the absolute error of each
learned label; a detected rise of the error is returned as a ``DriftEvent`` (and kept in a bounded list).
"""

from __future__ import annotations

import math
import os
import pickle
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from river import drift, linear_model, optim

from pipeline.core.decision.encode import describe, encode, split_key
from pipeline.core.decision.memory import BinMemory
from pipeline.core.decision.snapshots import Snapshot, SnapshotStore

__all__ = ["PRIOR_WEIGHTS", "DriftEvent", "ModelRegistry", "RiskModel", "Snapshot", "SnapshotStore"]

PRIOR_INTERCEPT: Final = -3.5  # ~3% base violation rate
# log-odds per unit of the encoded value (see encode.py for the transforms)
PRIOR_WEIGHTS: Final[dict[str, float]] = {
    "weigh_excess_ratio": 8.0,  # +12% over declared -> +1.0
    "manifest_gap_ratio": -4.0,  # declared 20% under the manifest -> +0.8
    "unit_value_ratio": -1.5,  # half the usual unit value -> +1.0
    "corridor_dev_km": 4.0,  # 5 km off the corridor -> +1.4
    "night_dev_km": 6.0,  # the same 5 km on a night trip -> +2.1 more (honest detours are rare at night)
    "unscheduled_stops": 4.0,  # 2 stops -> +0.9
    "border_dwell_s": 0.5,
    "split_count_24h": 4.0,  # 3 near-threshold declarations -> +1.1
    "sd_open_entries": 2.5,
    "watch_conveyance": 2.5,
    "watch_enterprise": 2.5,
    "watch_declarant": 2.0,
    "ent_violation_rate": 4.0,
    "conv_violation_rate": 4.0,
    "declarant_violation_rate": 3.0,
    "credit_grade=distrusted": 1.0,
    "credit_grade=aeo_advanced": -1.0,
}
_MAX_Z: Final = 30.0
_MEMORY: Final = "memory:"


@dataclass(frozen=True, slots=True)
class DriftEvent:
    """ADWIN saw the model's error change. Shown in the live view and counted (bukong_drift_events)."""

    kind: str
    ts_ms: int
    model_version: int
    n_learned: int
    error_before: float
    error_after: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sigmoid(z: float) -> float:
    z = max(-_MAX_Z, min(_MAX_Z, z))
    return 1.0 / (1.0 + math.exp(-z))


class RiskModel:
    """Champion or challenger: score, explain, learn from a scoring-time snapshot, checkpoint."""

    # the facts scored last, their encoding and lift (reused by explain; never checkpointed)
    _scored: tuple[Mapping[str, Any], dict[str, float], tuple[float, Any] | None] | None = None

    def __init__(
        self,
        seed: int = 0,
        lr: float = 0.01,
        l2: float = 1e-4,
        optimizer: optim.base.Optimizer | None = None,
        priors: Mapping[str, float] | None = None,
        drift_delta: float = 0.002,
        max_drift_events: int = 100,
        memory: BinMemory | None = None,
        use_memory: bool = True,
    ) -> None:
        self.seed = seed  # the learner is deterministic; the seed names the instance in checkpoints
        self.version = 1
        self.n_learned = 0
        self.learner = linear_model.LogisticRegression(
            optimizer=optimizer or optim.Adam(lr), l2=l2, intercept_init=PRIOR_INTERCEPT, intercept_lr=lr / 5
        )
        for k, w in (PRIOR_WEIGHTS if priors is None else priors).items():
            self.learner._weights[k] = w
        self.memory = (memory or BinMemory()) if use_memory else None
        self.adwin = drift.ADWIN(delta=drift_delta)
        self.drift_events: deque[DriftEvent] = deque(maxlen=max_drift_events)
        self.drift_count = 0
        self._err_sum = 0.0  # running mean error since the last drift, for the event record
        self._err_n = 0

    # ------------------------------------------------------------------------------------------ scoring
    def _z(self, x: Mapping[str, float]) -> float:
        w = self.learner._weights
        z = self.learner.intercept
        for k, v in x.items():
            z += w.get(k, 0.0) * v
        return float(z)

    def _total(self, x: Mapping[str, float]) -> float:
        z = self._z(x)
        if self.memory is not None:
            z += self.memory.lift(x)[0]
        return z

    def score(self, facts: Mapping[str, Any]) -> float:
        """Probability that this declaration hides a violation (optimistic where labels are scarce).

        Keeps the encoding and the memory's lift for ``explain`` of the same facts object (a dispatched
        declaration is explained right after it is scored); ``learn`` drops them."""
        x = encode(facts)
        z = self._z(x)
        lifted = None
        if self.memory is not None:
            lifted = self.memory.lift(x)
            z += lifted[0]
        self._scored = (facts, x, lifted)
        return _sigmoid(z)

    def _encoded(self, facts: Mapping[str, Any]) -> tuple[dict[str, float], tuple[float, Any] | None]:
        """The encoding and lift of ``facts``: those ``score`` kept if it scored this very object last."""
        scored = self._scored
        if scored is not None and scored[0] is facts:
            return scored[1], scored[2]
        x = encode(facts)
        return x, (self.memory.lift(x) if self.memory is not None else None)

    def explain(self, facts: Mapping[str, Any], k: int = 3) -> list[dict[str, Any]]:
        """The ``k`` encoded inputs that move the log-odds most, positive first, in plain words.

        ``facts`` must not have changed since it was scored (the engine explains what it just scored)."""
        x, lifted = self._encoded(facts)
        w = self.learner._weights
        contrib = [(key, w.get(key, 0.0) * v) for key, v in x.items()]
        if lifted is not None:
            lift, where = lifted
            if where is not None and lift >= 1e-3:
                contrib.append((f"{_MEMORY}{where[0]}#{where[1]}", lift))
        contrib = [c for c in contrib if abs(c[1]) >= 1e-3]
        contrib.sort(key=lambda c: -abs(c[1]))
        out = []
        for key, c in contrib[:k]:
            bin_key = key.removeprefix(_MEMORY)
            fact, cat = split_key(bin_key.partition("#")[0])
            value = cat if cat is not None else facts.get(fact)
            if key.startswith(_MEMORY):
                text = self._memory_text(bin_key, fact, value, c)
            else:
                text = describe(fact, value, c)
            out.append({"feature": fact, "value": value, "contribution": round(c, 3), "text": text})
        out.sort(key=lambda f: -f["contribution"])
        return out

    # ----------------------------------------------------------------------------------------- learning
    def learn(
        self, facts_snapshot: Mapping[str, Any], label: bool, weight: float = 1.0, ts_ms: int = 0
    ) -> DriftEvent | None:
        """Learn one inspection result from the facts as they were at scoring time.

        ``weight`` is the importance weight (random selections count for more, see policy.importance_weight).
        Returns a DriftEvent when ADWIN detects a change in the error stream.
        """
        if not weight > 0 or not math.isfinite(weight):
            return None
        self._scored = None  # the lift of the facts scored last changes with this label
        x = encode(facts_snapshot)
        p = _sigmoid(self._total(x))
        err = abs(float(label) - p)
        self.learner.learn_one(x, bool(label), w=weight)
        if self.memory is not None:
            self.memory.learn(x, bool(label), weight)
        self.n_learned += 1
        self.adwin.update(err)
        self._err_sum += err
        self._err_n += 1
        if not self.adwin.drift_detected:
            return None
        before = self._err_sum / self._err_n
        self._err_sum, self._err_n = 0.0, 0
        if self.adwin.estimation <= before:
            return None  # the error fell: the model caught up (e.g. off its priors), not a drift to report
        ev = DriftEvent(
            "model_drift",
            ts_ms,
            self.version,
            self.n_learned,
            round(before, 4),
            round(self.adwin.estimation, 4),
        )
        self.drift_events.append(ev)
        self.drift_count += 1
        return ev

    def _memory_text(self, bin_key: str, fact: str, value: Any, c: float) -> str:
        assert self.memory is not None
        name, _, b = bin_key.partition("#")
        st = self.memory.bins.get((name, int(b)))
        shown = describe(fact, value, c).rsplit(" (", 1)[0]
        if st is None or st[1] < self.memory.min_labels:
            return f"few past inspections like this ({shown}): worth a look ({c:+.2f})"
        rate = st[0] / st[1]
        return f"past inspections like this ({shown}) found violations {rate:.0%} of the time ({c:+.2f})"

    @property
    def weights(self) -> dict[str, float]:
        return {"<intercept>": float(self.learner.intercept), **dict(self.learner._weights)}

    # ----------------------------------------------------------------------------------- persistence
    def to_bytes(self) -> bytes:
        state = {k: v for k, v in self.__dict__.items() if k != "_scored"}  # not the last scoring's facts
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> RiskModel:
        obj = cls.__new__(cls)
        obj.__dict__.update(pickle.loads(data))  # only load checkpoints this process wrote
        return obj

    def checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(self.to_bytes())
        os.replace(tmp, path)

    def restore(self, path: str | os.PathLike[str]) -> bool:
        """Load the checkpoint at ``path`` if there is one; the version moves past both. False if none."""
        if not os.path.exists(path):
            return False
        with open(path, "rb") as fh:
            saved = RiskModel.from_bytes(fh.read())
        version = max(self.version, saved.version) + 1
        self.__dict__.update(saved.__dict__)
        self._scored = None
        self.version = version
        return True


class ModelRegistry:
    """The live model as the engine sees it: the champion that decides, its version, its checkpoint.

    One place to swap the champion (a restored checkpoint, a retrained model) without the engine or the
    agents holding a reference to the model itself.
    """

    def __init__(self, champion: RiskModel | None = None) -> None:
        self.champion = champion or RiskModel()

    @property
    def version(self) -> int:
        return self.champion.version

    def score(self, facts: Mapping[str, Any]) -> float:
        return self.champion.score(facts)

    def explain(self, facts: Mapping[str, Any], k: int = 3) -> list[dict[str, Any]]:
        """The champion's top factors for these facts (it made the decision)."""
        return self.champion.explain(facts, k)

    def checkpoint(self, path: str | os.PathLike[str]) -> None:
        self.champion.checkpoint(path)

    def to_bytes(self) -> bytes:
        """The champion's state (the consumer group's shared checkpoint, agents/globalstate.py)."""
        return self.champion.to_bytes()

    def load_bytes(self, data: bytes) -> None:
        """Replace the champion by a checkpoint ``to_bytes`` wrote, version included (the group's model is
        one model: every worker names the same version)."""
        self.champion = RiskModel.from_bytes(data)

    def learn(
        self, facts_snapshot: Mapping[str, Any], label: bool, weight: float = 1.0, ts_ms: int = 0
    ) -> DriftEvent | None:
        return self.champion.learn(facts_snapshot, label, weight, ts_ms)
