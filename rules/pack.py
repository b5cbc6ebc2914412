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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from pipeline.contracts import LANE_SET, SEVERITIES

STATUSES = ("active", "shadow", "disabled")
ACTIONS = ("dispatch", "hard", "emergency_release")
REQUIRED = ("id", "title", "expression", "lane", "severity", "status", "owner", "version", "reason")
OPTIONAL = ("description", "scope", "action")
MAX_RULES = 1000


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


@dataclass(frozen=True)
class RulePack:
    name: str
    version: int
    rules: tuple[Rule, ...]
    source: str = ""
    path: str = ""


@dataclass(frozen=True)
class PackIssue:
    file: str
    line: int
    rule_id: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule_id or '-'}: {self.message}"


@dataclass
class PackError(Exception):
    issues: list[PackIssue] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)


def _lines(node: yaml.Node) -> Any:
    """A YAML node as plain data, with each mapping's and each key's line kept (1-based)."""
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {"__line__": node.start_mark.line + 1}
        for k, v in node.value:
            out[str(k.value)] = _lines(v)
            out[f"__line__{k.value}"] = k.start_mark.line + 1
            if isinstance(v, yaml.ScalarNode) and v.style == "|":  # a literal block: text starts a line below
                out[f"__text__{k.value}"] = v.start_mark.line + 2
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_lines(v) for v in node.value]
    return yaml.safe_load(yaml.serialize(node))


def parse_pack(text: str, path: str = "<pack>") -> RulePack:
    """Parse and validate a pack (schema, enums, unique ids, expressions type-checked against the facts)."""
    issues: list[PackIssue] = []
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PackError(
            [PackIssue(path, (mark.line + 1) if mark else 0, "", f"not valid YAML: {exc}")]
        ) from None
    data = _lines(root) if root is not None else {}
    if not isinstance(data, dict):
        raise PackError([PackIssue(path, 1, "", "a pack is a mapping with name, version and rules")])
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not name:
        issues.append(
            PackIssue(path, data.get("__line__name", 1), "", "pack 'name' must be a non-empty string")
        )
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        issues.append(
            PackIssue(path, data.get("__line__version", 1), "", "pack 'version' must be an integer >= 1")
        )
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        issues.append(PackIssue(path, data.get("__line__rules", 1), "", "'rules' must be a non-empty list"))
        raise PackError(issues)
    if len(raw_rules) > MAX_RULES:
        issues.append(PackIssue(path, data["__line__rules"], "", f"more than {MAX_RULES} rules"))
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

        def bad(key: str, msg: str, r: dict[str, Any] = r, rid: str = rid, line: int = line) -> None:
            issues.append(PackIssue(path, r.get(f"__line__{key}", line), rid, msg))

        for key in REQUIRED:
            if key not in r:
                bad(key, f"missing '{key}'")
        unknown = [k for k in r if not k.startswith("__") and k not in REQUIRED + OPTIONAL]
        for k in unknown:
            bad(k, f"unknown field '{k}' (allowed: {', '.join(REQUIRED + OPTIONAL)})")
        if rid:
            if rid in seen:
                bad("id", f"duplicate rule id (first at line {seen[rid]})")
            seen.setdefault(rid, line)
            if not rid.replace("_", "").replace("-", "").isalnum():
                bad("id", "rule id: letters, digits, '_' and '-' only")
        if "lane" in r and r["lane"] not in LANE_SET:
            bad("lane", f"lane {r['lane']!r} must be one of {sorted(LANE_SET)}")
        if "severity" in r and r["severity"] not in SEVERITIES:
            bad("severity", f"severity {r['severity']!r} must be one of {list(SEVERITIES)}")
        if "status" in r and r["status"] not in STATUSES:
            bad("status", f"status {r['status']!r} must be one of {list(STATUSES)}")
        if r.get("action", "dispatch") not in ACTIONS:
            bad("action", f"action {r['action']!r} must be one of {list(ACTIONS)}")
        if "version" in r and (not isinstance(r["version"], int) or isinstance(r["version"], bool)):
            bad("version", "rule version must be an integer")
        for key in ("title", "expression", "owner", "reason"):
            if key in r and not isinstance(r[key], str):
                bad(key, f"'{key}' must be a string")
        if len(issues) != before and isinstance(r.get("expression"), str):
            to_check.append(
                Rule(
                    rid,
                    "",
                    r["expression"],
                    "release",
                    "low",
                    "disabled",
                    "",
                    0,
                    r["reason"] if isinstance(r.get("reason"), str) else "",
                    line=int(r.get("__line__expression") or line),
                    text_line=int(r.get("__text__expression") or 0),
                )
            )
        if len(issues) == before:
            rules.append(
                Rule(
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
                )
            )
    from rules.check import check_rules

    issues += check_rules(rules + to_check, path)
    if issues:
        raise PackError(issues)
    return RulePack(str(name), int(version), tuple(rules), text, path)  # type: ignore[arg-type]


def load_pack(path: str | Path) -> RulePack:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise PackError([PackIssue(str(p), 0, "", f"cannot read the pack: {exc}")]) from None
    return parse_pack(text, str(p))


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
    try:
        d = orjson.loads(raw)
        source = d["source"]
        if not isinstance(source, str):
            raise TypeError("source is not a string")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise PackError([PackIssue("<published>", 0, "", f"not a published pack: {exc}")]) from None
    return parse_pack(source, d.get("path") or f"<published v{d.get('version')}>")


def with_version(pack: RulePack, version: int) -> RulePack:
    """The same rules under another pack version (the top-level ``version:`` line of the source rewritten)."""
    text, n = re.subn(r"^version:[^\n]*$", f"version: {version}", pack.source, count=1, flags=re.M)
    if n != 1:
        raise PackError([PackIssue(pack.path, 0, "", "no top-level 'version:' line to rewrite")])
    return parse_pack(text, pack.path)
