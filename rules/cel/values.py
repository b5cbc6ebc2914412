"""CEL values for the fast path: limits, errors, the type of a value, equality, ordering and arithmetic
with CEL's exact semantics (or ``Unsupported`` where the fast path does not reproduce them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

MAX_TEXT = 4096
MAX_STRING_LITERAL = 1024
MAX_DEPTH = 50
MAX_LIST_LITERAL = 1000
MAX_CHAIN = 64  # operands of one chain of && / || / + / * / comparisons (longer: the reference runtime)
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


class Refused(Exception):
    """The fast path does not implement this expression (it runs on the reference runtime)."""


class Unsupported(Exception):
    """At run time: a value combination whose exact CEL semantics the fast path does not reproduce."""


class CelError(Exception):
    """A CEL evaluation error (division by zero, no such key, no matching overload, overflow...)."""


def bad_text(v: str) -> bool:
    """A string the reference runtime cannot take as is: it cuts at NUL, and fails on a lone surrogate.
    Such a fact is an evaluation error on both paths (rules/engine.py gives the reference an error value)."""
    if "\x00" in v:
        return True
    if v.isascii():
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


Env = dict[str, Any]
Fn = Callable[[Env], Any]


def typ(v: Any) -> str:
    t = type(v)
    if t is bool:
        return "bool"
    if t is int:
        return "int"
    if t is float:
        return "double"
    if t is str:
        return "string"
    if v is None:
        return "null"
    if t is list:
        return "list"
    if t is dict:
        return "map"
    raise Unsupported(f"value of type {t.__name__}")


def checked_int(v: int) -> int:
    if not INT_MIN <= v <= INT_MAX:
        raise CelError("integer overflow")
    return v


def cel_eq(a: Any, b: Any) -> bool:
    ta, tb = typ(a), typ(b)
    if ta != tb:
        raise Unsupported("equality across types")
    if ta == "list":
        if len(a) != len(b):
            return False
        return all(cel_eq(x, y) for x, y in zip(a, b, strict=True))
    if ta == "map":
        if len(a) != len(b):
            return False
        for k, v in a.items():
            match = [kb for kb in b if typ(kb) == typ(k) and kb == k]
            if not match or not cel_eq(v, b[match[0]]):
                return False
        return True
    return bool(a == b)


def ordering(op: str, a: Any, b: Any) -> bool:
    ta, tb = typ(a), typ(b)
    if ta != tb:
        if {ta, tb} <= {"int", "double"}:
            raise Unsupported("mixed int/double comparison")
        raise CelError(f"no matching overload for {op} on ({ta}, {tb})")
    if ta not in ("int", "double", "string", "bool"):
        raise CelError(f"no matching overload for {op} on {ta}")
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def arith(op: str, a: Any, b: Any) -> Any:
    ta, tb = typ(a), typ(b)
    if ta != tb:
        if {ta, tb} <= {"int", "double"}:
            raise Unsupported("mixed int/double arithmetic")
        raise CelError(f"no matching overload for {op} on ({ta}, {tb})")
    if ta == "int":
        if op == "+":
            return checked_int(a + b)
        if op == "-":
            return checked_int(a - b)
        if op == "*":
            return checked_int(a * b)
        if b == 0:
            raise CelError("division by zero" if op == "/" else "modulus by zero")
        q = abs(a) // abs(b)
        q = checked_int(q if (a >= 0) == (b >= 0) else -q)  # INT64_MIN / -1 and INT64_MIN % -1 overflow
        return q if op == "/" else a - b * q
    if ta == "double":
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                return (
                    math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
                )
            return a / b
        raise CelError("no matching overload for % on double")
    if op == "+" and ta in ("string", "list"):
        return a + b
    raise CelError(f"no matching overload for {op} on {ta}")
