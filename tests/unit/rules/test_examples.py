"""Rule examples: every shipped rule has them and they pass; a failing or malformed example is reported with
the rule, the example and its file:line; `rules test` and `rules check` take files and folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.apps import rules_cli as cli
from rules.engine import PACKS, CompiledPack
from rules.examples import run_examples
from rules.pack import PackError, load_pack, parse_pack

REPO = Path(__file__).resolve().parents[3]
SHIPPED = sorted(PACKS.glob("*.yaml"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "rules", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_rule_has_examples_that_pass(path: Path) -> None:
    pack = load_pack(path)
    report = run_examples(pack, CompiledPack.compile(pack))
    assert not report.failures, "\n".join(map(str, report.failures))
    for rule in pack.rules:
        hits = [e for e in rule.examples if e.hit]
        misses = [e for e in rule.examples if not e.hit]
        assert hits and misses, f"{rule.id}: needs at least one example that hits and one that does not"
        if rule.scope != "global":  # a hit at its site, a miss elsewhere
            assert any(e.bindings()["port"] == rule.scope for e in hits), rule.id
            assert any(e.bindings()["port"] not in ("", rule.scope) for e in misses), rule.id
    assert report.run == sum(len(r.examples) for r in pack.rules)


RULE = """  - id: {id}
    title: t
    expression: {expr}
    lane: document_check
    severity: high
    scope: {scope}
    status: active
    owner: me
    version: 1
    reason: r
    examples:
{examples}"""


def pack_text(*rules: tuple[str, str, str, str]) -> str:
    body = "name: p\nversion: 1\nrules:\n"
    return body + "".join(RULE.format(id=i, expr=e, scope=s, examples=x) for i, e, s, x in rules)


EXCESS = "weigh_present && weigh_excess_ratio > 0.05"


def test_a_failing_example_names_rule_example_and_line(tmp_path: Path) -> None:
    examples = (
        "      - {name: big excess, hit: true, facts: {weigh_present: true, weigh_excess_ratio: 0.2}}\n"
        "      - {name: small excess, hit: true, facts: {weigh_present: true, weigh_excess_ratio: 0.01}}\n"
        "      - {name: no reading, hit: false, facts: {weigh_excess_ratio: 0.2}}\n"
    )
    scoped = (
        "      - {name: at EHT, hit: true, facts: {port: EHT, weigh_present: true, weigh_excess_ratio: 1}}\n"
        "      - {name: at GQM, hit: true, facts: {port: GQM, weigh_present: true, weigh_excess_ratio: 1}}\n"
    )
    p = tmp_path / "p.yaml"
    p.write_text(pack_text(("excess", EXCESS, "global", examples), ("eht", EXCESS, "EHT", scoped)))
    done = run_cli("test", str(p))
    assert done.returncode == 1
    fails = [ln for ln in done.stderr.splitlines() if ln.startswith("FAIL ")]
    assert fails == [
        f"FAIL {p}:16: excess: example 'small excess': expected a hit, got no hit "
        "(facts the rule reads: weigh_present=True, weigh_excess_ratio=0.01)",
        f"FAIL {p}:30: eht: example 'at GQM': expected a hit, got no hit "
        "(the rule is scoped to site EHT and the example's port is 'GQM')",
    ]
    assert f"{p}: 2 of 5 examples fail" in done.stderr
    check = run_cli("check", str(p))  # check runs the examples too
    assert check.returncode == 1 and f"{p}:16: excess: example 'small excess'" in check.stderr


@pytest.mark.parametrize(
    ("example", "line", "message"),
    [
        (
            "{name: e, hit: true, facts: {weigh_presnt: true}}",
            15,
            "unknown fact 'weigh_presnt' (did you mean",
        ),
        ("{name: e, hit: true, facts: {weigh_present: 1}}", 15, "fact 'weigh_present' is a bool"),
        ("{name: e, hit: true, facts: {hs4: 2701}}", 15, "fact 'hs4' is a string"),
        ("{name: e, hit: true, facts: {hs_median_n: 2.5}}", 15, "fact 'hs_median_n' is an int"),
        ("{name: e, hit: true, facts: {hs_median_n: 9223372036854775808}}", 15, "64-bit int range"),
        ("{name: e, hit: true, facts: {missing: [1]}}", 15, "is a list of strings"),
        ("{name: e, hit: yes please, facts: {}}", 15, "'hit' is true or false"),
        ("{name: e, hit: true, facts: [1]}", 15, "'facts' is a mapping"),
        ("{name: e, hit: true, fact: {}}", 15, "unknown field 'fact'"),
        ("{hit: true}", 15, "'name' must be a non-empty string"),
    ],
)
def test_malformed_examples_are_check_errors_with_file_line(example: str, line: int, message: str) -> None:
    text = pack_text(("r", EXCESS, "global", f"      - {example}\n"))
    with pytest.raises(PackError) as err:
        parse_pack(text, "p.yaml")
    assert any(i.line == line and i.rule_id == "r" and message in i.message for i in err.value.issues), (
        err.value
    )


def test_an_example_with_an_evaluation_error_says_so() -> None:
    text = pack_text(
        (
            "r",
            "purpose == 'medical'",
            "global",
            '      - {name: nul, hit: true, facts: {purpose: "medical\\0"}}\n',
        )
    )
    pack = parse_pack(text, "p.yaml")
    [failure] = run_examples(pack).failures
    assert "expected a hit, got no hit (evaluation error: " in failure.message
    assert "purpose" in failure.message and "NUL" in failure.message


def test_doubles_may_be_written_as_integers_and_examples_do_not_count_as_errors() -> None:
    text = pack_text(
        ("r", "gross_kg > 1.0", "global", "      - {name: int, hit: true, facts: {gross_kg: 2}}\n")
    )
    pack = parse_pack(text, "p.yaml")
    compiled = CompiledPack.compile(pack)
    assert run_examples(pack, compiled).failures == []
    bad = pack_text(
        ("r", "hs_median_n > 1", "global", "      - {name: e, hit: true, facts: {hs_median_n: 2}}\n")
    )
    compiled = CompiledPack.compile(parse_pack(bad, "p.yaml"))
    run_examples(compiled.pack, compiled)
    assert compiled.errors() == {}


def test_check_and_test_take_folders_and_several_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    good = tmp_path / "sub" / "good.yaml"
    good.write_text((PACKS / "starter.yaml").read_text())
    (tmp_path / "notes.txt").write_text("not a pack")
    assert cli.check(tmp_path) == 0
    assert cli.test(tmp_path, good) == 0
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\n")
    assert cli.check(tmp_path) == 1
    assert cli.test(tmp_path / "nowhere") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.check(empty) == 1


def test_the_shipped_packs_folder_checks_and_tests_from_the_command_line() -> None:
    done = run_cli("check", "rules/packs")
    assert done.returncode == 0, done.stderr
    assert "examples pass" in done.stdout
    done = run_cli("test", "rules/packs")
    assert done.returncode == 0, done.stderr
    assert "examples pass" in done.stdout
