"""Scenario files: sizes, rates, typology mix, drift phases, surges. YAML, validated with clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCENARIO_DIR = Path(__file__).parent / "scenarios"

TYPOLOGIES = (
    "undervaluation",
    "coal_grade",
    "weight_underdeclared",
    "split_shipment",
    "hs_misclass",
    "concealment",
    "watchlisted",
    "self_drive_abuse",
    "contraband",
)


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class Phase:
    """From ``at_day`` on, the typology prevalences are replaced by ``prevalence`` (only the named ones)."""

    at_day: float
    prevalence: dict[str, float]
    note: str = ""


@dataclass(frozen=True)
class Surge:
    port: str
    from_day: float
    to_day: float
    factor: float


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int = 1
    start: str = "2026-06-01T00:00:00Z"
    trips_per_day: int = 2400
    self_drive_per_day: int = 300
    enterprises: int = 2000
    declarants: int = 150
    trucks: int = 3000
    self_drive_vehicles: int = 400
    split_threshold_cny: float = 50_000.0
    false_lead_share: float = 0.6
    watchlist_size: int = 60
    prevalence: dict[str, float] = field(default_factory=dict)
    phases: tuple[Phase, ...] = ()
    surges: tuple[Surge, ...] = ()
    bad_events: int = 0
    description: str = ""

    def prevalence_at(self, day: float) -> dict[str, float]:
        prev = dict(self.prevalence)
        for ph in self.phases:
            if day >= ph.at_day:
                prev.update(ph.prevalence)
        return prev

    def surge_factor(self, port: str, day: float) -> float:
        f = 1.0
        for s in self.surges:
            if s.port == port and s.from_day <= day < s.to_day:
                f *= s.factor
        return f


def _require(d: dict[str, Any], key: str, types: tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise ScenarioError(f"{where}: missing '{key}'")
    v = d[key]
    if not isinstance(v, types) or isinstance(v, bool):
        raise ScenarioError(f"{where}: '{key}' must be {'/'.join(t.__name__ for t in types)}, got {v!r}")
    return v


def _prevalence(d: Any, where: str) -> dict[str, float]:
    if not isinstance(d, dict):
        raise ScenarioError(f"{where}: prevalence must be a mapping typology -> share")
    out = {}
    for k, v in d.items():
        if k not in TYPOLOGIES:
            raise ScenarioError(f"{where}: unknown typology {k!r}; known: {', '.join(TYPOLOGIES)}")
        if not isinstance(v, int | float) or not 0 <= v <= 0.5:
            raise ScenarioError(f"{where}: prevalence of {k} must be a number in [0, 0.5], got {v!r}")
        out[k] = float(v)
    return out


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (baseline, drift, border-surge) or a YAML file path."""
    p = Path(name_or_path)
    if not p.suffix:
        p = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        shipped = ", ".join(sorted(x.stem for x in SCENARIO_DIR.glob("*.yaml")))
        raise ScenarioError(f"no scenario {name_or_path!r}: give a YAML file or one of: {shipped}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{p}: a scenario is a mapping")
    where = str(p)
    known = set(Scenario.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    kw: dict[str, Any] = {k: v for k, v in raw.items() if k not in ("prevalence", "phases", "surges")}
    kw["name"] = str(raw.get("name", p.stem))
    kw["prevalence"] = _prevalence(raw.get("prevalence", {}), where)
    phases = []
    for i, ph in enumerate(raw.get("phases", []) or []):
        w = f"{where}: phases[{i}]"
        phases.append(
            Phase(
                float(_require(ph, "at_day", (int, float), w)),
                _prevalence(ph.get("prevalence", {}), w),
                str(ph.get("note", "")),
            )
        )
    kw["phases"] = tuple(sorted(phases, key=lambda x: x.at_day))
    surges = []
    for i, s in enumerate(raw.get("surges", []) or []):
        w = f"{where}: surges[{i}]"
        surges.append(
            Surge(
                str(_require(s, "port", (str,), w)),
                float(_require(s, "from_day", (int, float), w)),
                float(_require(s, "to_day", (int, float), w)),
                float(_require(s, "factor", (int, float), w)),
            )
        )
    kw["surges"] = tuple(surges)
    for key in ("trips_per_day", "self_drive_per_day", "enterprises", "trucks"):
        if key in kw and (not isinstance(kw[key], int) or kw[key] < 0):
            raise ScenarioError(f"{where}: {key} must be a non-negative integer")
    return Scenario(**kw)
