"""The live view and the command API (aiohttp). docs/api.md documents every route; GET /api/openapi.json
serves the OpenAPI 3 document (pipeline/apps/web/openapi.py).

    GET  /                          the live hit stream page (login with a token)
    POST /api/login                 {"token": ...} -> HttpOnly session cookie (for EventSource)
    GET  /api/whoami                the caller's role
    GET  /api/hits?port=&lane=&severity=&rule=&limit=   newest first, from the bounded Redis stream
    GET  /api/commands/{id}         one command with its status and the vehicle's recent track
    GET  /api/stream                server-sent events: batches of new hits (every ~100 ms)
    GET  /api/stats                 totals, per-rule and per-site hit rates, versions, drift events
    GET  /api/geo                   border, ports, corridors, squads for the map
    GET  /api/rules                 the live pack's rules (id, title, lane, severity, status, scope)
    POST /api/commands/{id}/ack     operators: acknowledge
    POST /api/commands/{id}/result  operators: {outcome, found_value_cny, notes} -> inspection-results
    GET  /api/openapi.json          this API as OpenAPI 3
    GET  /metrics, /healthz         Prometheus exposition of this process, liveness

Tokens come from settings (BUKONG_ANALYST_TOKEN / BUKONG_OPERATOR_TOKEN); analysts read, operators also act.
No token -> 401, wrong role -> 403, a cookie-authenticated change from another origin -> 403, a body over
BUKONG_WEB_MAX_BODY_BYTES -> 413, too many live streams -> 429. Live streams share one Redis reader
(pipeline/apps/web/live.py), so open streams never take the connections /api/hits and /api/stats need.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import SecretStr

from pipeline.apps.web.auth import COOKIE, COOKIE_MAX_AGE_S, SAFE_METHODS, Auth, allowed_origins, cross_origin
from pipeline.apps.web.live import STREAM_ID, LiveHub, StreamLimit, Subscriber, hit_entries, make_batch
from pipeline.apps.web.openapi import openapi_document
from pipeline.apps.web.store import ALREADY, UNKNOWN, CommandStore
from pipeline.contracts import events as c
from pipeline.contracts.commands import (
    DRIFT_STREAM_KEY,
    LIVE_STREAM_KEY,
    META_KEY,
    RULE_STATS_KEY,
    RULES_KEY,
    STATS_KEY,
)
from pipeline.contracts.settings import Settings
from pipeline.io.metrics import WebMetrics
from rules.stats import tally

log = logging.getLogger("bukong.web")
STATIC = Path(__file__).parent / "static"
ROLE_KEY = web.RequestKey("role", str)  # set by the auth middleware
RESULT_OUTCOMES = ("violation", "clean", "not_found")
RULE_FIELDS = ("id", "title", "lane", "severity", "status", "scope")
COMMAND_ID = re.compile(r"cmd-[0-9a-f]{20}")
STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
PUBLIC = {"/", "/api/login", "/api/openapi.json", "/healthz", "/metrics"}
KEEPALIVE_S = 5.0  # an idle stream gets a comment line this often (and a dead client is noticed)
WRITE_TIMEOUT_S = 10.0  # a client that takes longer to accept one frame is dropped
CATCH_UP = 2000  # at most this many hits replayed to a stream that resumes (since / Last-Event-ID)
REDIS_WAIT_S = 5.0  # a request waits this long for a free Redis connection before 503
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps({"error": message, **extra}),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def _now_ms() -> int:
    return int(time.time() * 1000)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    settings: Settings, redis_url: str, kafka_bootstrap: str, registry: CollectorRegistry | None = None
) -> web.Application:
    auth = Auth(settings.analyst_token.get_secret_value(), settings.operator_token.get_secret_value())
    registry = registry or CollectorRegistry()
    metrics = WebMetrics.create(registry)
    origins = allowed_origins(settings.web_origins)
    max_body = settings.web_max_body_bytes
    state: dict[str, Any] = {}

    def refused(reason: str, status: int, message: str, **extra: Any) -> web.Response:
        metrics.requests_refused.labels(reason).inc()
        return _error(status, message, reason=reason, **extra)

    # ------------------------------------------------------------------------------------ middlewares
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        """JSON errors everywhere under /api; Redis trouble -> 503 (retry), never a bare 500."""
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            text = exc.text or exc.reason
            if exc.status == 413:
                text = f"the body is larger than {max_body} bytes (BUKONG_WEB_MAX_BODY_BYTES): send less"
            headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
            resp = _error(exc.status, text.removeprefix(f"{exc.status}: "), headers=headers)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("Redis unavailable for %s %s: %s", request.method, request.path, exc)
            resp = _error(
                503, "Redis is unavailable or busy: retry in a few seconds", headers={"Retry-After": "5"}
            )
        if not resp.prepared:
            resp.headers.update(SECURITY_HEADERS)
        return resp

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_body:
            return refused(
                "body_too_large",
                413,
                f"the body is {request.content_length} bytes, the limit is {max_body} "
                "(BUKONG_WEB_MAX_BODY_BYTES): send less",
            )
        unsafe = request.method not in SAFE_METHODS
        if request.path in PUBLIC or request.path.startswith("/static/"):
            # login: a page on another origin must not log the browser in (header present and foreign)
            if unsafe and (request.headers.get("Origin") or request.headers.get("Sec-Fetch-Site")):
                why = cross_origin(request, origins)
                if why is not None:
                    return refused("cross_origin", 403, f"cross-origin login refused ({why})")
            return await handler(request)
        role, how = auth.role(request)
        if role is None:
            return refused(
                "unauthenticated",
                401,
                "a token is required: Authorization: Bearer <token>, or log in on the page",
                headers={"WWW-Authenticate": 'Bearer realm="bukong"'},
            )
        if unsafe and how == "cookie":
            why = cross_origin(request, origins)
            if why is not None:
                return refused(
                    "cross_origin",
                    403,
                    f"a change with the session cookie must come from this server's page ({why}); "
                    "API clients send Authorization: Bearer <token>",
                )
        request[ROLE_KEY] = role
        return await handler(request)

    def need_operator(request: web.Request) -> web.Response | None:
        if request[ROLE_KEY] != "operator":
            return refused(
                "forbidden", 403, "operators only: analysts can read but not acknowledge or report"
            )
        return None

    # ------------------------------------------------------------------------------------- lifecycle
    async def on_startup(app: web.Application) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=settings.web_redis_pool, timeout=REDIS_WAIT_S
        )
        state["redis"] = aioredis.Redis.from_pool(pool)
        state["store"] = CommandStore(state["redis"], settings.dedupe_ttl_s)
        state["hub"] = LiveHub(
            aioredis.Redis.from_url(redis_url),
            max_streams=settings.web_max_streams,
            max_per_role=settings.web_max_streams_per_role,
            metrics=metrics,
        )
        state["producer"] = None
        state["producer_lock"] = asyncio.Lock()

    async def producer() -> Any:
        async with state["producer_lock"]:
            if state["producer"] is None:
                import aiokafka

                p = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=1)
                await p.start()
                state["producer"] = p
        return state["producer"]

    async def on_shutdown(app: web.Application) -> None:
        for sub in list(state["hub"].subscribers):
            if sub.task is not None:
                sub.task.cancel()

    async def on_cleanup(app: web.Application) -> None:
        if state.get("producer") is not None:
            await state["producer"].stop()
        await state["hub"].stop()
        await state["redis"].aclose()

    # ----------------------------------------------------------------------------------------- pages
    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def static_file(request: web.Request) -> web.StreamResponse:
        """Only plain files directly in static/: no subfolders, no dot files, nothing outside."""
        name = request.match_info["name"]
        path = STATIC / name
        if not STATIC_NAME.fullmatch(name) or not path.is_file() or path.resolve().parent != STATIC.resolve():
            return _error(404, f"no static file {name[:80]!r}")
        return web.FileResponse(path)

    async def openapi(request: web.Request) -> web.Response:
        return _json(openapi_document())

    async def login(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            token = body["token"]
            if not isinstance(token, str):
                raise TypeError
        except web.HTTPException:
            raise
        except Exception:
            return _error(422, 'send JSON {"token": "..."}', field="token")
        role = auth.role_of_token(token)
        if role is None:
            return refused("unauthenticated", 401, "unknown token: ask for the analyst or operator token")
        resp = _json({"role": role})
        resp.set_cookie(
            COOKIE,
            auth.cookie_for(role),
            httponly=True,
            samesite="Strict",
            max_age=COOKIE_MAX_AGE_S,
            path="/",
        )
        return resp

    async def whoami(request: web.Request) -> web.Response:
        return _json({"role": request[ROLE_KEY]})

    # ------------------------------------------------------------------------------------------ reads
    def _matches(cmd: dict[str, Any], q: Any) -> bool:
        return (
            (not q.get("port") or cmd.get("port") == q["port"])
            and (not q.get("lane") or cmd.get("lane") == q["lane"])
            and (not q.get("severity") or cmd.get("severity") == q["severity"])
            and (not q.get("rule") or q["rule"] in (cmd.get("rule_ids") or ()))
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
            try:
                cmd = orjson.loads(fields[b"c"])
                if not isinstance(cmd, dict) or not _matches(cmd, q):
                    continue
            except (KeyError, TypeError, orjson.JSONDecodeError):
                continue
            cmd.pop("facts", None)
            cmd["stream_id"] = entry_id.decode()
            out.append(cmd)
            if len(out) >= limit:
                break
        return _json({"hits": out})

    def _command_id(request: web.Request) -> str | web.Response:
        cid = request.match_info["id"]
        if not COMMAND_ID.fullmatch(cid):
            return _error(404, f"no command {cid[:80]!r}: command ids look like cmd-<20 hex digits>")
        return cid

    async def command(request: web.Request) -> web.Response:
        cid = _command_id(request)
        if isinstance(cid, web.Response):
            return cid
        st = await state["store"].get(cid)
        if st is None:
            return _error(404, f"no command {cid} (unknown, or older than the retention)")
        cmd = orjson.loads(st[b"command"])
        try:
            track = orjson.loads(st.get(b"track") or b"[]")
        except orjson.JSONDecodeError:
            track = []
        status = {
            k.decode(): v.decode(errors="replace") for k, v in st.items() if k not in (b"command", b"track")
        }
        return _json({"command": cmd, "status": status, "track": track})

    async def stats(request: web.Request) -> web.Response:
        r = state["redis"]
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(STATS_KEY)
        pipe.hgetall(RULE_STATS_KEY)
        pipe.hgetall(META_KEY)
        pipe.xrevrange(DRIFT_STREAM_KEY, count=20)
        totals, rules, meta, drift = await pipe.execute()
        per_rule, per_site = tally(rules)
        drift_events = []
        for _, f in drift:
            try:
                drift_events.append(orjson.loads(f[b"d"]))
            except (KeyError, orjson.JSONDecodeError):
                continue
        return _json(
            {
                "totals": {k.decode(): int(v) for k, v in totals.items() if v.lstrip(b"-").isdigit()},
                "rules": per_rule,
                "sites": per_site,
                "meta": {k.decode(): v.decode(errors="replace") for k, v in meta.items()},
                "drift": drift_events,
            }
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        """Server-sent events: new hits in batches, at most every 100 ms, from the shared reader."""
        given = [
            v for v in (request.headers.get("Last-Event-ID"), request.query.get("since")) if v is not None
        ]
        since = given[-1] if given else None  # the query wins over the header EventSource resends
        if any(not STREAM_ID.fullmatch(v) for v in given):
            return _error(
                422, "since must be a stream id like 1795420800000-0 (a hit's stream_id)", field="since"
            )
        hub: LiveHub = state["hub"]
        try:
            sub = hub.open(request[ROLE_KEY])
        except StreamLimit as exc:
            return refused(f"streams_{exc.cap}", 429, str(exc), headers={"Retry-After": "10"})
        sub.task = asyncio.current_task()
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **SECURITY_HEADERS,
            }
        )
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 3000\n\n")
            last = ""
            if since:  # resume: replay what was missed (bounded), then the shared batches newer than it
                raw = await state["redis"].xrange(LIVE_STREAM_KEY, min="(" + since, max="+", count=CATCH_UP)
                entries = hit_entries(raw)
                last = since
                if entries:
                    batch = make_batch(entries)
                    last = batch.last
                    await asyncio.wait_for(resp.write(batch.frame), WRITE_TIMEOUT_S)
            while True:
                try:
                    got = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    got = None
                if sub.dropped:
                    await _write_dropped(resp, sub)
                    break
                if got is None:
                    await asyncio.wait_for(resp.write(b": keep-alive\n\n"), WRITE_TIMEOUT_S)
                    continue
                if last:
                    got = got.after(last)
                    if got is None:
                        continue
                    last = ""
                await asyncio.wait_for(resp.write(got.frame), WRITE_TIMEOUT_S)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            hub.close(sub)
        return resp

    async def _write_dropped(resp: web.StreamResponse, sub: Subscriber) -> None:
        msg = orjson.dumps({"error": "this stream fell behind and was closed: reconnect (the page does)"})
        try:
            await asyncio.wait_for(resp.write(b"event: dropped\ndata: " + msg + b"\n\n"), 1.0)
        except (ConnectionError, TimeoutError):
            pass

    async def geo(request: web.Request) -> web.Response:
        from pipeline.contracts import sites

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

    async def rules(request: web.Request) -> web.Response:
        """The live pack's rules for the page's labels and filter: Redis first, else the start-up pack."""
        raw = await state["redis"].hgetall(RULES_KEY)
        if raw:
            live: list[dict[str, Any]] = []
            unreadable: list[str] = []
            for k, v in raw.items():
                rid = k.decode(errors="replace")
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

    # ----------------------------------------------------------------------------------------- writes
    async def ack(request: web.Request) -> web.Response:
        if (denied := need_operator(request)) is not None:
            return denied
        cid = _command_id(request)
        if isinstance(cid, web.Response):
            return cid
        got = await state["store"].ack(cid, _now_ms())
        if got == UNKNOWN:
            return _error(404, f"no command {cid} (never dispatched, or older than the retention)")
        st = await state["store"].get(cid)
        status = (st or {}).get(b"status", b"acknowledged").decode(errors="replace")
        return _json({"command_id": cid, "status": status})

    async def result(request: web.Request) -> web.Response:
        if (denied := need_operator(request)) is not None:
            return denied
        cid = _command_id(request)
        if isinstance(cid, web.Response):
            return cid
        store: CommandStore = state["store"]
        st = await store.get(cid)
        if st is None:
            return _error(404, f"no command {cid} (never dispatched, or older than the retention)")
        if st.get(b"status") == b"result" or st.get(b"result_sent"):
            return _error(409, f"a result for {cid} was already reported")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(422, f"the body must be a JSON object ({exc})")
        if not isinstance(body, dict):
            return _error(
                422, 'the body must be a JSON object: {"outcome": "violation" | "clean" | "not_found"}'
            )
        outcome = body.get("outcome")
        if outcome not in RESULT_OUTCOMES:
            return _error(422, f"outcome must be one of {list(RESULT_OUTCOMES)}", field="outcome")
        found = body.get("found_value_cny", 0.0)
        if not isinstance(found, int | float) or isinstance(found, bool) or not 0 <= found <= c.MAX_VALUE:
            return _error(
                422, f"found_value_cny must be a number 0..{c.MAX_VALUE:.0f}", field="found_value_cny"
            )
        notes = body.get("notes", "")
        if not isinstance(notes, str):
            return _error(422, "notes must be a string of at most 2000 characters", field="notes")
        cmd = orjson.loads(st[b"command"])
        ev = {
            "command_id": cid,
            "decl_id": cmd["decl_id"],
            "ts_ms": _now_ms(),
            "outcome": outcome,
            "found_value_cny": float(found),
            "site": cmd["site"],
            "notes": notes,
            "source": "api",
        }
        try:
            c.validate("inspection_result", ev)
        except c.ContractError as exc:
            return _error(422, str(exc), field=exc.field, reason=exc.reason)
        claim_ms = ev["ts_ms"]
        got = await store.claim_result(cid, claim_ms)
        if got == UNKNOWN:
            return _error(404, f"no command {cid} (expired a moment ago)")
        if got == ALREADY:
            return _error(409, f"a result for {cid} was already reported")
        try:
            p = await producer()
            await p.send_and_wait(c.INSPECTION_RESULTS, orjson.dumps(ev), key=cmd["conveyance_id"].encode())
        except Exception as exc:  # not sent: release the claim so the operator can report again
            log.warning("inspection result for %s not sent: %s", cid, exc)
            await store.release_result(cid, claim_ms)
            return _error(
                503,
                "the result could not be sent to Kafka: report it again in a moment",
                headers={"Retry-After": "5"},
            )
        return _json({"command_id": cid, "status": "result_sent", "result": ev}, status=202)

    # -------------------------------------------------------------------------------------- operations
    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return _json({"ok": True})

    app = web.Application(middlewares=[errors, guard], client_max_size=max_body)
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_post("/api/login", login)
    app.router.add_get("/api/whoami", whoami)
    app.router.add_get("/api/hits", hits)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/stream", stream, allow_head=False)  # a HEAD would hold a stream slot
    app.router.add_get("/api/commands/{id}", command)
    app.router.add_post("/api/commands/{id}/ack", ack)
    app.router.add_post("/api/commands/{id}/result", result)
    app.router.add_get("/api/geo", geo)
    app.router.add_get("/api/rules", rules)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    return app


def ensure_tokens(settings: Settings) -> Settings:
    """Random tokens when none are configured (demo): printed once to the terminal, never logged."""
    changes = {}
    if not settings.analyst_token.get_secret_value():
        changes["analyst_token"] = SecretStr(secrets.token_urlsafe(16))
    if not settings.operator_token.get_secret_value():
        changes["operator_token"] = SecretStr(secrets.token_urlsafe(16))
    return settings.with_(**changes) if changes else settings


def run_web_in_thread(settings: Settings, redis_url: str, kafka: str) -> Callable[[], None]:
    """Serve in a background thread with its own loop; returns a stop function."""
    loop = asyncio.new_event_loop()
    app = create_app(settings, redis_url, kafka)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
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
