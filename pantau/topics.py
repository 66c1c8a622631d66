"""Topic names, partition counts and topic configs.

Names carry a version suffix; a site-wide prefix (settings `kafka.topic_prefix`) isolates
deployments and test runs sharing a broker. Every `X.v1` topic has a dead-letter twin
`X.dlq.v1`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pantau.settings import KafkaSettings, Replication

FRAMES = "cctv.frames.v1"
DETECTIONS = "detections.v1"
READINGS = "sensors.readings.v1"
READING_WINDOWS = "sensors.readings.1m.v1"
CAMERA_HEALTH = "cameras.health.v1"
# The detector's word on each camera's picture (moved, covered, blurred): see CameraView.
CAMERA_VIEW = "cameras.view.v1"
DUMPING_EVENTS = "events.dumping.v1"
ALERTS = "alerts.v1"
# Operator decisions and the streams' silence checks; partitioned like the readings, so each
# lands where the stream processor keeps that source's alarms.
ALARM_ACTIONS = "alerts.actions.v1"
NOTIFICATIONS = "notifications.v1"
# A camera's dumping, passed to the sensors near it that a place rule joins with it (see
# PlaceSignal); partitioned like the readings, so each lands with its sensor's state.
PLACE_SIGNALS = "streams.place-signals.v1"
METRICS = "pipeline.metrics.v1"
# Each camera's detector state (background, objects, open cases), compacted: the latest per
# camera is what a restarted or rebalanced detector resumes from. Not a data topic: nothing
# stores it, and it has no dead-letter twin.
DETECT_STATE = "detect.state.v1"

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS

# Frames are bulky and only worth detecting while fresh; evidence goes to the evidence store.
_FRAMES_RETENTION_MS = 6 * _HOUR_MS
_DEFAULT_RETENTION_MS = 7 * _DAY_MS
# Dead letters wait for a person to look at them.
_DEAD_LETTER_RETENTION_MS = 30 * _DAY_MS


def dead_letter_name(topic: str) -> str:
    """`sensors.readings.v1` → `sensors.readings.dlq.v1` (prefix kept)."""
    stem, dot, version = topic.rpartition(".")
    if not dot or not version.startswith("v"):
        return f"{topic}.dlq"
    return f"{stem}.dlq.{version}"


def is_dead_letter_topic(topic: str) -> bool:
    return ".dlq." in topic or topic.endswith(".dlq")


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the settings want it. `config` holds the topic-level configs Pantau sets
    (retention, sizes, compaction, min.insync.replicas); the broker's defaults rule the rest."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 1


def _replicated(
    name: str, partitions: int, replication: Replication, config: Mapping[str, str]
) -> TopicSpec:
    return TopicSpec(
        name,
        partitions,
        {**config, "min.insync.replicas": str(replication.min_insync)},
        replication.replicas,
    )


class Topics:
    """The resolved topic names for one settings object."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self.prefix = kafka.topic_prefix

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def frames(self) -> str:
        return self.name(FRAMES)

    @property
    def detections(self) -> str:
        return self.name(DETECTIONS)

    @property
    def readings(self) -> str:
        return self.name(READINGS)

    @property
    def camera_health(self) -> str:
        return self.name(CAMERA_HEALTH)

    @property
    def camera_view(self) -> str:
        return self.name(CAMERA_VIEW)

    @property
    def reading_windows(self) -> str:
        return self.name(READING_WINDOWS)

    @property
    def dumping_events(self) -> str:
        return self.name(DUMPING_EVENTS)

    @property
    def alerts(self) -> str:
        return self.name(ALERTS)

    @property
    def alarm_actions(self) -> str:
        return self.name(ALARM_ACTIONS)

    @property
    def place_signals(self) -> str:
        return self.name(PLACE_SIGNALS)

    @property
    def notifications(self) -> str:
        return self.name(NOTIFICATIONS)

    @property
    def metrics(self) -> str:
        return self.name(METRICS)

    @property
    def detect_state(self) -> str:
        return self.name(DETECT_STATE)

    def dead_letters(self, topic: str) -> str:
        return dead_letter_name(topic)

    def all_dead_letter_topics(self) -> list[str]:
        return [dead_letter_name(t) for t in self.data_topics()]

    def data_topics(self) -> list[str]:
        return [spec.name for spec in self._data_specs()]

    def _data_specs(self) -> list[TopicSpec]:
        parts = self._kafka.partitions
        replication = self._kafka.replication
        limit = str(self._kafka.max_message_bytes + 64 * 1024)
        week = {"retention.ms": str(_DEFAULT_RETENTION_MS)}
        data = replication.data
        return [
            _replicated(
                self.frames,
                parts.frames,
                replication.frames,
                {"retention.ms": str(_FRAMES_RETENTION_MS), "max.message.bytes": limit},
            ),
            _replicated(self.detections, parts.detections, data, week),
            _replicated(self.readings, parts.readings, data, week),
            _replicated(self.camera_health, parts.camera_health, data, week),
            _replicated(self.camera_view, parts.camera_health, data, week),
            _replicated(self.reading_windows, parts.readings, data, week),
            _replicated(self.dumping_events, parts.events, data, week),
            _replicated(self.alerts, parts.events, data, week),
            _replicated(self.alarm_actions, parts.readings, data, week),
            _replicated(self.place_signals, parts.readings, data, week),
            _replicated(self.notifications, parts.events, data, week),
            _replicated(self.metrics, parts.metrics, data, week),
        ]

    def specs(self) -> list[TopicSpec]:
        """Every topic the pipeline uses, each data topic with its dead-letter twin."""
        limit = str(self._kafka.max_message_bytes + 64 * 1024)
        data = self._data_specs()
        state = _replicated(
            self.detect_state,
            self._kafka.partitions.camera_health,
            self._kafka.replication.state,
            {
                "cleanup.policy": "compact",
                # Snapshots come every few seconds per camera; only the latest counts, so
                # the log is compacted often and stays about one snapshot per camera.
                "segment.ms": str(10 * 60 * 1000),
                "min.cleanable.dirty.ratio": "0.1",
                "max.message.bytes": limit,
            },
        )
        return [*data, state] + [
            _replicated(
                dead_letter_name(spec.name),
                self._kafka.partitions.dead_letters,
                self._kafka.replication.dead_letters,
                # A dead letter wraps the original, so it may be a little larger than it.
                {"retention.ms": str(_DEAD_LETTER_RETENTION_MS), "max.message.bytes": limit},
            )
            for spec in data
        ]
