"""The closed loop on the running pipeline: a hit, a result reported through the API, the rule graded."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from pipeline.apps.web.server import create_app
from pipeline.contracts import events as c
from pipeline.contracts.commands import RULE_STATS_KEY, STATUS_PREFIX
from pipeline.contracts.settings import Settings
from tests.conftest import Stack, declaration, weighbridge

pytestmark = pytest.mark.integration


def test_reported_violation_reaches_the_model_and_the_rule_hit_rate(stack: Stack, uid: str) -> None:
    stack.send(c.LOGISTICS, weighbridge(uid, "LOOP", measured_kg=35_000))
    stack.send(c.DECLARATIONS, declaration(uid, "LOOP", gross_kg=30_000, port="CEK"))
    cmd = stack.read(c.DISPATCH_COMMANDS, want=1, where=lambda x: uid in x["decl_id"] and x["rule_ids"])[0]
    r = redis.Redis.from_url(stack.srv.redis_url, decode_responses=True)
    before = int(r.hget(RULE_STATS_KEY, "weighbridge_excess|CEK|confirmed") or 0)
    settings = Settings(analyst_token=SecretStr("a"), operator_token=SecretStr("o"))

    async def report() -> dict:
        async with TestClient(
            TestServer(create_app(settings, stack.srv.redis_url, stack.srv.kafka))
        ) as client:
            resp = await client.post(
                f"/api/commands/{cmd['command_id']}/result",
                headers={"Authorization": "Bearer o"},
                json={"outcome": "violation", "found_value_cny": 9000, "notes": "5 t extra"},
            )
            assert resp.status == 202
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                stats = await (await client.get("/api/stats", headers={"Authorization": "Bearer a"})).json()
                if stats["sites"].get("CEK", {}).get("confirmed", 0) > before:  # this test's port
                    return stats
                await asyncio.sleep(0.2)
            raise AssertionError("the feedback agent did not grade the rule")

    stats = asyncio.run(report())
    assert stats["sites"]["CEK"]["confirmed"] >= 1 and stats["rules"]["weighbridge_excess"]["hit_rate"] > 0
    status = r.hgetall(STATUS_PREFIX + cmd["command_id"])
    assert status["status"] == "result" and status["outcome"] == "violation"
