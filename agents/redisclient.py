"""The worker's Redis client: redis-py's asyncio client with a command packer linear in its arguments.

redis-py's asyncio connection packs a command by re-joining its growing buffer once per argument (up to
6,000 bytes copied per argument), about 1 µs per argument. A batch's shared-state read and save carry
~4,000 arguments (keys, members, first-seen times, changelog fields), so packing alone cost ~2 µs of CPU per
input record. ``pack_command`` here sends the same bytes (the RESP array, the same split of a command name
holding spaces, the same ``Encoder``, large values and memoryviews passed through uncopied) with one join.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection


class _Packing:
    _buffer_cutoff: int
    encoder: Any

    def pack_command(self, *args: Any) -> list[bytes]:
        """The RESP encoding of one command, as redis-py's, in chunks: small arguments joined once, a
        value over the buffer cutoff (or a memoryview) passed as its own chunk."""
        first = args[0]
        assert not isinstance(first, float)
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        enc = self.encoder
        encode, cutoff, charset, errors = enc.encode, self._buffer_cutoff, enc.encoding, enc.encoding_errors
        out: list[Any] = []  # bytes, and the memoryviews passed through
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            kind = type(arg)
            if kind is int:  # repr(), as the Encoder (a bool is not an int here: the Encoder refuses it)
                arg = b"%d" % arg
            elif kind is str:
                arg = arg.encode(charset, errors)
            elif kind is not bytes:
                arg = encode(arg)
            n = len(arg)
            if n > cutoff or isinstance(arg, memoryview):
                parts.append(b"$%d\r\n" % n)
                out.append(b"".join(parts))
                out.append(arg)
                parts = [b"\r\n"]
            else:
                parts.append(b"$%d\r\n%b\r\n" % (n, arg))
        out.append(b"".join(parts))
        return out


class PackingConnection(_Packing, Connection):
    pass


class PackingSSLConnection(_Packing, SSLConnection):
    pass


class PackingUnixConnection(_Packing, UnixDomainSocketConnection):
    pass


_PACKING: dict[type, type] = {
    Connection: PackingConnection,
    SSLConnection: PackingSSLConnection,
    UnixDomainSocketConnection: PackingUnixConnection,
}


def redis_client(url: str, **kwargs: Any) -> Any:
    """``redis.asyncio.from_url(url, **kwargs)`` whose connections pack commands in one join."""
    client = aioredis.from_url(url, **kwargs)
    pool = client.connection_pool
    pool.connection_class = _PACKING.get(pool.connection_class, pool.connection_class)
    return client
