"""Settings are read once from the environment, with today's variable names, frozen, secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from pipeline.contracts.settings import REPO_ROOT, Settings


@pytest.fixture(autouse=True)
def no_bukong_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.env_names().values():
        monkeypatch.delenv(name, raising=False)


def test_usable_with_no_environment() -> None:
    s = Settings()
    assert s.embedded_kafka and s.embedded_redis
    assert (s.partitions, s.web_port, s.session_timeout_s, s.stuck_after_s) == (4, 8080, 10.0, 30.0)
    assert s.rule_pack == REPO_ROOT / "rules" / "packs" / "starter.yaml" and s.data_dir == REPO_ROOT / "var"
    assert s.analyst_token.get_secret_value() == "" and s.tansu_bin is None


def test_the_variable_names_of_the_deployments() -> None:
    names = set(Settings.env_names().values())
    assert {"KAFKA_BROKER", "REDIS_URL", "BUKONG_SESSION_TIMEOUT_MS", "BUKONG_ANALYST_TOKEN"} <= names
    s = Settings.from_env(
        {
            "KAFKA_BROKER": "kafka-1:9092",
            "REDIS_URL": "redis://redis:6379/0",
            "BUKONG_PARTITIONS": "12",
            "BUKONG_SESSION_TIMEOUT_MS": "4000",
            "BUKONG_STUCK_AFTER_S": "45",
            "BUKONG_DATA_DIR": "/data",
            "BUKONG_OPERATOR_TOKEN": "op-secret",
            "BUKONG_APP_ID": "",  # empty: unset
        }
    )
    assert (s.kafka_broker, s.redis_url, s.partitions) == ("kafka-1:9092", "redis://redis:6379/0", 12)
    assert (s.session_timeout_s, s.stuck_after_s, s.data_dir) == (4.0, 45.0, Path("/data"))
    assert s.operator_token.get_secret_value() == "op-secret" and s.app_id == "bukong"
    assert not s.embedded_kafka


def test_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUKONG_PARTITIONS", "7")
    monkeypatch.setenv("KAFKA_BROKER", "")
    assert Settings().partitions == 7 and Settings().kafka_broker is None
    assert Settings(partitions=2).partitions == 2  # a flag given in code wins


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(SystemExit, match="BUKONG_WEB_PORT='eighty'"):
        Settings.from_env({"BUKONG_WEB_PORT": "eighty"})


def test_frozen_and_secrets_never_print() -> None:
    s = Settings(analyst_token=SecretStr("an-analyst-secret"))
    with pytest.raises(ValidationError):
        s.web_port = 1  # type: ignore[misc]
    assert "an-analyst-secret" not in repr(s) and "an-analyst-secret" not in str(s)
    t = s.with_(operator_token="an-operator-secret", web_port=9000)
    assert isinstance(t.operator_token, SecretStr)
    assert t.operator_token.get_secret_value() == "an-operator-secret"
    assert (t.web_port, t.analyst_token, s.web_port) == (9000, s.analyst_token, 8080)
    with pytest.raises(ValidationError):
        s.with_(no_such_setting=1)
