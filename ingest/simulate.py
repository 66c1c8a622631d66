"""Sensor simulator: realistic readings for the configured sensors, published over MQTT.

Air quality follows Mojokerto's daily rhythm (morning traffic, evening waste burning), the
Brantas river level drifts with rain surges, and TPS containers fill up until collected.
Optionally every Nth payload is malformed, so the dead-letter path is exercised too.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt

from ingest.sensors import mqtt_client
from pantau.ids import utcnow
from pantau.settings import SensorSettings, Settings, SettingsError

log = logging.getLogger(__name__)

WIB = timezone(timedelta(hours=7), "WIB")


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-((hour - centre) ** 2) / (2 * width**2))


class SensorModel:
    """Produces the measured attributes of one sensor at a given time."""

    def __init__(self, sensor: SensorSettings, rng: random.Random) -> None:
        self.sensor = sensor
        self.rng = rng

    def values(self, now: datetime) -> dict[str, float]:
        raise NotImplementedError


class AirQualityModel(SensorModel):
    def __init__(self, sensor: SensorSettings, rng: random.Random) -> None:
        super().__init__(sensor, rng)
        self.base = rng.uniform(22.0, 40.0)
        self.noise = 0.0

    def values(self, now: datetime) -> dict[str, float]:
        hour = now.astimezone(WIB).hour + now.minute / 60.0
        # Morning traffic around 07:00, evening burning of household waste around 19:00.
        rhythm = 0.75 + 0.6 * _bump(hour, 7.0, 1.5) + 0.9 * _bump(hour, 19.0, 2.0)
        self.noise = 0.9 * self.noise + self.rng.gauss(0.0, 0.05)
        pm25 = max(1.0, self.base * rhythm * (1.0 + self.noise))
        pm10 = pm25 * self.rng.uniform(1.45, 1.9)
        temperature = 27.0 + 4.5 * math.sin((hour - 9.0) / 24.0 * 2 * math.pi)
        humidity = min(0.98, max(0.45, 0.95 - (temperature - 24.0) * 0.035))
        return {
            "pm25": round(pm25, 1),
            "pm10": round(pm10, 1),
            "temperature": round(temperature + self.rng.gauss(0, 0.2), 1),
            "relativeHumidity": round(humidity, 3),
        }


class WaterLevelModel(SensorModel):
    def __init__(self, sensor: SensorSettings, rng: random.Random) -> None:
        super().__init__(sensor, rng)
        self.level = rng.uniform(1.6, 2.4)
        self.surge = 0.0

    def values(self, now: datetime) -> dict[str, float]:
        if self.rng.random() < 0.002:
            self.surge += self.rng.uniform(0.2, 0.8)  # an upstream downpour arrives
        self.surge *= 0.995
        self.level += 0.02 * (2.0 - self.level) + self.rng.gauss(0.0, 0.004)
        return {"waterLevel": round(max(0.2, self.level + self.surge), 3)}


class WasteContainerModel(SensorModel):
    def __init__(self, sensor: SensorSettings, rng: random.Random) -> None:
        super().__init__(sensor, rng)
        self.fill = rng.uniform(0.15, 0.85)
        self.last: datetime | None = None

    def values(self, now: datetime) -> dict[str, float]:
        elapsed = 0.0 if self.last is None else (now - self.last).total_seconds()
        self.last = now
        # About 70 % of a container per day, in lumps as people bring their rubbish.
        self.fill += elapsed * 0.7 / 86_400 + (0.01 if self.rng.random() < 0.02 else 0.0)
        if self.fill >= 1.0 and self.rng.random() < 0.01:
            self.fill = self.rng.uniform(0.0, 0.05)  # the truck came
        return {"fillingLevel": round(min(1.0, self.fill), 3)}


MODELS: dict[str, Callable[[SensorSettings, random.Random], SensorModel]] = {
    "air_quality": AirQualityModel,
    "water_level": WaterLevelModel,
    "waste_container": WasteContainerModel,
}


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes
    malformed: bool


def malformed_payloads(sensor_id: str, now: datetime) -> list[tuple[str, bytes]]:
    """(sensor id used in the topic, payload) pairs, each wrong in a different way."""
    stamp = now.isoformat()
    return [
        (sensor_id, b'{"dateObserved": "' + stamp.encode() + b'", "pm25": "tinggi"'),
        (sensor_id, json.dumps({"dateObserved": stamp, "pm25": "tinggi"}).encode()),
        (sensor_id, json.dumps({"sensorId": "ghost-99", "dateObserved": stamp}).encode()),
        (sensor_id, json.dumps({"seq": 1, "fillingLevel": 0.5, "pm25": 10.0}).encode()),
        (sensor_id, json.dumps({"dateObserved": stamp, "pm25": -7.5}).encode()),
        (sensor_id, json.dumps({"dateObserved": now.replace(tzinfo=None).isoformat()}).encode()),
    ]


class Simulator:
    """Yields publications in time order; pure apart from the random generator."""

    def __init__(
        self,
        sensors: Sequence[SensorSettings],
        topic_prefix: str,
        *,
        malformed_every: int = 0,
        seed: int | None = None,
    ) -> None:
        if not sensors:
            raise ValueError("no sensors configured to simulate")
        rng = random.Random(seed)
        self.models = [MODELS[s.type](s, rng) for s in sensors]
        self.prefix = topic_prefix.rstrip("/")
        self.malformed_every = malformed_every
        self.rng = rng
        self._count = 0
        self._bad = 0
        self._seq = {s.id: 0 for s in sensors}

    def tick(self, now: datetime) -> Iterator[Publication]:
        """One reading per sensor at `now`, with every Nth replaced by a malformed one."""
        for model in self.models:
            self._count += 1
            sensor_id = model.sensor.id
            if self.malformed_every and self._count % self.malformed_every == 0:
                choices = malformed_payloads(sensor_id, now)
                target, payload = choices[self._bad % len(choices)]
                self._bad += 1
                yield Publication(f"{self.prefix}/{target}", payload, malformed=True)
                continue
            self._seq[sensor_id] += 1
            body = {
                "sensorId": sensor_id,
                "dateObserved": now.isoformat().replace("+00:00", "Z"),
                "seq": self._seq[sensor_id],
                **model.values(now),
            }
            yield Publication(f"{self.prefix}/{sensor_id}", json.dumps(body).encode(), False)


def _gateway_clients(settings: Settings) -> dict[str, mqtt.Client]:
    """sensor id → a client logged in as a gateway that may send for it, one per gateway: the
    simulator sends as the devices in the field would. Only gateways whose secret is in the
    environment (development, tests) can be simulated."""
    clients: dict[str, mqtt.Client] = {}
    by_gateway: dict[str, mqtt.Client] = {}
    for sensor in settings.sensors:
        gateway = next(
            (
                g
                for g in settings.gateways
                if sensor.id in g.sensors and g.secret is not None and not g.revoked
            ),
            None,
        )
        if gateway is None:
            if not settings.mqtt.allow_anonymous:
                raise SettingsError(
                    f"cannot simulate sensor {sensor.id}: no gateway that sends for it has its "
                    "secret in the environment (`secret:` in the registry)"
                )
            user, password, name = None, None, "anonymous"
        else:
            assert gateway.secret is not None
            user, password, name = gateway.id, gateway.secret.get_secret_value(), gateway.id
        if name not in by_gateway:
            by_gateway[name] = mqtt_client(
                settings.mqtt,
                client_id=f"pantau-simulator-{name}-{random.randrange(1 << 30)}",
                persistent=False,
                username=user,
                password=password,
            )
        clients[sensor.id] = by_gateway[name]
    return clients


@dataclass
class SimulationReport:
    published: int = 0
    malformed: int = 0


def run_simulator(
    settings: Settings,
    stop: threading.Event,
    *,
    duration_s: float | None,
    rate_hz: float,
    malformed_every: int,
    seed: int | None,
    on_tick: Callable[[SimulationReport], None] | None = None,
) -> SimulationReport:
    """Publish readings at `rate_hz` per sensor until `duration_s` passes or `stop` is set."""
    simulator = Simulator(
        settings.sensors, settings.mqtt.topic_prefix, malformed_every=malformed_every, seed=seed
    )
    clients = _gateway_clients(settings)
    for client in set(clients.values()):
        client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=settings.mqtt.keepalive_s)
        client.loop_start()
    report = SimulationReport()
    pending = []
    period = 1.0 / rate_hz
    started = time.monotonic()
    next_tick = started
    try:
        while not stop.is_set():
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
            for publication in simulator.tick(utcnow()):
                client = clients[publication.topic.rsplit("/", 1)[1]]
                info = client.publish(publication.topic, publication.payload, qos=settings.mqtt.qos)
                pending.append(info)
                report.published += 1
                report.malformed += publication.malformed
            if on_tick is not None:
                on_tick(report)
            pending = [p for p in pending if not p.is_published()]
            next_tick += period
            stop.wait(max(0.0, next_tick - time.monotonic()))
        for info in pending:
            info.wait_for_publish(timeout=10)
    finally:
        for client in set(clients.values()):
            client.disconnect()
            client.loop_stop()
    log.info("simulator: published %d payloads (%d malformed)", report.published, report.malformed)
    return report
