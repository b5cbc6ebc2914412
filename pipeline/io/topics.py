"""Topic layout and creation (kafka-python admin client; works on tansu and on Apache Kafka)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.contracts import events as c

# The largest record (key, value, headers) a project producer sends and a topic accepts. A record above the
# core's own limit (contracts.MAX_MESSAGE_BYTES) but below this reaches a worker and is dead-lettered as
# "oversize" with its offset; above this the broker refuses it at produce time. Consumers fetch at least this
# much per partition, so one such record can never block a partition.
MAX_RECORD_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]


def topic_specs(partitions: int, retention_ms: int, replication: int = 1) -> list[TopicSpec]:
    """Input topics share one partition count and are keyed by conveyance id, so they are co-partitioned:
    one worker owns every event of a conveyance and can join them without a repartition hop."""
    keep = {"retention.ms": str(retention_ms), "max.message.bytes": str(MAX_RECORD_BYTES)}
    if replication >= 3:  # a write is acknowledged by two replicas (producers use acks=all there)
        keep["min.insync.replicas"] = "2"
    specs = [TopicSpec(t, partitions, keep) for t in (c.DECLARATIONS, c.LOGISTICS, c.TRACKS)]
    specs += [
        TopicSpec(c.INSPECTION_RESULTS, partitions, keep),
        TopicSpec(c.DISPATCH_COMMANDS, partitions, keep),
        TopicSpec(c.DEAD_LETTER, 1, keep),
        TopicSpec(c.NOTIFICATIONS, 1, keep),
        TopicSpec(c.RULE_PACKS, 1, {"cleanup.policy": "compact", "max.message.bytes": str(MAX_RECORD_BYTES)}),
    ]
    return specs


def create_topics(bootstrap: str, partitions: int, retention_ms: int, replication: int = 1) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError

    deadline = time.monotonic() + 20
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bukong-admin")
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"error: cannot reach Kafka at {bootstrap} ({exc}); is KAFKA_BROKER right?"
                ) from None
            time.sleep(0.25)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(s.name, s.partitions, replication, topic_configs=s.configs)
            for s in topic_specs(partitions, retention_ms, replication)
            if s.name not in existing
        ]
        if new:
            admin.create_topics(new)
        return [t.name for t in new]
    finally:
        admin.close()
