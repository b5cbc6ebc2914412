"""Each attack on the API, against the real app on the embedded Redis and broker.

No token, wrong role, forged cookies, cross-origin writes, 10 MB bodies, path traversal, results for ids
that were never dispatched (no key created: checked in Redis directly), 500 live streams.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from yarl import URL

from pipeline.apps.web.auth import Auth
from pipeline.apps.web.server import create_app
from pipeline.contracts.commands import STATUS_PREFIX, command_id
from pipeline.contracts.settings import Settings
from pipeline.io.embedded import Servers
from tests.unit.web.test_api import ANALYST, OPERATOR, bearer, run, seed_command

pytestmark = pytest.mark.integration
EVIL = "http://evil.example"
BIG = b'{"outcome": "clean", "notes": "' + b"x" * (10 * 1024 * 1024) + b'"}'


def _r(embedded: Servers) -> redis.Redis:
    return redis.Redis.from_url(embedded.redis_url)


async def _cookie(client: TestClient, token: str) -> str:
    r = await client.post("/api/login", json={"token": token})
    assert r.status == 200
    return r.cookies["bukong_session"].value


def _raw(client: TestClient, path: str) -> URL:
    """An absolute URL sent exactly as written (no normalisation of .. or %2e)."""
    return URL(f"http://{client.host}:{client.port}{path}", encoded=True)


def _unknown_id() -> str:
    return command_id(f"D-never-{uuid.uuid4().hex}")


# ---------------------------------------------------------------------------------------------- auth
PROTECTED = [
    ("GET", "/api/hits"),
    ("GET", "/api/stats"),
    ("GET", "/api/whoami"),
    ("GET", "/api/geo"),
    ("GET", "/api/stream"),
    ("GET", "/api/commands/{cid}"),
    ("POST", "/api/commands/{cid}/ack"),
    ("POST", "/api/commands/{cid}/result"),
]


def test_no_token_wrong_token_and_forged_cookies_are_401(embedded: Servers, uid: str) -> None:
    cid = seed_command(embedded.redis_url, uid)["command_id"]
    forged = [
        {},
        bearer("nope"),
        {"Authorization": "Bearer "},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Cookie": "bukong_session=operator.deadbeef"},
        {"Cookie": "bukong_session=operator.9999999999." + "0" * 64},
        {"Cookie": "bukong_session=admin.9999999999." + "0" * 64},
        {"Cookie": "bukong_session=operator"},
    ]

    async def body(client: TestClient) -> None:
        analyst_cookie = await _cookie(client, ANALYST)
        client.session.cookie_jar.clear()
        _role, expiry, sig = analyst_cookie.split(".")
        forged.append({"Cookie": f"bukong_session=operator.{expiry}.{sig}"})  # analyst's signature
        forged.append({"Cookie": f"bukong_session=analyst.{int(expiry) + 3600}.{sig}"})  # extended expiry
        for method, path in PROTECTED:
            for headers in forged:
                r = await client.request(
                    method, path.format(cid=cid), headers=headers, json={"outcome": "clean"}
                )
                assert r.status == 401, (method, path, headers, r.status)
                assert "token" in (await r.json())["error"]
        assert _r(embedded).hget(STATUS_PREFIX + cid, "status") == b"sent"

    run(embedded, body)


def test_cookies_expire_and_are_bound_to_the_process() -> None:
    a = Auth("a-token", "o-token")
    now = time.time()
    cookie = a.cookie_for("operator", now_s=now)
    assert a.role_of_cookie(cookie, now_s=now + 60) == "operator"
    assert a.role_of_cookie(cookie, now_s=now + 13 * 3600) is None  # expired
    assert Auth("a-token", "o-token").role_of_cookie(cookie, now_s=now) is None  # another process's key


def test_analyst_cannot_act_and_nothing_changes(embedded: Servers, uid: str) -> None:
    cid = seed_command(embedded.redis_url, uid)["command_id"]

    async def body(client: TestClient) -> None:
        for path in (f"/api/commands/{cid}/ack", f"/api/commands/{cid}/result"):
            r = await client.post(path, headers=bearer(ANALYST), json={"outcome": "violation"})
            assert r.status == 403 and "operators only" in (await r.json())["error"]
        await _cookie(client, ANALYST)  # analyst cookie, same origin: still 403
        r = await client.post(
            f"/api/commands/{cid}/ack", headers={"Origin": f"http://{client.host}:{client.port}"}
        )
        assert r.status == 403

    run(embedded, body)
    st = _r(embedded).hgetall(STATUS_PREFIX + cid)
    assert st[b"status"] == b"sent" and b"result_sent" not in st and b"ack_ms" not in st  # type: ignore[index,operator]


# ------------------------------------------------------------------------------------ cross-origin
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": EVIL}, 403),
        ({"Origin": EVIL, "Content-Type": "text/plain"}, 403),
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site", "Origin": "SELF"}, 403),
        ({}, 403),  # a cookie POST without Origin is not from a browser page: use a Bearer token
        ({"Origin": "SELF"}, 200),
        ({"Origin": "SELF", "Sec-Fetch-Site": "same-origin"}, 200),
    ],
)
def test_cookie_changes_must_come_from_the_own_origin(
    embedded: Servers, uid: str, headers: dict[str, str], status: int
) -> None:
    cid = seed_command(embedded.redis_url, uid)["command_id"]

    async def body(client: TestClient) -> None:
        await _cookie(client, OPERATOR)
        own = f"http://{client.host}:{client.port}"
        h = {k: (own if v == "SELF" else v) for k, v in headers.items()}
        r = await client.post(f"/api/commands/{cid}/ack", headers=h)
        assert r.status == status, await r.text()
        if status == 403:
            assert (await r.json())["reason"] == "cross_origin"
            r = await client.post(f"/api/commands/{cid}/result", headers=h, json={"outcome": "clean"})
            assert r.status == 403
        # a Bearer client is not affected by Origin
        r = await client.post(f"/api/commands/{cid}/ack", headers={**bearer(OPERATOR), "Origin": EVIL})
        assert r.status == 200

    run(embedded, body)
    st = _r(embedded).hgetall(STATUS_PREFIX + cid)
    assert b"result_sent" not in st  # type: ignore[operator]


def test_cross_origin_login_is_refused(embedded: Servers) -> None:
    async def body(client: TestClient) -> None:
        r = await client.post("/api/login", json={"token": OPERATOR}, headers={"Origin": EVIL})
        assert r.status == 403 and "bukong_session" not in r.cookies

    run(embedded, body)


# -------------------------------------------------------------------------------- body and paths
def test_ten_megabyte_bodies_are_413_and_change_nothing(embedded: Servers, uid: str) -> None:
    cid = seed_command(embedded.redis_url, uid)["command_id"]

    async def body(client: TestClient) -> None:
        for path, headers in (
            (f"/api/commands/{cid}/result", bearer(OPERATOR)),
            (f"/api/commands/{cid}/ack", bearer(OPERATOR)),
            ("/api/login", {}),
        ):
            r = await client.post(path, data=BIG, headers={**headers, "Content-Type": "application/json"})
            assert r.status == 413, (path, r.status)
            assert "BUKONG_WEB_MAX_BODY_BYTES" in (await r.json())["error"]

        async def chunks() -> Any:  # no Content-Length: the limit applies while reading
            for _ in range(160):
                yield b"x" * 65536

        r = await client.post(f"/api/commands/{cid}/result", data=chunks(), headers=bearer(OPERATOR))
        assert r.status == 413

    run(embedded, body)
    st = _r(embedded).hgetall(STATUS_PREFIX + cid)
    assert st[b"status"] == b"sent" and b"result_sent" not in st  # type: ignore[index,operator]


TRAVERSALS = [
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2fpyproject.toml",
    "/static/..%2fserver.py",
    "/static/%2e%2e%2fserver.py",
    "/static/.hidden",
    "/static/..",
    "/static/app.js%00.css",
    "/static/sub%2fapp.js",
    "/static/..%5cserver.py",
]


def test_static_path_traversal_is_404_and_leaks_nothing(embedded: Servers) -> None:
    async def body(client: TestClient) -> None:
        ok = await client.get("/static/app.js")
        assert ok.status == 200 and "EventSource" in await ok.text()
        for path in TRAVERSALS:
            r = await client.session.get(_raw(client, path))
            text = await r.text()
            assert r.status == 404, (path, r.status)
            assert "root:" not in text and "import" not in text and "[project]" not in text, path

    run(embedded, body)


# ------------------------------------------------------------------------------------ unknown ids
def test_results_and_acks_for_undispatched_ids_are_404_and_create_no_key(embedded: Servers, uid: str) -> None:
    r = _r(embedded)
    unknown = _unknown_id()
    # a hash without the command (what a result for a not-yet-dispatched id used to leave behind)
    orphan = _unknown_id()
    r.hset(STATUS_PREFIX + orphan, mapping={"status": "result", "outcome": "clean"})
    r.expire(STATUS_PREFIX + orphan, 60)

    async def body(client: TestClient) -> None:
        h = bearer(OPERATOR)
        for cid in (unknown, orphan):
            for path in (f"/api/commands/{cid}/result", f"/api/commands/{cid}/ack", f"/api/commands/{cid}"):
                method = "GET" if path.endswith(cid) else "POST"
                resp = await client.request(method, path, headers=h, json={"outcome": "violation"})
                assert resp.status == 404, (path, resp.status)
        for bad in ("cmd-nothing", "..%2f..%2fetc%2fpasswd", "*", "x" * 4000):
            resp = await client.session.get(_raw(client, f"/api/commands/{bad}"), headers=h)
            assert resp.status == 404

    run(embedded, body)
    assert r.exists(STATUS_PREFIX + unknown) == 0  # no key created
    assert r.hgetall(STATUS_PREFIX + orphan) == {b"status": b"result", b"outcome": b"clean"}  # untouched


def test_every_status_hash_the_api_writes_has_a_ttl(embedded: Servers, uid: str) -> None:
    r = _r(embedded)
    cid = seed_command(embedded.redis_url, uid)["command_id"]  # seeded without a TTL
    assert r.ttl(STATUS_PREFIX + cid) == -1

    async def body(client: TestClient) -> None:
        assert (await client.post(f"/api/commands/{cid}/ack", headers=bearer(OPERATOR))).status == 200

    run(embedded, body)
    assert r.hget(STATUS_PREFIX + cid, "status") == b"acknowledged"
    assert 0 < r.ttl(STATUS_PREFIX + cid) <= Settings().dedupe_ttl_s  # type: ignore[operator]


def test_result_body_at_the_edge(embedded: Servers, uid: str) -> None:
    cid = seed_command(embedded.redis_url, uid)["command_id"]

    async def body(client: TestClient) -> None:
        h = {**bearer(OPERATOR), "Content-Type": "application/json"}
        for raw, field in (
            (b"\xff{", None),
            (b"[1]", None),
            (b'{"outcome": "clean", "found_value_cny": NaN}', None),
            (b'{"outcome": "clean", "found_value_cny": 1e400}', None),
            (b'{"outcome": "clean", "found_value_cny": 1e300}', "found_value_cny"),
            (b'{"outcome": "clean", "notes": "a\\u0000b"}', "notes"),
            (b'{"outcome": "clean", "notes": 5}', "notes"),
            (b"[" * 5000 + b"]" * 5000, None),
        ):
            resp = await client.post(f"/api/commands/{cid}/result", data=raw, headers=h)
            assert resp.status == 422, (raw[:40], resp.status)
            assert (await resp.json()).get("field") == field
        ok = await client.post(
            f"/api/commands/{cid}/result", headers=h, json={"outcome": "clean", "notes": ""}
        )
        assert ok.status == 202  # empty notes (the page's default) are fine

    run(embedded, body)


# ----------------------------------------------------------------------------------------- streams
def _stream_app(embedded: Servers, **caps: int) -> Any:
    s = Settings(analyst_token=SecretStr(ANALYST), operator_token=SecretStr(OPERATOR), **caps)  # type: ignore[arg-type]
    return create_app(s, embedded.redis_url, embedded.kafka)


def _web_clients(r: redis.Redis) -> int:
    return len(r.client_list())


def test_500_streams_are_capped_and_reads_keep_answering(embedded: Servers) -> None:
    """Per role 200, in all 300: 500 attempts -> 300 open, 200 refused with 429; hits and stats still 200."""
    r = _r(embedded)

    async def main() -> None:
        app = _stream_app(embedded, web_max_streams=300, web_max_streams_per_role=200)
        async with TestServer(app) as server:
            base = f"http://{server.host}:{server.port}/"
            conn = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=conn) as session:
                before = _web_clients(r)

                async def open_one(token: str) -> Any:
                    resp = await session.get(base + "api/stream", headers=bearer(token))
                    if resp.status != 200:
                        body = await resp.json()
                        resp.release()
                        return resp.status, body
                    return resp.status, resp

                # 250 analysts at once (200 open, 50 over the role cap), then 250 operators at once (100
                # open, 150 over the global cap)
                got = await asyncio.gather(*(open_one(ANALYST) for _ in range(250)))
                got += await asyncio.gather(*(open_one(OPERATOR) for _ in range(250)))
                opened = [x for s, x in got if s == 200]
                refused = [x for s, x in got if s == 429]
                assert len(opened) == 300 and len(refused) == 200, [s for s, _ in got if s not in (200, 429)]
                assert all("BUKONG_WEB_MAX_STREAMS" in b["error"] for b in refused)
                reasons = [b["reason"] for b in refused]
                assert (reasons.count("streams_role"), reasons.count("streams_global")) == (50, 150)
                # one shared reader: open streams do not hold Redis connections
                assert _web_clients(r) - before <= 3
                for path in ("api/hits", "api/stats", "api/whoami"):
                    async with session.get(base + path, headers=bearer(ANALYST)) as resp:
                        assert resp.status == 200, path
                m = await (await session.get(base + "metrics")).text()
                assert 'bukong_web_streams_open{role="analyst"} 200.0' in m
                for resp in opened:
                    resp.close()

    asyncio.run(main())


def test_150_streams_leave_hits_and_stats_answering(embedded: Servers, uid: str) -> None:
    """Default caps: 160 streams of one role open, /api/hits and /api/stats answer 200, and a new hit reaches
    every stream through the one reader."""
    seed_command(embedded.redis_url, f"{uid}-old")

    async def main() -> None:
        async with TestServer(_stream_app(embedded)) as server:
            base = f"http://{server.host}:{server.port}/"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                streams = await asyncio.gather(
                    *(session.get(base + "api/stream", headers=bearer(ANALYST)) for _ in range(160))
                )
                assert [s.status for s in streams] == [200] * 160
                for path in ("api/hits", "api/stats"):
                    async with session.get(base + path, headers=bearer(OPERATOR)) as resp:
                        assert resp.status == 200, path
                await asyncio.sleep(0.5)  # the reader is past the tail
                cmd = await asyncio.to_thread(seed_command, embedded.redis_url, uid)
                want = cmd["command_id"].encode()

                async def read_until(resp: Any) -> bytes:
                    buf = b""
                    while want not in buf:
                        buf += await resp.content.readany()
                    return buf

                async with asyncio.timeout(20):
                    bufs = await asyncio.gather(*(read_until(s) for s in streams))
                assert all(b"event: hits" in b and b"id: " in b for b in bufs)
                for s in streams:
                    s.close()

    asyncio.run(main())


def test_head_on_the_stream_holds_no_slot(embedded: Servers) -> None:
    async def main() -> None:
        app = _stream_app(embedded, web_max_streams=1, web_max_streams_per_role=1)
        async with TestClient(TestServer(app)) as client:
            for _ in range(3):
                r = await client.head("/api/stream", headers=bearer(ANALYST))
                assert r.status == 405
            r = await client.get("/api/stream", headers=bearer(ANALYST))
            assert r.status == 200
            r.close()

    asyncio.run(main())


def test_stream_resumes_after_since(embedded: Servers, uid: str) -> None:
    r = _r(embedded)
    first = seed_command(embedded.redis_url, f"{uid}-a")
    since = r.xrevrange("bukong:hits", count=1)[0][0].decode()  # type: ignore[index]
    second = seed_command(embedded.redis_url, f"{uid}-b")

    async def body(client: TestClient) -> None:
        bad = await client.get("/api/stream?since=%00%ff", headers=bearer(ANALYST))
        assert bad.status == 422
        resp = await client.get(f"/api/stream?since={since}", headers=bearer(ANALYST))
        buf = b""
        async with asyncio.timeout(10):
            while second["command_id"].encode() not in buf:
                buf += await resp.content.readany()
        assert first["command_id"].encode() not in buf
        resp.close()

    run(embedded, body)
