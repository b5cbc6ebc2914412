"""Hostile rule packs are refused with a clean file:line error, by parse_pack, by the compiler, by the
worker's reader (pack_from_bytes) and by `rules check`; the limits docs/rules.md states are enforced."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from features.schema import NEUTRAL
from rules import check, pack
from rules.engine import CompiledPack
from rules.hostile import MB, corpus
from rules.hostile import pack as pack_of
from rules.hostile import rule as rule_of
from rules.pack import PackError, Rule, RulePack, pack_from_bytes, parse_pack

REPO = Path(__file__).resolve().parents[3]
CORPUS = list(corpus())


def refused(text: str, path: str = "hostile.yaml") -> list[str]:
    """The issues of a pack that must not validate, as the CLI prints them."""
    with pytest.raises(PackError) as err:
        CompiledPack.compile(parse_pack(text, path))
    issues = err.value.issues
    assert issues
    for issue in issues:
        assert issue.file == path and issue.line >= 1 and issue.message, issue
    return [str(i) for i in issues]


@pytest.mark.parametrize(("name", "text"), CORPUS, ids=[n for n, _ in CORPUS])
def test_every_hostile_pack_is_a_located_error(name: str, text: str) -> None:
    refused(text)


def test_the_alias_bomb_is_refused_before_anything_is_expanded() -> None:
    [msg] = refused(pack_of("  - &r {id: a}\n  - *r\n"))
    assert msg.startswith("hostile.yaml:4: -: YAML anchors and aliases")


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"[1, 2]",
        b'{"source": 5}',
        b'{"source": "' + b"a" * (9 * pack.MAX_PACK_BYTES) + b'"}',
        orjson.dumps({"source": pack_of("  - &r {id: a}\n  - *r\n")}),
        orjson.dumps({"source": "x" * MB, "path": 7}),
        orjson.dumps({"source": pack_of(rule_of('"' + "!" * 1000 + 'true"'))}),
    ],
)
def test_published_hostile_packs_are_pack_errors(raw: Any) -> None:
    """What the worker reads from the rule-packs topic: every refusal is a PackError (the worker keeps the
    previous pack, agents/app.py follow_rule_packs)."""
    with pytest.raises(PackError):
        CompiledPack.compile(pack_from_bytes(raw))


def test_compile_refuses_what_parse_pack_never_saw() -> None:
    """A RulePack built in code skips parse_pack: the compiler still refuses with the rule's line."""
    rules = tuple(
        Rule(f"r{i}", "t", expr, "release", "low", "active", "o", 1, "r", line=10 + i)
        for i, expr in enumerate(["!" * 1000 + "true", "-" * 1000 + "1 > 0", "(" * 500 + "true" + ")" * 500])
    )
    with pytest.raises(PackError) as err:
        CompiledPack.compile(RulePack("p", 1, rules, "", "code.yaml"))
    assert [(i.file, i.line, i.rule_id) for i in err.value.issues] == [
        ("code.yaml", 10, "r0"),
        ("code.yaml", 11, "r1"),
        ("code.yaml", 12, "r2"),
    ]


def test_rules_check_refuses_every_hostile_file_with_file_line_and_exit_1(tmp_path: Path) -> None:
    files = []
    for i, (_, text) in enumerate(CORPUS):
        f = tmp_path / f"h{i:02d}.yaml"
        f.write_bytes(text.encode("utf-8", "surrogateescape"))
        files.append(f)
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(256)) * 4096)  # 1 MB, not UTF-8
    files.append(garbage)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "rules", "check", *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    for f in files:
        located = [
            ln for ln in done.stderr.splitlines() if ln.startswith(f"{f}:") and ln.split(":")[1].isdigit()
        ]
        assert located and int(located[0].split(":")[1]) >= 1, (f, done.stderr[-2000:])
        assert f"{f}: " in done.stderr and "error(s)" in done.stderr


# --- the limits docs/rules.md states, each enforced as written


def one(expr: str) -> str:
    return pack_of(rule_of(f'"{expr}"'))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (one("hs4 == '" + "a" * 1025 + "'"), "string literal longer than 1024"),
        (one("(" * 33 + "true" + ")" * 33), "nested deeper than 32"),
        (one("weigh_present && " * 240 + "hs4 == '" + "a" * 30 + "'"), "expression longer than 4096"),
        (one("!" * 9 + "weigh_present"), "more than 8 '!' or '-' in a row"),
        (one(" + ".join(["hs_median_n"] * 33) + " > 0"), "more than 31 operators in a row"),
        (pack_of(rule_of("weigh_present", reason="'" + "x" * 1001 + "'")), "reason text longer than 1000"),
        (pack_of(*(rule_of("weigh_present", f"r{i}") for i in range(1001))), "more than 1000 rules"),
        ("# " + "x" * (256 * 1024) + "\n", "pack larger than 256 KiB"),
        (pack_of(*(rule_of(f'"{"weigh_present && " * 230}true"', f"r{i}") for i in range(30))), "96 KiB"),
        (
            pack_of(
                rule_of(
                    "weigh_present",
                    extra=", examples: ["
                    + ",".join(f"{{name: e{i}, hit: true, facts: {{}}}}" for i in range(21))
                    + "]",
                )
            ),
            "more than 20 examples",
        ),
        ("a:\n" + "".join("  " * i + " b:\n" for i in range(1, 12)), "nested deeper than 10"),
        ("x: [" + ",".join(["1"] * 40_001) + "]\n", "more than 40000 YAML nodes"),
        ("name: x\x07\n", "character U+0007 is not allowed"),
    ],
)
def test_stated_limits_are_enforced(text: str, message: str) -> None:
    msgs = refused(text)
    assert any(message in m for m in msgs), msgs


def test_limits_are_inclusive_and_a_pack_at_each_limit_is_valid() -> None:
    at_limit = one("hs4 == '" + "a" * 1024 + "' && " + "(" * 31 + "true" + ")" * 31)
    assert not check.scan_expression(parse_pack(at_limit, "p").rules[0].expression)
    assert (
        len(parse_pack(pack_of(*(rule_of("weigh_present", f"r{i}") for i in range(1000))), "p").rules) == 1000
    )


def test_a_huge_reason_number_or_odd_facts_never_raise_out_of_evaluate() -> None:
    compiled = CompiledPack.compile(
        parse_pack(pack_of(rule_of("gross_kg > 1.0", reason="'{gross_kg:.0f}'")), "p")
    )
    [hit] = compiled.evaluate(dict(NEUTRAL, gross_kg=1e308 * 10))  # inf formats; the rule hits
    assert hit.reason == "inf"
    assert compiled.evaluate(dict(NEUTRAL, gross_kg=10**400)) == []  # an error for the rule, not an exception
    assert compiled.errors() == {"r": 1}
