"""Watchlists held in Redis (one hash per kind: id -> {"source", "expires_ms"}), reloaded by every worker.

Analysts add or remove entries live (`python -m pipeline watch add|remove|list`); workers reload them every
few seconds into the feature engine's in-memory Watchlists, so an update takes effect without a restart.
"""

from __future__ import annotations

from typing import Any

import orjson

from features.watchlist import KINDS, Watchlists
from pipeline.contracts.commands import WATCHLIST_PREFIX


async def load(redis: Any, max_entries: int = 100_000) -> Watchlists:
    pipe = redis.pipeline(transaction=False)
    for kind in KINDS:
        pipe.hgetall(WATCHLIST_PREFIX + kind)
    w = Watchlists(max_entries=max_entries)
    for kind, entries in zip(KINDS, await pipe.execute(), strict=True):
        for k, v in entries.items():
            d = orjson.loads(v)
            w.add(kind, k.decode() if isinstance(k, bytes) else k, str(d["source"]), int(d["expires_ms"]))
    return w


def put(redis: Any, kind: str, id_: str, source: str, expires_ms: int) -> None:
    """Synchronous (CLI, tests): add or refresh one entry."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    redis.hset(WATCHLIST_PREFIX + kind, id_, orjson.dumps({"source": source, "expires_ms": expires_ms}))


def remove(redis: Any, kind: str, id_: str) -> int:
    return int(redis.hdel(WATCHLIST_PREFIX + kind, id_))
