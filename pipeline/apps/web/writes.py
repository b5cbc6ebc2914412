"""The web app's write routes (operators only): acknowledge a command, report an inspection result."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from pipeline.apps.web.context import Context, error, json_response, now_ms
from pipeline.apps.web.reads import command_id
from pipeline.apps.web.store import ALREADY, UNKNOWN, CommandStore
from pipeline.contracts import events as c

log = logging.getLogger("bukong.web")
RESULT_OUTCOMES = ("violation", "clean", "not_found")


class Writes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def ack(self, request: web.Request) -> web.Response:
        if (denied := self.ctx.need_operator(request)) is not None:
            return denied
        cid = command_id(request)
        if isinstance(cid, web.Response):
            return cid
        got = await self.ctx.store.ack(cid, now_ms())
        if got == UNKNOWN:
            return error(404, f"no command {cid} (never dispatched, or older than the retention)")
        st = await self.ctx.store.get(cid)
        status = (st or {}).get(b"status", b"acknowledged").decode(errors="replace")
        return json_response({"command_id": cid, "status": status})

    async def result(self, request: web.Request) -> web.Response:
        if (denied := self.ctx.need_operator(request)) is not None:
            return denied
        cid = command_id(request)
        if isinstance(cid, web.Response):
            return cid
        store: CommandStore = self.ctx.store
        st = await store.get(cid)
        if st is None:
            return error(404, f"no command {cid} (never dispatched, or older than the retention)")
        if st.get(b"status") == b"result" or st.get(b"result_sent"):
            return error(409, f"a result for {cid} was already reported")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return error(422, f"the body must be a JSON object ({exc})")
        if not isinstance(body, dict):
            return error(
                422, 'the body must be a JSON object: {"outcome": "violation" | "clean" | "not_found"}'
            )
        outcome = body.get("outcome")
        if outcome not in RESULT_OUTCOMES:
            return error(422, f"outcome must be one of {list(RESULT_OUTCOMES)}", field="outcome")
        found = body.get("found_value_cny", 0.0)
        if not isinstance(found, int | float) or isinstance(found, bool) or not 0 <= found <= c.MAX_VALUE:
            return error(
                422, f"found_value_cny must be a number 0..{c.MAX_VALUE:.0f}", field="found_value_cny"
            )
        notes = body.get("notes", "")
        if not isinstance(notes, str):
            return error(422, "notes must be a string of at most 2000 characters", field="notes")
        cmd = orjson.loads(st[b"command"])
        ev = {
            "command_id": cid,
            "decl_id": cmd["decl_id"],
            "ts_ms": now_ms(),
            "outcome": outcome,
            "found_value_cny": float(found),
            "site": cmd["site"],
            "notes": notes,
            "source": "api",
        }
        try:
            c.validate("inspection_result", ev)
        except c.ContractError as exc:
            return error(422, str(exc), field=exc.field, reason=exc.reason)
        claim_ms = ev["ts_ms"]
        got = await store.claim_result(cid, claim_ms)
        if got == UNKNOWN:
            return error(404, f"no command {cid} (expired a moment ago)")
        if got == ALREADY:
            return error(409, f"a result for {cid} was already reported")
        try:
            p = await self.ctx.producer()
            await p.send_and_wait(c.INSPECTION_RESULTS, orjson.dumps(ev), key=cmd["conveyance_id"].encode())
        except Exception as exc:  # not sent: release the claim so the operator can report again
            log.warning("inspection result for %s not sent: %s", cid, exc)
            await store.release_result(cid, claim_ms)
            return error(
                503,
                "the result could not be sent to Kafka: report it again in a moment",
                headers={"Retry-After": "5"},
            )
        return json_response({"command_id": cid, "status": "result_sent", "result": ev}, status=202)
