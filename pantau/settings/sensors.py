"""Sensors: the registry of what reports, where, with its alarm levels."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import (
    Field,
    model_validator,
)

from pantau.settings.base import Location, Section, SourceId

SensorType = Literal["air_quality", "water_level", "waste_container"]


class Levels(Section):
    """A sensor's own alarm levels for one quantity, overriding the rule's."""

    raise_above: float = Field(description="raise at or above this value")
    clear_below: float = Field(description="clear below this value (hysteresis)")

    @model_validator(mode="after")
    def verify_hysteresis(self) -> Self:
        if self.clear_below > self.raise_above:
            raise ValueError("clear_below must not be above raise_above")
        return self


class SensorSettings(Section):
    id: SourceId
    type: SensorType
    name: str = ""
    location: Location | None = None
    tps: bool = Field(
        False, description="a waste container at a TPS (tempat penampungan sementara)"
    )
    units: dict[str, str] = Field(
        default_factory=dict,
        description="unit the device reports per quantity when not the standard one, e.g. "
        "{waterLevel: cm}; readings are converted on ingest",
    )
    thresholds: dict[str, Levels] = Field(
        default_factory=dict, description="per quantity: this sensor's alarm levels"
    )
