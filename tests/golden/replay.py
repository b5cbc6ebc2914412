"""The golden replay: one simulated day of the baseline scenario through the production core, its commands.

The commands a seeded day produces are recorded once in ``baseline-day.commands.jsonl`` (one command per line,
keys sorted) and compared byte for byte by tests/unit/test_golden_replay.py after every change that should not
change behaviour (a refactor, a faster hot path). Regenerate only on purpose, in a commit of its own that
says why the decisions changed:

    .venv/bin/python -m tests.golden.replay --write
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "baseline-day.commands.jsonl"
EVENTS_DIGEST = HERE / "baseline-day.events.sha256"
SCENARIO, SEED, DAY_MS = "baseline", 1, 86_400_000
NEVER = 2**62


def _events(digest: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    from pipeline.apps.sim.scenario import load_scenario
    from pipeline.apps.sim.world import Simulator

    sim = Simulator(load_scenario(SCENARIO), seed=SEED)
    for topic, _key, ev in sim.events(DAY_MS):
        if topic.startswith("bad:"):
            continue
        digest.update(topic.encode())
        digest.update(orjson.dumps(ev, option=orjson.OPT_SORT_KEYS))
        yield topic, ev


def replay_commands() -> tuple[list[bytes], str]:
    """The day's commands (sorted-key JSON, in decision order) and the digest of the events it replayed."""
    from pipeline.apps.sim.scenario import load_scenario
    from pipeline.apps.sim.world import Simulator
    from pipeline.contracts.settings import Settings
    from pipeline.core.assemble import build_engine
    from pipeline.core.engine import replay

    engine = build_engine(Settings())
    intel = Simulator(load_scenario(SCENARIO), seed=SEED).intel
    for lead in intel:  # the intelligence leads as live watchlists, as the quality benchmark loads them
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
    args = ap.parse_args(argv)
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
