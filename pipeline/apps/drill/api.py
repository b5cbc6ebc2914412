"""The API attack corpus, against the live view and command API served on the drill's stack.

Each attack is a request with the statuses a safe server may answer; anything else is a finding, and any 5xx
is counted in ``api_5xx``. Positive controls (an analyst reading, an operator acting) make sure the server is
really answering, not refusing everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

EVIL = "http://evil.example"


@dataclass
class Attack:
    name: str
    method: str
    path: str
    allowed: tuple[int, ...]
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    must_not_contain: bytes | None = None


@dataclass
class ApiReport:
    attacks: int = 0
    api_5xx: int = 0
    unexpected: list[str] = field(default_factory=list)
    streams_opened: int = 0
    streams_refused: int = 0
    streams_5xx: int = 0
    streams_failed: int = 0
    healthy_under_streams: bool = False
    outcomes: dict[str, int] = field(default_factory=dict)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


GOOD_RESULT = orjson.dumps({"outcome": "clean", "found_value_cny": 0, "notes": "drill"})


def _access_attacks(analyst: str, operator: str, cid: str) -> list[Attack]:
    """Positive controls, no token, a wrong token, the wrong role."""
    bearer_a = _bearer(analyst)
    return [
        # positive controls
        Attack("control: analyst reads hits", "GET", "/api/hits", (200,), bearer_a),
        Attack("control: health", "GET", "/healthz", (200,)),
        # no token
        Attack("no token: hits", "GET", "/api/hits", (401,)),
        Attack("no token: command", "GET", f"/api/commands/{cid}", (401,)),
        Attack("no token: ack", "POST", f"/api/commands/{cid}/ack", (401,)),
        Attack("no token: result", "POST", f"/api/commands/{cid}/result", (401,), body=GOOD_RESULT),
        Attack("no token: stream", "GET", "/api/stream", (401,)),
        Attack(
            "wrong token", "GET", "/api/hits", (401,), {"Authorization": "Bearer " + secrets.token_hex(16)}
        ),
        Attack("empty bearer", "GET", "/api/hits", (401,), {"Authorization": "Bearer "}),
        Attack("basic auth", "GET", "/api/hits", (401,), {"Authorization": "Basic YWRtaW46YWRtaW4="}),
        Attack("token in query", "GET", f"/api/hits?token={operator}", (401,)),
        # wrong role
        Attack("analyst acks", "POST", f"/api/commands/{cid}/ack", (403,), bearer_a),
        Attack("analyst reports", "POST", f"/api/commands/{cid}/result", (403,), bearer_a, GOOD_RESULT),
    ]


def _cookie_attacks(cookie_op: str, cid: str) -> list[Attack]:
    """Forged session cookies, and cross-origin writes with a valid one."""
    return [
        # forged cookies
        Attack("forged cookie", "GET", "/api/hits", (401,), {"Cookie": "bukong_session=operator.deadbeef"}),
        Attack("cookie without sig", "GET", "/api/hits", (401,), {"Cookie": "bukong_session=operator."}),
        Attack(
            "cookie other role", "GET", "/api/hits", (401,), {"Cookie": "bukong_session=admin." + "0" * 64}
        ),
        Attack("cookie garbage", "GET", "/api/hits", (401,), {"Cookie": "bukong_session=op.%00%ff;;;=="}),
        Attack(
            "analyst cookie signature on operator",
            "POST",
            f"/api/commands/{cid}/ack",
            (401, 403),
            {"Cookie": "bukong_session=operator." + cookie_op.partition(".")[2][::-1]},
        ),
        # cross-origin writes with a valid session cookie (what a hostile page in the browser would send)
        Attack(
            "cross-origin ack",
            "POST",
            f"/api/commands/{cid}/ack",
            (403,),
            {"Cookie": f"bukong_session={cookie_op}", "Origin": EVIL},
        ),
        Attack(
            "cross-origin result, text/plain",
            "POST",
            f"/api/commands/{cid}/result",
            (403,),
            {"Cookie": f"bukong_session={cookie_op}", "Origin": EVIL, "Content-Type": "text/plain"},
            GOOD_RESULT,
        ),
        Attack(
            "cross-origin login",
            "POST",
            "/api/login",
            (400, 403, 401),
            {"Origin": EVIL, "Content-Type": "text/plain"},
            orjson.dumps({"token": "guess"}),
        ),
    ]


def _size_and_path_attacks(analyst: str, operator: str, cid: str) -> list[Attack]:
    """10 MB bodies and path traversal."""
    bearer_a, bearer_o = _bearer(analyst), _bearer(operator)
    big = b'{"outcome": "clean", "notes": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    return [
        # 10 MB bodies
        Attack("10 MB result", "POST", f"/api/commands/{cid}/result", (413,), bearer_o, big),
        Attack("10 MB login", "POST", "/api/login", (413,), {}, big),
        Attack("10 MB ack", "POST", f"/api/commands/{cid}/ack", (200, 413), bearer_o, big),
        # traversal
        Attack(
            "static ../", "GET", "/static/../../../../etc/passwd", (400, 403, 404), must_not_contain=b"root:"
        ),
        Attack(
            "static %2e%2e",
            "GET",
            "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            (400, 403, 404),
            must_not_contain=b"root:",
        ),
        Attack(
            "static ..%2f",
            "GET",
            "/static/..%2f..%2f..%2fpyproject.toml",
            (400, 403, 404),
            must_not_contain=b"[project]",
        ),
        Attack(
            "static encoded source",
            "GET",
            "/static/..%2fserver.py",
            (400, 403, 404),
            must_not_contain=b"import",
        ),
        Attack(
            "command id traversal",
            "GET",
            "/api/commands/..%2f..%2fetc%2fpasswd",
            (400, 403, 404),
            bearer_a,
            must_not_contain=b"root:",
        ),
        Attack("command id glob", "GET", "/api/commands/*", (400, 404), bearer_a),
    ]


def _malformed_attacks(analyst: str, operator: str, cid: str) -> list[Attack]:
    """Unknown ids, malformed bodies and queries, then the operator control."""
    bearer_a, bearer_o = _bearer(analyst), _bearer(operator)
    unknown = "cmd-" + secrets.token_hex(10)
    return [
        # unknown ids
        Attack(
            "result for unknown id", "POST", f"/api/commands/{unknown}/result", (404,), bearer_o, GOOD_RESULT
        ),
        Attack("ack unknown id", "POST", f"/api/commands/{unknown}/ack", (404,), bearer_o),
        Attack("read unknown id", "GET", f"/api/commands/{unknown}", (404,), bearer_a),
        Attack("very long id", "GET", "/api/commands/" + "x" * 8000, (400, 404, 414, 431), bearer_a),
        # malformed bodies and queries
        Attack("result not JSON", "POST", f"/api/commands/{cid}/result", (409, 422, 400), bearer_o, b"\xff{"),
        Attack("result a list", "POST", f"/api/commands/{cid}/result", (409, 422, 400), bearer_o, b"[1]"),
        Attack(
            "result bad outcome",
            "POST",
            f"/api/commands/{cid}/result",
            (409, 422, 400),
            bearer_o,
            orjson.dumps({"outcome": "pwned"}),
        ),
        Attack(
            "result NaN value",
            "POST",
            f"/api/commands/{cid}/result",
            (409, 422, 400),
            bearer_o,
            b'{"outcome": "clean", "found_value_cny": NaN}',
        ),
        Attack(
            "result deep JSON",
            "POST",
            f"/api/commands/{cid}/result",
            (409, 422, 400, 413),
            bearer_o,
            b"[" * 100_000 + b"]" * 100_000,
        ),
        Attack("login not JSON", "POST", "/api/login", (400, 422), {}, b"\x00\x01"),
        Attack("login token not a string", "POST", "/api/login", (400, 401, 422), {}, b'{"token": {"a": 1}}'),
        Attack("hits limit not a number", "GET", "/api/hits?limit=abc", (400, 422), bearer_a),
        Attack("hits limit huge", "GET", "/api/hits?limit=99999999999999999999", (200, 400, 422), bearer_a),
        Attack("stream since garbage", "GET", "/api/stream?since=%00%ff", (200, 400, 422), bearer_a),
        Attack("unknown method", "DELETE", f"/api/commands/{cid}", (401, 403, 404, 405), bearer_o),
        # control: an operator acts on a real command (accepted, or already reported)
        Attack("control: operator acks", "POST", f"/api/commands/{cid}/ack", (200,), bearer_o),
        Attack(
            "control: operator reports",
            "POST",
            f"/api/commands/{cid}/result",
            (202, 409),
            bearer_o,
            GOOD_RESULT,
        ),
    ]


def attacks(analyst: str, operator: str, cookie_op: str, cid: str) -> list[Attack]:
    return [
        *_access_attacks(analyst, operator, cid),
        *_cookie_attacks(cookie_op, cid),
        *_size_and_path_attacks(analyst, operator, cid),
        *_malformed_attacks(analyst, operator, cid),
    ]


async def _one(session: Any, base: str, a: Attack) -> tuple[int, bytes]:
    import aiohttp
    from yarl import URL

    url = URL(base + a.path, encoded=True)
    timeout = aiohttp.ClientTimeout(total=20, sock_read=3 if a.path.startswith("/api/stream") else 20)
    async with session.request(a.method, url, headers=a.headers, data=a.body, timeout=timeout) as resp:
        try:
            body = await resp.content.read(65536)
        except TimeoutError:
            body = b""
        return resp.status, body


async def _streams(base: str, analyst: str, n: int, report: ApiReport) -> None:
    """Open n live streams at once, check the server still answers, then close them."""
    import aiohttp

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        headers = {"Authorization": f"Bearer {analyst}"}
        opened: list[Any] = []

        async def open_one() -> None:
            try:
                resp = await session.get(
                    base + "/api/stream", headers=headers, timeout=aiohttp.ClientTimeout(total=30)
                )
            except Exception:
                report.streams_failed += 1
                return
            if resp.status == 200:
                report.streams_opened += 1
                opened.append(resp)
            else:
                if resp.status >= 500:
                    report.streams_5xx += 1
                else:
                    report.streams_refused += 1
                resp.release()

        await asyncio.gather(*(open_one() for _ in range(n)))
        try:
            async with (
                aiohttp.ClientSession() as other,
                other.get(base + "/healthz", timeout=aiohttp.ClientTimeout(total=10)) as resp,
            ):
                report.healthy_under_streams = resp.status == 200
        except Exception:
            report.healthy_under_streams = False
        for resp in opened:
            resp.close()


async def run_attacks(base: str, analyst: str, operator: str, cid: str, streams: int) -> ApiReport:
    import aiohttp

    report = ApiReport()
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/api/login", data=orjson.dumps({"token": operator})) as resp:
            cookie = resp.cookies.get("bukong_session")
            cookie_op = cookie.value if cookie is not None else ""
        for a in attacks(analyst, operator, cookie_op, cid):
            report.attacks += 1
            try:
                status, body = await _one(session, base, a)
            except Exception as exc:
                report.unexpected.append(f"{a.name}: {type(exc).__name__} {exc}")
                continue
            report.outcomes[f"{a.name} -> {status}"] = status
            if status >= 500:
                report.api_5xx += 1
            if status not in a.allowed:
                report.unexpected.append(f"{a.name}: got {status}, want {'/'.join(map(str, a.allowed))}")
            elif a.must_not_contain and a.must_not_contain in body:
                report.unexpected.append(f"{a.name}: the response leaks file contents")
    await _streams(base, analyst, streams, report)
    report.api_5xx += report.streams_5xx
    return report


def api_drill(kafka: str, redis_url: str, cid: str, streams: int) -> ApiReport:
    """Serve the web app on a free port (its own thread and loop), attack it, stop it."""
    from pydantic import SecretStr

    from pipeline.apps.web.server import run_web_in_thread
    from pipeline.contracts.settings import Settings
    from pipeline.io.embedded import free_port

    analyst, operator = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    port = free_port()
    settings = Settings.from_env().with_(
        web_port=port,
        web_host="127.0.0.1",
        analyst_token=SecretStr(analyst),
        operator_token=SecretStr(operator),
    )
    stop = run_web_in_thread(settings, redis_url, kafka)
    try:
        return asyncio.run(run_attacks(f"http://127.0.0.1:{port}", analyst, operator, cid, streams))
    finally:
        with contextlib.suppress(Exception):
            stop()
