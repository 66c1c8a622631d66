"""Messages → table rows. Pure: no database, no Kafka."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pantau.codec import DecodeError, decode_as
from pantau.messages import (
    AlarmAction,
    Alert,
    CameraHeartbeat,
    CameraView,
    DeadLetter,
    Detections,
    DumpingEvent,
    Message,
    Metric,
    Notification,
    SensorReading,
    SensorWindow,
)

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Upsert:
    """Rows are states of one record: the newest (by `version`) wins."""

    key: tuple[str, ...]
    version: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    # PostgreSQL type of each column, in order, for binary COPY.
    types: tuple[str, ...]
    # None: append-only, a repeated row is a re-delivery and is skipped.
    upsert: Upsert | None = None

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.types):
            raise ValueError(
                f"{self.name}: {len(self.columns)} columns but {len(self.types)} types"
            )
        if self.upsert is not None:
            missing = set(self.upsert.key) | {self.upsert.version}
            missing -= set(self.columns)
            if missing:
                raise ValueError(f"{self.name}: upsert names unknown columns {sorted(missing)}")


SENSOR_READINGS = Table(
    "sensor_readings",
    ("time", "sensor_id", "quantity", "value", "seq", "ingested_at", "gateway"),
    ("timestamptz", "text", "text", "float8", "int8", "timestamptz", "text"),
)
SENSOR_READINGS_1M = Table(
    "sensor_readings_1m",
    ("time", "sensor_id", "quantity", "count", "min", "max", "mean"),
    ("timestamptz", "text", "text", "int4", "float8", "float8", "float8"),
    # A window re-emitted with late readings has seen more of them.
    Upsert(("sensor_id", "quantity", "time"), "count"),
)
DETECTIONS = Table(
    "detections",
    (
        "time", "camera_id", "frame_id", "box_index", "class_id", "label", "confidence",
        "x1", "y1", "x2", "y2", "track_id", "model", "frame_width", "frame_height", "detected_at",
    ),
    (
        "timestamptz", "text", "uuid", "int2", "int2", "text", "float4",
        "float4", "float4", "float4", "float4", "int8", "text", "int4", "int4", "timestamptz",
    ),
)  # fmt: skip
CAMERA_HEALTH = Table(
    "camera_health",
    (
        "time", "camera_id", "status", "fps", "frames_decoded", "frames_published",
        "frames_skipped", "reconnects", "last_error", "heartbeat_id",
    ),
    ("timestamptz", "text", "text", "float4", "int8", "int8", "int8", "int4", "text", "uuid"),
)  # fmt: skip
CAMERA_VIEW_CHANGES = Table(
    "camera_view_changes",
    (
        "time", "id", "camera_id", "condition", "phase", "changed_frac", "brightness_spread",
        "sharpness_ratio", "relearn_s",
    ),
    ("timestamptz", "uuid", "text", "text", "text", "float8", "float8", "float8", "float8"),
)  # fmt: skip
PIPELINE_METRICS = Table(
    "pipeline_metrics",
    ("time", "component", "instance", "metric", "value", "unit", "labels"),
    ("timestamptz", "text", "text", "text", "float8", "text", "jsonb"),
)
DEAD_LETTERS = Table(
    "dead_letters",
    (
        "time", "id", "stage", "source_kind", "source_topic", "source_partition", "source_offset",
        "source_key", "error", "original",
    ),
    ("timestamptz", "uuid", "text", "text", "text", "int4", "int8", "text", "text", "bytea"),
)  # fmt: skip
DUMPING_EVENTS = Table(
    "dumping_events",
    (
        "appeared_at", "event_id", "camera_id", "zone_id", "state", "phase", "version",
        "owner_left_at", "alerted_at", "ended_at", "x1", "y1", "x2", "y2", "label",
        "owner_track_id", "confidence", "evidence", "updated_at", "evidence_error",
    ),
    (
        "timestamptz", "uuid", "text", "text", "text", "text", "int4",
        "timestamptz", "timestamptz", "timestamptz", "float4", "float4", "float4", "float4", "text",
        "int8", "float4", "jsonb", "timestamptz", "text",
    ),
    Upsert(("event_id", "appeared_at"), "version"),
)  # fmt: skip
ALERTS = Table(
    "alerts",
    (
        "opened_at", "alarm_id", "version", "source_kind", "source_id", "alarm_type", "severity",
        "state", "count", "last_value", "message", "updated_at", "acknowledged_at",
        "dispatched_at", "resolved_at", "cleared_at", "ts_capture", "ts_ingest", "ts_rule",
        "change", "quantity", "threshold", "event_id", "assignee", "dispatched_to",
    ),
    (
        "timestamptz", "uuid", "int4", "text", "text", "text", "text",
        "text", "int4", "float8", "text", "timestamptz", "timestamptz",
        "timestamptz", "timestamptz", "timestamptz", "timestamptz", "timestamptz", "timestamptz",
        "text", "text", "float8", "uuid", "text", "text",
    ),
    Upsert(("alarm_id", "opened_at"), "version"),
)  # fmt: skip
NOTIFICATIONS = Table(
    "notifications",
    (
        "created_at", "notification_id", "alarm_id", "alarm_version", "channel", "recipient",
        "status", "attempts", "error", "sent_at", "alarm_type", "alarm_state", "severity",
        "route", "ts_ingest", "ts_rule",
    ),
    (
        "timestamptz", "uuid", "uuid", "int4", "text", "text",
        "text", "int4", "text", "timestamptz", "text", "text", "text",
        "text", "timestamptz", "timestamptz",
    ),
    Upsert(("notification_id", "created_at"), "attempts"),
)  # fmt: skip

ALARM_HISTORY = Table(
    "alarm_history",
    (
        "opened_at", "alarm_id", "version", "time", "state", "change", "severity", "count",
        "last_value", "message", "assignee", "dispatched_to", "action_id", "by", "device",
        "note", "reason", "photo", "lat", "lon",
    ),
    (
        "timestamptz", "uuid", "int4", "timestamptz", "text", "text", "text", "int4",
        "float8", "text", "text", "text", "uuid", "text", "text",
        "text", "text", "jsonb", "float8", "float8",
    ),
)  # fmt: skip
ALARM_ACTIONS = Table(
    "alarm_actions",
    (
        "time", "action_id", "alarm_id", "source_kind", "source_id", "action", "by", "device",
        "note", "to", "reason", "photo", "refused", "version", "lat", "lon",
    ),
    (
        "timestamptz", "uuid", "uuid", "text", "text", "text", "text", "text",
        "text", "text", "text", "jsonb", "text", "int4", "float8", "float8",
    ),
    # The stream processor's refusal (version 1) is a later word on the same action.
    Upsert(("action_id", "time"), "version"),
)  # fmt: skip

TABLES: tuple[Table, ...] = (
    SENSOR_READINGS,
    SENSOR_READINGS_1M,
    DETECTIONS,
    CAMERA_HEALTH,
    CAMERA_VIEW_CHANGES,
    PIPELINE_METRICS,
    DEAD_LETTERS,
    DUMPING_EVENTS,
    ALERTS,
    NOTIFICATIONS,
    ALARM_HISTORY,
    ALARM_ACTIONS,
)


def reading_rows(m: SensorReading) -> list[Row]:
    return [
        (m.ts_capture, m.sensor_id, quantity, value, m.seq, m.ts_ingest, m.gateway)
        for quantity, value in m.values.items()
    ]


def window_rows(m: SensorWindow) -> list[Row]:
    return [(m.ts_capture, m.sensor_id, m.quantity, m.count, m.min, m.max, m.mean)]


def detection_rows(m: Detections, keep: TrackSampler | None = None) -> list[Row]:
    return [
        (
            m.ts_capture, m.camera_id, m.frame_id, i, b.class_id, b.label, b.confidence,
            b.x1, b.y1, b.x2, b.y2, b.track_id, m.model, m.width, m.height, m.ts_detected,
        )
        for i, b in enumerate(m.boxes)
        if keep is None or keep.take(m.camera_id, b.track_id, m.ts_capture)
    ]  # fmt: skip


def health_rows(m: CameraHeartbeat) -> list[Row]:
    return [
        (
            m.ts_capture, m.camera_id, m.status, m.fps, m.frames_decoded, m.frames_published,
            m.frames_skipped, m.reconnects, m.last_error, m.id,
        )
    ]  # fmt: skip


def view_rows(m: CameraView) -> list[Row]:
    return [
        (
            m.ts_capture, m.id, m.camera_id, m.condition, m.phase, m.changed_frac,
            m.brightness_spread, m.sharpness_ratio, m.relearn_s,
        )
    ]  # fmt: skip


def metric_rows(m: Metric) -> list[Row]:
    # JSON columns carry the objects: the jsonb dumper encodes them, once.
    return [(m.ts_capture, m.component, m.instance, m.name, m.value, m.unit, dict(m.labels))]


def dead_letter_rows(m: DeadLetter) -> list[Row]:
    return [
        (
            m.ts_capture, m.id, m.stage, m.source_kind, m.source_topic, m.partition, m.offset,
            m.source_key, m.error, m.original,
        )
    ]  # fmt: skip


def dumping_rows(m: DumpingEvent) -> list[Row]:
    b = m.box
    evidence = [e.model_dump(mode="json") for e in m.evidence]
    return [
        (
            m.appeared_at, m.event_id, m.camera_id, m.zone_id, m.state, m.phase, m.version,
            m.owner_left_at, m.alerted_at, m.ended_at, b.x1, b.y1, b.x2, b.y2, b.label,
            m.owner_track_id, m.confidence, evidence, m.ts_capture, m.evidence_error,
        )
    ]  # fmt: skip


def alert_rows(m: Alert) -> list[Row]:
    return [
        (
            m.opened_at, m.alarm_id, m.version, m.source_kind, m.source_id, m.alarm_type,
            m.severity, m.state, m.count, m.last_value, m.message, m.updated_at,
            m.acknowledged_at, m.dispatched_at, m.resolved_at, m.cleared_at, m.ts_capture,
            m.ts_ingest, m.ts_rule, m.change, m.quantity, m.threshold, m.event_id,
            m.assignee, m.dispatched_to,
        )
    ]  # fmt: skip


def alarm_history_rows(m: Alert) -> list[Row]:
    photo = m.photo.model_dump(mode="json") if m.photo else None
    return [
        (
            m.opened_at, m.alarm_id, m.version, m.updated_at, m.state, m.change, m.severity,
            m.count, m.last_value, m.message, m.assignee, m.dispatched_to, m.action_id, m.by,
            m.device, m.note, m.reason, photo,
            m.location.lat if m.location else None, m.location.lon if m.location else None,
        )
    ]  # fmt: skip


def action_rows(m: AlarmAction, refused: str | None = None) -> list[Row]:
    # The streams' periodic silence checks are not people's actions: nothing to keep.
    if m.action == "check":
        return []
    photo = m.photo.model_dump(mode="json") if m.photo else None
    return [
        (
            m.ts_capture, m.id, m.alarm_id, m.source_kind, m.source_id, m.action, m.by,
            m.device, m.note, m.to, m.reason, photo, refused, 0 if refused is None else 1,
            m.location.lat if m.location else None, m.location.lon if m.location else None,
        )
    ]  # fmt: skip


def refused_action_rows(m: DeadLetter) -> list[Row]:
    """The stream processor's refusal of a person's action, as a later word on its row."""
    if m.stage != "streams":
        return []
    try:
        action = decode_as(m.original, AlarmAction)
    except DecodeError:
        return []
    return action_rows(action, refused=m.error)


def notification_rows(m: Notification) -> list[Row]:
    return [
        (
            m.ts_capture, m.notification_id, m.alarm_id, m.alarm_version, m.channel, m.recipient,
            m.status, m.attempts, m.error, m.sent_at, m.alarm_type, m.alarm_state, m.severity,
            m.route, m.ts_ingest, m.ts_rule,
        )
    ]  # fmt: skip


class TrackSampler:
    """Keeps a tracked object's box at most once per `every` of capture time.

    Boxes without a track id are always kept: there is nothing to tell them apart by.
    """

    def __init__(self, every: timedelta) -> None:
        self.every = every
        self._last: dict[tuple[str, int], datetime] = {}

    def take(self, camera_id: str, track_id: int | None, at: datetime) -> bool:
        if track_id is None or self.every <= timedelta(0):
            return True
        key = (camera_id, track_id)
        last = self._last.get(key)
        if last is not None and last <= at < last + self.every:
            return False
        self._last[key] = at
        if len(self._last) > 100_000:
            # Tracks end; forget the oldest half rather than grow without bound.
            for old in sorted(self._last, key=self._last.__getitem__)[:50_000]:
                del self._last[old]
        return True


def all_rows_for(
    message: Message, sampler: TrackSampler | None = None
) -> list[tuple[Table, list[Row]]]:
    """Every table a message goes to, with its rows: an alert is its alarm's latest state
    and a line of its history; a refused action's dead letter also marks the action."""
    if isinstance(message, Alert):
        return [(ALERTS, alert_rows(message)), (ALARM_HISTORY, alarm_history_rows(message))]
    if isinstance(message, AlarmAction):
        return [(ALARM_ACTIONS, action_rows(message))]
    if isinstance(message, DeadLetter):
        return [
            (DEAD_LETTERS, dead_letter_rows(message)),
            (ALARM_ACTIONS, refused_action_rows(message)),
        ]
    return [rows_for(message, sampler)]


def rows_for(message: Message, sampler: TrackSampler | None = None) -> tuple[Table, list[Row]]:
    """The table a message goes to and its rows (a frame without boxes has none)."""
    if isinstance(message, SensorReading):
        return SENSOR_READINGS, reading_rows(message)
    if isinstance(message, Detections):
        return DETECTIONS, detection_rows(message, sampler)
    if isinstance(message, CameraHeartbeat):
        return CAMERA_HEALTH, health_rows(message)
    if isinstance(message, CameraView):
        return CAMERA_VIEW_CHANGES, view_rows(message)
    if isinstance(message, SensorWindow):
        return SENSOR_READINGS_1M, window_rows(message)
    if isinstance(message, Metric):
        return PIPELINE_METRICS, metric_rows(message)
    if isinstance(message, DeadLetter):
        return DEAD_LETTERS, dead_letter_rows(message)
    if isinstance(message, DumpingEvent):
        return DUMPING_EVENTS, dumping_rows(message)
    if isinstance(message, Alert):
        return ALERTS, alert_rows(message)
    if isinstance(message, Notification):
        return NOTIFICATIONS, notification_rows(message)
    if isinstance(message, AlarmAction):
        return ALARM_ACTIONS, action_rows(message)
    raise TypeError(f"the sink stores no {message.kind} messages")
