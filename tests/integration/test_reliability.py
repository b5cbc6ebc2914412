"""Exactly one command per decision across kill -9, and outages of Redis and the broker survived unattended.

Each test runs its own embedded tansu + valkey (it pauses or kills them) and a real Faust worker subprocess.
The input is a stream of must-dispatch trucks: a weighbridge reading 20% over the declared gross, then the
declaration; the hard rule ``weighbridge_excess`` must dispatch every one of them exactly once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from pipeline.contracts import events as c
from pipeline.contracts.commands import STATS_KEY, STATUS_PREFIX, command_id
from pipeline.io.embedded import Servers, free_port, start_tansu, start_valkey
from pipeline.io.topics import create_topics
from tests.conftest import PARTITIONS, Stack, declaration, start_worker, stop_worker, wait_ready, weighbridge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SESSION_MS = "6000"  # a killed worker's group membership expires after this


class Own:
    """This test's own broker and Redis (it pauses or kills them)."""

    def __init__(self) -> None:
        self.redis_port = free_port()
        self.tansu = start_tansu()
        self.valkey = start_valkey(port=self.redis_port)
        self.srv = Servers(self.tansu.address, f"redis://127.0.0.1:{self.redis_port}/0")
        create_topics(self.srv.kafka, PARTITIONS, 600_000)

    def restart_valkey(self) -> None:
        self.valkey = start_valkey(port=self.redis_port)

    def stop(self) -> None:
        for s in (self.valkey, self.tansu):
            if s.proc.poll() is not None:
                continue
            os.kill(s.proc.pid, signal.SIGCONT)
            s.stop()


@pytest.fixture
def own() -> Iterator[Own]:
    o = Own()
    try:
        yield o
    finally:
        o.stop()


class Feeder(threading.Thread):
    """Streams must-dispatch trucks (weighbridge +20%, then the declaration) at ``rate`` trucks a second."""

    def __init__(self, kafka: str, uid: str, trucks: int, rate: float) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaProducer

        self.producer = KafkaProducer(bootstrap_servers=kafka, linger_ms=0, acks=1, retries=20)
        self.uid, self.trucks, self.rate = uid, trucks, rate
        self.decl_ids: list[str] = []

    def run(self) -> None:
        for i in range(self.trucks):
            plate = f"K{i:04d}"
            w = weighbridge(self.uid, plate, measured_kg=36_000)  # 20% over 30 t
            d = declaration(self.uid, plate, gross_kg=30_000)
            for topic, ev in ((c.LOGISTICS, w), (c.DECLARATIONS, d)):
                self.producer.send(topic, key=ev["conveyance_id"].encode(), value=orjson.dumps(ev))
            self.decl_ids.append(d["decl_id"])
            time.sleep(1 / self.rate)
        self.producer.flush(60)

    def finish(self) -> list[str]:
        self.join(120)
        self.producer.close(10)
        assert len(self.decl_ids) == self.trucks
        return self.decl_ids


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return 0, {}


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_health(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthz(port)[0] == 200:
            return
        time.sleep(0.2)
    raise AssertionError("the worker's /healthz never answered 200")


def assert_exactly_once(srv: Servers, uid: str, decl_ids: list[str], timeout_s: float = 60.0) -> None:
    cmds = Stack(srv).read(
        c.DISPATCH_COMMANDS, want=len(decl_ids), timeout_s=timeout_s, where=lambda x: uid in x["decl_id"]
    )
    per_decl = Counter(cmd["decl_id"] for cmd in cmds)
    lost = sorted(set(decl_ids) - set(per_decl))
    doubled = sorted(d for d, n in per_decl.items() if n > 1)
    assert not lost, f"{len(lost)} of {len(decl_ids)} must-dispatch declarations got no command: {lost[:5]}"
    assert not doubled, f"{len(doubled)} declarations got more than one command: {doubled[:5]}"
    assert set(per_decl) == set(decl_ids)
    assert all("weighbridge_excess" in cmd["rule_ids"] for cmd in cmds)


def worker(
    own: Own, tmp_path: Path, index: int = 0, metrics_port: int | None = None, session_ms: str = SESSION_MS
) -> subprocess.Popen[bytes]:
    env = {"BUKONG_SESSION_TIMEOUT_MS": session_ms}
    if metrics_port:
        env["BUKONG_METRICS_PORT"] = str(metrics_port)
    return start_worker(own.srv, tmp_path, extra_env=env, index=index)


def _processed(srv: Servers) -> int:
    return int(redis.Redis.from_url(srv.redis_url).hget(STATS_KEY, "events") or 0)


def test_kill_9_at_random_moments_loses_and_doubles_no_command(own: Own, tmp_path: Path, uid: str) -> None:
    rng = random.Random(uid)
    t0 = time.monotonic()
    proc = worker(own, tmp_path, session_ms="3000")
    procs = [proc]
    try:
        wait_ready(own.srv)
        feeder = Feeder(own.srv.kafka, uid, trucks=300, rate=15)
        feeder.start()
        for kill in range(3):
            # a random moment while the worker is processing (after a restart: catching up a backlog)
            before = _processed(own.srv)
            deadline = time.monotonic() + 45  # a restarted worker first joins the group (slow when loaded)
            while _processed(own.srv) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            print(
                f"kill {kill + 1} at {time.monotonic() - t0:.1f} s, {_processed(own.srv)} records processed"
            )
            proc = worker(own, tmp_path, index=kill + 1, session_ms="3000")
            procs.append(proc)
        decl_ids = feeder.finish()
        assert_exactly_once(own.srv, uid, decl_ids, timeout_s=90)  # the last restart catches up a backlog
        assert proc.poll() is None
    finally:
        for p in procs:
            stop_worker(p)


def test_redis_paused_worker_holds_then_dispatches_everything_once(
    own: Own, tmp_path: Path, uid: str
) -> None:
    port = free_port()
    proc = worker(own, tmp_path, metrics_port=port)
    try:
        wait_ready(own.srv)
        wait_health(port)
        feeder = Feeder(own.srv.kafka, uid, trucks=200, rate=15)
        feeder.start()
        time.sleep(3)
        os.kill(own.valkey.proc.pid, signal.SIGSTOP)
        seen: list[tuple[int, dict[str, Any]]] = []
        paused_until = time.monotonic() + 8
        while time.monotonic() < paused_until:
            seen.append(healthz(port))
            time.sleep(0.5)
        os.kill(own.valkey.proc.pid, signal.SIGCONT)
        degraded = [body for code, body in seen if code == 503]
        assert degraded, f"/healthz never reported the Redis outage: {seen}"
        assert degraded[-1]["status"] == "degraded" and "redis" in degraded[-1]["waiting_for"]
        decl_ids = feeder.finish()
        assert_exactly_once(own.srv, uid, decl_ids)
        assert proc.poll() is None, "the worker exited during the Redis pause"
        wait_health(port, timeout_s=30)
        assert metric(port, 'bukong_dependency_retries_total{dependency="redis"}') >= 1
        assert metric(port, 'bukong_dependency_up{dependency="redis"}') == 1
    finally:
        stop_worker(proc)


def test_redis_killed_and_restarted_on_the_same_port(own: Own, tmp_path: Path, uid: str) -> None:
    proc = worker(own, tmp_path)
    try:
        wait_ready(own.srv)
        feeder = Feeder(own.srv.kafka, uid, trucks=150, rate=15)
        feeder.start()
        time.sleep(3)
        own.valkey.proc.kill()
        own.valkey.proc.wait(5)
        time.sleep(3)
        own.restart_valkey()
        decl_ids = feeder.finish()
        assert_exactly_once(own.srv, uid, decl_ids)
        assert proc.poll() is None, "the worker exited while Redis was down"
    finally:
        stop_worker(proc)


def test_broker_paused_worker_resumes_by_itself(own: Own, tmp_path: Path, uid: str) -> None:
    proc = worker(own, tmp_path)
    try:
        wait_ready(own.srv)
        feeder = Feeder(own.srv.kafka, uid, trucks=150, rate=15)
        feeder.start()
        time.sleep(3)
        os.kill(own.tansu.proc.pid, signal.SIGSTOP)
        time.sleep(5)
        os.kill(own.tansu.proc.pid, signal.SIGCONT)
        decl_ids = feeder.finish()
        assert_exactly_once(own.srv, uid, decl_ids)
        assert proc.poll() is None, "the worker exited while the broker was paused"
    finally:
        stop_worker(proc)


def test_results_for_unknown_commands_create_no_key_and_do_not_block_the_dispatch(
    own: Own, tmp_path: Path, uid: str
) -> None:
    port = free_port()
    proc = worker(own, tmp_path, metrics_port=port)
    try:
        wait_ready(own.srv)
        wait_health(port)
        st = Stack(own.srv)
        plates = [f"R{i:02d}" for i in range(10)]
        decl_ids = [f"D-{uid}-{p}" for p in plates]
        for decl_id in decl_ids:  # ids follow from decl_id: anyone can post one before the command exists
            st.send(
                c.INSPECTION_RESULTS,
                {
                    "command_id": command_id(decl_id),
                    "decl_id": decl_id,
                    "ts_ms": int(time.time() * 1000),
                    "outcome": "clean",
                },
                key=decl_id,
            )
        deadline = time.monotonic() + 30
        while metric(port, "bukong_results_unknown_command_total") < len(decl_ids):
            assert time.monotonic() < deadline, "the worker did not consume the results"
            time.sleep(0.2)
        r = redis.Redis.from_url(own.srv.redis_url)
        assert not [d for d in decl_ids if r.exists(STATUS_PREFIX + command_id(d))], "a result created a key"
        for p in plates:
            st.send(c.LOGISTICS, weighbridge(uid, p, measured_kg=36_000))
            st.send(c.DECLARATIONS, declaration(uid, p, gross_kg=30_000))
        assert_exactly_once(own.srv, uid, decl_ids)
        for d in decl_ids:
            key = STATUS_PREFIX + command_id(d)
            assert r.hget(key, "status") == b"sent" and 0 < r.ttl(key) <= 7 * 24 * 3600
        if st._producer is not None:
            st._producer.close()
    finally:
        stop_worker(proc)
