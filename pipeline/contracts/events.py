"""Event contracts: the fields of every record on every topic, and validation at the edge.

Records are plain dicts (decoded by orjson). ``validate(kind, obj, now_ms)`` checks one decoded record and
returns it (normalised) or raises :class:`ContractError` with a machine-readable ``reason`` and a message a
person can act on. The pure core only ever sees records that passed here.

Times are epoch milliseconds in ``ts_ms`` (event time). ``now_ms`` is passed in by the caller (wall time in
the stream, simulated time in replay) and is only used to reject events from far in the future.

docs/events.md documents each contract with an example.
"""

from __future__ import annotations

import math
import re
import unicodedata
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
MIN_KG: Final = 0.001  # a weight above 0 is at least a gram, so the ratios over it stay finite
MAX_VALUE: Final = 1e11


class ContractError(ValueError):
    """A record that breaks its contract. ``reason`` is a short stable code used in metrics."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


# Stable refusal reasons (dead-letter ``reason``, ``bukong_dead_letters_total{reason}``, API ``reason``).
REASONS: Final = (
    "unknown_kind",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "wrong_item_type",
    "control_character",
    "invalid_character",
    "int_out_of_range",
    "non_finite_number",
    "impossible_value",
    "future_event",
)

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
FLOAT_MAX: Final = 1.7976931348623157e308  # the largest finite double: lo/hi of an unbounded number

# ---------------------------------------------------------------------------------------------- fields
Check = Callable[[Any], bool]
CODE: Final = "code"  # ids and codes: printable characters only (no control, format or separator chars)
FREE: Final = "free"  # free text (goods, notes): any character except NUL and C0 controls but tab/newline

# C0 controls other than tab (0x09) and newline (0x0a): refused in free text
_BAD_FREE = re.compile(r"[\x00-\x08\x0b-\x1f]")


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a contract.

    Strings are ``min_len..max_len`` characters of ``text`` kind (CODE or FREE); numbers lie in ``lo..hi``
    (always finite, integers within int64); lists hold ``max_len`` elements of the types in ``items``.
    ``check`` is an extra value check (enum, digits) and ``hint`` says what a valid value looks like.
    """

    name: str
    types: tuple[type, ...]
    required: bool = True
    check: Check | None = None
    hint: str = ""
    min_len: int = 1
    max_len: int = 64
    text: str = CODE
    lo: float = -FLOAT_MAX
    hi: float = FLOAT_MAX
    items: tuple[type, ...] = ()


NUM = (int, float)
STR = (str,)
INT = (int,)
LIST = (list,)


def _code(
    name: str, n: int = 64, *, required: bool = True, check: Check | None = None, hint: str = ""
) -> Field:
    return Field(name, STR, required, check, hint or f"1..{n} printable characters", max_len=n)


def _enum(name: str, values: frozenset[str], *, required: bool = True) -> Field:
    return Field(name, STR, required, values.__contains__, f"one of {sorted(values)}")


def _text(name: str, n: int, *, required: bool = True, min_len: int = 1) -> Field:
    hint = f"{min_len}..{n} characters, tab and newline allowed, no other control characters"
    return Field(name, STR, required, None, hint, min_len=min_len, max_len=n, text=FREE)


def _num(name: str, lo: float, hi: float, *, required: bool = True, hint: str = "") -> Field:
    return Field(name, NUM, required, None, hint or f"{lo:g}..{hi:g}", lo=lo, hi=hi)


def _int(
    name: str, lo: int = INT64_MIN, hi: int = INT64_MAX, *, required: bool = True, hint: str = ""
) -> Field:
    return Field(name, INT, required, None, hint or f"an integer {lo}..{hi}", lo=lo, hi=hi)


def _hs(v: str) -> bool:
    return 4 <= len(v) <= 10 and v.isascii() and v.isdigit()


_KG = f"0..{MAX_KG:.0f} kg"
# the weights that features divide by, per kind (features/schema.py, features/join.py)
_WEIGHTS: Final[dict[str, tuple[str, ...]]] = {
    "declaration": ("gross_kg", "net_kg"),
    "logistics": ("measured_gross_kg", "manifest_gross_kg"),
}
_TS = "epoch milliseconds (an integer)"

CONTRACTS: Final[dict[str, tuple[Field, ...]]] = {
    "declaration": (
        _code("decl_id"),
        _int("ts_ms", hint=_TS),
        _code("enterprise_id"),
        _enum("credit_grade", CREDIT_GRADES),
        _code("declarant_id", required=False),
        _code("hs_code", 10, check=_hs, hint="4 to 10 ASCII digits"),
        _text("goods", 256),
        _code("grade", 16, required=False),
        _code("origin", 3, hint="ISO 3166 alpha-2/3 country code"),
        _code("port"),
        _enum("mode", TRANSPORT_MODES),
        _code("conveyance_id"),
        _num("gross_kg", 0, MAX_KG, hint=_KG),
        _num("net_kg", 0, MAX_KG, hint=_KG),
        _num("quantity", 0, MAX_VALUE),
        _code("unit", 8, required=False),
        _num("value_cny", 0, MAX_VALUE, hint="declared customs value in CNY, >= 0"),
        _code("purpose", 32, required=False, hint="1..32 printable characters, e.g. medical"),
    ),
    "logistics": (
        _code("event_id"),
        _enum("kind", LOGISTICS_KINDS),
        _int("ts_ms", hint=_TS),
        _code("conveyance_id"),
        _code("port"),
        _code("gate", required=False),
        _num("measured_gross_kg", 0, MAX_KG, required=False, hint=_KG),
        _code("manifest_id", required=False),
        _num("manifest_gross_kg", 0, MAX_KG, required=False, hint=_KG),
        _int("manifest_items", 0, 10_000, required=False),
        _code("decl_id", required=False),
        _code("ic_card", required=False),
        _enum("direction", frozenset({"in", "out"}), required=False),
    ),
    "track": (
        _code("conveyance_id"),
        _int("ts_ms", hint=_TS),
        _num("lat", -90.0, 90.0, hint="-90..90 degrees"),
        _num("lon", -180.0, 180.0, hint="-180..180 degrees"),
        _num("speed_kmh", 0.0, 300.0, hint="0..300 km/h"),
    ),
    "inspection_result": (
        _code("command_id"),
        _code("decl_id"),
        _int("ts_ms", hint=_TS),
        _enum("outcome", OUTCOMES),
        _num("found_value_cny", 0, MAX_VALUE, required=False),
        _code("site", required=False),
        _text("notes", 2000, required=False, min_len=0),
        _code("source", 32, required=False),
    ),
}

TOPIC_KIND: Final[dict[str, str]] = {
    DECLARATIONS: "declaration",
    LOGISTICS: "logistics",
    TRACKS: "track",
    INSPECTION_RESULTS: "inspection_result",
}


# ------------------------------------------------------------------------------------------ fast path
# One generated function per contract that returns True when every field is well-formed: the common case,
# checked inline (no call per field, no message built). orjson gives exact built-in types, so ``type(v) is``
# replaces isinstance (and bool, not being exactly int or float, never passes as a number). A number's
# lo..hi comparison also refuses NaN, infinities and integers beyond int64 (every bound is finite and within
# int64). The generated source is derived from CONTRACTS only; ``_field_errors`` stays the authority.
def _free_ok(v: str) -> bool:
    return v.isprintable() or _BAD_FREE.search(v) is None


def _list_ok(v: list[Any], item_types: frozenset[type], n: int) -> bool:
    return len(v) <= n and all(type(x) in item_types and (type(x) is not str or x.isprintable()) for x in v)


def _fast_source(i: int, f: Field) -> str:
    """One field's condition that is True when the value ``v`` (not None) is BROKEN."""
    if f.types == LIST:
        return f"type(v) is not list or not _list_ok(v, _items{i}, {f.max_len})"
    if f.types == STR:
        length = f"{f.min_len} <= len(v) <= {f.max_len}"
        if f.text == FREE:
            return f"type(v) is not str or not ({length} and _free_ok(v))"
        extra = f" and _check{i}(v)" if f.check is not None else ""
        return f"type(v) is not str or not ({length} and v.isprintable(){extra})"
    if f.types == INT:
        is_type = "type(v) is not int"
    elif f.types == NUM:
        is_type = "(type(v) is not float and type(v) is not int)"
    else:  # any other declared type: checked by the slow path
        return "True"
    extra = f" or not _check{i}(v)" if f.check is not None else ""
    return f"{is_type} or not ({f.lo!r} <= v <= {f.hi!r}){extra}"


def _compile_fast(kind: str, fields: tuple[Field, ...]) -> Callable[[dict[str, Any]], bool]:
    ns: dict[str, Any] = {"_free_ok": _free_ok, "_list_ok": _list_ok}
    lines = [f"def _fast_{kind}(obj):", "    get = obj.get"]
    for i, f in enumerate(fields):
        ns[f"_check{i}"] = f.check
        ns[f"_items{i}"] = frozenset(f.items)
        lines.append(f"    v = get({f.name!r})")
        if f.required:
            lines.append(f"    if v is None or {_fast_source(i, f)}:")
        else:
            lines.append(f"    if v is not None and ({_fast_source(i, f)}):")
        lines.append("        return False")
    lines.append("    return True")
    exec("\n".join(lines), ns)  # source built from the field table above only, never from input
    fn: Callable[[dict[str, Any]], bool] = ns[f"_fast_{kind}"]
    return fn


_FAST: Final[dict[str, Callable[[dict[str, Any]], bool]]] = {
    kind: _compile_fast(kind, fields) for kind, fields in CONTRACTS.items()
}


# ------------------------------------------------------------------------------------------ slow path
def _char_error(kind: str, f: Field, v: str) -> ContractError | None:
    """A control (or, in a code, any non-printable) character in a string field, or None."""
    for i, ch in enumerate(v):
        if f.text == FREE:
            if not _BAD_FREE.match(ch):
                continue
        elif ch.isprintable():
            continue
        cat = unicodedata.category(ch)
        where = f"{kind}.{f.name} has U+{ord(ch):04X} at position {i}"
        if cat == "Cc":
            what = (
                "free text may hold tab and newline but no other control characters"
                if f.text == FREE
                else "ids and codes hold printable characters only"
            )
            return ContractError("control_character", f"{where}: {what}; remove it ({f.hint})", f.name)
        return ContractError(
            "invalid_character",
            f"{where} (Unicode category {cat}): ids and codes hold printable characters only, "
            f"no format, separator or unassigned characters; remove it ({f.hint})",
            f.name,
        )
    return None


def _value_error(kind: str, f: Field, v: Any) -> ContractError | None:
    """Why a value of the right type is refused, or None if it is well-formed."""
    hint = f" ({f.hint})" if f.hint else ""
    if isinstance(v, str):
        if not f.min_len <= len(v) <= f.max_len:
            return ContractError(
                "impossible_value",
                f"{kind}.{f.name} has {len(v)} characters: send {f.min_len}..{f.max_len}{hint}",
                f.name,
            )
        err = _char_error(kind, f, v)
        if err is not None:
            return err
    elif isinstance(v, list):
        if len(v) > f.max_len:
            return ContractError(
                "impossible_value", f"{kind}.{f.name} has {len(v)} elements: send at most {f.max_len}", f.name
            )
        want = "/".join(t.__name__ for t in f.items)
        for i, x in enumerate(v):
            if type(x) not in f.items:
                return ContractError(
                    "wrong_item_type",
                    f"{kind}.{f.name}[{i}] must be {want}, got {type(x).__name__} {x!r:.40}",
                    f.name,
                )
            if isinstance(x, str) and (err := _char_error(kind, f, x)) is not None:
                return err
        return None
    elif isinstance(v, int):
        if not INT64_MIN <= v <= INT64_MAX:
            return ContractError(
                "int_out_of_range",
                f"{kind}.{f.name}={v!r:.40} does not fit a signed 64-bit integer: send a value{hint}",
                f.name,
            )
    elif isinstance(v, float) and not math.isfinite(v):
        return ContractError(
            "non_finite_number", f"{kind}.{f.name}={v!r} is not a finite number: send a value{hint}", f.name
        )
    if (isinstance(v, int | float) and not f.lo <= v <= f.hi) or (f.check is not None and not f.check(v)):
        return ContractError(
            "impossible_value", f"{kind}.{f.name}={v!r:.60} is out of range: send {f.hint}", f.name
        )
    return None


def _field_errors(kind: str, fields: tuple[Field, ...], obj: dict[str, Any]) -> None:
    """The authoritative field checks: raise a ContractError naming the first broken field."""
    for f in fields:
        v = obj.get(f.name)
        if v is None:
            if f.required:
                raise ContractError(
                    "missing_field",
                    f"{kind}.{f.name} is required: send {f.hint or f.types[0].__name__}",
                    f.name,
                )
            continue
        # bool is a subclass of int: never accept true/false where a number is meant
        if not isinstance(v, f.types) or isinstance(v, bool):
            want = "/".join(t.__name__ for t in f.types)
            raise ContractError(
                "wrong_type",
                f"{kind}.{f.name} must be {want}, got {type(v).__name__} {v!r:.40}: send {f.hint or want}",
                f.name,
            )
        err = _value_error(kind, f, v)
        if err is not None:
            raise err


def check_fields(kind: str, fields: tuple[Field, ...], obj: Any) -> dict[str, Any]:
    """Check ``obj`` against any tuple of fields: for records checked outside CONTRACTS (no fast path)."""
    if not isinstance(obj, dict):
        raise ContractError("not_an_object", f"{kind} must be a JSON object, got {type(obj).__name__}")
    _field_errors(kind, fields, obj)
    return obj


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
    if not _FAST[kind](obj):
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
            f"(limit {MAX_FUTURE_MS // 1000} s): send event time in epoch milliseconds from a synced clock",
            "ts_ms",
        )
    for name in _WEIGHTS.get(kind, ()):
        kg = obj.get(name)
        if kg is not None and 0 < kg < MIN_KG:
            raise ContractError(
                "impossible_value",
                f"{kind}.{name}={kg!r} is above 0 but under a gram: send kilograms ({_KG}, 0 if unknown)",
                name,
            )
    if kind == "declaration" and obj["net_kg"] > obj["gross_kg"]:
        raise ContractError(
            "impossible_value", "declaration.net_kg exceeds gross_kg: send net_kg <= gross_kg", "net_kg"
        )
    if kind == "logistics" and obj["kind"] == "weighbridge" and obj.get("measured_gross_kg") is None:
        raise ContractError(
            "missing_field", f"a weighbridge record needs measured_gross_kg ({_KG})", "measured_gross_kg"
        )
    return obj


_FAST_TRACK: Final = _FAST["track"]


def track_ok(obj: Any, now_ms: int | None) -> bool:
    """The GPS points' fast path (60% of the input): True when ``validate("track", obj, now_ms)`` would
    return ``obj`` unchanged. False says nothing about why: the caller runs ``validate`` for the exact
    ``ContractError`` (the same checks, the same reasons and messages)."""
    if type(obj) is not dict or not _FAST_TRACK(obj):
        return False
    ts = obj["ts_ms"]
    return ts >= MIN_TS_MS and (now_ms is None or ts <= now_ms + MAX_FUTURE_MS)


def contract_fields(kind: str) -> Mapping[str, Field]:
    return {f.name: f for f in CONTRACTS[kind]}
