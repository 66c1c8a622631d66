"""The stream processor: alarm rules and their severities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    model_validator,
)

from pantau.settings.base import ConfigPath, Section, SourceId
from pantau.settings.sensors import SensorSettings, SensorType

Severity = Literal["critical", "major", "minor", "warning", "info"]


class _RuleBase(Section):
    id: SourceId = Field(description="the alarm type this rule raises, e.g. pm25-high")
    sensor_type: SensorType | None = Field(None, description="only sensors of this type")
    sensors: tuple[SourceId, ...] = Field((), description="only these sensors (empty: all)")
    tps_only: bool = Field(False, description="only containers at a TPS")
    severity: Severity = "major"

    def applies_to(self, sensor: SensorSettings) -> bool:
        if self.sensor_type is not None and sensor.type != self.sensor_type:
            return False
        if self.sensors and sensor.id not in self.sensors:
            return False
        return not (self.tps_only and not sensor.tps)


class ThresholdRule(_RuleBase):
    """Raise when a quantity reaches `raise_above`; clear only once it falls below `clear_below`."""

    type: Literal["threshold"] = "threshold"
    quantity: str
    raise_above: float
    clear_below: float
    critical_above: float | None = Field(None, description="escalate to critical at or above")

    @model_validator(mode="after")
    def verify_hysteresis(self) -> Self:
        if self.clear_below > self.raise_above:
            raise ValueError(f"rule {self.id}: clear_below must not be above raise_above")
        return self


class RateOfChangeRule(_RuleBase):
    """Raise when a quantity rises faster than `rise` per `period_s` (e.g. a river rising)."""

    type: Literal["rate_of_change"] = "rate_of_change"
    quantity: str
    rise: float = Field(gt=0, description="raise when it rose at least this much ...")
    period_s: float = Field(600.0, gt=0, description="... within this many seconds")


class StaleRule(_RuleBase):
    """Raise when a sensor has sent nothing for `after_s`; clear on its next reading."""

    type: Literal["stale"] = "stale"
    after_s: float = Field(gt=0)


Rule = Annotated[ThresholdRule | RateOfChangeRule | StaleRule, Field(discriminator="type")]


class StreamsSettings(Section):
    """The stream processors (faust): windows, rules, camera health, alarm lifecycle."""

    app_id: str = Field("pantau-streams", description="faust app id (consumer group, tables)")
    data_dir: ConfigPath = Field(
        Path("../.pantau/streams"), validate_default=True, description="faust's local state"
    )
    window_s: int = Field(60, ge=1, description="tumbling window of the reading statistics")
    window_grace_s: float = Field(
        10.0, ge=0, description="readings this late still count in their window"
    )
    camera_offline_after_s: float = Field(
        30.0, gt=0, description="no heartbeat for this long: camera offline alarm"
    )
    check_interval_s: float = Field(1.0, gt=0, description="how often timers look for silence")
    stall_after_s: float = Field(
        60.0,
        gt=0,
        description="an input partition with records waiting and no commit for this long "
        "restarts the worker",
    )
    cooldown_s: float = Field(
        300.0,
        ge=0,
        description="a condition returning this soon after its clear re-opens the same alarm "
        "without a new notification",
    )
    camera_severity: Severity = "major"
    camera_view_severity: Severity = Field(
        "major",
        description="camera_view_changed: the detector saw the camera turned onto another "
        "view; its zones must be checked",
    )
    camera_tamper_severity: Severity = Field(
        "major",
        description="camera_tampered: the picture is covered or blurred (a fogged lens at "
        "dawn too, hence not critical by default: critical ignores quiet hours)",
    )
    dumping_severity: Severity = "major"
    escalate_after_s: dict[Severity, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="an alarm still OPEN (nobody acknowledged it) this long after it opened, "
        "by severity, is sent once more, to the routes of escalation_level 1; a severity not "
        "listed is never passed on",
    )
    cleanup_confirm_s: float = Field(
        600.0,
        gt=0,
        description="a dumping alarm resolved while its object is still on camera this long "
        "after the resolve is re-opened (once); the camera seeing the spot cleaned confirms it",
    )
    rules: tuple[Rule, ...] = ()
