"""Rule packs and the CEL engine: every shipped rule, malformed packs, fast path == reference, conformance."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from features.schema import FACT_TYPES, NEUTRAL
from rules import conformance
from rules.cel import CelError, Refused, Unsupported, compile_cel
from rules.engine import PACKS, CompiledPack, load_default_pack
from rules.pack import PackError, load_pack, parse_pack

SHIPPED = sorted(PACKS.glob("*.yaml"))
RULES = [(p, r) for p in SHIPPED for r in load_pack(p).rules]


def random_facts(rng: random.Random) -> dict[str, Any]:
    f: dict[str, Any] = dict(NEUTRAL)
    for name, t in FACT_TYPES.items():
        if t == "bool":
            f[name] = rng.random() < 0.3
        elif t == "int":
            f[name] = rng.choice([0, 1, 2, 3, 5, 25])
        elif t == "double":
            f[name] = rng.choice([0.0, 0.02, 0.04, 0.07, 0.5, 0.7, 0.9, 1.0, 1.5, 4.0, 1300.0, 2000.0])
        elif t == "string":
            f[name] = rng.choice(
                ["", "B", "A", "2701", "EHT", "GQM", "self_drive", "road", "medical", "distrusted"]
            )
        else:
            f[name] = rng.choice([[], ["track"]])
    return f


@pytest.mark.parametrize(("path", "rule"), RULES, ids=[f"{p.stem}:{r.id}" for p, r in RULES])
def test_every_shipped_rule_is_valid_deterministic_and_documented(path: Path, rule: Any) -> None:
    pack = CompiledPack.compile(parse_pack(path.read_text(), str(path)))
    compiled = next(c for c in pack.rules if c.rule.id == rule.id) if rule.status != "disabled" else None
    assert rule.title and rule.owner and rule.reason and rule.version >= 1
    if compiled is None:
        return
    rng = random.Random(rule.id)
    for _ in range(300):
        facts = random_facts(rng)
        before = dict(facts)
        first = compiled.matches(facts)
        assert compiled.matches(facts) == first  # deterministic
        assert facts == before  # the input is not changed
        reference = compiled.reference.eval(data=facts).value() is True
        assert first == reference  # the fast path never answers differently from the CEL runtime
        if first:
            hit = compiled.hit(facts)
            assert hit.reason and "{" not in hit.reason and set(hit.evidence) <= set(FACT_TYPES)


def write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "pack.yaml"
    p.write_text(body)
    return p


GOOD_RULE = """  - id: {id}
    title: t
    expression: {expr}
    lane: {lane}
    severity: high
    status: {status}
    owner: me
    version: 1
    reason: "r {{gross_kg:.0f}}"
"""


@pytest.mark.parametrize(
    ("expr", "lane", "status", "line", "message"),
    [
        ("unit_pric < 0.6", "document_check", "active", 6, "undeclared reference to 'unit_pric'"),
        ("weigh_excess_ratio > ", "document_check", "active", 6, "Syntax error"),
        ("hs4 > 1", "document_check", "active", 6, "no matching overload"),
        ("gross_kg + 1.0", "document_check", "active", 6, "must be a bool expression"),
        ("gross_kg > 1.0", "teleport", "active", 7, "lane 'teleport' must be one of"),
        ("gross_kg > 1.0", "document_check", "maybe", 9, "status 'maybe' must be one of"),
    ],
)
def test_malformed_rules_report_file_line_rule_and_message(
    tmp_path: Path, expr: str, lane: str, status: str, line: int, message: str
) -> None:
    p = write(
        tmp_path,
        "name: x\nversion: 1\nrules:\n" + GOOD_RULE.format(id="r1", expr=expr, lane=lane, status=status),
    )
    with pytest.raises(PackError) as err:
        load_pack(p)
    issue = err.value.issues[0]
    assert (issue.file, issue.line, issue.rule_id) == (str(p), line, "r1")
    assert message in issue.message
    assert str(issue).startswith(f"{p}:{line}: r1: ")


def test_every_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    body = "name: x\nversion: 1\nrules:\n" + GOOD_RULE.format(
        id="a", expr="bad_name", lane="x", status="active"
    )
    body += GOOD_RULE.format(id="a", expr="gross_kg > 1.0", lane="document_check", status="active")
    body += "  - id: c\n    title: t\n"
    with pytest.raises(PackError) as err:
        load_pack(write(tmp_path, body))
    msgs = [str(i) for i in err.value.issues]
    assert any("lane 'x'" in m for m in msgs)
    assert any("duplicate rule id" in m for m in msgs)
    assert any("missing 'expression'" in m for m in msgs)
    assert any("undeclared reference to 'bad_name'" in m for m in msgs)


def test_shadow_rules_are_flagged_and_scoped_rules_only_fire_at_their_site(tmp_path: Path) -> None:
    body = "name: x\nversion: 2\nrules:\n"
    body += GOOD_RULE.format(
        id="shadowed", expr="gross_kg > 1.0", lane="physical_inspection", status="shadow"
    )
    body += GOOD_RULE.format(id="local", expr="gross_kg > 1.0", lane="physical_inspection", status="active")
    body += "    scope: EHT\n"
    pack = CompiledPack.compile(load_pack(write(tmp_path, body)))
    facts = dict(NEUTRAL, gross_kg=10.0, port="GQM")
    assert [(h.rule_id, h.status) for h in pack.evaluate(facts)] == [("shadowed", "shadow")]
    facts["port"] = "EHT"
    assert sorted(h.rule_id for h in pack.evaluate(facts)) == ["local", "shadowed"]


@pytest.mark.parametrize(
    ("expr", "env", "want"),
    [
        ("1 + 2 * 3 == 7", {}, True),
        ("7 / 2 == 3 && -7 / 2 == -3 && -7 % 3 == -1", {}, True),
        ("x > 0.5 ? 'high' : 'low'", {"x": 0.7}, "high"),
        ("'ab' + 'c' == 'abc' && 'abc'.startsWith('ab') && size('héllo') == 5", {}, True),
        ("2 in [1, 2, 3] && !(4 in [1, 2])", {}, True),
        ("has(m.a) && !has(m.b) && m.a == 1", {"m": {"a": 1}}, True),
        ("false && (1 / 0 == 1)", {}, False),
        ("(1 / 0 == 1) || true", {}, True),
    ],
)
def test_fast_path_semantics(expr: str, env: dict[str, Any], want: Any) -> None:
    assert compile_cel(expr, {k: "dyn" for k in env})(env) == want


@pytest.mark.parametrize(
    "expr", ["1 / 0 == 1", "9223372036854775807 + 1 > 0", "[1][3] == 1", "{'a': 1}.b == 1"]
)
def test_fast_path_errors_are_cel_errors(expr: str) -> None:
    with pytest.raises(CelError):
        compile_cel(expr)({})


@pytest.mark.parametrize(
    "expr",
    [
        "1u == 1u",
        "b'x' == b'x'",
        "[1].all(x, x > 0)",
        "timestamp('2020-01-01T00:00:00Z')",
        "[1, 2].map(x, x * 2) == [2, 4]",
    ],
)
def test_the_fast_path_refuses_what_it_does_not_do_exactly(expr: str) -> None:
    with pytest.raises((Refused, Unsupported)):
        compile_cel(expr)({})


def test_limits_on_text_and_literals() -> None:
    with pytest.raises(Refused):
        compile_cel("x == '" + "a" * 2000 + "'", {"x": "string"})
    with pytest.raises(Refused):
        compile_cel("(" * 60 + "1" + ")" * 60)
    with pytest.raises(Refused):
        compile_cel("1 == 1 && " * 500 + "true")


def test_conformance_suite_has_no_wrong_answers() -> None:
    counts, wrong = conformance.run()
    print(f"CEL conformance on the fast path: {dict(counts)}")
    assert not wrong, [(w["file"], w["name"], w["expr"]) for w in wrong[:10]]
    assert counts["passed"] >= 400
    assert sum(counts.values()) == 2456


def test_default_pack_is_all_fast_path() -> None:
    pack = load_default_pack()
    assert pack.fast_count == len(pack.rules)


@pytest.mark.parametrize("rid", ["1", "2701", "true", "no", "null", "~", '""', "1.5"])
def test_a_rule_id_yaml_reads_as_no_text_is_refused(tmp_path: Path, rid: str) -> None:
    """`id: 2701` or `id: true` is a number or a bool to YAML: refused, never a rule with an empty id (two of
    them would share their hits and counters)."""
    body = "name: x\nversion: 1\nrules:\n" + GOOD_RULE.format(
        id=rid, expr="gross_kg > 1.0", lane="document_check", status="active"
    )
    with pytest.raises(PackError) as err:
        load_pack(write(tmp_path, body))
    assert "rule id must be non-empty text" in str(err.value)


def test_versions_beyond_64_bits_are_refused(tmp_path: Path) -> None:
    """A version no published record can carry (orjson writes 64-bit integers) is a check error, not a crash
    of `rules publish`."""
    rule = GOOD_RULE.format(id="r", expr="gross_kg > 1.0", lane="document_check", status="active")
    with pytest.raises(PackError, match="pack 'version' must be an integer 1"):
        load_pack(write(tmp_path, f"name: x\nversion: {2**64}\nrules:\n" + rule))
    big = rule.replace("version: 1", f"version: {2**64}")
    assert big != rule
    with pytest.raises(PackError, match="rule version must be a 64-bit integer"):
        load_pack(write(tmp_path, "name: x\nversion: 1\nrules:\n" + big))


@pytest.mark.parametrize(
    ("expr", "hint"),
    [
        ("unit_pric < 0.6", "did you mean 'unit_value"),
        ("measured_gross_kg > 1.0", "field of the logistics event, not a fact (use 'weigh_gross_kg')"),
        ("gross_kg > 1", "CEL does not mix int and double"),
        ("hs4 == 2701", "text in quotes"),
    ],
)
def test_checker_errors_say_what_to_do(tmp_path: Path, expr: str, hint: str) -> None:
    body = "name: x\nversion: 1\nrules:\n" + GOOD_RULE.format(
        id="r", expr=expr, lane="document_check", status="active"
    )
    with pytest.raises(PackError) as err:
        load_pack(write(tmp_path, body))
    assert hint in str(err.value)
