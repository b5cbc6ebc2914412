"""The live view and the command API (aiohttp).

    GET  /                          the live hit stream page (login with a token)
    POST /api/login                 {"token": ...} -> HttpOnly session cookie (for EventSource)
    GET  /api/hits?port=&lane=&severity=&rule=&limit=   newest first, from the bounded Redis stream
    GET  /api/commands/{id}         one command with its status and the vehicle's recent track
    GET  /api/stream                server-sent events: batches of new hits (every ~100 ms)
    GET  /api/stats                 totals, per-rule and per-site hit rates, versions, drift events
    GET  /api/rules                 the live pack's rules (id, title, lane, severity, status, scope)
    POST /api/commands/{id}/ack     operators: acknowledge
    POST /api/commands/{id}/result  operators: {outcome, found_value_cny, notes} -> inspection-results
    GET  /metrics                   Prometheus exposition of this process

Tokens come from settings (BUKONG_ANALYST_TOKEN / BUKONG_OPERATOR_TOKEN); analysts read, operators also act.
No token -> 401, wrong role -> 403. Tokens are compared in constant time and never logged or rendered.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pipeline import contracts as c
from pipeline.commands import (
    DRIFT_STREAM_KEY,
    LIVE_STREAM_KEY,
    META_KEY,
    RULE_STATS_KEY,
    STATS_KEY,
    STATUS_PREFIX,
)
from pipeline.settings import Settings

log = logging.getLogger("bukong.web")
STATIC = Path(__file__).parent / "static"
ROLE_KEY = web.RequestKey("role", str)  # set by the auth middleware
COOKIE = "bukong_session"
RESULT_OUTCOMES = ("violation", "clean", "not_found")
RULES_KEY = "bukong:rules"  # HASH rule id -> JSON of the live pack's rule
RULE_FIELDS = ("id", "title", "lane", "severity", "status", "scope")


class Auth:
    def __init__(self, analyst: str, operator: str) -> None:
        self.tokens = {"analyst": analyst, "operator": operator}
        self.key = secrets.token_bytes(32)

    def role_of_token(self, token: str) -> str | None:
        for role in ("operator", "analyst"):
            want = self.tokens[role]
            if want and hmac.compare_digest(token.encode(), want.encode()):
                return role
        return None

    def cookie_for(self, role: str) -> str:
        sig = hmac.new(self.key, role.encode(), hashlib.sha256).hexdigest()
        return f"{role}.{sig}"

    def role_of_cookie(self, value: str) -> str | None:
        role, _, sig = value.partition(".")
        want = hmac.new(self.key, role.encode(), hashlib.sha256).hexdigest()
        return role if role in self.tokens and hmac.compare_digest(sig, want) else None

    def role(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return self.role_of_token(header[7:].strip())
        cookie = request.cookies.get(COOKIE)
        return self.role_of_cookie(cookie) if cookie else None


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"error": message, **extra}, status=status, dumps=lambda o: orjson.dumps(o).decode()
    )


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


PUBLIC = {"/", "/api/login", "/static/app.js", "/static/app.css", "/healthz"}


def create_app(
    settings: Settings, redis_url: str, kafka_bootstrap: str, registry: CollectorRegistry | None = None
) -> web.Application:
    auth = Auth(settings.analyst_token.get(), settings.operator_token.get())
    registry = registry or CollectorRegistry()
    state: dict[str, Any] = {}

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in PUBLIC or request.path == "/metrics":
            return await handler(request)
        role = auth.role(request)
        if role is None:
            return _error(401, "a token is required: Authorization: Bearer <token>, or log in on the page")
        request[ROLE_KEY] = role
        return await handler(request)

    def need_operator(request: web.Request) -> web.Response | None:
        if request[ROLE_KEY] != "operator":
            return _error(403, "operators only: analysts can read but not acknowledge or report")
        return None

    async def on_startup(app: web.Application) -> None:
        state["redis"] = aioredis.from_url(redis_url)
        state["producer"] = None

    async def producer() -> Any:
        if state["producer"] is None:
            import aiokafka

            p = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=1)
            await p.start()
            state["producer"] = p
        return state["producer"]

    async def on_cleanup(app: web.Application) -> None:
        if state.get("producer") is not None:
            await state["producer"].stop()
        await state["redis"].aclose()

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def login(request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
            token = str(body["token"])
        except Exception:
            return _error(422, 'send JSON {"token": "..."}', field="token")
        role = auth.role_of_token(token)
        if role is None:
            return _error(401, "unknown token")
        resp = _json({"role": role})
        resp.set_cookie(COOKIE, auth.cookie_for(role), httponly=True, samesite="Strict", max_age=12 * 3600)
        return resp

    async def whoami(request: web.Request) -> web.Response:
        return _json({"role": request[ROLE_KEY]})

    def _matches(cmd: dict[str, Any], q: Any) -> bool:
        return (
            (not q.get("port") or cmd["port"] == q["port"])
            and (not q.get("lane") or cmd["lane"] == q["lane"])
            and (not q.get("severity") or cmd["severity"] == q["severity"])
            and (not q.get("rule") or q["rule"] in cmd["rule_ids"])
        )

    async def hits(request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = min(500, max(1, int(q.get("limit", "100"))))
        except ValueError:
            return _error(422, "limit must be an integer 1..500", field="limit")
        entries = await state["redis"].xrevrange(LIVE_STREAM_KEY, count=2000)
        out = []
        for entry_id, fields in entries:
            cmd = orjson.loads(fields[b"c"])
            if _matches(cmd, q):
                cmd.pop("facts", None)
                cmd["stream_id"] = entry_id.decode()
                out.append(cmd)
                if len(out) >= limit:
                    break
        return _json({"hits": out})

    async def command(request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        r = state["redis"]
        st = await r.hgetall(STATUS_PREFIX + cid)
        if not st:
            return _error(404, f"no command {cid} (unknown, or older than the retention)")
        cmd = orjson.loads(st[b"command"])
        track = orjson.loads(st.get(b"track") or b"[]")
        status = {k.decode(): v.decode() for k, v in st.items() if k not in (b"command", b"track")}
        return _json({"command": cmd, "status": status, "track": track})

    async def _set_status(cid: str) -> dict[str, Any] | web.Response:
        st = await state["redis"].hgetall(STATUS_PREFIX + cid)
        if not st:
            return _error(404, f"no command {cid}")
        return {k.decode(): v for k, v in st.items()}

    async def ack(request: web.Request) -> web.Response:
        if (denied := need_operator(request)) is not None:
            return denied
        cid = request.match_info["id"]
        st = await _set_status(cid)
        if isinstance(st, web.Response):
            return st
        if st.get("status", b"").decode() == "sent":
            await state["redis"].hset(
                STATUS_PREFIX + cid, mapping={"status": "acknowledged", "ack_ms": int(time.time() * 1000)}
            )
        return _json({"command_id": cid, "status": "acknowledged"})

    async def result(request: web.Request) -> web.Response:
        if (denied := need_operator(request)) is not None:
            return denied
        cid = request.match_info["id"]
        st = await _set_status(cid)
        if isinstance(st, web.Response):
            return st
        if st.get("status", b"").decode() == "result" or st.get("result_sent"):
            return _error(409, f"a result for {cid} was already reported")
        try:
            body = await request.json(loads=orjson.loads)
        except Exception:
            return _error(422, "the body must be a JSON object")
        if not isinstance(body, dict):
            return _error(422, "the body must be a JSON object")
        outcome = body.get("outcome")
        if outcome not in RESULT_OUTCOMES:
            return _error(422, f"outcome must be one of {list(RESULT_OUTCOMES)}", field="outcome")
        found = body.get("found_value_cny", 0.0)
        if not isinstance(found, int | float) or isinstance(found, bool) or found < 0:
            return _error(422, "found_value_cny must be a number >= 0", field="found_value_cny")
        notes = body.get("notes", "")
        if not isinstance(notes, str) or len(notes) > 2000:
            return _error(422, "notes must be a string of at most 2000 characters", field="notes")
        cmd = orjson.loads(st["command"])
        ev = {
            "command_id": cid,
            "decl_id": cmd["decl_id"],
            "ts_ms": int(time.time() * 1000),
            "outcome": outcome,
            "found_value_cny": float(found),
            "site": cmd["site"],
            "notes": notes,
            "source": "api",
        }
        c.validate("inspection_result", ev)
        if not await state["redis"].hsetnx(STATUS_PREFIX + cid, "result_sent", 1):
            return _error(409, f"a result for {cid} was already reported")
        p = await producer()
        await p.send_and_wait(c.INSPECTION_RESULTS, orjson.dumps(ev), key=cmd["conveyance_id"].encode())
        return _json({"command_id": cid, "status": "result_sent", "result": ev}, status=202)

    async def stats(request: web.Request) -> web.Response:
        r = state["redis"]
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(STATS_KEY)
        pipe.hgetall(RULE_STATS_KEY)
        pipe.hgetall(META_KEY)
        pipe.xrevrange(DRIFT_STREAM_KEY, count=20)
        totals, rules, meta, drift = await pipe.execute()
        per_rule: dict[str, dict[str, Any]] = {}
        per_site: dict[str, dict[str, Any]] = {}
        for k, v in rules.items():
            rule, port, metric = k.decode().split("|")
            for bucket, name in ((per_rule, rule), (per_site, port)):
                d = bucket.setdefault(name, {})
                d[metric] = d.get(metric, 0) + int(v)
        for d in list(per_rule.values()) + list(per_site.values()):
            d["hit_rate"] = round(d.get("confirmed", 0) / d["results"], 3) if d.get("results") else None
        return _json(
            {
                "totals": {k.decode(): int(v) for k, v in totals.items()},
                "rules": per_rule,
                "sites": per_site,
                "meta": {k.decode(): v.decode() for k, v in meta.items()},
                "drift": [orjson.loads(f[b"d"]) for _, f in drift],
            }
        )

    async def rules(request: web.Request) -> web.Response:
        """The live pack's rules for the page's labels and filter: Redis first, else the start-up pack."""
        raw = await state["redis"].hgetall(RULES_KEY)
        if raw:
            live: list[dict[str, Any]] = []
            unreadable: list[str] = []
            for k, v in raw.items():
                rid = k.decode()
                try:
                    d = orjson.loads(v)
                    if not isinstance(d, dict):
                        raise ValueError("not a JSON object")
                except ValueError:
                    log.warning("rule %s in %s is not a JSON object; skipped", rid, RULES_KEY)
                    unreadable.append(rid)
                    continue
                defaults = {"id": rid, "title": rid, "status": "active", "scope": "global"}
                live.append({f: d.get(f, defaults.get(f, "")) for f in RULE_FIELDS})
            live.sort(key=lambda r: str(r["id"]))
            return _json({"source": "redis", "rules": live, "unreadable": sorted(unreadable)})
        if "pack_rules" not in state:
            from rules.pack import PackError, load_pack

            try:
                pack = await asyncio.to_thread(load_pack, settings.rule_pack)
            except PackError as exc:
                return _error(
                    500,
                    f"the start-up pack {settings.rule_pack} does not load ({exc}); "
                    "fix it (python -m pipeline rules check) or set BUKONG_RULE_PACK",
                )
            state["pack_rules"] = [{f: getattr(r, f) for f in RULE_FIELDS} for r in pack.rules]
        return _json({"source": "pack", "rules": state["pack_rules"], "unreadable": []})

    async def stream(request: web.Request) -> web.StreamResponse:
        """Server-sent events: new hits in batches, at most every 100 ms, so the page keeps up at 100+/s."""
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        r = state["redis"]
        last = request.query.get("since") or "$"
        try:
            while True:
                got = await r.xread({LIVE_STREAM_KEY: last}, count=500, block=1000)
                batch = []
                for _, entries in got:
                    for entry_id, fields in entries:
                        last = entry_id.decode()
                        cmd = orjson.loads(fields[b"c"])
                        cmd.pop("facts", None)
                        cmd["stream_id"] = last
                        batch.append(cmd)
                if batch:
                    await resp.write(b"event: hits\ndata: " + orjson.dumps(batch) + b"\n\n")
                else:
                    await resp.write(b": keep-alive\n\n")
                await asyncio.sleep(0.1)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    async def geo(request: web.Request) -> web.Response:
        from pipeline import sites

        return _json(
            {
                "border": sites.BORDER,
                "ports": [
                    {"code": p.code, "name": p.name, "lat": p.lat, "lon": p.lon} for p in sites.PORTS.values()
                ],
                "corridors": sites.CORRIDORS,
                "squads": [{"id": q.id, "lat": q.lat, "lon": q.lon} for q in sites.MOBILE_SQUADS],
            }
        )

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return _json({"ok": True})

    app = web.Application(middlewares=[guard])
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/", index)
    app.router.add_static("/static", STATIC)
    app.router.add_post("/api/login", login)
    app.router.add_get("/api/whoami", whoami)
    app.router.add_get("/api/hits", hits)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/rules", rules)
    app.router.add_get("/api/stream", stream)
    app.router.add_get("/api/commands/{id}", command)
    app.router.add_post("/api/commands/{id}/ack", ack)
    app.router.add_post("/api/commands/{id}/result", result)
    app.router.add_get("/api/geo", geo)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


def ensure_tokens(settings: Settings) -> Settings:
    """Random tokens when none are configured (demo): printed once to the terminal, never logged."""
    from pipeline.settings import Secret

    changes = {}
    if not settings.analyst_token.get():
        changes["analyst_token"] = Secret(secrets.token_urlsafe(16))
    if not settings.operator_token.get():
        changes["operator_token"] = Secret(secrets.token_urlsafe(16))
    return settings.with_(**changes) if changes else settings


def run_web_in_thread(settings: Settings, redis_url: str, kafka: str) -> Callable[[], None]:
    """Serve in a background thread with its own loop; returns a stop function."""
    loop = asyncio.new_event_loop()
    app = create_app(settings, redis_url, kafka)
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, settings.web_host, settings.web_port)
        loop.run_until_complete(site.start())
        started.set()
        loop.run_forever()

    threading.Thread(target=serve, name="web", daemon=True).start()
    started.wait(10)

    def stop() -> None:
        async def _stop() -> None:
            await runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(_stop(), loop)
        try:
            fut.result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)

    return stop
