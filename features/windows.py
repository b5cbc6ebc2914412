"""Window geometry as pure functions of event time (milliseconds): which windows a timestamp belongs to
(tumbling, hopping, sliding, session). The aggregators over them are in features/aggregates.py.
"""

from __future__ import annotations


def tumbling_window(ts_ms: int, size_ms: int) -> tuple[int, int]:
    """The [start, end) tumbling window containing ``ts_ms``."""
    start = ts_ms - ts_ms % size_ms
    return start, start + size_ms


def hopping_windows(ts_ms: int, size_ms: int, step_ms: int) -> list[tuple[int, int]]:
    """Every [start, end) window of length ``size_ms`` advancing by ``step_ms`` that contains ``ts_ms``."""
    if step_ms <= 0 or size_ms <= 0 or size_ms % step_ms:
        raise ValueError("size_ms must be a positive multiple of step_ms")
    last = ts_ms - ts_ms % step_ms
    return [(s, s + size_ms) for s in range(last - size_ms + step_ms, last + step_ms, step_ms)]


def sliding_window(ts_ms: int, size_ms: int) -> tuple[int, int]:
    """The window of the ``size_ms`` before and including ``ts_ms``: (ts - size, ts]."""
    return ts_ms - size_ms, ts_ms


def session_windows(timestamps: list[int], gap_ms: int) -> list[tuple[int, int]]:
    """Group sorted timestamps into sessions separated by more than ``gap_ms``; [first, last] per session."""
    out: list[tuple[int, int]] = []
    for ts in timestamps:
        if out and ts - out[-1][1] <= gap_ms:
            out[-1] = (out[-1][0], ts)
        else:
            out.append((ts, ts))
    return out
