"""A corpus of hostile rule packs, as raw records on the rule-packs topic (what anyone with write access to
the topic could send, bypassing `rules publish`). Every one must be rejected by the worker, which keeps
scoring with the live pack."""

from __future__ import annotations

import orjson

RULE = """  - id: {id}
    title: drill
    description: drill
    expression: {expr}
    lane: {lane}
    severity: high
    action: hard
    scope: global
    status: active
    owner: drill
    version: 1
    reason: "drill"
"""


def _pack(rules: str, version: object = 900, name: str = "hostile") -> str:
    return f"name: {name}\nversion: {version}\nrules:\n{rules}"


def _rule(expr: str, rid: str = "drill_rule", lane: str = "physical_inspection") -> str:
    return RULE.format(id=rid, expr=expr, lane=lane)


def _published(source: object, version: object = 900) -> bytes:
    return orjson.dumps({"name": "hostile", "version": version, "source": source, "path": "hostile.yaml"})


def _bomb(levels: int = 6, width: int = 10) -> str:
    """Nested YAML aliases ("billion laughs"): 10**6 strings expanded, bounded so it cannot harm the host."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "name: bomb\nversion: 900\n" + "\n".join(lines) + f"\nrules: *a{levels}\n"


def hostile_packs() -> list[tuple[str, bytes]]:
    """(name, raw record value) of every hostile pack."""
    deep = "(" * 5000 + "weigh_present" + ")" * 5000
    long_or = " || ".join(["weigh_excess_ratio > 0.05"] * 20_000)
    return [
        ("not JSON", b"\x00\xff\xfe not a pack"),
        ("JSON without a source", orjson.dumps({"name": "x", "version": 900})),
        ("source is not a string", _published(12345)),
        ("JSON array", b"[1, 2, 3]"),
        ("broken YAML", _published("name: x\nversion: 900\nrules: [unclosed\n  - {")),
        ("YAML alias bomb", _published(_bomb())),
        (
            "python object tag",
            _published(_pack("", name="!!python/object/apply:os.system ['id']") + "  []\n"),
        ),
        (
            "rules is a python tag",
            _published("name: x\nversion: 900\nrules: !!python/object/apply:os.system ['id']\n"),
        ),
        ("version not an integer", _published(_pack(_rule("weigh_present"), version="'abc'"))),
        ("version negative", _published(_pack(_rule("weigh_present"), version=-5))),
        ("CEL syntax error", _published(_pack(_rule("weigh_present &&")))),
        ("unknown fact", _published(_pack(_rule("no_such_fact > 1")))),
        ("type error", _published(_pack(_rule("gross_kg + 'a' > 1")))),
        ("not a boolean", _published(_pack(_rule("gross_kg")))),
        ("code injection", _published(_pack(_rule("__import__('os').system('id') == 0")))),
        ("unknown lane", _published(_pack(_rule("weigh_present", lane="teleport")))),
        ("duplicate rule ids", _published(_pack(_rule("weigh_present") + _rule("weigh_present")))),
        ("5000-deep parentheses", _published(_pack(_rule(deep)))),
        ("20,000-term expression", _published(_pack(_rule(long_or)))),
        ("empty source", _published("")),
    ]


def local_verdicts() -> dict[str, str]:
    """What the project's validator says of each hostile pack here: 'rejected (...)' or 'ACCEPTED'."""
    from rules.engine import CompiledPack
    from rules.pack import pack_from_bytes

    out = {}
    for name, raw in hostile_packs():
        try:
            CompiledPack.compile(pack_from_bytes(raw))
        except RecursionError:
            out[name] = "rejected (RecursionError)"
        except Exception as exc:
            out[name] = f"rejected ({type(exc).__name__})"
        else:
            out[name] = "ACCEPTED"
    return out
