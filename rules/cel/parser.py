"""The CEL parser of the fast path: recursive descent over the tokens, building closures (rules/cel/ops.py)
with a static type per node; what it does not implement raises ``Refused``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rules.cel.lexer import RESERVED, Tok, string_literal, tokenize
from rules.cel.ops import (
    FUNCTION_TYPES,
    METHOD_TYPES,
    NONE,
    constant,
    declared_fact,
    function,
    index,
    logical,
    method,
    relation,
    select,
    typed_compare,
)
from rules.cel.values import (
    INT_MAX,
    INT_MIN,
    MAX_CHAIN,
    MAX_DEPTH,
    MAX_LIST_LITERAL,
    CelError,
    Env,
    Fn,
    Refused,
    Unsupported,
    arith,
    checked_int,
    typ,
)


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
            left, lt = logical(left, right, absorbing), "bool"
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
            fast = typed_compare(op, left, lt, right, rt, fact)
            left, lt = (fast or relation(op, left, right)), "bool"
        return left, lt

    def add(self) -> tuple[Fn, str]:
        left, lt = self.mul()
        n = 1
        while self.tok.kind == "op" and self.tok.text in "+-" and self.tok.text:
            n = self._chain(n)
            op = self.tok.text
            self.i += 1
            right, rt = self.mul()
            left, lt = self._binary(op, left, lt, right, rt)
        return left, lt

    def mul(self) -> tuple[Fn, str]:
        left, lt = self.unary()
        n = 1
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "%"):
            n = self._chain(n)
            op = self.tok.text
            self.i += 1
            right, rt = self.unary()
            left, lt = self._binary(op, left, lt, right, rt)
        return left, lt

    def _binary(self, op: str, a: Fn, at: str, b: Fn, bt: str) -> tuple[Fn, str]:
        if {at, bt} == {"int", "double"}:
            raise Refused("mixed int/double arithmetic")
        return (lambda e: arith(op, a(e), b(e))), at if at == bt else "dyn"

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
                tv = typ(v)
                if tv == "int":
                    return checked_int(-v)
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
                    f, t = method(name, f, args), METHOD_TYPES.get(name, "dyn")
                else:
                    f, t = select(f, name), "dyn"
            elif self.eat("["):
                idx, _ = self.expr()
                self.need("]")
                f, t = index(f, idx), "dyn"
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
            return constant(v), "int"
        if tok.kind == "float":
            d = float(tok.text)
            d = -d if negate else d
            return constant(d), "double"
        if negate:
            raise Refused("negation")
        if tok.kind == "str":
            return constant(string_literal(tok.text)), "string"
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
                return function(name, args), FUNCTION_TYPES.get(name, "dyn")
            if self.tok.kind == "op" and self.tok.text == "." and name not in self.types:
                raise Refused("qualified names and containers")

            if name in self.types and self.types[name] != "dyn":
                getter = declared_fact(name, self.types[name])
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
            key = getattr(k, "const", NONE)
            if key is NONE or type(key) not in (str, int):
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
                base, field, f = f, name, select(f, name)
            elif self.eat("["):
                idx, _ = self.expr()
                self.need("]")
                base, f = None, index(f, idx)
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


def compile_cel(text: str, types: dict[str, str] | None = None) -> Callable[[Env], Any]:
    """Compile to a closure ``fn(bindings) -> value``; raises Refused for what the fast path does not do."""
    fn, _ = Parser(text, types).parse()
    return fn
