"""The web app's middlewares: JSON errors (Redis trouble -> 503), body limit, authentication, origin check."""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from aiohttp import web

from pipeline.apps.web.auth import SAFE_METHODS, cross_origin
from pipeline.apps.web.context import ROLE_KEY, SECURITY_HEADERS, Context, Handler, error

log = logging.getLogger("bukong.web")
PUBLIC = {"/", "/api/login", "/api/openapi.json", "/healthz", "/metrics"}


def errors_middleware(ctx: Context) -> Any:
    max_body = ctx.max_body

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
            resp = error(exc.status, text.removeprefix(f"{exc.status}: "), headers=headers)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("Redis unavailable for %s %s: %s", request.method, request.path, exc)
            resp = error(
                503, "Redis is unavailable or busy: retry in a few seconds", headers={"Retry-After": "5"}
            )
        if not resp.prepared:
            resp.headers.update(SECURITY_HEADERS)
        return resp

    return errors


def guard_middleware(ctx: Context) -> Any:
    max_body, origins, refused = ctx.max_body, ctx.origins, ctx.refused

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
        role, how = ctx.auth.role(request)
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

    return guard
