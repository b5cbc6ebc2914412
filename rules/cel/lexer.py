"""CEL tokens: the tokenizer of the fast path and the decoding of string literals."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rules.cel.values import MAX_STRING_LITERAL, MAX_TEXT, Refused

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


def string_literal(tok: str) -> str:
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
