"""The live view and the command API (aiohttp). docs/api.md documents every route; GET /api/openapi.json
serves the OpenAPI 3 document (pipeline/apps/web/openapi.py).

    GET  /                          the live hit stream page (login with a token)
    POST /api/login                 {"token": ...} -> HttpOnly session cookie (for EventSource)
    GET  /api/whoami                the caller's role
    GET  /api/hits?port=&lane=&severity=&rule=&limit=   newest first, from the bounded Redis stream
    GET  /api/commands/{id}         one command with its status and the vehicle's recent track
    GET  /api/stream                server-sent events: batches of new hits (every ~100 ms)
    GET  /api/stats                 totals, per-rule and per-site hit rates, versions, drift events
    GET  /api/geo                   border, ports, corridors, squads for the map
    GET  /api/rules                 the live pack's rules (id, title, lane, severity, status, scope)
    POST /api/commands/{id}/ack     operators: acknowledge
    POST /api/commands/{id}/result  operators: {outcome, found_value_cny, notes} -> inspection-results
    GET  /api/openapi.json          this API as OpenAPI 3
    GET  /metrics, /healthz         Prometheus exposition of this process, liveness

Tokens come from settings (BUKONG_ANALYST_TOKEN / BUKONG_OPERATOR_TOKEN); analysts read, operators also act.
No token -> 401, wrong role -> 403, a cookie-authenticated change from another origin -> 403, a body over
BUKONG_WEB_MAX_BODY_BYTES -> 413, too many live streams -> 429. Live streams share one Redis reader
(pipeline/apps/web/live.py), so open streams never take the connections /api/hits and /api/stats need.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from pipeline.apps.web.context import Context
from pipeline.apps.web.middleware import errors_middleware, guard_middleware
from pipeline.apps.web.reads import Reads
from pipeline.apps.web.streaming import Streaming
from pipeline.apps.web.writes import Writes
from pipeline.contracts.settings import Settings


def create_app(
    settings: Settings, redis_url: str, kafka_bootstrap: str, registry: CollectorRegistry | None = None
) -> web.Application:
    ctx = Context(settings, redis_url, kafka_bootstrap, registry or CollectorRegistry())
    reads, writes, streaming = Reads(ctx), Writes(ctx), Streaming(ctx)
    app = web.Application(
        middlewares=[errors_middleware(ctx), guard_middleware(ctx)], client_max_size=ctx.max_body
    )
    app.on_startup.append(ctx.on_startup)
    app.on_shutdown.append(ctx.on_shutdown)
    app.on_cleanup.append(ctx.on_cleanup)
    app.router.add_get("/", reads.index)
    app.router.add_get("/static/{name}", reads.static_file)
    app.router.add_get("/api/openapi.json", reads.openapi)
    app.router.add_post("/api/login", reads.login)
    app.router.add_get("/api/whoami", reads.whoami)
    app.router.add_get("/api/hits", reads.hits)
    app.router.add_get("/api/stats", reads.stats)
    app.router.add_get("/api/stream", streaming.stream, allow_head=False)  # a HEAD would hold a stream slot
    app.router.add_get("/api/commands/{id}", reads.command)
    app.router.add_post("/api/commands/{id}/ack", writes.ack)
    app.router.add_post("/api/commands/{id}/result", writes.result)
    app.router.add_get("/api/geo", reads.geo)
    app.router.add_get("/api/rules", reads.rules)
    app.router.add_get("/metrics", reads.metrics_page)
    app.router.add_get("/healthz", reads.healthz)
    return app


def ensure_tokens(settings: Settings) -> Settings:
    """Random tokens when none are configured (demo): printed once to the terminal, never logged."""
    changes = {}
    if not settings.analyst_token.get_secret_value():
        changes["analyst_token"] = SecretStr(secrets.token_urlsafe(16))
    if not settings.operator_token.get_secret_value():
        changes["operator_token"] = SecretStr(secrets.token_urlsafe(16))
    return settings.with_(**changes) if changes else settings


def run_web_in_thread(settings: Settings, redis_url: str, kafka: str) -> Callable[[], None]:
    """Serve in a background thread with its own loop; returns a stop function."""
    loop = asyncio.new_event_loop()
    app = create_app(settings, redis_url, kafka)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, settings.web_host, settings.web_port)
        loop.run_until_complete(site.start())
        started.set()
        loop.run_forever()

    threading.Thread(target=serve, name="web", daemon=True).start()
    started.wait(10)

    def stop() -> None:
        async def _stop() -> None:
            await runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(_stop(), loop)
        try:
            fut.result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)

    return stop
