"""Tiny factories: one valid message of each kind, for tests to copy and vary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from pantau.messages import (
    Box,
    CameraHeartbeat,
    DeadLetter,
    Detections,
    Frame,
    Message,
    SensorReading,
)

T0 = datetime(2026, 11, 23, 3, 15, 0, 250000, tzinfo=UTC)
ID = UUID("01937a4e-8c2b-7d10-9a4f-3b2c1d0e5f60")
FAKE_JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) + b"\xff\xd9"

SAMPLES: dict[str, Message] = {
    "frame": Frame(
        id=ID,
        ts_capture=T0,
        seq=1732331700250,
        camera_id="tps-gedeg",
        width=640,
        height=360,
        source_pos_ms=None,
        ts_ingest=T0 + timedelta(milliseconds=12),
        jpeg=FAKE_JPEG,
    ),
    "detections": Detections(
        id=ID,
        ts_capture=T0,
        seq=1732331700250,
        camera_id="tps-gedeg",
        frame_id=ID,
        width=640,
        height=360,
        model="yolo11n_int8_openvino_model",
        inference_ms=27.5,
        ts_detected=T0 + timedelta(milliseconds=80),
        boxes=(
            Box(
                class_id=0,
                label="person",
                confidence=0.91,
                x1=10,
                y1=20,
                x2=110,
                y2=300,
                track_id=7,
            ),
            Box(class_id=26, label="handbag", confidence=0.42, x1=90.5, y1=250, x2=130, y2=290),
        ),
    ),
    "sensor_reading": SensorReading(
        id=ID,
        ts_capture=T0,
        seq=812,
        sensor_id="aq-alun-alun",
        sensor_type="air_quality",
        values={"pm25": 41.7, "pm10": 73.2},
        ts_ingest=T0 + timedelta(seconds=1),
    ),
    "camera_heartbeat": CameraHeartbeat(
        id=ID,
        ts_capture=T0,
        seq=5,
        camera_id="tps-gedeg",
        status="reconnecting",
        fps=0.0,
        frames_decoded=1200,
        frames_published=600,
        frames_skipped=600,
        reconnects=2,
        last_error="cannot open rtsp://***@10.0.0.5/stream",
    ),
    "dead_letter": DeadLetter(
        id=ID,
        ts_capture=T0,
        seq=0,
        stage="ingest.sensors",
        source_kind="mqtt",
        source_topic="pantau/sensors/aq-01",
        source_key="aq-01",
        error="payload is not JSON",
        original=b'{"pm25": ',
    ),
}
