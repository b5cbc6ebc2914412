"""GET /api/stream: server-sent events, batches of new hits from the shared reader
(pipeline/apps/web/live.py); a resumed stream (since / Last-Event-ID) replays what it missed first."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from pipeline.apps.web.context import ROLE_KEY, SECURITY_HEADERS, Context, error
from pipeline.apps.web.live import STREAM_ID, LiveHub, StreamLimit, Subscriber, hit_entries, make_batch
from pipeline.contracts.commands import LIVE_STREAM_KEY

KEEPALIVE_S = 5.0  # an idle stream gets a comment line this often (and a dead client is noticed)
WRITE_TIMEOUT_S = 10.0  # a client that takes longer to accept one frame is dropped
CATCH_UP = 2000  # at most this many hits replayed to a stream that resumes (since / Last-Event-ID)


async def write_dropped(resp: web.StreamResponse, sub: Subscriber) -> None:
    msg = orjson.dumps({"error": "this stream fell behind and was closed: reconnect (the page does)"})
    try:
        await asyncio.wait_for(resp.write(b"event: dropped\ndata: " + msg + b"\n\n"), 1.0)
    except (ConnectionError, TimeoutError):
        pass


class Streaming:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: new hits in batches, at most every 100 ms, from the shared reader."""
        given = [
            v for v in (request.headers.get("Last-Event-ID"), request.query.get("since")) if v is not None
        ]
        since = given[-1] if given else None  # the query wins over the header EventSource resends
        if any(not STREAM_ID.fullmatch(v) for v in given):
            return error(
                422, "since must be a stream id like 1795420800000-0 (a hit's stream_id)", field="since"
            )
        hub: LiveHub = self.ctx.hub
        try:
            sub = hub.open(request[ROLE_KEY])
        except StreamLimit as exc:
            return self.ctx.refused(f"streams_{exc.cap}", 429, str(exc), headers={"Retry-After": "10"})
        sub.task = asyncio.current_task()
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **SECURITY_HEADERS,
            }
        )
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 3000\n\n")
            last = ""
            if since:  # resume: replay what was missed (bounded), then the shared batches newer than it
                raw = await self.ctx.redis.xrange(LIVE_STREAM_KEY, min="(" + since, max="+", count=CATCH_UP)
                entries = hit_entries(raw)
                last = since
                if entries:
                    batch = make_batch(entries)
                    last = batch.last
                    await asyncio.wait_for(resp.write(batch.frame), WRITE_TIMEOUT_S)
            while True:
                try:
                    got = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    got = None
                if sub.dropped:
                    await write_dropped(resp, sub)
                    break
                if got is None:
                    await asyncio.wait_for(resp.write(b": keep-alive\n\n"), WRITE_TIMEOUT_S)
                    continue
                if last:
                    got = got.after(last)
                    if got is None:
                        continue
                    last = ""
                await asyncio.wait_for(resp.write(got.frame), WRITE_TIMEOUT_S)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            hub.close(sub)
        return resp
