"""A deployment's decision policy: the defaults of ``PolicyConfig`` with overrides from ``BUKONG_POLICY``.

``BUKONG_POLICY`` is a JSON object of ``PolicyConfig``'s fields, ``budget`` an object of ``BudgetConfig``'s:

    BUKONG_POLICY='{"budget": {"target_share": 0.03}, "hard_rule_floor": 0.25, "hard_value_gate": 1.0}'

A name that is not a field, a value of the wrong type or out of range is a ``ValueError`` that names it and
says what it takes: a worker refuses to start on it rather than decide under a policy nobody meant. With
``budget.target_share`` given and not ``budget.model_share``, the ranked share follows the new budget
(``target_share x (1 - random_share)``, as the defaults do: 4.5% of 5%). Pure core: the caller parses the
JSON; docs/policy.md says what each field does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from pipeline.core.decision.budget import BudgetConfig
from pipeline.core.policy import PolicyConfig

_SHARES = ("random_share", "explore_share", "hard_rule_floor", "red_risk")


def policy_config(overrides: Mapping[str, Any] | None = None) -> PolicyConfig:
    """The default policy with ``overrides`` (the parsed ``BUKONG_POLICY``) over it."""
    over = dict(overrides or {})
    budget_over = over.pop("budget", None)
    values = _coerce(PolicyConfig, over, "")
    budget = BudgetConfig()
    if budget_over is not None:
        if not isinstance(budget_over, Mapping):
            raise ValueError(f"budget: an object of {', '.join(_names(BudgetConfig))}, not {budget_over!r}")
        b = _coerce(BudgetConfig, dict(budget_over), "budget.")
        if "target_share" in b and "model_share" not in b:
            random_share = values.get("random_share", _default(PolicyConfig, "random_share"))
            b["model_share"] = b["target_share"] * (1 - random_share)
        budget = BudgetConfig(**b)
    if not 0 < budget.target_share < 1:
        raise ValueError(f"budget.target_share: a share of declarations in (0, 1), not {budget.target_share}")
    if not 0 <= budget.model_share <= budget.target_share:
        top = budget.target_share
        raise ValueError(f"budget.model_share: in [0, budget.target_share = {top}], not {budget.model_share}")
    for name in _SHARES:
        v = values.get(name)
        if v is not None and not 0 <= v <= 1:
            raise ValueError(f"{name}: in [0, 1], not {v}")
    return PolicyConfig(budget=budget, **values)


def _names(cls: Any) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(cls))


def _default(cls: Any, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]


def _coerce(cls: Any, over: dict[str, Any], prefix: str) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "budget"}
    out: dict[str, Any] = {}
    for name, value in over.items():
        f = fields.get(name)
        if f is None:
            known = ", ".join(sorted(fields) + (["budget"] if cls is PolicyConfig else []))
            raise ValueError(f"unknown policy setting '{prefix}{name}'; the settings are: {known}")
        out[name] = _value(prefix + name, value, _default(cls, name), str(f.type))
    return out


def _value(name: str, value: Any, default: Any, typ: str) -> Any:
    """``value`` as the type of the field's default (its annotation ``typ`` when the default is None)."""
    if value is None:
        if "None" in typ:
            return None
        raise ValueError(f"{name}: may not be null")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: true or false, not {value!r}")
        return value
    if isinstance(default, frozenset):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name}: a list of names, not {value!r}")
        return frozenset(value)
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping) or not all(_number(v) for v in value.values()):
            raise ValueError(f"{name}: an object of name -> number, not {value!r}")
        return {str(k): v for k, v in value.items()}
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{name}: a string, not {value!r}")
        return value
    if not _number(value):
        raise ValueError(f"{name}: a finite number, not {value!r}")
    integral = isinstance(default, int) or (default is None and "int" in typ and "float" not in typ)
    if integral:
        if value != int(value):
            raise ValueError(f"{name}: a whole number, not {value!r}")
        return int(value)
    return float(value)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
