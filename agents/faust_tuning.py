"""Faust settings that the stock driver does not expose.

faust-streaming's aiokafka driver hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. The embedded
broker (tansu) answers a fetch only when that wait expires, so every Kafka hop would cost ~0.75 s on average.
We wrap the consumer factory once, before the consumer is started, and set the wait the settings ask for.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

_state: dict[str, int] = {}
_original = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original(self, transport)
    wait = _state.get("fetch_max_wait_ms")
    if wait is not None:
        # aiokafka reads this when the consumer starts and builds its Fetcher
        consumer._fetch_max_wait_ms = wait
    return consumer


def set_fetch_max_wait_ms(ms: int) -> None:
    if ms < 0:
        raise ValueError("fetch_max_wait_ms must be >= 0")
    _state["fetch_max_wait_ms"] = ms
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


def _idempotent_extra(self: Any) -> Any:
    return {"acks": "all", "enable_idempotence": True}


def set_idempotent_producer() -> None:
    """acks=all with idempotence (no duplicates from producer retries): for replicated clusters."""
    faust_aiokafka.Producer._settings_extra = _idempotent_extra  # type: ignore[method-assign]


def fetch_max_wait_ms() -> int | None:
    return _state.get("fetch_max_wait_ms")
