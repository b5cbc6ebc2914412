"""The golden replay: one recorded day of the baseline scenario through the production core, its commands.

The day (seed 1) was simulated once and recorded in ``baseline-day.events.jsonl.xz`` (one ``[topic, event]``
per line) with its intelligence leads in ``baseline-day.intel.json``, so the simulator can evolve without
moving the golden. The commands the core makes of it are recorded in ``baseline-day.commands.jsonl`` (one
command per line, keys sorted) and compared byte for byte by tests/unit/test_golden_replay.py after every
change that should not change behaviour (a refactor, a faster hot path). Regenerate only on purpose, in a
commit of its own that says why the decisions changed:

    .venv/bin/python -m tests.golden.replay --write            # the commands, from the recorded day
    .venv/bin/python -m tests.golden.replay --write --resimulate   # also re-record the day from the simulator
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "baseline-day.commands.jsonl"
EVENTS = HERE / "baseline-day.events.jsonl.xz"
INTEL = HERE / "baseline-day.intel.json"
EVENTS_DIGEST = HERE / "baseline-day.events.sha256"
SCENARIO, SEED, DAY_MS = "baseline", 1, 86_400_000
NEVER = 2**62


def record_day() -> None:
    """Simulate the day and record its events and leads (on purpose only: the golden moves with them)."""
    from pipeline.apps.sim.scenario import load_scenario
    from pipeline.apps.sim.world import Simulator

    sim = Simulator(load_scenario(SCENARIO), seed=SEED)
    lines = [
        orjson.dumps([topic, ev], option=orjson.OPT_SORT_KEYS)
        for topic, _key, ev in sim.events(DAY_MS)
        if not topic.startswith("bad:")
    ]
    EVENTS.write_bytes(lzma.compress(b"\n".join(lines) + b"\n", preset=9))
    INTEL.write_bytes(orjson.dumps(sim.intel, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))


def _events(digest: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for line in lzma.decompress(EVENTS.read_bytes()).splitlines():
        topic, ev = orjson.loads(line)
        digest.update(topic.encode())
        digest.update(orjson.dumps(ev, option=orjson.OPT_SORT_KEYS))
        yield topic, ev


def replay_commands() -> tuple[list[bytes], str]:
    """The day's commands (sorted-key JSON, in decision order) and the digest of the events it replayed."""
    from pipeline.contracts.settings import Settings
    from pipeline.core.assemble import build_engine
    from pipeline.core.engine import replay

    engine = build_engine(Settings())
    for lead in orjson.loads(INTEL.read_bytes()):  # the intelligence leads as live watchlists
        engine.joiner.watch.add(lead["kind"], lead["id"], lead.get("source", "intel"), NEVER)  # type: ignore[attr-defined]
    digest = hashlib.sha256()
    out = [
        orjson.dumps(d.command, option=orjson.OPT_SORT_KEYS)
        for d in replay(engine, _events(digest))
        if d.command is not None
    ]
    return out, digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="record the golden files (on purpose only)")
    ap.add_argument("--resimulate", action="store_true", help="with --write: re-record the day itself")
    args = ap.parse_args(argv)
    if args.write and args.resimulate:
        record_day()
    commands, digest = replay_commands()
    if args.write:
        GOLDEN.write_bytes(b"\n".join(commands) + b"\n")
        EVENTS_DIGEST.write_text(digest + "\n")
        print(f"wrote {len(commands)} commands to {GOLDEN} (events sha256 {digest[:12]})")
        return 0
    same = GOLDEN.exists() and GOLDEN.read_bytes() == b"\n".join(commands) + b"\n"
    print(f"{len(commands)} commands; {'identical to' if same else 'DIFFERENT from'} {GOLDEN.name}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
