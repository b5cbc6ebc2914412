"""docker/ checked statically (no Docker engine here): Compose schema, KRaft cluster semantics, settings the
services use, Prometheus config with promtool, and a Grafana dashboard plotting only exported metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry

from pipeline.contracts.settings import Settings
from pipeline.io import metrics as metrics_module
from pipeline.io.metrics import Metrics

REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"
SCHEMA = REPO / "tests" / "data" / "compose-spec" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    if not SCHEMA.exists():
        pytest.fail(f"Compose JSON schema not found at {SCHEMA}: it ships with the repository")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(compose, schema)


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment", {})
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def test_three_kraft_brokers_with_quorum_rf3_and_min_isr_2(compose: dict[str, Any]) -> None:
    brokers = {n: s for n, s in compose["services"].items() if n.startswith("kafka-")}
    assert len(brokers) == 3
    ids = {int(_env(s)["KAFKA_NODE_ID"]) for s in brokers.values()}
    assert ids == {1, 2, 3}
    voters = {_env(s)["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in brokers.values()}
    assert len(voters) == 1
    parsed = {int(v.split("@")[0]): v.split("@")[1].split(":")[0] for v in voters.pop().split(",")}
    assert parsed == {1: "kafka-1", 2: "kafka-2", 3: "kafka-3"}
    for name, s in brokers.items():
        e = _env(s)
        assert e["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert int(e["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == 3
        assert int(e["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        assert int(e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 3
        assert e["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert e["CLUSTER_ID"] == _env(brokers["kafka-1"])["CLUSTER_ID"]


def test_app_services_use_only_settings_bukong_reads(compose: dict[str, Any]) -> None:
    known = set(Settings.env_names().values())
    assert {"KAFKA_BROKER", "REDIS_URL"} <= known
    for name in ("worker", "web", "simulator", "topics"):
        env = _env(compose["services"][name])
        unknown = set(env) - known
        assert not unknown, f"{name} sets {unknown}, which pipeline/contracts/settings.py never reads"
        assert env["BUKONG_PRODUCER_ACKS"] == "all"
        settings = Settings.from_env({k: str(v) for k, v in env.items() if not str(v).startswith("${")})
        assert settings.kafka_broker and settings.redis_url and settings.replication == 3


def test_workers_scale_and_dependencies_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, "fixed names/ports stop --scale worker=N"
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on missing service {dep}"
    assert worker["command"][-1] == "worker"


def test_dockerfile_is_slim_non_root_and_pinned() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim", text, re.M)
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert "pip install --no-cache-dir ." in text
    deps = (REPO / "pyproject.toml").read_text().split("dependencies = [", 1)[1].split("]", 1)[0]
    for line in filter(None, (x.strip().strip('",') for x in deps.splitlines())):
        assert "==" in line, f"unpinned dependency {line}"


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run docker/install-system-deps.sh (Debian package prometheus)"
    out = subprocess.run(
        [promtool, "check", "config", str(DOCKER / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    cfg = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["bukong-worker"]["dns_sd_configs"][0]["names"] == ["worker"]  # every replica is scraped


def exported_names() -> set[str]:
    """Every series name the worker's and the web's registries export (with _total, histogram parts)."""
    reg = CollectorRegistry()
    Metrics.create(reg)
    web = getattr(metrics_module, "WebMetrics", None)
    if web is not None:
        web.create(reg)
    names: set[str] = set()
    for fam in reg.collect():
        names.add(fam.name)
        if fam.type == "counter":
            names.add(fam.name + "_total")
        if fam.type == "histogram":
            names |= {fam.name + s for s in ("_bucket", "_sum", "_count")}
    return names


PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels, keywords or numbers)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    # label lists of by/without/on/ignoring/group_left/group_right
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", expr):
        word, call = m.group(1), m.group(2)
        if not call and word.lower() not in PROMQL_KEYWORDS:
            names.add(word)
    return names


def test_metric_names_reads_only_metric_names() -> None:
    expr = (
        'sum by (topic) (rate(bukong_events_in_total{topic=~"a|b"}[5m])) / clamp_min(sum(up), 1) '
        "and on () histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval]))) > 1e3"
    )
    assert metric_names(expr) == {"bukong_events_in_total", "up", "x_bucket"}


def test_grafana_dashboard_plots_only_exported_metrics() -> None:
    dash = json.loads((DOCKER / "grafana" / "dashboards" / "bukong.json").read_text())
    exported = exported_names() | {"up"}  # up: Prometheus's own, per scrape target
    used: set[str] = set()
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            used |= metric_names(target["expr"])
    assert used, "the dashboard has no queries"
    missing = used - exported
    assert not missing, f"dashboard refers to metrics the app does not export: {sorted(missing)}"
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("events", "latency", "hits", "dead letters", "lag", "budget"):
        assert topic in titles
