"""The command API and live view on a real Redis and the real embedded broker."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from pipeline.apps.web.server import create_app
from pipeline.contracts import events as c
from pipeline.contracts.commands import LIVE_STREAM_KEY, STATUS_PREFIX, make_command
from pipeline.contracts.settings import Settings
from pipeline.io.embedded import Servers
from pipeline.io.metrics import Metrics, WebMetrics
from tests.conftest import Stack

pytestmark = pytest.mark.integration
ANALYST, OPERATOR = "analyst-secret-1", "operator-secret-2"


def _settings() -> Settings:
    return Settings(analyst_token=SecretStr(ANALYST), operator_token=SecretStr(OPERATOR))


def seed_command(redis_url: str, uid: str, port: str = "EHT") -> dict[str, Any]:
    decl = {
        "decl_id": f"D-{uid}",
        "conveyance_id": f"MN-{uid}",
        "enterprise_id": "E1",
        "port": port,
        "ts_ms": 1,
    }
    cmd = make_command(
        decl=decl,
        lane="physical_inspection",
        site=port,
        severity="high",
        score=0.9,
        reasons=[{"rule_id": "weighbridge_excess", "text": "weighbridge +12%", "evidence": {}}],
        rule_ids=["weighbridge_excess"],
        pack_version=1,
        decided_ts_ms=1_790_000_000_000,
        deadline_ts_ms=1_790_001_800_000,
        facts={"weigh_excess_ratio": 0.12},
    )
    r = redis.Redis.from_url(redis_url)
    body = orjson.dumps(cmd)
    r.xadd(LIVE_STREAM_KEY, {"c": body}, maxlen=1000)
    track = orjson.dumps([{"lat": 43.7, "lon": 111.9, "ts_ms": 1}])
    r.hset(STATUS_PREFIX + cmd["command_id"], mapping={"status": "sent", "command": body, "track": track})
    return cmd


def run(embedded: Servers, body: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        app = create_app(_settings(), embedded.redis_url, embedded.kafka)
        async with TestClient(TestServer(app)) as client:
            await body(client)

    asyncio.run(main())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_401_wrong_role_403_and_login_cookie(embedded: Servers, uid: str) -> None:
    cmd = seed_command(embedded.redis_url, uid)

    async def body(client: TestClient) -> None:
        assert (await client.get("/api/hits")).status == 401
        assert (await client.get("/api/hits", headers=bearer("nope"))).status == 401
        r = await client.post(f"/api/commands/{cmd['command_id']}/ack", headers=bearer(ANALYST))
        assert r.status == 403
        assert (await client.post("/api/login", json={"token": "wrong"})).status == 401
        r = await client.post("/api/login", json={"token": ANALYST})
        assert r.status == 200 and (await r.json())["role"] == "analyst"
        r = await client.get("/api/hits?port=EHT")  # the HttpOnly cookie now authenticates
        assert r.status == 200
        assert cmd["command_id"] in [h["command_id"] for h in (await r.json())["hits"]]
        page = await (await client.get("/")).text()
        assert ANALYST not in page and OPERATOR not in page

    run(embedded, body)


def test_filters_detail_and_track(embedded: Servers, uid: str) -> None:
    cmd = seed_command(embedded.redis_url, uid, port="GQM")

    async def body(client: TestClient) -> None:
        h = bearer(ANALYST)
        ids = [
            x["command_id"]
            for x in (await (await client.get("/api/hits?port=GQM", headers=h)).json())["hits"]
        ]
        assert cmd["command_id"] in ids
        ids = [
            x["command_id"]
            for x in (await (await client.get("/api/hits?port=CEK", headers=h)).json())["hits"]
        ]
        assert cmd["command_id"] not in ids
        ids = [
            x["command_id"]
            for x in (await (await client.get("/api/hits?rule=other", headers=h)).json())["hits"]
        ]
        assert cmd["command_id"] not in ids
        d = await (await client.get(f"/api/commands/{cmd['command_id']}", headers=h)).json()
        assert d["status"]["status"] == "sent"
        assert d["command"]["reasons"][0]["rule_id"] == "weighbridge_excess"
        assert d["track"] == [{"lat": 43.7, "lon": 111.9, "ts_ms": 1}]
        assert (await client.get("/api/commands/cmd-nothing", headers=h)).status == 404

    run(embedded, body)


def test_ack_and_result_round_trip_to_the_topic(embedded: Servers, uid: str) -> None:
    cmd = seed_command(embedded.redis_url, uid)
    cid = cmd["command_id"]

    async def body(client: TestClient) -> None:
        h = bearer(OPERATOR)
        assert (await client.post(f"/api/commands/{cid}/ack", headers=h)).status == 200
        bad = await client.post(f"/api/commands/{cid}/result", headers=h, json={"outcome": "guilty"})
        assert bad.status == 422 and (await bad.json())["field"] == "outcome"
        bad = await client.post(
            f"/api/commands/{cid}/result", headers=h, json={"outcome": "violation", "found_value_cny": -1}
        )
        assert bad.status == 422 and (await bad.json())["field"] == "found_value_cny"
        ok = await client.post(
            f"/api/commands/{cid}/result",
            headers=h,
            json={"outcome": "violation", "found_value_cny": 61000, "notes": "grade A coal"},
        )
        assert ok.status == 202
        again = await client.post(f"/api/commands/{cid}/result", headers=h, json={"outcome": "clean"})
        assert again.status == 409
        assert (
            await client.post("/api/commands/cmd-missing/result", headers=h, json={"outcome": "clean"})
        ).status == 404

    run(embedded, body)
    status = redis.Redis.from_url(embedded.redis_url).hget(STATUS_PREFIX + cid, "status")
    assert status == b"acknowledged"
    got = Stack(embedded).read(c.INSPECTION_RESULTS, want=1, where=lambda r: r["command_id"] == cid)
    assert len(got) == 1
    r = c.validate("inspection_result", got[0])
    assert (r["outcome"], r["found_value_cny"], r["source"], r["decl_id"]) == (
        "violation",
        61000.0,
        "api",
        f"D-{uid}",
    )


def test_server_sent_events_deliver_new_hits(embedded: Servers, uid: str) -> None:
    async def body(client: TestClient) -> None:
        resp = await client.get("/api/stream", headers=bearer(ANALYST))
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        await asyncio.sleep(0.3)
        cmd = await asyncio.to_thread(seed_command, embedded.redis_url, uid)
        buf = b""
        async with asyncio.timeout(10):
            while cmd["command_id"].encode() not in buf:
                buf += await resp.content.readany()
        assert b"event: hits" in buf
        resp.close()

    run(embedded, body)


def test_metrics_exposition_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run docker/install-system-deps.sh (Debian package prometheus)"
    reg = CollectorRegistry()
    m = Metrics.create(reg)
    m.events_in.labels(c.TRACKS).inc(5)
    m.dead_letters.labels("malformed_json").inc()
    m.e2e_latency_seconds.observe(0.012)
    m.hits.labels("weighbridge_excess", "physical_inspection").inc()
    m.consumer_lag.labels(c.TRACKS, "0").set(3)
    w = WebMetrics.create(reg)
    w.streams_open.labels("analyst").set(2)
    w.streams_refused.labels("role").inc()
    w.streams_dropped.inc()
    w.requests_refused.labels("cross_origin").inc()
    out = subprocess.run([promtool, "check", "metrics"], input=generate_latest(reg), capture_output=True)
    assert out.returncode == 0 and out.stdout.strip() == b"" and out.stderr.strip() == b"", out
