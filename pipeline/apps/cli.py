"""bukong: real-time customs risk targeting. `bukong COMMAND --help` explains each command.

`python -m pipeline COMMAND` is the same program.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import cast

import orjson

from pipeline.contracts.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings.from_env()
    changes = {}
    if getattr(args, "broker", None):
        changes["kafka_broker"] = args.broker
    if getattr(args, "redis", None):
        changes["redis_url"] = args.redis
    if getattr(args, "partitions", None):
        changes["partitions"] = args.partitions
    if getattr(args, "web_port", None):
        changes["web_port"] = args.web_port
    return s.with_(**changes) if changes else s


def _add_conn(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker", help="Kafka bootstrap host:port (default: env KAFKA_BROKER, else embedded tansu)"
    )
    p.add_argument("--redis", help="Redis URL (default: env REDIS_URL, else embedded valkey)")


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.apps.demo import run_demo

    summary = run_demo(
        _settings(args),
        args.duration,
        workers=args.workers,
        rate=args.rate,
        bad_events=args.bad_events,
        scenario=args.scenario,
        web=not args.no_web,
        worker_metrics_port=args.worker_metrics_port,
    )
    print(orjson.dumps(summary).decode(), flush=True)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    s = _settings(args)
    if not s.kafka_broker or not s.redis_url:
        print(
            "error: a worker joins an existing stack: set KAFKA_BROKER and REDIS_URL (or --broker/--redis);"
            " `bukong demo` starts everything",
            file=sys.stderr,
        )
        return 2
    from agents.app import run_worker

    run_worker(s, s.kafka_broker, s.redis_url, metrics_port=args.metrics_port or s.metrics_port or None)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from pipeline.io.topics import create_topics

    s = _settings(args)
    if not s.kafka_broker:
        print("error: set KAFKA_BROKER or --broker", file=sys.stderr)
        return 2
    replication = args.replication or s.replication
    created = create_topics(s.kafka_broker, s.partitions, s.topic_retention_ms, replication=replication)
    print(orjson.dumps({"created": created}).decode())
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    import time

    import redis

    from agents import watchlists

    s = _settings(args)
    if not s.redis_url:
        print("error: set REDIS_URL or --redis", file=sys.stderr)
        return 2
    r = redis.Redis.from_url(s.redis_url)
    if args.action == "list":
        from pipeline.contracts.commands import WATCHLIST_PREFIX

        for kind in ("conveyance", "enterprise", "declarant"):
            entries = cast(dict[bytes, bytes], r.hgetall(WATCHLIST_PREFIX + kind))
            for k, v in entries.items():
                print(orjson.dumps({"kind": kind, "id": k.decode(), **orjson.loads(v)}).decode())
        return 0
    if not args.kind or not args.id:
        print("error: give KIND and ID", file=sys.stderr)
        return 2
    if args.action == "add":
        expires = int(time.time() * 1000 + args.ttl_hours * 3_600_000)
        watchlists.put(r, args.kind, args.id, args.source, expires)
    else:
        watchlists.remove(r, args.kind, args.id)
    return 0


def _delegate(module: str, p: argparse.ArgumentParser, load: bool = True) -> None:
    """Subcommands owned by other packages: they add their own arguments and run. Only the command being run
    is imported (``load``): the others' imports (aiohttp, redis, the simulator) would slow every command."""
    if not load:
        return
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        p.set_defaults(func=lambda a, e=exc: _unavailable(module, e))
        return
    mod.add_arguments(p)
    p.set_defaults(func=mod.run)


def _unavailable(module: str, exc: Exception) -> int:
    print(f"error: {module} could not be loaded: {exc}", file=sys.stderr)
    return 2


def _add_demo(p: argparse.ArgumentParser) -> None:
    _add_conn(p)
    p.add_argument("--duration", type=float, default=None, help="seconds to run, then print a JSON summary")
    p.add_argument("--workers", type=int, default=1, help="Faust workers in the consumer group")
    p.add_argument("--rate", type=float, default=200.0, help="simulator events per second")
    p.add_argument("--bad-events", type=int, default=10, help="broken records to inject (dead-lettered)")
    p.add_argument("--partitions", type=int, default=None)
    p.add_argument("--web-port", type=int, default=None)
    p.add_argument("--no-web", action="store_true", help="do not serve the live view")
    p.add_argument(
        "--worker-metrics-port",
        type=int,
        default=None,
        help="worker i serves /metrics on this port + i (the web's is on its own port)",
    )
    p.add_argument(
        "--scenario", default="baseline", help="simulator scenario: baseline, drift, border-surge, FILE"
    )
    p.set_defaults(func=cmd_demo)


def build_parser(prog: str = "bukong", command: str | None = "*") -> argparse.ArgumentParser:
    """The parser; ``command`` names the subcommand to load fully ("*": all of them, None: none)."""

    def load(name: str) -> bool:
        return command in ("*", name)

    ap = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    _add_demo(sub.add_parser("demo", help="start broker, Redis, workers, generator and live view"))
    p = sub.add_parser("worker", help="run one Faust worker in the consumer group")
    _add_conn(p)
    p.add_argument("--metrics-port", type=int, default=None, help="serve /metrics on this port")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("topics", help="create the topics on a broker")
    _add_conn(p)
    p.add_argument("--partitions", type=int, default=None)
    p.add_argument("--replication", type=int, default=None, help="default: BUKONG_REPLICATION or 1")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("watch", help="add, remove or list watchlist entries (intelligence leads), live")
    _add_conn(p)
    p.add_argument("action", choices=("add", "remove", "list"))
    p.add_argument("kind", nargs="?", choices=("conveyance", "enterprise", "declarant"))
    p.add_argument("id", nargs="?")
    p.add_argument("--source", default="analyst", help="where the lead came from (graded by outcomes)")
    p.add_argument("--ttl-hours", type=float, default=7 * 24, help="the entry expires after this")
    p.set_defaults(func=cmd_watch)

    sim = sub.add_parser("simulate", help="the customs world simulator")
    _delegate("pipeline.apps.sim.cli", sim, load("simulate"))
    rules = sub.add_parser("rules", help="check, test, publish, roll back, backtest rule packs; live stats")
    _delegate("pipeline.apps.rules_cli", rules, load("rules"))
    _delegate(
        "pipeline.apps.web.cli",
        sub.add_parser("web", help="serve the live view and the command API"),
        load("web"),
    )
    _delegate(
        "pipeline.apps.tail",
        sub.add_parser(
            "tail",
            help="print a topic, one record a line (commands, dead letters)",
            description=_module_doc("pipeline.apps.tail") if load("tail") else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        ),
        load("tail"),
    )
    _delegate(
        "pipeline.apps.drill.cli",
        sub.add_parser(
            "drill",
            help="the drill suite: fuzz, kill -9, outages, hostile packs, API attacks, soak",
            description=_module_doc("pipeline.apps.drill.cli") if load("drill") else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        ),
        load("drill"),
    )
    return ap


def _module_doc(module: str) -> str | None:
    try:
        return importlib.import_module(module).__doc__
    except ImportError:
        return None


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    if prog is None:
        prog = "python -m pipeline" if sys.argv and sys.argv[0].endswith("__main__.py") else "bukong"
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(prog, command).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (`bukong tail ... | head`): stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would fail again otherwise
        return 141  # 128 + SIGPIPE, what a shell reports for a command a pipe stopped
