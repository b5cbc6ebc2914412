"""The Runtime's pending/sent protocol on the real embedded broker and Redis.

A command is reserved ``pending`` in Redis, sent, and marked ``sent`` only after the broker's ack. A worker
that dies anywhere in between leaves ``pending``; the next decision of the same declaration reads the
dispatch partition from the hint and sends the command only if it is not there. Results never create status
keys.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from agents.delivery import LEAD_STATS_LUA
from agents.results import lead_counts
from agents.runtime import SENT_LUA, DispatchLog, Record, Runtime
from pipeline.contracts import events as c
from pipeline.contracts.commands import LEAD_OTHER, MAX_LEAD_SOURCE_CHARS, STATUS_PREFIX, make_command
from pipeline.core.engine import Decision, Learned
from pipeline.io.embedded import Servers, free_port, start_valkey
from pipeline.io.metrics import Metrics
from tests.conftest import Stack, declaration

pytestmark = pytest.mark.integration


class _Engine:
    """The pure core is not under test here: no joiner, no model; results are not learned from."""

    joiner = None
    model = None
    snapshots = None

    def snapshot_meta(self, command: dict[str, Any]) -> dict[str, Any]:
        return {}

    def on_result(self, ev: dict[str, Any], snapshot: Any = None) -> None:
        return None


def _decision(uid: str, plate: str) -> Decision:
    decl = declaration(uid, plate)
    cmd = make_command(
        decl=decl,
        lane="physical_inspection",
        site="EHT",
        severity="high",
        score=1.0,
        reasons=[{"rule_id": "weighbridge_excess", "text": "test"}],
        rule_ids=["weighbridge_excess"],
        pack_version=1,
        decided_ts_ms=decl["ts_ms"],
        deadline_ts_ms=decl["ts_ms"] + 1000,
    )
    return Decision(decl=decl, facts={}, lane="physical_inspection", dispatch=True, command=cmd)


async def _with_runtimes(
    srv: Servers, n: int, body: Callable[..., Awaitable[Any]], redis_url: str | None = None
) -> Any:
    """``n`` runtimes (as if ``n`` worker lives) sharing one producer, each with its own token."""
    producer = AIOKafkaProducer(bootstrap_servers=srv.kafka, linger_ms=0)
    await producer.start()

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None) -> Any:
        return await producer.send(topic, value, key=key, partition=partition)

    rts = [
        Runtime(
            engine=_Engine(),  # type: ignore[arg-type]
            redis=aioredis.from_url(redis_url or srv.redis_url, socket_timeout=1, socket_connect_timeout=1),
            send=send,
            metrics=Metrics.create(CollectorRegistry()),
            dispatch_log=DispatchLog(srv.kafka),
        )
        for _ in range(n)
    ]
    try:
        return await body(*rts)
    finally:
        for rt in rts:
            assert rt.dispatch_log is not None
            await rt.dispatch_log.close()  # type: ignore[attr-defined]
            await rt.redis.aclose()
        await producer.stop()


def _on_topic(srv: Servers, uid: str, want: int) -> list[dict[str, Any]]:
    return Stack(srv).read(c.DISPATCH_COMMANDS, want=want, timeout_s=10, where=lambda x: uid in x["decl_id"])


def _status(srv: Servers, d: Decision) -> dict[str, str]:
    assert d.command is not None
    r = redis.Redis.from_url(srv.redis_url, decode_responses=True)
    return r.hgetall(STATUS_PREFIX + d.command["command_id"])


def test_sent_once_marked_sent_after_the_ack_and_never_again(embedded: Servers, uid: str) -> None:
    d = _decision(uid, "A")

    async def body(first: Runtime, second: Runtime) -> None:
        await first.emit([d], [])
        await first.emit([d], [])  # a redelivery in the same life
        await second.emit([d], [])  # ... and after a restart
        assert first.stats.commands == 1 and first.stats.duplicates == 1
        assert second.stats.commands == 0 and second.stats.duplicates == 1

    asyncio.run(_with_runtimes(embedded, 2, body))
    cmds = _on_topic(embedded, uid, 1)
    assert [x["decl_id"] for x in cmds] == [d.decl["decl_id"]]
    st = _status(embedded, d)
    assert st["status"] == "sent" and "token" not in st
    r = redis.Redis.from_url(embedded.redis_url)
    assert d.command is not None
    assert 0 < r.ttl(STATUS_PREFIX + d.command["command_id"]) <= 7 * 24 * 3600


def test_pending_never_sent_by_a_dead_worker_is_sent_once(embedded: Servers, uid: str) -> None:
    d = _decision(uid, "B")

    async def body(dead: Runtime, alive: Runtime) -> None:
        fresh, _ = await dead._reserve([dict(d.command or {})])  # reserved, then killed before the send
        assert len(fresh) == 1
        assert _status(embedded, d)["status"] == "pending"
        await alive.emit([d], [])
        assert alive.stats.resent == 1 and alive.stats.commands == 1

    asyncio.run(_with_runtimes(embedded, 2, body))
    assert len(_on_topic(embedded, uid, 1)) == 1
    assert _status(embedded, d)["status"] == "sent"


def test_pending_whose_record_reached_the_broker_is_not_sent_again(embedded: Servers, uid: str) -> None:
    d = _decision(uid, "C")

    async def body(dead: Runtime, alive: Runtime) -> int:
        fresh, _ = await dead._reserve([dict(d.command or {})])
        await dead._deliver(fresh)  # acknowledged by the broker, then killed before Redis said "sent"
        assert fresh[0].acked and fresh[0].offset is not None
        await alive.emit([d], [])
        assert alive.stats.recovered == 1 and alive.stats.commands == 0
        return fresh[0].offset

    offset = asyncio.run(_with_runtimes(embedded, 2, body))
    assert len(_on_topic(embedded, uid, 1)) == 1
    st = _status(embedded, d)
    assert st["status"] == "sent" and int(st["offset"]) == offset


def test_results_never_create_keys_and_a_result_outlives_the_sent_mark(embedded: Servers, uid: str) -> None:
    early, racing = _decision(uid, "D"), _decision(uid, "E")

    def result(d: Decision, offset: int) -> Record:
        assert d.command is not None
        ev = {
            "command_id": d.command["command_id"],
            "decl_id": d.decl["decl_id"],
            "ts_ms": int(time.time() * 1000),
            "outcome": "violation",
        }
        import orjson

        return Record(c.INSPECTION_RESULTS, 0, offset, ev["ts_ms"], None, orjson.dumps(ev))

    async def body(rt: Runtime) -> None:
        await rt.on_results([result(early, 1)])  # before the command exists
        assert _status(embedded, early) == {}
        assert rt.metrics.results_unknown_command._value.get() == 1
        await rt.emit([early], [])  # the real dispatch still goes out
        assert rt.stats.commands == 1
        fresh, _ = await rt._reserve([dict(racing.command or {})])
        await rt._deliver(fresh)
        await rt.on_results([result(racing, 2)])  # an operator faster than our "sent" mark
        cid = fresh[0].command["command_id"]  # type: ignore[index]
        await rt.redis.eval(
            SENT_LUA, 1, STATUS_PREFIX + cid, 1, fresh[0].partition, fresh[0].offset, b"[]", 60
        )
        st = _status(embedded, racing)
        assert st["status"] == "result" and st["outcome"] == "violation" and st["sent_ms"] == "1"
        await rt.emit([racing], [])  # a later redelivery is still recognised as dispatched
        assert rt.stats.duplicates == 1

    asyncio.run(_with_runtimes(embedded, 1, body))
    assert _status(embedded, early)["status"] == "sent"
    assert sorted(x["decl_id"] for x in _on_topic(embedded, uid, 2)) == [
        early.decl["decl_id"],
        racing.decl["decl_id"],
    ]


def test_redis_down_then_up_the_batch_waits_and_completes(embedded: Servers, uid: str) -> None:
    port = free_port()  # nothing listens here yet
    d = _decision(uid, "F")
    server: list[Any] = []

    async def body(rt: Runtime) -> None:
        task = asyncio.ensure_future(rt.emit([d], [], events=1))
        deadline = time.monotonic() + 20
        while rt.health.report()[0]:
            assert time.monotonic() < deadline, "the runtime never reported Redis as unavailable"
            await asyncio.sleep(0.05)
        _, report = rt.health.report()
        assert report["status"] == "degraded" and report["waiting_for"] == ["redis"]
        assert not task.done()  # holding: the batch is not finished while Redis is away
        server.append(await asyncio.to_thread(start_valkey, port))
        await asyncio.wait_for(task, 30)
        assert rt.health.report() == (True, {"status": "ok"})
        assert rt.stats.commands == 1
        assert rt.metrics.dependency_retries.labels("redis")._value.get() >= 1
        assert rt.metrics.dependency_up.labels("redis")._value.get() == 1

    try:
        asyncio.run(_with_runtimes(embedded, 1, body, redis_url=f"redis://127.0.0.1:{port}/0"))
        assert len(_on_topic(embedded, uid, 1)) == 1
    finally:
        for s in server:
            os.kill(s.proc.pid, signal.SIGCONT)
            s.stop()


def test_lead_sources_are_counted_per_result_and_bounded(embedded: Servers, uid: str) -> None:
    """Results of watched declarations count per source (a violation also as confirmed); past the bound a new
    source counts under LEAD_OTHER while the sources already counted keep their names."""

    def learned(source: str, outcome: str) -> Learned:
        return Learned("D", "cmd", outcome, [], "EHT", "rule", True, lead_source=source)

    batch = [
        learned("a", "violation"),
        learned("a", "clean"),
        learned("", "violation"),
        learned("b", "not_found"),
    ]
    assert lead_counts(batch) == ["a", 2, 1, "b", 1, 0]
    assert lead_counts([learned("x" * 200, "clean")]) == ["x" * MAX_LEAD_SOURCE_CHARS, 1, 0]
    r = redis.Redis.from_url(embedded.redis_url, decode_responses=True)
    key = f"test:leadstats:{uid}"
    r.eval(LEAD_STATS_LUA, 1, key, 2, LEAD_OTHER, *lead_counts(batch))
    r.eval(LEAD_STATS_LUA, 1, key, 2, LEAD_OTHER, "c", 1, 1, "a", 1, 0)
    assert r.hgetall(key) == {
        "a|results": "3",
        "a|confirmed": "1",
        "b|results": "1",
        "b|confirmed": "0",
        f"{LEAD_OTHER}|results": "1",
        f"{LEAD_OTHER}|confirmed": "1",
    }
    r.delete(key)
