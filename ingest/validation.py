"""Sensor payload validation: raw bytes from a sensor → a `SensorReading`, or a precise reason.

A payload is one JSON object in FIWARE Smart Data Models style:

    {"sensorId": "aq-pasar-01", "dateObserved": "2026-11-23T03:15:00Z", "seq": 812,
     "pm25": 41.7, "pm10": 73.2}

`sensorId` may be left out when the MQTT topic names the sensor; `seq` (the device's own
counter) is optional. `unitCode` (optional) maps attributes to UN/CEFACT unit codes, e.g.
`{"waterLevel": "CMT"}`. Every other key is a measured attribute of the sensor's type.

Values are stored in one standard unit per quantity. A device reporting another unit says so
in the payload (`unitCode`) or in its registry entry (`units`); its values are converted on
ingest, and a unit that does not fit the quantity rejects the reading.

Bounds are checked before anything else, so that no payload costs more than a glance: its size
(`ingest.max_reading_bytes`), the depth of its JSON, integers that fit a number, a time within
`ingest.earliest_observation` .. now + `ingest.max_future_skew_s`. Whatever passes is storable.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pantau.codec import DecodeError, load_json
from pantau.ids import stable_id
from pantau.messages import INT64_MAX, SensorReading
from pantau.poison import BadInput
from pantau.settings import IngestSettings, SensorSettings, SettingsError

# A reading is a flat object with at most a `unitCode` object inside: depth 2.
MAX_READING_DEPTH = 8
_DEFAULTS = IngestSettings()
EARLIEST_OBSERVATION = _DEFAULTS.earliest_observation
MAX_READING_BYTES = _DEFAULTS.max_reading_bytes


class InvalidReading(BadInput):
    """Why a payload was rejected, worded for the person reading the dead-letter topic."""


class UnitError(ValueError):
    """A unit that is unknown or does not fit the quantity; says which units would."""


@dataclass(frozen=True)
class Unit:
    """A unit a device may report in; `per_standard` of it make one of the standard unit."""

    name: str
    code: str
    dimension: str
    per_standard: float

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


# The code is the UN/CEFACT common code, which FIWARE's `unitCode` uses. Converting by
# dividing by `per_standard` keeps e.g. 231 cm → 2.31 m exact, where multiplying by 0.01
# would not.
UNITS: tuple[Unit, ...] = (
    Unit("m", "MTR", "length", 1.0),
    Unit("cm", "CMT", "length", 100.0),
    Unit("mm", "MMT", "length", 1000.0),
    Unit("µg/m³", "GQ", "mass concentration", 1.0),
    Unit("°C", "CEL", "temperature", 1.0),
    Unit("fraction", "C62", "ratio", 1.0),
    Unit("%", "P1", "ratio", 100.0),
    Unit("dB(A)", "2N", "sound level", 1.0),
)

# Other spellings seen in device manuals and configs (µ as the micro sign or the Greek mu).
_ALIASES: Mapping[str, str] = {
    "ug/m3": "µg/m³",
    "µg/m3": "µg/m³",
    "\u03bcg/m³": "µg/m³",
    "\u03bcg/m3": "µg/m³",
    "degC": "°C",
    "1": "fraction",
    "percent": "%",
    "dB": "dB(A)",
    "dBA": "dB(A)",
}

_UNIT_BY_NAME: Mapping[str, Unit] = {
    **{unit.name: unit for unit in UNITS},
    **{unit.code: unit for unit in UNITS},
    **{alias: next(u for u in UNITS if u.name == name) for alias, name in _ALIASES.items()},
}


@dataclass(frozen=True)
class Quantity:
    unit: str
    low: float
    high: float
    dimension: str


# Plausible physical ranges, not alarm thresholds: outside them the sensor is broken or the
# payload is garbled.
QUANTITIES: Mapping[str, Quantity] = {
    "pm25": Quantity("µg/m³", 0.0, 1000.0, "mass concentration"),
    "pm10": Quantity("µg/m³", 0.0, 2000.0, "mass concentration"),
    "temperature": Quantity("°C", -10.0, 60.0, "temperature"),
    "relativeHumidity": Quantity("fraction 0..1", 0.0, 1.0, "ratio"),
    "noiseLevel": Quantity("dB(A)", 0.0, 160.0, "sound level"),
    "waterLevel": Quantity("m", -5.0, 30.0, "length"),
    "fillingLevel": Quantity("fraction 0..1", 0.0, 1.0, "ratio"),
}

ATTRIBUTES_BY_TYPE: Mapping[str, frozenset[str]] = {
    "air_quality": frozenset({"pm25", "pm10", "temperature", "relativeHumidity", "noiseLevel"}),
    "water_level": frozenset({"waterLevel", "temperature"}),
    "waste_container": frozenset({"fillingLevel", "temperature"}),
}

_RESERVED = frozenset({"sensorId", "dateObserved", "seq", "unitCode"})


def accepted_units(quantity: str) -> str:
    """`m (MTR), cm (CMT), mm (MMT)`: the units a quantity may be reported in."""
    dimension = QUANTITIES[quantity].dimension
    return ", ".join(str(unit) for unit in UNITS if unit.dimension == dimension)


def resolve_unit(text: str, quantity: str) -> Unit:
    """The unit named by `text` (a name such as `cm`, or a UN/CEFACT code such as `CMT`)."""
    unit = _UNIT_BY_NAME.get(text.strip())
    expected = QUANTITIES[quantity]
    if unit is None:
        raise UnitError(
            f"unit {text!r} is unknown; accepted for {quantity}: {accepted_units(quantity)}"
        )
    if unit.dimension != expected.dimension:
        raise UnitError(
            f"unit {text!r} is a {unit.dimension} unit ({unit}), which does not fit {quantity} "
            f"({expected.dimension}); accepted: {accepted_units(quantity)}"
        )
    return unit


def verify_units(sensors: Iterable[SensorSettings]) -> None:
    """Raise SettingsError naming every registry `units` entry that cannot be used.

    Ingest calls this at start-up, so a typo in the registry stops it with the sensor's name
    instead of dead-lettering every reading of that sensor.
    """
    problems: list[str] = []
    for sensor in sensors:
        allowed = ATTRIBUTES_BY_TYPE[sensor.type]
        for name, text in sensor.units.items():
            if name not in allowed:
                problems.append(
                    f"sensor {sensor.id}: units.{name}: not a quantity of {sensor.type} sensors "
                    f"(expected some of: {', '.join(sorted(allowed))})"
                )
                continue
            try:
                resolve_unit(text, name)
            except UnitError as exc:
                problems.append(f"sensor {sensor.id}: units.{name}: {exc}")
    if problems:
        raise SettingsError("\n".join(problems))


class SeqTracker:
    """The seq values recently ingested per sensor, so a reading sent twice is rejected.

    Bounded: per sensor the last `window` seqs claimed, in arrival order. A reading that
    arrives late (a seq lower than the last, never seen) passes; so does a repeat older than
    the window, and a device whose counter restarted is held up only for the seqs it sent
    within the window. Such repeats keep their reading id (stable_id), so they are stored once
    downstream anyway; this check catches the common case early, with a reason the sender sees.

    In memory, per ingest process. Shared by threads, hence the lock.
    """

    # 1024 seqs: 17 minutes of a sensor reporting every second, or a gateway's backlog of
    # about that size sent twice; under 100 kB per sensor.
    def __init__(self, window: int = 1024) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self._window = window
        self._order: dict[str, deque[int]] = {}
        self._seen: dict[str, set[int]] = {}
        self._lock = threading.Lock()

    def claim(self, reading: SensorReading) -> None:
        """Remember the reading's seq; InvalidReading if it was already claimed."""
        sensor_id, seq = reading.sensor_id, reading.seq
        with self._lock:
            seen = self._seen.setdefault(sensor_id, set())
            if seq in seen:
                raise InvalidReading(
                    f"duplicate seq {seq} for sensor {sensor_id} (already ingested)"
                )
            order = self._order.setdefault(sensor_id, deque())
            if len(order) >= self._window:
                seen.discard(order.popleft())
            order.append(seq)
            seen.add(seq)

    def release(self, reading: SensorReading) -> None:
        """Forget a claim whose reading did not reach Kafka, so the sender's retry passes."""
        with self._lock:
            seen = self._seen.get(reading.sensor_id)
            if seen is None or reading.seq not in seen:
                return
            seen.discard(reading.seq)
            self._order[reading.sensor_id].remove(reading.seq)


def parse_reading(
    payload: bytes,
    *,
    topic_sensor_id: str | None,
    registry: Mapping[str, SensorSettings],
    now: datetime,
    max_future_skew_s: float,
    earliest: datetime = EARLIEST_OBSERVATION,
    max_bytes: int = MAX_READING_BYTES,
    gateway: str | None = None,
) -> SensorReading:
    if len(payload) > max_bytes:
        raise InvalidReading(
            f"payload is {len(payload)} bytes; a reading may have at most {max_bytes} "
            "(ingest.max_reading_bytes)"
        )
    try:
        data = load_json(payload, max_depth=MAX_READING_DEPTH)
    except DecodeError as exc:
        # "payload is not JSON: ...", "payload: JSON nested deeper than 8 levels", ...
        joined = f"payload is {exc}" if str(exc).startswith("not JSON") else f"payload: {exc}"
        raise InvalidReading(joined) from exc
    return validate_reading(
        data,
        topic_sensor_id=topic_sensor_id,
        registry=registry,
        now=now,
        max_future_skew_s=max_future_skew_s,
        earliest=earliest,
        gateway=gateway,
    )


def validate_reading(
    data: object,
    *,
    topic_sensor_id: str | None,
    registry: Mapping[str, SensorSettings],
    now: datetime,
    max_future_skew_s: float,
    earliest: datetime = EARLIEST_OBSERVATION,
    require_sensor_id: bool = False,
    gateway: str | None = None,
) -> SensorReading:
    """A decoded payload → a `SensorReading`; `require_sensor_id` where no topic names one.
    `gateway`: the authenticated sender, recorded with the reading."""
    if not isinstance(data, dict):
        raise InvalidReading(f"payload must be a JSON object, got {type(data).__name__}")

    sensor_id = _sensor_id(data, topic_sensor_id, require_sensor_id)
    sensor = registry.get(sensor_id)
    if sensor is None:
        raise InvalidReading(f"unknown sensor {_shown(sensor_id)}: not in the sensor registry")

    observed = _timestamp(data, sensor_id, now, max_future_skew_s, earliest)
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
        gateway=gateway,
    )


def _sensor_id(data: Mapping[str, object], topic_sensor_id: str | None, required: bool) -> str:
    raw = data.get("sensorId", topic_sensor_id)
    if raw is None:
        if required:
            raise InvalidReading("missing sensorId (every reading must name its sensor)")
        raise InvalidReading("missing sensorId (neither in the payload nor in the MQTT topic)")
    if not isinstance(raw, str) or not raw:
        raise InvalidReading(f"sensorId must be a non-empty string, got {_shown(raw)}")
    if topic_sensor_id is not None and raw != topic_sensor_id:
        raise InvalidReading(
            f"sensorId {_shown(raw)} does not match the MQTT topic's sensor {topic_sensor_id!r}"
        )
    return raw


def _timestamp(
    data: Mapping[str, object],
    sensor_id: str,
    now: datetime,
    max_future_skew_s: float,
    earliest: datetime,
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
            f"sensor {sensor_id}: dateObserved {_shown(raw)} is not an ISO 8601 timestamp"
        ) from exc
    if observed.tzinfo is None:
        raise InvalidReading(
            f"sensor {sensor_id}: dateObserved {_shown(raw)} has no time zone "
            "(expected e.g. ...Z or +07:00)"
        )
    try:
        utc = observed.astimezone(UTC)
    except OverflowError as exc:
        # Year 1 with a positive offset, or 9999 with a negative one: no such UTC time.
        raise InvalidReading(
            f"sensor {sensor_id}: dateObserved {_shown(raw)} is before {earliest.date()} "
            "(ingest.earliest_observation): the sensor's clock was never set"
        ) from exc
    if utc < earliest:
        raise InvalidReading(
            f"sensor {sensor_id}: dateObserved {_shown(raw)} is before {earliest.date()} "
            "(ingest.earliest_observation): the sensor's clock was never set"
        )
    ahead = (utc - now).total_seconds()
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
        raise InvalidReading(
            f"sensor {sensor_id}: seq must be a non-negative integer, got {_shown(raw)}"
        )
    if raw > INT64_MAX:
        raise InvalidReading(
            f"sensor {sensor_id}: seq {_shown(raw)} does not fit a 64-bit counter "
            f"(at most {INT64_MAX})"
        )
    return raw


def _shown(value: object) -> str:
    """A value as a reason quotes it: its repr, clipped (a hostile value may be megabytes)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _values(data: Mapping[str, object], sensor: SensorSettings) -> dict[str, float]:
    allowed = ATTRIBUTES_BY_TYPE[sensor.type]
    unit_codes = _unit_codes(data, sensor, allowed)
    values: dict[str, float] = {}
    for name, raw in data.items():
        if name in _RESERVED:
            continue
        if name not in allowed:
            raise InvalidReading(
                f"sensor {sensor.id} ({sensor.type}): unknown attribute {_shown(name)} "
                f"(expected some of: {', '.join(sorted(allowed))})"
            )
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise InvalidReading(f"sensor {sensor.id}: {name} must be a number, got {_shown(raw)}")
        quantity = QUANTITIES[name]
        unit = _unit_of(name, sensor, unit_codes)
        try:
            value = float(raw) / (unit.per_standard if unit is not None else 1.0)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or not quantity.low <= value <= quantity.high:
            raise InvalidReading(_out_of_range(sensor, name, raw, value, unit))
        values[name] = value
    if not values:
        raise InvalidReading(
            f"sensor {sensor.id} ({sensor.type}): no measured value "
            f"(expected some of: {', '.join(sorted(allowed))})"
        )
    return values


def _unit_codes(
    data: Mapping[str, object], sensor: SensorSettings, allowed: frozenset[str]
) -> Mapping[str, str]:
    raw = data.get("unitCode")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidReading(
            f"sensor {sensor.id}: unitCode must be an object mapping attributes to UN/CEFACT "
            f'codes, e.g. {{"waterLevel": "CMT"}}, got {_shown(raw)}'
        )
    for name, code in raw.items():
        if name not in allowed:
            raise InvalidReading(
                f"sensor {sensor.id} ({sensor.type}): unitCode names unknown attribute "
                f"{_shown(name)} (expected some of: {', '.join(sorted(allowed))})"
            )
        if not isinstance(code, str):
            raise InvalidReading(
                f"sensor {sensor.id}: unitCode of {name} must be a string such as 'MTR', "
                f"got {_shown(code)}"
            )
    return raw


def _unit_of(name: str, sensor: SensorSettings, unit_codes: Mapping[str, str]) -> Unit | None:
    # The payload's own unitCode wins over the registry: it describes this very value, while
    # the registry entry may predate a firmware update that changed the unit.
    code = unit_codes.get(name)
    if code is not None:
        try:
            return resolve_unit(code, name)
        except UnitError as exc:
            raise InvalidReading(f"sensor {sensor.id}: unitCode of {name}: {exc}") from exc
    declared = sensor.units.get(name)
    if declared is None:
        return None
    try:
        return resolve_unit(declared, name)
    except UnitError as exc:
        raise InvalidReading(
            f"sensor {sensor.id}: units.{name} in the sensor registry: {exc}"
        ) from exc


def _out_of_range(
    sensor: SensorSettings, name: str, raw: float, value: float, unit: Unit | None
) -> str:
    quantity = QUANTITIES[name]
    shown = _shown(raw)
    if unit is not None and unit.per_standard != 1.0:
        shown = f"{shown} {unit.name} ({value:g} {quantity.unit})"
    reason = (
        f"sensor {sensor.id}: {name} = {shown} is outside the plausible range "
        f"{quantity.low:g}..{quantity.high:g} {quantity.unit}"
    )
    if quantity.dimension == "ratio" and unit is None and 1.0 < value <= 100.0:
        reason += (
            f" (if the device reports percent, declare it: units {{{name}: '%'}} in the "
            "sensor registry, or unitCode P1 in the payload)"
        )
    return reason
