"""Hot reload on a running worker: a published pack is live within seconds, a rollback restores the rules."""

from __future__ import annotations

import time

import orjson
import pytest
import redis

from pipeline.apps.rules_cli import publish, rollback
from pipeline.contracts import events as c
from pipeline.contracts.commands import RULES_KEY
from rules.engine import PACKS
from tests.conftest import Stack, declaration, weighbridge

pytestmark = pytest.mark.integration

EXTRA = """
  - id: reload_probe
    title: A rule published while the worker runs
    expression: conveyance_id.startsWith("PROBE")
    lane: document_check
    severity: high
    action: hard
    status: active
    owner: test
    version: 1
    reason: "published live"
"""


def _decide(stack: Stack, uid: str, plate: str) -> dict:
    stack.send(c.LOGISTICS, weighbridge(uid, plate, measured_kg=30_000))
    stack.send(c.DECLARATIONS, declaration(uid, plate, gross_kg=30_000, port="GQM"))
    got = stack.read(  # a random pick (双随机) is not a rule decision: leave it out
        c.DISPATCH_COMMANDS,
        want=1,
        timeout_s=10,
        where=lambda x: x["conveyance_id"] == f"{plate}-{uid}" and x["selection"] != "random",
    )
    return got[0] if got else {}


def test_publish_takes_effect_without_restart_and_rollback_undoes_it(
    stack: Stack, uid: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    assert _decide(stack, uid, "PROBEA") == {}  # no rule targets it yet
    source = (PACKS / "starter.yaml").read_text().replace(
        "version: 1\nrules:", "version: 2\nrules:", 1
    ) + EXTRA
    path = tmp_path / "candidate.yaml"
    path.write_text(source)
    assert publish(path, stack.srv.kafka) == 0
    t0 = time.monotonic()
    cmd = {}
    while not cmd and time.monotonic() - t0 < 20:
        cmd = _decide(stack, uid, f"PROBEB{int(time.monotonic() * 1000)}")
    assert cmd["rule_ids"] == ["reload_probe"] and cmd["pack_version"] == 2
    live = redis.Redis.from_url(stack.srv.redis_url)
    assert orjson.loads(live.hget(RULES_KEY, "reload_probe") or b"{}")["title"].startswith("A rule published")
    assert publish(path, stack.srv.kafka) == 1  # the same version twice is refused
    assert rollback(stack.srv.kafka) == 0
    time.sleep(2)
    assert _decide(stack, uid, "PROBEC") == {}
    assert live.hget(RULES_KEY, "reload_probe") is None  # the live view no longer lists it
    assert live.hget(RULES_KEY, "weighbridge_excess") is not None
