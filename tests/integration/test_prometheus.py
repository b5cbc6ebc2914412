"""The Grafana dashboard and the alerting rules on a real Prometheus (Debian's /usr/bin/prometheus).

A worker (with /metrics) and the web service run on the embedded broker and Redis; the simulator feeds them
for a short while, an analyst keeps the live stream open, an operator reports inspection results, and a broken
request is refused. Prometheus scrapes both with the shipped docker/prometheus/prometheus.yml (its targets
pointed at this machine) and loads docker/prometheus/alerts.yml. Then EVERY query of every panel of
docker/grafana/dashboards/bukong.json is evaluated through Prometheus's HTTP API and must return data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from pipeline.contracts import events as c
from pipeline.contracts.commands import READY_KEY
from pipeline.io.embedded import Servers, die_with_parent, free_port
from tests.conftest import PARTITIONS, REPO, start_worker, stop_worker, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCKER = REPO / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "bukong.json"
ANALYST, OPERATOR = "analyst-token-prom-test", "operator-token-prom-test"
# Grafana's built-in variables, expanded as Grafana would for a 1-hour dashboard at a 1 s scrape interval
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600"}


def _http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout_s:.0f} s")


@dataclass
class Observed:
    prom: str
    web: str
    commands_seen: int = 0
    results_reported: list[str] = field(default_factory=list)

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = _http(f"{self.prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        doc = orjson.loads(body)
        assert status == 200 and doc["status"] == "success", f"{expr}: {doc}"
        return list(doc["data"]["result"])


def expand(expr: str, templating: list[dict[str, Any]]) -> str:
    """Dashboard variables as 'All' (their allValue, else .*), Grafana built-ins as above."""
    values = {v["name"]: v.get("allValue") or ".*" for v in templating}
    values.update(BUILTINS)

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"dashboard variable ${name} is not defined in templating"
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", sub, expr)


def _prometheus_config(tmp: Path, targets: dict[str, str]) -> Path:
    """The shipped config with each job's discovery replaced by a static target on this machine."""
    cfg = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    cfg["global"]["scrape_interval"] = "1s"
    cfg["global"]["evaluation_interval"] = "1s"
    cfg["rule_files"] = [str(DOCKER / "prometheus" / f) for f in cfg["rule_files"]]
    for job in cfg["scrape_configs"]:
        for key in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
            del job[key]
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    assert set(targets) == {j["job_name"] for j in cfg["scrape_configs"]}
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _hold_stream(url: str, stop: threading.Event, opened: threading.Event) -> None:
    """An analyst's open live view: one server-sent-events connection, read until the test ends."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {ANALYST}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        opened.set()
        while not stop.is_set() and resp.read1(4096):
            pass


@pytest.fixture(scope="module")
def observed(embedded: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    import redis
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.apps.sim.live import LiveSim
    from pipeline.apps.sim.scenario import load_scenario

    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus missing: run docker/install-system-deps.sh (Debian package prometheus)"
    tmp = tmp_path_factory.mktemp("prometheus")
    worker_port, web_port, prom_port = free_port(), free_port(), free_port()
    redis.Redis.from_url(embedded.redis_url).delete(READY_KEY)
    worker = start_worker(embedded, tmp, extra_env={"BUKONG_METRICS_PORT": str(worker_port)})
    env = {
        **os.environ,
        "KAFKA_BROKER": embedded.kafka,
        "REDIS_URL": embedded.redis_url,
        "BUKONG_ANALYST_TOKEN": ANALYST,
        "BUKONG_OPERATOR_TOKEN": OPERATOR,
    }
    with open(tmp / "web.log", "wb") as web_log:
        web = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("bukong")),
                "web",
                "--host",
                "127.0.0.1",
                "--port",
                str(web_port),
            ],
            env=env,
            cwd=REPO,
            stdout=web_log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    config = _prometheus_config(
        tmp, {"bukong-worker": f"127.0.0.1:{worker_port}", "bukong-web": f"127.0.0.1:{web_port}"}
    )
    with open(tmp / "prometheus.log", "wb") as prom_log:
        prom = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--storage.tsdb.retention.time=1h",
            ],
            cwd=tmp,
            stdout=prom_log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    obs = Observed(prom=f"http://127.0.0.1:{prom_port}", web=f"http://127.0.0.1:{web_port}")
    stop_stream = threading.Event()
    sim = None
    try:
        t0 = time.monotonic()
        wait_ready(embedded)
        print(f"worker ready after {time.monotonic() - t0:.1f} s", file=sys.stderr)
        _wait(
            lambda: _http(f"{obs.web}/healthz")[0] == 200, 30, f"the web service answers (see {tmp}/web.log)"
        )
        _wait(
            lambda: _http(f"{obs.prom}/-/ready")[0] == 200, 30, f"prometheus ready (see {tmp}/prometheus.log)"
        )

        opened = threading.Event()
        threading.Thread(
            target=_hold_stream, args=(f"{obs.web}/api/stream", stop_stream, opened), daemon=True
        ).start()
        assert opened.wait(15), "the live stream did not open"
        assert _http(f"{obs.web}/api/hits")[0] == 401  # no token: refused, and counted

        reader = KafkaConsumer(
            bootstrap_servers=embedded.kafka, fetch_max_wait_ms=5, enable_auto_commit=False
        )
        tps = [TopicPartition(c.DISPATCH_COMMANDS, p) for p in range(PARTITIONS)]
        reader.assign(tps)
        reader.seek_to_end()
        for tp in tps:
            reader.position(tp)
        # a short pre-roll (20 simulated minutes) keeps the start-up burst small on a 2-core machine
        sim = LiveSim(
            embedded.kafka,
            load_scenario("baseline"),
            rate=250,
            seed=15,
            bad_events=5,
            bad_every=40,
            partitions=PARTITIONS,
            preroll_s=1200,
        )
        sim.start()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            for recs in reader.poll(timeout_ms=200).values():
                for r in recs:
                    cmd = orjson.loads(r.value)
                    obs.commands_seen += 1
                    if cmd["rule_ids"] and len(obs.results_reported) < 2:
                        status, body = _http(
                            f"{obs.web}/api/commands/{cmd['command_id']}/result",
                            data=orjson.dumps({"outcome": "violation", "found_value_cny": 1000.0}),
                            headers={
                                "Authorization": f"Bearer {OPERATOR}",
                                "Content-Type": "application/json",
                            },
                        )
                        assert status in (200, 202), body  # 202: accepted, on its way to the worker
                        obs.results_reported.append(cmd["command_id"])
            if sim.bad_sent >= sim.bad_events and obs.results_reported and obs.commands_seen >= 3:
                break
        reader.close()
        print(
            f"fed {sim.sent} events in {time.monotonic() - t0:.1f} s, {obs.commands_seen} commands",
            file=sys.stderr,
        )
        assert obs.results_reported, f"no rule-based command to report on ({obs.commands_seen} commands)"
        yield obs
    finally:
        stop_stream.set()
        if sim is not None:
            sim.stop()
        for proc in (prom, web):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        stop_worker(worker)


def _panel_queries() -> list[tuple[str, str, str]]:
    dash = orjson.loads(DASHBOARD.read_bytes())
    templating = dash.get("templating", {}).get("list", [])
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["refId"], expand(target["expr"], templating)))
    return out


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(s["value"][1] not in ("NaN", "+Inf", "-Inf") for s in result)


def test_every_dashboard_panel_returns_data(observed: Observed) -> None:
    queries = _panel_queries()
    assert len(queries) >= 10
    empty: list[str] = []

    def all_have_data() -> bool:
        empty.clear()
        for title, ref, expr in queries:
            if not _finite(observed.query(expr)):
                empty.append(f"{title} [{ref}]: {expr}")
        return not empty

    try:
        _wait(all_have_data, 40, "every panel returns data")
    except AssertionError:
        pytest.fail("panels without data on a live stack:\n  " + "\n  ".join(empty))


def test_prometheus_scrapes_worker_and_web_and_evaluates_every_alert(observed: Observed) -> None:
    _, body = _http(f"{observed.prom}/api/v1/targets")
    targets = orjson.loads(body)["data"]["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets} == {"bukong-worker": "up", "bukong-web": "up"}

    alerts = yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())
    names = {r["alert"] for g in alerts["groups"] for r in g["rules"]}

    def evaluated() -> bool:
        _, body = _http(f"{observed.prom}/api/v1/rules?type=alert")
        rules = [r for g in orjson.loads(body)["data"]["groups"] for r in g["rules"]]
        return {r["name"] for r in rules} == names and all(
            r["health"] == "ok" and not r["lastEvaluation"].startswith("0001") for r in rules
        )

    _wait(evaluated, 20, "every alert loaded and evaluated without error")
    # on a healthy stack nothing fires
    _, body = _http(f"{observed.prom}/api/v1/alerts")
    firing = [a["labels"] for a in orjson.loads(body)["data"]["alerts"] if a["state"] == "firing"]
    assert firing == []
