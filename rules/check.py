"""Type-check rules with the reference CEL implementation (cel-expr-python) against the fact schema.

Syntax errors (with line:col and a caret), undeclared names (a typo like ``unit_pric`` is an error, never a
silent null), type mismatches and non-bool results are reported per rule; so are reason placeholders that
name no fact.
"""

from __future__ import annotations

import difflib
import re
import string
from functools import cache, lru_cache
from typing import Any

from features.schema import FACT_TYPES, NEUTRAL
from rules.issues import PackIssue

MAX_EXPRESSION = 4096  # characters of one expression
MAX_STRING_LITERAL = 1024  # characters of one string literal (between its quotes)
MAX_NESTING = 32  # brackets ( [ { inside one another (the reference parser's own limit is 32 too)
MAX_UNARY_RUN = 8  # ! or - in a row
MAX_OPERATOR_CHAIN = 31  # binary operators other than && and || in a row (the reference parser takes 31)
MAX_REASON = 1000

_SCAN = re.compile(
    r"""(?P<str>[rRbB]{0,2}(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))
      |(?P<open>[(\[{])|(?P<close>[)\]}])|(?P<logic>&&|\|\||[?:,])
      |(?P<binop>==|!=|<=|>=|[<>+*/%]|\bin\b)|(?P<bang>!)|(?P<minus>-)|(?P<ws>\s+)
      |(?P<operand>[A-Za-z0-9_.]+|.)""",
    re.X,
)


def scan_expression(expression: str) -> str:
    """The limits of an expression, checked in one linear pass before any parser sees it: '' or the problem.
    (A deep or long expression would otherwise cost the reference compiler, and the fast path, their time.)"""
    if len(expression) > MAX_EXPRESSION:
        return f"expression longer than {MAX_EXPRESSION} characters"
    run = 0  # unary operators in a row
    chain = [0]  # binary (not && or ||) operators in a row, per bracket level
    operand = False  # the last token ends an operand (so '-' is binary)
    for m in _SCAN.finditer(expression):
        kind = m.lastgroup
        if kind == "ws":
            continue
        if kind == "minus" and operand:
            kind = "binop"
        if kind in ("bang", "minus"):
            run += 1
            if run > MAX_UNARY_RUN:
                return f"more than {MAX_UNARY_RUN} '!' or '-' in a row"
            operand = False
            continue
        run = 0
        if kind == "binop":
            chain[-1] += 1
            if chain[-1] > MAX_OPERATOR_CHAIN:
                return (
                    f"more than {MAX_OPERATOR_CHAIN} operators in a row without parentheses, && or || "
                    "(the CEL parser's limit)"
                )
            operand = False
        elif kind == "logic":
            chain[-1] = 0
            operand = False
        elif kind == "open":
            chain.append(0)
            if len(chain) > MAX_NESTING + 1:
                return f"nested deeper than {MAX_NESTING} levels of brackets"
            operand = False
        elif kind == "close":
            if len(chain) > 1:
                chain.pop()
            operand = True
        else:
            operand = True
            if kind == "str":
                text = m.group().lstrip("rRbB")
                quotes = 3 if text[:3] in ('"""', "'''") else 1
                if len(text) - 2 * quotes > MAX_STRING_LITERAL:
                    return f"string literal longer than {MAX_STRING_LITERAL} characters"
    return ""


@cache
def env() -> Any:
    from cel_expr_python import cel

    simple = {
        "bool": cel.Type.BOOL,
        "int": cel.Type.INT,
        "double": cel.Type.DOUBLE,
        "string": cel.Type.STRING,
    }
    types = {name: simple.get(t) or cel.Type.List(cel.Type.STRING) for name, t in FACT_TYPES.items()}
    return cel.NewEnv(variables=types)


@lru_cache(maxsize=2048)  # parse_pack checks, then CompiledPack.compile compiles: the same text, once
def compile_reference(expression: str) -> Any:
    """The checked reference program; raises ValueError with the checker's message."""
    try:
        program = env().compile(expression)
    except RuntimeError as exc:
        msg = str(exc).replace("INVALID_ARGUMENT: ", "").replace(" [INVALID_ARGUMENT]", "")
        msg = msg.replace("ERROR: <input>:", "at ").replace(" (in container '')", "")
        raise ValueError(msg) from None
    if program.return_type().name() != "BOOL":
        raise ValueError(
            f"a rule must be a bool expression, this one is {program.return_type().name().lower()}"
        )
    return program


def check_rules(rules: Any, path: str) -> list[PackIssue]:
    issues = []
    for r in rules:
        problem = scan_expression(r.expression)
        if problem:
            issues.append(PackIssue(path, r.line, r.id, problem))
        else:
            try:
                compile_reference(r.expression)
            except ValueError as exc:
                issues.append(PackIssue(path, _file_line(r, str(exc)), r.id, str(exc) + _hint(str(exc))))
        issues += [PackIssue(path, r.line, r.id, m) for m in check_reason(r.reason)]
    return issues


# event fields a rule engineer may reach for, and the fact that carries them
_EVENT_FACT = {
    "measured_gross_kg": "weigh_gross_kg",
    "lat": "last_lat",
    "lon": "last_lon",
}


def _close_fact(name: str) -> str:
    """The fact a misspelt name most likely meant, or '' (a shared prefix first: unit_pric -> unit_value)."""
    same_start = [f for f in FACT_TYPES if f[:4] == name[:4]]
    close = difflib.get_close_matches(name, same_start, n=1, cutoff=0.5) or difflib.get_close_matches(
        name, FACT_TYPES, n=1, cutoff=0.75
    )
    return close[0] if close else ""


def _hint(message: str) -> str:
    """What to do about a checker message (typos, event fields, int and double mixed), or ''."""
    names = dict.fromkeys(re.findall(r"undeclared reference to '([^']*)'", message))
    return "".join(_name_hint(n) for n in names) or _type_hint(message)


def _name_hint(name: str) -> str:
    """What to do about a name that is not a fact."""
    from pipeline.contracts.events import CONTRACTS

    kinds = [k for k, fields in CONTRACTS.items() if any(f.name == name for f in fields)]
    if kinds:
        fact = _EVENT_FACT.get(name)
        use = f" (use '{fact}')" if fact else ""
        return (
            f"\n('{name}' is a field of the {'/'.join(kinds)} event, not a fact{use}: rules read the facts "
            "of one declaration, features/schema.py)"
        )
    close = _close_fact(name)
    if close:
        return f"\n('{name}': did you mean '{close}'? facts: features/schema.py)"
    return f"\n('{name}' is not a fact: rules read the facts of one declaration, features/schema.py)"


def _type_hint(message: str) -> str:
    """What to do about an operator applied to types CEL does not combine."""
    types = re.search(r"no matching overload for '[^']*' applied to '\(([^)]*)\)'", message)
    if types:
        ts = {t.strip() for t in types.group(1).split(",")}
        if ts == {"int", "double"}:
            return "\n(CEL does not mix int and double: write 1.0 for a double, or convert with double(...))"
        if "string" in ts and ts & {"int", "double"}:
            return '\n(a string fact compares with text in quotes: hs4 == "2701")'
    return ""


def _file_line(rule: Any, message: str) -> int:
    """The pack file's line of a checker message "at L:C" (exact for literal blocks and one-line text)."""
    m = re.match(r"at (\d+):\d+", message)
    if m and rule.text_line:
        return int(rule.text_line) + int(m.group(1)) - 1
    return int(rule.line)


_SPEC = re.compile(r"[<>^=]?[+\- ]?#?0?\d{0,2}[,_]?(?:\.\d{1,2})?[bdeEfFgGnosxX%]?")


def check_reason(reason: str) -> list[str]:
    """Placeholders must be plain fact names with a small format spec (no attribute or index access, no
    nested fields, width and precision under 100) and must format the neutral facts."""
    if len(reason) > MAX_REASON:
        return [f"reason text longer than {MAX_REASON} characters"]
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(reason) if f is not None]
    except ValueError as exc:
        return [f"reason text: {exc}"]
    out = []
    for name, spec, conv in fields:
        if name not in FACT_TYPES:
            out.append(f"reason placeholder {{{name}}} is not a fact (plain fact names only)")
        elif conv or not _SPEC.fullmatch(spec or ""):
            out.append(f"reason placeholder {{{name}}}: unsupported format '{spec}' (e.g. {{{name}:.0f}})")
    if not out:
        try:
            reason.format(**NEUTRAL)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            out.append(f"reason text does not format the facts: {exc}")
    return out
