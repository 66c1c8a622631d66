from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from ingest.simulate import Simulator
from ingest.validation import InvalidReading, parse_reading
from pantau.settings import SensorSettings

SENSORS = (
    SensorSettings(id="aq-01", type="air_quality"),
    SensorSettings(id="wl-01", type="water_level"),
    SensorSettings(id="tps-01", type="waste_container"),
)
REGISTRY = {s.id: s for s in SENSORS}
START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def run(simulator: Simulator, seconds: int):  # type: ignore[no-untyped-def]
    for i in range(seconds):
        now = START + timedelta(seconds=i * 60)
        for publication in simulator.tick(now):
            yield now, publication


def validate(now: datetime, payload: bytes, topic: str):  # type: ignore[no-untyped-def]
    return parse_reading(
        payload,
        topic_sensor_id=topic.rsplit("/", 1)[1],
        registry=REGISTRY,
        now=now,
        max_future_skew_s=120,
    )


def test_simulated_readings_pass_validation_for_a_whole_day() -> None:
    simulator = Simulator(SENSORS, "pantau/sensors", seed=1)
    values: dict[str, list[float]] = {}
    for now, publication in run(simulator, 24 * 60):
        reading = validate(now, publication.payload, publication.topic)
        for name, value in reading.values.items():
            values.setdefault(name, []).append(value)
    assert set(values) >= {"pm25", "pm10", "waterLevel", "fillingLevel"}
    # Realistic, not constant: Mojokerto's PM2.5 swings through the day, PM10 exceeds PM2.5.
    assert max(values["pm25"]) > 1.5 * min(values["pm25"])
    assert all(p10 > p25 for p10, p25 in zip(values["pm10"], values["pm25"], strict=True))
    assert all(0.2 <= level <= 10 for level in values["waterLevel"])
    assert all(0 <= fill <= 1 for fill in values["fillingLevel"])


def test_every_nth_payload_is_malformed_and_each_is_rejected() -> None:
    simulator = Simulator(SENSORS, "pantau/sensors", malformed_every=4, seed=2)
    publications = list(run(simulator, 40))
    bad = [(now, p) for now, p in publications if p.malformed]
    assert len(bad) == len(publications) // 4
    reasons = set()
    for now, publication in bad:
        try:
            validate(now, publication.payload, publication.topic)
        except InvalidReading as exc:
            reasons.add(str(exc).split(":")[0])
        else:
            raise AssertionError(f"accepted a malformed payload: {publication.payload!r}")
    assert len(reasons) >= 3


def test_payloads_use_fiware_names_and_device_sequence() -> None:
    simulator = Simulator(SENSORS[:1], "pantau/sensors", seed=3)
    first = json.loads(next(iter(simulator.tick(START))).payload)
    second = json.loads(next(iter(simulator.tick(START + timedelta(seconds=1)))).payload)
    assert first["sensorId"] == "aq-01" and first["dateObserved"].endswith("Z")
    assert second["seq"] == first["seq"] + 1
