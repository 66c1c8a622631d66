from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ingest.validation import InvalidReading, parse_reading
from pantau.settings import SensorSettings

NOW = datetime(2026, 11, 23, 3, 0, 0, tzinfo=UTC)
REGISTRY = {
    "aq-01": SensorSettings(id="aq-01", type="air_quality"),
    "wl-01": SensorSettings(id="wl-01", type="water_level"),
    "tps-01": SensorSettings(id="tps-01", type="waste_container"),
}


def payload(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def parse(data: bytes, topic_sensor: str | None = None):  # type: ignore[no-untyped-def]
    return parse_reading(
        data, topic_sensor_id=topic_sensor, registry=REGISTRY, now=NOW, max_future_skew_s=120
    )


def test_valid_air_quality_reading() -> None:
    reading = parse(
        payload(
            sensorId="aq-01", dateObserved="2026-11-23T09:59:00+07:00", seq=5, pm25=41.7, pm10=73
        )
    )
    assert reading.sensor_id == "aq-01"
    assert reading.sensor_type == "air_quality"
    assert reading.values == {"pm25": 41.7, "pm10": 73.0}
    assert reading.ts_capture == datetime(2026, 11, 23, 2, 59, tzinfo=UTC)
    assert reading.seq == 5


def test_sensor_named_by_topic_and_seq_from_time() -> None:
    reading = parse(payload(dateObserved="2026-11-23T02:59:00Z", waterLevel=2.31), "wl-01")
    assert reading.sensor_id == "wl-01"
    assert reading.seq == int(datetime(2026, 11, 23, 2, 59, tzinfo=UTC).timestamp() * 1000)


def test_redelivery_gives_the_same_id_and_a_new_reading_another() -> None:
    body = payload(sensorId="tps-01", dateObserved="2026-11-23T02:59:00Z", seq=9, fillingLevel=0.93)
    assert parse(body).id == parse(body).id
    other = payload(
        sensorId="tps-01", dateObserved="2026-11-23T02:59:30Z", seq=10, fillingLevel=0.94
    )
    assert parse(other).id != parse(body).id


OK_TIME = "2026-11-23T02:59:00Z"


@pytest.mark.parametrize(
    ("data", "topic_sensor", "reason"),
    [
        (b"{not json", None, "payload is not JSON"),
        (b"[1, 2]", None, "payload must be a JSON object"),
        (payload(dateObserved=OK_TIME, pm25=3), None, "missing sensorId"),
        (payload(sensorId="ghost", dateObserved=OK_TIME, pm25=3), None, "unknown sensor 'ghost'"),
        (
            payload(sensorId="aq-01", dateObserved=OK_TIME, pm25=3),
            "wl-01",
            "does not match the MQTT topic",
        ),
        (payload(sensorId="aq-01", pm25=3), None, "missing timestamp dateObserved"),
        (
            payload(sensorId="aq-01", dateObserved="kemarin", pm25=3),
            None,
            "is not an ISO 8601 timestamp",
        ),
        (
            payload(sensorId="aq-01", dateObserved="2026-11-23T02:59:00", pm25=3),
            None,
            "has no time zone",
        ),
        (
            payload(sensorId="aq-01", dateObserved="2026-11-23T04:00:00Z", pm25=3),
            None,
            "3600 s in the future",
        ),
        (
            payload(sensorId="aq-01", dateObserved=OK_TIME, seq=-1, pm25=3),
            None,
            "seq must be a non-negative integer",
        ),
        (
            payload(sensorId="aq-01", dateObserved=OK_TIME, seq="7", pm25=3),
            None,
            "seq must be a non-negative integer",
        ),
        (
            payload(sensorId="aq-01", dateObserved=OK_TIME, pm2_5=3),
            None,
            "unknown attribute 'pm2_5'",
        ),
        (
            payload(sensorId="aq-01", dateObserved=OK_TIME, waterLevel=2.0),
            None,
            "unknown attribute 'waterLevel'",
        ),
        (
            payload(sensorId="aq-01", dateObserved=OK_TIME, pm25="tinggi"),
            None,
            "pm25 must be a number",
        ),
        (payload(sensorId="aq-01", dateObserved=OK_TIME, pm25=True), None, "pm25 must be a number"),
        (
            payload(sensorId="aq-01", dateObserved=OK_TIME, pm25=-7.5),
            None,
            "outside the plausible range 0..1000 µg/m³",
        ),
        (
            payload(sensorId="tps-01", dateObserved=OK_TIME, fillingLevel=93),
            None,
            "outside the plausible range 0..1",
        ),
        (
            b'{"sensorId": "aq-01", "dateObserved": "2026-11-23T02:59:00Z", "pm25": NaN}',
            None,
            "outside the plausible range",
        ),
        (payload(sensorId="aq-01", dateObserved=OK_TIME), None, "no measured value"),
    ],
)
def test_invalid_payloads_are_rejected_with_a_precise_reason(
    data: bytes, topic_sensor: str | None, reason: str
) -> None:
    with pytest.raises(InvalidReading) as caught:
        parse(data, topic_sensor)
    assert reason in str(caught.value)


def test_small_clock_skew_is_tolerated() -> None:
    ahead = (NOW + timedelta(seconds=60)).isoformat()
    assert parse(payload(sensorId="aq-01", dateObserved=ahead, pm25=3)).values == {"pm25": 3.0}
