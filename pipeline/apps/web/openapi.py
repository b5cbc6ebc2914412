"""The OpenAPI 3 document of the live view and command API, served at GET /api/openapi.json.

Every route of pipeline/apps/web/server.py is described here (a test compares the two, and schemathesis
checks the server against this document). docs/api.md is the prose version.
"""

from __future__ import annotations

import functools
from typing import Any

from pipeline.contracts.events import LANES, MAX_VALUE, OUTCOMES, SEVERITIES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out = _json(_ref("Error"), description)
    if headers:
        out["headers"] = headers
    return out


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
E401 = _err("no token, an unknown token, or a forged or expired cookie")
E403_ROLE = _err("an analyst tried to act, or a cookie-authenticated change came from another origin")
E404 = _err("no such command (unknown id, never dispatched, or older than the retention)")
E413 = _err("the body is over BUKONG_WEB_MAX_BODY_BYTES")
E422 = _err("the request is malformed: `field` names the culprit")
E503 = _err("Redis (or Kafka, for results) is unavailable: retry", RETRY_AFTER)
COMMAND_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^cmd-[0-9a-f]{20}$"},
    "description": "command id: cmd- and 20 hex digits, derived from the declaration id",
}
PUBLIC: list[dict[str, list[str]]] = []

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "what went wrong and what to send instead"},
            "field": {"type": "string", "nullable": True, "description": "the offending field"},
            "reason": {"type": "string", "description": "a stable code (refusals, contract errors)"},
        },
    },
    "Role": {
        "type": "object",
        "required": ["role"],
        "properties": {"role": {"type": "string", "enum": ["analyst", "operator"]}},
    },
    "Hit": {
        "type": "object",
        "description": "a dispatch command as on the dispatch-commands topic (docs/events.md), without facts",
        "required": [
            "command_id",
            "decl_id",
            "conveyance_id",
            "port",
            "lane",
            "severity",
            "score",
            "rule_ids",
        ],
        "properties": {
            "command_id": {"type": "string"},
            "decl_id": {"type": "string"},
            "conveyance_id": {"type": "string"},
            "enterprise_id": {"type": "string"},
            "port": {"type": "string"},
            "site": {"type": "string"},
            "lane": {"type": "string", "enum": list(LANES)},
            "severity": {"type": "string", "enum": list(SEVERITIES)},
            "score": {"type": "number"},
            "rule_ids": {"type": "array", "items": {"type": "string"}},
            "reasons": {"type": "array", "items": {"type": "object"}},
            "factors": {"type": "array", "items": {"type": "object"}},
            "stream_id": {"type": "string", "description": "position in the live stream (resume with since)"},
        },
    },
    "Command": {
        "type": "object",
        "required": ["command_id", "decl_id", "conveyance_id", "port", "lane", "severity", "reasons"],
        "properties": {
            "command_id": {"type": "string"},
            "decl_id": {"type": "string"},
            "facts": {"type": "object"},
            "reasons": {"type": "array", "items": {"type": "object"}},
        },
    },
    "CommandDetail": {
        "type": "object",
        "required": ["command", "status", "track"],
        "properties": {
            "command": _ref("Command"),
            "status": {
                "type": "object",
                "description": "status (sent, acknowledged, result), sent_ms, ack_ms, outcome, ...",
                "additionalProperties": {"type": "string"},
            },
            "track": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "lat": {"type": "number"},
                        "lon": {"type": "number"},
                        "ts_ms": {"type": "integer"},
                    },
                },
            },
        },
    },
    "Ack": {
        "type": "object",
        "required": ["command_id", "status"],
        "properties": {"command_id": {"type": "string"}, "status": {"type": "string"}},
    },
    "ResultRequest": {
        "type": "object",
        "required": ["outcome"],
        "properties": {
            "outcome": {"type": "string", "enum": sorted(OUTCOMES)},
            "found_value_cny": {"type": "number", "minimum": 0, "maximum": MAX_VALUE},
            "notes": {
                "type": "string",
                "maxLength": 2000,
                "pattern": "^[^\\u0000-\\u0008\\u000b-\\u001f]*$",
                "description": "free text: tab and newline allowed, no other control characters",
            },
        },
    },
    "ResultAccepted": {
        "type": "object",
        "required": ["command_id", "status", "result"],
        "properties": {
            "command_id": {"type": "string"},
            "status": {"type": "string", "enum": ["result_sent"]},
            "result": {"type": "object", "description": "the inspection-results record (docs/events.md)"},
        },
    },
    "Stats": {
        "type": "object",
        "required": ["totals", "rules", "sites", "leads", "meta", "drift"],
        "properties": {
            "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
            "rules": {"type": "object", "additionalProperties": {"type": "object"}},
            "sites": {"type": "object", "additionalProperties": {"type": "object"}},
            "leads": {
                "type": "object",
                "description": "per intelligence-lead source (watchlist entries' source): results, confirmed "
                "violations and hit rate (confirmed / results, null before a result)",
                "additionalProperties": {
                    "type": "object",
                    "required": ["results", "confirmed", "hit_rate"],
                    "properties": {
                        "results": {"type": "integer", "minimum": 0},
                        "confirmed": {"type": "integer", "minimum": 0},
                        "hit_rate": {"type": "number", "nullable": True, "minimum": 0, "maximum": 1},
                    },
                },
            },
            "meta": {"type": "object", "additionalProperties": {"type": "string"}},
            "drift": {"type": "array", "items": {"type": "object"}},
        },
    },
}


def _get(
    summary: str, ok: dict[str, Any], responses: dict[str, Any] | None = None, *, public: bool = False
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **(responses or {})}}
    if public:
        op["security"] = PUBLIC
    else:
        op["responses"].setdefault("401", E401)
    return op


def _page_paths() -> dict[str, Any]:
    """The paths of the page, its files, this document, login and whoami."""
    return {
        "/": {
            "get": _get(
                "the live view page", {"description": "HTML", "content": {"text/html": {}}}, public=True
            )
        },
        "/static/{name}": {
            "get": {
                **_get(
                    "a file of the page (scripts, styles); nothing outside static/",
                    {"description": "the file", "content": {"*/*": {}}},
                    {"404": _err("no such file")},
                    public=True,
                ),
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            }
        },
        "/api/openapi.json": {
            "get": _get("this document", _json({"type": "object"}, "OpenAPI 3 document"), public=True)
        },
        "/api/login": {
            "post": {
                "summary": "exchange a token for an HttpOnly session cookie (the page's login)",
                "security": PUBLIC,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["token"],
                                "properties": {"token": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        **_json(_ref("Role"), "logged in: the bukong_session cookie is set"),
                        "headers": {"Set-Cookie": {"schema": {"type": "string"}}},
                    },
                    "401": _err("unknown token"),
                    "403": _err("login from another origin"),
                    "413": E413,
                    "422": E422,
                },
            }
        },
        "/api/whoami": {"get": _get("the caller's role", _json(_ref("Role"), "the role"))},
    }


def _hit_paths() -> dict[str, Any]:
    """The paths of recent hits and stats."""
    return {
        "/api/hits": {
            "get": {
                **_get(
                    "recent hits, newest first (from the bounded live stream)",
                    _json(
                        {
                            "type": "object",
                            "required": ["hits"],
                            "properties": {"hits": {"type": "array", "items": _ref("Hit")}},
                        },
                        "matching hits",
                    ),
                    {"422": E422, "503": E503},
                ),
                "parameters": [
                    {"name": "port", "in": "query", "schema": {"type": "string"}, "description": "port code"},
                    {"name": "lane", "in": "query", "schema": {"type": "string"}, "description": "lane"},
                    {"name": "severity", "in": "query", "schema": {"type": "string"}},
                    {"name": "rule", "in": "query", "schema": {"type": "string"}, "description": "a rule id"},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer"},
                        "description": "how many (clamped to 1..500, default 100)",
                    },
                ],
            }
        },
        "/api/stats": {
            "get": _get(
                "totals, per-rule, per-site and per-lead-source hit rates, versions, drift",
                _json(_ref("Stats"), "stats"),
                {"503": E503},
            )
        },
    }


def _stream_paths() -> dict[str, Any]:
    """The paths of the live stream and one command."""
    return {
        "/api/stream": {
            "get": {
                **_get(
                    "server-sent events: `event: hits` frames (JSON array of hits; `id:` the last stream id)",
                    {"description": "an event stream that stays open", "content": {"text/event-stream": {}}},
                    {
                        "422": E422,
                        "429": _err(
                            "too many live streams (per token/role or in the server): retry later",
                            RETRY_AFTER,
                        ),
                        "503": E503,
                    },
                ),
                "parameters": [
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,19}$"},
                        "description": "resume after this stream id (at most 2000 hits are replayed)",
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,19}$"},
                        "description": "sent by EventSource on reconnect; same as since",
                    },
                ],
            }
        },
        "/api/commands/{id}": {
            "get": {
                **_get(
                    "one command with its status and the vehicle's recent track",
                    _json(_ref("CommandDetail"), "the command"),
                    {"404": E404, "503": E503},
                ),
                "parameters": [COMMAND_ID],
            }
        },
    }


def _write_paths() -> dict[str, Any]:
    """The paths of what operators do."""
    return {
        "/api/commands/{id}/ack": {
            "post": {
                "summary": "operators: acknowledge a dispatched command",
                "parameters": [COMMAND_ID],
                "responses": {
                    "200": _json(_ref("Ack"), "the command's status now"),
                    "401": E401,
                    "403": E403_ROLE,
                    "404": E404,
                    "413": E413,
                    "503": E503,
                },
            }
        },
        "/api/commands/{id}/result": {
            "post": {
                "summary": "operators: report the inspection result (to the inspection-results topic)",
                "parameters": [COMMAND_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ResultRequest")}},
                },
                "responses": {
                    "202": _json(_ref("ResultAccepted"), "sent to inspection-results"),
                    "401": E401,
                    "403": E403_ROLE,
                    "404": E404,
                    "409": _err("a result for this command was already reported"),
                    "413": E413,
                    "422": E422,
                    "503": E503,
                },
            }
        },
    }


def _other_paths() -> dict[str, Any]:
    """The paths of geography, rules and operations."""
    return {
        "/api/geo": {
            "get": _get("border, ports, corridors and squads for the map", _json({"type": "object"}, "geo"))
        },
        "/api/rules": {
            "get": _get(
                "the live pack's rules (id, title, lane, severity, status, scope) for the live view",
                _json(
                    {
                        "type": "object",
                        "required": ["source", "rules", "unreadable"],
                        "properties": {
                            "source": {"type": "string", "enum": ["redis", "pack"]},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["id", "title", "lane", "severity", "status", "scope"],
                                },
                            },
                            "unreadable": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "the rules, from Redis (published packs) or else the start-up pack",
                ),
                {"500": _err("the start-up pack does not load: fix it or set BUKONG_RULE_PACK"), "503": E503},
            )
        },
        "/metrics": {
            "get": _get(
                "Prometheus exposition of this process",
                {"description": "metrics", "content": {"text/plain": {}}},
                public=True,
            )
        },
        "/healthz": {
            "get": _get(
                "liveness",
                _json(
                    {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}}, "alive"
                ),
                public=True,
            )
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        **_page_paths(),
        **_hit_paths(),
        **_stream_paths(),
        **_write_paths(),
        **_other_paths(),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Bukong live view and command API",
            "version": "1",
            "description": "Hits, stats, commands; operators acknowledge and report results (docs/api.md).",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the analyst or operator token",
                },
                "cookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "bukong_session",
                    "description": "from login",
                },
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }
