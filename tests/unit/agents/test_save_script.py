"""agents/delivery.py's SAVE_LUA: a batch's counters, sent marks and stream entries as one script leave Redis
exactly as the separate commands it replaces (HINCRBY per counter, SENT_LUA and XADD per sent command, XADD
per notification), on the real embedded Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from agents.delivery import SAVE_LUA, SENT_LUA
from pipeline.contracts.commands import (
    LIVE_STREAM_KEY,
    NOTIFY_STREAM_KEY,
    RULE_STATS_KEY,
    STATS_KEY,
    STATUS_PREFIX,
)
from pipeline.io.embedded import start_valkey

pytestmark = pytest.mark.integration

TTL, MAXLEN, NOW = 600, 50, 1_700_000_000_000


@pytest.fixture(scope="module")
def r() -> Iterator[redis.Redis]:
    server = start_valkey()
    try:
        yield redis.Redis(host="127.0.0.1", port=server.port)
    finally:
        server.stop()


def _seed(r: redis.Redis) -> list[tuple[str, int, int, bytes, bytes]]:
    """Three commands: reserved (pending), already moved on (result), and a status key without a command."""
    r.flushall()
    r.hset(STATUS_PREFIX + "a", mapping={"status": "pending", "token": "t", "pending_ms": 1, "command": "{}"})
    r.hset(STATUS_PREFIX + "b", mapping={"status": "result", "outcome": "clear", "command": "{}"})
    r.hset(STATUS_PREFIX + "c", mapping={"status": "other"})
    r.hset(STATS_KEY, "events", 7)
    return [
        ("a", 3, 41, b"[[1,2]]", b'{"command_id":"a"}'),
        ("b", 0, -1, b"[]", b'{"command_id":"b"}'),
        ("c", 5, 9, b"[]", b'{"command_id":"c"}'),
    ]


def _dump(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(r.keys("*")):
        kind = r.type(key)
        if kind == b"hash":
            out[key.decode()] = r.hgetall(key)
        elif kind == b"stream":
            out[key.decode()] = [fields for _, fields in r.xrange(key)]
    for key in r.keys(STATUS_PREFIX + "*"):
        out["ttl:" + key.decode()] = r.ttl(key) > 0
    return out


def test_the_save_script_writes_what_the_separate_commands_wrote(r: redis.Redis) -> None:
    counts = {"events": 2000, "decisions": 12, "hits": 0}
    rules = {"weighbridge_excess|hits": 3, "corridor_detour|hits": 1}
    notes = [b'{"kind":"a"}', b'{"kind":"b"}']

    sent = _seed(r)
    pipe = r.pipeline(transaction=True)
    for k, v in counts.items():
        if v:
            pipe.hincrby(STATS_KEY, k, v)
    for k, v in rules.items():
        pipe.hincrby(RULE_STATS_KEY, k, v)
    for cid, part, off, track, body in sent:
        pipe.eval(SENT_LUA, 1, STATUS_PREFIX + cid, NOW, part, off, track, TTL)
        pipe.xadd(LIVE_STREAM_KEY, {"c": body}, maxlen=MAXLEN, approximate=True)
    for body in notes:
        pipe.xadd(NOTIFY_STREAM_KEY, {"n": body}, maxlen=MAXLEN, approximate=True)
    pipe.execute()
    before = _dump(r)

    sent = _seed(r)
    counters = [(k, v) for k, v in counts.items() if v]
    keys = [STATS_KEY, RULE_STATS_KEY, LIVE_STREAM_KEY, NOTIFY_STREAM_KEY]
    args: list[Any] = [NOW, TTL, MAXLEN, len(counters), *(x for kv in counters for x in kv), len(rules)]
    args += [x for kv in rules.items() for x in kv]
    for cid, part, off, track, body in sent:
        keys.append(STATUS_PREFIX + cid)
        args += [part, off, track, body]
    args += notes
    pipe = r.pipeline(transaction=True)
    pipe.eval(SAVE_LUA, len(keys), *keys, *args)
    pipe.execute()
    after = _dump(r)

    assert after == before
    assert after[STATUS_PREFIX + "a"][b"status"] == b"sent"  # pending -> sent
    assert after[STATUS_PREFIX + "b"][b"status"] == b"result"  # a status that moved on is kept
    assert b"sent_ms" not in after[STATUS_PREFIX + "c"]  # no command: not marked
    assert len(after[LIVE_STREAM_KEY]) == 3 and len(after[NOTIFY_STREAM_KEY]) == 2


def test_the_save_script_with_nothing_but_notifications(r: Any) -> None:
    r.flushall()
    keys = [STATS_KEY, RULE_STATS_KEY, LIVE_STREAM_KEY, NOTIFY_STREAM_KEY]
    r.eval(SAVE_LUA, len(keys), *keys, NOW, TTL, MAXLEN, 0, 0, b"x")
    assert [f for _, f in r.xrange(NOTIFY_STREAM_KEY)] == [{b"n": b"x"}]
    assert not r.exists(STATS_KEY, RULE_STATS_KEY, LIVE_STREAM_KEY)
