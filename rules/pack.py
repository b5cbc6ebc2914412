"""Rule packs: YAML files of CEL rules, validated with file:line for every problem.

A pack::

    name: starter
    version: 3
    rules:
      - id: weighbridge_excess
        title: Weighbridge well above the declared weight
        description: ...
        expression: weigh_present && weigh_excess_ratio > 0.05
        lane: physical_inspection          # release, document_check, physical_inspection, intercept,
                                           # post_clearance_audit
        severity: high                     # low, medium, high, critical
        action: hard                       # dispatch (default), hard (always inspect), emergency_release
        scope: global                      # or a port code: instant targeting for that site only
        status: active                     # active, shadow (counted, never dispatches), disabled
        owner: risk-centre
        version: 2
        reason: "weighbridge {weigh_gross_kg:.0f} kg vs declared {gross_kg:.0f} kg"
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from features.schema import FACT_TYPES, NEUTRAL
from pipeline.contracts.events import LANE_SET, SEVERITIES
from rules.check import check_rules
from rules.issues import PackError, PackIssue

STATUSES = ("active", "shadow", "disabled")
ACTIONS = ("dispatch", "hard", "emergency_release")
REQUIRED = ("id", "title", "expression", "lane", "severity", "status", "owner", "version", "reason")
OPTIONAL = ("description", "scope", "action", "examples")
EXAMPLE_FIELDS = ("name", "hit", "facts")
MAX_RULES = 1000
# Limits checked before anything is composed or compiled, so a hostile pack costs little whatever its shape:
MAX_PACK_BYTES = 256 * 1024  # the pack text (UTF-8)
MAX_YAML_NODES = 40_000  # scalars, mappings and sequences of the whole pack
MAX_YAML_DEPTH = 10  # pack > rules > rule > examples > example > facts > list value needs 7
MAX_EXAMPLES = 20  # per rule
MAX_EXPRESSION_TEXT = 96 * 1024  # the expressions of the whole pack together
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_BAD_CHAR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Example:
    """Facts a rule must hit (``hit: true``) or must not hit; facts not given are the neutral ones."""

    name: str
    hit: bool
    facts: tuple[tuple[str, Any], ...]  # list values as tuples (a Rule stays hashable)
    line: int = 0

    def bindings(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(NEUTRAL)
        out["missing"] = []
        for k, v in self.facts:
            out[k] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    expression: str
    lane: str
    severity: str
    status: str
    owner: str
    version: int
    reason: str
    description: str = ""
    scope: str = "global"
    action: str = "dispatch"
    line: int = 0
    text_line: int = 0  # file line of the expression's first text line when it is a literal block (|)
    examples: tuple[Example, ...] = ()


@dataclass(frozen=True)
class RulePack:
    name: str
    version: int
    rules: tuple[Rule, ...]
    source: str = ""
    path: str = ""


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _too_big(text: str) -> int:
    """0, or the line where the pack crosses MAX_PACK_BYTES (UTF-8)."""
    if len(text) <= MAX_PACK_BYTES // 4:  # at most 4 bytes a character: cannot be too big
        return 0
    size = len(text.encode("utf-8", "surrogatepass"))
    if size <= MAX_PACK_BYTES:
        return 0
    cut = len(text.encode("utf-8", "surrogatepass")[:MAX_PACK_BYTES].decode("utf-8", "ignore"))
    return _line_at(text, cut)


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Refused(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


_MAYBE_TYPED = frozenset("0123456789+-.~nNtTfFyYoO=<")  # plain scalars that may resolve to a non-string


def _compose(text: str) -> Any:
    """The YAML text as plain data, read from the event stream with each mapping's and each key's line kept
    (``__line__``, ``__line__KEY``, ``__text__KEY`` for a literal block). Anchors, aliases and tags are
    refused as they arrive (an alias bomb is never expanded), and so is a pack with more than
    MAX_YAML_NODES nodes, nesting deeper than MAX_YAML_DEPTH, duplicate keys, or more than one document."""
    loader = _Loader(text)
    scalar, mapping = yaml.ScalarEvent, yaml.MappingStartEvent
    ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    try:
        root: Any = None
        # open containers: [dict, pending key or None] or [list, None]
        stack: list[list[Any]] = []
        nodes = docs = 0
        while True:
            ev = loader.get_event()
            kind = type(ev)
            if ev is None or kind is yaml.StreamEndEvent:
                return root
            if kind is yaml.DocumentStartEvent:
                docs += 1
                if docs > 1:
                    raise _Refused(
                        ev.start_mark.line + 1, "a pack is one YAML document (remove the second '---')"
                    )
                continue
            if kind is yaml.StreamStartEvent or kind is yaml.DocumentEndEvent:
                continue
            if kind in ends:
                value = stack.pop()[0]
            else:
                line = ev.start_mark.line + 1
                if kind is yaml.AliasEvent or ev.anchor is not None:
                    raise _Refused(line, "YAML anchors and aliases (&, *) are not allowed in a rule pack")
                if ev.tag is not None:
                    raise _Refused(line, f"YAML tags ({ev.tag}) are not allowed in a rule pack")
                nodes += 1
                if nodes > MAX_YAML_NODES:
                    raise _Refused(line, f"more than {MAX_YAML_NODES} YAML nodes: a pack is not this big")
                top = stack[-1] if stack else None
                is_key = top is not None and top[1] is None and type(top[0]) is dict
                if kind is scalar:
                    raw = ev.value
                    if is_key:
                        assert top is not None
                        if raw.startswith("__"):
                            raise _Refused(line, f"key {raw!r}: keys starting with '__' are reserved")
                        if raw in top[0]:
                            first = top[0][f"__line__{raw}"]
                            raise _Refused(line, f"duplicate key {raw!r} (first at line {first})")
                        top[1] = raw
                        top[0][f"__line__{raw}"] = line
                        continue
                    if ev.style or (raw and raw[0] not in _MAYBE_TYPED):
                        value = raw  # quoted, a block, or plain text that no implicit type matches
                        if ev.style == "|" and top is not None and type(top[0]) is dict:
                            top[0][f"__text__{top[1]}"] = line + 1  # a literal block's text starts below
                    else:
                        tag = loader.resolve(yaml.ScalarNode, raw, ev.implicit)
                        value = loader.yaml_constructors[tag](loader, yaml.ScalarNode(tag, raw, None, None))
                else:
                    if is_key:
                        raise _Refused(line, "a mapping key must be plain text")
                    if len(stack) >= MAX_YAML_DEPTH:
                        raise _Refused(line, f"YAML nested deeper than {MAX_YAML_DEPTH} levels")
                    stack.append([{"__line__": line}, None] if kind is mapping else [[], None])
                    continue
            if not stack:
                root = value
            else:
                top = stack[-1]
                if type(top[0]) is list:
                    top[0].append(value)
                else:
                    top[0][top[1]] = value
                    top[1] = None
    finally:
        loader.dispose()


def _yaml_error(exc: yaml.YAMLError, text: str) -> tuple[int, str]:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        where = f" {context}" if context else ""
        return mark.line + 1, f"not valid YAML: {problem}{where} (column {mark.column + 1})"
    pos = getattr(exc, "position", None)
    return (_line_at(text, pos) if isinstance(pos, int) else 1), f"not valid YAML: {exc}"


def _read(text: Any, path: str) -> dict[str, Any]:
    """The pack text as data, every limit checked before the text is parsed."""
    if not isinstance(text, str):
        raise PackError([PackIssue(path, 1, "", "a pack is text (YAML)")])
    over = _too_big(text)
    if over:
        raise PackError(
            [PackIssue(path, over, "", f"pack larger than {MAX_PACK_BYTES // 1024} KiB: split it")]
        )
    bad = _BAD_CHAR.search(text)
    if bad:
        raise PackError(
            [
                PackIssue(
                    path,
                    _line_at(text, bad.start()),
                    "",
                    f"character U+{ord(bad.group()):04X} is not allowed in a pack (binary data?)",
                )
            ]
        )
    try:
        data = _compose(text)
    except _Refused as exc:
        raise PackError([PackIssue(path, exc.line, "", exc.message)]) from None
    except yaml.YAMLError as exc:
        line, msg = _yaml_error(exc, text)
        raise PackError([PackIssue(path, line, "", msg)]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # a scalar no type can hold
        raise PackError([PackIssue(path, 1, "", f"not a valid pack: {exc}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PackError([PackIssue(path, 1, "", "a pack is a mapping with name, version and rules")])
    return data


def _fact_value(name: str, value: Any) -> tuple[Any, str]:
    """An example's fact value in the declared type (ints accepted for doubles), or an error message."""
    t = FACT_TYPES[name]
    if t == "bool":
        return value, "" if type(value) is bool else f"fact '{name}' is a bool (true/false), not {value!r}"
    if t == "int":
        if type(value) is not int:
            return value, f"fact '{name}' is an int, not {value!r}"
        if not INT_MIN <= value <= INT_MAX:
            return value, f"fact '{name}' is out of the 64-bit int range"
        return value, ""
    if t == "double":
        if type(value) is int and INT_MIN <= value <= INT_MAX:
            return float(value), ""
        return value, "" if type(value) is float else f"fact '{name}' is a number (double), not {value!r}"
    if t == "string":
        if type(value) is not str:
            return value, f"fact '{name}' is a string, not {value!r} (quote it: \"{value}\")"
        return value, ""
    if type(value) is not list or any(type(x) is not str for x in value):
        return value, f"fact '{name}' is a list of strings, not {value!r}"
    return tuple(value), ""


def _examples(raw: Any, rule_line: int, path: str, rid: str, issues: list[PackIssue]) -> tuple[Example, ...]:
    if not isinstance(raw, list):
        issues.append(PackIssue(path, rule_line, rid, "'examples' must be a list of {name, hit, facts}"))
        return ()
    if len(raw) > MAX_EXAMPLES:
        issues.append(PackIssue(path, rule_line, rid, f"more than {MAX_EXAMPLES} examples"))
        return ()
    out = []
    names: dict[str, int] = {}
    for ex in raw:
        if not isinstance(ex, dict):
            issues.append(PackIssue(path, rule_line, rid, "each example is a mapping {name, hit, facts}"))
            continue
        line: int = ex["__line__"]
        before = len(issues)
        for k in ex:
            if not k.startswith("__") and k not in EXAMPLE_FIELDS:
                issues.append(
                    PackIssue(
                        path, ex[f"__line__{k}"], rid, f"example: unknown field '{k}' (name, hit, facts)"
                    )
                )
        name = ex.get("name")
        if not isinstance(name, str) or not name:
            issues.append(PackIssue(path, line, rid, "example: 'name' must be a non-empty string"))
            name = ""
        elif name in names:
            issues.append(
                PackIssue(path, line, rid, f"example '{name}': duplicate name (line {names[name]})")
            )
        names.setdefault(name, line)
        hit = ex.get("hit")
        if type(hit) is not bool:
            issues.append(
                PackIssue(
                    path, ex.get("__line__hit") or line, rid, f"example '{name}': 'hit' is true or false"
                )
            )
        facts_raw = ex.get("facts", {"__line__": line})
        facts: list[tuple[str, Any]] = []
        if not isinstance(facts_raw, dict):
            issues.append(
                PackIssue(
                    path, ex.get("__line__facts") or line, rid, f"example '{name}': 'facts' is a mapping"
                )
            )
            facts_raw = {}
        for k, v in facts_raw.items():
            if k.startswith("__"):
                continue
            at = facts_raw[f"__line__{k}"]
            if k not in FACT_TYPES:
                close = difflib.get_close_matches(k, FACT_TYPES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else " (facts: features/schema.py)"
                issues.append(PackIssue(path, at, rid, f"example '{name}': unknown fact '{k}'{hint}"))
                continue
            value, problem = _fact_value(k, v)
            if problem:
                issues.append(PackIssue(path, at, rid, f"example '{name}': {problem}"))
            facts.append((k, value))
        if len(issues) == before:
            out.append(Example(name, bool(hit), tuple(facts), line))
    return tuple(out)


def parse_pack(text: str, path: str = "<pack>") -> RulePack:
    """Parse and validate a pack (limits first, then schema, enums, unique ids, examples, expressions
    type-checked against the facts). Every problem is a PackError with file:line; nothing else escapes."""
    try:
        return _parse_pack(text, str(path))
    except PackError:
        raise
    except Exception as exc:  # a validator bug must still be a clean, located refusal
        raise PackError(
            [PackIssue(str(path), 1, "", f"cannot validate the pack: {type(exc).__name__}: {exc}")]
        ) from None


def _parse_pack(text: str, path: str) -> RulePack:
    issues: list[PackIssue] = []
    data = _read(text, path)
    name, version, raw_rules = _header(data, path, issues)
    rules: list[Rule] = []
    to_check: list[Rule] = []  # every rule with an expression is type-checked, valid fields or not
    seen: dict[str, int] = {}
    for r in raw_rules:
        if not isinstance(r, dict):
            issues.append(PackIssue(path, data["__line__rules"], "", "each rule is a mapping"))
            continue
        rid: str = r["id"] if isinstance(r.get("id"), str) else ""
        line = r["__line__"]
        before = len(issues)
        _check_fields(r, rid, line, seen, path, issues)
        examples = (
            _examples(r["examples"], r["__line__examples"], path, rid, issues) if "examples" in r else ()
        )
        if len(issues) != before and isinstance(r.get("expression"), str):
            to_check.append(_expression_only(r, rid, line))
        if len(issues) == before:
            rules.append(_rule(r, rid, line, examples))
    total = sum(len(r.expression) for r in rules + to_check)
    if total > MAX_EXPRESSION_TEXT:
        issues.append(
            PackIssue(
                path,
                data["__line__rules"],
                "",
                f"{total} characters of expressions: more than {MAX_EXPRESSION_TEXT // 1024} KiB in one pack",
            )
        )
        raise PackError(issues)
    issues += check_rules(rules + to_check, path)
    if issues:
        raise PackError(issues)
    return RulePack(str(name), int(version), tuple(rules), text, path)


def _header(data: dict[str, Any], path: str, issues: list[PackIssue]) -> tuple[Any, Any, list[Any]]:
    """The pack's name, version and list of rules; a missing, empty or oversized list ends the parse."""
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not name:
        issues.append(
            PackIssue(path, data.get("__line__name", 1), "", "pack 'name' must be a non-empty string")
        )
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= INT_MAX:
        issues.append(
            PackIssue(
                path, data.get("__line__version", 1), "", f"pack 'version' must be an integer 1..{INT_MAX}"
            )
        )
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        issues.append(PackIssue(path, data.get("__line__rules", 1), "", "'rules' must be a non-empty list"))
        raise PackError(issues)
    if len(raw_rules) > MAX_RULES:
        issues.append(
            PackIssue(path, data["__line__rules"], "", f"more than {MAX_RULES} rules: split the pack")
        )
        raise PackError(issues)
    return name, version, raw_rules


def _check_fields(
    r: dict[str, Any], rid: str, line: int, seen: dict[str, int], path: str, issues: list[PackIssue]
) -> None:
    """The problems of one rule's fields (presence, names, enums, types), each at its own line."""

    def bad(key: str, msg: str) -> None:
        issues.append(PackIssue(path, r.get(f"__line__{key}", line), rid, msg))

    for key in REQUIRED:
        if key not in r:
            bad(key, f"missing '{key}'")
    if "id" in r and (not isinstance(r["id"], str) or not r["id"]):
        bad("id", "rule id must be non-empty text: quote an id YAML reads as a number, true/false or null")
    unknown = [k for k in r if not k.startswith("__") and k not in REQUIRED + OPTIONAL]
    for k in unknown:
        bad(k, f"unknown field '{k}' (allowed: {', '.join(REQUIRED + OPTIONAL)})")
    if rid:
        if rid in seen:
            bad("id", f"duplicate rule id (first at line {seen[rid]})")
        seen.setdefault(rid, line)
        if not rid.replace("_", "").replace("-", "").isalnum():
            bad("id", "rule id: letters, digits, '_' and '-' only")
    if "lane" in r and (not isinstance(r["lane"], str) or r["lane"] not in LANE_SET):
        bad("lane", f"lane {r['lane']!r} must be one of {sorted(LANE_SET)}")
    if "severity" in r and (not isinstance(r["severity"], str) or r["severity"] not in SEVERITIES):
        bad("severity", f"severity {r['severity']!r} must be one of {list(SEVERITIES)}")
    if "status" in r and (not isinstance(r["status"], str) or r["status"] not in STATUSES):
        bad("status", f"status {r['status']!r} must be one of {list(STATUSES)}")
    if not isinstance(r.get("action", "dispatch"), str) or r.get("action", "dispatch") not in ACTIONS:
        bad("action", f"action {r['action']!r} must be one of {list(ACTIONS)}")
    v = r.get("version", 0)
    if not isinstance(v, int) or isinstance(v, bool) or not INT_MIN <= v <= INT_MAX:
        bad("version", "rule version must be a 64-bit integer")
    for key in ("title", "expression", "owner", "reason", "description", "scope"):
        if key in r and not isinstance(r[key], str):
            bad(key, f"'{key}' must be a string")
    if isinstance(r.get("scope"), str) and not re.fullmatch(r"global|[A-Za-z0-9_-]{1,32}", r["scope"]):
        bad("scope", "scope is 'global' or a site code (letters, digits, '_' and '-', up to 32)")


def _expression_only(r: dict[str, Any], rid: str, line: int) -> Rule:
    """A rule with bad fields, kept only so its expression and reason are type-checked too."""
    reason = r["reason"] if isinstance(r.get("reason"), str) else ""
    return Rule(
        rid,
        "",
        r["expression"],
        "release",
        "low",
        "disabled",
        "",
        0,
        reason,
        line=int(r.get("__line__expression") or line),
        text_line=int(r.get("__text__expression") or 0),
    )


def _rule(r: dict[str, Any], rid: str, line: int, examples: tuple[Example, ...]) -> Rule:
    return Rule(
        rid,
        r["title"],
        r["expression"],
        r["lane"],
        r["severity"],
        r["status"],
        r["owner"],
        r["version"],
        r["reason"],
        r.get("description", ""),
        str(r.get("scope", "global")),
        r.get("action", "dispatch"),
        int(r.get("__line__expression") or line),
        int(r.get("__text__expression") or 0),
        examples,
    )


def read_pack_text(path: str | Path) -> str:
    """A pack file's text: at most MAX_PACK_BYTES are read, and it must be UTF-8."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_PACK_BYTES + 1)
    except OSError as exc:
        raise PackError([PackIssue(str(p), 0, "", f"cannot read the pack: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_PACK_BYTES:
        line = raw.count(b"\n", 0, MAX_PACK_BYTES) + 1
        raise PackError(
            [PackIssue(str(p), line, "", f"pack larger than {MAX_PACK_BYTES // 1024} KiB: split it")]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise PackError(
            [PackIssue(str(p), line, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x}): is this a pack?")]
        ) from None


def load_pack(path: str | Path) -> RulePack:
    return parse_pack(read_pack_text(path), str(path))


def pack_to_bytes(pack: RulePack, previous: dict[str, Any] | None = None) -> bytes:
    """The pack as published on the rule-packs topic: name, version, the full YAML source, and the pack it
    replaces (``previous``: name, version, source, path), so a rollback works after log compaction too."""
    body: dict[str, Any] = {
        "name": pack.name,
        "version": pack.version,
        "source": pack.source,
        "path": pack.path,
    }
    if previous is not None:
        body["previous"] = {k: previous.get(k) for k in ("name", "version", "source", "path")}
    return orjson.dumps(body)


def pack_from_bytes(raw: bytes) -> RulePack:
    """A pack published on the rule-packs topic, validated again before it is used."""
    if not isinstance(raw, (bytes, bytearray, memoryview, str)):
        raise PackError([PackIssue("<published>", 0, "", "not a published pack: an empty record")])
    if len(raw) > 8 * MAX_PACK_BYTES:  # JSON escapes at most ~6 bytes a source byte
        raise PackError([PackIssue("<published>", 0, "", "not a published pack: too large")])
    try:
        d = orjson.loads(raw)
        source = d["source"]
        if not isinstance(source, str):
            raise TypeError("source is not a string")
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
        raise PackError([PackIssue("<published>", 0, "", f"not a published pack: {exc}")]) from None
    where = d.get("path")
    return parse_pack(
        source, where if isinstance(where, str) and where else f"<published v{d.get('version')}>"
    )


def with_version(pack: RulePack, version: int) -> RulePack:
    """The same rules under another pack version (the top-level ``version:`` line of the source rewritten)."""
    text, n = re.subn(r"^version:[^\n]*$", f"version: {version}", pack.source, count=1, flags=re.M)
    if n != 1:
        raise PackError([PackIssue(pack.path, 0, "", "no top-level 'version:' line to rewrite")])
    return parse_pack(text, pack.path)
