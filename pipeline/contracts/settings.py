"""Settings: read once at start-up from the environment (and CLI flags), frozen, passed down.

Every setting is a field below with its one default; its environment variable is ``BUKONG_`` + the field
name in capitals (``partitions`` -> ``BUKONG_PARTITIONS``), except ``KAFKA_BROKER`` and ``REDIS_URL``. An
empty variable counts as unset. Tokens are ``SecretStr``: they never print themselves (logs, reprs, pages).
The pure core never reads the environment; it gets plain values from here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "BUKONG_"
DEFAULT_RULE_PACK = REPO_ROOT / "rules" / "packs" / "starter.yaml"  # the start-up pack


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, env_prefix=ENV_PREFIX, env_ignore_empty=True, validate_by_name=True
    )

    kafka_broker: str | None = Field(default=None, validation_alias="KAFKA_BROKER")  # None: embedded tansu
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")  # None: embedded valkey
    partitions: int = 4
    # tansu answers a fetch only when this expires, and lists a partition's stored batches within it: 20 ms
    # halves the p99 at 2,000-5,000 events/s against 5 (benchmarks/README.md). Apache Kafka answers as soon as
    # records are there: any small value (docker/docker-compose.yml sets 5)
    fetch_max_wait_ms: int = 20
    fetch_max_wait_cap_ms: int = 2000  # the fetch wait is raised up to this when lagging partitions starve
    # a worker skips the read of the shared keys it holds as the group wrote them (agents/globalstate.py);
    # off while workers of a version without it still write them (a rolling upgrade from before 2026-12-01)
    held_reads: bool = True
    stuck_after_s: float = 30.0  # a partition with lag whose position stands still this long is reported
    # a backlog read unevenly across partitions is joined as it happened: a declaration waits while a
    # partition still behind it by more than the slack may hold its weighbridge reading or GPS track
    # (agents/inputclock.py)
    align_inputs: bool = True
    align_slack_ms: int = 60_000
    # a partition read this far past the input clock is paused until the clock comes near: it bounds the
    # declarations held and what the join reads ahead (0: never pause)
    align_ahead_ms: int = 10 * 60_000
    # the worker freezes what is alive ten times a second, so automatic collections never walk the join
    # state, and collects everything once per this many seconds (agents/collector.py; 0: Python's own
    # collector, with the worker's thresholds)
    gc_full_every_s: float = 3600.0
    topic_retention_ms: int = 30 * 60 * 1000  # bounds tansu's in-memory log in long runs
    app_id: str = "bukong"
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    analyst_token: SecretStr = SecretStr("")
    operator_token: SecretStr = SecretStr("")
    data_dir: Path = REPO_ROOT / "var"
    rule_pack: Path = DEFAULT_RULE_PACK
    # the decision policy's overrides, a JSON object of PolicyConfig's fields (docs/policy.md,
    # pipeline/core/policy_settings.py), e.g. '{"budget": {"target_share": 0.03}}'; empty: the defaults
    policy: str = ""
    live_stream_maxlen: int = 10_000  # bounded Redis stream of hits for the live view
    dedupe_ttl_s: int = 7 * 24 * 3600  # a decision can be redelivered for a week and still not double
    producer_acks: str = "1"  # "all" with idempotence on a replicated cluster (docker/)
    producer_linger_ms: int = 1
    log_level: str = "WARNING"
    session_timeout_ms: int = 10_000  # a dead worker's partitions move after this (Faust's default is 60 s)
    metrics_port: int = 0  # worker /metrics port (0 = off)
    replication: int = 1  # replication factor of created topics (3 on the docker/ cluster)
    web_max_streams: int = 500  # live streams (SSE) open at once in one web process; beyond: 429
    web_max_streams_per_role: int = 200  # per token/role (analyst, operator); beyond: 429
    web_max_body_bytes: int = 64 * 1024  # request body limit of the web API; beyond: 413
    web_redis_pool: int = 32  # Redis connections of one web process (requests wait for one, up to 5 s)
    web_origins: str = ""  # extra origins (comma-separated) allowed to POST with the session cookie
    tansu_bin: Path | None = None  # the tansu binary to run (None: the one installed in the venv)
    valkey_bin: Path | None = None  # the valkey-server binary to run (None: the one installed in the venv)

    @field_validator("policy")
    @classmethod
    def _policy_is_an_object(cls, v: str) -> str:
        if v.strip():
            try:
                parsed = json.loads(v)
            except ValueError as e:
                raise ValueError(f"not JSON ({e}): a JSON object of policy settings") from None
            if not isinstance(parsed, dict):
                raise ValueError('a JSON object of policy settings, like {"budget": {"target_share": 0.03}}')
        return v

    @property
    def policy_overrides(self) -> dict[str, Any]:
        """``policy`` parsed (validated as a JSON object when the settings were made)."""
        return dict(json.loads(self.policy)) if self.policy.strip() else {}

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_broker is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def session_timeout_s(self) -> float:
        return self.session_timeout_ms / 1000.0

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated: a token given as text becomes a SecretStr)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**values, **changes})

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """field -> the environment variable it is read from."""
        return {
            name: f.validation_alias if isinstance(f.validation_alias, str) else ENV_PREFIX + name.upper()
            for name, f in cls.model_fields.items()
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of the process environment, with ``env`` (variable -> value) over it; a value that
        does not parse exits with the variable's name instead of a traceback."""
        names = cls.env_names()
        given: dict[str, Any] = {f: env[n] for f, n in names.items() if env.get(n)} if env else {}
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = [
                f"{names.get(str(e['loc'][0]), e['loc'][0])}={e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            ]
            raise SystemExit("error: " + "; ".join(problems)) from None
