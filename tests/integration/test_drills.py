"""The drill suite's quick version (`python -m pipeline drill --quick`), on its own embedded broker, Redis and
worker process: one run for the module (starting a stack costs most of the time), one test per drill so a
failure names the drill, each asserting the issue's done-when conditions on the drill's JSON."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.apps.drill.records import FUZZ_KINDS, fuzzed, must_dispatch
from pipeline.contracts.events import ContractError
from pipeline.io.codec import decode_event

REPO = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = (
    "fuzzed",
    "dead_lettered",
    "good_decided",
    "kills",
    "lost",
    "doubled",
    "redis_outage_lost",
    "broker_outage_lost",
    "self_recovered",
    "hostile_packs_rejected",
    "api_5xx",
    "soak_rss_growth_mb",
    "soak_max_lag",
)


# lighter than --quick for the suite's time: tests/integration/test_reliability.py kills at random moments
LIGHTER = ("--kills", "1", "--soak-minutes", "0.25")


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every drill once, quick: returns the report plus the process's exit code and stdout."""
    out = tmp_path_factory.mktemp("drill")
    report = out / "report.json"
    env = dict(os.environ, BUKONG_DATA_DIR=str(out), PYTHONUNBUFFERED="1")
    env.pop("KAFKA_BROKER", None)
    env.pop("REDIS_URL", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "drill",
            "--quick",
            *LIGHTER,
            "--keep-logs",
            "--report",
            str(report),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=540,
    )
    stdout = proc.stdout.decode(errors="replace")
    assert report.exists(), (
        f"the drill wrote no report (exit {proc.returncode}):\n{stdout}\n{proc.stderr[-3000:]!r}"
    )
    data = orjson.loads(report.read_bytes())
    data["returncode"] = proc.returncode
    data["stdout"] = stdout
    data["by_name"] = {d["name"]: d for d in data["drills"]}
    return data


def _drill(drill: dict[str, Any], name: str) -> dict[str, Any]:
    d = drill["by_name"].get(name)
    assert d is not None, f"drill {name} did not run: {drill['summary']}"
    failed = [f"{c['check']}: {c['evidence']}" for c in d["checks"] if not c["ok"]]
    assert not failed, f"drill {name} ({d['title']}) failed:\n" + "\n".join(failed)
    return d["figures"]


def on_stack(test: Any) -> Any:
    """A test on the drill run: the embedded servers and a worker process, about 3 minutes for all of them."""
    return pytest.mark.integration(pytest.mark.slow(pytest.mark.timeout(600)(test)))


@on_stack
def test_fuzzed_records_all_dead_lettered_good_ones_all_decided(drill: dict[str, Any]) -> None:
    f = _drill(drill, "a")
    assert f["fuzzed"] >= 1000
    assert f["dead_lettered"] == f["fuzzed"]
    assert f["good_decided"] == f["good_sent"] > 0
    assert f["doubled"] == 0
    assert "oversize" in f["dead_letter_reasons"], "the 1 MB values must be dead-lettered as oversize"
    assert drill["summary"]["worker_deaths"] == []


@on_stack
def test_kill_9_loses_and_doubles_nothing(drill: dict[str, Any]) -> None:
    f = _drill(drill, "b")
    assert f["kills"] == 1
    assert f["lost"] == 0 and f["doubled"] == 0
    assert f["must_dispatch_sent"] > 0


@on_stack
def test_redis_pause_and_restart_self_recovered(drill: dict[str, Any]) -> None:
    f = _drill(drill, "c")
    assert f["redis_outage_lost"] == 0 and f["doubled"] == 0
    assert f["self_recovered"] is True


@on_stack
def test_broker_pause_self_recovered(drill: dict[str, Any]) -> None:
    f = _drill(drill, "d")
    assert f["broker_outage_lost"] == 0 and f["doubled"] == 0
    assert f["self_recovered"] is True


@on_stack
def test_hostile_packs_all_rejected_scoring_goes_on(drill: dict[str, Any]) -> None:
    f = _drill(drill, "e")
    assert f["hostile_packs_rejected"] == f["hostile_packs"] >= 15
    assert f["pack_version_after"] == f["pack_version_before"]
    assert f["lost_while_publishing"] == 0


@on_stack
def test_api_attacks_no_5xx_every_one_refused(drill: dict[str, Any]) -> None:
    f = _drill(drill, "f")
    assert f["api_5xx"] == 0
    assert f["api_unexpected"] == []
    assert f["streams_failed"] == 0


@on_stack
def test_soak_memory_plateaus_lag_bounded(drill: dict[str, Any]) -> None:
    f = _drill(drill, "g")
    assert set(f["soak_rss_growth_mb"]) == {"worker", "tansu", "valkey"}
    assert set(f["soak_max_lag"]) >= {"declarations", "logistics", "tracks"}
    assert f["soak_events"] > 0


@on_stack
def test_table_then_one_json_line_last_exit_code(drill: dict[str, Any]) -> None:
    lines = drill["stdout"].strip().splitlines()
    assert lines[0].split()[:2] == ["drill", "check"], "a plain table comes first"
    last = orjson.loads(lines[-1])
    assert set(SUMMARY_KEYS) <= set(last)
    assert last["drills"] == "abcdefg"
    assert drill["returncode"] == (0 if last["passed"] else 1)
    assert last["passed"] == (not last["failed_checks"])


# ------------------------------------------------------------------ the generators (no broker needed)
def test_every_fuzz_kind_is_refused_by_the_input_contract() -> None:
    rng = random.Random(3)
    null_keys = 0
    for kind in FUZZ_KINDS:
        for _ in range(30):
            topic, key, value, got = fuzzed(rng, kind)
            assert got == kind
            null_keys += key is None
            with pytest.raises(ContractError):
                decode_event(topic, value, None)
    assert null_keys > 0


def test_must_dispatch_pair_is_valid_and_20_percent_over() -> None:
    decl_id, key, decl, weigh = must_dispatch("T", 1)
    assert decode_event("declarations", orjson.dumps(decl), None)["decl_id"] == decl_id
    assert decode_event("logistics", orjson.dumps(weigh), None)["conveyance_id"] == key
    assert weigh["measured_gross_kg"] == pytest.approx(decl["gross_kg"] * 1.2)
