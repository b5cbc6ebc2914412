"""Who is calling, and may they change state from where they call.

Two roles, one token each (settings): analysts read, operators also act. A request is authenticated by
``Authorization: Bearer <token>`` or by the session cookie the page gets from ``POST /api/login``. The cookie
is ``role.expiry.signature`` (HMAC-SHA256 with a key random per process), so it cannot be forged, expires, and
dies with the process. Tokens are compared in constant time and never logged or rendered.

A browser attaches the cookie to any request, also one a hostile page sends, so a state change authenticated
by the cookie must come from the page's own origin (``Origin`` / ``Sec-Fetch-Site``). Bearer requests carry
their credential explicitly and are not affected.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "bukong_session"
COOKIE_MAX_AGE_S = 12 * 3600
ROLES = ("operator", "analyst")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Auth:
    def __init__(self, analyst: str, operator: str) -> None:
        self.tokens = {"analyst": analyst, "operator": operator}
        self.key = secrets.token_bytes(32)

    def role_of_token(self, token: str) -> str | None:
        given = token.encode("utf-8", "surrogateescape")
        for role in ROLES:
            want = self.tokens[role]
            if want and hmac.compare_digest(given, want.encode()):
                return role
        return None

    def _sig(self, role: str, expiry: int) -> str:
        return hmac.new(self.key, f"{role}.{expiry}".encode(), hashlib.sha256).hexdigest()

    def cookie_for(self, role: str, now_s: float | None = None) -> str:
        expiry = int(now_s if now_s is not None else time.time()) + COOKIE_MAX_AGE_S
        return f"{role}.{expiry}.{self._sig(role, expiry)}"

    def role_of_cookie(self, value: str, now_s: float | None = None) -> str | None:
        parts = value.split(".")
        if len(parts) != 3 or parts[0] not in self.tokens or not parts[1].isdigit() or len(parts[1]) > 12:
            return None
        role, expiry = parts[0], int(parts[1])
        if not hmac.compare_digest(parts[2].encode(), self._sig(role, expiry).encode()):
            return None
        if expiry < (now_s if now_s is not None else time.time()):
            return None
        return role

    def role(self, request: web.Request) -> tuple[str | None, str]:
        """(role or None, how): how is "bearer", "cookie" or "none"."""
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return self.role_of_token(header[7:].strip()), "bearer"
        cookie = request.cookies.get(COOKIE)
        if cookie:
            return self.role_of_cookie(cookie), "cookie"
        return None, "none"


def allowed_origins(extra: str) -> frozenset[str]:
    """The configured extra origins (BUKONG_WEB_ORIGINS), normalised to scheme://host[:port]."""
    out = set()
    for item in extra.split(","):
        item = item.strip().rstrip("/").lower()
        if item:
            out.add(item)
    return frozenset(out)


def cross_origin(request: web.Request, extra: frozenset[str]) -> str | None:
    """Why a state-changing request from a browser is not from this server's own page, or None if it is.

    ``Sec-Fetch-Site`` (every current browser sends it) must be ``same-origin`` or ``none`` (user typed);
    ``Origin`` must name this server (its Host) or one of the configured origins. A cookie request with
    neither header is refused too: browsers send Origin on every POST, so its absence means a client that
    should use a Bearer token.
    """
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {site[:40]}"
    if origin is not None:
        o = origin.strip().rstrip("/").lower()
        if o in extra:
            return None
        if o == "null" or urlsplit(o).netloc != request.host.lower():
            return f"Origin: {origin[:80]}"
        return None
    if site is None:
        return "no Origin or Sec-Fetch-Site header"
    return None
