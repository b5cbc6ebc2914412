"""The reference pipelines benchmarks/e2e.py runs beside Bukong, each in its own process.

All of them read the same input topics and write one small record per declaration to dispatch-commands,
carrying the triggering record's producer timestamp (``trigger.produced_ms``) so latency is measured the same
way for every pipeline. Each counts the input records it has processed in a shared ``multiprocessing.Value``.

* ``floor`` — raw aiokafka: consume, orjson decode, produce; no state. The broker and client floor.
* ``naive`` — the Faust pipeline a newcomer writes from the Faust docs: ``faust.Record`` models, one event
  at a time, a table update and a send per event, Faust's default settings except the broker address (and the
  topic partition count, which Faust requires to match the input topics).
* ``quix``  — the same naive workload (decode, keyed stateful count, produce) in Quix Streams, with the
  consumer's fetch wait set like the floor's (the broker only answers a fetch when the wait expires).
* ``pathway`` — the same workload in Pathway (a Rust dataflow engine behind a Python API, librdkafka
  underneath), the same fetch wait and 5 ms minibatches; a benchmark-only dependency (the ``bench`` extra).

The floor, Quix Streams, Pathway and Bukong's workers all fetch with the same wait:
``BUKONG_FETCH_MAX_WAIT_MS`` (the worker's setting), which benchmarks/e2e.py sets from ``--fetch-wait-ms``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import orjson

from pipeline.contracts import events as c
from pipeline.contracts.settings import Settings

FETCH_WAIT_ENV = "BUKONG_FETCH_MAX_WAIT_MS"


def fetch_wait_ms() -> int:
    """The fetch wait every pipeline of a run uses: the worker's setting (its default when unset)."""
    default = Settings.model_fields["fetch_max_wait_ms"].default
    return int(os.environ.get(FETCH_WAIT_ENV) or default)


FLOOR_GROUP = "floor"
NAIVE_APP = "naive-faust"
QUIX_GROUP = "quix"
PATHWAY_GROUP = "pathway"


# ---------------------------------------------------------------------------------------------- floor
async def _floor(kafka: str, stop: Any, count: Any) -> None:
    import aiokafka

    consumer = aiokafka.AIOKafkaConsumer(
        *c.INPUT_TOPICS,
        bootstrap_servers=kafka,
        group_id=FLOOR_GROUP,
        fetch_max_wait_ms=fetch_wait_ms(),
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_poll_records=5000,
    )
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=1)
    await consumer.start()
    await producer.start()
    n = 0
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            futs = []
            for recs in batch.values():
                for r in recs:
                    ev = orjson.loads(r.value)
                    n += 1
                    if r.topic == c.DECLARATIONS:
                        out = {
                            "command_id": "cmd-" + ev["decl_id"],
                            "decl_id": ev["decl_id"],
                            "trigger": {"produced_ms": r.timestamp},
                        }
                        futs.append(await producer.send(c.DISPATCH_COMMANDS, orjson.dumps(out), key=r.key))
            for f in futs:
                await f
            count.value = n
    finally:
        await consumer.stop()
        await producer.stop()


def floor_entry(kafka: str, stop: Any, count: Any) -> None:
    asyncio.run(_floor(kafka, stop, count))


# ---------------------------------------------------------------------------------------------- naive Faust
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def naive_app(kafka: str, partitions: int, datadir: str, count: Any) -> Any:
    """The textbook Faust app. Nothing here is tuned: that is the point of the baseline."""
    import faust

    class Declaration(faust.Record, serializer="json"):
        decl_id: str
        conveyance_id: str
        ts_ms: int
        port: str
        hs_code: str
        gross_kg: float
        value_cny: float

    class Logistics(faust.Record, serializer="json"):
        event_id: str
        kind: str
        conveyance_id: str
        ts_ms: int

    class TrackPoint(faust.Record, serializer="json"):
        conveyance_id: str
        ts_ms: int
        lat: float
        lon: float

    class Command(faust.Record, serializer="json"):
        command_id: str
        decl_id: str
        seen: int
        trigger: dict

    app = faust.App(
        NAIVE_APP,
        broker=f"kafka://{kafka}",
        topic_partitions=partitions,
        datadir=datadir,
        web_port=_free_port(),
        web_enabled=False,
    )
    seen = app.Table("seen_per_conveyance", default=int)
    commands = app.topic(c.DISPATCH_COMMANDS, value_type=Command)

    @app.agent(app.topic(c.DECLARATIONS, value_type=Declaration))
    async def declarations(stream: Any) -> None:
        async for event in stream.events():
            decl = event.value
            seen[decl.conveyance_id] += 1
            count.value += 1
            await commands.send(
                key=decl.conveyance_id,
                value=Command(
                    command_id="cmd-" + decl.decl_id,
                    decl_id=decl.decl_id,
                    seen=seen[decl.conveyance_id],
                    trigger={"produced_ms": int(event.message.timestamp * 1000)},
                ),
            )

    @app.agent(app.topic(c.LOGISTICS, value_type=Logistics))
    async def logistics(stream: Any) -> None:
        async for ev in stream:
            seen[ev.conveyance_id] += 1
            count.value += 1

    @app.agent(app.topic(c.TRACKS, value_type=TrackPoint))
    async def tracks(stream: Any) -> None:
        async for ev in stream:
            seen[ev.conveyance_id] += 1
            count.value += 1

    return app


def naive_entry(kafka: str, partitions: int, datadir: str, count: Any) -> None:
    import logging

    import faust

    logging.getLogger("faust").setLevel(logging.WARNING)
    app = naive_app(kafka, partitions, datadir, count)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


# ---------------------------------------------------------------------------------------------- Quix Streams
def quix_entry(kafka: str, state_dir: str, count: Any) -> None:
    """Decode, keyed stateful count, produce — the naive workload in Quix Streams."""
    import logging

    from quixstreams import Application

    app = Application(
        broker_address=kafka,
        consumer_group=QUIX_GROUP,
        auto_offset_reset="earliest",
        state_dir=Path(state_dir),
        consumer_extra_config={"fetch.wait.max.ms": fetch_wait_ms()},
        loglevel=logging.WARNING,
    )
    out = app.topic(c.DISPATCH_COMMANDS, value_serializer="json")

    def counted(value: dict, key: Any, timestamp: int, headers: Any, state: Any) -> dict:
        n = state.get("seen", 0) + 1
        state.set("seen", n)
        count.value += 1
        return {
            "command_id": "cmd-" + value["decl_id"],
            "decl_id": value["decl_id"],
            "seen": n,
            "trigger": {"produced_ms": timestamp},
        }

    def count_only(value: dict, state: Any) -> None:
        state.set("seen", state.get("seen", 0) + 1)
        count.value += 1

    decls = app.dataframe(app.topic(c.DECLARATIONS, value_deserializer="json"))
    decls.apply(counted, stateful=True, metadata=True).to_topic(out)
    for name in (c.LOGISTICS, c.TRACKS):
        sdf = app.dataframe(app.topic(name, value_deserializer="json"))
        sdf.update(count_only, stateful=True)
    app.run()


# ---------------------------------------------------------------------------------------------- Pathway
def pathway_entry(kafka: str, count: Any) -> None:
    """Decode, keyed count, produce — the naive workload in Pathway (a Rust dataflow engine, librdkafka).

    One reader per input topic (JSON decoded by the engine into two columns), a count per conveyance, and
    for each declaration one record with the conveyance's count as of its arrival (``asof_now_join``: a
    declaration is answered once, not again each time its count changes). Minibatches close every 5 ms,
    like the others' fetch wait. The processed count comes from a one-row total the engine updates per
    minibatch. One engine thread (``PATHWAY_THREADS`` unset), like the one-process peers.
    """
    import pathway as pw

    class Event(pw.Schema):
        conveyance_id: str
        decl_id: str | None = pw.column_definition(default_value=None)

    def source(topic: str) -> Any:
        settings = {
            "bootstrap.servers": kafka,
            "group.id": f"{PATHWAY_GROUP}-{topic}",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": str(fetch_wait_ms()),
        }
        return pw.io.kafka.read(
            settings,
            topic=topic,
            schema=Event,
            format="json",
            with_metadata=True,
            autocommit_duration_ms=5,
            name=topic,
        )

    events = pw.Table.concat_reindex(*(source(t) for t in c.INPUT_TOPICS))
    seen = events.groupby(events.conveyance_id).reduce(events.conveyance_id, seen=pw.reducers.count())
    decls = events.filter(events.decl_id.is_not_none())
    out = decls.asof_now_join(seen, decls.conveyance_id == seen.conveyance_id).select(
        command_id=pw.apply(lambda d: "cmd-" + d, pw.left.decl_id),
        decl_id=pw.left.decl_id,
        seen=pw.right.seen,
        trigger=pw.apply(lambda m: {"produced_ms": m["timestamp_millis"].as_int()}, pw.left._metadata),
    )
    pw.io.kafka.write(out, {"bootstrap.servers": kafka, "linger.ms": "1"}, c.DISPATCH_COMMANDS, format="json")
    total = events.reduce(n=pw.reducers.count())

    def on_change(key: Any, row: dict[str, Any], time: int, is_addition: bool) -> None:
        if is_addition:
            count.value = int(row["n"])

    pw.io.subscribe(total, on_change=on_change)
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)
