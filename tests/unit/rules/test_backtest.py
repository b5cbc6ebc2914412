"""Backtest: numbers against a hand-computed case, and a recording replayed end to end."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from features.schema import NEUTRAL
from pipeline.apps.backtest import DAY, backtest, evaluate
from rules.engine import CompiledPack
from rules.pack import parse_pack
from tests.conftest import declaration, weighbridge

RULE = """  - {{id: {id}, title: t, expression: "{expr}", lane: document_check, severity: high,
     status: {status}, owner: o, version: 1, reason: r}}
"""


def pack_text(version: int, *rules: tuple[str, str, str]) -> str:
    body = f"name: p\nversion: {version}\nrules:\n"
    return body + "".join(RULE.format(id=i, expr=e, status=s) for i, e, s in rules)


def test_backtest_numbers_match_a_hand_computed_case() -> None:
    pack = CompiledPack.compile(
        parse_pack(
            pack_text(2, ("heavy", "gross_kg > 100.0", "active"), ("watch", "watch_enterprise", "shadow"))
        )
    )
    rows = [  # decl, port, day, gross_kg, watch_enterprise
        ("d1", "EHT", 0, 150.0, False),
        ("d2", "EHT", 0, 120.0, True),
        ("d3", "EHT", 1, 130.0, False),
        ("d4", "GQM", 0, 90.0, True),
        ("d5", "GQM", 0, 500.0, False),
    ]
    facts = [
        dict(NEUTRAL, decl_id=d, port=p, ts_ms=day * DAY + 1000, gross_kg=kg, watch_enterprise=w)
        for d, p, day, kg, w in rows
    ]
    truth = {
        "d1": {"is_fraud": True, "value_at_stake_cny": 1000.0},
        "d2": {"is_fraud": False, "value_at_stake_cny": 0.0},
        "d4": {"is_fraud": True, "value_at_stake_cny": 250.0},
        "d5": {"is_fraud": True, "value_at_stake_cny": 50.0},
    }
    res, n = evaluate(pack, facts, truth)
    assert n == 5
    heavy, watch = res["heavy"], res["watch"]
    # heavy: d1, d2, d3 (EHT), d5 (GQM); frauds d1, d5
    assert (heavy.hits, heavy.frauds, heavy.value_found) == (4, 2, 1050.0)
    assert heavy.precision == 0.5
    assert dict(heavy.per_site_day) == {("EHT", 0): 2, ("EHT", 1): 1, ("GQM", 0): 1}
    # watch (shadow rules are backtested too): d2, d4; fraud d4
    assert (watch.hits, watch.frauds, watch.value_found, watch.precision) == (2, 1, 250.0, 0.5)


def test_no_hits_means_no_precision() -> None:
    pack = CompiledPack.compile(parse_pack(pack_text(1, ("heavy", "gross_kg > 100.0", "active")), "<p>"))
    res, n = evaluate(pack, [dict(NEUTRAL, decl_id="d", port="EHT", gross_kg=1.0)], {})
    assert (n, res["heavy"].hits, res["heavy"].precision) == (1, 0, None)


@pytest.fixture
def recording(tmp_path: Path) -> tuple[Path, Path]:
    """Two trucks at EHT: one 10% heavier on the weighbridge than declared (a fraud), one as declared."""
    t0 = 1_700_000_000_000
    recs = []
    for uid, measured in (("u1", 33_000.0), ("u2", 30_050.0)):
        recs.append(("logistics", weighbridge(uid, "TRK", measured, ts_ms=t0)))
        recs.append(("declarations", declaration(uid, "TRK", gross_kg=30_000.0, ts_ms=t0 + 60_000)))
    events = tmp_path / "rec.jsonl"
    lines = [orjson.dumps({"topic": t, "key": None, "event": e}) for t, e in recs]
    events.write_bytes(b"\n".join([*lines, b"not json", b""]))
    truth = tmp_path / "truth.jsonl"
    truth.write_bytes(
        b"\n".join(
            orjson.dumps({"decl_id": f"D-{u}-TRK", "is_fraud": f, "typology": "t", "value_at_stake_cny": v})
            for u, f, v in (("u1", True, 5000.0), ("u2", False, 0.0))
        )
    )
    # the intelligence leads beside the recording, as the simulator writes them
    lead = {"kind": "enterprise", "id": "E0001", "source": "x"}
    (tmp_path / "rec.intel.jsonl").write_bytes(orjson.dumps(lead))
    return events, truth


def test_backtest_replays_a_recording_and_writes_report_and_plot(
    recording: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, truth = recording
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(
        pack_text(
            2,
            ("weigh5", "weigh_present && weigh_excess_ratio > 0.05", "shadow"),
            ("watched", "watch_enterprise", "active"),
        )
    )
    baseline = tmp_path / "live.yaml"
    baseline.write_text(pack_text(1, ("weigh1", "weigh_present && weigh_excess_ratio > 0.001", "active")))
    out = tmp_path / "out"
    assert backtest(candidate, baseline, events, truth, out) == 0
    captured = capsys.readouterr()
    summary = orjson.loads(captured.out.strip().splitlines()[-1])
    assert summary["declarations"] == 2
    assert summary["rules"]["weigh5"] == {
        "hits": 1,
        "precision": 1.0,
        "value_found_cny": 5000.0,
        "baseline_hits": None,
        "errors": 0,
    }
    assert summary["rules"]["watched"]["hits"] == 2  # the watchlist beside the recording was loaded
    report = (out / "backtest.md").read_text()
    assert "| weigh5 | shadow | 1 |" in report and "new rule" in report
    assert "| weigh1 | removed | 0 | - | - | - | 2 | -2 | - |" in report
    assert (out / "backtest.png").read_bytes()[:4] == b"\x89PNG"
    assert "1 line(s) are not recorded events" in captured.err


def test_backtest_refuses_an_invalid_candidate(recording: tuple[Path, Path], tmp_path: Path) -> None:
    events, truth = recording
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(pack_text(2, ("typo", "unit_pric < 0.6", "active")))
    assert backtest(candidate, candidate, events, truth, tmp_path / "out") == 1


def test_backtest_skips_events_that_break_their_contract_and_counts_rule_errors(
    recording: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recording is read as a worker reads its topics: an event that breaks its contract (a declaration
    without its weights, a weighbridge reading without a weight, an unknown topic) is skipped and reported,
    never fed to the core; a rule's evaluation errors are counted in the report."""
    events, truth = recording
    odd = [
        {"topic": "declarations", "event": {"decl_id": "X1", "ts_ms": 1_700_000_000_000}},
        {
            "topic": "logistics",
            "event": {
                "event_id": "W",
                "kind": "weighbridge",
                "ts_ms": 1_700_000_000_000,
                "conveyance_id": "TRK",
                "port": "EHT",
            },
        },
        {"topic": "nonsense", "event": {"ts_ms": 1_700_000_000_000}},
    ]
    events.write_bytes(events.read_bytes() + b"\n" + b"\n".join(orjson.dumps(r) for r in odd) + b"\n")
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(pack_text(2, ("per_split", "ent_decl_24h / split_count_24h > 1", "active")))
    out = tmp_path / "out"
    assert backtest(candidate, candidate, events, truth, out) == 0
    captured = capsys.readouterr()
    summary = orjson.loads(captured.out.strip().splitlines()[-1])
    assert summary["declarations"] == 2 and summary["skipped_lines"] == 4
    assert summary["rules"]["per_split"]["errors"] == 2  # no split shipments: division by zero
    assert "missing_field" in captured.err and "unknown_topic" in captured.err
    assert "- per_split: 2 of 2 declarations, last: division by zero" in (out / "backtest.md").read_text()


def test_backtest_says_what_is_wrong_with_its_input_files(
    recording: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, _ = recording
    pack = tmp_path / "p.yaml"
    pack.write_text(pack_text(1, ("heavy", "gross_kg > 100.0", "active")))
    bad_truth = tmp_path / "truth.jsonl"
    bad_truth.write_bytes(b'{"decl_id": "a"}\n\n[1]\n')
    assert backtest(pack, pack, events, bad_truth, tmp_path / "out") == 1
    assert f"{bad_truth}:3: ground truth: not a JSON object" in capsys.readouterr().err
    assert backtest(pack, pack, tmp_path / "none.jsonl", None, tmp_path / "out") == 1
    assert "no such recording" in capsys.readouterr().err
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b'{"topic": "declarations", "event": {"decl_id": "X"}}\nnot json\n')
    assert backtest(pack, pack, junk, None, tmp_path / "out") == 1  # nothing decided is not a result
    err = capsys.readouterr().err
    assert "no declaration to decide (2 line(s) skipped" in err and "missing_field" in err
