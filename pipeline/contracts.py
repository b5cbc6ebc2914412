"""Event contracts: the fields of every record on every topic, and validation at the edge.

Records are plain dicts (decoded by orjson). ``validate(kind, obj, now_ms)`` checks one decoded record and
returns it (normalised) or raises :class:`ContractError` with a machine-readable ``reason`` and a message a
person can act on. The pure core only ever sees records that passed here.

Times are epoch milliseconds in ``ts_ms`` (event time). ``now_ms`` is passed in by the caller (wall time in
the stream, simulated time in replay) and is only used to reject events from far in the future.

docs/events.md documents each contract with an example.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

# ---------------------------------------------------------------------------------------------- topics
DECLARATIONS: Final = "declarations"
LOGISTICS: Final = "logistics"
TRACKS: Final = "tracks"
INSPECTION_RESULTS: Final = "inspection-results"
DISPATCH_COMMANDS: Final = "dispatch-commands"
DEAD_LETTER: Final = "dead-letter"
NOTIFICATIONS: Final = "notifications"
RULE_PACKS: Final = "rule-packs"

INPUT_TOPICS: Final = (DECLARATIONS, LOGISTICS, TRACKS)
ALL_TOPICS: Final = (
    DECLARATIONS,
    LOGISTICS,
    TRACKS,
    INSPECTION_RESULTS,
    DISPATCH_COMMANDS,
    DEAD_LETTER,
    NOTIFICATIONS,
    RULE_PACKS,
)

# ---------------------------------------------------------------------------------------------- enums
CREDIT_GRADES: Final = frozenset({"aeo_advanced", "general", "distrusted"})
TRANSPORT_MODES: Final = frozenset({"road", "rail", "air", "self_drive"})
LOGISTICS_KINDS: Final = frozenset({"gate_in", "gate_out", "weighbridge", "manifest"})
OUTCOMES: Final = frozenset({"violation", "clean", "not_found"})
LANES: Final = ("release", "document_check", "physical_inspection", "intercept", "post_clearance_audit")
LANE_SET: Final = frozenset(LANES)
SEVERITIES: Final = ("low", "medium", "high", "critical")

MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_FUTURE_MS: Final = 10 * 60 * 1000  # events more than 10 minutes ahead of now are impossible
MIN_TS_MS: Final = 946_684_800_000  # 2000-01-01: anything older is a unit error (seconds, not ms)
MAX_KG: Final = 200_000.0  # a road/rail conveyance load never exceeds 200 t
MAX_VALUE: Final = 1e11


class ContractError(ValueError):
    """A record that breaks its contract. ``reason`` is a short stable code used in metrics."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


# ---------------------------------------------------------------------------------------------- fields
Check = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    types: tuple[type, ...]
    required: bool = True
    check: Check | None = None
    hint: str = ""


def _nonneg(v: Any) -> bool:
    return 0 <= v <= MAX_KG


def _pos_value(v: Any) -> bool:
    return 0 <= v <= MAX_VALUE


def _short(n: int) -> Check:
    return lambda v: 0 < len(v) <= n


def _one_of(values: frozenset[str]) -> Check:
    return lambda v: v in values


def _hs(v: Any) -> bool:
    return 4 <= len(v) <= 10 and v.isdigit()


NUM = (int, float)
STR = (str,)
INT = (int,)
_ID = _short(64)

CONTRACTS: Final[dict[str, tuple[Field, ...]]] = {
    "declaration": (
        Field("decl_id", STR, check=_ID),
        Field("ts_ms", INT),
        Field("enterprise_id", STR, check=_ID),
        Field("credit_grade", STR, check=_one_of(CREDIT_GRADES), hint=f"one of {sorted(CREDIT_GRADES)}"),
        Field("declarant_id", STR, required=False, check=_ID),
        Field("hs_code", STR, check=_hs, hint="4 to 10 digits"),
        Field("goods", STR, check=_short(256)),
        Field("grade", STR, required=False, check=_short(16)),
        Field("origin", STR, check=_short(3), hint="ISO 3166 alpha-2/3 country code"),
        Field("port", STR, check=_ID),
        Field("mode", STR, check=_one_of(TRANSPORT_MODES), hint=f"one of {sorted(TRANSPORT_MODES)}"),
        Field("conveyance_id", STR, check=_ID),
        Field("gross_kg", NUM, check=_nonneg, hint=f"0..{MAX_KG:.0f} kg"),
        Field("net_kg", NUM, check=_nonneg, hint=f"0..{MAX_KG:.0f} kg"),
        Field("quantity", NUM, check=_pos_value),
        Field("unit", STR, required=False, check=_short(8)),
        Field("value_cny", NUM, check=_pos_value, hint="declared customs value in CNY, >= 0"),
        Field("purpose", STR, required=False, check=_short(32)),
    ),
    "logistics": (
        Field("event_id", STR, check=_ID),
        Field("kind", STR, check=_one_of(LOGISTICS_KINDS), hint=f"one of {sorted(LOGISTICS_KINDS)}"),
        Field("ts_ms", INT),
        Field("conveyance_id", STR, check=_ID),
        Field("port", STR, check=_ID),
        Field("gate", STR, required=False, check=_ID),
        Field("measured_gross_kg", NUM, required=False, check=_nonneg, hint=f"0..{MAX_KG:.0f} kg"),
        Field("manifest_id", STR, required=False, check=_ID),
        Field("manifest_gross_kg", NUM, required=False, check=_nonneg),
        Field("manifest_items", INT, required=False, check=lambda v: 0 <= v <= 10_000),
        Field("decl_id", STR, required=False, check=_ID),
        Field("ic_card", STR, required=False, check=_ID),
        Field("direction", STR, required=False, check=_one_of(frozenset({"in", "out"}))),
    ),
    "track": (
        Field("conveyance_id", STR, check=_ID),
        Field("ts_ms", INT),
        Field("lat", NUM, check=lambda v: -90.0 <= v <= 90.0, hint="-90..90 degrees"),
        Field("lon", NUM, check=lambda v: -180.0 <= v <= 180.0, hint="-180..180 degrees"),
        Field("speed_kmh", NUM, check=lambda v: 0.0 <= v <= 300.0, hint="0..300 km/h"),
    ),
    "inspection_result": (
        Field("command_id", STR, check=_ID),
        Field("decl_id", STR, check=_ID),
        Field("ts_ms", INT),
        Field("outcome", STR, check=_one_of(OUTCOMES), hint=f"one of {sorted(OUTCOMES)}"),
        Field("found_value_cny", NUM, required=False, check=_pos_value),
        Field("site", STR, required=False, check=_ID),
        Field("notes", STR, required=False, check=_short(2000)),
        Field("source", STR, required=False, check=_short(32)),
    ),
}

TOPIC_KIND: Final[dict[str, str]] = {
    DECLARATIONS: "declaration",
    LOGISTICS: "logistics",
    TRACKS: "track",
    INSPECTION_RESULTS: "inspection_result",
}

_BOOL = bool


# per contract: (name, exact types, required, check). orjson gives exact built-in types, so one set lookup
# replaces two isinstance calls (and bool, not being exactly int or float, never passes as a number)
_Spec = tuple[tuple[str, frozenset[type], bool, Check | None], ...]
_FAST: Final[dict[str, _Spec]] = {
    kind: tuple((f.name, frozenset(f.types), f.required, f.check) for f in fields)
    for kind, fields in CONTRACTS.items()
}


def _fast_ok(spec: _Spec, obj: dict[str, Any]) -> bool:
    """True if every field is well-formed: the common case, checked without building any message."""
    get = obj.get
    for name, exact, required, check in spec:
        v = get(name)
        if v is None:
            if required:
                return False
            continue
        if type(v) not in exact or (check is not None and not check(v)):
            return False
    return True


def _field_errors(kind: str, fields: tuple[Field, ...], obj: dict[str, Any]) -> None:
    """The authoritative field checks: raise a ContractError naming the first broken field."""
    for f in fields:
        v = obj.get(f.name)
        if v is None:
            if f.required:
                raise ContractError("missing_field", f"{kind}.{f.name} is required", f.name)
            continue
        # bool is a subclass of int: never accept true/false where a number is meant
        if not isinstance(v, f.types) or isinstance(v, _BOOL):
            want = "/".join(t.__name__ for t in f.types)
            raise ContractError(
                "wrong_type", f"{kind}.{f.name} must be {want}, got {type(v).__name__} {v!r:.40}", f.name
            )
        if f.check is not None and not f.check(v):
            hint = f" ({f.hint})" if f.hint else ""
            raise ContractError(
                "impossible_value", f"{kind}.{f.name}={v!r:.60} is out of range{hint}", f.name
            )


def validate(kind: str, obj: Any, now_ms: int | None = None) -> dict[str, Any]:
    """Check one decoded record against its contract and return it.

    Raises :class:`ContractError` naming the first broken field. Unknown extra fields are kept (forward
    compatibility) but never required by the core.
    """
    fields = CONTRACTS.get(kind)
    if fields is None:
        raise ContractError("unknown_kind", f"no contract named {kind!r}; known: {sorted(CONTRACTS)}")
    if not isinstance(obj, dict):
        raise ContractError("not_an_object", f"{kind} must be a JSON object, got {type(obj).__name__}")
    if not _fast_ok(_FAST[kind], obj):
        _field_errors(kind, fields, obj)
    ts = obj["ts_ms"]
    if ts < MIN_TS_MS:
        raise ContractError(
            "impossible_value", f"{kind}.ts_ms={ts} is before 2000-01-01: send epoch milliseconds", "ts_ms"
        )
    if now_ms is not None and ts > now_ms + MAX_FUTURE_MS:
        raise ContractError(
            "future_event",
            f"{kind}.ts_ms={ts} is {(ts - now_ms) / 1000:.0f} s in the future "
            f"(limit {MAX_FUTURE_MS // 1000} s)",
            "ts_ms",
        )
    if kind == "declaration" and obj["net_kg"] > obj["gross_kg"]:
        raise ContractError("impossible_value", "declaration.net_kg exceeds gross_kg", "net_kg")
    if kind == "logistics" and obj["kind"] == "weighbridge" and obj.get("measured_gross_kg") is None:
        raise ContractError(
            "missing_field", "a weighbridge record needs measured_gross_kg", "measured_gross_kg"
        )
    return obj


def contract_fields(kind: str) -> Mapping[str, Field]:
    return {f.name: f for f in CONTRACTS[kind]}
