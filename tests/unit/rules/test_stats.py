"""Hit rates per rule, per site and per lead source from the workers' counters (rules/stats.py: the one
computation)."""

from __future__ import annotations

from rules.stats import hit_rate, leads, tally


def test_hit_rate_is_confirmed_over_results_and_none_before_a_result() -> None:
    assert hit_rate(0, 0) is None
    assert hit_rate(3, 4) == 0.75
    assert hit_rate(1, 3) == 0.333
    assert hit_rate(0, 5) == 0.0


def test_counts_roll_up_per_rule_and_per_site() -> None:
    raw = {
        b"r1|EHT|hits": b"4",
        b"r1|EHT|results": b"2",
        b"r1|EHT|confirmed": b"2",
        b"r1|GQM|results": b"2",
        b"r1|GQM|confirmed": b"0",
        b"r2|GQM|shadow_hits": b"7",
    }
    rules, sites = tally(raw)
    assert rules["r1"] == {"hits": 4, "results": 4, "confirmed": 2, "hit_rate": 0.5}
    assert rules["r2"] == {"shadow_hits": 7, "hit_rate": None}
    assert sites["EHT"]["hit_rate"] == 1.0 and sites["GQM"]["hit_rate"] == 0.0
    assert sites["GQM"]["shadow_hits"] == 7


def test_malformed_counters_are_skipped() -> None:
    raw = {
        b"no-bars": b"1",
        b"a|b|c|d": b"1",
        b"r|P|hits": b"-3",
        b"r|P|results": b"x",
        b"r|P|confirmed": b"1",
    }
    rules, sites = tally(raw)
    assert rules == {"r": {"confirmed": 1, "hit_rate": None}}
    assert set(sites) == {"P"}


def test_lead_sources_count_results_and_confirmed_with_the_same_hit_rate() -> None:
    raw = {
        b"informant|results": b"4",
        b"informant|confirmed": b"3",
        b"hotline|results": b"2",
        b"hotline|confirmed": b"0",
        b"a|b|results": b"1",  # a source may hold "|": the metric is after the last one
        b"fresh|confirmed": b"0",
        b"x|hits": b"5",  # not a lead metric
        b"nobar": b"1",
        b"y|results": b"-1",
    }
    assert leads(raw) == {
        "informant": {"results": 4, "confirmed": 3, "hit_rate": hit_rate(3, 4)},
        "hotline": {"results": 2, "confirmed": 0, "hit_rate": 0.0},
        "a|b": {"results": 1, "confirmed": 0, "hit_rate": 0.0},
        "fresh": {"results": 0, "confirmed": 0, "hit_rate": None},
    }
