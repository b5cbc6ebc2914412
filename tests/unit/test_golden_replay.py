"""One simulated day through the production core gives, byte for byte, the commands in tests/golden."""

from __future__ import annotations

import difflib

from tests.golden.replay import EVENTS_DIGEST, GOLDEN, replay_commands


def test_a_recorded_day_gives_the_recorded_commands() -> None:
    commands, digest = replay_commands()
    want_digest = EVENTS_DIGEST.read_text().strip()
    assert digest == want_digest, (
        "the simulator no longer produces the recorded day (its events changed): if that is intended, "
        "regenerate with `.venv/bin/python -m tests.golden.replay --write` in a commit that says why"
    )
    got = b"\n".join(commands).decode() + "\n"
    want = GOLDEN.read_text()
    if got != want:
        diff = "".join(
            list(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "recorded", "now", n=0))[
                :40
            ]
        )
        raise AssertionError(
            f"the core decided differently on the recorded day ({len(commands)} commands now, "
            f"{want.count(chr(10))} recorded). If the change is intended, regenerate with "
            f"`.venv/bin/python -m tests.golden.replay --write` in a commit that says why.\n{diff}"
        )
