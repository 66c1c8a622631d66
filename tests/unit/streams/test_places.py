"""Place rules: a sensor's condition joined with dumping seen by a camera near it, driven by
messages alone through the engine (camera state → place signal → sensor state), as the
stream processor routes them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from pantau.ids import stable_id
from pantau.messages import Alert, DumpingEvent, Message, PlaceSignal, SensorReading
from pantau.poison import BadInput
from pantau.settings import Location, settings_from_mapping
from streams.engine import Engine, State
from streams.places import distance_m
from streams.state import dump_state, load_state, new_state
from tests.factories import SAMPLES

BASE = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
HOUR = 3600.0

CONFIG: dict[str, Any] = {
    "sensors": [
        {"id": "aq-near", "type": "air_quality",
         "location": {"lat": -7.4930, "lon": 112.4290, "desa": "Sooko"}},
        {"id": "aq-far", "type": "air_quality",
         "location": {"lat": -7.4600, "lon": 112.4000, "desa": "Gedeg"}},
        # Two kilometres away, but in the camera's desa (written otherwise).
        {"id": "aq-desa", "type": "air_quality",
         "location": {"lat": -7.5050, "lon": 112.4400, "desa": " sooko"}},
        {"id": "aq-nowhere", "type": "air_quality"},
        {"id": "tps-1", "type": "waste_container", "tps": True,
         "location": {"lat": -7.4925, "lon": 112.4292, "desa": "Sooko"}},
        {"id": "wl-sadar", "type": "water_level",
         "location": {"lat": -7.4805, "lon": 112.4470, "desa": "Magersari",
                      "river": "Kali Sadar", "river_km": 12.0}},
    ],
    "cameras": [
        {"id": "cam-tps", "name": "TPS Sooko", "url": "rtsp://10.0.0.5/a",
         "location": {"lat": -7.4920, "lon": 112.4290, "desa": "Sooko"}},
        {"id": "cam-river", "name": "Tepi Kali Sadar", "url": "rtsp://10.0.0.6/a",
         "location": {"lat": -7.4805, "lon": 112.4400, "desa": "Magersari",
                      "river": "Kali Sadar", "river_km": 10.0}},
        # Downstream of the gauge: its dumping cannot block the gauge's drain.
        {"id": "cam-river-down", "url": "rtsp://10.0.0.7/a",
         "location": {"lat": -7.4805, "lon": 112.4600, "desa": "Magersari",
                      "river": "Kali Sadar", "river_km": 14.0}},
    ],
    "streams": {
        "cooldown_s": 300,
        "rules": [
            {"type": "open_burning", "id": "open-burning", "sensor_type": "air_quality",
             "quantity": "pm25", "rise": 35, "period_s": 1800, "within_m": 500,
             "same_desa": True, "hotspot_days": 7},
            {"type": "tps_overflow", "id": "tps-overflow", "sensor_type": "waste_container",
             "tps_only": True, "raise_above": 0.9, "clear_below": 0.6, "within_m": 150,
             "window_s": 3600},
            {"type": "river_dumping", "id": "river-dumping", "sensor_type": "water_level",
             "rise": 0.2, "period_s": 3600, "downstream_km": 5, "window_s": 6 * 3600},
        ],
    },
}  # fmt: skip
SETTINGS = settings_from_mapping(CONFIG, base_dir=Path("."))


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def reading(sensor: str, seconds: float, **values: float) -> SensorReading:
    kind = {"aq": "air_quality", "tp": "waste_container", "wl": "water_level"}[sensor[:2]]
    return SensorReading(
        id=stable_id("test-reading", sensor, seconds),
        ts_capture=at(seconds),
        seq=int(seconds) + 1,
        sensor_id=sensor,
        sensor_type=kind,
        values=values,
        ts_ingest=at(seconds + 1),
    )


def dumping(camera: str, seconds: float, name: str = "a") -> DumpingEvent:
    """A new dumping event, its object appeared 45 s before the event."""
    data = SAMPLES["dumping_event"].model_dump()
    data.update(
        id=stable_id("test-dumping", camera, name),
        event_id=stable_id("test-event", camera, name),
        camera_id=camera,
        ts_capture=at(seconds),
        seq=int(seconds) + 1,
        phase="new",
        state="alerted",
        appeared_at=at(seconds - 45),
    )
    return DumpingEvent.model_validate(data)


class City:
    """The engine with every source's state, routing place signals as the stream processor
    does (to the sensor's state), and keeping every alert it made."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or Engine(SETTINGS)
        self.states: dict[str, State] = {}
        self.alerts: list[Alert] = []
        self.signals: list[PlaceSignal] = []

    def state(self, key: str, kind: str) -> State:
        if key not in self.states:
            self.states[key] = new_state("sensor" if kind == "sensor" else "camera", key)
        return self.states[key]

    def send(self, *messages: Message) -> list[Alert]:
        made: list[Alert] = []
        queue = list(messages)
        while queue:
            message = queue.pop(0)
            if isinstance(message, SensorReading):
                out = self.engine.on_reading(
                    self.state(message.sensor_id, "sensor"), message, ts_rule=at(0)
                )
            elif isinstance(message, DumpingEvent):
                out = self.engine.on_dumping(
                    self.state(message.camera_id, "camera"), message, ts_rule=at(0)
                )
            else:
                assert isinstance(message, PlaceSignal)
                out = self.engine.on_signal(
                    self.state(message.sensor_id, "sensor"), message, ts_rule=at(0)
                )
            made += out.alerts
            self.signals += out.signals
            queue += out.signals
        self.alerts += made
        return made

    def place_alerts(self, alarm_type: str) -> list[Alert]:
        return [a for a in self.alerts if a.alarm_type == alarm_type]


def changes(alerts: Iterable[Alert]) -> list[tuple[str, str, int]]:
    return [(a.source_id, a.change, a.count) for a in alerts]


def pm_rise(sensor: str, start: float, high: float = 70.0) -> list[SensorReading]:
    """PM2.5 at 30, then 30 ten minutes on, then `high` ten minutes after that."""
    return [
        reading(sensor, start, pm25=30.0),
        reading(sensor, start + 600, pm25=30.0),
        reading(sensor, start + 1200, pm25=high),
    ]


# ------------------------------------------------------------------ who joins whom


def test_distance_is_the_great_circle_in_metres() -> None:
    a = Location(lat=-7.0, lon=112.0)
    assert distance_m(a, Location(lat=-8.0, lon=112.0)) == pytest.approx(111_195, abs=2)
    assert distance_m(a, a) == 0.0


def test_cameras_join_sensors_by_distance_desa_and_river() -> None:
    links = {
        (link.rule.id, link.sensor_id, link.camera_id): link.how for link in Engine(SETTINGS).links
    }
    assert links == {
        ("open-burning", "aq-near", "cam-tps"): "111 m",
        ("open-burning", "aq-desa", "cam-tps"): "desa Sooko",
        ("tps-overflow", "tps-1", "cam-tps"): "60 m",
        ("river-dumping", "wl-sadar", "cam-river"): "2.0 km upstream on Kali Sadar",
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"river": "Kali Sadar"}, "river and river_km go together"),
        ({"river_km": 3.0}, "river and river_km go together"),
    ],
)
def test_a_river_position_needs_both_its_name_and_its_kilometre(
    change: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        Location.model_validate({"lat": -7.4, "lon": 112.4, **change})


def test_a_place_rule_must_say_what_near_means() -> None:
    config = {
        "streams": {"rules": [{"type": "open_burning", "id": "burn", "rise": 30}]},
    }
    with pytest.raises(ValueError, match="set within_m, same_desa or both"):
        settings_from_mapping(config, base_dir=Path("."))


# ------------------------------------------------------------------ open burning


def test_a_pm_rise_near_a_dumping_hotspot_raises_one_alarm_with_the_cameras_evidence() -> None:
    city = City()
    event = dumping("cam-tps", 0)
    city.send(event)
    # The camera's dumping went to the sensors near it, and only to them.
    assert sorted(s.sensor_id for s in city.signals) == ["aq-desa", "aq-near", "tps-1"]
    city.send(*pm_rise("aq-near", 2 * 86_400))
    [alarm] = city.place_alerts("open-burning")
    assert (alarm.source_kind, alarm.source_id, alarm.change, alarm.state) == (
        "sensor", "aq-near", "opened", "OPEN",
    )  # fmt: skip
    # Both sources: the sensor's rise, the camera's event and its evidence.
    assert (alarm.quantity, alarm.last_value, alarm.threshold) == ("pm25", 40.0, 35.0)
    assert alarm.event_id == event.event_id
    assert alarm.evidence == event.evidence
    assert "TPS Sooko" in alarm.message and "111 m" in alarm.message
    assert "2 days before" in alarm.message
    assert alarm.place is not None and alarm.place.desa == "Sooko"


def test_a_pm_rise_far_from_any_hotspot_or_without_one_raises_nothing() -> None:
    city = City()
    city.send(dumping("cam-tps", 0))
    city.send(*pm_rise("aq-far", HOUR))
    city.send(*pm_rise("aq-nowhere", HOUR))
    # Near the camera, but no camera near it saw dumping: an ordinary rise.
    quiet = City()
    quiet.send(*pm_rise("aq-near", HOUR))
    assert city.place_alerts("open-burning") == []
    assert quiet.place_alerts("open-burning") == []


def test_a_hotspot_older_than_hotspot_days_no_longer_counts() -> None:
    city = City()
    city.send(dumping("cam-tps", 0))
    city.send(*pm_rise("aq-near", 8 * 86_400))
    assert city.place_alerts("open-burning") == []


def test_a_small_rise_does_not_count_and_the_alarm_clears_when_the_air_settles() -> None:
    city = City()
    city.send(dumping("cam-tps", 0))
    city.send(*pm_rise("aq-near", HOUR, high=60.0))  # up 30 of the 35
    assert city.place_alerts("open-burning") == []
    city.send(*pm_rise("aq-near", 3 * HOUR))
    # Still up: no second alarm; then back to 30, a rise of none within the period.
    city.send(reading("aq-near", 3 * HOUR + 1500, pm25=75.0))
    city.send(reading("aq-near", 6 * HOUR, pm25=30.0))
    assert changes(city.place_alerts("open-burning")) == [
        ("aq-near", "opened", 1),
        ("aq-near", "cleared", 1),
    ]


def test_a_late_word_from_the_camera_joins_a_rise_already_seen() -> None:
    """The sensor's readings arrive first; the camera's event, which happened before them,
    arrives later (a camera whose upload lagged): the alarm opens when it comes."""
    city = City()
    rise = pm_rise("aq-near", HOUR)
    city.send(*rise)
    assert city.place_alerts("open-burning") == []
    late = dumping("cam-tps", HOUR - 600)
    city.send(late)
    [alarm] = city.place_alerts("open-burning")
    assert (alarm.source_id, alarm.change, alarm.event_id) == ("aq-near", "opened", late.event_id)


# ------------------------------------------------------------------ TPS overflow


@pytest.mark.parametrize("dumping_first", [True, False])
def test_a_full_tps_and_dumping_beside_it_make_one_alarm_in_either_order(
    dumping_first: bool,
) -> None:
    city = City()
    full = reading("tps-1", 1800, fillingLevel=0.95)
    first = dumping("cam-tps", 600 if dumping_first else 2400, "first")
    city.send(*([first, full] if dumping_first else [full, first]))
    # A second dumping beside the same full container: the same alarm, counted.
    city.send(dumping("cam-tps", 3000, "second"))
    city.send(reading("tps-1", 3600, fillingLevel=0.97))
    assert changes(city.place_alerts("tps-overflow")) == [
        ("tps-1", "opened", 1),
        ("tps-1", "updated", 2),
    ]
    opened = city.place_alerts("tps-overflow")[0]
    assert opened.event_id == first.event_id and opened.notify is True
    assert city.place_alerts("tps-overflow")[1].notify is False
    # Emptied: cleared.
    city.send(reading("tps-1", 7200, fillingLevel=0.3))
    assert changes(city.place_alerts("tps-overflow"))[-1] == ("tps-1", "cleared", 2)


def test_dumping_long_before_the_container_filled_up_is_not_its_overflow() -> None:
    city = City()
    city.send(dumping("cam-tps", 0))
    city.send(reading("tps-1", 2 * HOUR, fillingLevel=0.95))
    assert city.place_alerts("tps-overflow") == []


def test_the_same_signal_twice_changes_nothing() -> None:
    city = City()
    city.send(reading("tps-1", 0, fillingLevel=0.95))
    city.send(dumping("cam-tps", 60))
    [signal] = [s for s in city.signals if s.sensor_id == "tps-1"]
    assert city.send(signal) == []
    assert changes(city.place_alerts("tps-overflow")) == [("tps-1", "opened", 1)]


# ------------------------------------------------------------------ river bank


def test_river_bank_dumping_upstream_of_a_rising_gauge_raises_the_blockage_alarm() -> None:
    city = City()
    event = dumping("cam-river", 0)
    city.send(event)
    city.send(
        reading("wl-sadar", 3 * HOUR, waterLevel=1.5),
        reading("wl-sadar", 3 * HOUR + 1800, waterLevel=1.6),
        reading("wl-sadar", 3 * HOUR + 3000, waterLevel=1.8),
    )
    [alarm] = city.place_alerts("river-dumping")
    assert (alarm.source_id, alarm.event_id, alarm.last_value) == (
        "wl-sadar", event.event_id, pytest.approx(0.3),
    )  # fmt: skip
    assert "2.0 km upstream on Kali Sadar" in alarm.message


def test_a_rise_long_after_the_dumping_or_dumping_downstream_raises_nothing() -> None:
    late = City()
    late.send(dumping("cam-river", 0))
    late.send(
        reading("wl-sadar", 8 * HOUR, waterLevel=1.5),
        reading("wl-sadar", 8 * HOUR + 1800, waterLevel=1.8),
    )
    downstream = City()
    downstream.send(dumping("cam-river-down", 0))
    downstream.send(
        reading("wl-sadar", HOUR, waterLevel=1.5),
        reading("wl-sadar", HOUR + 1800, waterLevel=1.8),
    )
    assert late.place_alerts("river-dumping") == []
    assert downstream.signals == []
    assert downstream.place_alerts("river-dumping") == []


# ------------------------------------------------------------------ state and bad input


def test_what_a_sensor_heard_from_its_cameras_survives_a_restart() -> None:
    city = City()
    event = dumping("cam-tps", 0)
    city.send(event)
    # A new worker: the sensor's state from the changelog's bytes, a fresh engine.
    restarted = City(Engine(SETTINGS))
    restarted.states = {key: load_state(dump_state(s)) for key, s in city.states.items()}
    restarted.send(*pm_rise("aq-near", HOUR))
    [alarm] = restarted.place_alerts("open-burning")
    assert alarm.event_id == event.event_id and alarm.evidence == event.evidence


def test_a_signal_for_an_unknown_sensor_is_refused_with_its_name() -> None:
    signal = PlaceSignal.model_validate(
        {**SAMPLES["place_signal"].model_dump(), "sensor_id": "aq-gone"}
    )
    with pytest.raises(BadInput, match="aq-gone"):
        Engine(SETTINGS).on_signal(new_state("sensor", "aq-gone"), signal, ts_rule=at(0))


def test_signal_ids_are_stable_per_event_and_sensor() -> None:
    first, again = City(), City()
    first.send(dumping("cam-tps", 0))
    again.send(dumping("cam-tps", 0))
    assert [s.id for s in first.signals] == [s.id for s in again.signals]
    assert len({s.id for s in first.signals}) == 3
    assert all(isinstance(s.event_id, UUID) for s in first.signals)


def test_a_sensor_no_camera_is_near_keeps_no_history_for_the_rule() -> None:
    city = City()
    city.send(*pm_rise("aq-far", HOUR))
    city.send(*pm_rise("aq-near", HOUR))
    assert city.states["aq-far"].hist == {}
    assert [t for t, _ in city.states["aq-near"].hist["pm25"]] == [
        (at(HOUR + i * 600) - BASE).total_seconds() + BASE.timestamp() for i in range(3)
    ]
