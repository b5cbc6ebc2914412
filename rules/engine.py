"""A compiled rule pack: each rule on the fast path when it can be, on the reference CEL runtime when not.

``CompiledPack.compile(pack).evaluate(facts)`` gives the hits of the active and shadow rules in scope (global
rules, and rules scoped to ``facts["port"]`` for instant targeting). A rule never answers differently on the
fast path: constructs the fast path refuses run on cel-expr-python, and so does any single evaluation whose
value combination it refuses at run time.
"""

from __future__ import annotations

import re
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.schema import FACT_TYPES, NEUTRAL
from pipeline.contracts.settings import DEFAULT_RULE_PACK
from rules.cel import CelError, Refused, bad_text, compile_cel, tokenize
from rules.check import compile_reference, scan_expression
from rules.pack import PackError, PackIssue, Rule, RulePack, load_pack

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


# Stands for a fact the reference runtime would not read faithfully (text with NUL, which it cuts, or an
# unpaired surrogate, on which it fails the whole evaluation): it reads this as a value of the wrong type, an
# evaluation error at the access ("Unexpected value type for 'purpose': text_with_NUL_or_unpaired_surrogate"),
# exactly what the fast path gives (rules/cel/values.py ``bad_text``).
_INVALID = type("text_with_NUL_or_unpaired_surrogate", (), {"__slots__": ()})()


def _for_reference(facts: dict[str, Any]) -> dict[str, Any]:
    """The facts as the reference runtime may see them (the same dict when nothing needs replacing)."""
    out = None
    for k, v in facts.items():
        t = type(v)
        if (t is str and bad_text(v)) or (t is list and any(type(x) is str and bad_text(x) for x in v)):
            if out is None:
                out = dict(facts)
            out[k] = _INVALID
    return facts if out is None else out


class _Compiled:
    __slots__ = ("errors", "fast", "last_error", "names", "reference", "rule")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        problem = scan_expression(rule.expression)
        if problem:
            raise ValueError(problem)
        self.reference = compile_reference(rule.expression)
        try:
            self.fast: Any = compile_cel(rule.expression, FACT_TYPES)
        except (Refused, RecursionError, MemoryError, OverflowError, ValueError):
            self.fast = None
        self.names = _facts_read(rule)
        self.errors = 0  # evaluations that ended in a CEL error (no hit): counted, never silent
        self.last_error = ""

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message[:300]

    def matches(self, facts: dict[str, Any]) -> bool:
        """Whether the rule hits these facts (its scope aside); never raises."""
        if self.fast is not None:
            try:
                return self.fast(facts) is True
            except CelError as exc:
                self.error(str(exc))
                return False  # an evaluation error is not a hit (and is the same on the reference)
            except Exception:  # Unsupported, a missing fact, or anything unforeseen: the reference decides
                pass
        return self.reference_matches(facts)

    def reference_matches(self, facts: dict[str, Any]) -> bool:
        try:
            result = self.reference.eval(data=_for_reference(facts))
            value = result.value()
        except Exception as exc:  # the reference fails a whole evaluation on some inputs: an error, no hit
            self.error(f"{type(exc).__name__}: {exc}")
            return False
        if value is True:
            return True
        if value is not False:  # an error value (an unbound fact, a value of the wrong type, overflow ...)
            self.error(str(value))
        return False

    def fast_and_reference(self, facts: dict[str, Any]) -> tuple[bool | None, bool]:
        """Both answers, for examples and tests: (fast path or None when it refuses, reference)."""
        fast: bool | None = None
        if self.fast is not None:
            try:
                fast = self.fast(facts) is True
            except CelError:
                fast = False
            except Exception:
                fast = None
        return fast, self.reference_matches(facts)

    def hit(self, facts: dict[str, Any]) -> RuleHit:
        r = self.rule
        evidence = {n: facts[n] for n in self.names if n in facts}
        try:
            text = r.reason.format_map(facts)
        except Exception:  # a fact missing or of the wrong type, a number too big to format ...
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


# What a rule on the reference runtime (macros) may cost per declaration, measured when the pack compiles:
# a comprehension inside a comprehension over long lists passes every text limit and the runtime's iteration
# budget, yet takes tens of milliseconds a declaration, and a pack of them would stall every worker.
PROBE_RULE_MS = 1.0  # one evaluation of one rule on the largest facts (CPU); a macro over `missing` ~0.03
PROBE_PACK_MS = 5.0  # all of a pack's reference-path rules on one declaration


def largest_facts() -> dict[str, Any]:
    """The neutral facts with every text at its longest (256 characters, the contract's longest free text)
    and the list of missing parts full: what makes a comprehension or a string function cost the most."""
    facts: dict[str, Any] = dict(NEUTRAL)
    for name, t in FACT_TYPES.items():
        if t == "string":
            facts[name] = "x" * 256
        elif t == "list(string)":
            facts[name] = ["weighbridge", "gate_in", "manifest", "track"] * 2
    return facts


def _cost_ms(rule: _Compiled, facts: dict[str, Any]) -> float:
    """The CPU milliseconds of one evaluation on the reference runtime (the least of three; one when the
    first is already far over the limit)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        try:
            rule.reference.eval(data=facts).value()
        except Exception:  # an evaluation error costs what it cost: only the time matters here
            pass
        best = min(best, (time.process_time() - t0) * 1000)
        if best > 10 * PROBE_RULE_MS:
            break
    return best


def _cost_issues(pack: RulePack, rules: list[_Compiled]) -> list[PackIssue]:
    """A rule, or the pack's reference-path rules together, over their cost limits."""
    slow = [r for r in rules if r.fast is None]
    if not slow:
        return []
    facts = largest_facts()
    costs: list[tuple[_Compiled, float]] = []
    for r in slow:  # probing stops once the pack is over ten times its limit: a hostile pack of a thousand
        costs.append((r, _cost_ms(r, facts)))  # runaway rules is refused in a fraction of a second
        if sum(ms for _, ms in costs) > 10 * PROBE_PACK_MS:
            break
    where = pack.path or "<pack>"
    issues = [
        PackIssue(
            where,
            r.rule.line,
            r.rule.id,
            f"costs {ms:.1f} ms a declaration on the largest facts (limit {PROBE_RULE_MS:g} ms): avoid a "
            "comprehension inside a comprehension, and long literal lists in macros",
        )
        for r, ms in costs
        if ms > PROBE_RULE_MS
    ]
    total = sum(ms for _, ms in costs)
    if not issues and total > PROBE_PACK_MS:
        issues.append(
            PackIssue(
                where,
                1,
                "",
                f"the pack's {len(slow)} rules with macros cost {total:.1f} ms a declaration together (limit "
                f"{PROBE_PACK_MS:g} ms): fewer macros, or macros over shorter lists",
            )
        )
    return issues


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
        """Compile every rule that is not disabled. A rule that does not compile is a PackError naming it
        with file:line; nothing else escapes (a pack built in code skipped parse_pack's checks)."""
        compiled, issues = [], []
        for r in pack.rules:
            if r.status == "disabled":
                continue
            try:
                compiled.append(_Compiled(r))
            except Exception as exc:  # ValueError from the checker, RecursionError, MemoryError ...
                issues.append(PackIssue(pack.path or "<pack>", r.line, r.id, f"does not compile: {exc}"))
        issues += _cost_issues(pack, compiled)
        if issues:
            raise PackError(issues)
        return cls(pack, compiled)

    def evaluate(self, facts: dict[str, Any]) -> list[RuleHit]:
        """The hits of the rules in scope. Never raises: an evaluation error is counted for its rule."""
        hits = []
        for r, fast in self._global_fast:
            if fast is not None:
                try:
                    if fast(facts) is True:
                        hits.append(r.hit(facts))
                    continue
                except CelError as exc:  # an evaluation error is not a hit (the reference errs too)
                    r.error(str(exc))
                    continue
                except Exception:  # Unsupported, a missing fact, anything unforeseen: the reference decides
                    pass
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

    def last_errors(self) -> dict[str, str]:
        """The message of the last evaluation error per rule (for the rules that had one)."""
        return {r.rule.id: r.last_error for r in self.rules if r.errors}

    @property
    def rule_ids(self) -> list[str]:
        return [r.rule.id for r in self.rules]


def load_default_pack(path: str | Path | None = None) -> CompiledPack:
    return CompiledPack.compile(load_pack(path or DEFAULT_RULE_PACK))
