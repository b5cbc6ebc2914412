"""Run the fast path over the CEL conformance suite (tests/data/cel-conformance/cases.json,
google/cel-spec, Apache-2.0).

Each case ends as ``passed`` (same value or an error where an error is expected), ``refused`` (the fast path
declines: the construct or value combination is not implemented exactly) or ``wrong``. Wrong must be 0.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from rules.cel import CelError, Refused, Unsupported, compile_cel

CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "cel-conformance" / "cases.json"


class _NoValue(Exception):
    pass


def value(tv: dict[str, Any]) -> Any:
    """A typed conformance value as a Python value; raises _NoValue for types the fast path does not model."""
    t = tv["t"]
    v = tv.get("v")
    if t == "null":
        return None
    if t == "bool":
        return bool(v)
    if t == "int":
        return int(v)  # type: ignore[arg-type]
    if t == "double":
        if isinstance(v, str):
            return float(v)
        return float(v)  # type: ignore[arg-type]
    if t == "string":
        return v
    if t == "list":
        return [value(x) for x in v]  # type: ignore[union-attr]
    if t == "map":
        return {value(k): value(x) for k, x in v}  # type: ignore[union-attr]
    if t == "bytes":
        base64.b64decode(v)  # type: ignore[arg-type]
    raise _NoValue(t)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(any(same(k, k2) and same(v, b[k2]) for k2 in b) for k, v in a.items())
    return bool(a == b)


def run_case(case: dict[str, Any]) -> str:
    if not case.get("portable") or "expect" not in case or case.get("check_only") or case.get("container"):
        return "refused"
    try:
        fn = compile_cel(case["expr"], {k: "dyn" for k in case.get("bindings") or {}})
        env = {k: value(v) for k, v in (case.get("bindings") or {}).items()}
        want_error = case["expect"]["t"] == "error"
        want = None if want_error else value(case["expect"])
    except (Refused, _NoValue):
        return "refused"
    try:
        got = fn(env)
    except Unsupported:
        return "refused"
    except CelError:
        return "passed" if want_error else "wrong"
    except (RecursionError, OverflowError, ValueError, TypeError):
        return "refused"
    if want_error:
        return "wrong"
    return "passed" if same(got, want) else "wrong"


def run(path: Path = CASES) -> tuple[Counter[str], list[dict[str, Any]]]:
    cases = orjson.loads(path.read_bytes())
    counts: Counter[str] = Counter()
    wrong = []
    for case in cases:
        outcome = run_case(case)
        counts[outcome] += 1
        if outcome == "wrong":
            wrong.append(case)
    return counts, wrong


if __name__ == "__main__":
    counts, wrong = run()
    print(dict(counts))
    for w in wrong[:40]:
        print(w["file"], w["name"], repr(w["expr"])[:100], w.get("expect"), w.get("bindings"))
