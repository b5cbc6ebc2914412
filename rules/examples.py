"""Rule examples: facts a rule must hit and facts it must not; `bukong rules test` and `rules check` run them.

::

    examples:
      - name: 20% over the declared weight
        hit: true
        facts: {weigh_present: true, weigh_excess_ratio: 0.2}
      - name: within weighbridge noise
        hit: false
        facts: {weigh_present: true, weigh_excess_ratio: 0.004}

Facts an example does not give are the neutral facts (features/schema.py ``NEUTRAL``). A site-scoped rule hits
only when the example's ``port`` is its site, as in the stream. Each example runs on the reference CEL runtime
and on the fast path; a failure names the rule, the example and the example's file:line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rules.cel import Refused, tokenize
from rules.engine import CompiledPack, _Compiled
from rules.pack import Example, PackIssue, Rule, RulePack


@dataclass(frozen=True)
class ExampleReport:
    run: int  # examples run
    failures: list[PackIssue]
    without_examples: list[str]  # ids of rules (not disabled) that have none


def _shown(facts: dict[str, Any], names: list[str]) -> str:
    return ", ".join(f"{n}={facts[n]!r}" for n in names if n in facts)


def _read_by(rule: Rule, names: list[str]) -> list[str]:
    """The facts the expression itself reads (not the ones only its reason text shows)."""
    try:
        idents = {t.text for t in tokenize(rule.expression) if t.kind == "ident"}
    except Refused:
        return names
    return [n for n in names if n in idents]


def _check(c: _Compiled, rule: Rule, ex: Example, path: str) -> PackIssue | None:
    facts = ex.bindings()
    errors_before = c.errors
    fast, reference = c.fast_and_reference(facts)
    error = c.last_error if c.errors != errors_before else ""
    c.errors = (
        errors_before  # examples are not evaluations of the stream: the error counters stay as they were
    )
    where = f"example '{ex.name}'"
    if fast is not None and fast != reference:
        return PackIssue(
            path,
            ex.line,
            rule.id,
            f"{where}: the fast path says {fast}, the CEL runtime says {reference}: please report this "
            "(the rule runs on the CEL runtime until it is fixed)",
        )
    in_scope = rule.scope == "global" or facts.get("port") == rule.scope
    got = reference and in_scope
    if got == ex.hit:
        return None
    reads = _shown(facts, _read_by(rule, c.names))
    if ex.hit and reference and not in_scope:
        why = f"the rule is scoped to site {rule.scope} and the example's port is {facts.get('port')!r}"
    elif error:
        why = f"evaluation error: {error}"
    else:
        why = f"facts the rule reads: {reads}" if reads else "the rule reads no fact"
    want, was = ("a hit", "no hit") if ex.hit else ("no hit", "a hit")
    return PackIssue(path, ex.line, rule.id, f"{where}: expected {want}, got {was} ({why})")


def run_examples(pack: RulePack, compiled: CompiledPack | None = None) -> ExampleReport:
    """Run every example of every rule of a valid pack (disabled rules included: their examples still say
    what they would do). Never raises."""
    by_id = {c.rule.id: c for c in compiled.rules} if compiled is not None else {}
    failures: list[PackIssue] = []
    run = 0
    path = pack.path or "<pack>"
    for rule in pack.rules:
        if not rule.examples:
            continue
        c = by_id.get(rule.id)
        if c is None:
            try:
                c = _Compiled(rule)
            except Exception as exc:  # parse_pack compiled it already; a pack built in code may not
                failures.append(PackIssue(path, rule.line, rule.id, f"does not compile: {exc}"))
                continue
        for ex in rule.examples:
            run += 1
            issue = _check(c, rule, ex, path)
            if issue is not None:
                failures.append(issue)
    missing = [r.id for r in pack.rules if r.status != "disabled" and not r.examples]
    return ExampleReport(run, failures, missing)
