"""Two workers in one consumer group; one dies mid-stream. Its partitions and state move to the survivor and
the dispatch commands equal those of one undisturbed pipeline: none lost, none doubled."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.contracts import events as c
from pipeline.contracts.commands import READY_KEY, STATS_KEY
from pipeline.core.policy import DecisionPolicy, uniform
from pipeline.io.embedded import Servers, servers
from pipeline.io.topics import create_topics
from tests.conftest import PARTITIONS, Stack, declaration, start_worker, stop_worker, wait_ready, weighbridge

pytestmark = pytest.mark.integration

TRUCKS = 60
SESSION_MS = "6000"


@pytest.fixture
def fresh() -> Iterator[Servers]:
    with servers(None, None) as srv:
        create_topics(srv.kafka, PARTITIONS, 600_000)
        yield srv


def _input(uid: str) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]], set[str]]:
    """Declarations first, weighbridge readings later: a worker that dies in between holds pending joins.

    The expected set is what one undisturbed worker dispatches: the overweight trucks, plus the declarations
    the policy picks at random (双随机). Those picks are a pure function of the decl_id, known here.
    """
    decls, weighs, expect = [], [], set()
    p_random = DecisionPolicy().base_random_prob
    for i in range(TRUCKS):
        plate = f"T{i:03d}"
        heavy = i % 3 == 0
        decls.append((c.DECLARATIONS, declaration(uid, plate, gross_kg=30_000)))
        weighs.append((c.LOGISTICS, weighbridge(uid, plate, measured_kg=35_000 if heavy else 30_050)))
        decl_id = f"D-{uid}-{plate}"
        if heavy or uniform(decl_id, "random") < p_random:
            expect.add(decl_id)
    return decls, weighs, expect


def _wait_committed(srv: Servers, n: int, timeout_s: float = 20.0) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=srv.kafka)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            offsets = admin.list_group_offsets("bukong").get("bukong", {})
            if sum(o.offset for tp, o in offsets.items() if tp.topic == c.DECLARATIONS) >= n:
                return
            time.sleep(0.2)
        raise AssertionError("the workers did not commit their offsets")
    finally:
        admin.close()


def _processed(srv: Servers) -> int:
    return int(redis.Redis.from_url(srv.redis_url).hget(STATS_KEY, "events") or 0)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_survivor_takes_over_partitions_and_state(fresh: Servers, tmp_path: Path, uid: str, sig: int) -> None:
    env = {"BUKONG_SESSION_TIMEOUT_MS": SESSION_MS}
    a = start_worker(fresh, tmp_path, extra_env=env, index=0)
    b = start_worker(fresh, tmp_path, extra_env=env, index=1)
    st = Stack(fresh)
    try:
        wait_ready(fresh, 2)
        r = redis.Redis.from_url(fresh.redis_url, decode_responses=True)
        owned = {w: {x for x in p.split(",") if x} for w, p in r.hgetall(READY_KEY).items()}
        print("assignment", owned)
        assert len(owned) == 2 and all(owned.values()), "both workers must own partitions before the kill"
        decls, weighs, expect = _input(uid)
        for topic, ev in decls:
            st.send(topic, ev)
        deadline = time.monotonic() + 30
        while _processed(fresh) < len(decls) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processed(fresh) >= len(decls)
        _wait_committed(fresh, len(decls))  # the dying worker's pending joins exist only in its state
        a.send_signal(sig)
        a.wait(30)
        for topic, ev in weighs:
            st.send(topic, ev)
        cmds = st.read(
            c.DISPATCH_COMMANDS, want=len(expect), timeout_s=60, where=lambda cmd: uid in cmd["decl_id"]
        )
        got = [cmd["decl_id"] for cmd in cmds]
        assert sorted(set(got)) == sorted(expect), "lost or extra commands"
        assert len(got) == len(set(got)), "a command was dispatched twice"
        assert b.poll() is None
        survivor = [w for w, p in r.hgetall(READY_KEY).items() if str(b.pid) in w]
        held = {p for p in r.hget(READY_KEY, survivor[0]).split(",") if p.split(":")[0] in c.INPUT_TOPICS}
        assert survivor and len(held) == len(c.INPUT_TOPICS) * PARTITIONS
    finally:
        stop_worker(a)
        stop_worker(b)
        if st._producer is not None:
            st._producer.close()
