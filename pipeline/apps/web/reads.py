"""The web app's read routes: the page, login, hits, one command, stats, geography, rules, operations."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.apps.web.auth import COOKIE, COOKIE_MAX_AGE_S
from pipeline.apps.web.context import ROLE_KEY, Context, error, json_response
from pipeline.apps.web.openapi import openapi_document
from pipeline.contracts.commands import (
    DRIFT_STREAM_KEY,
    LEAD_STATS_KEY,
    LIVE_STREAM_KEY,
    META_KEY,
    RULE_STATS_KEY,
    RULES_KEY,
    STATS_KEY,
)
from rules.stats import leads, tally

log = logging.getLogger("bukong.web")
STATIC = Path(__file__).parent / "static"
STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
RULE_FIELDS = ("id", "title", "lane", "severity", "status", "scope")
COMMAND_ID = re.compile(r"cmd-[0-9a-f]{20}")


def matches(cmd: dict[str, Any], q: Any) -> bool:
    return (
        (not q.get("port") or cmd.get("port") == q["port"])
        and (not q.get("lane") or cmd.get("lane") == q["lane"])
        and (not q.get("severity") or cmd.get("severity") == q["severity"])
        and (not q.get("rule") or q["rule"] in (cmd.get("rule_ids") or ()))
    )


def command_id(request: web.Request) -> str | web.Response:
    cid = request.match_info["id"]
    if not COMMAND_ID.fullmatch(cid):
        return error(404, f"no command {cid[:80]!r}: command ids look like cmd-<20 hex digits>")
    return cid


class Reads:
    """GET routes (and login): nothing here changes a command."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def static_file(self, request: web.Request) -> web.StreamResponse:
        """Only plain files directly in static/: no subfolders, no dot files, nothing outside."""
        name = request.match_info["name"]
        path = STATIC / name
        if not STATIC_NAME.fullmatch(name) or not path.is_file() or path.resolve().parent != STATIC.resolve():
            return error(404, f"no static file {name[:80]!r}")
        return web.FileResponse(path)

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(openapi_document())

    async def login(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            token = body["token"]
            if not isinstance(token, str):
                raise TypeError
        except web.HTTPException:
            raise
        except Exception:
            return error(422, 'send JSON {"token": "..."}', field="token")
        role = self.ctx.auth.role_of_token(token)
        if role is None:
            return self.ctx.refused(
                "unauthenticated", 401, "unknown token: ask for the analyst or operator token"
            )
        resp = json_response({"role": role})
        resp.set_cookie(
            COOKIE,
            self.ctx.auth.cookie_for(role),
            httponly=True,
            samesite="Strict",
            max_age=COOKIE_MAX_AGE_S,
            path="/",
        )
        return resp

    async def whoami(self, request: web.Request) -> web.Response:
        return json_response({"role": request[ROLE_KEY]})

    async def hits(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = min(500, max(1, int(q.get("limit", "100"))))
        except ValueError:
            return error(422, "limit must be an integer 1..500", field="limit")
        entries = await self.ctx.redis.xrevrange(LIVE_STREAM_KEY, count=2000)
        out = []
        for entry_id, fields in entries:
            try:
                cmd = orjson.loads(fields[b"c"])
                if not isinstance(cmd, dict) or not matches(cmd, q):
                    continue
            except (KeyError, TypeError, orjson.JSONDecodeError):
                continue
            cmd.pop("facts", None)
            cmd["stream_id"] = entry_id.decode()
            out.append(cmd)
            if len(out) >= limit:
                break
        return json_response({"hits": out})

    async def command(self, request: web.Request) -> web.Response:
        cid = command_id(request)
        if isinstance(cid, web.Response):
            return cid
        st = await self.ctx.store.get(cid)
        if st is None:
            return error(404, f"no command {cid} (unknown, or older than the retention)")
        cmd = orjson.loads(st[b"command"])
        try:
            track = orjson.loads(st.get(b"track") or b"[]")
        except orjson.JSONDecodeError:
            track = []
        status = {
            k.decode(): v.decode(errors="replace") for k, v in st.items() if k not in (b"command", b"track")
        }
        return json_response({"command": cmd, "status": status, "track": track})

    async def stats(self, request: web.Request) -> web.Response:
        r = self.ctx.redis
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(STATS_KEY)
        pipe.hgetall(RULE_STATS_KEY)
        pipe.hgetall(META_KEY)
        pipe.xrevrange(DRIFT_STREAM_KEY, count=20)
        pipe.hgetall(LEAD_STATS_KEY)
        totals, rules, meta, drift, lead_counts = await pipe.execute()
        per_rule, per_site = tally(rules)
        drift_events = []
        for _, f in drift:
            try:
                drift_events.append(orjson.loads(f[b"d"]))
            except (KeyError, orjson.JSONDecodeError):
                continue
        return json_response(
            {
                "totals": {k.decode(): int(v) for k, v in totals.items() if v.lstrip(b"-").isdigit()},
                "rules": per_rule,
                "sites": per_site,
                "leads": leads(lead_counts),
                "meta": {k.decode(): v.decode(errors="replace") for k, v in meta.items()},
                "drift": drift_events,
            }
        )

    async def geo(self, request: web.Request) -> web.Response:
        from pipeline.contracts import sites

        return json_response(
            {
                "border": sites.BORDER,
                "ports": [
                    {"code": p.code, "name": p.name, "lat": p.lat, "lon": p.lon} for p in sites.PORTS.values()
                ],
                "corridors": sites.CORRIDORS,
                "squads": [{"id": q.id, "lat": q.lat, "lon": q.lon} for q in sites.MOBILE_SQUADS],
            }
        )

    async def rules(self, request: web.Request) -> web.Response:
        """The live pack's rules for the page's labels and filter: Redis first, else the start-up pack."""
        raw = await self.ctx.redis.hgetall(RULES_KEY)
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
            return json_response({"source": "redis", "rules": live, "unreadable": sorted(unreadable)})
        if self.ctx.pack_rules is None:
            from rules.pack import PackError, load_pack

            try:
                pack = await asyncio.to_thread(load_pack, self.ctx.settings.rule_pack)
            except PackError as exc:
                return error(
                    500,
                    f"the start-up pack {self.ctx.settings.rule_pack} does not load ({exc}); "
                    "fix it (python -m pipeline rules check) or set BUKONG_RULE_PACK",
                )
            self.ctx.pack_rules = [{f: getattr(r, f) for f in RULE_FIELDS} for r in pack.rules]
        return json_response({"source": "pack", "rules": self.ctx.pack_rules, "unreadable": []})

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.ctx.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"ok": True})
