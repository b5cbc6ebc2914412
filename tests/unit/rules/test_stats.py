"""RuleStats: evaluations, hits, shadow hits, dispatched, results, confirmed, hit rate per rule and port."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from features.schema import NEUTRAL
from rules.engine import CompiledPack, RuleHit
from rules.pack import parse_pack
from rules.stats import OTHER, RuleStats

PACK = """name: s
version: 1
rules:
  - {id: heavy, title: t, expression: "gross_kg > 100.0", lane: document_check, severity: high,
     status: active, owner: o, version: 1, reason: "{gross_kg:.0f} kg"}
  - {id: probe, title: t, expression: "gross_kg > 50.0", lane: document_check, severity: low,
     status: shadow, owner: o, version: 1, reason: "probe"}
  - {id: local, title: t, expression: "gross_kg > 10.0", lane: physical_inspection, severity: high,
     status: active, owner: o, version: 1, reason: "local", scope: EHT}
"""


def hit(rule_id: str, status: str = "active") -> RuleHit:
    return RuleHit(rule_id, "document_check", "high", status, "global", "dispatch", "", {})


def run_pack(stats: RuleStats, pack: CompiledPack, decls: list[tuple[str, float, bool]]) -> None:
    for port, kg, dispatched in decls:
        hits = pack.evaluate(dict(NEUTRAL, port=port, gross_kg=kg))
        stats.on_evaluated(port, pack.in_scope(port))
        stats.on_hits(port, hits, dispatched=dispatched)


def test_counts_per_rule_and_port_from_the_engine() -> None:
    pack = CompiledPack.compile(parse_pack(PACK, "<s>"))
    stats = RuleStats()
    decls = [("EHT", 120.0, True), ("EHT", 60.0, False), ("GQM", 200.0, False), ("GQM", 1.0, False)]
    run_pack(stats, pack, decls)
    snap = stats.snapshot()["rules"]
    assert {k: snap["heavy"][k] for k in ("evaluations", "hits", "dispatched")} == {
        "evaluations": 4,
        "hits": 2,
        "dispatched": 1,
    }
    assert snap["heavy"]["ports"]["GQM"]["hits"] == 1
    assert (snap["probe"]["hits"], snap["probe"]["shadow_hits"], snap["probe"]["dispatched"]) == (0, 3, 0)
    # the site-scoped rule is evaluated only at its site
    assert snap["local"]["evaluations"] == 2 and set(snap["local"]["ports"]) == {"EHT"}
    assert snap["local"]["hits"] == 2


@pytest.mark.parametrize(
    ("results", "rate"),
    [([], None), ([True], 1.0), ([True, False, False, False], 0.25), ([False, False], 0.0)],
)
def test_hit_rate_is_confirmed_over_results(results: list[bool], rate: float | None) -> None:
    stats = RuleStats()
    stats.on_hits("EHT", [hit("r1")] * len(results), dispatched=True)
    for found in results:
        stats.on_result("EHT", ["r1"], violation=found)
    snap = stats.snapshot()
    cell = snap["rules"]["r1"]["ports"]["EHT"] if results else {"hit_rate": None}
    assert cell["hit_rate"] == rate
    if results:
        assert snap["rules"]["r1"]["hit_rate"] == rate == snap["ports"]["EHT"]["hit_rate"]


def test_per_port_hit_rates_differ_and_roll_up() -> None:
    stats = RuleStats()
    for port, found in [("EHT", True), ("EHT", True), ("GQM", False), ("GQM", True)]:
        stats.on_result(port, ["r1", "r2"], violation=found)
    snap = stats.snapshot()
    assert snap["rules"]["r1"]["ports"]["EHT"]["hit_rate"] == 1.0
    assert snap["rules"]["r1"]["ports"]["GQM"]["hit_rate"] == 0.5
    assert snap["rules"]["r1"]["hit_rate"] == 0.75
    assert snap["ports"]["GQM"]["results"] == 4  # two rules, two results each


def test_state_is_bounded_and_nothing_is_dropped() -> None:
    stats = RuleStats(max_keys=10)
    for i in range(50):
        stats.on_hits(f"P{i}", [hit("r1")], dispatched=False)
    snap = stats.snapshot()
    assert len(stats._counts) <= 11
    assert snap["rules"]["r1"]["hits"] == 50
    assert snap["rules"]["r1"]["ports"][OTHER]["hits"] == 40


def test_snapshot_is_json_and_merges_across_workers(tmp_path: Path) -> None:
    a, b = RuleStats(), RuleStats()
    a.on_hits("EHT", [hit("r1"), hit("r2", "shadow")], dispatched=True)
    a.on_result("EHT", ["r1"], violation=True)
    b.on_hits("EHT", [hit("r1")], dispatched=True)
    b.on_result("EHT", ["r1"], violation=False)
    total = RuleStats()
    for s in (a, b):
        total.merge(orjson.loads(orjson.dumps(s.snapshot())))
    r1 = total.snapshot()["rules"]["r1"]
    assert (r1["hits"], r1["dispatched"], r1["results"], r1["confirmed"], r1["hit_rate"]) == (2, 2, 2, 1, 0.5)
    assert total.snapshot()["rules"]["r2"]["shadow_hits"] == 1
