"""What the drills send: must-dispatch pairs and fuzzed records that no contract accepts.

A must-dispatch record is a road declaration plus a weighbridge reading 20% over its declared gross weight:
the hard rule ``weighbridge_excess`` always dispatches it. A fuzzed record is one that the input contract
(pipeline/codec.decode_event) refuses; a generated record that happens to be valid is regenerated, never
counted as fuzzed.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import orjson

from pipeline.contracts import events as c
from pipeline.io.codec import decode_event

FUZZ_TOPICS = (c.DECLARATIONS, c.LOGISTICS, c.TRACKS, c.INSPECTION_RESULTS)
FUZZ_KINDS = (
    "random_bytes",
    "truncated_json",
    "wrong_type",
    "deep_nesting",
    "nan",
    "non_utf8",
    "nul",
    "not_an_object",
    "missing_field",
    "tombstone",
    "huge_1mb",
)
HUGE_BYTES = 1024 * 1024  # the "1 MB values" of the issue


def now_ms() -> int:
    return int(time.time() * 1000)


def must_dispatch(
    run: str, i: int, ts_ms: int | None = None
) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """(decl_id, key, declaration, weighbridge reading 20% over the declared gross)."""
    ts = ts_ms or now_ms()
    plate = f"DRL{run}{i:07d}"
    decl_id = f"DR-{run}-{i:07d}"
    gross = 30_000.0
    decl = {
        "decl_id": decl_id,
        "ts_ms": ts,
        "enterprise_id": "E0001",
        "credit_grade": "general",
        "declarant_id": "B001",
        "hs_code": "270112",
        "goods": "coal",
        "grade": "A",
        "origin": "MN",
        "port": "EHT",
        "mode": "road",
        "conveyance_id": plate,
        "gross_kg": gross,
        "net_kg": gross - 2000,
        "quantity": 28.0,
        "unit": "t",
        "value_cny": 17_000.0,
    }
    weigh = {
        "event_id": f"W-{run}-{i:07d}",
        "kind": "weighbridge",
        "ts_ms": ts,
        "conveyance_id": plate,
        "port": "EHT",
        "measured_gross_kg": gross * 1.2,
    }
    return decl_id, plate, decl, weigh


def _valid_sample(topic: str, rng: random.Random) -> dict[str, Any]:
    _, plate, decl, weigh = must_dispatch("fz", rng.randrange(10**6))
    if topic == c.DECLARATIONS:
        return decl
    if topic == c.LOGISTICS:
        return weigh
    if topic == c.TRACKS:
        return {"conveyance_id": plate, "ts_ms": now_ms(), "lat": 43.6, "lon": 111.9, "speed_kmh": 50.0}
    return {
        "command_id": "cmd-0000",
        "decl_id": decl["decl_id"],
        "ts_ms": now_ms(),
        "outcome": "clean",
        "found_value_cny": 0.0,
    }


_WRONG: tuple[Any, ...] = ("12", 12, 1.5, True, None, [], {}, [1, 2], {"a": {"b": 1}}, "x" * 300, -1, 1e30)


def _fuzz_value(kind: str, topic: str, rng: random.Random) -> bytes | None:
    good = _valid_sample(topic, rng)
    raw = orjson.dumps(good)
    if kind == "random_bytes":
        return os.urandom(rng.randrange(1, 300))
    if kind == "truncated_json":
        return raw[: rng.randrange(1, len(raw) - 1)]
    if kind == "wrong_type":
        field = rng.choice(list(good))
        return orjson.dumps(dict(good, **{field: rng.choice(_WRONG)}))
    if kind == "deep_nesting":
        depth = rng.choice((300, 1025, 3000))  # orjson refuses past 1024 levels
        if rng.random() < 0.5:
            return b"[" * depth + b"]" * depth
        field = rng.choice(list(good))
        inner = b'{"a":' * depth + b"1" + b"}" * depth
        return raw.replace(orjson.dumps(good[field]), inner, 1)
    if kind == "nan":
        field = rng.choice([k for k, v in good.items() if isinstance(v, int | float)])
        lit = rng.choice((b"NaN", b"Infinity", b"-Infinity", b"1e999", b'"NaN"'))
        return raw.replace(orjson.dumps(good[field]), lit, 1)
    if kind == "non_utf8":
        bad = rng.choice((b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"))
        s = raw.find(b'":"') + 3
        return raw[:s] + bad + raw[s:]
    if kind == "nul":
        if rng.random() < 0.5:
            return raw[: len(raw) // 2] + b"\x00" + raw[len(raw) // 2 :]
        field = rng.choice([k for k, v in good.items() if isinstance(v, str)])
        return orjson.dumps(dict(good, **{field: good[field] + "\x00" * 70}))
    if kind == "not_an_object":
        return rng.choice((b"[]", b"1", b'"str"', b"null", b"true", orjson.dumps([good])))
    if kind == "missing_field":
        field = rng.choice(["ts_ms", *[k for k in good if k != "ts_ms"]])
        return orjson.dumps({k: v for k, v in good.items() if k != field})
    if kind == "tombstone":
        return None
    # huge_1mb: valid JSON, valid fields, 1 MB of padding
    pad = HUGE_BYTES - len(raw)
    return raw[:-1] + b',"pad":"' + b"x" * pad + b'"}'


def fuzzed(rng: random.Random, kind: str | None = None) -> tuple[str, bytes | None, bytes | None, str]:
    """One record no contract accepts: (topic, key or None, value or None, kind)."""
    for _ in range(100):
        k = kind or rng.choice(FUZZ_KINDS[:-1])  # 1 MB values are sent on purpose, not at random
        topic = rng.choice(FUZZ_TOPICS)
        value = _fuzz_value(k, topic, rng)
        try:
            decode_event(topic, value, now_ms())
        except Exception:  # a ContractError, or anything else the decoder chokes on: fuzz either way
            # null keys too (a record needs a key or a value, so a tombstone keeps its key)
            null_key = value is not None and rng.random() < 0.25
            return topic, None if null_key else f"FZ{rng.randrange(10**6)}".encode(), value, k
    raise RuntimeError(f"could not generate an invalid {kind} record")
