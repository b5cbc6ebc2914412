"""A CEL (Common Expression Language) fast path: tokenizer, parser and compiler to Python closures.

It covers what rule engineers write (literals, facts, arithmetic, comparisons, ``in``, ``&&``/``||`` with
CEL's error absorption, ``?:``, lists, maps, ``size``, ``has``, ``startsWith``, ``contains``, ``double``) with
CEL's exact semantics, and *refuses* everything else: at compile time (``Refused``) for constructs it does not
implement, at run time (``Unsupported``) for value combinations whose semantics it does not reproduce (mixed
int/double arithmetic or comparison, cross-type equality). A refused rule, or a refused evaluation, runs on
the reference runtime instead (rules/engine.py), so the fast path never gives a different answer.
Rule text is never given to eval/exec; sizes and nesting are bounded.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
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

_TOKEN = re.compile(
    r"""(?P<ws>\s+|//[^\n]*)
      |(?P<float>(?:\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?))
      |(?P<hex>0[xX][0-9a-fA-F]+[uU]?)
      |(?P<int>\d+[uU]?)
      |(?P<str>[rRbB]{0,2}(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))
      |(?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)
      |(?P<op>==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,()\[\]{}])""",
    re.X,
)
RESERVED = {
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
}


@dataclass(slots=True)
class Tok:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Tok]:
    if len(text) > MAX_TEXT:
        raise Refused(f"expression longer than {MAX_TEXT} characters")
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise Refused(f"cannot read the expression at offset {pos}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(Tok("eof", "", pos))
    return out


_ESC = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "`": "`",
    "?": "?",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


def _string(tok: str) -> str:
    prefix = re.match(r"[rRbB]*", tok).group()  # type: ignore[union-attr]
    if "b" in prefix.lower():
        raise Refused("bytes literals")
    body = tok[len(prefix) :]
    q = 3 if body[:3] in ('"""', "'''") else 1
    body = body[q:-q]
    if len(body) > MAX_STRING_LITERAL:
        raise Refused(f"string literal longer than {MAX_STRING_LITERAL}")
    if "r" in prefix.lower():
        return body
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESC:
            out.append(_ESC[nxt])
            i += 2
        elif nxt in "uU":
            n = 4 if nxt == "u" else 8
            cp = int(body[i + 2 : i + 2 + n], 16)
            if 0xD800 <= cp <= 0xDFFF or cp > 0x10FFFF:
                raise Refused("invalid code point escape")
            out.append(chr(cp))
            i += 2 + n
        else:
            raise Refused(f"escape \\{nxt}")
    return "".join(out)


def _const(value: Any) -> Fn:
    def const(e: Env) -> Any:
        return value

    const.const = value  # type: ignore[attr-defined]
    return const


def _typ(v: Any) -> str:
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


def _int(v: int) -> int:
    if not INT_MIN <= v <= INT_MAX:
        raise CelError("integer overflow")
    return v


def cel_eq(a: Any, b: Any) -> bool:
    ta, tb = _typ(a), _typ(b)
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
            match = [kb for kb in b if _typ(kb) == _typ(k) and kb == k]
            if not match or not cel_eq(v, b[match[0]]):
                return False
        return True
    return bool(a == b)


def _cmp(op: str, a: Any, b: Any) -> bool:
    ta, tb = _typ(a), _typ(b)
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


def _arith(op: str, a: Any, b: Any) -> Any:
    ta, tb = _typ(a), _typ(b)
    if ta != tb:
        if {ta, tb} <= {"int", "double"}:
            raise Unsupported("mixed int/double arithmetic")
        raise CelError(f"no matching overload for {op} on ({ta}, {tb})")
    if ta == "int":
        if op == "+":
            return _int(a + b)
        if op == "-":
            return _int(a - b)
        if op == "*":
            return _int(a * b)
        if b == 0:
            raise CelError("division by zero" if op == "/" else "modulus by zero")
        q = abs(a) // abs(b)
        q = _int(q if (a >= 0) == (b >= 0) else -q)  # INT64_MIN / -1 and INT64_MIN % -1 overflow
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


class Parser:
    def __init__(self, text: str, types: dict[str, str] | None = None) -> None:
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0
        self.types = types or {}
        self.facts: dict[int, tuple[Fn, str]] = {}

    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def eat(self, text: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == text:
            self.i += 1
            return True
        return False

    def need(self, text: str) -> None:
        if not self.eat(text):
            raise Refused(f"expected {text!r} at offset {self.tok.pos}")

    def parse(self) -> tuple[Fn, str]:
        fn, t = self.expr()
        if self.tok.kind != "eof":
            raise Refused(f"unexpected {self.tok.text!r} at offset {self.tok.pos}")
        return fn, t

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Refused(f"nesting deeper than {MAX_DEPTH}")

    # each rule returns (closure, static type or "dyn")
    def expr(self) -> tuple[Fn, str]:
        self._enter()
        c, ct = self.lor()
        if self.eat("?"):
            a, at = self.lor()
            self.need(":")
            b, bt = self.expr()

            def cond(e: Env) -> Any:
                v = c(e)
                if type(v) is not bool:
                    raise CelError("ternary condition is not a bool")
                return a(e) if v else b(e)

            self.depth -= 1
            return cond, at if at == bt else "dyn"
        self.depth -= 1
        return c, ct

    def _chain(self, n: int) -> int:
        if n >= MAX_CHAIN:
            raise Refused(f"a chain of more than {MAX_CHAIN} operands")
        return n + 1

    def _logic(self, op: str, sub: Callable[[], tuple[Fn, str]], absorbing: bool) -> tuple[Fn, str]:
        left, lt = sub()
        n = 1
        while self.eat(op):
            n = self._chain(n)
            right, _ = sub()
            left, lt = _logical(left, right, absorbing), "bool"
        return left, lt

    def lor(self) -> tuple[Fn, str]:
        return self._logic("||", self.land, True)

    def land(self) -> tuple[Fn, str]:
        return self._logic("&&", self.rel, False)

    def rel(self) -> tuple[Fn, str]:
        left, lt = self.add()
        n = 1
        while self.tok.kind in ("op", "ident") and self.tok.text in ("<", "<=", ">", ">=", "==", "!=", "in"):
            n = self._chain(n)
            op = self.tok.text
            self.i += 1
            right, rt = self.add()
            if op != "in" and {lt, rt} == {"int", "double"}:
                raise Refused("mixed int/double comparison")
            getter = self.facts.get(id(left))
            fact = getter[1] if getter is not None and getter[0] is left else None
            fast = _typed_compare(op, left, lt, right, rt, fact)
            left, lt = (fast or _relation(op, left, right)), "bool"
        return left, lt

    def add(self) -> tuple[Fn, str]:
        left, lt = self.mul()
        n = 1
        while self.tok.kind == "op" and self.tok.text in "+-" and self.tok.text:
            n = self._chain(n)
            op = self.tok.text
            self.i += 1
            right, rt = self.mul()
            left, lt = self._arith(op, left, lt, right, rt)
        return left, lt

    def mul(self) -> tuple[Fn, str]:
        left, lt = self.unary()
        n = 1
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "%"):
            n = self._chain(n)
            op = self.tok.text
            self.i += 1
            right, rt = self.unary()
            left, lt = self._arith(op, left, lt, right, rt)
        return left, lt

    def _arith(self, op: str, a: Fn, at: str, b: Fn, bt: str) -> tuple[Fn, str]:
        if {at, bt} == {"int", "double"}:
            raise Refused("mixed int/double arithmetic")
        return (lambda e: _arith(op, a(e), b(e))), at if at == bt else "dyn"

    def unary(self) -> tuple[Fn, str]:
        if self.eat("!"):
            if self.tok.kind == "op" and self.tok.text == "!":
                raise Refused("'!!': the CEL parser drops pairs of '!' (not a double negation)")
            self._enter()  # a chain of unary operators nests like parentheses
            f, _ = self.unary()
            self.depth -= 1

            def not_(e: Env) -> Any:
                v = f(e)
                if type(v) is not bool:
                    raise CelError("no matching overload for !")
                return not v

            return not_, "bool"
        if self.tok.kind == "op" and self.tok.text == "-":
            self.i += 1
            if self.tok.kind == "op" and self.tok.text == "-":  # --x is x to the CEL parser: no overflow
                raise Refused("'--': the CEL parser drops pairs of '-' (not a double negation)")
            if self.tok.kind in ("int", "hex", "float"):  # a negative literal, -9223372036854775808 included
                f, t = self.member(negate=True)
                return f, t
            self._enter()
            f, t = self.unary()
            self.depth -= 1

            def neg(e: Env) -> Any:
                v = f(e)
                tv = _typ(v)
                if tv == "int":
                    return _int(-v)
                if tv == "double":
                    return -v
                raise CelError("no matching overload for -")

            return neg, t
        return self.member()

    def member(self, negate: bool = False) -> tuple[Fn, str]:
        f, t = self.primary(negate)
        n = 1
        while True:
            if self.tok.kind == "op" and self.tok.text in (".", "["):
                n = self._chain(n)
            if self.eat("."):
                if self.tok.kind != "ident":
                    raise Refused("expected a field or method name")
                name = self.tok.text
                self.i += 1
                if self.eat("("):
                    args = self.args(")")
                    f, t = _method(name, f, args), _METHOD_TYPES.get(name, "dyn")
                else:
                    f, t = _select(f, name), "dyn"
            elif self.eat("["):
                idx, _ = self.expr()
                self.need("]")
                f, t = _index(f, idx), "dyn"
            else:
                return f, t

    def args(self, close: str) -> list[Fn]:
        out: list[Fn] = []
        if self.eat(close):
            return out
        while True:
            out.append(self.expr()[0])
            if self.eat(close):
                return out
            self.need(",")
            if self.eat(close):
                return out
            if len(out) > MAX_LIST_LITERAL:
                raise Refused("literal too long")

    def primary(self, negate: bool = False) -> tuple[Fn, str]:
        tok = self.tok
        self.i += 1
        if tok.kind in ("int", "hex"):
            text = tok.text
            if text[-1] in "uU":
                raise Refused("unsigned integers")
            v = int(text, 16) if tok.kind == "hex" else int(text)
            v = -v if negate else v
            if not INT_MIN <= v <= INT_MAX:
                raise Refused("integer literal out of range")
            return _const(v), "int"
        if tok.kind == "float":
            d = float(tok.text)
            d = -d if negate else d
            return _const(d), "double"
        if negate:
            raise Refused("negation")
        if tok.kind == "str":
            return _const(_string(tok.text)), "string"
        if tok.kind == "ident":
            name = tok.text
            if name in RESERVED:
                raise Refused(f"reserved word {name}")
            if name in ("true", "false"):
                b = name == "true"
                return (lambda e: b), "bool"
            if name == "null":
                return (lambda e: None), "null"
            if self.eat("("):
                if name == "has":
                    return self._has(), "bool"
                args = self.args(")")
                return _function(name, args), _FUNCTION_TYPES.get(name, "dyn")
            if self.tok.kind == "op" and self.tok.text == "." and name not in self.types:
                raise Refused("qualified names and containers")

            if name in self.types and self.types[name] != "dyn":
                getter = _fact(name, self.types[name])
                self.facts[id(getter)] = (getter, name)  # the getter is kept alive: its id stays its own
                return getter, self.types[name]

            def var(e: Env) -> Any:
                try:
                    return e[name]
                except KeyError:
                    raise Unsupported(f"unbound {name}") from None

            return var, self.types.get(name, "dyn")
        if tok.kind == "op" and tok.text == "(":
            f, t = self.expr()
            self.need(")")
            return f, t
        if tok.kind == "op" and tok.text == "[":
            items = self.args("]")
            return (lambda e: [x(e) for x in items]), "list"
        if tok.kind == "op" and tok.text == "{":
            return self._map_literal(), "map"
        if tok.kind == "op" and tok.text == ".":
            raise Refused("leading-dot names")
        raise Refused(f"unexpected {tok.text!r} at offset {tok.pos}")

    def _map_literal(self) -> Fn:
        """Map literals with constant keys of one type (string or int), all distinct. The reference fails a
        whole evaluation on a duplicate key (not an error value that || or && could absorb), so keys that
        are computed, repeated or of mixed types are refused: the rule runs on the reference."""
        entries: list[tuple[Any, Fn]] = []
        while not self.eat("}"):
            k, _ = self.expr()
            self.need(":")
            v, _ = self.expr()
            key = getattr(k, "const", _NONE)
            if key is _NONE or type(key) not in (str, int):
                raise Refused("map literal keys that are not string or int constants")
            entries.append((key, v))
            if len(entries) > MAX_LIST_LITERAL:
                raise Refused("literal too long")
            if not self.eat(","):
                self.need("}")
                break
        keys = [k for k, _ in entries]
        if len({type(k) for k in keys}) > 1 or len(set(keys)) != len(keys):
            raise Refused("map literal with mixed-type or duplicate keys")

        def build(e: Env) -> dict[Any, Any]:
            return {k: vf(e) for k, vf in entries}

        return build

    def _has(self) -> Fn:
        f, _ = self.primary()
        base: Fn | None = None
        field = ""
        while True:
            if self.eat("."):
                if self.tok.kind != "ident":
                    raise Refused("expected a field name")
                name = self.tok.text
                self.i += 1
                if self.tok.kind == "op" and self.tok.text == "(":
                    raise Refused("has() of a method call")
                base, field, f = f, name, _select(f, name)
            elif self.eat("["):
                idx, _ = self.expr()
                self.need("]")
                base, f = None, _index(f, idx)
            else:
                break
        self.need(")")
        if base is None:
            raise Refused("has() needs a field selection")
        b = base

        def has(e: Env) -> bool:
            m = b(e)
            if type(m) is not dict:
                raise CelError("has() on a value that is not a map")
            return field in m

        return has


def _logical(left: Fn, right: Fn, absorbing: bool) -> Fn:
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


def _fact(name: str, cel_type: str) -> Fn:
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


def _typed_compare(op: str, a: Fn, at: str, b: Fn, bt: str, fact: str | None = None) -> Fn | None:
    """A fact compared with a literal of the same type: one type check, then the plain comparison. Any other
    value type takes the general path, so the answer is always CEL's."""
    const: Any = getattr(b, "const", _NONE)
    if const is _NONE or op not in _OPS or at != bt or at not in _PY_TYPE:
        return None
    if at == "double" and math.isnan(const):
        return None
    want, cmp, slow = _PY_TYPE[at], _OPS[op], _relation(op, a, b)
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
            raise Unsupported(f"{name} is not a {at}")  # as _fact(): the reference converts, we do not

        return compare_fact

    def compare(e: Env) -> Any:
        v = a(e)
        if type(v) is want:
            return cmp(v, value)  # type: ignore[arg-type]
        return slow(e)

    return compare


_NONE = object()


def _relation(op: str, a: Fn, b: Fn) -> Fn:
    if op == "==":
        return lambda e: cel_eq(a(e), b(e))
    if op == "!=":
        return lambda e: not cel_eq(a(e), b(e))
    if op == "in":

        def in_(e: Env) -> bool:
            x, coll = a(e), b(e)
            tc = _typ(coll)
            if tc == "list":
                return any(cel_eq(x, y) for y in coll)
            if tc == "map":
                tx = _typ(x)
                if tx not in ("string", "int", "bool"):
                    raise Unsupported("map key type")
                return any(_typ(k) == tx and k == x for k in coll)
            raise CelError("no matching overload for in")

        return in_
    return lambda e: _cmp(op, a(e), b(e))


def _select(f: Fn, name: str) -> Fn:
    def sel(e: Env) -> Any:
        m = f(e)
        if type(m) is not dict:
            raise Unsupported("field selection on a non-map value")
        if name not in m:
            raise CelError(f"no such key: {name}")
        return m[name]

    return sel


def _index(f: Fn, idx: Fn) -> Fn:
    def index(e: Env) -> Any:
        c, i = f(e), idx(e)
        tc, ti = _typ(c), _typ(i)
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
                if _typ(k) == ti and k == i:
                    return c[k]
            raise CelError("no such key")
        raise CelError(f"no matching overload for [] on {tc}")

    return index


def _size(v: Any) -> int:
    t = _typ(v)
    if t in ("string", "list", "map"):
        return len(v)
    raise CelError(f"no matching overload for size on {t}")


def _str_method(name: str) -> Callable[[str, str], bool]:
    return {"startsWith": str.startswith, "endsWith": str.endswith, "contains": str.__contains__}[name]


_METHOD_TYPES = {"size": "int", "startsWith": "bool", "endsWith": "bool", "contains": "bool"}
_FUNCTION_TYPES = {"size": "int", "double": "double"}


def _method(name: str, target: Fn, args: list[Fn]) -> Fn:
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


def _function(name: str, args: list[Fn]) -> Fn:
    if name == "size" and len(args) == 1:
        a = args[0]
        return lambda e: _size(a(e))
    if name == "double" and len(args) == 1:
        a = args[0]

        def to_double(e: Env) -> float:
            v = a(e)
            t = _typ(v)
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


def compile_cel(text: str, types: dict[str, str] | None = None) -> Callable[[Env], Any]:
    """Compile to a closure ``fn(bindings) -> value``; raises Refused for what the fast path does not do."""
    fn, _ = Parser(text, types).parse()
    return fn
