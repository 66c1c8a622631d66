"""Sensor payload validation: raw bytes from a sensor → a `SensorReading`, or a precise reason.

A payload is one JSON object in FIWARE Smart Data Models style:

    {"sensorId": "aq-pasar-01", "dateObserved": "2026-11-23T03:15:00Z", "seq": 812,
     "pm25": 41.7, "pm10": 73.2}

`sensorId` may be left out when the MQTT topic names the sensor; `seq` (the device's own
counter) is optional. Every other key is a measured attribute of the sensor's type.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pantau.ids import stable_id
from pantau.messages import SensorReading
from pantau.settings import SensorSettings


class InvalidReading(ValueError):
    """Why a payload was rejected, worded for the person reading the dead-letter topic."""


@dataclass(frozen=True)
class Quantity:
    unit: str
    low: float
    high: float


# Plausible physical ranges, not alarm thresholds: outside them the sensor is broken or the
# payload is garbled.
QUANTITIES: Mapping[str, Quantity] = {
    "pm25": Quantity("µg/m³", 0.0, 1000.0),
    "pm10": Quantity("µg/m³", 0.0, 2000.0),
    "temperature": Quantity("°C", -10.0, 60.0),
    "relativeHumidity": Quantity("fraction 0..1", 0.0, 1.0),
    "noiseLevel": Quantity("dB(A)", 0.0, 160.0),
    "waterLevel": Quantity("m", -5.0, 30.0),
    "fillingLevel": Quantity("fraction 0..1", 0.0, 1.0),
}

ATTRIBUTES_BY_TYPE: Mapping[str, frozenset[str]] = {
    "air_quality": frozenset({"pm25", "pm10", "temperature", "relativeHumidity", "noiseLevel"}),
    "water_level": frozenset({"waterLevel", "temperature"}),
    "waste_container": frozenset({"fillingLevel", "temperature"}),
}

_RESERVED = frozenset({"sensorId", "dateObserved", "seq"})


def parse_reading(
    payload: bytes,
    *,
    topic_sensor_id: str | None,
    registry: Mapping[str, SensorSettings],
    now: datetime,
    max_future_skew_s: float,
) -> SensorReading:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidReading(f"payload is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidReading(f"payload must be a JSON object, got {type(data).__name__}")

    sensor_id = _sensor_id(data, topic_sensor_id)
    sensor = registry.get(sensor_id)
    if sensor is None:
        raise InvalidReading(f"unknown sensor {sensor_id!r}: not in the sensor registry")

    observed = _timestamp(data, sensor_id, now, max_future_skew_s)
    seq = _seq(data, sensor_id, observed)
    values = _values(data, sensor)

    return SensorReading(
        id=stable_id("sensor_reading", sensor_id, observed.isoformat(), seq),
        ts_capture=observed,
        seq=seq,
        sensor_id=sensor_id,
        sensor_type=sensor.type,
        values=values,
        ts_ingest=now,
    )


def _sensor_id(data: Mapping[str, object], topic_sensor_id: str | None) -> str:
    raw = data.get("sensorId", topic_sensor_id)
    if raw is None:
        raise InvalidReading("missing sensorId (neither in the payload nor in the MQTT topic)")
    if not isinstance(raw, str) or not raw:
        raise InvalidReading(f"sensorId must be a non-empty string, got {raw!r}")
    if topic_sensor_id is not None and raw != topic_sensor_id:
        raise InvalidReading(
            f"sensorId {raw!r} does not match the MQTT topic's sensor {topic_sensor_id!r}"
        )
    return raw


def _timestamp(
    data: Mapping[str, object], sensor_id: str, now: datetime, max_future_skew_s: float
) -> datetime:
    raw = data.get("dateObserved")
    if raw is None:
        raise InvalidReading(f"sensor {sensor_id}: missing timestamp dateObserved")
    if not isinstance(raw, str):
        raise InvalidReading(f"sensor {sensor_id}: dateObserved must be an ISO 8601 string")
    try:
        observed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidReading(
            f"sensor {sensor_id}: dateObserved {raw!r} is not an ISO 8601 timestamp"
        ) from exc
    if observed.tzinfo is None:
        raise InvalidReading(
            f"sensor {sensor_id}: dateObserved {raw!r} has no time zone "
            "(expected e.g. ...Z or +07:00)"
        )
    ahead = (observed - now).total_seconds()
    if ahead > max_future_skew_s:
        raise InvalidReading(
            f"sensor {sensor_id}: dateObserved is {ahead:.0f} s in the future "
            f"(limit {max_future_skew_s:.0f} s): the sensor's clock is wrong"
        )
    return observed


def _seq(data: Mapping[str, object], sensor_id: str, observed: datetime) -> int:
    raw = data.get("seq")
    if raw is None:
        # No device counter: the observation time in milliseconds is monotonic per sensor.
        return int(observed.timestamp() * 1000)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise InvalidReading(f"sensor {sensor_id}: seq must be a non-negative integer, got {raw!r}")
    return raw


def _values(data: Mapping[str, object], sensor: SensorSettings) -> dict[str, float]:
    allowed = ATTRIBUTES_BY_TYPE[sensor.type]
    values: dict[str, float] = {}
    for name, raw in data.items():
        if name in _RESERVED:
            continue
        if name not in allowed:
            raise InvalidReading(
                f"sensor {sensor.id} ({sensor.type}): unknown attribute {name!r} "
                f"(expected some of: {', '.join(sorted(allowed))})"
            )
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise InvalidReading(f"sensor {sensor.id}: {name} must be a number, got {raw!r}")
        value = float(raw)
        quantity = QUANTITIES[name]
        if not math.isfinite(value) or not quantity.low <= value <= quantity.high:
            raise InvalidReading(
                f"sensor {sensor.id}: {name} = {raw!r} is outside the plausible range "
                f"{quantity.low:g}..{quantity.high:g} {quantity.unit}"
            )
        values[name] = value
    if not values:
        raise InvalidReading(
            f"sensor {sensor.id} ({sensor.type}): no measured value "
            f"(expected some of: {', '.join(sorted(allowed))})"
        )
    return values
