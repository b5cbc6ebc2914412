"""What the web handlers share: responses, limits, and the Context (settings, auth, metrics, connections)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry

from pipeline.apps.web.auth import Auth, allowed_origins
from pipeline.apps.web.live import LiveHub
from pipeline.apps.web.store import CommandStore
from pipeline.contracts.settings import Settings
from pipeline.io.metrics import WebMetrics

ROLE_KEY = web.RequestKey("role", str)  # set by the auth middleware
REDIS_WAIT_S = 5.0  # a request waits this long for a free Redis connection before 503
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps({"error": message, **extra}),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def now_ms() -> int:
    return int(time.time() * 1000)


class Context:
    """One web process's shared state: built with the app, connected at start-up, closed at clean-up."""

    redis: Any  # the request pool (bounded: settings.web_redis_pool)
    store: CommandStore
    hub: LiveHub

    def __init__(
        self, settings: Settings, redis_url: str, kafka_bootstrap: str, registry: CollectorRegistry
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.kafka_bootstrap = kafka_bootstrap
        self.auth = Auth(
            settings.analyst_token.get_secret_value(), settings.operator_token.get_secret_value()
        )
        self.registry = registry
        self.metrics = WebMetrics.create(registry)
        self.origins = allowed_origins(settings.web_origins)
        self.max_body = settings.web_max_body_bytes
        self.pack_rules: list[dict[str, Any]] | None = None  # the start-up pack's rules, once read
        self._producer: Any = None
        self._producer_lock: asyncio.Lock | None = None

    def refused(self, reason: str, status: int, message: str, **extra: Any) -> web.Response:
        self.metrics.requests_refused.labels(reason).inc()
        return error(status, message, reason=reason, **extra)

    def need_operator(self, request: web.Request) -> web.Response | None:
        if request[ROLE_KEY] != "operator":
            return self.refused(
                "forbidden", 403, "operators only: analysts can read but not acknowledge or report"
            )
        return None

    async def producer(self) -> Any:
        """The Kafka producer, started on first use (reads never need one)."""
        assert self._producer_lock is not None
        async with self._producer_lock:
            if self._producer is None:
                import aiokafka

                p = aiokafka.AIOKafkaProducer(bootstrap_servers=self.kafka_bootstrap, linger_ms=1)
                await p.start()
                self._producer = p
        return self._producer

    async def on_startup(self, app: web.Application) -> None:
        s = self.settings
        pool = aioredis.BlockingConnectionPool.from_url(
            self.redis_url, max_connections=s.web_redis_pool, timeout=REDIS_WAIT_S
        )
        self.redis = aioredis.Redis.from_pool(pool)
        self.store = CommandStore(self.redis, s.dedupe_ttl_s)
        self.hub = LiveHub(
            aioredis.Redis.from_url(self.redis_url),
            max_streams=s.web_max_streams,
            max_per_role=s.web_max_streams_per_role,
            metrics=self.metrics,
        )
        self._producer = None
        self._producer_lock = asyncio.Lock()

    async def on_shutdown(self, app: web.Application) -> None:
        for sub in list(self.hub.subscribers):
            if sub.task is not None:
                sub.task.cancel()

    async def on_cleanup(self, app: web.Application) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self.hub.stop()
        await self.redis.aclose()
