"""The closures the CEL parser builds: logic with CEL's error absorption, typed facts, comparisons,
selection, indexing, methods and functions. Each takes the bindings and returns a value or raises."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from rules.cel.values import (
    INT_MAX,
    INT_MIN,
    CelError,
    Env,
    Fn,
    Refused,
    Unsupported,
    bad_text,
    cel_eq,
    ordering,
    typ,
)


def constant(value: Any) -> Fn:
    def const(e: Env) -> Any:
        return value

    const.const = value  # type: ignore[attr-defined]
    return const


def logical(left: Fn, right: Fn, absorbing: bool) -> Fn:
    """CEL && (absorbing=False: false wins) and || (absorbing=True: true wins), commutative over errors."""

    def run(e: Env) -> Any:
        try:
            lv: Any = left(e)
            lerr: Exception | None = None if type(lv) is bool else CelError("no matching overload for logic")
        except (CelError, Unsupported) as exc:
            lv, lerr = None, exc
        if lv is absorbing:
            return absorbing
        try:
            rv: Any = right(e)
            rerr: Exception | None = None if type(rv) is bool else CelError("no matching overload for logic")
        except (CelError, Unsupported) as exc:
            rv, rerr = None, exc
        if rv is absorbing:
            return absorbing
        for err in (lerr, rerr):
            if isinstance(err, Unsupported):
                raise err
        if lerr is not None:
            raise lerr
        if rerr is not None:
            raise rerr
        return not absorbing

    def quick(e: Env) -> Any:
        # the common case, same answer: a bool on the left decides or hands over to a bool on the right;
        # anything else (an error on the left, a value that is not a bool) takes the general path above
        try:
            lv = left(e)
        except (CelError, Unsupported):
            return run(e)
        if lv is absorbing:
            return absorbing
        if lv is (not absorbing):
            rv = right(e)  # an error here is the answer of the general path too
            if rv is True or rv is False:
                return rv
        return run(e)

    return quick


_PY_TYPE = {"int": int, "double": float, "string": str, "bool": bool}
_OPS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def declared_fact(name: str, cel_type: str) -> Fn:
    """A declared fact. A value of its declared type is used as is; a missing fact raises KeyError and a value
    of another type raises Unsupported (the reference runtime converts values to the declared type, e.g.
    true to 1.0 for a double, and the fast path does not copy those conversions): both fall back."""
    want = _PY_TYPE.get(cel_type) or (list if cel_type.startswith("list") else None)
    if want is None:
        raise Refused(f"facts of type {cel_type}")
    check = _SHAPE.get(want)

    def shaped(v: Any) -> Any:  # a value of the declared type: its shape decides (the uncommon path)
        if check is not None and check(v):
            raise CelError(f"fact {name}: {_SHAPE_ERROR[want]}")
        return v

    # one getter per type, the common case inline (literal bounds: constants, no global lookups; printable
    # text has no NUL and no lone surrogate, anything else takes bad_text's exact check)
    if want is int:

        def int_fact(e: Env) -> Any:
            v = e[name]
            if type(v) is int and -0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF:
                return v
            if type(v) is int:
                return shaped(v)
            raise Unsupported(f"{name} is not a {cel_type}")

        return int_fact
    if want is str:

        def str_fact(e: Env) -> Any:
            v = e[name]
            if type(v) is str and v.isprintable():
                return v
            if type(v) is str:
                return shaped(v)
            raise Unsupported(f"{name} is not a {cel_type}")

        return str_fact

    def fact(e: Env) -> Any:
        v = e[name]
        if type(v) is want:
            return shaped(v) if check is not None else v
        raise Unsupported(f"{name} is not a {cel_type}")

    return fact


def _bad_int(v: int) -> bool:
    return not INT_MIN <= v <= INT_MAX


def _bad_list(v: list[Any]) -> bool:
    return any(type(x) is not str or bad_text(x) for x in v)


# A value of the declared Python type that the reference still cannot take: at access, both paths give an
# evaluation error (which && and || absorb, as the reference does for a value it cannot convert).
_SHAPE: dict[type, Callable[[Any], bool]] = {int: _bad_int, str: bad_text, list: _bad_list}
_SHAPE_ERROR = {
    int: "integer out of the 64-bit range",
    str: "text with NUL or an unpaired surrogate",
    list: "a list element that is not clean text",
}


def typed_compare(op: str, a: Fn, at: str, b: Fn, bt: str, fact: str | None = None) -> Fn | None:
    """A fact compared with a literal of the same type: one type check, then the plain comparison. Any other
    value type takes the general path, so the answer is always CEL's."""
    const: Any = getattr(b, "const", NONE)
    if const is NONE or op not in _OPS or at != bt or at not in _PY_TYPE:
        return None
    if at == "double" and math.isnan(const):
        return None
    want, cmp, slow = _PY_TYPE[at], _OPS[op], relation(op, a, b)
    value: Any = const
    if fact is not None:
        name = fact
        if want is int:

            def compare_int_fact(e: Env) -> Any:
                v = e[name]  # a missing fact raises KeyError, as the lookup itself does
                if type(v) is int and -0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF:
                    return cmp(v, value)
                return slow(e)  # the getter gives the error, or refuses, exactly as elsewhere

            return compare_int_fact
        if want is str:

            def compare_str_fact(e: Env) -> Any:
                v = e[name]
                if type(v) is str and v.isprintable():
                    return cmp(v, value)
                return slow(e)

            return compare_str_fact

        def compare_fact(e: Env) -> Any:
            v = e[name]  # a missing fact raises KeyError, as the lookup itself does
            if type(v) is want:
                return cmp(v, value)  # type: ignore[arg-type]
            raise Unsupported(f"{name} is not a {at}")  # as declared_fact(): no conversion here

        return compare_fact

    def compare(e: Env) -> Any:
        v = a(e)
        if type(v) is want:
            return cmp(v, value)  # type: ignore[arg-type]
        return slow(e)

    return compare


NONE = object()


def relation(op: str, a: Fn, b: Fn) -> Fn:
    if op == "==":
        return lambda e: cel_eq(a(e), b(e))
    if op == "!=":
        return lambda e: not cel_eq(a(e), b(e))
    if op == "in":

        def in_(e: Env) -> bool:
            x, coll = a(e), b(e)
            tc = typ(coll)
            if tc == "list":
                return any(cel_eq(x, y) for y in coll)
            if tc == "map":
                tx = typ(x)
                if tx not in ("string", "int", "bool"):
                    raise Unsupported("map key type")
                return any(typ(k) == tx and k == x for k in coll)
            raise CelError("no matching overload for in")

        return in_
    return lambda e: ordering(op, a(e), b(e))


def select(f: Fn, name: str) -> Fn:
    def sel(e: Env) -> Any:
        m = f(e)
        if type(m) is not dict:
            raise Unsupported("field selection on a non-map value")
        if name not in m:
            raise CelError(f"no such key: {name}")
        return m[name]

    return sel


def index(f: Fn, idx: Fn) -> Fn:
    def index(e: Env) -> Any:
        c, i = f(e), idx(e)
        tc, ti = typ(c), typ(i)
        if tc == "list":
            if ti != "int":
                raise Unsupported("list index that is not an int")
            if not 0 <= i < len(c):
                raise CelError("index out of range")
            return c[i]
        if tc == "map":
            if ti not in ("string", "int", "bool"):
                raise Unsupported("map key type")
            for k in c:
                if typ(k) == ti and k == i:
                    return c[k]
            raise CelError("no such key")
        raise CelError(f"no matching overload for [] on {tc}")

    return index


def _size(v: Any) -> int:
    t = typ(v)
    if t in ("string", "list", "map"):
        return len(v)
    raise CelError(f"no matching overload for size on {t}")


def _str_method(name: str) -> Callable[[str, str], bool]:
    return {"startsWith": str.startswith, "endsWith": str.endswith, "contains": str.__contains__}[name]


METHOD_TYPES = {"size": "int", "startsWith": "bool", "endsWith": "bool", "contains": "bool"}
FUNCTION_TYPES = {"size": "int", "double": "double"}


def method(name: str, target: Fn, args: list[Fn]) -> Fn:
    if name == "size" and not args:
        return lambda e: _size(target(e))
    if name in ("startsWith", "endsWith", "contains") and len(args) == 1:
        fn = _str_method(name)
        arg = args[0]

        def call(e: Env) -> bool:
            s, x = target(e), arg(e)
            if type(s) is not str or type(x) is not str:
                raise CelError(f"no matching overload for {name}")
            return fn(s, x)

        return call
    raise Refused(f"method {name}()")


def function(name: str, args: list[Fn]) -> Fn:
    if name == "size" and len(args) == 1:
        a = args[0]
        return lambda e: _size(a(e))
    if name == "double" and len(args) == 1:
        a = args[0]

        def to_double(e: Env) -> float:
            v = a(e)
            t = typ(v)
            if t == "double":
                return float(v)
            if t == "int":
                try:
                    return float(v)
                except OverflowError:  # only from an unchecked (dyn) binding: facts are range-checked
                    raise Unsupported("double() of an integer beyond the double range") from None
            raise Unsupported(f"double() of {t}")

        return to_double
    raise Refused(f"function {name}()")
