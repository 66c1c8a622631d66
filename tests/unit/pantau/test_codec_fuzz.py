"""Property: whatever the bytes, decoding answers a message or a DecodeError with a reason,
never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pantau.codec import DecodeError, decode, decode_as, encode, load_json
from pantau.messages import BY_KIND, Message
from tests.factories import SAMPLES
from tests.strategies import binary_layout, deeply_nested, json_values, mutated_records, to_json

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_explains(data: bytes, cls: type[Message] | None = None) -> Message | None:
    try:
        return decode(data) if cls is None else decode_as(data, cls)
    except DecodeError as exc:
        reason = str(exc)
    assert reason.strip(), "a DecodeError without a reason"
    # The reason is stored in the dead_letters table: it must be storable text.
    assert "\x00" not in reason
    reason.encode()
    return None


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes(data: bytes) -> None:
    decodes_or_explains(data)
    for cls in BY_KIND.values():
        decodes_or_explains(data, cls)


@FUZZ
@given(json_values)
def test_any_json(value: object) -> None:
    data = to_json(value)
    decodes_or_explains(data)
    decodes_or_explains(binary_layout(data, b"\xff\xd8\xff\xd9"))


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_any_change_to_a_valid_message(kind: str) -> None:
    sample = SAMPLES[kind]
    cls = type(sample)

    @FUZZ
    @given(mutated_records(sample))
    def check(record: tuple[dict[str, object], bytes]) -> None:
        message = decodes_or_explains(record[1], cls)
        if message is not None:
            # What decodes encodes again and decodes to the same message.
            assert decode_as(encode(message), cls) == message

    check()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (deeply_nested(10_000), "nested deeper than"),
        (deeply_nested(40), "nested deeper than 32 levels"),
        (b'{"seq": ' + b"7" * 5000 + b"}", "an integer of more than 4300 digits"),
        (b"\xff\xfe\x00{", "not JSON"),
        (b'{"kind": "sensor_reading", "x": "a\\u0000b"}', "NUL character"),
        (b'{"kind": "sensor_reading", "x": "a\\ud800b"}', "lone UTF-16 surrogate"),
    ],
)
def test_hostile_json_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(data)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("seq", 10**30, "seq: Input should be less than or equal to 9223372036854775807"),
        ("seq", 2**63, "seq: Input should be less than or equal to 9223372036854775807"),
        ("ts_capture", "0001-01-01T00:00:00+07:00", "has no UTC equivalent"),
        ("ts_capture", "1950-01-01T00:00:00Z", "outside 1970..2199"),
        ("sensor_type", "air\x00quality", "NUL character"),
    ],
)
def test_values_the_database_cannot_hold_are_refused_at_decode(
    field: str, value: object, reason: str
) -> None:
    document = SAMPLES["sensor_reading"].model_dump(mode="json")
    document[field] = value
    with pytest.raises(DecodeError) as caught:
        decode_as(json.dumps(document).encode(), type(SAMPLES["sensor_reading"]))
    assert reason in str(caught.value)


def test_a_track_id_beyond_bigint_is_refused() -> None:
    document = SAMPLES["detections"].model_dump(mode="json")
    document["boxes"][0]["track_id"] = 10**30
    with pytest.raises(DecodeError, match="track_id"):
        decode_as(json.dumps(document).encode(), type(SAMPLES["detections"]))


def test_load_json_keeps_ordinary_documents() -> None:
    assert load_json(b'{"a": [1, 2.5, "x", null, true], "b": {"c": "\\u00e9"}}') == {
        "a": [1, 2.5, "x", None, True],
        "b": {"c": "é"},
    }
