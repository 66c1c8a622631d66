"""Every message that crosses Kafka, versioned.

Each message carries a stable `id`, the source's capture time `ts_capture` (timezone-aware
UTC), a per-source monotonic `seq`, its `kind` and its `schema_version`. The codec
(`pantau.codec`) turns them into bytes and back. Changing a field means a new schema version
and, for an incompatible change, a new topic version.

A message that validates can be stored: every number fits the column it lands in (bigint,
integer, smallint, real), every time lies within `EARLIEST`..`LATEST`, every float is finite.
The bounds are part of the contract, so a hostile producer meets them at the first decode, not
in the sink's COPY.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal, Self
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

# Times outside these are a broken clock or a hostile producer, never a real capture.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _to_utc(value: datetime) -> datetime:
    # Called for every time in every message (the stream processor and the sink decode each
    # reading): one C call, about a third of asking for the offset and relabelling.
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        # Year 1 with a positive offset (or 9999 with a negative one) has no UTC time at all.
        raise ValueError(f"time {value.isoformat()} has no UTC equivalent") from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError(
            f"time {utc.isoformat()} is outside {EARLIEST.year}..{LATEST.year - 1}: "
            "a clock that was never set, or garbage"
        )
    return utc


# Column types of the database (smallint, integer, bigint), as limits on the numbers that
# travel into them. Floats stored as `real` are bounded far below its 3.4e38 where they land.
INT16_MAX = 2**15 - 1
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Count32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
Count64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
SourceId = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
# Free text in messages: names, labels, reasons. Bounded so that one message cannot carry a
# novel in a field meant for a word.
Name = Annotated[str, Field(max_length=200)]
Text = Annotated[str, Field(max_length=4000)]
# Pixel coordinates: frames are at most MAX_FRAME_SIDE wide; a box may reach a little outside.
Pixel = Annotated[float, Field(allow_inf_nan=False, ge=-100_000.0, le=100_000.0)]
# JPEG's own limit on a side.
MAX_FRAME_SIDE = 65_535
FrameSide = Annotated[int, Field(gt=0, le=MAX_FRAME_SIDE)]
# Boxes in one frame: `detections.box_index` is a smallint.
MAX_BOXES = 1000


class Message(BaseModel):
    """Fields every message has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    KIND: ClassVar[str]
    VERSION: ClassVar[int]
    # Name of a `bytes` field sent raw after the JSON header instead of inside it.
    BLOB_FIELD: ClassVar[str | None] = None

    kind: str
    schema_version: int
    id: UUID = Field(description="stable id: the same record always has the same id")
    ts_capture: UtcDatetime = Field(description="when the source captured it, UTC")
    seq: int = Field(ge=0, le=INT64_MAX, description="per-source monotonic sequence number")

    @property
    def key(self) -> bytes | None:
        """Kafka partition key: the source id, so per-source order holds."""
        return None


class Frame(Message):
    """One sampled camera frame, JPEG bytes inline (the detect substream, small)."""

    KIND: ClassVar[str] = "frame"
    VERSION: ClassVar[int] = 1
    BLOB_FIELD: ClassVar[str | None] = "jpeg"

    kind: Literal["frame"] = "frame"
    schema_version: Literal[1] = 1
    camera_id: SourceId
    width: FrameSide
    height: FrameSide
    encoding: Literal["jpeg"] = "jpeg"
    source_pos_ms: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="position in a file source"
    )
    ts_ingest: UtcDatetime = Field(description="when ingest published it")
    jpeg: bytes = Field(repr=False)

    @property
    def key(self) -> bytes:
        return self.camera_id.encode()


class Box(BaseModel):
    """One detected object, pixel coordinates of the frame it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    class_id: int | None = Field(
        ge=0,
        le=INT16_MAX,
        description="detector class; None for an object no class names (class-agnostic)",
    )
    label: Name
    confidence: float = Field(ge=0.0, le=1.0)
    x1: Pixel
    y1: Pixel
    x2: Pixel
    y2: Pixel
    track_id: int | None = Field(None, ge=0, le=INT64_MAX)

    @model_validator(mode="after")
    def verify_corners(self) -> Self:
        coords = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(c) for c in coords):
            raise ValueError(f"box corners must be finite, got {coords}")
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError(f"expected x1<=x2 and y1<=y2, got {coords}")
        return self


class Detections(Message):
    """What the detector found in one frame (possibly nothing)."""

    KIND: ClassVar[str] = "detections"
    VERSION: ClassVar[int] = 1

    kind: Literal["detections"] = "detections"
    schema_version: Literal[1] = 1
    camera_id: SourceId
    frame_id: UUID
    width: FrameSide
    height: FrameSide
    model: Name = Field(description="model file name the boxes came from")
    inference_ms: float = Field(ge=0, allow_inf_nan=False)
    ts_detected: UtcDatetime
    boxes: tuple[Box, ...] = Field((), max_length=MAX_BOXES)

    @model_validator(mode="after")
    def verify_classes(self) -> Self:
        unnamed = [i for i, box in enumerate(self.boxes) if box.class_id is None]
        if unnamed:
            raise ValueError(f"every detector box needs a class_id; boxes {unnamed} have none")
        return self

    @property
    def key(self) -> bytes:
        return self.camera_id.encode()


# A FIWARE attribute name: pm25, waterLevel, fillingLevel, ...
Quantity = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]


class SensorReading(Message):
    """One validated reading; `values` uses FIWARE Smart Data Models attribute names.

    Version 2 adds `gateway`; version 1 messages (without it) still decode.
    """

    KIND: ClassVar[str] = "sensor_reading"
    VERSION: ClassVar[int] = 2

    kind: Literal["sensor_reading"] = "sensor_reading"
    schema_version: Literal[1, 2] = 2
    sensor_id: SourceId
    sensor_type: Name
    values: dict[Quantity, FiniteFloat] = Field(min_length=1, max_length=64)
    ts_ingest: UtcDatetime
    gateway: SourceId | None = Field(
        None,
        description="the registry's gateway that sent it (authenticated by its secret); "
        "None for readings from before gateways, or from an open door",
    )

    @model_validator(mode="after")
    def verify_version(self) -> Self:
        if self.schema_version == 1 and self.gateway is not None:
            raise ValueError("gateway is a schema_version 2 field; this message says 1")
        return self

    @property
    def key(self) -> bytes:
        return self.sensor_id.encode()


class CameraHeartbeat(Message):
    """Periodic camera status from the ingest next to the camera."""

    KIND: ClassVar[str] = "camera_heartbeat"
    VERSION: ClassVar[int] = 1

    kind: Literal["camera_heartbeat"] = "camera_heartbeat"
    schema_version: Literal[1] = 1
    camera_id: SourceId
    status: Literal["connecting", "online", "reconnecting", "stalled", "ended"]
    fps: float = Field(
        ge=0, le=10_000, description="frames published per second since the last beat"
    )
    frames_decoded: Count64
    frames_published: Count64
    frames_skipped: Count64
    reconnects: Count32
    last_error: Text | None = Field(None, description="credential-free reason of the last failure")

    @property
    def key(self) -> bytes:
        return self.camera_id.encode()


class CameraView(Message):
    """The detector's judgement of a camera's picture: it stopped being usable (`start`) or
    is usable again (`end`). While it is not, the camera raises no dumping event.

    - `moved`: most of the scene changed at once and stayed so (the camera was turned,
      bumped or refocused onto another view). The scene models start over and relearn
      quietly for `relearn_s`; `end` comes when they watch again. The zones may no longer
      fit the picture: a person should look.
    - `covered`: the picture is near-uniform (lens covered, sprayed, a cloth, no signal).
    - `blurred`: the picture lost most of its detail (fogged or smeared lens, defocused).
    """

    KIND: ClassVar[str] = "camera_view"
    VERSION: ClassVar[int] = 1

    kind: Literal["camera_view"] = "camera_view"
    schema_version: Literal[1] = 1
    camera_id: SourceId
    condition: Literal["moved", "covered", "blurred"]
    phase: Literal["start", "end"]
    changed_frac: float = Field(
        ge=0, le=1, description="share of the scene's outline no longer where it was"
    )
    brightness_spread: float = Field(
        ge=0, le=256, description="standard deviation of the picture's grey levels"
    )
    sharpness_ratio: float = Field(
        ge=0, le=1_000, description="detail in the picture relative to the camera's usual"
    )
    relearn_s: float = Field(
        0.0, ge=0, le=86_400, description="for `moved`: how long the scene is relearnt quietly"
    )

    @property
    def key(self) -> bytes:
        return self.camera_id.encode()


class DeadLetter(Message):
    """Input that could not be processed, kept whole with the reason."""

    KIND: ClassVar[str] = "dead_letter"
    VERSION: ClassVar[int] = 1
    BLOB_FIELD: ClassVar[str | None] = "original"

    kind: Literal["dead_letter"] = "dead_letter"
    schema_version: Literal[1] = 1
    stage: Name = Field(description="which stage rejected it, e.g. ingest.sensors")
    source_kind: Literal["kafka", "mqtt", "http"]
    source_topic: Text
    partition: Count32 | None = None
    offset: Count64 | None = None
    source_key: Text | None = None
    error: Text = Field(min_length=1)
    original: bytes = Field(repr=False)

    @property
    def key(self) -> bytes | None:
        return self.source_key.encode() if self.source_key else None


class SensorWindow(Message):
    """Statistics of one sensor quantity over a closed tumbling window (from the streams)."""

    KIND: ClassVar[str] = "sensor_window"
    VERSION: ClassVar[int] = 1

    kind: Literal["sensor_window"] = "sensor_window"
    schema_version: Literal[1] = 1
    sensor_id: SourceId
    quantity: Quantity
    window_s: int = Field(
        gt=0, le=INT32_MAX, description="window length; ts_capture is the window start"
    )
    count: int = Field(ge=1, le=INT32_MAX)
    min: FiniteFloat
    max: FiniteFloat
    mean: FiniteFloat

    @property
    def key(self) -> bytes:
        return self.sensor_id.encode()


class EvidenceRef(BaseModel):
    """One artefact of an evidence pack, by reference (claim check) with its digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Name = Field(description="before, alert, owner, clip, ...")
    uri: Text
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class DumpingEvent(Message):
    """One step (new, update, end) in the life of a dumping event; `event_id` is stable.

    Version 2 adds `evidence_error`; version 1 messages (without it) still decode.
    """

    KIND: ClassVar[str] = "dumping_event"
    VERSION: ClassVar[int] = 2

    kind: Literal["dumping_event"] = "dumping_event"
    schema_version: Literal[1, 2] = 2
    event_id: UUID
    phase: Literal["new", "update", "end"]
    version: int = Field(ge=0, le=INT32_MAX, description="increases with every step of this event")
    camera_id: SourceId
    zone_id: Name | None = None
    state: Name = Field(description="e.g. unattended, alerted, cleaned, expired")
    appeared_at: UtcDatetime
    owner_left_at: UtcDatetime | None = None
    alerted_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None
    box: Box
    owner_track_id: int | None = Field(None, ge=0, le=INT64_MAX)
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: tuple[EvidenceRef, ...] = Field((), max_length=64)
    evidence_error: Text | None = Field(
        None,
        description="why the evidence is missing or incomplete (e.g. the evidence store is "
        "full); None when every artefact so far was written",
    )

    @model_validator(mode="after")
    def verify_version(self) -> Self:
        if self.schema_version == 1 and self.evidence_error is not None:
            raise ValueError("evidence_error is a schema_version 2 field; this message says 1")
        return self

    @property
    def key(self) -> bytes:
        return self.camera_id.encode()


Severity = Literal["critical", "major", "minor", "warning", "info"]
AlarmState = Literal["OPEN", "ACK", "DISPATCHED", "RESOLVED", "FALSE_POSITIVE", "CLEARED"]
AlarmChange = Literal[
    "opened",
    "updated",
    "escalated",
    "reopened",
    "cleared",
    "acknowledged",
    "dispatched",
    "resolved",
    "false_positive",
    "commented",
    "assigned",
    "unacknowledged",
    "confirmed",
]
# Why a person called an alarm false; the console offers exactly these.
FalsePositiveReason = Literal[
    "not_rubbish", "belongs_there", "person_present", "camera_moved", "other"
]
# Each reason as the field staff read it (Telegram buttons, the dumping dashboard).
FALSE_POSITIVE_REASON_WORDS: dict[str, str] = {
    "not_rubbish": "Bukan sampah",
    "belongs_there": "Benda memang di situ",
    "person_present": "Orangnya masih ada",
    "camera_moved": "Kamera bergeser",
    "other": "Lainnya",
}
# The states each person's action applies to: the stream processor decides by these, and
# the console offers only the actions that apply. A comment may come at any time; an alarm
# is assigned only while it is still open.
ACTIVE_STATES: frozenset[str] = frozenset({"OPEN", "ACK", "DISPATCHED"})
SETTLEABLE_STATES: frozenset[str] = ACTIVE_STATES | {"CLEARED"}
ACTION_APPLIES_TO: dict[str, frozenset[str]] = {
    "ack": frozenset({"OPEN"}),
    "dispatch": frozenset({"OPEN", "ACK"}),
    "resolve": SETTLEABLE_STATES,
    "false_positive": SETTLEABLE_STATES,
    "comment": SETTLEABLE_STATES | {"RESOLVED", "FALSE_POSITIVE"},
    "assign": ACTIVE_STATES,
}
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "minor": 2, "major": 3, "critical": 4}


class Place(BaseModel):
    """Where a source stands, for people: name, desa, map position."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = ""
    desa: Name | None = None
    kecamatan: Name | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class GeoPoint(BaseModel):
    """A position on the earth (WGS 84), e.g. where a field worker stood."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)


class Alert(Message):
    """One state of an alarm (one alarm per source and type); `version` orders the states.

    Stage timestamps follow a reading or frame through the pipeline: `ts_capture` (at the
    source), `ts_ingest`, `ts_rule` (rule fired) and `ts_notified` (first notification sent).
    `change` says what this version changed; `notify` whether people should hear about it.

    Version 2 adds who is on it (`assignee`, `dispatched_to`) and, for a version a person
    made, the action behind it (`action_id`, `by`, `device`, `note`, `reason`, `photo`);
    version 1 messages still decode. Also version 2: `escalation`, the level an alarm nobody
    acknowledged in time was passed on to (change `unacknowledged`), and the camera's word on
    a clean-up (change `confirmed`; a resolved dumping alarm the camera still sees comes back
    `reopened` with its `resolved_at`).
    """

    KIND: ClassVar[str] = "alert"
    VERSION: ClassVar[int] = 2

    kind: Literal["alert"] = "alert"
    schema_version: Literal[1, 2] = 2
    alarm_id: UUID
    version: int = Field(ge=0, le=INT32_MAX)
    source_kind: Literal["sensor", "camera", "dumping"]
    source_id: SourceId
    alarm_type: Name
    severity: Severity
    state: AlarmState
    change: AlarmChange = "opened"
    notify: bool = True
    count: int = Field(ge=1, le=INT32_MAX, description="how many times the condition triggered")
    last_value: FiniteFloat | None = None
    quantity: Name | None = Field(None, description="e.g. waterLevel, for sensor alarms")
    threshold: FiniteFloat | None = Field(None, description="the level that was crossed")
    message: Text = ""
    place: Place | None = None
    evidence: tuple[EvidenceRef, ...] = Field((), max_length=64)
    event_id: UUID | None = Field(None, description="the dumping event behind this alarm")
    opened_at: UtcDatetime
    updated_at: UtcDatetime
    acknowledged_at: UtcDatetime | None = None
    dispatched_at: UtcDatetime | None = None
    resolved_at: UtcDatetime | None = None
    cleared_at: UtcDatetime | None = None
    ts_ingest: UtcDatetime | None = None
    ts_rule: UtcDatetime | None = None
    ts_notified: UtcDatetime | None = None
    assignee: Name | None = Field(None, description="the person this alarm is assigned to")
    dispatched_to: Name | None = Field(None, description="who was sent to the place")
    action_id: UUID | None = Field(None, description="the action that made this version")
    by: Name = Field("", description="who made this version (empty: the pipeline)")
    device: Name = Field("", description="from where they acted: console, api, telegram, cli")
    note: Text = Field("", description="their note or comment")
    reason: FalsePositiveReason | None = None
    photo: EvidenceRef | None = Field(None, description="photo uploaded with the action")
    location: GeoPoint | None = Field(None, description="where the person stood, if sent")
    escalation: int = Field(
        0,
        ge=0,
        le=INT16_MAX,
        description="how far the alarm was passed on because nobody acknowledged it in time: "
        "0 not at all, 1 the next level (e.g. the kecamatan coordinator)",
    )

    @model_validator(mode="after")
    def verify_version(self) -> Self:
        if self.schema_version == 1 and (
            self.action_id is not None
            or self.assignee is not None
            or self.dispatched_to is not None
            or self.escalation != 0
            or self.change in ("commented", "assigned", "unacknowledged", "confirmed")
        ):
            raise ValueError("action fields are schema_version 2; this message says 1")
        return self

    @property
    def key(self) -> bytes:
        return self.source_id.encode()


AlarmActionKind = Literal[
    "ack", "dispatch", "resolve", "false_positive", "comment", "assign", "check"
]


class AlarmAction(Message):
    """A person's decision on an alarm (ack, dispatch, resolve, false positive, comment,
    assign), or the streams' own periodic `check` of a silent source; keyed by the source id.

    Version 2 adds `device`, `to` (whom it is dispatched or assigned to), `reason` (of a
    false positive) and `photo` (e.g. the cleaned spot, in the evidence store).
    """

    KIND: ClassVar[str] = "alarm_action"
    VERSION: ClassVar[int] = 2

    kind: Literal["alarm_action"] = "alarm_action"
    schema_version: Literal[1, 2] = 2
    action: AlarmActionKind
    source_kind: Literal["sensor", "camera", "dumping"]
    source_id: SourceId
    alarm_id: UUID | None = Field(None, description="the alarm acted on (not for check)")
    by: Name = Field("", description="who decided (operator name); empty for check")
    note: Text = ""
    device: Name = Field("", description="from where: console, api, telegram, cli")
    to: Name | None = Field(None, description="dispatch: the team sent; assign: the user")
    reason: FalsePositiveReason | None = None
    photo: EvidenceRef | None = None
    location: GeoPoint | None = Field(None, description="where the person stood, if sent")

    @model_validator(mode="after")
    def verify_fields(self) -> Self:
        if self.schema_version == 1 and (
            self.action in ("comment", "assign")
            or self.to is not None
            or self.reason is not None
            or self.photo is not None
            or self.location is not None
            or self.device
        ):
            raise ValueError("comment, assign and their fields are schema_version 2")
        if self.action == "assign" and not self.to:
            raise ValueError("assign needs `to`: the user the alarm is assigned to")
        if self.action == "comment" and not self.note.strip():
            raise ValueError("a comment needs a note")
        if self.reason is not None and self.action != "false_positive":
            raise ValueError("a reason goes with false_positive only")
        if self.action != "check" and self.alarm_id is None:
            raise ValueError(f"{self.action} needs the alarm_id it acts on")
        return self

    @property
    def key(self) -> bytes:
        return self.source_id.encode()


class Notification(Message):
    """A delivery of the notifier's outbox (one notification per alarm state change and
    recipient); carries the alert's stage timestamps for the latency panels."""

    KIND: ClassVar[str] = "notification"
    VERSION: ClassVar[int] = 1

    kind: Literal["notification"] = "notification"
    schema_version: Literal[1] = 1
    notification_id: UUID
    alarm_id: UUID
    alarm_version: int = Field(ge=0, le=INT32_MAX)
    alarm_type: Name = ""
    alarm_state: AlarmState = "OPEN"
    severity: Severity = "info"
    route: Name = ""
    channel: Literal["webhook", "telegram", "email"]
    recipient: Text = Field(description="credential-free: a chat id, an address, a host")
    status: Literal["pending", "sent", "failed"]
    attempts: int = Field(ge=0, le=INT32_MAX)
    error: Text | None = None
    ts_ingest: UtcDatetime | None = None
    ts_rule: UtcDatetime | None = None
    sent_at: UtcDatetime | None = None

    @property
    def key(self) -> bytes:
        return str(self.alarm_id).encode()


class PlaceSignal(Message):
    """A camera's dumping, told to a sensor near it that a place rule joins with the camera
    (the stream processor to itself: a sensor's state lives in its own partition, the
    camera's in another). Keyed by the sensor; `id` is stable per event and sensor, so a
    replay changes nothing."""

    KIND: ClassVar[str] = "place_signal"
    VERSION: ClassVar[int] = 1

    kind: Literal["place_signal"] = "place_signal"
    schema_version: Literal[1] = 1
    sensor_id: SourceId = Field(description="the sensor the signal is for")
    camera_id: SourceId = Field(description="the camera that saw the dumping")
    event_id: UUID = Field(description="the dumping event")
    appeared_at: UtcDatetime = Field(description="when the dumped object appeared")
    zone_id: Name | None = None
    alarm_id: UUID | None = Field(None, description="the camera's dumping alarm, if it opened")
    evidence: tuple[EvidenceRef, ...] = Field((), max_length=64)

    @property
    def key(self) -> bytes:
        return self.sensor_id.encode()


class Metric(Message):
    """One measurement of the pipeline itself (rates, lags, latencies) for the health wall."""

    KIND: ClassVar[str] = "metric"
    VERSION: ClassVar[int] = 1

    kind: Literal["metric"] = "metric"
    schema_version: Literal[1] = 1
    component: Name = Field(description="sink, detect, ingest-camera, streams, ...")
    instance: Name = Field(description="host or process the value comes from")
    name: Name
    value: FiniteFloat
    unit: Name = ""
    labels: dict[Name, Text] = Field(default_factory=dict, max_length=32)

    @property
    def key(self) -> bytes:
        return self.component.encode()


ALL_MESSAGES: tuple[type[Message], ...] = (
    Frame,
    Detections,
    SensorReading,
    CameraHeartbeat,
    CameraView,
    DeadLetter,
    SensorWindow,
    DumpingEvent,
    Alert,
    AlarmAction,
    Notification,
    Metric,
    PlaceSignal,
)
BY_KIND: dict[str, type[Message]] = {cls.KIND: cls for cls in ALL_MESSAGES}
