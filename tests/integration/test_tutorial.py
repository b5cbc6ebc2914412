"""docs/tutorial.md cannot rot: every `$ ` command of its console blocks runs, in order, against a broker, a
Redis and a worker of this test's own (the packs it publishes must not become other tests' live pack)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.io.embedded import servers
from pipeline.io.topics import create_topics
from tests.conftest import PARTITIONS, REPO, start_worker, stop_worker, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TUTORIAL = REPO / "docs" / "tutorial.md"


def commands() -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", TUTORIAL.read_text(), flags=re.S)
    return [ln[2:] for block in blocks for ln in block.splitlines() if ln.startswith("$ ")]


def test_the_tutorial_has_every_step() -> None:
    cmds = " ; ".join(commands())
    for step in (
        "rules check",
        "rules test",
        "rules backtest",
        "rules publish",
        "rules stats",
        "rules rollback",
    ):
        assert f"bukong {step}" in cmds


def test_every_command_of_the_tutorial_runs(tmp_path: Path) -> None:
    shutil.rmtree(REPO / "var" / "tutorial", ignore_errors=True)
    out: dict[str, list[str]] = {}
    with servers(None, None) as srv:
        create_topics(srv.kafka, PARTITIONS, 600_000)
        proc = start_worker(srv, tmp_path)
        try:
            wait_ready(srv)
            env = {**os.environ, "KAFKA_BROKER": srv.kafka, "REDIS_URL": srv.redis_url}
            for cmd in commands():
                line = cmd
                if cmd.startswith("bukong "):
                    line = f"{shlex.quote(sys.executable)} -m pipeline {cmd[len('bukong ') :]}"
                done = subprocess.run(
                    ["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
                )
                assert done.returncode == 0, (cmd, done.stdout[-3000:], done.stderr[-3000:])
                out.setdefault(cmd.split(" var/")[0], []).append(done.stdout)
        finally:
            stop_worker(proc)
    report = (REPO / "var" / "tutorial" / "backtest" / "backtest.md").read_text()
    assert "weighbridge_excess_2pct" in report
    assert (REPO / "var" / "tutorial" / "backtest" / "backtest.png").stat().st_size > 0
    shadow, after_rollback = out["bukong rules stats"]
    assert "live pack 'starter' version 2" in shadow
    assert "| weighbridge_excess_2pct | shadow |" in shadow
    assert (
        "rolled back: the rules of version 2 are live again as version 4" in out["bukong rules rollback"][0]
    )
    assert "version 4" in after_rollback and "| weighbridge_excess_2pct | shadow |" in after_rollback
