"""The closed loop on the running pipeline: a hit, a result reported through the API, the rule and the
intelligence-lead source graded."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from agents import watchlists
from pipeline.apps.web.server import create_app
from pipeline.contracts import events as c
from pipeline.contracts.commands import RULE_STATS_KEY, STATUS_PREFIX
from pipeline.contracts.settings import Settings
from tests.conftest import Stack, declaration, weighbridge

pytestmark = pytest.mark.integration


def test_reported_violation_reaches_the_model_and_the_rule_and_lead_hit_rates(stack: Stack, uid: str) -> None:
    r = redis.Redis.from_url(stack.srv.redis_url, decode_responses=True)
    source = f"informant-{uid}"  # this test's lead source: its counts start at zero
    watchlists.put(r, "conveyance", f"LOOP-{uid}", source, int(time.time() * 1000) + 3_600_000)
    stack.send(c.LOGISTICS, weighbridge(uid, "LOOP", measured_kg=35_000))
    time.sleep(2.5)  # workers reload watchlists every 2 s
    stack.send(c.DECLARATIONS, declaration(uid, "LOOP", gross_kg=30_000, port="CEK"))
    cmd = stack.read(c.DISPATCH_COMMANDS, want=1, where=lambda x: uid in x["decl_id"] and x["rule_ids"])[0]
    assert cmd["facts"]["watch_source"] == source
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
                if stats["sites"].get("CEK", {}).get("confirmed", 0) > before and source in stats["leads"]:
                    return stats
                await asyncio.sleep(0.2)
            raise AssertionError("the feedback agent did not grade the rule and the lead source")

    stats = asyncio.run(report())
    assert stats["sites"]["CEK"]["confirmed"] >= 1 and stats["rules"]["weighbridge_excess"]["hit_rate"] > 0
    assert stats["leads"][source] == {"results": 1, "confirmed": 1, "hit_rate": 1.0}
    assert float(stats["meta"]["budget_share"]) == 0.05  # the workers' budget, shown on the live view
    status = r.hgetall(STATUS_PREFIX + cmd["command_id"])
    assert status["status"] == "result" and status["outcome"] == "violation"
