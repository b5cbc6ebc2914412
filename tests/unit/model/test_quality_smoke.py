"""The quality benchmark runs end to end in seconds and reports every strategy the way its goals ask."""

from __future__ import annotations

import json

from benchmarks import quality
from benchmarks.quality_common import mean_ci


def test_quality_smoke_reports_every_strategy_with_intervals_and_the_hybrid_beats_random() -> None:
    lines: list[str] = []
    summary = quality.main(["--smoke", "--world", "synthetic", "--scenario", "drift"], out=lines.append)
    assert json.loads(lines[-1]) == summary
    result = summary["drift"]
    assert {"random", "rules", "model", "batch", "batch_rules", "hybrid"} <= set(result)
    assert result["random"]["precision"]["n"] == 2  # two seeds in a smoke run
    for name in quality.STRATEGIES:
        row = result[name]
        p = row["precision"]
        assert 0.0 <= p["mean"] <= 1.0 and p["lo"] <= p["mean"] <= p["hi"]
        assert "max_site_day_deviation_points" in row
    assert result["hybrid"]["precision"]["mean"] > 3 * result["random"]["precision"]["mean"]
    assert set(result["hybrid"]["ratios"]) >= {
        "hybrid_over_random",
        "hybrid_over_rules",
        "hybrid_over_batch_rules",
    }


def test_mean_ci_is_a_student_interval() -> None:
    ci = mean_ci([0.4, 0.5, 0.6, 0.5, 0.5])
    assert ci["mean"] == 0.5 and ci["lo"] < 0.5 < ci["hi"] and ci["n"] == 5
    assert round(ci["hi"] - 0.5, 3) == round(2.78 * (0.005**0.5) / 5**0.5, 3)
    assert mean_ci([0.3])["lo"] == 0.3
