"""`python -m pipeline rules ...`: check, list, publish, rollback and backtest rule packs.

python -m pipeline rules check rules/packs/starter.yaml     # files or folders; runs the examples too
python -m pipeline rules test rules/packs                   # the rules' examples (must hit / must not hit)
python -m pipeline rules list
python -m pipeline rules stats --broker host:port --redis redis://...  # live hits per rule, shadow too
python -m pipeline rules publish rules/packs/candidate.yaml --broker host:port   # every worker swaps
python -m pipeline rules rollback --broker host:port                              # back to the previous
python -m pipeline rules backtest --pack candidate.yaml --events rec.jsonl [--truth rec.truth.jsonl]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from pipeline.contracts.settings import DEFAULT_RULE_PACK, Settings
from rules.pack import PackError, PackIssue, RulePack, load_pack, pack_to_bytes

DEFAULT_PACK = DEFAULT_RULE_PACK
PACK_KEY = b"pack"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="rules_command", required=True)
    c = sub.add_parser(
        "check",
        help="validate packs and run their examples: exit 0, or every error as file:line: rule: message",
    )
    c.add_argument("path", type=Path, nargs="+", help="pack files or folders of packs (*.yaml, *.yml)")
    c = sub.add_parser(
        "test", help="run the examples of every rule: exit 0, or each failing one with file:line"
    )
    c.add_argument("path", type=Path, nargs="+", help="pack files or folders of packs (*.yaml, *.yml)")
    c = sub.add_parser("list", help="the rules of a pack")
    c.add_argument("path", type=Path, nargs="?", default=DEFAULT_PACK)
    for name, helptext in (
        ("publish", "send a validated pack to every running worker"),
        ("rollback", "re-publish the version before the live one"),
    ):
        c = sub.add_parser(name, help=helptext)
        if name == "publish":
            c.add_argument("path", type=Path)
        c.add_argument("--broker", help="Kafka host:port (default: KAFKA_BROKER)")
    c = sub.add_parser(
        "stats", help="the live pack's rules with their hits, shadow hits and hit rates so far"
    )
    c.add_argument("--broker", help="Kafka host:port (default: KAFKA_BROKER)")
    c.add_argument("--redis", help="Redis URL the workers count in (default: REDIS_URL)")
    c = sub.add_parser("backtest", help="replay recorded events through the core with a candidate pack")
    c.add_argument("--pack", type=Path, required=True)
    c.add_argument("--baseline", type=Path, default=DEFAULT_PACK, help="the live pack to compare with")
    c.add_argument(
        "--events", type=Path, required=True, help="a recording (python -m pipeline simulate --out)"
    )
    c.add_argument("--truth", type=Path, help="ground truth, for precision and value found")
    c.add_argument(
        "--watchlist", type=Path, help="watchlist entries (default: the recording's .intel.jsonl beside it)"
    )
    c.add_argument("--out", type=Path, default=Path("var/backtest"), help="report (markdown) and plot (PNG)")


def run(args: argparse.Namespace) -> int:
    cmd = args.rules_command
    if cmd == "check":
        return check(*args.path)
    if cmd == "test":
        return test(*args.path)
    if cmd == "list":
        return list_rules(args.path)
    if cmd == "backtest":
        from pipeline.apps.backtest import backtest

        return backtest(args.pack, args.baseline, args.events, args.truth, args.out, args.watchlist)
    settings = Settings.from_env()
    broker = args.broker or settings.kafka_broker
    if cmd == "stats":
        redis_url = args.redis or settings.redis_url
        if not broker or not redis_url:
            print(
                "error: give --broker host:port and --redis URL (or set KAFKA_BROKER, REDIS_URL)",
                file=sys.stderr,
            )
            return 2
        return stats(broker, redis_url)
    if cmd in ("publish", "rollback"):
        if not broker:
            print("error: give --broker host:port (or set KAFKA_BROKER)", file=sys.stderr)
            return 2
        return publish(args.path, broker) if cmd == "publish" else rollback(broker)
    raise AssertionError(f"unknown rules command {cmd}")  # argparse allows only the commands above


def pack_files(paths: tuple[Path, ...]) -> tuple[list[Path], list[str]]:
    """The pack files named, folders expanded (their *.yaml and *.yml, recursively, sorted); and errors."""
    files: list[Path] = []
    errors: list[str] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
            if not found:
                errors.append(f"{p}: no pack files (*.yaml, *.yml) in this folder")
            files += found
        elif p.exists():
            files.append(p)
        else:
            errors.append(f"{p}: no such file or folder")
    return files, errors


def _load(path: Path) -> tuple[RulePack | None, Any, list[PackIssue]]:
    """The pack and its compiled form, or the issues that stop it (never an exception)."""
    from rules.engine import CompiledPack

    try:
        pack = load_pack(path)
        return pack, CompiledPack.compile(pack), []
    except PackError as exc:
        return None, None, exc.issues


def _examples(pack: RulePack, compiled: Any) -> Any:
    from rules.examples import run_examples

    return run_examples(pack, compiled)


def check(*paths: Path) -> int:
    """Validate each pack and run its examples; every problem as file:line: rule: message. Exit 0 or 1."""
    files, failed = pack_files(paths)
    for msg in failed:
        print(f"error: {msg}", file=sys.stderr)
    bad = len(failed)
    for path in files:
        pack, compiled, issues = _load(path)
        if pack is not None:
            report = _examples(pack, compiled)
            issues = report.failures
        for issue in issues:
            print(issue, file=sys.stderr)
        if issues or pack is None:
            print(f"{path}: {len(issues)} error(s)", file=sys.stderr)
            bad += 1
            continue
        print(
            f"{path}: ok, pack '{pack.name}' version {pack.version}, {len(pack.rules)} rules "
            f"({compiled.fast_count} fast path, {len(compiled.rules) - compiled.fast_count} CEL runtime), "
            f"{report.run} examples pass"
            + (
                f"; rules without examples: {', '.join(report.without_examples)}"
                if report.without_examples
                else ""
            )
        )
    return 1 if bad or not files else 0


def test(*paths: Path) -> int:
    """Run the examples of every rule of each pack (a pack that does not validate fails too). Exit 0 or 1."""
    files, failed = pack_files(paths)
    for msg in failed:
        print(f"error: {msg}", file=sys.stderr)
    bad = len(failed)
    total = 0
    for path in files:
        pack, compiled, issues = _load(path)
        if pack is None:
            for issue in issues:
                print(issue, file=sys.stderr)
            print(f"{path}: does not validate ({len(issues)} error(s)): see 'rules check'", file=sys.stderr)
            bad += 1
            continue
        report = _examples(pack, compiled)
        total += report.run
        for issue in report.failures:
            print(f"FAIL {issue}", file=sys.stderr)
        note = (
            f" (rules without examples: {', '.join(report.without_examples)})"
            if report.without_examples
            else ""
        )
        if report.failures:
            print(f"{path}: {len(report.failures)} of {report.run} examples fail{note}", file=sys.stderr)
            bad += 1
        else:
            print(f"{path}: {report.run} examples pass{note}")
    return 1 if bad or not files else 0


def list_rules(path: Path) -> int:
    try:
        pack = load_pack(path)
    except PackError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"| id | status | scope | lane | severity | action | expression |\n|{'---|' * 7}")
    for r in pack.rules:
        # one table row: a literal block's lines joined, and '|' (as in ||) escaped for the table
        expr = " ".join(r.expression.split()).replace("|", "\\|")
        print(f"| {r.id} | {r.status} | {r.scope} | {r.lane} | {r.severity} | {r.action} | `{expr}` |")
    return 0


def _history(broker: str) -> list[dict[str, Any]]:
    """Every pack ever published on the rule-packs topic, oldest first."""
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.contracts.events import RULE_PACKS

    consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, fetch_max_wait_ms=50)
    try:
        tp = TopicPartition(RULE_PACKS, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        out = []
        deadline = time.monotonic() + 10
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                out += [orjson.loads(r.value) for r in recs if r.key == PACK_KEY]
        return out
    finally:
        consumer.close()


def _send(broker: str, body: bytes) -> None:
    from kafka import KafkaProducer

    from pipeline.contracts.events import RULE_PACKS

    producer = KafkaProducer(bootstrap_servers=broker, acks="all")
    # partition 0, the one every worker and _history read (a topic the broker auto-created may have more)
    producer.send(RULE_PACKS, key=PACK_KEY, value=body, partition=0).get(timeout=10)
    producer.close()


def publish(path: Path, broker: str) -> int:
    pack, compiled, issues = _load(path)
    if pack is not None:
        issues = _examples(pack, compiled).failures
    if issues or pack is None:
        for issue in issues:
            print(issue, file=sys.stderr)
        print("not published: fix the errors above", file=sys.stderr)
        return 1
    live = _history(broker)
    if live and live[-1]["version"] >= pack.version:
        print(
            f"error: version {pack.version} is not above the live version {live[-1]['version']}: "
            "bump 'version' in the pack",
            file=sys.stderr,
        )
        return 1
    _send(broker, pack_to_bytes(pack, previous=live[-1] if live else None))
    print(f"published '{pack.name}' version {pack.version} ({len(pack.rules)} rules)")
    return 0


def rollback(broker: str) -> int:
    """Re-publish the pack before the live one, under a version above every published one (so the log's
    order stays the order of versions). The live record names the pack it replaced, so this works after the
    topic is compacted; with nothing before it, the start-up pack comes back."""
    from rules.pack import parse_pack, with_version

    history = _history(broker)
    if not history:
        print("error: nothing to roll back: no pack was ever published", file=sys.stderr)
        return 1
    live = history[-1]
    before = live.get("previous")
    if before is None and len(history) > 1:  # published before packs named their predecessor
        before = history[-2]
    try:
        if before is None:  # the one before the first published pack is the one workers start with
            pack, previous = load_pack(DEFAULT_PACK), 0
        else:
            pack, previous = parse_pack(before["source"], before.get("path") or ""), before["version"]
        top = max(int(h["version"]) for h in history)
        restored = with_version(pack, top + 1)
    except PackError as exc:
        print(f"error: the previous pack no longer validates, not rolled back:\n{exc}", file=sys.stderr)
        return 1
    _send(broker, pack_to_bytes(restored, previous=live))
    what = f"version {previous}" if previous else f"the start-up pack ({DEFAULT_PACK.name})"
    print(f"rolled back: the rules of {what} are live again as version {restored.version}")
    return 0


def stats(broker: str, redis_url: str) -> int:
    """The rules of the live pack (the last one published, or the start-up pack) with what the workers counted
    for them in Redis: hits (active), shadow hits, dispatched, inspection results, confirmed, hit rate."""
    import redis

    from pipeline.contracts.commands import META_KEY, RULE_STATS_KEY, STATS_KEY
    from rules.pack import parse_pack
    from rules.stats import tally

    history = _history(broker)
    try:
        live = parse_pack(history[-1]["source"], "<live>") if history else load_pack(DEFAULT_PACK)
    except PackError as exc:
        print(f"error: the live pack does not validate here: {exc}", file=sys.stderr)
        return 1
    r = redis.Redis.from_url(redis_url)
    try:
        counts: dict[bytes, bytes] = r.hgetall(RULE_STATS_KEY)  # type: ignore[assignment]
        totals: dict[bytes, bytes] = r.hgetall(STATS_KEY)  # type: ignore[assignment]
        meta: dict[bytes, bytes] = r.hgetall(META_KEY)  # type: ignore[assignment]
    finally:
        r.close()
    per_rule, _ = tally(counts)
    decisions = int(totals.get(b"decisions", b"0") or 0)
    running = bytes(meta.get(b"pack_version") or b"?").decode()
    print(
        f"live pack '{live.name}' version {live.version} (workers report version {running}); "
        f"{decisions} declarations scored"
    )
    print(
        "| rule | status | hits | shadow hits | per 1,000 declarations | dispatched | results | confirmed "
        "| hit rate |"
    )
    print("|" + "---|" * 9)
    for rule in live.rules:
        d = per_rule.get(rule.id, {})
        hits = d.get("hits", 0) + d.get("shadow_hits", 0)
        per_k = f"{1000 * hits / decisions:.1f}" if decisions else "-"
        rate = "-" if d.get("hit_rate") is None else f"{d['hit_rate']:.1%}"
        print(
            f"| {rule.id} | {rule.status} | {d.get('hits', 0)} | {d.get('shadow_hits', 0)} | {per_k} | "
            f"{d.get('dispatched', 0)} | {d.get('results', 0)} | {d.get('confirmed', 0)} | {rate} |"
        )
    return 0
