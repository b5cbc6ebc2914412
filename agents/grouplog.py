"""The consumer group's decision log: one site budget, one set of grades and one model for every worker.

A site's inspection budget is the site's, not a worker's: its threshold is a quantile of the site's recent
ranks, its pace counts the site's inspections today. The model and the rule and lead grades learn from every
inspection result, whichever worker took the result in. Each worker keeps them in its engine, and the engine
journals what changes them (``Engine.share_group``): per decision its effect on the site's budget, per
result learnt the labelled facts. This module carries the journal between workers through one Redis stream:

* ``stage(pipe)`` (in the batch's MULTI/EXEC, with the changelog and the applied offsets): this worker's
  entries, appended once each (a per-day hash of entry references makes the append idempotent: a batch
  saved twice appends nothing the second time);
* ``queue_read(pipe)`` / ``fold(reply)`` (before a batch that may decide, in the same round trip as the
  shared facts' read): the entries appended since this worker's cursor, folded in log order
  (``Engine.apply_group``; the worker's own are skipped, it made them);
* ``catch_up()`` (before the first batch): the group's checkpoint (model, budget and grades as of a log
  position), then every entry after it. A worker that joins or restarts decides with the group's state.

Layout (``<ns>:g:`` prefix):

=====================  ======  ==============================================================================
``log``                stream  field ``e``: ``["b", ref, site, ts, rank, value, inspected, hard]`` per
                               decision, ``["l", decl_id, ts, label, weight, grading, facts]`` per
                               result learnt; about the last ``LOG_KEEP`` entries
``logged:<day>``       hash    entry reference -> 1, the append's dedupe (event-time day; 3 days)
``state``              hash    ``id`` (the log position), ``model`` (the champion's bytes), ``policy``
                               (budget and grades, JSON): written with a batch every ``CHECKPOINT_S``
=====================  ======  ==============================================================================

Order: every worker folds the log in its order. Its own decisions it applies as it makes them, so with
concurrent workers an entry of another worker appended a moment before one of its own is folded after it:
the window of ranks and the day's counts are the same sets, and the model's updates may differ in order
by a batch's worth of results. The checkpoint's model is a pickle: Redis is trusted like the rest of the
group's state (anyone who can write it can also write commands and watchlists).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson

log = logging.getLogger("bukong.grouplog")

LOG_KEEP = 200_000  # entries kept (about a day of decisions and results at 10x the simulated traffic)
PAGE = 5_000  # entries per read
CHECKPOINT_S = 30.0
DAY_MS = 86_400_000

# KEYS[1] the log, KEYS[2] the day's dedupe hash. ARGV: maxlen, dedupe ttl, then (ref, entry) pairs; an
# empty ref is always appended.
APPEND_LUA = """
local n = 0
for i = 3, #ARGV, 2 do
  if ARGV[i] == '' or redis.call('HSETNX', KEYS[2], ARGV[i], 1) == 1 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i + 1])
    n = n + 1
  end
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return n
"""


class GroupLog:
    def __init__(self, redis: Any, engine: Any, namespace: str = "bukong") -> None:
        self.redis = redis
        self.engine = engine
        self.ns = f"{namespace}:g:"
        self.key = f"{self.ns}log"
        self.state_key = f"{self.ns}state"
        self.cursor: str | None = None  # the last log id folded; None before catch_up()
        self.folded = 0  # entries of other workers folded in
        self.unreadable = 0  # entries in a shape this version cannot fold (skipped, logged)
        self._unsent: list[list[Any]] = []
        self._checkpoint: dict[str, Any] | None = None
        self._next_checkpoint = time.monotonic() + CHECKPOINT_S
        engine.share_group()

    # -- read --------------------------------------------------------------------------------------------
    async def catch_up(self) -> int:
        """Load the group's checkpoint and fold every entry after it; returns the entries folded."""
        ident, model, policy = await self.redis.hmget(self.state_key, "id", "model", "policy")
        start = "-"
        if ident:
            try:
                self._restore(model, policy)
                start = f"({_s(ident)}"
                self.cursor = _s(ident)
            except Exception as exc:  # any shape a checkpoint can take: fold the whole log instead
                log.warning(
                    "the group's checkpoint is unreadable (%s: %s); folding the whole log instead",
                    type(exc).__name__,
                    exc,
                )
        n = 0
        while True:
            page = await self.redis.xrange(self.key, start, "+", count=PAGE)
            n += self.fold(page)
            if len(page) < PAGE:
                break
            start = f"({self.cursor}"
        if self.cursor is None:
            self.cursor = "0-0"
        log.info("group state caught up: %d log entries folded in (log at %s)", n, self.cursor)
        return n

    def _restore(self, model: bytes | None, policy: bytes | None) -> None:
        """The checkpoint's model and policy state, both or neither (a failure puts back what was held)."""
        registry = self.engine.model if hasattr(self.engine.model, "load_bytes") else None
        snapshot = getattr(self.engine.policy, "snapshot", None)
        restore = getattr(self.engine.policy, "restore", None)
        held = (registry.to_bytes() if registry else None, snapshot() if snapshot else None)
        try:
            state = orjson.loads(policy) if policy and restore is not None else None
            if model and registry is not None:
                registry.load_bytes(model)
            if state is not None and restore is not None:
                restore(state)
        except Exception:
            if registry is not None and held[0] is not None:
                registry.load_bytes(held[0])
            if restore is not None and held[1] is not None:
                restore(held[1])
            raise

    def queue_read(self, pipe: Any) -> bool:
        """Queue the read of what was appended since the cursor; False before ``catch_up``."""
        if self.cursor is None:
            return False
        pipe.xrange(self.key, f"({self.cursor}", "+", count=PAGE)
        return True

    async def read_rest(self, page: Sequence[Any]) -> int:
        """Fold a page read by ``queue_read`` and, if it was full, the pages after it."""
        n = self.fold(page)
        while len(page) >= PAGE:
            page = await self.redis.xrange(self.key, f"({self.cursor}", "+", count=PAGE)
            n += self.fold(page)
        self._maybe_checkpoint()
        return n

    def fold(self, page: Sequence[Any]) -> int:
        """Fold entries ``(id, {"e": json})`` in order; the cursor moves past every one, readable or not."""
        n = 0
        for ident, fields in page:
            self.cursor = _s(ident)
            try:
                raw = fields[b"e"] if b"e" in fields else fields["e"]
                n += self.engine.apply_group([orjson.loads(raw)])
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                self.unreadable += 1
                log.warning(
                    "group log entry %s unreadable (%s: %s); skipped", self.cursor, type(exc).__name__, exc
                )
        self.folded += n
        return n

    def _maybe_checkpoint(self) -> None:
        """Every ``CHECKPOINT_S``, right after a fold (the state is then the log up to the cursor, every entry
        of this worker included): the state to write with the next save."""
        if time.monotonic() < self._next_checkpoint or self.cursor is None:
            return
        self._next_checkpoint = time.monotonic() + CHECKPOINT_S
        state: dict[str, Any] = {"id": self.cursor}
        if self.engine.model is not None and hasattr(self.engine.model, "to_bytes"):
            state["model"] = self.engine.model.to_bytes()
        snapshot = getattr(self.engine.policy, "snapshot", None)
        if snapshot is not None:
            state["policy"] = orjson.dumps(snapshot(), option=orjson.OPT_NON_STR_KEYS)
        self._checkpoint = state

    # -- write -------------------------------------------------------------------------------------------
    def stage(self, pipe: Any) -> None:
        """Queue this worker's new entries (and any whose save has not been confirmed yet)."""
        self._unsent += self.engine.drain_group()
        by_day: dict[int, list[Any]] = {}
        for entry in self._unsent:
            ref = f"{entry[0]}:{entry[1]}" if entry[1] else ""
            ts = entry[3] if entry[0] == "b" else entry[2]
            by_day.setdefault(int(ts) // DAY_MS, []).extend((ref, orjson.dumps(entry)))
        for day, args in sorted(by_day.items()):
            pipe.eval(APPEND_LUA, 2, self.key, f"{self.ns}logged:{day}", LOG_KEEP, 3 * 86_400, *args)
        if self._checkpoint is not None:
            pipe.hset(self.state_key, mapping=self._checkpoint)

    def saved(self) -> None:
        """The last staged save succeeded."""
        self._unsent = []
        self._checkpoint = None


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
