"""Validation at the edge: every defect becomes a ContractError with a stable reason and a useful message."""

from __future__ import annotations

import orjson
import pytest

from pipeline import contracts as c
from pipeline.codec import dead_letter, decode_event

NOW = 1_790_000_000_000

DECL = {
    "decl_id": "D1",
    "ts_ms": NOW,
    "enterprise_id": "E1",
    "credit_grade": "general",
    "hs_code": "270112",
    "goods": "coal",
    "origin": "MN",
    "port": "EHT",
    "mode": "road",
    "conveyance_id": "MN00001",
    "gross_kg": 30000.0,
    "net_kg": 28000.0,
    "quantity": 28.0,
    "value_cny": 17000.0,
}
TRACK = {"conveyance_id": "MN00001", "ts_ms": NOW, "lat": 43.6, "lon": 111.9, "speed_kmh": 42.0}
WEIGH = {
    "event_id": "W1",
    "kind": "weighbridge",
    "ts_ms": NOW,
    "conveyance_id": "MN00001",
    "port": "EHT",
    "measured_gross_kg": 31000.0,
}


def _with(base: dict, **kw: object) -> bytes:
    d = dict(base)
    for k, v in kw.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return orjson.dumps(d)


@pytest.mark.parametrize(
    ("topic", "raw", "reason", "field"),
    [
        (c.DECLARATIONS, b"{not json", "malformed_json", None),
        (c.DECLARATIONS, b"[1, 2]", "not_an_object", None),
        (c.DECLARATIONS, None, "empty_message", None),
        (c.DECLARATIONS, _with(DECL, hs_code=...), "missing_field", "hs_code"),
        (c.DECLARATIONS, _with(DECL, gross_kg="30000"), "wrong_type", "gross_kg"),
        (c.DECLARATIONS, _with(DECL, gross_kg=True), "wrong_type", "gross_kg"),
        (c.DECLARATIONS, _with(DECL, gross_kg=-1.0), "impossible_value", "gross_kg"),
        (c.DECLARATIONS, _with(DECL, net_kg=40000.0), "impossible_value", "net_kg"),
        (c.DECLARATIONS, _with(DECL, hs_code="27A1"), "impossible_value", "hs_code"),
        (c.DECLARATIONS, _with(DECL, credit_grade="gold"), "impossible_value", "credit_grade"),
        (c.DECLARATIONS, _with(DECL, ts_ms=NOW // 1000), "impossible_value", "ts_ms"),
        (c.DECLARATIONS, _with(DECL, ts_ms=NOW + 3_600_000), "future_event", "ts_ms"),
        (c.TRACKS, _with(TRACK, lat=90.5), "impossible_value", "lat"),
        (c.TRACKS, _with(TRACK, lon=-181.0), "impossible_value", "lon"),
        (c.TRACKS, _with(TRACK, ts_ms=1.5e12), "wrong_type", "ts_ms"),
        (c.LOGISTICS, _with(WEIGH, measured_gross_kg=...), "missing_field", "measured_gross_kg"),
        (c.LOGISTICS, _with(WEIGH, kind="teleport"), "impossible_value", "kind"),
        (c.TRACKS, b'{"x": "' + b"a" * c.MAX_MESSAGE_BYTES + b'"}', "oversize", None),
    ],
)
def test_bad_records_are_rejected_with_reason(
    topic: str, raw: bytes | None, reason: str, field: str | None
) -> None:
    with pytest.raises(c.ContractError) as err:
        decode_event(topic, raw, NOW)
    assert err.value.reason == reason
    assert err.value.field == field
    if field:
        assert field in str(err.value)


@pytest.mark.parametrize(("topic", "ev"), [(c.DECLARATIONS, DECL), (c.TRACKS, TRACK), (c.LOGISTICS, WEIGH)])
def test_valid_records_pass_and_keep_unknown_fields(topic: str, ev: dict) -> None:
    raw = orjson.dumps({**ev, "extra": 1})
    out = decode_event(topic, raw, NOW)
    assert out["ts_ms"] == NOW and out["extra"] == 1


def test_dead_letter_keeps_source_and_truncated_raw() -> None:
    raw = b"x" * 5000
    err = c.ContractError("malformed_json", "bad")
    dl = dead_letter(topic=c.TRACKS, partition=3, offset=42, raw=raw, error=err, now_ms=NOW)
    assert dl["reason"] == "malformed_json"
    assert (dl["source_topic"], dl["source_partition"], dl["source_offset"]) == (c.TRACKS, 3, 42)
    assert dl["raw_len"] == 5000 and dl["truncated"]
    assert len(orjson.dumps(dl)) < 4000
