"""agents/fastpath.py and agents/faust_tuning.py override Faust internals. If an upgrade of faust-streaming
changes their shape, these tests fail loudly (instead of the worker silently losing batches or commits)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from agents import faust_tuning
from agents.fastpath import BatchConsumer, OffsetCommitter


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


@pytest.mark.parametrize(
    ("owner", "name", "params", "coroutine"),
    [
        (faust_aiokafka.Consumer, "_drain_messages", ["self", "fetcher"], True),
        (faust_aiokafka.Consumer, "_wait_next_records", ["self", "timeout"], True),
        (faust_aiokafka.Consumer, "perform_seek", ["self"], True),
        (faust_aiokafka.Consumer, "_to_message", ["self", "tp", "record"], False),
        (faust_aiokafka.AIOKafkaConsumerThread, "commit", ["self", "offsets"], True),
        (faust_aiokafka.Producer, "_settings_extra", ["self"], False),
        (faust_consumer.Consumer, "_new_offset", ["self", "tp"], False),
    ],
)
def test_overridden_faust_internals_keep_their_shape(
    owner: type, name: str, params: list[str], coroutine: bool
) -> None:
    fn = getattr(owner, name, None)
    assert fn is not None, f"faust no longer has {owner.__name__}.{name}: agents/fastpath.py must be ported"
    assert _params(fn) == params, f"{owner.__name__}.{name} changed signature: {inspect.signature(fn)}"
    assert inspect.iscoroutinefunction(fn) is coroutine


def test_worker_consumer_factory_keeps_its_shape() -> None:
    original = faust_tuning._original  # the stock factory, before faust_tuning wraps it
    assert _params(original) == ["self", "transport"]
    assert not inspect.iscoroutinefunction(original)
    # the wrapped factory sets this private aiokafka attribute, read when the consumer starts
    import aiokafka

    assert "_fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.__init__)


def test_consumer_state_we_touch_still_exists() -> None:
    assert "_read_offset" in faust_consumer.Consumer.__annotations__
    assert "self._thread" in inspect.getsource(faust_consumer.ThreadDelegateConsumer.__init__)
    assert hasattr(faust_aiokafka.Consumer, "consumer_stopped_errors")
    assert issubclass(BatchConsumer, faust_aiokafka.Consumer)


def test_faust_commits_only_acked_offsets_so_the_hot_path_is_committed_by_us_alone() -> None:
    """Hot-topic records never become Faust messages, so they are never acked; Faust's own commit takes its
    offsets from the acked lists only, hence never commits a hot partition ahead of the OffsetCommitter."""
    src = inspect.getsource(faust_consumer.Consumer._new_offset)
    assert "self._acked[tp]" in src
    commit_src = inspect.getsource(faust_consumer.Consumer._commit_tps)
    assert "_filter_committable_offsets" in commit_src or "_new_offset" in commit_src
    drain = inspect.getsource(BatchConsumer._drain_messages)
    assert "self.ack(" not in drain and ".ack(" not in drain


def test_producer_send_returns_the_delivery_future_not_the_ack() -> None:
    """Faust's send awaits aiokafka's send, which only queues the record; the Runtime must await the future
    it returns (agents/runtime.py _wait_acks), or Redis would say "sent" before the broker has it."""
    sig = inspect.signature(faust_aiokafka.Producer.send)
    assert "partition" in sig.parameters
    assert "Awaitable" in str(sig.return_annotation)


class _Thread:
    def __init__(self) -> None:
        self.commits: list[dict[Any, int]] = []

    async def commit(self, offsets: dict[Any, int]) -> bool:
        self.commits.append(dict(offsets))
        return True


class _Consumer:
    def __init__(self) -> None:
        self._thread = _Thread()


class _Rec:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def test_offset_committer_commits_the_next_offset_of_processed_batches_only() -> None:
    asyncio.run(_offset_committer())


async def _offset_committer() -> None:
    from faust.types import TP

    consumer = _Consumer()
    cm = OffsetCommitter(consumer, interval_s=3600)  # type: ignore[arg-type]
    a, b = TP("declarations", 0), TP("logistics", 1)
    await cm.commit()
    assert consumer._thread.commits == []  # nothing processed: nothing committed
    cm.processed({a: [_Rec(5), _Rec(9)], b: [_Rec(3)]})
    await cm.maybe_commit()
    assert consumer._thread.commits == []  # not due yet
    await cm.commit(only=[b])
    assert consumer._thread.commits == [{b: 4}]
    await cm.commit()
    assert consumer._thread.commits[-1] == {a: 10}


def test_the_worker_keeps_the_configured_log_level() -> None:
    """Faust's terminal spinner sets the root logger to DEBUG, so every library's debug call (aiokafka logs
    each request) would build a record only to drop it. The worker's logging keeps the level asked for."""
    import logging

    import faust

    from agents.app import QuietWorker

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    app = faust.App("log-level-test", broker="kafka://127.0.0.1:1")
    try:
        stock = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
        stock._setup_logging()
        assert root.level == logging.DEBUG  # what the override is for: if this fails, faust fixed it
        quiet = QuietWorker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
        quiet._setup_logging()
        assert root.level == logging.WARNING
        assert not logging.getLogger("aiokafka.conn").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


class _Stop(Exception):
    pass


def test_a_partition_paused_after_its_fetch_keeps_the_fetched_records() -> None:
    """The input clock pauses a partition read too far ahead (agents/inputclock.py) from the event loop,
    which can run between a fetch and the batch handler. The fetcher's position is past what it returned,
    so records of a partition paused meanwhile must reach the handler: dropped, they were lost for good (the
    full drill's fuzz stage lost 208 records and 23 declarations this way). A partition revoked meanwhile
    (no longer assigned, so not paused either) loses them: its new owner reads them."""
    from types import SimpleNamespace

    from faust.types import TP

    kept, paused_tp, revoked_tp = TP("declarations", 0), TP("declarations", 1), TP("logistics", 2)
    active = {kept, paused_tp, revoked_tp}
    paused: set[Any] = set()
    got: list[dict[Any, list[Any]]] = []
    rounds = iter([1, 2])

    async def wait_next_records(timeout: float) -> tuple[dict[Any, list[Any]], set[Any]]:
        if next(rounds, None) is None:
            raise _Stop
        records = {tp: [SimpleNamespace(offset=7)] for tp in (kept, paused_tp, revoked_tp)}
        active.discard(paused_tp)  # paused by the input clock, as the fetch returns
        paused.add(paused_tp)
        active.discard(revoked_tp)  # revoked: neither active nor paused
        return records, active

    async def handler(batch: dict[Any, list[Any]], fetched_at: float) -> None:
        got.append(batch)

    fake = SimpleNamespace(
        callback=None,
        _read_offset={},
        hot_topics=frozenset({"declarations", "logistics"}),
        _stopped=asyncio.Event(),
        _wait_next_records=wait_next_records,
        should_stop=False,
        flow_active=True,
        batch_handler=handler,
        _paused_partitions=paused,
        consumer_stopped_errors=(),
    )
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    with pytest.raises(_Stop):
        asyncio.run(BatchConsumer._drain_messages(fake, fetcher))  # type: ignore[arg-type]
    assert got and set(got[0]) == {kept, paused_tp}
    assert fake._read_offset[paused_tp] == 7  # read, so the offset committed after the batch covers it


def test_faust_keeps_the_pauses_of_partitions_still_assigned_after_a_rebalance() -> None:
    """agents/app.py keeps the input clock's paused partitions that stay assigned after a rebalance, because
    Faust keeps them paused (active = assigned minus paused): were Faust to drop them, the clock would have
    to drop them too, or it would resume partitions Faust reads anyway; were the clock to drop them while
    Faust keeps them, they would never be read again."""
    assigned_src = inspect.getsource(faust_consumer.Consumer.on_partitions_assigned)
    assert "self._paused_partitions.intersection_update(assigned)" in assigned_src
    active_src = inspect.getsource(faust_consumer.Consumer._set_active_tps)
    assert "difference_update(self._paused_partitions)" in active_src
