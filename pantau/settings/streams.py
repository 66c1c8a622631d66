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


class _PlaceRuleBase(_RuleBase):
    """A rule that joins a sensor with the cameras near it: the sensor's own condition and
    dumping seen by a camera close by make one alarm, on the sensor, with the camera's
    evidence. A camera is near when it stands within `within_m` metres of the sensor, or, with
    `same_desa`, in the same desa; a sensor or camera without a location is near nothing."""

    within_m: float | None = Field(
        None, gt=0, description="cameras this close to the sensor (metres, great circle) join"
    )
    same_desa: bool = Field(False, description="cameras in the sensor's desa join too")

    @model_validator(mode="after")
    def verify_place(self) -> Self:
        if self.within_m is None and not self.same_desa and not self._joins_by_river():
            raise ValueError(f"rule {self.id}: set within_m, same_desa or both")
        return self

    def _joins_by_river(self) -> bool:
        return False


class OpenBurningRule(_PlaceRuleBase):
    """Suspected open burning of waste: particulates at an air-quality sensor rose by `rise`
    within `period_s`, and a camera near it saw dumping within `hotspot_days` before."""

    type: Literal["open_burning"] = "open_burning"
    quantity: str = Field("pm25", description="the particulates that rise (pm25 or pm10)")
    rise: float = Field(gt=0, description="raise when it rose at least this much ...")
    period_s: float = Field(1800.0, gt=0, description="... within this many seconds")
    hotspot_days: float = Field(
        7.0, gt=0, description="a camera with dumping this many days before the rise is a hotspot"
    )


class TpsOverflowRule(_PlaceRuleBase):
    """A TPS container over its level and dumping beside it (people dump next to a full
    container): one alarm for the truck, however many dumpings and in whichever order the
    reading and the camera's word arrive. It clears when the container is emptied."""

    type: Literal["tps_overflow"] = "tps_overflow"
    quantity: str = "fillingLevel"
    raise_above: float = Field(0.9, description="the container counts as full at this level")
    clear_below: float = Field(0.6, description="... and as emptied below this one")
    window_s: float = Field(
        3600.0,
        ge=0,
        description="dumping this many seconds before the container reached its level counts "
        "too (the camera saw it first); any dumping while it is full counts",
    )

    @model_validator(mode="after")
    def verify_levels(self) -> Self:
        if self.clear_below > self.raise_above:
            raise ValueError(f"rule {self.id}: clear_below must not be above raise_above")
        return self


class RiverDumpingRule(_PlaceRuleBase):
    """Dumping on a river bank upstream of a rising gauge (the drainage blockage the city
    fears in the rainy season): a camera on the same river (location.river) at most
    `downstream_km` upstream of the gauge saw dumping, and the gauge rose by `rise` within
    `period_s`, the two within `window_s` of each other."""

    type: Literal["river_dumping"] = "river_dumping"
    quantity: str = "waterLevel"
    rise: float = Field(gt=0, description="raise when the level rose at least this much ...")
    period_s: float = Field(3600.0, gt=0, description="... within this many seconds")
    downstream_km: float = Field(
        5.0, gt=0, description="the gauge lies at most this far downstream of the camera"
    )
    window_s: float = Field(
        6 * 3600.0, ge=0, description="the dumping and the rise at most this far apart"
    )

    def _joins_by_river(self) -> bool:
        return True


PlaceRule = OpenBurningRule | TpsOverflowRule | RiverDumpingRule
Rule = Annotated[
    ThresholdRule
    | RateOfChangeRule
    | StaleRule
    | OpenBurningRule
    | TpsOverflowRule
    | RiverDumpingRule,
    Field(discriminator="type"),
]


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
