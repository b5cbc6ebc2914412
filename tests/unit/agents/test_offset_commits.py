"""agents/fastpath.py's OffsetCommitter: the batch path does not wait for the broker's answer to a commit,
one commit is in flight at a time, and an explicit commit waits for it (offsets reach the broker in order)."""

from __future__ import annotations

import asyncio
from typing import Any

from agents.fastpath import OffsetCommitter


class _SlowThread:
    """A consumer thread whose commits complete only when the test releases them."""

    def __init__(self) -> None:
        self.started: list[dict[Any, int]] = []
        self.done: list[dict[Any, int]] = []
        self.release = asyncio.Event()

    async def commit(self, offsets: dict[Any, int]) -> bool:
        self.started.append(dict(offsets))
        await self.release.wait()
        self.done.append(dict(offsets))
        return True


class _Consumer:
    def __init__(self) -> None:
        self._thread = _SlowThread()


class _Rec:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def test_maybe_commit_does_not_wait_for_the_broker_and_commit_waits_for_it() -> None:
    asyncio.run(_background())


async def _background() -> None:
    from faust.types import TP

    consumer = _Consumer()
    th = consumer._thread
    cm = OffsetCommitter(consumer, interval_s=0)  # type: ignore[arg-type]
    a = TP("declarations", 0)
    cm.processed({a: [_Rec(4)]})
    await asyncio.wait_for(cm.maybe_commit(), 1)  # returns although the broker has not answered
    await asyncio.sleep(0)
    assert th.started == [{a: 5}] and th.done == []
    cm.processed({a: [_Rec(9)]})
    await cm.maybe_commit()  # one in flight: these offsets wait for the next commit
    await asyncio.sleep(0)
    assert th.started == [{a: 5}]
    assert cm.pending == {a: 10}
    later = asyncio.ensure_future(cm.commit())
    await asyncio.sleep(0.01)
    assert th.started == [{a: 5}]  # the explicit commit waits for the one in flight first
    th.release.set()
    await asyncio.wait_for(later, 1)
    assert th.done == [{a: 5}, {a: 10}]
    assert cm.pending == {}


def test_processed_never_moves_a_partition_back() -> None:
    from faust.types import TP

    cm = OffsetCommitter(_Consumer(), interval_s=3600)  # type: ignore[arg-type]
    a = TP("tracks", 1)
    cm.processed({a: [_Rec(7), _Rec(8)]})
    cm.processed({a: [_Rec(3)]})
    assert cm.pending == {a: 9}
