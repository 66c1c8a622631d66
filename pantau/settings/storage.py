"""Storage: the sink, retention per class of data, and the services the project starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
)

from pantau.settings.base import ConfigPath, Section, _section


class SinkSettings(Section):
    group_id: str = Field("pantau-sink", description="Kafka consumer group of the sink")
    client: Literal["confluent", "kafka-python"] = Field(
        "confluent",
        description="Kafka client of the sink: librdkafka consumes about 8x faster here",
    )
    batch_max_rows: int = Field(20_000, ge=1, description="flush when this many rows are buffered")
    workers: int = Field(
        1, ge=1, le=64, description="sink processes (Python decodes on one core each)"
    )
    flush_interval_s: float = Field(0.5, gt=0, le=1.0, description="and at least this often")
    retry_initial_s: float = Field(0.5, gt=0, description="first back-off when the database fails")
    retry_max_s: float = Field(15.0, gt=0)
    detection_sample_s: float = Field(
        1.0, ge=0, description="store a tracked object's box at most once per this (0: all)"
    )
    metrics_interval_s: float = Field(10.0, gt=0, description="how often the sink records metrics")


class RetentionSettings(Section):
    raw_days: int = Field(90, ge=1, description="readings, detections, health, metrics")
    rollup_days: int = Field(730, ge=1, description="hourly and daily rollups")
    incident_days: int = Field(730, ge=1, description="dumping events, alerts, notifications")


class StorageSettings(Section):
    timescale: Literal["auto", "on", "off"] = Field(
        "auto", description="use TimescaleDB when the extension is available (auto)"
    )
    retention: RetentionSettings = _section()
    compress_after_days: int = Field(7, ge=1, description="TimescaleDB: compress older chunks")
    partitions_ahead_days: int = Field(
        7, ge=1, description="PostgreSQL: daily partitions created this far ahead"
    )
    analyst_evidence_access: bool = Field(
        False, description="may pantau_analyst read the evidence references of dumping events"
    )


class ServicesSettings(Section):
    """Native development services (`pantau services`); deployments use docker-compose."""

    state_dir: ConfigPath = Field(
        Path("../.pantau"), validate_default=True, description="data, logs and caches"
    )
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    kafka_brokers: int | None = Field(
        None,
        ge=1,
        le=9,
        description="Kafka nodes on this machine (KRaft, each broker and controller); node i "
        "listens on the first port + 100 x (i - 1). Fixed when the cluster is first formatted; "
        "unset: as formatted, or 1",
    )
