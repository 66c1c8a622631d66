"""Ingest: camera sampling, reconnects and heartbeats, reading validation, the HTTP door."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Self

from pydantic import (
    AwareDatetime,
    Field,
    model_validator,
)

from pantau.settings.base import ConfigPath, Section
from pantau.settings.cameras import MotionSettings


class IngestSettings(Section):
    heartbeat_interval_s: float = Field(5.0, gt=0, description="camera heartbeat period")
    camera_members: int = Field(
        1,
        ge=1,
        le=10_000,
        description="camera ingest processes sharing the cameras (each camera is taken by "
        "one; adding a process moves only the cameras it takes over)",
    )
    camera_member: int = Field(
        0,
        ge=0,
        description="which of them this process is, 0 .. camera_members - 1 (in Kubernetes: "
        "the StatefulSet pod's index)",
    )
    motion: MotionSettings = Field(
        default_factory=MotionSettings,
        description="every camera's motion gate (a camera's own `motion` keys override)",
    )
    reconnect_initial_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    max_future_skew_s: float = Field(
        120.0, ge=0, description="readings stamped further in the future are rejected"
    )
    earliest_observation: AwareDatetime = Field(
        datetime(2015, 1, 1, tzinfo=UTC),
        description="readings stamped before this are rejected (a clock that was never set)",
    )
    max_reading_bytes: int = Field(
        256 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="largest MQTT payload or HTTP item taken as one reading; larger is refused",
    )
    # This machine only, unless set: a listener on the network is a choice, and without TLS
    # one that start-up warns about (gateway secrets would cross the network in clear text).
    http_host: str = Field(
        "127.0.0.1",
        description="address `pantau ingest http` listens on (0.0.0.0: every interface; "
        "with http_tls_cert and http_tls_key, as gateways' secrets cross the network)",
    )
    http_port: int = Field(8088, ge=1, le=65535, description="port of `pantau ingest http`")
    http_max_items: int = Field(
        5000, ge=1, description="most readings in one POST /v1/readings; more is refused (413)"
    )
    http_max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="largest POST /v1/readings body in bytes; larger is refused (413)",
    )
    http_allow_anonymous: bool = Field(
        False,
        description="take POST /v1/readings without credentials, for any sensor: an open "
        "door, logged as such at start-up (readings then name no gateway); otherwise every "
        "request must come from a registered gateway (Bearer <id>.<secret>, or Basic)",
    )
    http_tls_cert: ConfigPath | None = Field(
        None,
        description="certificate chain (PEM) served for HTTPS; set together with http_tls_key",
    )
    http_tls_key: ConfigPath | None = Field(
        None,
        description="private key (PEM, not encrypted) of http_tls_cert; keep it readable by "
        "the ingest only",
    )
    # 10 s: a gateway's batch of a few hundred readings takes milliseconds on a working link;
    # a client still sending after 10 s is broken or hostile, and holds a connection meanwhile.
    http_read_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a request's headers and body must arrive within this many seconds of its "
        "first byte, else it is answered 408 and its connection closed",
    )
    http_max_connections: int = Field(
        256,
        ge=1,
        le=10_000,
        description="most client connections open at once; a further one is answered 503 "
        "and closed",
    )

    @model_validator(mode="after")
    def verify_camera_member(self) -> Self:
        if self.camera_member >= self.camera_members:
            raise ValueError(
                f"ingest.camera_member ({self.camera_member}) must be below "
                f"ingest.camera_members ({self.camera_members}): members count from 0"
            )
        return self

    @model_validator(mode="after")
    def verify_http_tls(self) -> Self:
        if (self.http_tls_cert is None) != (self.http_tls_key is None):
            raise ValueError(
                "ingest.http_tls_cert and ingest.http_tls_key go together: set both (HTTPS) "
                "or neither"
            )
        return self
