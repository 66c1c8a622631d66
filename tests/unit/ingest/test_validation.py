from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ingest.validation import InvalidReading, SeqTracker, parse_reading, verify_units
from pantau.settings import SensorSettings, SettingsError

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


# ----------------------------------------------------------------- units

UNIT_REGISTRY = {
    **REGISTRY,
    "wl-cm": SensorSettings(id="wl-cm", type="water_level", units={"waterLevel": "cm"}),
    "wl-mm": SensorSettings(id="wl-mm", type="water_level", units={"waterLevel": "MMT"}),
    "tps-pct": SensorSettings(id="tps-pct", type="waste_container", units={"fillingLevel": "%"}),
    "aq-pct": SensorSettings(
        id="aq-pct", type="air_quality", units={"relativeHumidity": "%", "pm25": "ug/m3"}
    ),
    "wl-furlong": SensorSettings(
        id="wl-furlong", type="water_level", units={"waterLevel": "furlong"}
    ),
}


def reading(sensor_id: str, **fields: object) -> bytes:
    """A payload of `sensor_id` observed at OK_TIME, with the given attributes."""
    return payload(sensorId=sensor_id, dateObserved=OK_TIME, **fields)


def parse_units(data: bytes):  # type: ignore[no-untyped-def]
    return parse_reading(
        data, topic_sensor_id=None, registry=UNIT_REGISTRY, now=NOW, max_future_skew_s=120
    )


@pytest.mark.parametrize(
    ("data", "values"),
    [
        # Declared in the sensor registry.
        (reading("wl-cm", waterLevel=231), {"waterLevel": 2.31}),
        (reading("wl-mm", waterLevel=2310), {"waterLevel": 2.31}),
        (reading("tps-pct", fillingLevel=93), {"fillingLevel": 0.93}),
        (
            reading("aq-pct", relativeHumidity=65, pm25=41.7),
            {"relativeHumidity": 0.65, "pm25": 41.7},
        ),
        # Declared in the payload, FIWARE style.
        (reading("wl-01", waterLevel=231, unitCode={"waterLevel": "CMT"}), {"waterLevel": 2.31}),
        (reading("wl-01", waterLevel=2310, unitCode={"waterLevel": "MMT"}), {"waterLevel": 2.31}),
        (reading("wl-01", waterLevel=2.31, unitCode={"waterLevel": "MTR"}), {"waterLevel": 2.31}),
        (
            reading("tps-01", fillingLevel=93, unitCode={"fillingLevel": "P1"}),
            {"fillingLevel": 0.93},
        ),
        (
            reading("tps-01", fillingLevel=0.93, unitCode={"fillingLevel": "C62"}),
            {"fillingLevel": 0.93},
        ),
        (
            reading(
                "aq-01",
                pm25=41.7,
                temperature=29.5,
                noiseLevel=71,
                unitCode={"pm25": "GQ", "temperature": "CEL", "noiseLevel": "2N"},
            ),
            {"pm25": 41.7, "temperature": 29.5, "noiseLevel": 71.0},
        ),
        # The payload's unitCode describes this very value, so it wins over the registry.
        (reading("wl-cm", waterLevel=2.31, unitCode={"waterLevel": "MTR"}), {"waterLevel": 2.31}),
        # A unitCode for an attribute this payload leaves out is harmless.
        (
            reading("tps-01", fillingLevel=0.5, unitCode={"temperature": "CEL"}),
            {"fillingLevel": 0.5},
        ),
    ],
)
def test_values_are_converted_to_the_standard_unit(data: bytes, values: dict[str, float]) -> None:
    assert parse_units(data).values == values


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            reading("wl-01", waterLevel=2.31, unitCode={"waterLevel": "CEL"}),
            "sensor wl-01: unitCode of waterLevel: unit 'CEL' is a temperature unit (°C (CEL)), "
            "which does not fit waterLevel (length); accepted: m (MTR), cm (CMT), mm (MMT)",
        ),
        (
            reading("wl-01", waterLevel=2.31, unitCode={"waterLevel": "FOT"}),
            "sensor wl-01: unitCode of waterLevel: unit 'FOT' is unknown; "
            "accepted for waterLevel: m (MTR), cm (CMT), mm (MMT)",
        ),
        (
            reading("tps-01", fillingLevel=93, unitCode={"fillingLevel": "CMT"}),
            "accepted: fraction (C62), % (P1)",
        ),
        (
            reading("aq-01", pm25=41.7, unitCode={"pm25": "P1"}),
            "unit 'P1' is a ratio unit (% (P1)), which does not fit pm25 (mass concentration); "
            "accepted: µg/m³ (GQ)",
        ),
        (
            reading("wl-01", waterLevel=2.31, unitCode="CMT"),
            "sensor wl-01: unitCode must be an object mapping attributes to UN/CEFACT codes",
        ),
        (
            reading("wl-01", waterLevel=2.31, unitCode={"waterLevel": 6}),
            "sensor wl-01: unitCode of waterLevel must be a string such as 'MTR', got 6",
        ),
        (
            reading("wl-01", waterLevel=2.31, unitCode={"pm25": "GQ"}),
            "sensor wl-01 (water_level): unitCode names unknown attribute 'pm25'",
        ),
        (
            reading("wl-furlong", waterLevel=2.31),
            "sensor wl-furlong: units.waterLevel in the sensor registry: unit 'furlong' is unknown",
        ),
        # Converted, then checked against the plausible range in the standard unit.
        (
            reading("wl-01", waterLevel=4500, unitCode={"waterLevel": "CMT"}),
            "waterLevel = 4500 cm (45 m) is outside the plausible range -5..30 m",
        ),
        (
            reading("tps-pct", fillingLevel=0.93 * 1000),
            "fillingLevel = 930.0 % (9.3 fraction 0..1) is outside the plausible range 0..1",
        ),
        # A percentage sent as is gets a hint about declaring the unit.
        (
            reading("tps-01", fillingLevel=93),
            "(if the device reports percent, declare it: units {fillingLevel: '%'}",
        ),
    ],
)
def test_a_unit_that_does_not_fit_is_rejected_with_the_units_accepted(
    data: bytes, reason: str
) -> None:
    with pytest.raises(InvalidReading) as caught:
        parse_units(data)
    assert reason in str(caught.value)


def test_registry_units_are_checked_at_start_up() -> None:
    verify_units(REGISTRY.values())
    verify_units([UNIT_REGISTRY["wl-cm"], UNIT_REGISTRY["tps-pct"], UNIT_REGISTRY["aq-pct"]])
    sensors = [
        UNIT_REGISTRY["wl-furlong"],
        SensorSettings(id="aq-02", type="air_quality", units={"waterLevel": "cm"}),
        SensorSettings(id="tps-02", type="waste_container", units={"fillingLevel": "cm"}),
    ]
    with pytest.raises(SettingsError) as caught:
        verify_units(sensors)
    assert str(caught.value).splitlines() == [
        "sensor wl-furlong: units.waterLevel: unit 'furlong' is unknown; "
        "accepted for waterLevel: m (MTR), cm (CMT), mm (MMT)",
        "sensor aq-02: units.waterLevel: not a quantity of air_quality sensors "
        "(expected some of: noiseLevel, pm10, pm25, relativeHumidity, temperature)",
        "sensor tps-02: units.fillingLevel: unit 'cm' is a length unit (cm (CMT)), which does "
        "not fit fillingLevel (ratio); accepted: fraction (C62), % (P1)",
    ]


# ----------------------------------------------------------------- duplicate seq


def claim_all(tracker: SeqTracker, payloads: list[bytes]) -> list[str]:
    """'ok' or the reason, per payload, in order."""
    outcomes = []
    for data in payloads:
        try:
            tracker.claim(parse(data))
        except InvalidReading as exc:
            outcomes.append(str(exc))
        else:
            outcomes.append("ok")
    return outcomes


def at(second: int, **fields: object) -> bytes:
    return payload(dateObserved=f"2026-11-23T02:59:{second:02d}Z", **fields)


@pytest.mark.parametrize(
    ("payloads", "outcomes"),
    [
        (
            [at(0, sensorId="aq-01", seq=7, pm25=3), at(1, sensorId="aq-01", seq=7, pm25=4)],
            ["ok", "duplicate seq 7 for sensor aq-01 (already ingested)"],
        ),
        # Reordered: lower than the last seq, but never seen.
        (
            [
                at(0, sensorId="aq-01", seq=5, pm25=3),
                at(2, sensorId="aq-01", seq=7, pm25=3),
                at(1, sensorId="aq-01", seq=6, pm25=3),
                at(1, sensorId="aq-01", seq=6, pm25=3),
            ],
            ["ok", "ok", "ok", "duplicate seq 6 for sensor aq-01 (already ingested)"],
        ),
        # Each sensor has its own counter.
        (
            [at(0, sensorId="aq-01", seq=1, pm25=3), at(0, sensorId="wl-01", seq=1, waterLevel=2)],
            ["ok", "ok"],
        ),
        # No device seq: the observation time in ms stands in, so an exact repeat is caught.
        (
            [
                at(0, sensorId="wl-01", waterLevel=2.0),
                at(1, sensorId="wl-01", waterLevel=2.0),
                at(0, sensorId="wl-01", waterLevel=2.0),
            ],
            [
                "ok",
                "ok",
                f"duplicate seq {int(datetime(2026, 11, 23, 2, 59, tzinfo=UTC).timestamp() * 1000)} "
                "for sensor wl-01 (already ingested)",
            ],
        ),
    ],
)
def test_a_seq_already_ingested_is_rejected(payloads: list[bytes], outcomes: list[str]) -> None:
    assert claim_all(SeqTracker(), payloads) == outcomes


def test_seq_memory_is_bounded_per_sensor() -> None:
    tracker = SeqTracker(window=3)
    first = [at(i, sensorId="aq-01", seq=i, pm25=3) for i in range(4)]
    assert claim_all(tracker, first) == ["ok"] * 4
    # The window holds seqs 1, 2 and 3; seq 0 fell out of it.
    assert claim_all(tracker, [first[1], first[0]]) == [
        "duplicate seq 1 for sensor aq-01 (already ingested)",
        "ok",
    ]


def test_a_released_seq_can_be_sent_again() -> None:
    tracker = SeqTracker()
    sent = parse(at(0, sensorId="aq-01", seq=9, pm25=3))
    tracker.claim(sent)
    tracker.release(sent)
    tracker.claim(sent)
    with pytest.raises(InvalidReading, match="duplicate seq 9 for sensor aq-01"):
        tracker.claim(sent)
