"""The API's writes to a command's status hash, each one atomic check-and-write in a Lua script.

The hash ``bukong:cmd:<id>`` is created by the worker when it dispatches the command (with the command
body and a TTL, the dedupe window). The API only ever changes an existing, dispatched hash: a script checks
that the ``command`` field is there and writes in the same step, so an acknowledgement or a result for an
id that was never dispatched (or whose hash expired between a read and the write) never creates a key that
would later suppress the real dispatch. A hash that somehow has no TTL gets the dedupe TTL on the API's
write, so every key the API touches is bounded.
"""

from __future__ import annotations

from typing import Any

from pipeline.contracts.commands import STATUS_PREFIX

UNKNOWN, ALREADY, DONE = -1, 0, 1

# KEYS[1] status hash; ARGV[1] now_ms, ARGV[2] ttl_s -> -1 not dispatched, 0 not "sent" (no change), 1 done
_ACK = """
if redis.call('HEXISTS', KEYS[1], 'command') == 0 then return -1 end
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if redis.call('HGET', KEYS[1], 'status') ~= 'sent' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'acknowledged', 'ack_ms', ARGV[1])
return 1
"""

# KEYS[1] status hash; ARGV[1] now_ms, ARGV[2] ttl_s -> -1 not dispatched, 0 already reported, 1 claimed
_CLAIM_RESULT = """
if redis.call('HEXISTS', KEYS[1], 'command') == 0 then return -1 end
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if redis.call('HGET', KEYS[1], 'status') == 'result' then return 0 end
if redis.call('HSETNX', KEYS[1], 'result_sent', ARGV[1]) == 0 then return 0 end
return 1
"""

# KEYS[1] status hash; ARGV[1] the claim's now_ms -> 1 released (HDEL never creates a key)
_RELEASE_RESULT = """
if redis.call('HGET', KEYS[1], 'result_sent') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'result_sent')
  return 1
end
return 0
"""


class CommandStore:
    def __init__(self, redis: Any, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._ack = redis.register_script(_ACK)
        self._claim = redis.register_script(_CLAIM_RESULT)
        self._release = redis.register_script(_RELEASE_RESULT)

    async def get(self, cid: str) -> dict[bytes, bytes] | None:
        """The status hash of a dispatched command, or None (unknown, expired, or never dispatched)."""
        st: dict[bytes, bytes] = await self.redis.hgetall(STATUS_PREFIX + cid)
        return st if st and b"command" in st else None

    async def ack(self, cid: str, now_ms: int) -> int:
        return int(await self._ack(keys=[STATUS_PREFIX + cid], args=[now_ms, self.ttl_s]))

    async def claim_result(self, cid: str, now_ms: int) -> int:
        return int(await self._claim(keys=[STATUS_PREFIX + cid], args=[now_ms, self.ttl_s]))

    async def release_result(self, cid: str, now_ms: int) -> None:
        await self._release(keys=[STATUS_PREFIX + cid], args=[now_ms])
