"""The worker's Redis client packs a command into the very bytes redis-py's own connection sends."""

from __future__ import annotations

import random
from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from agents.redisclient import PackingConnection, redis_client


def _wire(chunks: list[Any]) -> bytes:
    return b"".join(bytes(c) for c in chunks)


def _arg(r: random.Random) -> Any:
    k = r.random()
    if k < 0.25:
        return r.randint(-(10**15), 10**15)
    if k < 0.35:
        return r.uniform(-1e6, 1e6)
    if k < 0.55:
        return "ключ:é" * r.randint(0, 5)
    if k < 0.65:
        return b"x" * r.choice([0, 1, 10, 5999, 6000, 6001, 20_000])  # around the buffer cutoff
    if k < 0.7:
        return memoryview(b"mv" * r.randint(0, 4000))
    if k < 0.75:
        return bytearray(b"ba" * r.randint(0, 10))
    return b'{"ts":1,"id":"D1"}' * r.randint(0, 30)


@pytest.mark.parametrize("seed", range(5))
def test_commands_and_pipelines_are_the_same_bytes(seed: int) -> None:
    r = random.Random(seed)
    ours, theirs = PackingConnection(), Connection()
    for _ in range(300):
        args: list[Any] = [r.choice(["EVAL", "CONFIG GET", b"HSET", b"CLIENT SETNAME"])]
        args += [_arg(r) for _ in range(r.randint(0, 200))]
        assert _wire(ours.pack_command(*args)) == _wire(theirs.pack_command(*args))
        cmds: list[Any] = [args, ["PING"], args[:5]]
        assert _wire(ours.pack_commands(cmds)) == _wire(theirs.pack_commands(cmds))


def test_what_the_encoder_refuses_is_refused() -> None:
    with pytest.raises(DataError):
        PackingConnection().pack_command("SET", "k", True)
    with pytest.raises(DataError):
        PackingConnection().pack_command("SET", "k", None)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("rediss://127.0.0.1:6379/0", SSLConnection),
        ("unix:///tmp/redis.sock", UnixDomainSocketConnection),
    ],
)
def test_every_url_scheme_keeps_its_connection_kind(url: str, base: type) -> None:
    pool = redis_client(url).connection_pool
    assert issubclass(pool.connection_class, base)
    assert hasattr(pool.connection_class, "pack_command")
    assert pool.connection_class.pack_command is PackingConnection.pack_command
