from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pantau.codec import MAGIC, DecodeError, decode, decode_as, encode
from pantau.messages import Box, CameraHeartbeat, Frame, SensorReading
from tests.factories import FAKE_JPEG, SAMPLES, T0

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_golden_bytes_round_trip(kind: str) -> None:
    message = SAMPLES[kind]
    encoded = encode(message)
    golden = GOLDEN / f"{kind}.v{type(message).VERSION}.bin"
    if os.environ.get("PANTAU_UPDATE_GOLDEN"):
        golden.write_bytes(encoded)
    # The wire format is a contract: a change here breaks consumers already deployed.
    assert encoded == golden.read_bytes()
    assert decode(golden.read_bytes()) == message
    assert decode_as(golden.read_bytes(), type(message)) == message


@pytest.mark.parametrize(
    "golden",
    sorted(
        p.name
        for p in GOLDEN.glob("*.v*.bin")
        if int(p.name.split(".v")[1].split(".")[0]) < type(SAMPLES[p.name.split(".")[0]]).VERSION
    ),
)
def test_older_schema_versions_still_decode(golden: str) -> None:
    # Bytes as producers deployed before the newest version sent them.
    kind, version = golden.split(".v")[0], int(golden.split(".v")[1].split(".")[0])
    message = decode((GOLDEN / golden).read_bytes())
    assert message.kind == kind
    assert message.schema_version == version
    assert decode_as((GOLDEN / golden).read_bytes(), type(message)) == message


def test_binary_layout_keeps_the_jpeg_raw() -> None:
    encoded = encode(SAMPLES["frame"])
    assert encoded.startswith(MAGIC)
    length = int.from_bytes(encoded[5:9], "big")
    header = json.loads(encoded[9 : 9 + length])
    assert "jpeg" not in header
    assert header["camera_id"] == "tps-gedeg"
    assert encoded[9 + length :] == FAKE_JPEG


def test_plain_messages_are_readable_json() -> None:
    encoded = encode(SAMPLES["sensor_reading"])
    assert encoded.startswith(b"{")
    assert b'"ts_capture":"2026-11-23T03:15:00.250000Z"' in encoded


def test_times_are_normalised_to_utc() -> None:
    wib = timezone(timedelta(hours=7))
    reading = SAMPLES["sensor_reading"].model_copy()
    again = SensorReading.model_validate(
        {**reading.model_dump(), "ts_capture": T0.astimezone(wib).isoformat()}
    )
    assert again.ts_capture.utcoffset() == timedelta(0)
    assert again.ts_capture == T0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty message"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"kind": "teleport"}', "unknown message kind 'teleport'"),
        (b"\x00PNT\x01\x00\x00\x00\xff{}", "header says 255 bytes"),
        (b"\x00XYZ\x01\x00\x00\x00\x02{}", "bad magic"),
        (
            b'{"kind": "sensor_reading", "schema_version": 9}',
            "schema_version 9 is newer than this program knows (2)",
        ),
        (
            b'{"kind": "sensor_reading", "schema_version": 1, "id": "01937a4e-8c2b-7d10-9a4f-3b2c1d0e5f60",'
            b' "ts_capture": "2026-11-23T03:15:00", "seq": 1, "sensor_id": "aq", "sensor_type": "x",'
            b' "values": {"pm25": 1}, "ts_ingest": "2026-11-23T03:15:00Z"}',
            "ts_capture: Input should have timezone info",
        ),
    ],
)
def test_bad_bytes_give_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=None) as caught:
        decode(data)
    assert reason in str(caught.value)


def test_decode_as_refuses_another_kind() -> None:
    with pytest.raises(DecodeError, match="expected a 'frame' message, got kind 'sensor_reading'"):
        decode_as(encode(SAMPLES["sensor_reading"]), Frame)


def test_frame_without_its_binary_part_is_refused() -> None:
    header = encode(SAMPLES["frame"])[9:].split(FAKE_JPEG)[0]
    with pytest.raises(DecodeError, match="must use the binary layout"):
        decode(header)


def test_naive_capture_time_is_refused_at_construction() -> None:
    fields = SAMPLES["camera_heartbeat"].model_dump()
    with pytest.raises(ValueError, match="timezone"):
        CameraHeartbeat(**{**fields, "ts_capture": datetime(2026, 1, 1)})


def test_box_corners_are_validated() -> None:
    with pytest.raises(ValueError, match="x1<=x2"):
        Box(class_id=0, label="person", confidence=0.5, x1=50, y1=0, x2=10, y2=10)
