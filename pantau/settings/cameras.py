"""Cameras: their sources, frame rates, zones and the motion gate."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from pantau.settings.base import Location, Section, SourceId, _resolve_path


class ZoneSettings(Section):
    """An area of a camera's view; corners are fractions of the width and height (0..1)."""

    id: SourceId
    name: str = ""
    kind: Literal["watch", "fixture", "ignore"] = Field(
        "watch", description="watch for dumping / objects that belong there / never look"
    )
    polygon: tuple[tuple[float, float], ...] = Field(min_length=3)
    dwell_s: float = Field(30.0, gt=0, description="unattended this long before an alert")

    @field_validator("polygon")
    @classmethod
    def verify_inside_frame(
        cls, polygon: tuple[tuple[float, float], ...]
    ) -> tuple[tuple[float, float], ...]:
        outside = [p for p in polygon if not (0 <= p[0] <= 1 and 0 <= p[1] <= 1)]
        if outside:
            raise ValueError(f"corners are fractions of the frame (0..1), got {outside[0]}")
        return polygon


class MotionSettings(Section):
    """The motion gate next to the camera: which sampled frames are published for detection."""

    enabled: bool = Field(True, description="off: every sampled frame is published")
    # After the gate's downscale (to 96-191 px wide) and blur, sensor noise stays within a few
    # grey levels; a person against pavement differs by tens.
    threshold: float = Field(
        20.0,
        gt=0,
        le=255,
        description="grey-level change (0-255, after brightness normalisation) that counts a "
        "pixel as changed",
    )
    # 0.3% of a 640x360 frame is about 26x26 px: a person far down a street, not a flicker.
    min_area: float = Field(
        0.003, gt=0, lt=1, description="fraction of the frame that must change to be motion"
    )
    hold_s: float = Field(
        3.0, ge=0, description="keep publishing this long after the last motion (people pausing)"
    )
    static_interval_s: float = Field(
        2.0,
        gt=0,
        description="without motion, still publish one frame this often, so that an object "
        "that arrived and stopped is seen (and an alert due in a still scene waits at most "
        "this long for its frame)",
    )
    background_s: float = Field(
        5.0, gt=0, description="time constant of the background: how fast a stopped change fades"
    )


class CameraSettings(Section):
    id: SourceId
    name: str = Field("", description="human-readable name shown on the wall")
    url: SecretStr = Field(
        description="RTSP / HTTP URL or a video file path; may carry credentials"
    )
    fps: float = Field(5.0, gt=0, le=30, description="frames per second sampled for detection")
    max_width: int = Field(
        640, ge=160, le=3840, description="frames are resized down to this width"
    )
    jpeg_quality: int = Field(80, ge=30, le=100)
    location: Location | None = None
    enabled: bool = True
    zones: tuple[ZoneSettings, ...] = ()
    motion: MotionSettings | None = Field(
        None, description="this camera's motion gate keys; unset keys come from ingest.motion"
    )

    def motion_gate(self, default: MotionSettings) -> MotionSettings:
        """The gate settings in force: `default` (ingest.motion) with this camera's keys."""
        if self.motion is None:
            return default
        given = {key: getattr(self.motion, key) for key in self.motion.model_fields_set}
        return default.model_copy(update=given)

    @field_validator("url")
    @classmethod
    def resolve_file_url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        """A video file given as a relative path is relative to the config file too."""
        raw = value.get_secret_value()
        if not raw.strip():
            raise ValueError("url must not be empty")
        if "://" in raw:
            return value
        return SecretStr(str(_resolve_path(Path(raw), info)))
