"""The whole settings object and the checks that span sections."""

from __future__ import annotations

from typing import Self

from pydantic import (
    Field,
    model_validator,
)

from pantau.settings.base import Section, SettingsError, _section
from pantau.settings.cameras import CameraSettings, ZoneSettings
from pantau.settings.console import ConsoleSettings
from pantau.settings.detector import (
    _CONFIRM_AND_LEAVE_S,
    DetectorSettings,
    DetectSettings,
    DumpingSettings,
)
from pantau.settings.ingest import IngestSettings
from pantau.settings.kafka import KafkaSettings
from pantau.settings.mqtt import GatewaySettings, MqttSettings
from pantau.settings.notify import NotifySettings
from pantau.settings.postgres import PostgresSettings
from pantau.settings.runtime import DebugSettings, LoggingSettings, RuntimeSettings
from pantau.settings.sensors import SensorSettings
from pantau.settings.storage import ServicesSettings, SinkSettings, StorageSettings
from pantau.settings.streams import StreamsSettings


class Settings(Section):
    site: str = Field("mojokerto", description="deployment name")
    timezone: str = Field("Asia/Jakarta", description="time zone for people (WIB)")
    kafka: KafkaSettings = _section()
    postgres: PostgresSettings = _section()
    mqtt: MqttSettings = _section()
    cameras: tuple[CameraSettings, ...] = ()
    sensors: tuple[SensorSettings, ...] = ()
    gateways: tuple[GatewaySettings, ...] = Field(
        (), description="who may send readings, for which sensors, with which secret"
    )
    detector: DetectorSettings | None = None
    detect: DetectSettings = _section()
    dumping: DumpingSettings = _section()
    ingest: IngestSettings = _section()
    sink: SinkSettings = _section()
    streams: StreamsSettings = _section()
    notify: NotifySettings = _section()
    console: ConsoleSettings = _section()
    storage: StorageSettings = _section()
    services: ServicesSettings = _section()
    runtime: RuntimeSettings = _section()
    logging: LoggingSettings = _section()
    debug: DebugSettings = _section()

    @model_validator(mode="after")
    def verify_unique_ids(self) -> Self:
        groups: list[tuple[str, tuple[CameraSettings | SensorSettings | ZoneSettings, ...]]] = [
            ("camera", self.cameras),
            ("sensor", self.sensors),
        ]
        groups += [(f"camera {c.id}: zone", c.zones) for c in self.cameras]
        for kind, items in groups:
            seen: set[str] = set()
            for item in items:
                if item.id in seen:
                    raise ValueError(f"{kind} id {item.id!r} is used twice")
                seen.add(item.id)
        return self

    @model_validator(mode="after")
    def verify_rule_sensors(self) -> Self:
        known = {sensor.id for sensor in self.sensors}
        for rule in self.streams.rules:
            unknown = [s for s in rule.sensors if s not in known]
            if unknown:
                raise ValueError(f"streams rule {rule.id}: unknown sensors {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def verify_reconnect_bounds(self) -> Self:
        if self.ingest.reconnect_max_s < self.ingest.reconnect_initial_s:
            raise ValueError("ingest.reconnect_max_s must be >= ingest.reconnect_initial_s")
        return self

    @model_validator(mode="after")
    def verify_regions(self) -> Self:
        if self.detect.regions.enabled and self.detector is None:
            raise ValueError("detect.regions.enabled needs a detector: set detector")
        return self

    @model_validator(mode="after")
    def verify_evidence_buffer(self) -> Self:
        """At the alert the frames from before the drop must still be buffered: the drop
        lies the dwell time, plus the seconds an object takes to be confirmed and its
        owner to leave, before it."""
        if not self.dumping.enabled:
            return self
        evidence = self.dumping.evidence
        for camera in self.cameras:
            dwell = max(
                (z.dwell_s for z in camera.zones if z.kind == "watch"),
                default=self.dumping.default_dwell_s,
            )
            needed = evidence.pre_roll_s + dwell + _CONFIRM_AND_LEAVE_S
            if evidence.buffer_s < needed:
                raise ValueError(
                    f"dumping.evidence.buffer_s ({evidence.buffer_s:g} s) must cover pre_roll_s "
                    f"+ the longest dwell + {_CONFIRM_AND_LEAVE_S:g} s = {needed:g} s for "
                    f"camera {camera.id}"
                )
        return self

    def camera(self, camera_id: str) -> CameraSettings:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        known = ", ".join(c.id for c in self.cameras) or "none"
        raise SettingsError(f"camera {camera_id!r} is not configured (configured: {known})")

    def sensor_registry(self) -> dict[str, SensorSettings]:
        return {sensor.id: sensor for sensor in self.sensors}

    def gateway_of_sensor(self) -> dict[str, str]:
        """sensor id → the one gateway that may send for it (sensors that several gateways
        that can log in may send for are left out: the sender is not known from the sensor
        alone)."""
        owners: dict[str, list[str]] = {}
        for gateway in self.gateways:
            if not gateway.can_log_in:
                continue
            for sensor_id in gateway.sensors:
                owners.setdefault(sensor_id, []).append(gateway.id)
        return {sensor: ids[0] for sensor, ids in owners.items() if len(ids) == 1}

    @model_validator(mode="after")
    def verify_gateways(self) -> Self:
        known = {sensor.id for sensor in self.sensors}
        seen: set[str] = set()
        for gateway in self.gateways:
            if gateway.id in seen:
                raise ValueError(f"gateway id {gateway.id!r} is used twice")
            seen.add(gateway.id)
            if gateway.id == self.mqtt.username:
                raise ValueError(f"gateway {gateway.id}: its id is the ingest's MQTT user name")
            unknown = sorted(set(gateway.sensors) - known)
            if unknown:
                raise ValueError(
                    f"gateway {gateway.id}: sensors not in the registry: {', '.join(unknown)}"
                )
        return self


# --------------------------------------------------------------------------- loading
