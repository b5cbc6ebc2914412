"""The shared live-stream reader: bounded per-client queues, slow clients dropped, caps, resume overlap."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from pipeline.apps.web.live import LiveHub, StreamLimit, make_batch
from pipeline.io.embedded import Servers

pytestmark = pytest.mark.integration


def _batch(*ids: str) -> object:
    return make_batch(tuple((i, b'{"command_id":"' + i.encode() + b'"}') for i in ids))


def test_a_slow_client_is_dropped_and_never_blocks_the_others(embedded: Servers) -> None:
    async def main() -> None:
        hub = LiveHub(aioredis.from_url(embedded.redis_url), max_streams=10, max_per_role=10, queue_batches=3)
        slow, fast = hub.open("analyst"), hub.open("analyst")
        got = []
        for i in range(10):
            hub.broadcast(_batch(f"{i}-0"))  # type: ignore[arg-type]
            got.append(fast.queue.get_nowait())  # the fast client keeps up
        assert slow.dropped and slow not in hub.subscribers and hub.dropped == 1
        assert slow.queue.qsize() == 3  # bounded: never more than queue_batches frames held
        assert [b.last for b in got] == [f"{i}-0" for i in range(10)]
        assert hub.per_role["analyst"] == 1
        await hub.stop()

    asyncio.run(main())


def test_caps_per_role_and_global_and_slots_freed_on_close(embedded: Servers) -> None:
    async def main() -> None:
        hub = LiveHub(aioredis.from_url(embedded.redis_url), max_streams=3, max_per_role=2)
        a1, _a2 = hub.open("analyst"), hub.open("analyst")
        with pytest.raises(StreamLimit) as err:
            hub.open("analyst")
        assert err.value.cap == "role" and "BUKONG_WEB_MAX_STREAMS_PER_ROLE=2" in str(err.value)
        hub.open("operator")
        with pytest.raises(StreamLimit) as err:
            hub.open("operator")
        assert err.value.cap == "global" and "BUKONG_WEB_MAX_STREAMS=3" in str(err.value)
        hub.close(a1)
        hub.close(a1)  # closing twice frees one slot only
        hub.open("analyst")
        with pytest.raises(StreamLimit):
            hub.open("analyst")
        await hub.stop()

    asyncio.run(main())


def test_a_resumed_stream_gets_only_the_hits_newer_than_its_catch_up() -> None:
    b = _batch("5-0", "5-1", "6-0")
    assert b.after("4-9") is b  # wholly newer: the shared frame as is
    part = b.after("5-0")
    assert part is not None and [i for i, _ in part.entries] == ["5-1", "6-0"]
    assert b"5-0" not in part.frame and part.frame.startswith(b"id: 6-0\nevent: hits\ndata: [")
    assert b.after("6-0") is None
