"""The installed `bukong` command: its help, and `bukong tail` against the real embedded broker."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipeline.apps.cli import main
from pipeline.contracts import events as c
from pipeline.contracts.commands import make_command
from pipeline.contracts.events import ContractError
from pipeline.io.codec import dead_letter
from pipeline.io.embedded import Servers, free_port
from tests.conftest import REPO, declaration, now_ms

BUKONG = Path(sys.executable).with_name("bukong")
COMMANDS = ("demo", "worker", "topics", "watch", "simulate", "rules", "web", "tail")


def _env(**over: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BROKER", "REDIS_URL")}
    env.update(over)
    return env


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUKONG), *args], capture_output=True, text=True, env=_env(**env), cwd=REPO, timeout=60
    )


def test_bukong_help_lists_every_command_with_one_line() -> None:
    assert BUKONG.exists(), f"{BUKONG} missing: run `make venv` (pyproject [project.scripts])"
    out = _run("--help")
    assert out.returncode == 0, out.stderr
    listed = {}
    for line in out.stdout.splitlines():
        m = re.match(r"^ {4}(\w+) +(\S.*)$", line)
        if m:
            listed[m.group(1)] = m.group(2)
    assert set(COMMANDS) <= set(listed), f"missing from `bukong --help`: {set(COMMANDS) - set(listed)}"
    assert all(len(text) > 10 for text in listed.values()), listed
    assert out.stdout.startswith("usage: bukong ")
    # the module form still works and says its own name
    mod = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert mod.returncode == 0 and mod.stdout.startswith("usage: python -m pipeline "), mod.stderr


def _command(uid: str) -> dict:
    decl = declaration(uid, "TAIL", gross_kg=30_000)
    return make_command(
        decl=decl,
        lane="physical_inspection",
        site="EHT",
        severity="high",
        score=0.93,
        reasons=[{"rule": "weighbridge_excess", "text": "36000 kg vs declared 30000 kg"}],
        rule_ids=["weighbridge_excess"],
        pack_version=1,
        decided_ts_ms=now_ms(),
        deadline_ts_ms=now_ms() + 600_000,
    )


def _dead_letter(uid: str) -> dict:
    raw = orjson.dumps({k: v for k, v in declaration(uid, "NOHS").items() if k != "hs_code"})
    err = ContractError("missing_field", "declaration has no hs_code: add the 6-digit HS code", "hs_code")
    return dead_letter(topic=c.DECLARATIONS, partition=1, offset=4242, raw=raw, error=err, now_ms=now_ms())


@pytest.fixture(scope="module")
def producer(embedded: Servers) -> Iterator[object]:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=embedded.kafka, linger_ms=0, acks=1)
    yield p
    p.close()


def _send(
    producer: object, topic: str, value: bytes, key: bytes = b"k", partition: int | None = None
) -> None:
    producer.send(topic, key=key, value=value, partition=partition)  # type: ignore[attr-defined]
    producer.flush()  # type: ignore[attr-defined]


def test_tail_prints_a_command_and_a_dead_letter_with_its_reason(
    embedded: Servers, producer: object, uid: str
) -> None:
    cmd = _command(uid)
    dl = _dead_letter(uid)
    _send(producer, c.DISPATCH_COMMANDS, orjson.dumps(cmd), key=cmd["conveyance_id"].encode())
    _send(producer, c.DEAD_LETTER, orjson.dumps(dl))

    out = _run("tail", c.DISPATCH_COMMANDS, "-n", "20", KAFKA_BROKER=embedded.kafka)
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if cmd["decl_id"] in ln)
    # time, site, lane, severity, rules, decl
    assert re.match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  EHT +physical_inspection +high +weighbridge_excess  "
        + re.escape(cmd["decl_id"])
        + "$",
        line,
    ), line

    out = _run("tail", c.DEAD_LETTER, "--broker", embedded.kafka, "-n", "20")
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if "@4242" in ln and uid in ln)
    assert "missing_field" in line
    assert f"{c.DECLARATIONS}/1@4242" in line  # where the broken record came from
    assert "[hs_code]" in line and "add the 6-digit HS code" in line


def _topic(embedded: Servers, name: str, partitions: int) -> str:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=embedded.kafka)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def test_tail_count_partition_json_and_records_that_are_not_json(
    embedded: Servers, producer: object, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = _topic(embedded, f"tail-test-{uid}", 2)
    first = orjson.dumps({"n": 1, "uid": uid})
    _send(producer, topic, first, partition=0)
    _send(producer, topic, b"\xff\xfe not json", partition=0)
    for n in range(2, 6):
        _send(producer, topic, orjson.dumps({"n": n, "uid": uid}), key=b"truck-%d" % n, partition=1)

    assert main(["tail", topic, "--broker", embedded.kafka, "--from-beginning", "--partition", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert f"{topic}/0@0" in lines[0] and '"n":1' in lines[0]
    assert "(not JSON, 11 bytes)" in lines[1]  # shown, not a crash

    assert main(["tail", topic, "--broker", embedded.kafka, "-n", "3", "--json"]) == 0
    assert [orjson.loads(x)["n"] for x in capsys.readouterr().out.splitlines()] == [3, 4, 5]

    assert main(["tail", topic, "--broker", embedded.kafka, "--partition", "1", "-n", "1"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert f"{topic}/1@3  truck-5  " in line

    assert main(["tail", topic, "--broker", embedded.kafka, "--from-beginning", "-n", "1", "--json"]) == 0
    assert capsys.readouterr().out.splitlines() in ([first.decode()], ['{"n":2,"uid":"' + uid + '"}'])


def test_tail_follow_prints_new_records_as_they_arrive(embedded: Servers, producer: object, uid: str) -> None:
    topic = _topic(embedded, f"tail-follow-{uid}", 1)
    _send(producer, topic, orjson.dumps({"seq": "before", "uid": uid}))
    proc = subprocess.Popen(
        [str(BUKONG), "tail", topic, "--follow", "-n", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(KAFKA_BROKER=embedded.kafka),
        cwd=REPO,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout or []], daemon=True).start()
    try:
        assert orjson.loads(lines.get(timeout=30))["seq"] == "before"  # caught up
        _send(producer, topic, orjson.dumps({"seq": "after", "uid": uid}))
        assert orjson.loads(lines.get(timeout=30))["seq"] == "after"
        assert proc.poll() is None  # still following
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C ends the follow between two polls
        try:
            rc = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave it following after the test
            raise
    assert rc == 0, proc.stderr.read() if proc.stderr else ""


def test_tail_errors_say_what_to_do(embedded: Servers, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    out = _run("tail", c.DISPATCH_COMMANDS, "--broker", dead, "--timeout", "1")
    assert out.returncode == 2
    assert f"cannot reach the Kafka broker at {dead}" in out.stderr and "--broker" in out.stderr
    assert "Traceback" not in out.stderr

    out = _run("tail", c.DISPATCH_COMMANDS)  # no KAFKA_BROKER, no --broker
    assert out.returncode == 2 and "KAFKA_BROKER" in out.stderr

    assert main(["tail", "no-such-topic", "--broker", embedded.kafka]) == 2
    err = capsys.readouterr().err
    assert "topic 'no-such-topic' does not exist" in err and c.DISPATCH_COMMANDS in err

    assert main(["tail", c.DEAD_LETTER, "--broker", embedded.kafka, "--partition", "7"]) == 2
    assert "there is no 7" in capsys.readouterr().err


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """`bukong rules list BIG | head -1`: the pipe closes under the command, which stops without a
    traceback (exit 141, as a shell reports a command a pipe stopped)."""
    from rules.hostile import pack, rule

    big = tmp_path / "big.yaml"
    big.write_text(pack(*(rule("weigh_present", f"r{i}") for i in range(900))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "rules", "list", str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"| id |")
    proc.stdout.close()  # the reader goes away with most of the table unread
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err
