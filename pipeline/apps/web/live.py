"""The live hit stream: one Redis reader per web process, fanned out to every open stream.

One background task XREADs the bounded Redis stream of hits (``bukong:hits``) on its own connection, turns
each batch into one server-sent-events frame (encoded once for all clients) and offers it to every
subscriber's bounded queue. A client whose queue is full has fallen behind: it is dropped (told so, then
closed) and never slows the reader or the other clients. The reader runs only while a stream is open.

Caps: at most ``max_streams`` streams in the process and ``max_per_role`` per token/role; beyond either,
``open`` raises :class:`StreamLimit` (the API answers 429). Every piece of state here is bounded: the number
of subscribers (the caps), each queue (``queue_batches`` frames), each frame (``count`` hits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.contracts.commands import LIVE_STREAM_KEY
from pipeline.io.metrics import WebMetrics

log = logging.getLogger("bukong.web.live")
STREAM_ID = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")  # 19 digits: always below 2**64


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


@dataclass(frozen=True, slots=True)
class Batch:
    """New hits as (stream id, command JSON without facts) pairs and their SSE frame."""

    entries: tuple[tuple[str, bytes], ...]
    frame: bytes

    @property
    def last(self) -> str:
        return self.entries[-1][0]

    def after(self, entry_id: str) -> Batch | None:
        """The part of this batch newer than ``entry_id`` (a client that caught up by XRANGE), or None."""
        floor = parse_id(entry_id)
        if parse_id(self.entries[0][0]) > floor:
            return self
        newer = tuple(e for e in self.entries if parse_id(e[0]) > floor)
        return make_batch(newer) if newer else None


def make_batch(entries: tuple[tuple[str, bytes], ...]) -> Batch:
    data = b"[" + b",".join(body for _, body in entries) + b"]"
    frame = b"id: " + entries[-1][0].encode() + b"\nevent: hits\ndata: " + data + b"\n\n"
    return Batch(entries, frame)


def hit_entries(raw: list[tuple[bytes, dict[bytes, bytes]]]) -> tuple[tuple[str, bytes], ...]:
    """Stream entries -> (id, command JSON for the page): no facts, stream_id added; bad entries skipped."""
    out = []
    for entry_id, fields in raw:
        sid = entry_id.decode()
        try:
            cmd = orjson.loads(fields[b"c"])
            cmd.pop("facts", None)
            cmd["stream_id"] = sid
            out.append((sid, orjson.dumps(cmd)))
        except (KeyError, TypeError, AttributeError, orjson.JSONDecodeError):
            log.warning("live stream entry %s is not a command; skipped", sid)
    return tuple(out)


class StreamLimit(Exception):
    """A cap on open live streams is reached; ``cap`` is "role" or "global"."""

    def __init__(self, cap: str, message: str) -> None:
        super().__init__(message)
        self.cap = cap


class Subscriber:
    __slots__ = ("dropped", "queue", "role", "task")

    def __init__(self, role: str, queue_batches: int) -> None:
        self.role = role
        self.queue: asyncio.Queue[Batch] = asyncio.Queue(queue_batches)
        self.dropped = False
        self.task: asyncio.Task[Any] | None = None  # the stream's handler, cancelled at shutdown


class LiveHub:
    def __init__(
        self,
        redis: Any,
        *,
        max_streams: int,
        max_per_role: int,
        metrics: WebMetrics | None = None,
        queue_batches: int = 64,
        count: int = 500,
        block_ms: int = 1000,
        interval_s: float = 0.1,
    ) -> None:
        self.redis = redis  # a dedicated client: the blocking XREAD never holds a request connection
        self.max_streams = max_streams
        self.max_per_role = max_per_role
        self.metrics = metrics
        self.queue_batches = queue_batches
        self.count = count
        self.block_ms = block_ms
        self.interval_s = interval_s
        self.subscribers: set[Subscriber] = set()
        self.per_role: Counter[str] = Counter()
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------ subscribers
    def open(self, role: str) -> Subscriber:
        if len(self.subscribers) >= self.max_streams:
            self._refused("global")
            raise StreamLimit(
                "global",
                f"{len(self.subscribers)} live streams are open, the limit of this server "
                f"(BUKONG_WEB_MAX_STREAMS={self.max_streams}): retry later, or poll GET /api/hits",
            )
        if self.per_role[role] >= self.max_per_role:
            self._refused("role")
            raise StreamLimit(
                "role",
                f"{self.per_role[role]} live streams are open for the {role} token, the limit per token "
                f"(BUKONG_WEB_MAX_STREAMS_PER_ROLE={self.max_per_role}): "
                "close other tabs or poll GET /api/hits",
            )
        sub = Subscriber(role, self.queue_batches)
        self.subscribers.add(sub)
        self.per_role[role] += 1
        if self.metrics is not None:
            self.metrics.streams_open.labels(role).set(self.per_role[role])
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="live-hub")
        return sub

    def close(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.discard(sub)
            self.per_role[sub.role] -= 1
            if self.metrics is not None:
                self.metrics.streams_open.labels(sub.role).set(self.per_role[sub.role])

    def _refused(self, cap: str) -> None:
        if self.metrics is not None:
            self.metrics.streams_refused.labels(cap).inc()

    def broadcast(self, batch: Batch) -> None:
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(batch)
            except asyncio.QueueFull:  # fell behind by queue_batches frames: drop it, never wait for it
                sub.dropped = True
                self.close(sub)
                self.dropped += 1
                if self.metrics is not None:
                    self.metrics.streams_dropped.inc()

    # ----------------------------------------------------------------------------------------- reader
    async def _tail(self) -> str:
        newest = await self.redis.xrevrange(LIVE_STREAM_KEY, count=1)
        return newest[0][0].decode() if newest else "0-0"

    async def _run(self) -> None:
        last: str | None = None
        while self.subscribers:
            try:
                if last is None:
                    last = await self._tail()
                got = await self.redis.xread({LIVE_STREAM_KEY: last}, count=self.count, block=self.block_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarting: keep the streams open, try again
                log.warning("live stream read failed (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            for _, raw in got or ():
                if raw:
                    last = raw[-1][0].decode()
                    entries = hit_entries(raw)
                    if entries:
                        self.broadcast(make_batch(entries))
            await asyncio.sleep(self.interval_s)  # batch: at most ~10 frames a second per client

    async def stop(self) -> None:
        for sub in list(self.subscribers):
            self.close(sub)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.redis.aclose()
