"""A CEL (Common Expression Language) fast path: tokenizer, parser and compiler to Python closures.

It covers what rule engineers write (literals, facts, arithmetic, comparisons, ``in``, ``&&``/``||`` with
CEL's error absorption, ``?:``, lists, maps, ``size``, ``has``, ``startsWith``, ``contains``, ``double``) with
CEL's exact semantics, and *refuses* everything else: at compile time (``Refused``) for constructs it does not
implement, at run time (``Unsupported``) for value combinations whose semantics it does not reproduce (mixed
int/double arithmetic or comparison, cross-type equality). A refused rule, or a refused evaluation, runs on
the reference runtime instead (rules/engine.py), so the fast path never gives a different answer.
Rule text is never given to eval/exec; sizes and nesting are bounded.
"""

from rules.cel.lexer import RESERVED, Tok, tokenize
from rules.cel.parser import Parser, compile_cel
from rules.cel.values import (
    INT_MAX,
    INT_MIN,
    MAX_CHAIN,
    MAX_DEPTH,
    MAX_LIST_LITERAL,
    MAX_STRING_LITERAL,
    MAX_TEXT,
    CelError,
    Env,
    Fn,
    Refused,
    Unsupported,
    bad_text,
    cel_eq,
)

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_CHAIN",
    "MAX_DEPTH",
    "MAX_LIST_LITERAL",
    "MAX_STRING_LITERAL",
    "MAX_TEXT",
    "RESERVED",
    "CelError",
    "Env",
    "Fn",
    "Parser",
    "Refused",
    "Tok",
    "Unsupported",
    "bad_text",
    "cel_eq",
    "compile_cel",
    "tokenize",
]
