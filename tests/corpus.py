"""The bad-input corpus: what a hostile or broken sender puts on each way into the pipeline.

Every entry is something a real deployment meets sooner or later (a sensor vendor's firmware
bug, a gateway's half-written buffer, a clock never set, a test script run against production)
and that once stopped a stage. Used by tests/integration/test_bad_input.py, which sends each
through its entry point with valid messages behind it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import cv2
import numpy as np

from pantau.messages import Message
from tests.strategies import binary_layout, deeply_nested

# The same every run: a failure names the entry it failed on, and it can be sent again.
_RANDOM = random.Random(20261207)


@dataclass(frozen=True)
class Bad:
    """One bad input: its name (shown when it is not handled as it should be) and its bytes."""

    name: str
    data: bytes | None
    # Kafka only: the record's key (None: keyed like the valid messages of the test).
    key: bytes | None = None
    keyless: bool = False


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


# ---------------------------------------------------------------------------- sensor payloads


def reading_payloads(sensor_id: str, at: datetime) -> list[Bad]:
    """MQTT payloads (and, through `reading_items`, HTTP items) for an air-quality sensor."""
    when = at.isoformat()

    def reading(**fields: Any) -> dict[str, Any]:
        return {"sensorId": sensor_id, "dateObserved": when, "pm25": 30.5, **fields}

    huge = reading(note="x" * (10 * 1024 * 1024))
    return [
        Bad("empty payload", b""),
        Bad("random bytes", _RANDOM.randbytes(300)),
        Bad("invalid UTF-8", b'{"sensorId": "\xff\xfe", "pm25": 1}'),
        Bad("truncated JSON", _json(reading())[:-7]),
        Bad("JSON array", b"[1, 2, 3]"),
        Bad("JSON string", b'"pm25=30"'),
        Bad("JSON null", b"null"),
        Bad("nested 10,000 levels", deeply_nested(10_000)),
        Bad("nested 10,000 levels inside a reading",
            b'{"sensorId": "' + sensor_id.encode() + b'", "pm25": ' + deeply_nested(10_000) + b"}"),
        Bad("10 MiB payload", _json(huge)),
        Bad("400-digit value", _json(reading(pm25=10**400))),
        Bad("5,000-digit value", _json(reading())[:-1] + b', "pm10": ' + b"9" * 5000 + b"}"),
        Bad("5,000-digit seq", _json(reading())[:-1] + b', "seq": ' + b"1" * 5000 + b"}"),
        Bad("seq 10^30", _json(reading(seq=10**30))),
        Bad("seq 2^63", _json(reading(seq=2**63))),
        Bad("negative seq", _json(reading(seq=-1))),
        Bad("seq as text", _json(reading(seq="12"))),
        Bad("dateObserved year 1", _json(reading(dateObserved="0001-01-01T00:00:00Z"))),
        Bad("dateObserved year 1 +07:00", _json(reading(dateObserved="0001-01-01T00:00:00+07:00"))),
        Bad("dateObserved year 9999 -07:00", _json(reading(dateObserved="9999-12-31T23:00:00-07:00"))),
        Bad("dateObserved not a date", _json(reading(dateObserved="kemarin"))),
        Bad("dateObserved without zone", _json(reading(dateObserved=at.replace(tzinfo=None).isoformat()))),
        Bad("dateObserved a day ahead", _json(reading(dateObserved=(at + timedelta(days=1)).isoformat()))),
        Bad("dateObserved missing", _json({"sensorId": sensor_id, "pm25": 30.5})),
        Bad("NaN", _json(reading(pm25=float("nan")))),
        Bad("Infinity", _json(reading(pm25=float("inf")))),
        Bad("-Infinity", _json(reading(pm25=float("-inf")))),
        Bad("value as text", _json(reading(pm25="tinggi"))),
        Bad("value true", _json(reading(pm25=True))),
        Bad("value null", _json(reading(pm25=None))),
        Bad("value a list", _json(reading(pm25=[1, 2]))),
        Bad("value out of range", _json(reading(pm25=5000))),
        Bad("no value", _json({"sensorId": sensor_id, "dateObserved": when})),
        Bad("unknown attribute", _json(reading(radiation=3))),
        Bad("unknown sensor", _json(reading(sensorId="aq-tidak-ada"))),
        Bad("sensorId of another sensor", _json(reading(sensorId="wl-brantas-lengkong"))),
        Bad("sensorId a number", _json(reading(sensorId=7))),
        Bad("NUL in sensorId", _json(reading(sensorId=sensor_id + "\x00"))),
        Bad("NUL in an attribute name", _json({**reading(), "pm25\x00": 3})),
        Bad("lone surrogate", _json(reading(sensorId="\ud800"))),
        Bad("unitCode not an object", _json(reading(unitCode="GQ"))),
        Bad("unitCode of the wrong dimension", _json(reading(unitCode={"pm25": "MTR"}))),
        Bad("20,000 attributes", _json({**reading(), **{f"a{i}": i for i in range(20_000)}})),
    ]  # fmt: skip


def reading_items(sensor_id: str, at: datetime) -> list[tuple[str, Any]]:
    """The JSON-expressible entries of `reading_payloads`, as HTTP batch items."""
    items: list[tuple[str, Any]] = []
    for bad in reading_payloads(sensor_id, at):
        # Deep nesting, text the database cannot hold and sizes beyond the request limit make
        # the whole body unusable: those are in `http_bodies`.
        if bad.data is None or bad.name.startswith(("nested", "10 MiB", "NUL", "lone")):
            continue
        try:
            items.append((bad.name, json.loads(bad.data)))
        except ValueError:
            continue
    # Larger than ingest.max_reading_bytes, small enough for the request.
    items.append(("item of 300 KiB", {"sensorId": sensor_id, "pad": "x" * 300_000}))
    return items


def http_bodies(sensor_id: str, at: datetime) -> list[tuple[str, bytes, int]]:
    """Whole request bodies that are not a usable batch, with the status they must get."""
    one = {"sensorId": sensor_id, "dateObserved": at.isoformat(), "pm25": 30.5}
    return [
        ("empty body", b"", 400),
        ("random bytes", _RANDOM.randbytes(200), 400),
        ("invalid UTF-8", b"[\xff\xfe]", 400),
        ("truncated JSON", _json([one])[:-3], 400),
        ("nested 10,000 levels", deeply_nested(10_000), 400),
        ("a number", b"42", 400),
        ("an object of another shape", b'{"data": []}', 400),
        ("an empty batch", b"[]", 400),
        ("5,000-digit number", b"[" + b"7" * 5000 + b"]", 400),
        ("NUL in a string", b'[{"sensorId": "a\\u0000"}]', 400),
        ("lone surrogate", b'[{"sensorId": "a\\ud800"}]', 400),
        ("10 MiB body", _json([{**one, "pad": "x" * (10 * 1024 * 1024)}]), 413),
    ]


# ---------------------------------------------------------------------------- Kafka records


def kafka_records(valid: Message) -> list[Bad]:
    """Raw records for the topic that `valid`'s kind travels on: garbage of every shape, then
    `valid` changed field by field into values the pipeline cannot keep."""
    cls = type(valid)
    blob_field = cls.BLOB_FIELD
    document = valid.model_dump(mode="json", exclude={blob_field} if blob_field else None)
    blob: bytes = getattr(valid, blob_field) if blob_field else b""

    def record(changes: dict[str, Any]) -> bytes:
        changed = {**document, **changes}
        data = _json(changed)
        return binary_layout(data, blob) if blob_field else data

    def nested_path(path: list[str | int], value: Any) -> bytes:
        changed = json.loads(json.dumps(document))
        node: Any = changed
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        data = _json(changed)
        return binary_layout(data, blob) if blob_field else data

    records = [
        Bad("empty value", b""),
        Bad("no value (tombstone)", None),
        Bad("random bytes", _RANDOM.randbytes(500)),
        Bad("900 KB of junk", _RANDOM.randbytes(900_000)),
        Bad("invalid UTF-8", b'{"kind": "\xff\xfe"}'),
        Bad("truncated JSON", _json(document)[:-5]),
        Bad("JSON array", b"[]"),
        Bad("nested 10,000 levels", deeply_nested(10_000)),
        Bad("nested 10,000 levels in a field",
            _json(document)[:-1] + b', "x": ' + deeply_nested(10_000) + b"}"),
        Bad("5,000-digit integer", _json(document)[:-1] + b', "n": ' + b"5" * 5000 + b"}"),
        Bad("NUL in text", record({"kind": cls.KIND + "\x00"})),
        Bad("unknown kind", record({"kind": "teleport"})),
        Bad("newer schema_version", record({"schema_version": 99})),
        Bad("seq 10^30", record({"seq": 10**30})),
        Bad("seq 2^63", record({"seq": 2**63})),
        Bad("seq -1", record({"seq": -1})),
        Bad("ts_capture year 1 +07:00", record({"ts_capture": "0001-01-01T00:00:00+07:00"})),
        Bad("ts_capture year 1", record({"ts_capture": "0001-01-01T00:00:00Z"})),
        Bad("ts_capture without zone", record({"ts_capture": "2026-11-23T03:15:00"})),
        Bad("id not a UUID", record({"id": "not-a-uuid"})),
        Bad("an unknown field", record({"surprise": 1})),
        Bad("binary layout, truncated header", b"\x00PNT\x01\x00"),
        Bad("binary layout, bad magic", b"\x00XYZ\x01\x00\x00\x00\x02{}"),
        Bad("binary layout, header longer than the record", b"\x00PNT\x01\x00\x10\x00\x00{}"),
    ]  # fmt: skip
    for name, value in _kind_specific(cls.KIND):
        path, replacement = value
        records.append(Bad(name, nested_path(path, replacement)))
    return records


def _kind_specific(kind: str) -> list[tuple[str, tuple[list[str | int], Any]]]:
    nan = float("nan")
    return {
        "sensor_reading": [
            ("values NaN", (["values", "pm25"], nan)),
            ("values Infinity", (["values", "pm25"], float("inf"))),
            ("values 1e400 as text", (["values", "pm25"], "1e400")),
            ("values empty", (["values"], {})),
            ("quantity with NUL", (["values"], {"pm\x0025": 1.0})),
        ],
        "detections": [
            ("track_id 10^30", (["boxes", 0, "track_id"], 10**30)),
            ("class_id 40,000", (["boxes", 0, "class_id"], 40_000)),
            ("box corner 1e39", (["boxes", 0, "x2"], 1e39)),
            ("box corner NaN", (["boxes", 0, "x1"], nan)),
            ("box upside down", (["boxes", 0, "y1"], 10_000)),
            ("confidence 7", (["boxes", 0, "confidence"], 7)),
            ("width 0", (["width"], 0)),
            ("2,000 boxes", (["boxes"], [{"class_id": 0, "label": "person", "confidence": 0.5,
                                          "x1": 1, "y1": 1, "x2": 2, "y2": 2}] * 2000)),
        ],
        "camera_heartbeat": [
            ("frames_decoded 2^63", (["frames_decoded"], 2**63)),
            ("reconnects 2^31", (["reconnects"], 2**31)),
            ("fps Infinity", (["fps"], float("inf"))),
            ("status unknown", (["status"], "melayang")),
        ],
        "camera_view": [
            ("condition unknown", (["condition"], "tilted")),
            ("phase unknown", (["phase"], "middle")),
            ("changed_frac 2", (["changed_frac"], 2.0)),
            ("sharpness_ratio NaN", (["sharpness_ratio"], nan)),
            ("relearn_s a week", (["relearn_s"], 604_800)),
        ],
        "dumping_event": [
            ("version 2^31", (["version"], 2**31)),
            ("owner_track_id 10^30", (["owner_track_id"], 10**30)),
            ("appeared_at year 1", (["appeared_at"], "0001-01-01T00:00:00+07:00")),
            ("box corner 1e39", (["box", "x2"], 1e39)),
            ("evidence sha256 not hex", (["evidence"], [{"kind": "alert", "uri": "x", "sha256": "z"}])),
        ],
        "alert": [
            ("count 2^31", (["count"], 2**31)),
            ("last_value NaN", (["last_value"], nan)),
            ("latitude 900", (["place"], {"name": "x", "lat": 900, "lon": 0})),
            ("state unknown", (["state"], "HILANG")),
        ],
        "alarm_action": [
            ("action unknown", (["action"], "explode")),
            ("note of 10,000 characters", (["note"], "x" * 10_000)),
            ("source_id with NUL", (["source_id"], "aq\x00")),
        ],
        "frame": [
            ("width 8000 claimed", (["width"], 8000)),
            ("height 0", (["height"], 0)),
            ("source_pos_ms NaN", (["source_pos_ms"], nan)),
        ],
    }.get(kind, [])  # fmt: skip


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A real JPEG of the given size (noise with a bright square, so it is not uniform)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    cv2.rectangle(image, (width // 4, height // 4), (width // 2, height // 2), (250, 250, 250), -1)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    return bytes(data.tobytes())


def frame_records(valid_frame: Message) -> list[Bad]:
    """Frames the detector cannot use, beyond the generic records."""
    document = valid_frame.model_dump(mode="json", exclude={"jpeg"})
    header = _json(document)
    claims_huge = _json({**document, "width": 8000, "height": 8000})
    return [
        Bad("garbage JPEG", binary_layout(header, _RANDOM.randbytes(5000))),
        Bad("truncated JPEG", binary_layout(header, jpeg(640, 360)[:600])),
        Bad("JPEG of another size than the header says", binary_layout(header, jpeg(320, 180))),
        Bad("8000x8000 claimed and encoded", binary_layout(claims_huge, _huge_jpeg())),
        Bad("nested header", binary_layout(deeply_nested(10_000), jpeg(640, 360))),
    ]


def _huge_jpeg() -> bytes:
    # 8000 x 8000 of one colour compresses to a small file that decodes to 192 MB.
    image = np.zeros((8000, 8000, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    return bytes(data.tobytes())
