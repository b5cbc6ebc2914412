"""Per-partition state changelog in Redis: how a worker's join state follows its partitions.

After each batch the worker writes, in one MULTI/EXEC, the snapshots of the state keys the batch changed
(hash ``<ns>:state:p<N>``, one per partition number of the co-partitioned input topics) together with the
last input offset it applied per topic-partition (hash ``<ns>:applied``). A worker that is assigned a
partition loads both: the state as of the last applied record, and the offsets below which records are
already in that state and must not be applied again (Kafka may redeliver them: offsets are committed later).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from kafka.partitioner.default import murmur2


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition the Java and Python Kafka clients' default partitioner picks for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class RedisChangelog:
    def __init__(self, redis: Any, partitions: int, namespace: str = "bukong") -> None:
        self.redis = redis
        self.partitions = partitions
        self.ns = namespace
        self.applied_key = f"{namespace}:applied"
        # the enterprise and commodity state shared by the consumer group (agents/globalstate.py), written in
        # the same MULTI/EXEC as the conveyance state and the applied offsets
        self.shared: Any = None

    def state_key(self, partition: int) -> str:
        return f"{self.ns}:state:p{partition}"

    def stage(
        self,
        pipe: Any,
        dirty: dict[str, bytes | None],
        applied: dict[str, int],
        partition_of: Callable[[str], int],
    ) -> None:
        """Queue the batch's changes on ``pipe`` (a MULTI/EXEC pipeline the caller executes)."""
        sets: dict[int, dict[str, bytes]] = {}
        dels: dict[int, list[str]] = {}
        for key, snap in dirty.items():
            p = partition_of(key)
            if snap is None:
                dels.setdefault(p, []).append(key)
            else:
                sets.setdefault(p, {})[key] = snap
        for p, mapping in sets.items():
            pipe.hset(self.state_key(p), mapping=mapping)
        for p, keys in dels.items():
            pipe.hdel(self.state_key(p), *keys)
        if applied:
            pipe.hset(self.applied_key, mapping=applied)
        if self.shared is not None:
            self.shared.stage(pipe)

    async def load(
        self, partitions: Iterable[int], topics: Iterable[str]
    ) -> tuple[dict[str, bytes], dict[str, int]]:
        """State of the given partition numbers, and the applied offsets of those topic-partitions."""
        parts = sorted(set(partitions))
        fields = [f"{t}:{p}" for t in topics for p in parts]
        pipe = self.redis.pipeline(transaction=False)
        for p in parts:
            pipe.hgetall(self.state_key(p))
        if fields:
            pipe.hmget(self.applied_key, fields)
        res = await pipe.execute()
        state: dict[str, bytes] = {}
        for h in res[: len(parts)]:
            state.update({(k.decode() if isinstance(k, bytes) else k): v for k, v in h.items()})
        applied: dict[str, int] = {}
        if fields:
            for f, v in zip(fields, res[len(parts)], strict=True):
                if v is not None:
                    applied[f] = int(v)
        return state, applied
