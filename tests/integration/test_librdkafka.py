"""A non-Python client on the embedded broker: librdkafka (via confluent-kafka) feeds the pipeline and reads
its dispatch commands in a consumer group, as a declaration system or a port's dispatch console would."""

from __future__ import annotations

import time
from typing import Any

import confluent_kafka as ck  # librdkafka; `make venv` installs it (bench extra, pinned by quixstreams)
import orjson
import pytest

from pipeline.contracts import events as c
from pipeline.contracts.commands import command_id
from tests.conftest import PARTITIONS, Stack, declaration, weighbridge

pytestmark = pytest.mark.integration


def test_librdkafka_is_recent_enough_for_tansu() -> None:
    # librdkafka 2.0 (Debian's kcat) fails the ApiVersion handshake with tansu: "Read underflow"
    version = tuple(int(x) for x in ck.libversion()[0].split(".")[:2])
    assert version >= (2, 12), f"librdkafka {ck.libversion()[0]}: the embedded broker needs >= 2.12"


def _kafka_python_partition(key: bytes, partitions: int) -> int:
    from kafka.partitioner.default import murmur2

    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def test_librdkafka_producer_feeds_the_pipeline_and_a_group_consumer_reads_the_command(
    stack: Stack, uid: str
) -> None:
    decl = declaration(uid, "RDK", gross_kg=30_000)
    weigh = weighbridge(uid, "RDK", measured_kg=36_000)  # 20% over the declared gross: must be dispatched
    producer = ck.Producer(
        {
            "bootstrap.servers": stack.srv.kafka,
            "acks": "all",
            "enable.idempotence": False,
            # the join needs every record of a conveyance on one partition, whichever client wrote it:
            # librdkafka's default (CRC32) differs from the Java/Python clients' murmur2
            "partitioner": "murmur2_random",
            "log.connection.close": False,  # the broker closes idle connections: not an error
        }
    )
    delivered: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None, f"delivery failed: {err}"
        delivered.append(msg)

    key = decl["conveyance_id"].encode()
    producer.produce(c.LOGISTICS, key=key, value=orjson.dumps(weigh), on_delivery=on_delivery)
    producer.produce(c.DECLARATIONS, key=key, value=orjson.dumps(decl), on_delivery=on_delivery)
    assert producer.flush(15) == 0, "librdkafka could not deliver to the embedded broker"
    assert len(delivered) == 2
    want = _kafka_python_partition(key, PARTITIONS)
    assert {m.partition() for m in delivered} == {want}, "co-partitioned with kafka-python's producers"

    consumer = ck.Consumer(
        {
            "bootstrap.servers": stack.srv.kafka,
            "group.id": f"dispatch-console-{uid}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # the embedded broker completes a join after half the session timeout: keep it short
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": 10,
            "log.connection.close": False,
        }
    )
    assigned: list[Any] = []
    consumer.subscribe([c.DISPATCH_COMMANDS], on_assign=lambda _c, parts: assigned.extend(parts))
    mine: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not mine:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            cmd = orjson.loads(msg.value())
            if cmd["decl_id"] == decl["decl_id"]:
                mine.append(cmd)
                consumer.commit(message=msg, asynchronous=False)
        assert mine, "no dispatch command read back through a librdkafka consumer group"
        assert {tp.partition for tp in assigned} == set(range(PARTITIONS)), (
            "the group assigned every partition"
        )
        cmd = mine[0]
        assert cmd["command_id"] == command_id(decl["decl_id"])
        assert cmd["lane"] == "physical_inspection" and cmd["site"] == "EHT"
        assert "weighbridge_excess" in cmd["rule_ids"]
        committed = consumer.committed(assigned, timeout=10)
        assert any(tp.offset > 0 for tp in committed), "the group's offset was committed"
    finally:
        consumer.close()
