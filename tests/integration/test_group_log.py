"""The consumer group's decision log on a real Redis (valkey): checkpoint, catch-up, and bad entries.

A worker that starts late restores the group's checkpoint (model, budgets, grades as of a log position) and
folds the entries after it; an unreadable checkpoint falls back to the whole log; an entry this version
cannot read is skipped and counted, never stopping the worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis as redis_sync

from agents import grouplog
from agents.globalstate import SharedFacts
from pipeline.io.embedded import EmbeddedServer
from tests.integration.test_multiworker_equivalence import (
    Worker,
    _catch_up_reader,
    _engine,
    _learnt,
    _run,
    _slice,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def day() -> list[tuple[str, dict[str, Any]]]:
    return _slice()


def _late(url: str, ns: str) -> Worker:
    engine = _engine(False)
    w = Worker(engine, SharedFacts(None, engine.joiner, ns, group=engine))
    asyncio.run(_catch_up_reader(url, w))
    return w


def test_a_late_worker_starts_from_the_checkpoint_and_the_log_after_it(
    valkey: EmbeddedServer, day: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"redis://127.0.0.1:{valkey.port}/0"
    monkeypatch.setattr(grouplog, "CHECKPOINT_S", 0.5)  # several checkpoints during the run
    _, workers = asyncio.run(_run(url, "ck", 2, day))
    for w in workers:
        asyncio.run(_catch_up_reader(url, w))
    held = _learnt(workers[0])
    assert held == _learnt(workers[1]) and held[0] > 0
    r = redis_sync.Redis(port=valkey.port)
    ident = r.hget("ck:g:state", "id")
    assert ident, "a checkpoint was written with a batch"
    total = r.xlen("ck:g:log")
    # the log before the checkpoint is gone (trimmed): only the checkpoint can give a late worker that part
    r.xtrim("ck:g:log", minid=ident.decode(), approximate=False)
    assert r.xlen("ck:g:log") < total
    late = _late(url, "ck")
    assert _learnt(late) == held
    assert late.shared.log is not None and late.shared.log.folded < total


def test_an_unreadable_checkpoint_falls_back_to_the_whole_log(
    valkey: EmbeddedServer, day: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"redis://127.0.0.1:{valkey.port}/0"
    monkeypatch.setattr(grouplog, "CHECKPOINT_S", 0.5)
    _, workers = asyncio.run(_run(url, "bad", 2, day[: len(day) // 2]))
    asyncio.run(_catch_up_reader(url, workers[0]))
    held = _learnt(workers[0])
    r = redis_sync.Redis(port=valkey.port)
    r.hset("bad:g:state", mapping={"policy": b'{"budget": {"EHT": {"recent": "not a list"}}}'})
    late = _late(url, "bad")
    assert _learnt(late) == held, "the whole log, folded from its start, gives the same state"


def test_an_unreadable_entry_is_skipped_and_counted(
    valkey: EmbeddedServer, day: list[tuple[str, dict[str, Any]]]
) -> None:
    url = f"redis://127.0.0.1:{valkey.port}/0"
    _, workers = asyncio.run(_run(url, "junk", 1, day[: len(day) // 3]))
    asyncio.run(_catch_up_reader(url, workers[0]))
    held = _learnt(workers[0])
    r = redis_sync.Redis(port=valkey.port)
    first = r.xrange("junk:g:log", count=1)[0][0]
    r.xadd("junk:g:log", {"e": b"not json"})
    r.xadd("junk:g:log", {"e": b'["b", "X1", "EHT", "yesterday", 0.5, null, 0, 0]'})
    r.xadd("junk:g:log", {"x": b"no entry field"})
    late = _late(url, "junk")
    log = late.shared.log
    assert log is not None and log.unreadable == 3
    assert _learnt(late) == held, "the good entries all folded"
    assert log.cursor is not None and log.cursor > first.decode()
