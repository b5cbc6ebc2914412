"""The quality benchmark runs end to end in seconds and ranks strategies the way its goals say."""

from __future__ import annotations

import json

from benchmarks import quality


def test_quality_smoke_reports_every_strategy_and_the_hybrid_beats_random():
    lines: list[str] = []
    result = quality.main(["--smoke", "--world", "synthetic", "--scenario", "drift"], out=lines.append)
    assert json.loads(lines[-1]) == result
    assert set(result) == {"random", "rules", "model", "hybrid", "batch"}
    for row in result.values():
        assert 0.0 <= row["precision"] <= 1.0 and 0.0 <= row["value_recall"] <= 1.0
        assert row["inspections"] > 0
    assert result["hybrid"]["precision"] > 3 * result["random"]["precision"]
    assert result["hybrid"]["value_recall"] > result["random"]["value_recall"]
