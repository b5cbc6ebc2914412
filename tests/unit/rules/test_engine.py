"""The compiled pack answers exactly like the reference CEL runtime, also on facts of the wrong type."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest

from features.schema import FACT_TYPES, NEUTRAL
from rules.cel import CelError, Refused, Unsupported, compile_cel
from rules.engine import PACKS, CompiledPack, _Compiled
from rules.pack import PackError, load_pack, parse_pack

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from rules_bench import hundred_rules

ODD = [None, 1, -3, 2.5, float("nan"), "", "EHT", True, False, [], ["x"], {"a": 1}]
# values of the declared Python type that the reference cannot take as they are (issue 17.5)
WRONG_SHAPE = [
    2**63,
    -(2**63) - 1,
    10**400,
    "medical\x00",
    "self_drive\x00",
    "2701\x00",
    "medical\ud800",
    "\ud800",
    ["track\x00"],
    [1, "track"],
    [["track"]],
    ["\udfff"],
]


def odd_facts(rng: random.Random) -> dict[str, Any]:
    """Neutral facts with some replaced by values of another type, and some missing."""
    f: dict[str, Any] = dict(NEUTRAL, port=rng.choice(["EHT", "GQM", "MZL", ""]))
    for name, t in FACT_TYPES.items():
        roll = rng.random()
        if roll < 0.08:
            f[name] = rng.choice(ODD)
        elif roll < 0.16:
            f[name] = rng.choice(WRONG_SHAPE)
        elif roll < 0.1:
            f.pop(name, None)
        elif t == "double":
            f[name] = rng.choice([0.0, 0.05, 0.06, 0.5, 0.59, 1.0, 4.0, 1900.0, 5000.0])
        elif t == "int":
            f[name] = rng.choice([0, 2, 3, 5, 20, 25])
        elif t == "bool":
            f[name] = rng.random() < 0.5
    return f


def reference_hits(pack: CompiledPack, facts: dict[str, Any]) -> list[str]:
    return [
        c.rule.id
        for c in pack.rules
        if c.rule.scope in ("global", facts.get("port")) and c.reference_matches(facts)
    ]


@pytest.mark.parametrize(
    "pack_text", [(PACKS / "starter.yaml").read_text(), hundred_rules()], ids=["starter", "bench100"]
)
def test_evaluate_equals_the_reference_on_odd_facts(pack_text: str) -> None:
    pack = CompiledPack.compile(parse_pack(pack_text, "<p>"))
    rng = random.Random(7)
    for _ in range(400):
        facts = odd_facts(rng)
        before = dict(facts)
        got = [h.rule_id for h in pack.evaluate(facts)]
        assert sorted(got) == sorted(reference_hits(pack, facts)), facts
        assert facts.keys() == before.keys()


@pytest.mark.parametrize(
    ("expr", "env", "want"),
    [
        ("x && y", {"x": True, "y": True}, True),
        ("x && y", {"x": 1, "y": False}, False),  # false absorbs the error on the left
        ("x || y", {"x": "s", "y": True}, True),
        ("x || y", {"x": False, "y": False}, False),
        ("x && y", {"x": True, "y": 1}, CelError),
        ("x || y", {"x": 1, "y": False}, CelError),
        ("(1 / 0 == 1) && x", {"x": False}, False),
        ("x > 1.0 && y", {"x": 2.0, "y": True}, True),
        ("x > 1.0 && y", {"x": "a", "y": False}, False),
        ("x > 1.0 || y", {"x": "a", "y": False}, CelError),
    ],
)
def test_logic_with_errors_and_odd_values(expr: str, env: dict[str, Any], want: Any) -> None:
    fn = compile_cel(expr, {"x": "dyn", "y": "dyn"})
    if want is CelError:
        with pytest.raises(CelError):
            fn(env)
    else:
        assert fn(env) is want


def test_in_scope_lists_the_rules_evaluate_runs() -> None:
    pack = CompiledPack.compile(load_pack(PACKS / "starter.yaml"))
    scoped = {c.rule.id: c.rule.scope for c in pack.rules if c.rule.scope != "global"}
    for port in ("EHT", "GQM", "nowhere"):
        ids = pack.in_scope(port)
        assert set(ids) == {c.rule.id for c in pack.rules if c.rule.scope in ("global", port)}
        assert pack.in_scope(port) is ids  # the same tuple: cheap to count by
    assert all(pack.in_scope(s).count(r) == 1 for r, s in scoped.items())


def test_runaway_macros_are_cut_by_the_iteration_budget_and_counted() -> None:
    big = "[" + ",".join(["0"] * 300) + "]"
    costly = "goods + goods + goods + goods != ''"  # a long text copied at every step: ~30 ms to the budget
    text = (
        "name: p\nversion: 1\nrules:\n"
        f'  - {{id: runaway, title: t, expression: "{big}.all(x, {big}.all(y, {costly} && x == y))",\n'
        "     lane: document_check, severity: low, status: active, owner: o, version: 1, reason: r}\n"
        '  - {id: typed, title: t, expression: "gross_kg > 1.0", lane: document_check, severity: low,\n'
        "     status: active, owner: o, version: 1, reason: r}\n"
    )
    parsed = parse_pack(text, "<p>")
    with pytest.raises(PackError) as err:  # refused when it compiles: its cost is measured first
        CompiledPack.compile(parsed)
    assert "runaway: costs" in str(err.value) and "limit 1 ms" in str(err.value)
    # the runtime's iteration budget still cuts it, should such a rule ever run (the second line of defence)
    pack = CompiledPack(parsed, [_Compiled(r) for r in parsed.rules])
    assert pack.fast_count == 1  # macros run on the reference runtime, which bounds their iterations
    facts = dict(NEUTRAL, gross_kg=2.0, goods="coal")
    assert [h.rule_id for h in pack.evaluate(facts)] == ["typed"]
    del facts["gross_kg"]
    assert pack.evaluate(facts) == []
    assert pack.errors() == {"runaway": 2, "typed": 1}


def test_a_pack_whose_macros_cost_too_much_together_is_refused() -> None:
    """Each rule under its limit, but many of them: the pack's reference-path cost per declaration is bounded
    too, so a pack cannot stall a worker rule by rule. A macro over the missing parts stays well inside."""
    mid = "[" + ",".join(["0"] * 30) + "]"
    rule = (
        '  - {{id: r{i}, title: t, expression: "{mid}.all(x, {mid}.exists(y, x == y))",'
        " lane: document_check, severity: low, status: active, owner: o, version: 1, reason: r}}\n"
    )
    one = CompiledPack.compile(parse_pack("name: p\nversion: 1\nrules:\n" + rule.format(i=0, mid=mid), "<p>"))
    assert one.fast_count == 0  # on the reference runtime, and under the per-rule limit
    many = "name: p\nversion: 1\nrules:\n" + "".join(rule.format(i=i, mid=mid) for i in range(200))
    with pytest.raises(PackError, match=r"rules with macros cost .* ms a declaration together"):
        CompiledPack.compile(parse_pack(many, "<p>"))
    usual = (
        "name: p\nversion: 1\nrules:\n"
        "  - {id: m, title: t, expression: \"missing.exists(p, p == 'manifest')\","
        " lane: document_check, severity: low, status: active, owner: o, version: 1, reason: r}\n"
    )
    assert CompiledPack.compile(parse_pack(usual, "<p>")).rule_ids == ["m"]


def test_every_rule_answers_the_same_on_both_paths_for_wrong_shapes() -> None:
    """Each rule alone: the fast path (when it answers) == the reference, for every wrong-shape value of every
    fact it reads; and evaluate never raises."""
    for text in ((PACKS / "starter.yaml").read_text(), hundred_rules()):
        pack = CompiledPack.compile(parse_pack(text, "<p>"))
        for c in pack.rules[:25]:  # the bench pack's rules repeat a few shapes: 25 of them cover those
            for name in c.names:
                for bad in WRONG_SHAPE:
                    facts = dict(NEUTRAL, port="EHT")
                    facts[name] = bad
                    fast, reference = c.fast_and_reference(facts)
                    assert fast is None or fast == reference, (c.rule.id, name, bad)
                    pack.evaluate(facts)


@pytest.mark.parametrize(
    ("facts", "want_hit"),
    [
        ({"mode": "self_drive", "purpose": "medical"}, True),
        ({"mode": "self_drive", "purpose": "medical\x00"}, False),  # the reference cuts at NUL: an error here
        ({"mode": "self_drive", "purpose": "medical\x00 and more"}, False),
        ({"mode": "self_drive\x00", "purpose": "medical"}, False),
        ({"mode": "self_drive", "purpose": "medical\ud800"}, False),
    ],
)
def test_the_emergency_release_never_fires_on_text_with_nul(facts: dict[str, Any], want_hit: bool) -> None:
    pack = CompiledPack.compile(load_pack(PACKS / "starter.yaml"))
    hits = [h.rule_id for h in pack.evaluate(dict(NEUTRAL, **facts))]
    assert ("emergency_medical_release" in hits) is want_hit
    c = next(c for c in pack.rules if c.rule.id == "emergency_medical_release")
    assert c.fast_and_reference(dict(NEUTRAL, **facts)) == (want_hit, want_hit)
    if not want_hit:
        assert pack.errors()["emergency_medical_release"] >= 1
        assert (
            "NUL" in pack.last_errors()["emergency_medical_release"]
            or "value type" in (pack.last_errors()["emergency_medical_release"])
        )


@pytest.mark.parametrize(
    ("expr", "facts"),
    [
        ("hs_median_n >= 20", {"hs_median_n": 2**63}),
        ("hs_median_n >= 20", {"hs_median_n": -(2**63) - 1}),
        ("double(hs_median_n) > 1.0", {"hs_median_n": 10**400}),
        ("hs_median_n % -1 == 0", {"hs_median_n": -(2**63)}),
        ("hs_median_n / -1 > 0", {"hs_median_n": -(2**63)}),
        ("-9223372036854775808 % -1 == 0 || weigh_present", {}),
        ("{'a': 1, 'a': 2}.size() == 1 || true", {}),
        ("true || {'a': 1, 'a': 2}.size() == 1", {}),
        ("{hs4: 1, grade: 2}.size() == 2", {"hs4": "x", "grade": "x"}),
        ("'track' in missing", {"missing": [1, "track"]}),
        ("'track' in missing", {"missing": ["track\x00"]}),
        ("size(missing) == 1 || weigh_present", {"missing": [["x"]]}),
        ("purpose != 'medical'", {"purpose": "medical\x00"}),
        ("weigh_present || purpose == 'x'", {"weigh_present": True, "purpose": "x\ud800"}),
        ("purpose == 'x' || weigh_present", {"weigh_present": True, "purpose": "x\ud800"}),
        ("purpose == 'x' && weigh_present", {"weigh_present": False, "purpose": "x\x00"}),
        ("--hs_median_n == split_count_24h", {"hs_median_n": -(2**63), "split_count_24h": 1}),
        ("!!weigh_present", {"weigh_present": True}),
    ],
)
def test_fast_path_agrees_with_the_reference_on_issue_17_5(expr: str, facts: dict[str, Any]) -> None:
    text = (
        "name: p\nversion: 1\nrules:\n"
        f'  - {{id: r, title: t, expression: "{expr}", lane: release, severity: low, status: active,'
        " owner: o, version: 1, reason: r}\n"
    )
    pack = CompiledPack.compile(parse_pack(text, "<p>"))
    [c] = pack.rules
    env = dict(NEUTRAL, **facts)
    fast, reference = c.fast_and_reference(env)
    assert fast is None or fast == reference
    assert [h.rule_id for h in pack.evaluate(env)] == (["r"] if reference else [])


def test_int64_min_modulo_minus_one_overflows_on_the_fast_path() -> None:
    for expr in ("-9223372036854775808 % -1 == 0", "-9223372036854775808 / -1 == 0"):
        with pytest.raises(CelError):
            compile_cel(expr)({})


def test_last_errors_keeps_the_message_per_rule() -> None:
    pack = CompiledPack.compile(load_pack(PACKS / "starter.yaml"))
    pack.evaluate(dict(NEUTRAL, split_count_24h=2**64))
    assert pack.errors() == {"split_shipments": 1}
    assert pack.last_errors() == {"split_shipments": "fact split_count_24h: integer out of the 64-bit range"}


class ExprFuzz:
    """Random well-typed expressions over a few facts of each type, with edge values (int64 bounds, -0.0,
    NaN, inf, NUL, lone surrogates, non-string list elements)."""

    INTS = ("hs_median_n", "split_count_24h", "sd_open_entries")
    DBLS = ("gross_kg", "unit_value_ratio", "weigh_excess_ratio")
    STRS = ("hs4", "purpose", "mode")
    BOOLS = ("weigh_present", "track_present")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, *xs: str) -> str:
        return self.rng.choice(xs)

    def i(self, d: int = 0) -> str:
        r = self.rng.random()
        if d > 3 or r < 0.3:
            return self.pick(*self.INTS, "0", "1", "-1", "2", "9223372036854775807", "-9223372036854775808")
        if r < 0.5:
            return f"({self.i(d + 1)} {self.pick('+', '-', '*', '/', '%')} {self.i(d + 1)})"
        if r < 0.6:
            return f"-{self.i(d + 1)}"
        if r < 0.7:
            return f"size({self.s(d + 1)})"
        if r < 0.8:
            return f"({self.b(d + 1)} ? {self.i(d + 1)} : {self.i(d + 1)})"
        return self.pick(*self.INTS)

    def f(self, d: int = 0) -> str:
        r = self.rng.random()
        if d > 3 or r < 0.4:
            return self.pick(*self.DBLS, "0.0", "1.5", "-0.0", "1e308")
        if r < 0.6:
            return f"({self.f(d + 1)} {self.pick('+', '-', '*', '/')} {self.f(d + 1)})"
        if r < 0.8:
            return f"double({self.i(d + 1)})"
        return f"-{self.f(d + 1)}"

    def s(self, d: int = 0) -> str:
        if d > 3 or self.rng.random() < 0.6:
            return self.pick(*self.STRS, '"2701"', '"medical"', '""', '"a\\u0000b"')
        return f"({self.s(d + 1)} + {self.s(d + 1)})"

    def b(self, d: int = 0) -> str:
        r = self.rng.random()
        cmp = self.pick("<", "<=", ">", ">=", "==", "!=")
        if d > 3 or r < 0.15:
            return self.pick(*self.BOOLS, "true", "false")
        if r < 0.3:
            return f"({self.i(d + 1)} {cmp} {self.i(d + 1)})"
        if r < 0.4:
            return f"({self.f(d + 1)} {cmp} {self.f(d + 1)})"
        if r < 0.5:
            return f"({self.s(d + 1)} {cmp} {self.s(d + 1)})"
        if r < 0.55:
            return f"{self.s(d + 1)}.{self.pick('startsWith', 'endsWith', 'contains')}({self.s(d + 1)})"
        if r < 0.6:
            return f"({self.s(d + 1)} in missing)"
        if r < 0.65:
            return f"({self.i(d + 1)} in [{self.i(d + 1)}, {self.i(d + 1)}])"
        if r < 0.75:
            return f"({self.b(d + 1)} {self.pick('&&', '||')} {self.b(d + 1)})"
        if r < 0.8:
            return f"!{self.b(d + 1)}"
        if r < 0.85:
            return f"({self.b(d + 1)} ? {self.b(d + 1)} : {self.b(d + 1)})"
        if r < 0.9:
            return f"({{'a': {self.i(d + 1)}, 'b': {self.i(d + 1)}}}.a == {self.i(d + 1)})"
        return f"([{self.i(d + 1)}, {self.i(d + 1)}][{self.i(d + 1)}] == {self.i(d + 1)})"

    def facts(self) -> dict[str, Any]:
        rng = self.rng
        f: dict[str, Any] = dict(NEUTRAL, missing=rng.choice([[], ["track"], ["a\x00"], [1]]))
        for n in self.INTS:
            f[n] = rng.choice([0, 1, 2, -1, 25, 2**63 - 1, -(2**63), 2**63])
        for n in self.DBLS:
            f[n] = rng.choice([0.0, -0.0, 1.5, float("nan"), float("inf"), 1e308, 2])
        for n in self.STRS:
            f[n] = rng.choice(["", "2701", "medical", "medical\x00", "ab\u4e2d", "x\ud800", "tab\there"])
        for n in self.BOOLS:
            f[n] = rng.choice([True, False, 1])
        return f


@pytest.mark.parametrize("seed", [1, 2])
def test_random_expressions_answer_the_same_on_both_paths(seed: int) -> None:
    """The fast path, when it answers, gives the reference's answer (an error counts as one answer)."""
    from rules.check import compile_reference
    from rules.engine import _for_reference

    fuzz, answered = ExprFuzz(seed), 0
    for _ in range(700):
        expr = fuzz.b()
        try:
            reference = compile_reference(expr)
            fast = compile_cel(expr, FACT_TYPES)
        except (ValueError, Refused):
            continue
        for _ in range(3):
            facts = fuzz.facts()
            try:
                value = reference.eval(data=_for_reference(facts)).value()
            except RuntimeError:
                value = None
            want = value if type(value) is bool else "error"
            try:
                got = fast(facts)
            except CelError:
                got = "error"
            except (Unsupported, KeyError):
                continue  # refused at run time: the reference answers
            answered += 1
            assert got == want, (expr, facts)
    assert answered > 1000


def test_a_pack_of_many_runaway_rules_is_refused_quickly() -> None:
    """Probing stops once the pack is far over its limit: 300 runaway rules do not cost 300
    probes (the worker compiles a published pack in its event loop)."""
    forty = "[" + ",".join(map(str, range(40))) + "]"
    rule = (
        '  - {{id: r{i}, title: t, expression: "{forty}.map(a, {forty}.map(b, goods + goods)).size() > 0",'
        " lane: document_check, severity: low, status: active, owner: o, version: 1, reason: r}}\n"
    )
    text = "name: p\nversion: 1\nrules:\n" + "".join(rule.format(i=i, forty=forty) for i in range(300))
    parsed = parse_pack(text, "<p>")
    with pytest.raises(PackError) as err:
        CompiledPack.compile(parsed)
    assert "r0: costs" in str(err.value)
    # each probed rule is over its 1 ms: probing stopped past 50 ms in all, so at most ~50 were probed
    assert 1 <= len(err.value.issues) <= 51
