"""Validation at the edge: every defect becomes a ContractError with a stable reason and a useful message."""

from __future__ import annotations

import orjson
import pytest

from pipeline.contracts import events as c
from pipeline.io.codec import dead_letter, decode_event

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
        # a weight above 0 but under a gram would make the unit value and the weighbridge ratio infinite
        (c.DECLARATIONS, _with(DECL, net_kg=1e-300), "impossible_value", "net_kg"),
        (c.DECLARATIONS, _with(DECL, gross_kg=5e-324, net_kg=0.0), "impossible_value", "gross_kg"),
        (c.LOGISTICS, _with(WEIGH, measured_gross_kg=1e-9), "impossible_value", "measured_gross_kg"),
        (
            c.LOGISTICS,
            _with(WEIGH, kind="manifest", measured_gross_kg=..., manifest_gross_kg=1e-9),
            "impossible_value",
            "manifest_gross_kg",
        ),
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


# ------------------------------------------------------------------------------------- a stricter edge
RESULT = {"command_id": "cmd-1", "decl_id": "D1", "ts_ms": NOW, "outcome": "clean"}
MANIFEST = {
    "event_id": "M1",
    "kind": "manifest",
    "ts_ms": NOW,
    "conveyance_id": "MN00001",
    "port": "EHT",
    "manifest_items": 3,
}
INT64_MAX = 2**63 - 1


@pytest.mark.parametrize(
    ("topic", "raw", "reason", "field"),
    [
        # ids and codes: printable characters only
        (c.DECLARATIONS, _with(DECL, purpose="medical\u0000"), "control_character", "purpose"),
        (c.DECLARATIONS, _with(DECL, decl_id="D1\u0000"), "control_character", "decl_id"),
        (c.DECLARATIONS, _with(DECL, enterprise_id="E\u001f1"), "control_character", "enterprise_id"),
        (c.DECLARATIONS, _with(DECL, port="EHT\n"), "control_character", "port"),
        (c.DECLARATIONS, _with(DECL, conveyance_id="MN\t1"), "control_character", "conveyance_id"),
        (c.DECLARATIONS, _with(DECL, declarant_id="B\u007f"), "control_character", "declarant_id"),
        (c.DECLARATIONS, _with(DECL, origin="M\u0085"), "control_character", "origin"),
        (c.DECLARATIONS, _with(DECL, decl_id="D\u200b1"), "invalid_character", "decl_id"),
        (c.DECLARATIONS, _with(DECL, decl_id="D\u20281"), "invalid_character", "decl_id"),
        (c.DECLARATIONS, _with(DECL, unit="t\u00a0"), "invalid_character", "unit"),
        (c.DECLARATIONS, _with(DECL, hs_code="\uff12\uff17\uff10\uff11"), "impossible_value", "hs_code"),
        (c.DECLARATIONS, _with(DECL, decl_id=""), "impossible_value", "decl_id"),
        (c.LOGISTICS, _with(WEIGH, gate="G\u00001"), "control_character", "gate"),
        (c.LOGISTICS, _with(WEIGH, ic_card="\u0000"), "control_character", "ic_card"),
        (c.INSPECTION_RESULTS, _with(RESULT, command_id="cmd-\u00001"), "control_character", "command_id"),
        (c.INSPECTION_RESULTS, _with(RESULT, source="api\u0000"), "control_character", "source"),
        # free text: tab and newline allowed, no other C0 control
        (c.DECLARATIONS, _with(DECL, goods="coal\u0000"), "control_character", "goods"),
        (c.DECLARATIONS, _with(DECL, goods="coal\r"), "control_character", "goods"),
        (c.INSPECTION_RESULTS, _with(RESULT, notes="ok\u0007"), "control_character", "notes"),
        # integers within int64
        (c.TRACKS, _with(TRACK, ts_ms=INT64_MAX + 1), "int_out_of_range", "ts_ms"),
        (c.TRACKS, _with(TRACK, ts_ms=2**64 - 1), "int_out_of_range", "ts_ms"),
        (c.TRACKS, _with(TRACK, ts_ms=...) + b"", "missing_field", "ts_ms"),
        (
            c.TRACKS,
            b'{"conveyance_id":"X","ts_ms":18446744073709551616,"lat":1,"lon":1,"speed_kmh":1}',
            "wrong_type",
            "ts_ms",
        ),  # beyond u64 orjson gives a float
        (c.LOGISTICS, _with(MANIFEST, manifest_items=INT64_MAX + 1), "int_out_of_range", "manifest_items"),
        (c.DECLARATIONS, _with(DECL, value_cny=INT64_MAX + 1), "int_out_of_range", "value_cny"),
        (c.DECLARATIONS, _with(DECL, quantity=2**62), "impossible_value", "quantity"),
        # floats finite: orjson refuses 1e400 itself
        (c.DECLARATIONS, _with(DECL, net_kg=0.0)[:-1] + b',"gross_kg":1e400}', "non_finite_number", None),
        (c.DECLARATIONS, _with(DECL)[:-1] + b',"gross_kg":NaN}', "malformed_json", None),
    ],
)
def test_strict_edge_refusals(topic: str, raw: bytes, reason: str, field: str | None) -> None:
    with pytest.raises(c.ContractError) as err:
        decode_event(topic, raw, NOW)
    assert (err.value.reason, err.value.field) == (reason, field), str(err.value)
    assert err.value.reason in c.REASONS or err.value.field is None
    assert "send" in str(err.value) or "remove" in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("kind", "base", "field", "value", "reason"),
    [
        ("declaration", DECL, "gross_kg", float("inf"), "non_finite_number"),
        ("declaration", DECL, "value_cny", float("-inf"), "non_finite_number"),
        ("track", TRACK, "lat", float("nan"), "non_finite_number"),
        ("inspection_result", RESULT, "found_value_cny", float("nan"), "non_finite_number"),
        ("track", TRACK, "ts_ms", -(2**63) - 1, "int_out_of_range"),
        ("track", TRACK, "speed_kmh", 10**30, "int_out_of_range"),
    ],
)
def test_python_callers_cannot_pass_non_finite_or_huge_numbers(
    kind: str, base: dict, field: str, value: object, reason: str
) -> None:
    """The API and the simulator call validate on Python dicts: no JSON parser stands in front of them."""
    with pytest.raises(c.ContractError) as err:
        c.validate(kind, {**base, field: value}, NOW)
    assert (err.value.reason, err.value.field) == (reason, field)


@pytest.mark.parametrize(
    ("kind", "record"),
    [
        ("declaration", {**DECL, "goods": "coal\tbulk\nsecond line", "purpose": "medical"}),
        ("declaration", {**DECL, "goods": "煤炭 (烟煤)\u00a0块", "enterprise_id": "企业-0042"}),
        ("declaration", {**DECL, "gross_kg": -0.0, "net_kg": -0.0}),  # -0.0 == 0.0: accepted as zero
        ("track", {**TRACK, "lat": -0.0, "ts_ms": NOW}),
        ("inspection_result", {**RESULT, "notes": ""}),  # the page sends empty notes
        ("inspection_result", {**RESULT, "notes": "line 1\nline 2\twith tab"}),
        ("logistics", {**MANIFEST, "manifest_items": 0}),
        ("declaration", {**DECL, "gross_kg": 0.001, "net_kg": 0.001}),  # a gram, the smallest weight
    ],
)
def test_well_formed_edge_values_pass(kind: str, record: dict) -> None:
    assert c.validate(kind, dict(record), NOW) == record


def test_list_elements_must_have_their_declared_type() -> None:
    fields = (
        c.Field("rule_ids", c.LIST, items=(str,), max_len=3),
        c.Field("weights", c.LIST, required=False, items=(int, float)),
    )
    assert c.check_fields("probe", fields, {"rule_ids": ["a", "b"], "weights": [1, 2.5]})
    cases = [
        ({"rule_ids": ["a", 1]}, "wrong_item_type"),
        ({"rule_ids": ["a", None]}, "wrong_item_type"),
        ({"rule_ids": ["a\u0000"]}, "control_character"),
        ({"rule_ids": ["a", "b", "c", "d"]}, "impossible_value"),
        ({"rule_ids": [], "weights": [1, True]}, "wrong_item_type"),
        ({"rule_ids": "a"}, "wrong_type"),
    ]
    for obj, reason in cases:
        with pytest.raises(c.ContractError) as err:
            c.check_fields("probe", fields, obj)
        assert err.value.reason == reason, (obj, str(err.value))


def test_fast_path_accepts_exactly_what_the_slow_path_accepts() -> None:
    """Every field the generated fast path passes, the authoritative checks pass too, and vice versa."""
    probes: list[object] = ["", "x", "x" * 65, "a\u0000", "a\tb", "a\u00a0", 0, -1, 2**63, 1.5, -0.0]
    probes += [float("inf"), float("nan"), True, None, [], ["x"]]
    for kind, base in (
        ("declaration", DECL),
        ("track", TRACK),
        ("logistics", MANIFEST),
        ("inspection_result", RESULT),
    ):
        for f in c.CONTRACTS[kind]:
            for v in probes:
                obj = {**base, f.name: v}
                fast = c._FAST[kind](obj)
                try:
                    c._field_errors(kind, c.CONTRACTS[kind], obj)
                    slow = True
                except c.ContractError:
                    slow = False
                assert fast == slow, (kind, f.name, v)


def test_a_control_character_is_dead_lettered_with_its_reason() -> None:
    raw = _with(DECL, purpose="medical\u0000")
    with pytest.raises(c.ContractError) as err:
        decode_event(c.DECLARATIONS, raw, NOW)
    dl = dead_letter(topic=c.DECLARATIONS, partition=0, offset=7, raw=raw, error=err.value, now_ms=NOW)
    assert (dl["reason"], dl["field"]) == ("control_character", "purpose")
    assert "U+0000" in dl["error"] and "remove it" in dl["error"]
