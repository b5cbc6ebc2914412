"""The seams of the core, as Protocols: what the engine needs of its joiner, model, policy and snapshot store.

The engine and the agents call these and nothing else, so any implementation that satisfies them (the
production ones in features/ and pipeline/core/, the doubles in tests) can be wired in by
``pipeline/core/assemble.py``; mypy checks every one against them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from features.engine import Ready
from features.watchlist import Watchlists
from pipeline.core.decision.snapshots import Snapshot
from pipeline.core.policy import Decision as PolicyDecision


class Joiner(Protocol):
    """Joins a conveyance's events into declarations ready to score, and keeps the state to do so."""

    watch: Watchlists

    def on_event(self, topic: str, ev: dict[str, Any]) -> list[Ready]: ...

    def advance(self, watermark_ms: int) -> list[Ready]: ...

    def drain_dirty(self) -> dict[str, bytes | None]: ...

    def restore_keys(self, snaps: dict[str, bytes]) -> None: ...

    def drain_late(self) -> list[tuple[str, dict[str, Any]]]: ...


class Model(Protocol):
    """Scores facts, explains a score, learns from a labelled snapshot."""

    @property
    def version(self) -> int: ...

    def score(self, facts: Mapping[str, Any]) -> float: ...

    def explain(self, facts: Mapping[str, Any], k: int = 3) -> list[dict[str, Any]]: ...

    def learn(
        self, facts_snapshot: Mapping[str, Any], label: bool, weight: float = 1.0, ts_ms: int = 0
    ) -> Any: ...

    def checkpoint(self, path: str | os.PathLike[str]) -> None: ...


class Policy(Protocol):
    """Owns the whole decision: lane, severity, selection, site, officers, reasons."""

    def decide(
        self, decl: Mapping[str, Any], facts: Mapping[str, Any], hits: Sequence[Any], score: float, ts_ms: int
    ) -> PolicyDecision: ...

    def officers(self, decl_id: str, site: str, lane: str) -> list[str]: ...

    def grade_keys(
        self, decl: Mapping[str, Any], facts: Mapping[str, Any], hits: Sequence[Any]
    ) -> list[str]: ...

    def on_result(self, meta: Mapping[str, Any], violation: bool) -> None: ...

    def use_ratios(self) -> dict[str, float]: ...

    def budget_share(self) -> float | None: ...  # the daily inspection share it aims at (None: no budget)


class SnapshotStore(Protocol):
    """The facts a dispatched declaration was scored on, kept until its result teaches the model."""

    def put(self, decl_id: str, facts: Mapping[str, Any], ts_ms: int, **meta: Any) -> None: ...

    def get(self, decl_id: str) -> Snapshot | None: ...

    def pop(self, decl_id: str, now_ms: int) -> Snapshot | None: ...
