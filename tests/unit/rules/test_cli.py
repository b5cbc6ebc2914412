"""`rules check` output and exit codes, reason-text limits, evidence, publish/rollback on a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.schema import NEUTRAL
from pipeline.apps import rules_cli as cli
from pipeline.io.embedded import Servers, servers
from pipeline.io.topics import create_topics
from rules.engine import PACKS, CompiledPack
from rules.pack import PackError, load_pack, pack_from_bytes, pack_to_bytes, parse_pack

REPO = Path(__file__).resolve().parents[3]

RULE = """  - id: {id}
    title: t
    expression: {expr}
    lane: document_check
    severity: high
    status: active
    owner: me
    version: 1
    reason: "{reason}"
"""


def pack_text(version: int = 1, **rules: tuple[str, str]) -> str:
    body = f"name: p\nversion: {version}\nrules:\n"
    return body + "".join(RULE.format(id=i, expr=e, reason=r) for i, (e, r) in rules.items())


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "rules", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_exits_0_on_the_starter_pack() -> None:
    done = run_cli("check", str(PACKS / "starter.yaml"))
    assert done.returncode == 0, done.stderr
    assert "ok, pack 'starter'" in done.stdout


def test_check_lists_every_error_with_file_line_and_rule(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    text = pack_text(a=("|\n      weigh_present &&\n        weigh_excess_ratio > > 0.05", "x"))
    text += RULE.format(id="b", expr="unit_pric < 0.6", reason="x")
    p.write_text(text)
    done = run_cli("check", str(p))
    assert done.returncode == 1
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith(str(p))]
    # the syntax error points at the line of the literal block where it is, with a caret under the column
    assert errors[0].startswith(f"{p}:8: a: at 2:24: Syntax error")
    assert "^" in done.stderr
    assert errors[1].startswith(f"{p}:17: b: at 1:1: undeclared reference to 'unit_pric'")
    assert errors[-1] == f"{p}: 2 error(s)"


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("{gross_kg.__class__}", "is not a fact"),
        ("{gross_kg[0]}", "is not a fact"),
        ("{unit_pric:.2f}", "is not a fact"),
        ("{}", "is not a fact"),
        ("{gross_kg:999999999}", "unsupported format"),
        ("{gross_kg!r}", "unsupported format"),
        ("{gross_kg:{hs4}}", "unsupported format"),
        ("{hs4:.2f}", "does not format the facts"),
        ("{gross_kg", "reason text"),
        ("x" * 1001, "longer than 1000"),
    ],
)
def test_reason_placeholders_are_plain_facts_with_small_formats(
    tmp_path: Path, reason: str, message: str
) -> None:
    with pytest.raises(PackError) as err:
        parse_pack(pack_text(r=("gross_kg > 1.0", reason)), "p.yaml")
    assert any(message in i.message and i.rule_id == "r" for i in err.value.issues), err.value


def test_evidence_is_what_the_rule_reads_and_shows() -> None:
    pack = CompiledPack.compile(
        parse_pack(pack_text(r=("weigh_gross_kg > 10.0 && hs4 == 'gross_kg'", "{net_kg:.0f} kg")), "p")
    )
    facts = dict(NEUTRAL, weigh_gross_kg=20.0, hs4="gross_kg", net_kg=5.0, port="EHT")
    [hit] = pack.evaluate(facts)
    assert hit.evidence == {"hs4": "gross_kg", "net_kg": 5.0, "weigh_gross_kg": 20.0}
    assert hit.reason == "5 kg"


def test_published_bytes_are_validated_again() -> None:
    pack = load_pack(PACKS / "starter.yaml")
    assert pack_from_bytes(pack_to_bytes(pack)).rules == pack.rules
    for raw in (
        b"not json",
        b'{"version": 3}',
        pack_to_bytes(pack).replace(b"weigh_present", b"weigh_presnt"),
    ):
        with pytest.raises(PackError):
            pack_from_bytes(raw)


@pytest.fixture
def own_broker() -> Iterator[Servers]:
    """A broker of its own: the packs published here must not become the live pack of other tests' workers."""
    with servers(None, None) as srv:
        create_topics(srv.kafka, 1, 600_000)
        yield srv


def test_publish_refuses_old_versions_and_rollback_restores_the_previous_rules(
    own_broker: Servers, tmp_path: Path
) -> None:
    broker = own_broker.kafka
    history = cli._history(broker)
    top = max((h["version"] for h in history), default=1)
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(pack_text(top + 1, first=("gross_kg > 1.0", "x")))
    second.write_text(pack_text(top + 2, second=("gross_kg > 2.0", "x")))
    assert cli.publish(first, broker) == 0
    assert cli.publish(first, broker) == 1  # not above the live version
    assert cli.publish(second, broker) == 0

    def live() -> tuple[int, list[str]]:
        pack = parse_pack(cli._history(broker)[-1]["source"], "<live>")
        return pack.version, [r.id for r in pack.rules]

    assert live() == (top + 2, ["second"])
    assert cli.rollback(broker) == 0
    assert live() == (top + 3, ["first"])
    assert cli.rollback(broker) == 0  # a second rollback undoes the first
    assert live() == (top + 4, ["second"])


def test_publish_and_stats_take_the_broker_from_flags_or_the_environment() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BROKER", "REDIS_URL")}
    for args in (("publish", str(PACKS / "starter.yaml")), ("rollback",), ("stats",)):
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "rules", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and "KAFKA_BROKER" in done.stderr, (args, done.stderr)
    bad = subprocess.run(
        [sys.executable, "-m", "pipeline", "rules", "rollback"],
        cwd=REPO,
        env={**env, "BUKONG_PARTITIONS": "many"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "BUKONG_PARTITIONS='many'" in bad.stderr
