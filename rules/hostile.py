"""Hostile rule packs: inputs of up to ~1 MB that must each be refused quickly with a clean file:line error.

Used by tests/unit/rules/test_hostile.py (each input through ``parse_pack``, ``CompiledPack.compile`` and the
``rules check`` command) and runnable to time them by hand::

    .venv/bin/python -m rules.hostile    # seconds per input (wall and CPU): parse_pack + compile + examples
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

from rules.engine import CompiledPack
from rules.examples import run_examples
from rules.pack import PackError, parse_pack

MB = 1 << 20


def rule(expr: str, rid: str = "r", extra: str = "", reason: str = "r") -> str:
    return (
        f"  - {{id: {rid}, title: t, expression: {expr}, lane: release, severity: low, status: active,"
        f" owner: o, version: 1, reason: {reason}{extra}}}\n"
    )


def pack(*rules: str) -> str:
    return "name: hostile\nversion: 1\nrules:\n" + "".join(rules)


def alias_bomb(levels: int = 9) -> str:
    """The billion laughs: 9 levels of 9 aliases each, about 600 bytes, 387 million strings expanded."""
    text = 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        text += f"a{i}: &a{i} [{refs}]\n"
    return "name: bomb\nversion: 1\n" + text + f"rules: *a{levels - 1}\n"


def corpus() -> Iterator[tuple[str, str]]:
    """(name, pack text) of every hostile input."""
    rng = random.Random(17)
    yield "alias bomb (612 bytes)", alias_bomb()
    yield "alias bomb padded to 1 MB", alias_bomb() + "#" * MB
    yield "anchor on a rule", pack("  - &r {id: a}\n")
    yield "python object tag", pack(rule("!!python/object/apply:os.system ['id']"))
    yield "deep YAML sequences (1 MB)", "[" * MB
    yield "deep YAML mappings", "{a: " * (MB // 4)
    yield "deep block YAML", "".join(" " * i + "a:\n" for i in range(0, 1400))
    yield "one huge line (1 MB)", "x" * MB
    yield "1 MB string literal", pack(rule("\"x == '" + "a" * MB + "'\""))
    yield "200 KB string literal", pack(rule("\"purpose == '" + "a" * 200_000 + "'\""))
    yield "1 MB of binary garbage", bytes(rng.getrandbits(8) for _ in range(MB)).decode("latin-1")
    yield "NUL bytes", "name: x\x00\x00\nversion: 1\n"
    yield (
        "1,000 rules in 1 MB",
        pack(*(rule("weigh_present", f"r{i}", " " + "x" * 1000) for i in range(1000))),
    )
    yield "1,001 rules", pack(*(rule("weigh_present", f"r{i}") for i in range(1001)))
    yield "200,000 YAML nodes", "x: [" + ",".join(["1"] * 200_000) + "]\n"
    yield "1000 x '!'", pack(rule('"' + "!" * 1000 + 'true"'))
    yield "1000 x '-'", pack(rule('"' + "-" * 1000 + '1 > 0"'))
    yield "parentheses 2,000 deep", pack(rule('"' + "(" * 2000 + "true" + ")" * 2000 + '"'))
    yield "list 40 deep", pack(rule('"' + "[" * 40 + "1" + "]" * 40 + ' == []"'))
    yield "1,300-term && chain", pack(rule('"' + " && ".join(["hs4 == hs4"] * 1300) + '"'))
    yield "4 KB '+' chain", pack(rule('"' + "+".join(["1"] * 2040) + ' > 0"'))
    yield (
        "30 x 31-operator chains",
        pack(rule('"' + " && ".join(["(" + "+".join(["1"] * 31) + " > 0)"] * 30) + '"')),
    )
    yield "reason text of 1 MB", pack(rule("weigh_present", reason="x" * MB))
    yield (
        "96 KB of 4 KB && chains",
        pack(*(rule('"' + "&&".join(["weigh_present"] * 290) + '"', f"r{i}") for i in range(30))),
    )
    yield "integer literal of 400 digits", pack(rule('"double(' + "9" * 400 + ') > 1.0"'))
    yield "reason format bomb", pack(rule("weigh_present", reason="'{gross_kg:999999999.999999f}'"))
    forty = "[" + ",".join(map(str, range(40))) + "]"
    yield (
        "comprehension in a comprehension (text limits and iteration budget kept)",
        pack(rule(f'"{forty}.map(a, {forty}.map(b, {" + ".join(["goods"] * 8)})).size() > 0"')),
    )
    yield "second YAML document", "name: a\nversion: 1\nrules: []\n---\nname: b\n"
    yield "duplicate keys", pack(rule("weigh_present")).replace("version: 1\n", "version: 1\nversion: 2\n", 1)
    yield "mapping as a key", "? [a, b]\n: 1\n"
    yield "not a mapping", "- 1\n- 2\n"
    yield "empty", ""
    yield (
        "examples with an unknown fact",
        pack(rule("weigh_present", extra=", examples: [{name: e, hit: true, facts: {weigh_presnt: true}}]")),
    )
    yield (
        "example fact beyond int64",
        pack(
            rule(
                "weigh_present",
                extra=", examples: [{name: e, hit: true, facts: {hs_median_n: 99999999999999999999}}]",
            )
        ),
    )


def main() -> None:
    worst = worst_cpu = 0.0
    for name, text in corpus():
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            p = parse_pack(text, "hostile.yaml")
            report = run_examples(p, CompiledPack.compile(p))
            outcome = f"{len(report.failures)} failing example(s)" if report.failures else "ACCEPTED"
        except PackError as exc:
            outcome = str(exc.issues[0])[:90]
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
        worst, worst_cpu = max(worst, took), max(worst_cpu, cpu)
        print(f"{took:7.3f} s {cpu:7.3f} s CPU  {name:32s} {outcome}")
    print(f"{worst:7.3f} s {worst_cpu:7.3f} s CPU  worst")


if __name__ == "__main__":
    main()
