"""A batch delivery path for the high-volume input topics, inside Faust's consumer.

Measured here: Faust's stock per-message delivery (a task per message in ``_drain_messages``, a lock and a
queue per message in the conductor, an Event and processors per message in the stream) costs ~150 us per
record, so a worker tops out near 6,000 records/s whatever the agent does. The broker, aiokafka and our core
can do far more. This module keeps everything Faust gives us — the consumer group, rebalancing, the worker
life cycle, timers, the producer, agents for the low-volume topics — and replaces only the delivery of the
hot topics: each fetched batch goes to one async handler as a list, and that handler's offsets are committed
after the batch is processed (at least once; duplicates are absorbed by decided-id sets, the changelog's
applied offsets and the dispatch dedupe).

Low-volume topics (inspection results, rule packs) still go through Faust's per-message path to ordinary
``@app.agent`` agents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger("bukong.fastpath")

# handler(records by TP, time.monotonic() when fetched) -> processed; raising stops the worker (Faust crashes
# the consumer)
BatchHandler = Callable[[dict[Any, list[Any]], float], Awaitable[None]]


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with hot topics delivered a fetched batch at a time."""

    hot_topics: frozenset[str] = frozenset()
    batch_handler: BatchHandler | None = None

    async def _drain_messages(self, fetcher: Any) -> None:  # runs as Faust's Fetcher service
        callback = self.callback
        set_read_offset = self._read_offset.__setitem__
        hot = self.hot_topics
        stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                fetched_at = time.monotonic()
                await asyncio.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:  # a rebalance started: Faust seeks back to committed offsets
                    await self.perform_seek()
                    continue
                batch: dict[Any, list[Any]] = {}
                paused = self._paused_partitions
                for tp, recs in records.items():
                    # ``active`` is the consumer's live set: a partition paused since this fetch (the input
                    # clock's pacing, agents/inputclock.py) has left it, yet its records were taken from the
                    # fetcher and its position is past them, so they are processed: dropped, they were lost.
                    # Only a partition no longer assigned (revoked: not paused either) loses its records.
                    if active is not None and tp not in active and tp not in paused:
                        continue
                    if tp.topic in hot:
                        batch[tp] = recs
                        continue
                    for rec in recs:  # the ordinary Faust path for low-volume topics
                        await callback(self._to_message(tp, rec))
                        set_read_offset(tp, rec.offset)
                if batch and self.batch_handler is not None:
                    await self.batch_handler(batch, fetched_at)
                    for tp, recs in batch.items():
                        set_read_offset(tp, recs[-1].offset)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class OffsetCommitter:
    """Commits the next offset of each processed partition, at most every ``interval_s``, or on demand.

    ``maybe_commit`` (after every batch) starts the commit and returns: the batch path never waits for the
    broker's answer. Offsets handed to ``processed`` belong to batches already saved, so committing them
    later is only later; one commit is in flight at a time, and ``commit`` (on revocation, at shutdown) waits
    for it before committing the rest, so offsets reach the broker in order."""

    def __init__(self, consumer: BatchConsumer, interval_s: float = 0.2) -> None:
        self.consumer = consumer
        self.interval_s = interval_s
        self.pending: dict[Any, int] = {}
        self.last = time.monotonic()
        self._inflight: asyncio.Future[None] | None = None

    def processed(self, batch: dict[Any, list[Any]]) -> None:
        pending = self.pending
        for tp, recs in batch.items():
            nxt = recs[-1].offset + 1
            if nxt > pending.get(tp, -1):
                pending[tp] = nxt

    async def maybe_commit(self) -> None:
        if not self.pending or time.monotonic() - self.last < self.interval_s:
            return
        if self._inflight is not None and not self._inflight.done():
            return  # the previous commit is still on its way: these offsets go with the next one
        offsets, self.pending = self.pending, {}
        self.last = time.monotonic()
        self._inflight = asyncio.ensure_future(self._send(offsets))

    async def commit(self, only: Iterable[Any] | None = None) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await asyncio.shield(inflight)
        if not self.pending:
            return
        if only is None:
            offsets, self.pending = self.pending, {}
        else:
            keep = set(only)
            offsets = {tp: o for tp, o in self.pending.items() if tp in keep}
            for tp in offsets:
                self.pending.pop(tp, None)
        self.last = time.monotonic()
        if offsets:
            await self._send(offsets)

    async def _send(self, offsets: dict[Any, int]) -> None:
        try:
            await self.consumer._thread.commit({TP(tp.topic, tp.partition): o for tp, o in offsets.items()})
        except Exception:  # partitions already moved: the new owner re-reads them; dedupe absorbs it
            log.warning("offset commit failed for %d partitions", len(offsets), exc_info=True)
