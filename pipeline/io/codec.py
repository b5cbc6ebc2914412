"""Bytes <-> records with orjson, and the dead-letter record for anything that fails on the way in."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from pipeline.contracts.events import (
    MAX_MESSAGE_BYTES,
    TOPIC_KIND,
    TRACKS,
    ContractError,
    track_ok,
    validate,
)

RAW_KEEP_BYTES = 2048  # raw bytes kept in a dead-letter record


def encode(obj: Any) -> bytes:
    return orjson.dumps(obj)


def decode_json(raw: bytes) -> Any:
    return orjson.loads(raw)


def decode_event(topic: str, raw: bytes | None, now_ms: int | None) -> dict[str, Any]:
    """Decode and validate one record from an input topic; raises ContractError on any defect."""
    if raw is None:
        raise ContractError("empty_message", f"record on {topic} has no value (tombstone)")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ContractError(
            "oversize", f"record on {topic} is {len(raw)} bytes, limit {MAX_MESSAGE_BYTES} bytes"
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "infinity" in str(exc):  # orjson refuses 1e400 (no JSON number may stand for an infinity)
            raise ContractError(
                "non_finite_number",
                f"record on {topic} has a number too large for a double ({exc}): send a finite number",
            ) from None
        raise ContractError(
            "malformed_json", f"record on {topic} is not valid JSON ({exc}): send one UTF-8 JSON object"
        ) from None
    kind = TOPIC_KIND.get(topic)
    if kind is None:
        raise ContractError("unknown_topic", f"no contract for topic {topic!r}")
    return validate(kind, obj, now_ms)


def decode_track(raw: bytes | None, now_ms: int | None) -> dict[str, Any]:
    """``decode_event(TRACKS, raw, now_ms)`` for the GPS points: the well-formed record decoded and checked
    in one step; anything else goes the general way, which raises the same ContractError as ever."""
    if raw is not None and len(raw) <= MAX_MESSAGE_BYTES:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if track_ok(obj, now_ms):
                return obj
    return decode_event(TRACKS, raw, now_ms)


def dead_letter(
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    raw: bytes | None,
    error: ContractError | Exception,
    now_ms: int,
) -> dict[str, Any]:
    """The dead-letter record: why, where from, and the (truncated) raw bytes, base64 so any bytes survive."""
    reason = error.reason if isinstance(error, ContractError) else "processing_error"
    raw = raw or b""
    return {
        "reason": reason,
        "error": str(error)[:500],
        "field": getattr(error, "field", None),
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "raw_b64": base64.b64encode(raw[:RAW_KEEP_BYTES]).decode("ascii"),
        "raw_len": len(raw),
        "truncated": len(raw) > RAW_KEEP_BYTES,
        "ts_ms": now_ms,
    }
