"""Property: whatever a sensor sends, validation answers a storable reading or a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.validation import InvalidReading, parse_reading, validate_reading
from pantau.codec import decode_as, encode
from pantau.messages import SensorReading
from pantau.settings import SensorSettings
from tests.strategies import NASTY_TIMES, deeply_nested, json_values, to_json

NOW = datetime(2026, 11, 23, 3, 0, 0, tzinfo=UTC)
REGISTRY = {
    "aq-01": SensorSettings(id="aq-01", type="air_quality"),
    "wl-01": SensorSettings(id="wl-01", type="water_level", units={"waterLevel": "cm"}),
    "tps-01": SensorSettings(id="tps-01", type="waste_container"),
}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reading_or_reason(data: bytes, topic_sensor: str | None = None) -> SensorReading | None:
    try:
        reading = parse_reading(
            data, topic_sensor_id=topic_sensor, registry=REGISTRY, now=NOW, max_future_skew_s=120
        )
    except InvalidReading as exc:
        reason = str(exc)
    else:
        # Passed: it travels and comes back the same (so the sink and the streams can read it).
        assert decode_as(encode(reading), SensorReading) == reading
        return reading
    assert reason.strip()
    assert len(reason) < 2000, "a reason that quotes the whole input"
    return None


@FUZZ
@given(st.binary(max_size=500))
def test_any_bytes(data: bytes) -> None:
    reading_or_reason(data, "aq-01")


@FUZZ
@given(json_values)
def test_any_json(value: object) -> None:
    reading_or_reason(to_json(value))


readings = st.fixed_dictionaries(
    {
        "sensorId": st.sampled_from([*REGISTRY, "unknown", ""]) | json_values,
        "dateObserved": st.sampled_from(["2026-11-23T02:59:00Z", *NASTY_TIMES]) | json_values,
    },
    optional={
        "seq": st.integers() | json_values,
        "pm25": st.floats() | st.integers() | json_values,
        "waterLevel": st.floats() | st.integers() | json_values,
        "fillingLevel": st.floats() | st.integers() | json_values,
        "unitCode": st.dictionaries(st.sampled_from(["waterLevel", "pm25"]), json_values)
        | json_values,
    },
)


@FUZZ
@given(readings)
def test_readings_close_to_valid_ones(document: dict[str, object]) -> None:
    reading = reading_or_reason(to_json(document))
    if reading is not None:
        assert reading.sensor_id in REGISTRY
        assert reading.seq <= 2**63 - 1


def test_structures_not_from_json_are_reasons_too() -> None:
    # The HTTP ingest hands over items it parsed itself.
    for item in (None, [], "x", 7, {"sensorId": object()}):
        with pytest.raises(InvalidReading):
            validate_reading(
                item,
                topic_sensor_id=None,
                registry=REGISTRY,
                now=NOW,
                max_future_skew_s=120,
                require_sensor_id=True,
            )


def valid(**fields: object) -> dict[str, object]:
    return {"sensorId": "aq-01", "dateObserved": "2026-11-23T02:59:00Z", "pm25": 40, **fields}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (json.dumps(valid(pad="x" * 300_000)).encode(), "a reading may have at most 262144"),
        (deeply_nested(10_000), "nested deeper than"),
        (json.dumps(valid(pm25=10**400)).encode(), "pm25 = an integer of 401 digits is outside"),
        (
            b'{"sensorId": "aq-01", "pm25": ' + b"9" * 5000 + b"}",
            "an integer of more than 4300 digits",
        ),
        (json.dumps(valid(dateObserved="0001-01-01T00:00:00+07:00")).encode(), "never set"),
        (json.dumps(valid(dateObserved="0001-01-01T00:00:00Z")).encode(), "never set"),
        (json.dumps(valid(dateObserved="2001-01-01T00:00:00Z")).encode(), "before 2015-01-01"),
        (json.dumps(valid(seq=10**30)).encode(), "does not fit a 64-bit counter"),
        (json.dumps(valid(seq=2**63)).encode(), "does not fit a 64-bit counter"),
        (json.dumps(valid(pm25=float("nan"))).encode(), "outside the plausible range"),
        (json.dumps(valid(pm25=float("inf"))).encode(), "outside the plausible range"),
        (json.dumps(valid(sensorId="aq-01\x00")).encode(), "NUL character"),
        (json.dumps(valid(sensorId="\ud800")).encode(), "lone UTF-16 surrogate"),
        (b'\xff{"sensorId": "aq-01"}', "not JSON"),
    ],
)
def test_what_stopped_the_ingest_is_a_reason_now(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidReading) as caught:
        parse_reading(data, topic_sensor_id=None, registry=REGISTRY, now=NOW, max_future_skew_s=120)
    assert reason in str(caught.value)
