"""`bukong tail TOPIC`: print a topic's records one per line, like `kcat -C`, readable by a person.

    bukong tail dispatch-commands                 # the 10 latest commands, then exit
    bukong tail dispatch-commands --follow        # ... and every new one as it is produced (Ctrl-C stops)
    bukong tail dead-letter --from-beginning      # every dead letter still on the topic, with its reason
    bukong tail declarations -n 3 --json          # raw JSON lines (for jq)

Dispatch commands print as ``time  site  lane  severity  rules  decl``; dead letters as
``time  reason  source-topic/partition@offset  [field]  error``; any other topic as
``time  topic/partition@offset  key  json``.
Times are the records' Kafka timestamps in local time. Partitions are read with ``assign()`` (no consumer
group: groups join slowly on the embedded broker and a reader must not disturb the workers' group).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.contracts import events as c
from pipeline.contracts.settings import Settings

DEFAULT_COUNT = 10


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    ts_ms: int
    key: bytes | None
    value: bytes | None


class TailError(Exception):
    """A problem the user can fix; the message says how."""


# ------------------------------------------------------------------------------------------------ format
def _when(ts_ms: int) -> str:
    if ts_ms <= 0:
        return "-" * 23
    t = dt.datetime.fromtimestamp(ts_ms / 1000)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _where(topic: Any, partition: Any, offset: Any) -> str:
    return f"{topic}/{'?' if partition is None else partition}@{'?' if offset is None else offset}"


def _text(b: bytes | None) -> str:
    return "" if b is None else b.decode("utf-8", errors="replace")


def _one_line(s: str, limit: int = 300) -> str:
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def format_command(cmd: dict[str, Any]) -> str:
    rules = ",".join(cmd.get("rule_ids") or [])
    if not rules:
        rules = f"({cmd.get('selection', 'no rule')})"
    return (
        f"{cmd.get('site', '?'):<10} {cmd.get('lane', '?'):<20} {cmd.get('severity', '?'):<8} "
        f"{rules}  {cmd.get('decl_id', '?')}"
    )


def format_dead_letter(dl: dict[str, Any]) -> str:
    where = _where(dl.get("source_topic"), dl.get("source_partition"), dl.get("source_offset"))
    field = f"  [{dl['field']}]" if dl.get("field") else ""
    raw = ""
    if dl.get("raw_b64"):
        try:
            preview = base64.b64decode(dl["raw_b64"])[:60]
            raw = f"  raw={_one_line(preview.decode('utf-8', errors='replace'), 60)!r}"
        except ValueError:
            raw = ""
    return f"{dl.get('reason', '?'):<18} {where}{field}  {_one_line(str(dl.get('error', '')))}{raw}"


def format_record(rec: Rec, raw_json: bool = False) -> str:
    """One line for one record. ``raw_json``: the value exactly as stored (decoded as UTF-8)."""
    if raw_json:
        return _text(rec.value).replace("\r", " ").replace("\n", " ")  # one record, one line
    when = _when(rec.ts_ms)
    try:
        obj = orjson.loads(rec.value) if rec.value is not None else None
    except orjson.JSONDecodeError:
        size = len(rec.value or b"")
        preview = _one_line(_text(rec.value), 80)
        return f"{when}  {_where(rec.topic, rec.partition, rec.offset)}  (not JSON, {size} bytes) {preview!r}"
    if isinstance(obj, dict) and rec.topic == c.DISPATCH_COMMANDS:
        return f"{when}  {format_command(obj)}"
    if isinstance(obj, dict) and rec.topic == c.DEAD_LETTER:
        return f"{when}  {format_dead_letter(obj)}"
    key = _text(rec.key) or "-"
    body = _one_line(_text(rec.value), 400)
    return f"{when}  {_where(rec.topic, rec.partition, rec.offset)}  {key}  {body}"


# ------------------------------------------------------------------------------------------------ read
def _consumer(broker: str, settings: Settings, timeout_s: float) -> Any:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        return KafkaConsumer(
            bootstrap_servers=broker,
            fetch_max_wait_ms=max(1, settings.fetch_max_wait_ms),
            enable_auto_commit=False,
            group_id=None,
            bootstrap_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=max(int(timeout_s * 1000), 5000),
        )
    except KafkaError as exc:
        raise TailError(
            f"cannot reach the Kafka broker at {broker} ({exc.__class__.__name__}). Is it running? "
            "Give its address with --broker host:port or KAFKA_BROKER (`bukong demo` prints it on its "
            "first line)."
        ) from None


def _assign(
    consumer: Any, broker: str, topic: str, partition: int | None, latest: int | None
) -> tuple[list[Any], dict[Any, int]]:
    """Assign the topic's partitions (or the one asked for) and seek each to its oldest record, or to its
    ``latest`` last ones; return them with their end offsets."""
    from kafka import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    if not parts:
        known = sorted(t for t in (consumer.topics() or set()) if not t.startswith("__"))
        raise TailError(
            f"topic '{topic}' does not exist on {broker}. Topics there: {', '.join(known) or 'none'}"
            + ("" if known else " (create them with `bukong topics`)")
        )
    if partition is not None:
        if partition not in parts:
            raise TailError(f"topic '{topic}' has partitions {sorted(parts)}; there is no {partition}")
        parts = {partition}
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    begin = consumer.beginning_offsets(tps)
    end = consumer.end_offsets(tps)
    for tp in tps:
        start = begin[tp] if latest is None else max(begin[tp], end[tp] - latest)
        consumer.seek(tp, start)
    return tps, end


def _batch(consumer: Any, timeout_ms: int) -> list[Rec]:
    out = []
    for recs in consumer.poll(timeout_ms=timeout_ms).values():
        for r in recs:
            out.append(Rec(r.topic, r.partition, r.offset, r.timestamp or 0, r.key, r.value))
    return out


def read_topic(
    broker: str,
    topic: str,
    *,
    from_beginning: bool = False,
    count: int | None = None,
    follow: bool = False,
    partition: int | None = None,
    timeout_s: float = 5.0,
    settings: Settings | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterable[Rec]:
    """Yield the records ``bukong tail`` prints, in that order.

    Without ``from_beginning``: the ``count`` (default 10) latest records of the topic (by timestamp across
    partitions). With it: records from the start, at most ``count``. ``follow``: then every new record until
    ``stop()`` returns True (or Ctrl-C).
    """
    from kafka import TopicPartition

    settings = settings or Settings.from_env()
    consumer = _consumer(broker, settings, timeout_s)
    try:
        latest = count if count is not None else DEFAULT_COUNT
        tps, end = _assign(consumer, broker, topic, partition, None if from_beginning else latest)

        # catch up to the end offsets read at the start
        backlog: list[Rec] = []
        printed = 0
        last_progress = time.monotonic()
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if stop():
                return
            got = _batch(consumer, 100)
            if got:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > timeout_s:
                print(
                    f"warning: {topic} stopped answering before its end offsets; showing what arrived",
                    file=sys.stderr,
                )
                break
            for rec in got:
                if rec.offset >= end[TopicPartition(rec.topic, rec.partition)]:
                    backlog.append(rec)  # produced after we looked: still in order for --follow
                    continue
                if from_beginning:
                    if count is not None and printed >= count:
                        return
                    printed += 1
                    yield rec
                else:
                    backlog.append(rec)
        if not from_beginning:
            old = sorted(
                (r for r in backlog if r.offset < end[TopicPartition(r.topic, r.partition)]),
                key=lambda r: (r.ts_ms, r.partition, r.offset),
            )
            yield from old[-latest:] if latest > 0 else []
        new = [r for r in backlog if r.offset >= end[TopicPartition(r.topic, r.partition)]]
        if not follow:
            return
        for rec in new:
            if from_beginning and count is not None and printed >= count:
                return
            printed += 1
            yield rec
        while not stop():
            for rec in _batch(consumer, 200):
                if from_beginning and count is not None and printed >= count:
                    return
                printed += 1
                yield rec
    finally:
        consumer.close()


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "topic", help=f"topic to read, e.g. {c.DISPATCH_COMMANDS}, {c.DEAD_LETTER}, {c.DECLARATIONS}"
    )
    p.add_argument("--broker", help="Kafka bootstrap host:port (default: env KAFKA_BROKER)")
    p.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest record kept (default: the latest)"
    )
    p.add_argument(
        "-n",
        "--count",
        type=int,
        default=None,
        help=f"how many: the N latest (default {DEFAULT_COUNT}), or with --from-beginning the first N",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records until Ctrl-C")
    p.add_argument("--json", action="store_true", help="print each record's value as stored (JSON lines)")
    p.add_argument("--partition", type=int, default=None, help="read only this partition")
    p.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the broker before giving up (5)"
    )


def _stop_on_sigint() -> Callable[[], bool]:
    """Ctrl-C ends ``--follow`` between two polls (at most 200 ms), so the consumer closes cleanly: a
    KeyboardInterrupt raised inside kafka-python's poll could leave its close waiting. A second Ctrl-C
    interrupts at once."""
    hits: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:
        hits.append(signum)
        if len(hits) > 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    return lambda: bool(hits)


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    s = Settings.from_env()
    broker = args.broker or s.kafka_broker
    if not broker:
        print(
            "error: bukong tail reads a running broker: give --broker host:port or set KAFKA_BROKER "
            "(`bukong demo` prints the broker's address on its first line)",
            file=sys.stderr,
        )
        return 2
    if args.count is not None and args.count < 0:
        print("error: -n/--count must be 0 or more", file=sys.stderr)
        return 2
    try:
        for rec in read_topic(
            broker,
            args.topic,
            from_beginning=args.from_beginning,
            count=args.count,
            follow=args.follow,
            partition=args.partition,
            timeout_s=args.timeout,
            settings=s,
            stop=_stop_on_sigint() if args.follow else (lambda: False),
        ):
            print(format_record(rec, raw_json=args.json), flush=args.follow)
    except TailError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(
            f"error: the broker at {broker} failed while reading {args.topic} ({exc}); "
            "check that it is a Kafka broker and that it runs, then try again",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `bukong tail ... | head`
        sys.stderr.close()
        return 0
    return 0
