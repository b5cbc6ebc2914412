"""A compiled rule pack: each rule on the fast path when it can be, on the reference CEL runtime when not.

``CompiledPack.compile(pack).evaluate(facts)`` gives the hits of the active and shadow rules in scope (global
rules, and rules scoped to ``facts["port"]`` for instant targeting). A rule never answers differently on the
fast path: constructs the fast path refuses run on cel-expr-python, and so does any single evaluation whose
value combination it refuses at run time.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.schema import FACT_TYPES
from rules.cel import CelError, Refused, Unsupported, compile_cel, tokenize
from rules.check import compile_reference
from rules.pack import Rule, RulePack, load_pack

PACKS = Path(__file__).parent / "packs"


@dataclass(slots=True)
class RuleHit:
    rule_id: str
    lane: str
    severity: str
    status: str
    scope: str
    action: str
    reason: str
    evidence: dict[str, Any]


class _Compiled:
    __slots__ = ("errors", "fast", "names", "reference", "rule")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.reference = compile_reference(rule.expression)
        try:
            self.fast: Any = compile_cel(rule.expression, FACT_TYPES)
        except Refused:
            self.fast = None
        self.names = _facts_read(rule)
        self.errors = 0  # evaluations that ended in a CEL error (no hit): counted, never silent

    def matches(self, facts: dict[str, Any]) -> bool:
        if self.fast is not None:
            try:
                return self.fast(facts) is True
            except CelError:
                self.errors += 1
                return False  # an evaluation error is not a hit (and is the same on the reference)
            except (Unsupported, KeyError):
                pass
        return self.reference_matches(facts)

    def reference_matches(self, facts: dict[str, Any]) -> bool:
        try:
            value = self.reference.eval(data=facts).value()
        except (RuntimeError, TypeError, ValueError):  # an evaluation error, or a value CEL cannot take
            value = None
        if value is True:
            return True
        if value is not False:  # an error (some come back as a value: an unbound fact, ...)
            self.errors += 1
        return False

    def hit(self, facts: dict[str, Any]) -> RuleHit:
        r = self.rule
        evidence = {n: facts[n] for n in self.names if n in facts}
        try:
            text = r.reason.format_map(facts)
        except (KeyError, ValueError, IndexError, TypeError):
            text = r.reason
        return RuleHit(
            r.id,
            r.lane,
            r.severity,
            "active" if r.status == "active" else "shadow",
            r.scope,
            r.action,
            text,
            evidence,
        )


def _facts_read(rule: Rule) -> list[str]:
    """The facts a rule reads (identifiers of its expression) and the ones its reason text shows."""
    try:
        idents = {t.text for t in tokenize(rule.expression) if t.kind == "ident"}
    except Refused:
        idents = set(re.findall(r"[_a-zA-Z][_a-zA-Z0-9]*", rule.expression))
    try:
        idents |= {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(rule.reason) if f}
    except ValueError:
        pass
    return [n for n in FACT_TYPES if n in idents]


class CompiledPack:
    def __init__(self, pack: RulePack, rules: list[_Compiled]) -> None:
        self.pack = pack
        self.version = pack.version
        self.name = pack.name
        self.rules = rules
        self.global_rules = [r for r in rules if r.rule.scope == "global"]
        self.scoped: dict[str, list[_Compiled]] = {}
        for r in rules:
            if r.rule.scope != "global":
                self.scoped.setdefault(r.rule.scope, []).append(r)
        self.fast_count = sum(1 for r in rules if r.fast is not None)
        self._global_fast = [(r, r.fast) for r in self.global_rules]
        self._global_ids = tuple(r.rule.id for r in self.global_rules)
        self._scope_ids = {
            port: self._global_ids + tuple(r.rule.id for r in rs) for port, rs in self.scoped.items()
        }

    def in_scope(self, port: str) -> tuple[str, ...]:
        """The ids of the rules ``evaluate`` runs for a declaration at ``port`` (one tuple per port)."""
        return self._scope_ids.get(port, self._global_ids)

    @classmethod
    def compile(cls, pack: RulePack) -> CompiledPack:
        return cls(pack, [_Compiled(r) for r in pack.rules if r.status != "disabled"])

    def evaluate(self, facts: dict[str, Any]) -> list[RuleHit]:
        hits = []
        for r, fast in self._global_fast:
            if fast is not None:
                try:
                    if fast(facts) is True:
                        hits.append(r.hit(facts))
                    continue
                except CelError:  # an evaluation error is not a hit (the reference errs too)
                    r.errors += 1
                    continue
                except (Unsupported, KeyError):
                    pass  # refused at run time: this one evaluation runs on the reference
                if r.reference_matches(facts):
                    hits.append(r.hit(facts))
            elif r.reference_matches(facts):
                hits.append(r.hit(facts))
        port = facts.get("port")
        scoped = self.scoped.get(port) if type(port) is str else None
        if scoped:
            hits += [r.hit(facts) for r in scoped if r.matches(facts)]
        return hits

    def errors(self) -> dict[str, int]:
        """Evaluations per rule that ended in a CEL error (a missing or mistyped fact, the iteration budget
        of the reference runtime...): no hit, and counted here for the metrics."""
        return {r.rule.id: r.errors for r in self.rules if r.errors}

    @property
    def rule_ids(self) -> list[str]:
        return [r.rule.id for r in self.rules]


def load_default_pack(path: str | Path | None = None) -> CompiledPack:
    return CompiledPack.compile(load_pack(path or PACKS / "starter.yaml"))
