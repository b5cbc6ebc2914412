"""Settings: built once at start-up from the environment (and CLI flags), frozen, passed down.

The pure core never reads the environment; it gets plain values from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


class Secret:
    """A string that never prints itself (logs, reprs, pages)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"error: {name}={raw!r} is not an integer") from None


REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    kafka_broker: str | None = None  # None -> start the embedded tansu broker
    redis_url: str | None = None  # None -> start the embedded valkey server
    partitions: int = 4
    fetch_max_wait_ms: int = (
        5  # tansu answers a fetch only when this expires; Apache Kafka: keep it small too
    )
    fetch_max_wait_cap_ms: int = 2000  # the fetch wait is raised up to this when lagging partitions starve
    stuck_after_s: float = 30.0  # a partition with lag whose position stands still this long is reported
    topic_retention_ms: int = 30 * 60 * 1000  # bounds tansu's in-memory log in long runs
    app_id: str = "bukong"
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    analyst_token: Secret = field(default_factory=lambda: Secret(""))
    operator_token: Secret = field(default_factory=lambda: Secret(""))
    data_dir: Path = REPO_ROOT / "var"
    rule_pack: Path = REPO_ROOT / "rules" / "packs" / "starter.yaml"
    live_stream_maxlen: int = 10_000  # bounded Redis stream of hits for the live view
    dedupe_ttl_s: int = 7 * 24 * 3600  # a decision can be redelivered for a week and still not double
    producer_acks: str = "1"  # "all" with idempotence on a replicated cluster (docker/)
    producer_linger_ms: int = 1
    log_level: str = "WARNING"
    session_timeout_s: float = 10.0  # a dead worker's partitions move after this (Faust's default is 60 s)
    metrics_port: int = 0  # worker /metrics port (0 = off)
    replication: int = 1  # replication factor of created topics (3 on the docker/ cluster)
    web_max_streams: int = 500  # live streams (SSE) open at once in one web process; beyond: 429
    web_max_streams_per_role: int = 200  # per token/role (analyst, operator); beyond: 429
    web_max_body_bytes: int = 64 * 1024  # request body limit of the web API; beyond: 413
    web_redis_pool: int = 32  # Redis connections of one web process (requests wait for one, up to 5 s)
    web_origins: str = ""  # extra origins (comma-separated) allowed to POST with the session cookie

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_broker is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        return cls(
            kafka_broker=e.get("KAFKA_BROKER") or None,
            redis_url=e.get("REDIS_URL") or None,
            partitions=_int(e, "BUKONG_PARTITIONS", 4),
            fetch_max_wait_ms=_int(e, "BUKONG_FETCH_MAX_WAIT_MS", 5),
            fetch_max_wait_cap_ms=_int(e, "BUKONG_FETCH_MAX_WAIT_CAP_MS", 2000),
            stuck_after_s=float(_int(e, "BUKONG_STUCK_AFTER_S", 30)),
            topic_retention_ms=_int(e, "BUKONG_TOPIC_RETENTION_MS", 30 * 60 * 1000),
            app_id=e.get("BUKONG_APP_ID", "bukong"),
            web_host=e.get("BUKONG_WEB_HOST", "127.0.0.1"),
            web_port=_int(e, "BUKONG_WEB_PORT", 8080),
            analyst_token=Secret(e.get("BUKONG_ANALYST_TOKEN", "")),
            operator_token=Secret(e.get("BUKONG_OPERATOR_TOKEN", "")),
            data_dir=Path(e.get("BUKONG_DATA_DIR", str(REPO_ROOT / "var"))),
            rule_pack=Path(e.get("BUKONG_RULE_PACK", str(REPO_ROOT / "rules" / "packs" / "starter.yaml"))),
            producer_acks=e.get("BUKONG_PRODUCER_ACKS", "1"),
            log_level=e.get("BUKONG_LOG_LEVEL", "WARNING"),
            session_timeout_s=float(_int(e, "BUKONG_SESSION_TIMEOUT_MS", 10_000)) / 1000.0,
            metrics_port=_int(e, "BUKONG_METRICS_PORT", 0),
            replication=_int(e, "BUKONG_REPLICATION", 1),
            web_max_streams=_int(e, "BUKONG_WEB_MAX_STREAMS", 500),
            web_max_streams_per_role=_int(e, "BUKONG_WEB_MAX_STREAMS_PER_ROLE", 200),
            web_max_body_bytes=_int(e, "BUKONG_WEB_MAX_BODY_BYTES", 64 * 1024),
            web_redis_pool=_int(e, "BUKONG_WEB_REDIS_POOL", 32),
            web_origins=e.get("BUKONG_WEB_ORIGINS", ""),
        )
