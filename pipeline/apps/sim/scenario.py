"""Scenario files: sizes, rates, typology mix, drift phases, surges, the honest world's knobs. YAML, validated
with errors that name the file and line.

Every knob is optional (defaults below), so a file written for an older format keeps loading. Unknown keys,
ports, typologies, lanes, credit grades and lead sources are errors (``file:line: ...``).
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.contracts import sites

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
    # combination-only typologies (the honest world): no single fact reveals them
    "alternating",  # an enterprise alternating clean and mildly undervalued shipments
    "night_deviation",  # a short route deviation, only on night trips
    "declarant_hopping",  # a declarant filing for enterprises other than its own, mildly undervalued
)
COMBINATION_TYPOLOGIES = ("alternating", "night_deviation", "declarant_hopping")
CREDIT_GRADES = ("aeo_advanced", "general", "distrusted")
LANES = ("physical_inspection", "intercept", "document_check", "post_clearance_audit")
WORLDS = ("legacy", "honest")
# intelligence sources and their default reliability (share of their leads that are true) in the honest world
LEAD_SOURCES: dict[str, float] = {
    "informant": 0.55,
    "border-police": 0.45,
    "other-agency": 0.35,
    "hotline": 0.15,
}


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class Phase:
    """From ``at_day`` on, the typology prevalences are replaced by ``prevalence`` (only the named ones)."""

    at_day: float
    prevalence: dict[str, float]
    note: str = ""
    where: str = field(default="", compare=False)  # "file:line" of the phase, for messages


@dataclass(frozen=True)
class Surge:
    port: str
    from_day: float
    to_day: float
    factor: float
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int = 1
    start: str = "2026-06-01T00:00:00Z"
    world: str = "legacy"  # "honest": noisy signals everywhere (docs/simulator.md); "legacy": the first world
    trips_per_day: int = 2400
    self_drive_per_day: int = 300
    enterprises: int = 2000
    declarants: int = 150
    trucks: int = 3000
    self_drive_vehicles: int = 400
    split_threshold_cny: float = 50_000.0
    false_lead_share: float = 0.6  # legacy world only; the honest world grades each source (lead_sources)
    watchlist_size: int = 60
    credit_mix: dict[str, float] = field(
        default_factory=lambda: {
            "aeo_advanced": 0.1,
            "general": 0.82,
            "distrusted": 0.08,
        }
    )
    port_fraud: dict[str, float] = field(default_factory=dict)  # port -> multiplier on every prevalence
    season_amplitude: float = 0.0  # honest world: fraud x (1 + a*cos(2 pi (month-1)/12)), peak in January
    # honest world: lognormal spread of fraud between enterprise clusters (0: none)
    cluster_sigma: float = 0.6
    lead_sources: dict[str, float] = field(default_factory=dict)  # source -> reliability (honest world)
    lead_drift_per_day: float = 0.0  # honest world: sd of each source's daily reliability random walk
    leads_at_good_credit: float = 0.0  # share of leads aimed at AEO-advanced enterprises
    leads_per_day: float = 0.0  # leads added mid-run (honest world), drawn from the sources' reliability
    inspection_delay_min: dict[str, tuple[float, float]] = field(default_factory=dict)  # lane -> (lo, hi)
    budget_share: float = 0.05  # the inspection budget the benchmarks and the demo aim at
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

    @property
    def start_ms(self) -> int:
        return parse_start(self.start)

    def lead_reliability(self) -> dict[str, float]:
        return {**LEAD_SOURCES, **self.lead_sources}

    def beyond(self, days: float) -> list[str]:
        """``file:line: ...`` for every phase and surge that a run of ``days`` never reaches."""
        run = f"is beyond the run ({days:g} days): it never applies"
        out = [
            f"{ph.where or self.name}: phase at_day {ph.at_day:g} {run}"
            for ph in self.phases
            if ph.at_day >= days
        ]
        out += [
            f"{s.where or self.name}: surge from_day {s.from_day:g} {run}"
            for s in self.surges
            if s.from_day >= days
        ]
        return out


def parse_start(text: str) -> int:
    """An ISO-8601 instant (``2026-06-01T00:00:00Z``; a date alone is midnight UTC) in epoch ms."""
    t = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return calendar.timegm(t.utctimetuple()) * 1000 + t.microsecond // 1000


# ------------------------------------------------------------------------------------------- loading
class _Loader(yaml.SafeLoader):
    """Safe YAML where a duplicate key is an error (not silently the last one) and a date stays text (an
    impossible date like 2026-02-30 is then a scenario error, not a crash in the YAML constructor)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for k, _ in node.value:
            key = self.construct_object(k, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {seen[key]})", k.start_mark
                    )
                seen[key] = k.start_mark.line + 1
            except TypeError:
                continue  # an unhashable key: the constructor reports it
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:timestamp"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Lines:
    """Line numbers of every key of the YAML document, by path (("phases", 0, "at_day") -> 12)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines: dict[tuple[Any, ...], int] = {}
        try:
            node = yaml.compose(text)
        except yaml.YAMLError:
            node = None
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: Any, at: tuple[Any, ...]) -> None:
        self.lines.setdefault(at, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                self.lines[(*at, k.value)] = k.start_mark.line + 1
                self._walk(v, (*at, k.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk(v, (*at, i))

    def where(self, *at: Any) -> str:
        for n in range(len(at), -1, -1):
            if at[:n] in self.lines:
                return f"{self.path}:{self.lines[at[:n]]}"
        return str(self.path)

    def error(self, msg: str, *at: Any) -> ScenarioError:
        return ScenarioError(f"{self.where(*at)}: {msg}")


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _require(d: Any, key: str, types: tuple[type, ...], ln: _Lines, *at: Any) -> Any:
    if not isinstance(d, dict):
        raise ln.error("must be a mapping", *at)
    if key not in d:
        raise ln.error(f"missing '{key}'", *at)
    v = d[key]
    if not isinstance(v, types) or isinstance(v, bool) or (isinstance(v, float) and not math.isfinite(v)):
        raise ln.error(
            f"'{key}' must be a finite {'/'.join(t.__name__ for t in types)}, got {v!r}",
            *at,
            key,
        )
    return v


def _prevalence(d: Any, ln: _Lines, *at: Any) -> dict[str, float]:
    if not isinstance(d, dict):
        raise ln.error("prevalence must be a mapping typology -> share", *at)
    out = {}
    for k, v in d.items():
        if k not in TYPOLOGIES:
            raise ln.error(f"unknown typology {k!r}; known: {', '.join(TYPOLOGIES)}", *at, k)
        if not _num(v) or not 0 <= v <= 0.5:
            raise ln.error(f"prevalence of {k} must be a number in [0, 0.5], got {v!r}", *at, k)
        out[k] = float(v)
    return out


def _shares(
    d: Any,
    known: tuple[str, ...],
    what: str,
    lo: float,
    hi: float,
    ln: _Lines,
    key: str,
) -> dict:
    if not isinstance(d, dict):
        raise ln.error(f"{key} must be a mapping {what} -> number", key)
    out = {}
    for k, v in d.items():
        if k not in known:
            raise ln.error(f"unknown {what} {k!r} in {key}; known: {', '.join(known)}", key, k)
        if not _num(v) or not lo <= v <= hi:
            raise ln.error(f"{key}.{k} must be a number in [{lo}, {hi}], got {v!r}", key, k)
        out[k] = float(v)
    return out


def _port(v: Any, ln: _Lines, *at: Any) -> str:
    if v not in sites.PORTS:
        raise ln.error(f"unknown port {v!r}; known: {', '.join(sites.PORTS)}", *at)
    return str(v)


def _delays(d: Any, ln: _Lines) -> dict[str, tuple[float, float]]:
    key = "inspection_delay_min"
    if not isinstance(d, dict):
        raise ln.error(f"{key} must be a mapping lane -> [min, max] minutes", key)
    out = {}
    for lane, v in d.items():
        if lane not in LANES:
            raise ln.error(f"unknown lane {lane!r} in {key}; known: {', '.join(LANES)}", key, lane)
        ok = isinstance(v, list) and len(v) == 2 and all(_num(x) and x >= 0 for x in v) and v[0] <= v[1]
        if not ok:
            raise ln.error(
                f"{key}.{lane} must be [min, max] minutes with 0 <= min <= max, got {v!r}",
                key,
                lane,
            )
        out[lane] = (float(v[0]), float(v[1]))
    return out


# the integers and their bounds (None: no upper bound): a world needs enterprises, declarants and trucks,
# and a typo (2400000 trips a day) must be an error, not a run that never ends
_INTS: dict[str, tuple[int, int | None]] = {
    "seed": (0, None),
    "trips_per_day": (0, 100_000),
    "self_drive_per_day": (0, 100_000),
    "enterprises": (1, 1_000_000),
    "declarants": (1, 100_000),
    "trucks": (1, 1_000_000),
    "self_drive_vehicles": (0, 1_000_000),
    "watchlist_size": (0, 100_000),
    "bad_events": (0, 1_000_000),
}
_FLOATS: dict[str, tuple[float, float]] = {
    "split_threshold_cny": (1.0, 1e9),
    "false_lead_share": (0.0, 1.0),
    "season_amplitude": (0.0, 0.9),
    "cluster_sigma": (0.0, 2.0),
    "lead_drift_per_day": (0.0, 0.5),
    "leads_at_good_credit": (0.0, 1.0),
    "leads_per_day": (0.0, 1000.0),
    "budget_share": (0.001, 0.5),
}


def _scalars(raw: dict[str, Any], ln: _Lines) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    for key, (least, most) in _INTS.items():
        if key in raw:
            v = raw[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < least or (most is not None and v > most):
                top = "inf" if most is None else most
                raise ln.error(f"{key} must be an integer in [{least}, {top}], got {v!r}", key)
            kw[key] = v
    if (
        kw.get("self_drive_per_day", Scenario.self_drive_per_day) > 0
        and kw.get("self_drive_vehicles", Scenario.self_drive_vehicles) < 1
    ):
        at = "self_drive_vehicles" if "self_drive_vehicles" in raw else "self_drive_per_day"
        raise ln.error("self-drive crossings need self_drive_vehicles >= 1 (or self_drive_per_day: 0)", at)
    for key, (lo, hi) in _FLOATS.items():
        if key in raw:
            v = raw[key]
            if not _num(v) or not lo <= v <= hi:
                raise ln.error(f"{key} must be a number in [{lo}, {hi}], got {v!r}", key)
            kw[key] = float(v)
    if "world" in raw and raw["world"] not in WORLDS:
        raise ln.error(f"world must be one of {', '.join(WORLDS)}, got {raw['world']!r}", "world")
    if "start" in raw:
        try:
            parse_start(str(raw["start"]))
        except ValueError:
            raise ln.error(f"start must be an ISO-8601 instant, got {raw['start']!r}", "start") from None
    for key in ("world", "start", "description"):
        if key in raw:
            kw[key] = str(raw[key])
    return kw


def _mappings(raw: dict[str, Any], ln: _Lines) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if "credit_mix" in raw:
        mix = _shares(raw["credit_mix"], CREDIT_GRADES, "credit grade", 0.0, 1.0, ln, "credit_mix")
        if abs(sum(mix.values()) - 1.0) > 1e-6 or len(mix) != len(CREDIT_GRADES):
            raise ln.error(
                f"credit_mix must give every grade ({', '.join(CREDIT_GRADES)}) summing to 1",
                "credit_mix",
            )
        kw["credit_mix"] = mix
    if "port_fraud" in raw:
        kw["port_fraud"] = _shares(raw["port_fraud"], tuple(sites.PORTS), "port", 0.0, 20.0, ln, "port_fraud")
    if "lead_sources" in raw:
        known = tuple(LEAD_SOURCES)
        kw["lead_sources"] = _shares(raw["lead_sources"], known, "lead source", 0.0, 1.0, ln, "lead_sources")
    if "inspection_delay_min" in raw:
        kw["inspection_delay_min"] = _delays(raw["inspection_delay_min"], ln)
    return kw


def _phases_and_surges(raw: dict[str, Any], ln: _Lines) -> dict[str, Any]:
    for key in ("phases", "surges"):
        if not isinstance(raw.get(key) or [], list):
            raise ln.error(f"{key} must be a list (each item starting with '- ')", key)
    phases = []
    for i, ph in enumerate(raw.get("phases", []) or []):
        at = ("phases", i)
        unknown = set(ph) - {"at_day", "prevalence", "note"} if isinstance(ph, dict) else set()
        if unknown:
            raise ln.error(f"unknown keys {sorted(unknown)} in a phase", *at, sorted(unknown)[0])
        day = float(_require(ph, "at_day", (int, float), ln, *at))
        if day < 0:
            raise ln.error(f"a phase's at_day must be >= 0, got {day:g}", *at, "at_day")
        phases.append(
            Phase(
                day,
                _prevalence(ph.get("prevalence", {}), ln, *at, "prevalence"),
                str(ph.get("note", "")),
                ln.where(*at, "at_day"),
            )
        )
    surges = []
    for i, s in enumerate(raw.get("surges", []) or []):
        at = ("surges", i)
        unknown = set(s) - {"port", "from_day", "to_day", "factor"} if isinstance(s, dict) else set()
        if unknown:
            raise ln.error(f"unknown keys {sorted(unknown)} in a surge", *at, sorted(unknown)[0])
        port = _port(_require(s, "port", (str,), ln, *at), ln, *at, "port")
        lo = float(_require(s, "from_day", (int, float), ln, *at))
        hi = float(_require(s, "to_day", (int, float), ln, *at))
        factor = float(_require(s, "factor", (int, float), ln, *at))
        if lo < 0 or hi < lo or not 0 <= factor <= 100:
            raise ln.error("a surge needs 0 <= from_day <= to_day and 0 <= factor <= 100", *at)
        if port not in sites.CROSSINGS:
            raise ln.error(
                f"port {port} has no truck traffic to surge; ports with trucks: {', '.join(sites.CROSSINGS)}",
                *at,
                "port",
            )
        surges.append(Surge(port, lo, hi, factor, ln.where(*at)))
    return {
        "phases": tuple(sorted(phases, key=lambda x: x.at_day)),
        "surges": tuple(surges),
    }


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (baseline, drift, border-surge) or a YAML file path."""
    p = Path(name_or_path)
    if not p.suffix:
        p = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        shipped = ", ".join(sorted(x.stem for x in SCENARIO_DIR.glob("*.yaml")))
        raise ScenarioError(f"no scenario {name_or_path!r}: give a YAML file or one of: {shipped}")
    text = p.read_text()
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass (dates stay text, no duplicate keys)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise ScenarioError(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{p}: not valid YAML: {exc}") from None
    ln = _Lines(p, text)
    if not isinstance(raw, dict):
        raise ln.error("a scenario is a mapping")
    known = set(Scenario.__dataclass_fields__)
    unknown = sorted(set(raw) - known, key=str)
    if unknown:
        raise ln.error(f"unknown keys {unknown}; allowed: {sorted(known)}", str(unknown[0]))
    kw = {
        "name": str(raw.get("name", p.stem)),
        **_scalars(raw, ln),
        **_mappings(raw, ln),
    }
    kw["prevalence"] = _prevalence(raw.get("prevalence", {}) or {}, ln, "prevalence")
    kw.update(_phases_and_surges(raw, ln))
    return Scenario(**kw)
