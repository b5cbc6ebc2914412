"""GET /api/rules, which names the rules in the live view: the live pack's rules from Redis when published
there, else the start-up pack; a broken entry is reported, not served and not fatal."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from pipeline.apps.web.server import create_app
from pipeline.contracts.commands import RULES_KEY
from pipeline.contracts.settings import Settings
from pipeline.io.embedded import Servers

pytestmark = pytest.mark.integration
FIELDS = {"id", "title", "lane", "severity", "status", "scope"}


def _get(srv: Servers, token: str | None) -> tuple[int, Any]:
    settings = Settings(analyst_token=SecretStr("a"), operator_token=SecretStr("o"))

    async def go() -> tuple[int, Any]:
        async with TestClient(TestServer(create_app(settings, srv.redis_url, srv.kafka))) as client:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            resp = await client.get("/api/rules", headers=headers)
            return resp.status, await resp.json()

    return asyncio.run(go())


def test_rules_come_from_the_start_up_pack_until_a_live_pack_is_in_redis(embedded: Servers) -> None:
    r = redis.Redis.from_url(embedded.redis_url)
    r.delete(RULES_KEY)
    status, body = _get(embedded, "a")
    assert status == 200 and body["source"] == "pack" and body["unreadable"] == []
    by_id = {rule["id"]: rule for rule in body["rules"]}
    assert by_id["weighbridge_excess"] == {
        "id": "weighbridge_excess",
        "title": "Weighbridge well above the declared weight (地磅超重)",
        "lane": "physical_inspection",
        "severity": "high",
        "status": "active",
        "scope": "global",
    }
    assert by_id["eht_coal_night"]["scope"] == "EHT" and by_id["distrusted_uplift"]["status"] == "shadow"
    assert all(set(rule) == FIELDS for rule in body["rules"])  # no expressions or owners leak to the page

    live = {
        "coal_night": {
            "id": "coal_night",
            "title": "Night coal (夜间运煤)",
            "lane": "document_check",
            "severity": "medium",
            "status": "shadow",
            "scope": "GQM",
            "expression": "hs4 == '2701'",
        },
        "bare": {"lane": "intercept", "severity": "critical"},
    }
    try:
        r.hset(RULES_KEY, mapping={k: orjson.dumps(v) for k, v in live.items()})
        r.hset(RULES_KEY, "broken", b"{not json")
        status, body = _get(embedded, "a")
        assert status == 200 and body["source"] == "redis" and body["unreadable"] == ["broken"]
        assert body["rules"] == [
            {
                "id": "bare",
                "title": "bare",
                "lane": "intercept",
                "severity": "critical",
                "status": "active",
                "scope": "global",
            },
            {k: v for k, v in live["coal_night"].items() if k in FIELDS},
        ]
    finally:
        r.delete(RULES_KEY)


def test_rules_need_a_token(embedded: Servers) -> None:
    status, body = _get(embedded, None)
    assert status == 401 and "token" in body["error"]
