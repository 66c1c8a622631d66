"""Messages → table rows. Pure: no database, no Kafka."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pantau.messages import CameraHeartbeat, DeadLetter, Detections, Message, SensorReading

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    # PostgreSQL type of each column, in order, for binary COPY.
    types: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.types):
            raise ValueError(
                f"{self.name}: {len(self.columns)} columns but {len(self.types)} types"
            )


SENSOR_READINGS = Table(
    "sensor_readings",
    ("time", "sensor_id", "quantity", "value", "reading_id", "seq", "ingested_at"),
    ("timestamptz", "text", "text", "float8", "uuid", "int8", "timestamptz"),
)
DETECTIONS = Table(
    "detections",
    (
        "time",
        "camera_id",
        "frame_id",
        "box_index",
        "class_id",
        "label",
        "confidence",
        "x1",
        "y1",
        "x2",
        "y2",
        "track_id",
        "model",
        "frame_width",
        "frame_height",
        "detected_at",
    ),
    (
        "timestamptz",
        "text",
        "uuid",
        "int2",
        "int2",
        "text",
        "float4",
        "float4",
        "float4",
        "float4",
        "float4",
        "int8",
        "text",
        "int4",
        "int4",
        "timestamptz",
    ),
)
CAMERA_HEALTH = Table(
    "camera_health",
    (
        "time",
        "camera_id",
        "status",
        "fps",
        "frames_decoded",
        "frames_published",
        "frames_skipped",
        "reconnects",
        "last_error",
        "heartbeat_id",
    ),
    ("timestamptz", "text", "text", "float4", "int8", "int8", "int8", "int4", "text", "uuid"),
)
DEAD_LETTERS = Table(
    "dead_letters",
    (
        "time",
        "id",
        "stage",
        "source_kind",
        "source_topic",
        "source_partition",
        "source_offset",
        "source_key",
        "error",
        "original",
    ),
    ("timestamptz", "uuid", "text", "text", "text", "int4", "int8", "text", "text", "bytea"),
)

TABLES: tuple[Table, ...] = (SENSOR_READINGS, DETECTIONS, CAMERA_HEALTH, DEAD_LETTERS)


def reading_rows(m: SensorReading) -> list[Row]:
    return [
        (m.ts_capture, m.sensor_id, quantity, value, m.id, m.seq, m.ts_ingest)
        for quantity, value in m.values.items()
    ]


def detection_rows(m: Detections) -> list[Row]:
    return [
        (
            m.ts_capture,
            m.camera_id,
            m.frame_id,
            i,
            b.class_id,
            b.label,
            b.confidence,
            b.x1,
            b.y1,
            b.x2,
            b.y2,
            b.track_id,
            m.model,
            m.width,
            m.height,
            m.ts_detected,
        )
        for i, b in enumerate(m.boxes)
    ]


def health_rows(m: CameraHeartbeat) -> list[Row]:
    return [
        (
            m.ts_capture,
            m.camera_id,
            m.status,
            m.fps,
            m.frames_decoded,
            m.frames_published,
            m.frames_skipped,
            m.reconnects,
            m.last_error,
            m.id,
        )
    ]


def dead_letter_rows(m: DeadLetter) -> list[Row]:
    return [
        (
            m.ts_capture,
            m.id,
            m.stage,
            m.source_kind,
            m.source_topic,
            m.partition,
            m.offset,
            m.source_key,
            m.error,
            m.original,
        )
    ]


def rows_for(message: Message) -> tuple[Table, list[Row]]:
    """The table a message goes to and its rows (a frame without boxes has none)."""
    if isinstance(message, SensorReading):
        return SENSOR_READINGS, reading_rows(message)
    if isinstance(message, Detections):
        return DETECTIONS, detection_rows(message)
    if isinstance(message, CameraHeartbeat):
        return CAMERA_HEALTH, health_rows(message)
    if isinstance(message, DeadLetter):
        return DEAD_LETTERS, dead_letter_rows(message)
    raise TypeError(f"the sink stores no {message.kind} messages")
