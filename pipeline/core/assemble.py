"""The one engine builder: the production wiring of joiner, rules, model, policy and snapshots.

Used by the Faust agents, the replay and golden tests, the backtest and the benchmarks, so every one of them
runs exactly the decisions the workers make.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from features.engine import FeatureConfig, FeatureEngine
from features.watchlist import Watchlists
from pipeline.contracts import sites
from pipeline.contracts.settings import Settings
from pipeline.core.decision.snapshots import SnapshotStore
from pipeline.core.engine import Engine
from pipeline.core.model import ModelRegistry, RiskModel
from pipeline.core.policy import DecisionPolicy
from pipeline.core.policy_settings import policy_config
from pipeline.core.ports import Joiner
from rules.engine import load_default_pack

log = logging.getLogger("bukong.core")


def feature_config(**overrides: Any) -> FeatureConfig:
    """The feature engine's geography: border crossings, approved corridors, ports and yards."""
    places = tuple(p.pos for p in sites.PORTS.values()) + tuple(sites.YARDS.values())
    return FeatureConfig(
        crossings=tuple(sites.CROSSINGS.values()),
        corridors=tuple(sites.CORRIDORS.values()),
        sites=places,
        **overrides,
    )


def build_joiner(watchlists: Watchlists | None = None, **overrides: Any) -> FeatureEngine:
    """The stream join and rolling features, on the project's geography."""
    return FeatureEngine(feature_config(**overrides), watchlists=watchlists)


def build_engine(
    settings: Settings | None = None, model_path: Path | None = None, joiner: Joiner | None = None
) -> Engine:
    """The production engine: the live rule pack, the champion model (restored from ``model_path`` when it
    holds one), the budgeted decision policy (``settings.policy`` over its defaults) with the sites' rosters,
    and the snapshot store. ``joiner`` replaces the production join (the core benchmark's baselines)."""
    settings = settings or Settings()
    champion = RiskModel()
    if model_path is not None and champion.restore(model_path):
        log.info("model restored from %s (version %d)", model_path, champion.version)
    return Engine(
        joiner=joiner if joiner is not None else build_joiner(),
        rules=load_default_pack(settings.rule_pack),
        model=ModelRegistry(champion),
        policy=DecisionPolicy(policy_config(settings.policy_overrides), rosters=sites.rosters()),
        snapshots=SnapshotStore(),
        squads=sites.MOBILE_SQUADS,
        border=sites.BORDER,
    )
