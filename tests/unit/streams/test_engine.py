"""Alarm rules, reading windows and the alarm life-cycle, driven by messages alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from pantau.ids import stable_id
from pantau.messages import (
    AlarmAction,
    Alert,
    CameraHeartbeat,
    CameraView,
    DumpingEvent,
    SensorReading,
)
from pantau.settings import settings_from_mapping
from streams.engine import (
    ACTION_IDS_KEPT,
    CAMERA_OFFLINE,
    CAMERA_TAMPERED,
    CAMERA_VIEW_CHANGED,
    DUMPING,
    ActionRejected,
    Engine,
    Output,
    State,
    is_replay,
    mark_applied,
)
from streams.state import dump_state, load_state, new_state
from tests.factories import EVENT_ID, SAMPLES

# Minute-aligned, so window starts are whole multiples of BASE's epoch seconds.
BASE = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
COOLDOWN_S = 300.0
STALE_AFTER_S = 900.0
OFFLINE_AFTER_S = 30.0

CONFIG: dict[str, Any] = {
    "sensors": [
        {
            "id": "wl-lengkong",
            "type": "water_level",
            "name": "Brantas Lengkong",
            "location": {"lat": -7.4496, "lon": 112.415, "desa": "Lengkong"},
            "thresholds": {"waterLevel": {"raise_above": 3.0, "clear_below": 2.7}},
        },
        {"id": "wl-ploso", "type": "water_level"},
        {"id": "bin-tps-sooko", "type": "waste_container", "tps": True},
        {"id": "bin-pasar", "type": "waste_container", "tps": False},
        {"id": "aq-alun-alun", "type": "air_quality"},
    ],
    "cameras": [
        {
            "id": "tps-gedeg",
            "name": "TPS Gedeg",
            "url": "rtsp://10.0.0.5/stream",
            "location": {"lat": -7.43, "lon": 112.39, "desa": "Gedeg"},
        }
    ],
    "streams": {
        "cooldown_s": COOLDOWN_S,
        "camera_offline_after_s": OFFLINE_AFTER_S,
        "window_s": 60,
        "window_grace_s": 10,
        "rules": [
            {
                # wl-lengkong overrides these levels with its own 3.0 / 2.7.
                "id": "water-high",
                "type": "threshold",
                "sensors": ["wl-lengkong"],
                "quantity": "waterLevel",
                "raise_above": 3.5,
                "clear_below": 3.2,
                "critical_above": 4.0,
            },
            {
                "id": "water-rising",
                "type": "rate_of_change",
                "sensors": ["wl-ploso"],
                "quantity": "waterLevel",
                "rise": 0.5,
                "period_s": 600,
            },
            {
                "id": "bin-full",
                "type": "threshold",
                "sensor_type": "waste_container",
                "tps_only": True,
                "quantity": "fillingLevel",
                "raise_above": 0.9,
                "clear_below": 0.7,
            },
            {
                "id": "sensor-silent",
                "type": "stale",
                "sensors": ["wl-lengkong"],
                "after_s": STALE_AFTER_S,
                "severity": "minor",
            },
        ],
    },
}
SETTINGS = settings_from_mapping(CONFIG, base_dir=Path("."))
ENGINE = Engine(SETTINGS)
SENSOR_TYPES = {s.id: s.type for s in SETTINGS.sensors}


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def epoch(seconds: float) -> float:
    return at(seconds).timestamp()


def reading(sensor_id: str, seconds: float, **values: float) -> SensorReading:
    return SensorReading(
        id=stable_id("test-reading", sensor_id, seconds),
        ts_capture=at(seconds),
        seq=int(seconds),
        sensor_id=sensor_id,
        sensor_type=SENSOR_TYPES[sensor_id],
        values=values,
        ts_ingest=at(seconds + 1),
    )


def feed(state: State, sensor_id: str, quantity: str, seconds: float, value: float) -> Output:
    return ENGINE.on_reading(
        state, reading(sensor_id, seconds, **{quantity: value}), ts_rule=at(seconds + 2)
    )


def water(state: State, seconds: float, level: float) -> list[Alert]:
    return feed(state, "wl-lengkong", "waterLevel", seconds, level).alerts


def action(
    kind: str,
    seconds: float,
    source_id: str = "wl-lengkong",
    alarm_id: UUID | None = None,
    source_kind: str = "sensor",
) -> AlarmAction:
    return AlarmAction.model_validate(
        {
            "id": stable_id("test-action", kind, source_id, seconds),
            "ts_capture": at(seconds),
            "seq": int(seconds),
            "action": kind,
            "source_kind": source_kind,
            "source_id": source_id,
            "alarm_id": alarm_id,
            "by": "" if kind == "check" else "Siti (DLH)",
            "note": "" if kind == "check" else "petugas menuju lokasi",
        }
    )


def check(state: State, seconds: float, source_id: str, source_kind: str = "sensor") -> Output:
    return ENGINE.on_action(
        state,
        action("check", seconds, source_id, source_kind=source_kind),
        ts_rule=at(seconds),
    )


def act(state: State, kind: str, seconds: float, alarm_id: UUID) -> Alert:
    out = ENGINE.on_action(state, action(kind, seconds, alarm_id=alarm_id), ts_rule=at(seconds))
    [alert] = out.alerts
    return alert


def heartbeat(seconds: float, status: str) -> CameraHeartbeat:
    data = SAMPLES["camera_heartbeat"].model_dump()
    data.update(
        id=stable_id("test-beat", seconds), ts_capture=at(seconds), seq=int(seconds), status=status
    )
    return CameraHeartbeat.model_validate(data)


def dumping(seconds: float, phase: str, state: str) -> DumpingEvent:
    data = SAMPLES["dumping_event"].model_dump()
    data.update(
        id=stable_id("test-dumping", phase, seconds),
        ts_capture=at(seconds),
        seq=int(seconds),
        phase=phase,
        state=state,
        appeared_at=at(seconds - 45),
    )
    return DumpingEvent.model_validate(data)


def sensor_state(sensor_id: str = "wl-lengkong") -> State:
    return new_state("sensor", sensor_id)


def opened_water_alarm(state: State) -> Alert:
    water(state, 0, 2.5)
    [alert] = water(state, 10, 3.1)
    return alert


# --------------------------------------------------------------------------- thresholds

# (seconds, waterLevel, expected (change, state, notify, count, severity) or None: no alert)
WATER_HIGH_STORY: list[tuple[float, float, tuple[str, str, bool, int, str] | None]] = [
    (0, 2.5, None),
    (10, 3.1, ("opened", "OPEN", True, 1, "major")),
    (20, 3.4, None),  # holding above is not a new trigger
    (30, 2.9, None),  # between clear_below and raise_above: hysteresis, still open
    (40, 3.2, ("updated", "OPEN", False, 2, "major")),
    (50, 4.1, ("escalated", "OPEN", True, 3, "critical")),
    (60, 4.3, None),
    (70, 2.6, ("cleared", "CLEARED", True, 3, "critical")),
]


def run_water_story(state: State) -> list[Alert]:
    alerts: list[Alert] = []
    for seconds, level, expected in WATER_HIGH_STORY:
        got = water(state, seconds, level)
        assert len(got) == (0 if expected is None else 1), f"at {seconds}s, level {level}"
        alerts += got
    return alerts


def test_threshold_story_follows_one_alarm_through_its_life() -> None:
    state = sensor_state()
    alerts = run_water_story(state)

    expected = [e for _, _, e in WATER_HIGH_STORY if e is not None]
    assert [(a.change, a.state, a.notify, a.count, a.severity) for a in alerts] == expected
    assert {a.alarm_id for a in alerts} == {alerts[0].alarm_id}
    assert [a.version for a in alerts] == list(range(len(alerts)))
    assert len({a.id for a in alerts}) == len(alerts)


def test_opened_alarm_names_the_sensor_its_place_and_the_crossed_level() -> None:
    alert = opened_water_alarm(sensor_state())

    assert alert.alarm_type == "water-high"
    assert alert.source_kind == "sensor"
    assert alert.source_id == "wl-lengkong"
    # The sensor's own level (3.0), not the rule's (3.5).
    assert alert.threshold == 3.0
    assert alert.last_value == 3.1
    assert alert.quantity == "waterLevel"
    assert alert.place is not None
    assert alert.place.desa == "Lengkong"
    assert alert.message == "water-high at Brantas Lengkong"
    assert alert.opened_at == at(10)
    assert alert.ts_ingest == at(11)
    assert alert.ts_rule == at(12)


def test_opening_value_at_critical_level_opens_as_critical() -> None:
    state = sensor_state()
    [alert] = water(state, 0, 4.0)

    assert (alert.change, alert.severity, alert.notify) == ("opened", "critical", True)


@pytest.mark.parametrize(
    ("gap_s", "change", "same_alarm", "notify", "clear_notifies"),
    [
        (60, "reopened", True, False, False),
        (COOLDOWN_S - 1, "reopened", True, False, False),
        (COOLDOWN_S, "opened", False, True, True),
        (COOLDOWN_S + 600, "opened", False, True, True),
    ],
)
def test_crossing_again_after_a_clear_respects_the_cooldown(
    gap_s: float, change: str, same_alarm: bool, notify: bool, clear_notifies: bool
) -> None:
    state = sensor_state()
    first = opened_water_alarm(state)
    [cleared] = water(state, 20, 2.5)

    [again] = water(state, 20 + gap_s, 3.3)
    [cleared_again] = water(state, 30 + gap_s, 2.5)

    assert again.change == change
    assert again.state == "OPEN"
    assert again.notify is notify
    assert (again.alarm_id == first.alarm_id) is same_alarm
    assert again.count == (2 if same_alarm else 1)
    assert again.version == (cleared.version + 1 if same_alarm else 0)
    assert cleared_again.state == "CLEARED"
    assert cleared_again.notify is clear_notifies


def test_reopened_alarm_forgets_its_previous_clear_time() -> None:
    state = sensor_state()
    opened_water_alarm(state)
    water(state, 20, 2.5)

    [again] = water(state, 80, 3.3)

    assert again.cleared_at is None


def test_escalation_of_a_quietly_reopened_alarm_is_followed_by_an_audible_clear() -> None:
    state = sensor_state()
    opened_water_alarm(state)
    water(state, 20, 2.5)
    [reopened] = water(state, 80, 3.3)
    [escalated] = water(state, 90, 4.2)
    [cleared] = water(state, 100, 2.5)

    assert (reopened.change, reopened.notify) == ("reopened", False)
    assert (escalated.change, escalated.notify) == ("escalated", True)
    assert cleared.notify is True


def test_values_that_never_reach_the_level_raise_nothing() -> None:
    state = sensor_state()
    alerts = [a for s, level in [(0, 2.0), (10, 2.99), (20, 2.8)] for a in water(state, s, level)]

    assert alerts == []


def test_reading_without_the_rule_quantity_raises_nothing() -> None:
    state = sensor_state()
    out = ENGINE.on_reading(state, reading("wl-lengkong", 0, temperature=31.0), ts_rule=at(1))

    assert out.alerts == []


@pytest.mark.parametrize(
    ("sensor_id", "alarm_types"),
    [("bin-tps-sooko", ["bin-full"]), ("bin-pasar", [])],
)
def test_tps_only_rule_watches_only_containers_at_a_tps(
    sensor_id: str, alarm_types: list[str]
) -> None:
    state = sensor_state(sensor_id)
    out = feed(state, sensor_id, "fillingLevel", 0, 0.95)

    assert [a.alarm_type for a in out.alerts] == alarm_types


# --------------------------------------------------------------------------- replay


def test_replaying_the_same_inputs_on_fresh_state_gives_identical_alerts() -> None:
    first = run_water_story(sensor_state())
    second = run_water_story(sensor_state())

    assert [(a.id, a.alarm_id, a.version) for a in first] == [
        (a.id, a.alarm_id, a.version) for a in second
    ]
    assert first == second


@pytest.mark.parametrize(
    ("applied", "topic", "offset", "replay"),
    [
        ({}, "sensors.readings.v1", 0, False),
        ({"sensors.readings.v1": 5}, "sensors.readings.v1", 4, True),
        ({"sensors.readings.v1": 5}, "sensors.readings.v1", 5, True),
        ({"sensors.readings.v1": 5}, "sensors.readings.v1", 6, False),
        ({"sensors.readings.v1": 5}, "alarms.actions.v1", 0, False),
    ],
)
def test_inputs_at_or_below_the_last_applied_offset_are_replays(
    applied: dict[str, int], topic: str, offset: int, replay: bool
) -> None:
    state = sensor_state()
    for applied_topic, applied_offset in applied.items():
        mark_applied(state, applied_topic, applied_offset)

    assert is_replay(state, topic, offset) is replay


# --------------------------------------------------------------------------- rate of change


@pytest.mark.parametrize(
    ("series", "changes"),
    [
        # 0.6 m within two minutes: rising fast.
        ([(0, 1.0), (60, 1.2), (120, 1.6)], ["opened"]),
        # Exactly the configured rise opens too.
        ([(0, 1.0), (60, 1.5)], ["opened"]),
        # Still at least `rise` above the period's low: nothing new.
        ([(0, 1.0), (120, 1.6), (180, 1.5)], ["opened"]),
        # Falling back: the rise within the period shrinks below half of `rise`.
        ([(0, 1.0), (120, 1.6), (180, 1.2)], ["opened", "cleared"]),
        # Between half of `rise` and `rise`: neither raise nor clear.
        ([(0, 1.0), (120, 1.6), (180, 1.3)], ["opened"]),
        # The same 0.6 m spread over more than period_s (600 s) is not a fast rise.
        ([(0, 1.0), (400, 1.3), (800, 1.6)], []),
        ([(0, 1.0), (60, 0.9), (120, 0.8)], []),
    ],
)
def test_rate_of_change_opens_on_a_fast_rise_and_clears_when_it_falls(
    series: list[tuple[float, float]], changes: list[str]
) -> None:
    state = sensor_state("wl-ploso")
    alerts = [a for s, v in series for a in feed(state, "wl-ploso", "waterLevel", s, v).alerts]

    assert [a.change for a in alerts] == changes
    assert {a.alarm_type for a in alerts} <= {"water-rising"}
    if alerts:
        assert alerts[0].threshold == 0.5
        assert alerts[0].last_value == pytest.approx(max(v for _, v in series) - series[0][1])


def test_late_reading_counts_in_the_rise_it_belongs_to() -> None:
    state = sensor_state("wl-ploso")
    # 1.0 at 0 s and 1.2 at 300 s; then a reading from 100 s arrives late, with 0.5.
    for seconds, value in [(0, 1.0), (300, 1.2), (100, 0.5)]:
        assert feed(state, "wl-ploso", "waterLevel", seconds, value).alerts == []
    assert [t for t, _ in state.hist["waterLevel"]] == [epoch(0), epoch(100), epoch(300)]
    # 1.05 at 400 s: up 0.55 on the late 0.5 (only 0.05 on the readings in order).
    [opened] = feed(state, "wl-ploso", "waterLevel", 400, 1.05).alerts
    assert opened.change == "opened"
    assert opened.last_value == pytest.approx(0.55)
    # At 1000 s the look-back (600 s) has left 0 s and 100 s behind; history keeps no more.
    feed(state, "wl-ploso", "waterLevel", 1000, 1.1)
    assert [t for t, _ in state.hist["waterLevel"]] == [epoch(400), epoch(1000)]


def test_state_through_the_changelog_format_behaves_the_same() -> None:
    whole = sensor_state()
    stored = sensor_state()
    alerts_whole: list[Alert] = []
    alerts_stored: list[Alert] = []
    for seconds, level, _ in WATER_HIGH_STORY:
        alerts_whole += water(whole, seconds, level)
        alerts_stored += water(stored, seconds, level)
        stored = load_state(dump_state(stored))
    assert alerts_stored == alerts_whole
    assert stored == whole


# --------------------------------------------------------------------------- windows


def air(state: State, seconds: float, pm25: float, pm10: float) -> Output:
    return ENGINE.on_reading(
        state, reading("aq-alun-alun", seconds, pm25=pm25, pm10=pm10), ts_rule=at(seconds)
    )


def test_window_closes_only_after_its_end_plus_grace() -> None:
    state = sensor_state("aq-alun-alun")
    outs = [air(state, s, 40.0, 70.0) for s in (5, 20, 40, 65, 69)]

    assert all(o.windows == [] for o in outs)
    assert air(state, 70, 40.0, 70.0).windows != []


def test_closed_window_has_one_summary_per_quantity() -> None:
    state = sensor_state("aq-alun-alun")
    air(state, 5, 40.0, 70.0)
    air(state, 20, 46.0, 80.0)
    air(state, 40, 37.0, 75.0)
    air(state, 65, 99.0, 99.0)  # next minute: not part of the first window

    windows = air(state, 71, 50.0, 90.0).windows

    summary = {w.quantity: (w.count, w.min, w.max, pytest.approx(w.mean)) for w in windows}
    assert summary == {
        "pm25": (3, 37.0, 46.0, pytest.approx(41.0)),
        "pm10": (3, 70.0, 80.0, pytest.approx(75.0)),
    }
    assert {(w.sensor_id, w.ts_capture, w.window_s) for w in windows} == {
        ("aq-alun-alun", BASE, 60)
    }
    assert {w.id for w in windows} == {
        stable_id("sensor_window", "aq-alun-alun", q, int(BASE.timestamp()))
        for q in ("pm25", "pm10")
    }


def test_reading_older_than_a_closed_window_is_late_and_changes_nothing() -> None:
    state = sensor_state("aq-alun-alun")
    air(state, 5, 40.0, 70.0)
    air(state, 65, 50.0, 80.0)
    air(state, 71, 60.0, 90.0)  # closes the first minute

    late = air(state, 30, 1.0, 1.0)

    assert (late.late, late.windows, late.alerts) == (1, [], [])
    second_minute = air(state, 131, 0.0, 0.0).windows
    assert {w.quantity: (w.count, w.min, w.max) for w in second_minute} == {
        "pm25": (2, 50.0, 60.0),
        "pm10": (2, 80.0, 90.0),
    }


def test_reading_within_grace_still_counts_in_its_window() -> None:
    state = sensor_state("aq-alun-alun")
    air(state, 5, 40.0, 70.0)
    air(state, 68, 50.0, 80.0)

    within_grace = air(state, 50, 10.0, 10.0)
    windows = air(state, 71, 0.0, 0.0).windows

    assert within_grace.late == 0
    assert {w.quantity: (w.count, w.min) for w in windows} == {
        "pm25": (2, 10.0),
        "pm10": (2, 10.0),
    }


def test_check_closes_windows_of_a_sensor_that_went_quiet() -> None:
    state = sensor_state("aq-alun-alun")
    air(state, 5, 40.0, 70.0)

    assert ENGINE.due(state, epoch(69)) is False
    assert ENGINE.due(state, epoch(70)) is True
    windows = check(state, 70, "aq-alun-alun").windows
    assert sorted(w.quantity for w in windows) == ["pm10", "pm25"]
    assert ENGINE.due(state, epoch(10_000)) is False


def test_reading_for_a_window_a_check_already_closed_counts_as_late() -> None:
    state = sensor_state("aq-alun-alun")
    air(state, 5, 40.0, 70.0)
    [*first] = check(state, 70, "aq-alun-alun").windows

    delayed = air(state, 50, 10.0, 10.0)  # captured in the first minute, delivered late
    later = air(state, 200, 0.0, 0.0).windows

    assert len(first) == 2
    assert delayed.late == 1
    assert {w.id for w in later}.isdisjoint({w.id for w in first})


# --------------------------------------------------------------------------- stale sensors


def test_silent_sensor_opens_an_alarm_on_check_and_its_next_reading_clears_it() -> None:
    state = sensor_state()
    water(state, 0, 2.0)
    check(state, 70, "wl-lengkong")  # flushes the reading's window: no silence yet

    assert ENGINE.due(state, epoch(STALE_AFTER_S - 1)) is False
    assert ENGINE.due(state, epoch(STALE_AFTER_S)) is True
    assert check(state, STALE_AFTER_S - 1, "wl-lengkong").alerts == []

    [silent] = check(state, STALE_AFTER_S, "wl-lengkong").alerts
    assert (silent.alarm_type, silent.change, silent.state) == ("sensor-silent", "opened", "OPEN")
    assert (silent.notify, silent.severity) == (True, "minor")
    assert silent.last_value == STALE_AFTER_S
    assert silent.place is not None
    assert silent.place.desa == "Lengkong"

    assert ENGINE.due(state, epoch(STALE_AFTER_S + 100)) is False
    assert check(state, STALE_AFTER_S + 100, "wl-lengkong").alerts == []

    [cleared] = water(state, STALE_AFTER_S + 200, 2.0)
    assert (cleared.alarm_id, cleared.state, cleared.notify) == (
        silent.alarm_id,
        "CLEARED",
        True,
    )


@pytest.mark.parametrize("sensor_id", ["wl-ploso", "aq-alun-alun"])
def test_sensor_without_a_stale_rule_never_goes_silent(sensor_id: str) -> None:
    state = sensor_state(sensor_id)
    ENGINE.on_reading(state, reading(sensor_id, 0, waterLevel=1.0), ts_rule=at(0))
    check(state, 70, sensor_id)

    assert ENGINE.due(state, epoch(100_000)) is False
    assert check(state, 100_000, sensor_id).alerts == []


def test_sensor_never_heard_from_is_not_due() -> None:
    assert ENGINE.due(sensor_state(), epoch(100_000)) is False


# --------------------------------------------------------------------------- cameras


def camera_state() -> State:
    return new_state("camera", "tps-gedeg")


def beat(state: State, seconds: float, status: str) -> Output:
    return ENGINE.on_heartbeat(state, heartbeat(seconds, status), ts_rule=at(seconds))


def camera_check(state: State, seconds: float) -> Output:
    return check(state, seconds, "tps-gedeg", source_kind="camera")


@pytest.mark.parametrize("first_status", ["online", "connecting"])
def test_camera_silent_too_long_goes_offline_and_online_clears_it(first_status: str) -> None:
    state = camera_state()
    beat(state, 0, first_status)

    assert ENGINE.due(state, epoch(OFFLINE_AFTER_S - 1)) is False
    assert camera_check(state, OFFLINE_AFTER_S - 1).alerts == []
    assert ENGINE.due(state, epoch(OFFLINE_AFTER_S)) is True

    [offline] = camera_check(state, OFFLINE_AFTER_S).alerts
    assert (offline.alarm_type, offline.source_kind, offline.change) == (
        CAMERA_OFFLINE,
        "camera",
        "opened",
    )
    assert (offline.notify, offline.severity) == (True, "major")
    assert offline.place is not None
    assert (offline.place.name, offline.place.desa) == ("TPS Gedeg", "Gedeg")
    assert ENGINE.due(state, epoch(OFFLINE_AFTER_S + 10)) is False

    [online] = beat(state, OFFLINE_AFTER_S + 15, "online").alerts
    assert (online.alarm_id, online.state, online.notify) == (offline.alarm_id, "CLEARED", True)
    assert ENGINE.due(state, epoch(OFFLINE_AFTER_S + 20)) is False


@pytest.mark.parametrize("status", ["reconnecting", "stalled", "ended"])
def test_camera_beat_that_is_not_online_neither_clears_nor_resets_the_clock(status: str) -> None:
    state = camera_state()
    beat(state, 0, "online")
    camera_check(state, OFFLINE_AFTER_S)

    assert beat(state, OFFLINE_AFTER_S + 5, status).alerts == []
    assert state.alarms[CAMERA_OFFLINE].state == "OPEN"


def test_camera_that_never_sent_a_heartbeat_is_not_offline() -> None:
    state = camera_state()

    assert ENGINE.due(state, epoch(100_000)) is False
    assert camera_check(state, 100_000).alerts == []


# --------------------------------------------------------------------------- camera views


def view(
    seconds: float, condition: str, phase: str, camera_id: str = "tps-gedeg", **values: float
) -> CameraView:
    fields: dict[str, Any] = {
        "changed_frac": 0.82 if condition == "moved" else 0.1,
        "brightness_spread": 3.5 if condition == "covered" else 48.0,
        "sharpness_ratio": 0.08 if condition == "blurred" else 0.95,
        "relearn_s": 120.0 if condition == "moved" and phase == "start" else 0.0,
        **values,
    }
    return CameraView(
        id=stable_id("test-view", camera_id, condition, phase, seconds),
        ts_capture=at(seconds),
        seq=int(seconds),
        camera_id=camera_id,
        condition=condition,
        phase=phase,
        **fields,
    )


def seen(state: State, seconds: float, condition: str, phase: str, **values: float) -> list[Alert]:
    return ENGINE.on_view(
        state, view(seconds, condition, phase, **values), ts_rule=at(seconds)
    ).alerts


def test_camera_turned_away_raises_view_changed_for_a_person_to_check() -> None:
    state = camera_state()

    [opened] = seen(state, 0, "moved", "start")

    assert (opened.alarm_type, opened.source_kind, opened.source_id) == (
        CAMERA_VIEW_CHANGED, "camera", "tps-gedeg",
    )  # fmt: skip
    assert (opened.change, opened.state, opened.notify, opened.severity) == (
        "opened", "OPEN", True, "major",
    )  # fmt: skip
    assert opened.place is not None
    assert (opened.place.name, opened.place.desa) == ("TPS Gedeg", "Gedeg")
    assert (opened.quantity, opened.last_value) == ("changed_frac", 0.82)
    assert "changed" in opened.message and "zones" in opened.message
    assert "2 min" in opened.message


def test_repeated_move_updates_the_open_alarm_without_telling_anyone_again() -> None:
    state = camera_state()
    [opened] = seen(state, 0, "moved", "start")

    [again] = seen(state, 400, "moved", "start", changed_frac=0.6)

    assert (again.alarm_id, again.version, again.count) == (opened.alarm_id, 1, 2)
    assert (again.change, again.state, again.notify) == ("updated", "OPEN", False)
    assert again.last_value == 0.6


def test_view_relearnt_is_a_quiet_note_and_the_alarm_stays_open() -> None:
    state = camera_state()
    [opened] = seen(state, 0, "moved", "start")

    [note] = seen(state, 120, "moved", "end")

    assert (note.alarm_id, note.version, note.count) == (opened.alarm_id, 1, 1)
    assert (note.state, note.change, note.notify) == ("OPEN", "updated", False)
    assert note.cleared_at is None
    assert "resumed" in note.message
    # Only a person ends it: the camera watches another view now.
    assert ENGINE.due(state, epoch(100_000)) is False
    assert state.alarms[CAMERA_VIEW_CHANGED].state == "OPEN"


def test_view_relearnt_after_a_person_resolved_the_alarm_changes_nothing() -> None:
    state = camera_state()
    [opened] = seen(state, 0, "moved", "start")
    ENGINE.on_action(
        state,
        action("resolve", 60, "tps-gedeg", alarm_id=opened.alarm_id, source_kind="camera"),
        ts_rule=at(60),
    )

    assert seen(state, 120, "moved", "end") == []
    assert state.alarms[CAMERA_VIEW_CHANGED].state == "RESOLVED"


def test_moved_again_after_a_resolve_opens_a_new_alarm() -> None:
    state = camera_state()
    [first] = seen(state, 0, "moved", "start")
    ENGINE.on_action(
        state,
        action("resolve", 60, "tps-gedeg", alarm_id=first.alarm_id, source_kind="camera"),
        ts_rule=at(60),
    )

    [second] = seen(state, 7200, "moved", "start")

    assert second.alarm_id != first.alarm_id
    assert (second.change, second.notify) == ("opened", True)


@pytest.mark.parametrize(
    ("condition", "quantity", "value"),
    [("covered", "brightness_spread", 3.5), ("blurred", "sharpness_ratio", 0.08)],
)
def test_covered_or_blurred_raises_tampered_and_its_end_clears_it(
    condition: str, quantity: str, value: float
) -> None:
    state = camera_state()

    [opened] = seen(state, 0, condition, "start")
    assert (opened.alarm_type, opened.change, opened.state, opened.notify) == (
        CAMERA_TAMPERED, "opened", "OPEN", True,
    )  # fmt: skip
    assert (opened.severity, opened.quantity, opened.last_value) == ("major", quantity, value)
    assert condition in opened.message

    [cleared] = seen(state, 90, condition, "end")
    assert (cleared.alarm_id, cleared.state, cleared.change, cleared.notify) == (
        opened.alarm_id, "CLEARED", "cleared", True,
    )  # fmt: skip
    assert cleared.cleared_at == at(90)


def test_tampered_clears_only_once_every_condition_has_ended() -> None:
    state = camera_state()
    [opened] = seen(state, 0, "covered", "start")
    [blurred] = seen(state, 10, "blurred", "start")
    assert (blurred.alarm_id, blurred.change, blurred.notify) == (opened.alarm_id, "updated", False)
    assert blurred.quantity == "sharpness_ratio"

    assert seen(state, 20, "covered", "end") == []
    assert state.alarms[CAMERA_TAMPERED].state == "OPEN"

    [cleared] = seen(state, 30, "blurred", "end")
    assert (cleared.alarm_id, cleared.state) == (opened.alarm_id, "CLEARED")


def test_a_condition_whose_end_never_came_does_not_hold_the_next_alarm_open() -> None:
    state = camera_state()
    [blurred] = seen(state, 0, "blurred", "start")
    ENGINE.on_action(
        state,
        action("resolve", 60, "tps-gedeg", alarm_id=blurred.alarm_id, source_kind="camera"),
        ts_rule=at(60),
    )

    [covered] = seen(state, 3600, "covered", "start")
    [cleared] = seen(state, 3700, "covered", "end")

    assert covered.alarm_id != blurred.alarm_id
    assert (cleared.alarm_id, cleared.state) == (covered.alarm_id, "CLEARED")


def test_tampered_again_within_the_cooldown_reopens_quietly() -> None:
    state = camera_state()
    [opened] = seen(state, 0, "covered", "start")
    seen(state, 10, "covered", "end")

    [again] = seen(state, 10 + COOLDOWN_S / 2, "covered", "start")
    assert (again.alarm_id, again.change, again.state, again.notify) == (
        opened.alarm_id, "reopened", "OPEN", False,
    )  # fmt: skip
    [quiet] = seen(state, 20 + COOLDOWN_S / 2, "covered", "end")
    assert (quiet.state, quiet.notify) == ("CLEARED", False)


def test_end_without_a_start_raises_nothing() -> None:
    state = camera_state()

    assert seen(state, 0, "covered", "end") == []
    assert seen(state, 0, "moved", "end") == []
    assert state.alarms == {}


def test_moved_and_tampered_are_separate_alarms() -> None:
    state = camera_state()
    [moved] = seen(state, 0, "moved", "start")
    [covered] = seen(state, 10, "covered", "start")

    assert moved.alarm_id != covered.alarm_id
    [cleared] = seen(state, 20, "covered", "end")
    assert cleared.alarm_type == CAMERA_TAMPERED
    assert state.alarms[CAMERA_VIEW_CHANGED].state == "OPEN"


def test_view_of_an_unknown_camera_still_raises_an_alarm_named_after_it() -> None:
    state = new_state("camera", "cam-not-configured")

    out = ENGINE.on_view(
        state, view(0, "covered", "start", camera_id="cam-not-configured"), ts_rule=at(0)
    )

    [opened] = out.alerts
    assert (opened.source_id, opened.alarm_type, opened.state) == (
        "cam-not-configured", CAMERA_TAMPERED, "OPEN",
    )  # fmt: skip
    assert opened.place is not None
    assert (opened.place.name, opened.place.lat) == ("cam-not-configured", None)


def test_view_alarms_replay_identically_and_survive_the_changelog() -> None:
    steps = [(0, "moved", "start"), (5, "covered", "start"), (60, "covered", "end"),
             (120, "moved", "end")]  # fmt: skip

    def run(through_changelog: bool) -> list[Alert]:
        state = camera_state()
        alerts: list[Alert] = []
        for seconds, condition, phase in steps:
            if through_changelog:
                state = load_state(dump_state(state))
            alerts += seen(state, seconds, condition, phase)
        return alerts

    assert run(False) == run(True)
    assert [(a.alarm_type, a.change) for a in run(False)] == [
        (CAMERA_VIEW_CHANGED, "opened"),
        (CAMERA_TAMPERED, "opened"),
        (CAMERA_TAMPERED, "cleared"),
        (CAMERA_VIEW_CHANGED, "updated"),
    ]


def test_camera_state_from_before_view_alarms_takes_a_tamper_report() -> None:
    older = json.loads(dump_state(camera_state()))
    del older["tamper"]
    state = load_state(json.dumps(older).encode())

    [opened] = seen(state, 0, "blurred", "start")
    [cleared] = seen(state, 10, "blurred", "end")

    assert (opened.state, cleared.state) == ("OPEN", "CLEARED")


def test_view_severities_come_from_the_settings() -> None:
    config = {**CONFIG, "streams": {**CONFIG["streams"], "camera_view_severity": "minor",
                                    "camera_tamper_severity": "critical"}}  # fmt: skip
    engine = Engine(settings_from_mapping(config, base_dir=Path(".")))
    state = camera_state()

    [moved] = engine.on_view(state, view(0, "moved", "start"), ts_rule=at(0)).alerts
    [covered] = engine.on_view(state, view(1, "covered", "start"), ts_rule=at(1)).alerts

    assert (moved.severity, covered.severity) == ("minor", "critical")


# --------------------------------------------------------------------------- operator actions


def test_operator_walks_an_alarm_from_ack_to_resolved() -> None:
    state = sensor_state()
    opened = opened_water_alarm(state)

    acked = act(state, "ack", 20, opened.alarm_id)
    dispatched = act(state, "dispatch", 30, opened.alarm_id)
    resolved = act(state, "resolve", 40, opened.alarm_id)

    assert [(a.state, a.change, a.notify) for a in (acked, dispatched, resolved)] == [
        ("ACK", "acknowledged", False),
        ("DISPATCHED", "dispatched", True),
        ("RESOLVED", "resolved", True),
    ]
    assert [a.version for a in (acked, dispatched, resolved)] == [1, 2, 3]
    assert {a.alarm_id for a in (acked, dispatched, resolved)} == {opened.alarm_id}
    assert (resolved.acknowledged_at, resolved.dispatched_at, resolved.resolved_at) == (
        at(20),
        at(30),
        at(40),
    )
    assert acked.message == "acknowledged by Siti (DLH) — petugas menuju lokasi"


@pytest.mark.parametrize(
    ("before", "kind", "reason"),
    [
        (["resolve"], "ack", "is RESOLVED; ack applies to OPEN"),
        (["ack"], "ack", "is ACK; ack applies to OPEN"),
        (["false_positive"], "dispatch", "is FALSE_POSITIVE; dispatch applies to ACK, OPEN"),
        (["dispatch"], "ack", "is DISPATCHED; ack applies to OPEN"),
    ],
)
def test_action_that_does_not_fit_the_alarm_state_is_rejected(
    before: list[str], kind: str, reason: str
) -> None:
    state = sensor_state()
    opened = opened_water_alarm(state)
    for i, earlier in enumerate(before):
        act(state, earlier, 20 + i, opened.alarm_id)
    alarms_before = dict(state.alarms)

    with pytest.raises(ActionRejected, match=reason):
        ENGINE.on_action(state, action(kind, 60, alarm_id=opened.alarm_id), ts_rule=at(60))
    assert state.alarms == alarms_before


def test_action_on_an_unknown_alarm_is_rejected() -> None:
    state = sensor_state()
    opened_water_alarm(state)
    unknown = UUID("01937a4e-8c2b-7d10-9a4f-0000000000ff")

    with pytest.raises(ActionRejected, match=f"no alarm {unknown} on wl-lengkong"):
        ENGINE.on_action(state, action("ack", 20, alarm_id=unknown), ts_rule=at(20))


def test_action_on_an_alarm_a_newer_one_replaced_is_rejected() -> None:
    state = sensor_state()
    old = opened_water_alarm(state)
    water(state, 20, 2.5)
    [new] = water(state, 20 + COOLDOWN_S + 1, 3.3)

    assert new.alarm_id != old.alarm_id
    with pytest.raises(ActionRejected, match="no alarm"):
        ENGINE.on_action(state, action("ack", 400, alarm_id=old.alarm_id), ts_rule=at(400))


def test_cleared_alarm_can_still_be_resolved_but_not_acknowledged() -> None:
    state = sensor_state()
    opened = opened_water_alarm(state)
    water(state, 20, 2.5)

    with pytest.raises(ActionRejected, match="is CLEARED"):
        ENGINE.on_action(state, action("ack", 30, alarm_id=opened.alarm_id), ts_rule=at(30))
    assert act(state, "resolve", 40, opened.alarm_id).state == "RESOLVED"


def test_rejected_action_is_a_value_error() -> None:
    assert issubclass(ActionRejected, ValueError)


def person(kind: str, seconds: float, alarm_id: UUID, **fields: Any) -> AlarmAction:
    data = action("ack", seconds, alarm_id=alarm_id).model_dump()
    data.update(action=kind, device="console", **fields)
    return AlarmAction.model_validate(data)


def test_each_version_a_person_made_says_who_from_where_and_what_they_wrote() -> None:
    state = sensor_state()
    opened = opened_water_alarm(state)
    steps = [
        person("assign", 10, opened.alarm_id, to="budi", note=""),
        person("dispatch", 20, opened.alarm_id, to="Regu Prajurit Kulon"),
        person("comment", 30, opened.alarm_id, note="air mulai surut"),
        person("false_positive", 40, opened.alarm_id, reason="camera_moved", note=""),
        person("comment", 50, opened.alarm_id, note="dicek ulang besok"),
    ]
    made = [ENGINE.on_action(state, step, ts_rule=step.ts_capture).alerts[0] for step in steps[:2]]
    # The pipeline's next version is nobody's action, but keeps who is on the alarm.
    [again] = water(state, 25, 4.1)
    assert (again.action_id, again.by, again.note) == (None, "", "")
    assert (again.assignee, again.dispatched_to) == ("budi", "Regu Prajurit Kulon")
    made += [ENGINE.on_action(state, step, ts_rule=step.ts_capture).alerts[0] for step in steps[2:]]

    assert [(a.state, a.change, a.notify) for a in made] == [
        ("OPEN", "assigned", False),
        ("DISPATCHED", "dispatched", True),
        ("DISPATCHED", "commented", False),
        ("FALSE_POSITIVE", "false_positive", False),
        ("FALSE_POSITIVE", "commented", False),
    ]
    assert [a.action_id for a in made] == [step.id for step in steps]
    assert {(a.by, a.device) for a in made} == {("Siti (DLH)", "console")}
    assert (made[-1].assignee, made[-1].dispatched_to) == ("budi", "Regu Prajurit Kulon")
    assert made[2].note == "air mulai surut"
    assert made[2].message == "comment by Siti (DLH) — air mulai surut"
    assert made[3].reason == "camera_moved"


def test_an_alarm_is_assigned_only_while_open_but_commented_on_at_any_time() -> None:
    state = sensor_state()
    opened = opened_water_alarm(state)
    act(state, "resolve", 10, opened.alarm_id)

    with pytest.raises(ActionRejected, match="is RESOLVED; assign applies to ACK, DISPATCHED"):
        ENGINE.on_action(state, person("assign", 20, opened.alarm_id, to="budi"), ts_rule=at(20))
    note = person("comment", 30, opened.alarm_id, note="sudah bersih, foto terlampir")
    [commented] = ENGINE.on_action(state, note, ts_rule=at(30)).alerts
    assert (commented.state, commented.change) == ("RESOLVED", "commented")


# --------------------------------------------------------------------------- dumping


def test_new_dumping_event_opens_an_alarm_with_the_camera_place_and_evidence() -> None:
    state = camera_state()
    event = dumping(0, "new", "alerted")

    [alert] = ENGINE.on_dumping(state, event, ts_rule=at(1)).alerts

    assert (alert.alarm_type, alert.source_kind, alert.source_id) == (
        DUMPING,
        "dumping",
        "tps-gedeg",
    )
    assert (alert.state, alert.change, alert.notify) == ("OPEN", "opened", True)
    assert alert.place is not None
    assert (alert.place.name, alert.place.desa) == ("TPS Gedeg", "Gedeg")
    assert alert.evidence == event.evidence
    assert alert.evidence != ()
    assert alert.event_id == EVENT_ID
    assert alert.last_value == event.confidence
    assert alert.message == "dumping at TPS Gedeg (zone tepi-jalan)"


@pytest.mark.parametrize(
    ("phase", "end_state", "clears"),
    [
        ("end", "cleaned", True),
        ("end", "picked_up", True),
        ("end", "removed", True),
        # Not known to be gone: left open for an operator to resolve or mark false.
        ("end", "expired", False),
        ("update", "alerted", False),
    ],
)
def test_dumping_alarm_clears_only_when_the_waste_is_gone(
    phase: str, end_state: str, clears: bool
) -> None:
    state = camera_state()
    [opened] = ENGINE.on_dumping(state, dumping(0, "new", "alerted"), ts_rule=at(1)).alerts

    alerts = ENGINE.on_dumping(state, dumping(120, phase, end_state), ts_rule=at(121)).alerts

    if clears:
        [cleared] = alerts
        assert (cleared.alarm_id, cleared.state, cleared.notify) == (
            opened.alarm_id,
            "CLEARED",
            True,
        )
        assert cleared.cleared_at == at(120)
    else:
        assert alerts == []
        assert state.alarms[DUMPING].state == "OPEN"


# --------------------------------------------------------------------------- escalation

ESCALATE_AFTER_S = {"critical": 600.0, "major": 1800.0}


def _escalating_rule(rule: dict[str, Any]) -> dict[str, Any]:
    if rule["type"] == "stale":
        # Out of the way: only the alarms under test are open.
        return {**rule, "after_s": 10**7}
    if rule["type"] == "rate_of_change":
        return {**rule, "severity": "warning"}
    return rule


ESCALATING = Engine(
    settings_from_mapping(
        {
            **CONFIG,
            "streams": {
                **CONFIG["streams"],
                "escalate_after_s": ESCALATE_AFTER_S,
                "rules": [_escalating_rule(r) for r in CONFIG["streams"]["rules"]],
            },
        },
        base_dir=Path("."),
    )
)


def open_water(engine: Engine, state: State, level: float, seconds: float = 10) -> Alert:
    engine.on_reading(state, reading("wl-lengkong", seconds - 10, waterLevel=2.5), ts_rule=at(0))
    [alert] = engine.on_reading(
        state, reading("wl-lengkong", seconds, waterLevel=level), ts_rule=at(seconds)
    ).alerts
    # Closes the readings' window: from here on only time passes.
    assert escalating_check(state, seconds + 70) == []
    return alert


def escalating_check(state: State, seconds: float) -> list[Alert]:
    return ESCALATING.on_action(
        state, action("check", seconds, "wl-lengkong"), ts_rule=at(seconds)
    ).alerts


@pytest.mark.parametrize(
    ("level", "severity", "after_s"),
    [(3.1, "major", 1800.0), (4.1, "critical", 600.0)],
)
def test_alarm_nobody_acknowledged_is_passed_on_once_after_its_severity_delay(
    level: float, severity: str, after_s: float
) -> None:
    state = sensor_state()
    opened = open_water(ESCALATING, state, level, seconds=10)
    assert (opened.severity, opened.escalation) == (severity, 0)

    assert ESCALATING.due(state, epoch(10 + after_s - 1)) is False
    assert escalating_check(state, 10 + after_s - 1) == []
    assert ESCALATING.due(state, epoch(10 + after_s)) is True
    [passed_on] = escalating_check(state, 10 + after_s)

    assert (passed_on.alarm_id, passed_on.version) == (opened.alarm_id, 1)
    assert (passed_on.state, passed_on.change, passed_on.notify) == (
        "OPEN",
        "unacknowledged",
        True,
    )
    assert passed_on.escalation == 1
    assert passed_on.updated_at == at(10 + after_s)
    assert passed_on.message == (
        f"not acknowledged within {int(after_s // 60)} min; passed on to the next level"
    )
    # Once: later checks, however late, pass nothing on again.
    assert ESCALATING.due(state, epoch(10 + after_s + 1)) is False
    assert [escalating_check(state, 10 + after_s + s) for s in (1, 600, 86_400)] == [[], [], []]
    # Who is told later (dispatch, resolve) keeps hearing at the escalated level.
    dispatched = ESCALATING.on_action(
        state, action("dispatch", 10 + after_s + 5, alarm_id=opened.alarm_id), ts_rule=at(0)
    ).alerts[0]
    assert (dispatched.change, dispatched.escalation) == ("dispatched", 1)


@pytest.mark.parametrize(
    ("taken_by", "escalates"),
    [
        ("ack", False),
        ("dispatch", False),
        ("resolve", False),
        ("false_positive", False),
        # Neither takes the alarm: it is still nobody's.
        ("comment", True),
        ("assign", True),
    ],
)
def test_only_an_alarm_still_open_is_passed_on(taken_by: str, escalates: bool) -> None:
    state = sensor_state()
    opened = open_water(ESCALATING, state, 3.1, seconds=10)
    taken = person(taken_by, 60, opened.alarm_id, to="budi" if taken_by == "assign" else None)
    ESCALATING.on_action(state, taken, ts_rule=at(60))

    got = escalating_check(state, 10 + 1800)

    assert [a.change for a in got] == (["unacknowledged"] if escalates else [])


def test_severity_without_a_delay_is_never_passed_on() -> None:
    state = sensor_state("wl-ploso")
    for seconds, level in [(0, 1.0), (60, 1.6)]:
        out = ESCALATING.on_reading(
            state, reading("wl-ploso", seconds, waterLevel=level), ts_rule=at(seconds)
        )
    [rising] = out.alerts
    assert (rising.alarm_type, rising.severity) == ("water-rising", "warning")
    ESCALATING.on_action(state, action("check", 200, "wl-ploso"), ts_rule=at(200))

    assert ESCALATING.due(state, epoch(100_000)) is False
    later = ESCALATING.on_action(state, action("check", 100_000, "wl-ploso"), ts_rule=at(0))
    assert later.alerts == []


def test_without_escalation_settings_nothing_is_passed_on() -> None:
    state = sensor_state()
    opened_water_alarm(state)

    # The sensor went silent meanwhile: that alarm opens; the first one is passed on nowhere.
    later = check(state, 100_000, "wl-lengkong").alerts
    assert [(a.alarm_type, a.change) for a in later] == [("sensor-silent", "opened")]


def test_quietly_reopened_alarm_counts_from_its_reopening() -> None:
    state = sensor_state()
    open_water(ESCALATING, state, 3.1, seconds=10)
    ESCALATING.on_reading(state, reading("wl-lengkong", 20, waterLevel=2.5), ts_rule=at(20))
    [reopened] = ESCALATING.on_reading(
        state, reading("wl-lengkong", 80, waterLevel=3.3), ts_rule=at(80)
    ).alerts
    assert reopened.change == "reopened"

    assert escalating_check(state, 10 + 1800) == []
    assert [a.change for a in escalating_check(state, 80 + 1800)] == ["unacknowledged"]


@pytest.mark.parametrize("older_state", [False, True])
def test_escalation_survives_a_restart_and_fires_once(older_state: bool) -> None:
    state = sensor_state()
    open_water(ESCALATING, state, 4.1, seconds=10)
    as_json = json.loads(dump_state(state))
    if older_state:
        # A state written before escalation existed: counted from the alarm's opening.
        for key in ("open_since", "action_ids", "live", "cleanup"):
            del as_json[key]
    stored = load_state(json.dumps(as_json).encode())

    [passed_on] = escalating_check(stored, 610)
    again = load_state(dump_state(stored))

    assert passed_on.change == "unacknowledged"
    assert ESCALATING.due(again, epoch(700)) is False
    assert escalating_check(again, 700) == []


# --------------------------------------------------------------------------- clean-up on camera

CONFIRM_S = 600.0


def camera_story(steps: list[tuple[float, str]]) -> tuple[State, list[Alert]]:
    """Dumping events, heartbeats, checks and a person's actions on one camera, in order;
    every version of the dumping alarm that came of them."""
    state = camera_state()
    alerts: list[Alert] = []
    for seconds, step in steps:
        if step in ("new", "update"):
            out = ENGINE.on_dumping(state, dumping(seconds, step, "alerted"), ts_rule=at(seconds))
        elif step in ("cleaned", "picked_up", "expired"):
            out = ENGINE.on_dumping(state, dumping(seconds, "end", step), ts_rule=at(seconds))
        elif step == "online":
            out = beat(state, seconds, "online")
        elif step == "check":
            out = camera_check(state, seconds)
        else:
            alarm_id = state.alarms[DUMPING].alarm_id
            taken = action(step, seconds, "tps-gedeg", alarm_id=alarm_id, source_kind="dumping")
            out = ENGINE.on_action(state, taken, ts_rule=at(seconds))
        alerts += [a for a in out.alerts if a.alarm_type == DUMPING]
    return state, alerts


# The dumping alarm opens at 0 s; what follows, and the changes it makes to the alarm.
CLEANUP_STORIES: list[tuple[str, list[tuple[float, str]], list[str]]] = [
    ("camera sees it cleaned", [(60, "resolve"), (300, "cleaned")], ["resolved", "confirmed"]),
    ("picked up counts too", [(60, "resolve"), (300, "picked_up")], ["resolved", "confirmed"]),
    ("cleaned late, still cleaned", [(60, "resolve"), (900, "cleaned")], ["resolved", "confirmed"]),
    (
        "still reported after the deadline",
        [(60, "resolve"), (60 + CONFIRM_S, "update")],
        ["resolved", "reopened"],
    ),
    ("reported just before it", [(60, "resolve"), (59 + CONFIRM_S, "update")], ["resolved"]),
    (
        "camera online past the deadline, no word of a clean-up",
        [(60, "resolve"), (60 + CONFIRM_S, "online"), (60 + CONFIRM_S, "check")],
        ["resolved", "reopened"],
    ),
    (
        "checked before the deadline",
        [(60, "resolve"), (650, "online"), (59 + CONFIRM_S, "check")],
        ["resolved"],
    ),
    (
        "camera not watching since the deadline",
        [(60, "resolve"), (650, "online"), (700, "check")],
        ["resolved"],
    ),
    (
        "cleaned before the check",
        [(60, "resolve"), (500, "cleaned"), (700, "online"), (700, "check")],
        ["resolved", "confirmed"],
    ),
    (
        "re-opened once; the camera may still confirm the second resolve",
        [
            (60, "resolve"),
            (660, "online"),
            (660, "check"),
            (700, "resolve"),
            (1400, "online"),
            (1400, "check"),
            (1500, "update"),
            (1600, "cleaned"),
        ],
        ["resolved", "reopened", "resolved", "confirmed"],
    ),
    (
        "cleared by the camera before the resolve: nothing to confirm",
        [(30, "cleaned"), (60, "resolve"), (700, "online"), (700, "check")],
        ["cleared", "resolved"],
    ),
    (
        "no longer followed (expired) before the deadline",
        [(60, "resolve"), (300, "expired"), (700, "online"), (700, "check")],
        ["resolved"],
    ),
    (
        "expired after the deadline: still there then",
        [(60, "resolve"), (60 + CONFIRM_S, "expired")],
        ["resolved", "reopened"],
    ),
    (
        "a false alarm is not a clean-up",
        [(60, "false_positive"), (700, "online"), (700, "check"), (800, "cleaned")],
        ["false_positive"],
    ),
]


@pytest.mark.parametrize(
    ("steps", "changes"),
    [pytest.param(steps, changes, id=name) for name, steps, changes in CLEANUP_STORIES],
)
def test_camera_confirms_a_clean_up_or_takes_it_back(
    steps: list[tuple[float, str]], changes: list[str]
) -> None:
    _, alerts = camera_story([(0, "new"), *steps])

    assert [a.change for a in alerts[1:]] == changes
    assert len({a.alarm_id for a in alerts}) == 1


def test_an_older_object_of_a_settled_alarm_does_not_hold_up_the_next_confirmation() -> None:
    state = camera_state()

    def step(seconds: float, event_id: UUID, phase: str, what: str) -> list[Alert]:
        event = dumping(seconds, phase, what).model_copy(update={"event_id": event_id})
        return ENGINE.on_dumping(state, event, ts_rule=at(seconds)).alerts

    def resolve(seconds: float) -> None:
        alarm_id = state.alarms[DUMPING].alarm_id
        taken = action("resolve", seconds, "tps-gedeg", alarm_id=alarm_id, source_kind="dumping")
        ENGINE.on_action(state, taken, ts_rule=at(seconds))

    older, newer = UUID(int=1), UUID(int=2)
    step(0, older, "new", "alerted")
    resolve(30)  # the first alarm is settled; its object is still followed
    [opened] = step(100, newer, "new", "alerted")
    resolve(160)
    [confirmed] = step(300, newer, "end", "cleaned")

    assert (confirmed.alarm_id, confirmed.change) == (opened.alarm_id, "confirmed")


def test_confirmed_clean_up_stays_resolved_and_quiet() -> None:
    _, alerts = camera_story([(0, "new"), (60, "resolve"), (300, "cleaned")])
    confirmed = alerts[-1]

    assert (confirmed.state, confirmed.notify, confirmed.by) == ("RESOLVED", False, "")
    assert confirmed.updated_at == at(300)
    assert confirmed.resolved_at == at(60)
    assert confirmed.message == "camera confirmed the clean-up: the object is gone (cleaned)"


def test_object_still_seen_after_the_resolve_reopens_the_alarm_for_everyone() -> None:
    state, alerts = camera_story([(0, "new"), (60, "resolve")])
    beat(state, 660, "online")
    assert ENGINE.due(state, epoch(659)) is False
    assert ENGINE.due(state, epoch(660)) is True
    [reopened] = [a for a in camera_check(state, 660).alerts if a.alarm_type == DUMPING]

    assert (reopened.alarm_id, reopened.version) == (alerts[0].alarm_id, alerts[-1].version + 1)
    assert (reopened.state, reopened.change, reopened.notify) == ("OPEN", "reopened", True)
    assert reopened.message == "object still seen 10 min after it was marked resolved"
    # Kept, so that readers know it had been declared clean.
    assert reopened.resolved_at == at(60)
    assert reopened.escalation == 0
    assert ENGINE.due(state, epoch(670)) is False
    # It is open again: people act on it as on any open alarm.
    assert act(state, "ack", 700, reopened.alarm_id).state == "ACK"


def test_reopened_alarm_can_be_passed_on_again() -> None:
    state = camera_state()
    [opened] = ESCALATING.on_dumping(state, dumping(0, "new", "alerted"), ts_rule=at(0)).alerts
    [passed_on] = ESCALATING.on_action(
        state, action("check", 1800, "tps-gedeg", source_kind="camera"), ts_rule=at(1800)
    ).alerts
    resolve = action("resolve", 1900, "tps-gedeg", alarm_id=opened.alarm_id, source_kind="dumping")
    ESCALATING.on_action(state, resolve, ts_rule=at(1900))
    [reopened] = ESCALATING.on_dumping(
        state, dumping(1900 + CONFIRM_S, "update", "alerted"), ts_rule=at(0)
    ).alerts

    assert (passed_on.escalation, reopened.escalation) == (1, 0)
    later = ESCALATING.on_action(
        state, action("check", 2500 + 1800, "tps-gedeg", source_kind="camera"), ts_rule=at(0)
    ).alerts
    assert [(a.change, a.escalation) for a in later] == [("unacknowledged", 1)]


# --------------------------------------------------------------------------- repeated actions


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("ack", {}),
        ("dispatch", {"to": "Regu Sooko"}),
        ("resolve", {}),
        ("false_positive", {"reason": "not_rubbish"}),
        ("comment", {"note": "sudah dicek"}),
        ("assign", {"to": "budi"}),
    ],
)
def test_the_same_action_twice_is_decided_once(kind: str, fields: dict[str, Any]) -> None:
    state = sensor_state()
    opened = opened_water_alarm(state)
    pressed = person(kind, 20, opened.alarm_id, **fields)
    [first] = ENGINE.on_action(state, pressed, ts_rule=at(20)).alerts
    after_first = load_state(dump_state(state))

    # Again, also after a restart: no new version, and no refusal either.
    assert ENGINE.on_action(state, pressed, ts_rule=at(21)).alerts == []
    assert ENGINE.on_action(after_first, pressed, ts_rule=at(21)).alerts == []
    assert state.alarms == after_first.alarms
    assert first.action_id == pressed.id


def test_another_action_of_the_same_kind_is_still_decided() -> None:
    state = sensor_state()
    opened = opened_water_alarm(state)
    first = person("comment", 20, opened.alarm_id, note="air naik")
    second = person("comment", 30, opened.alarm_id, note="air naik lagi")

    made = [ENGINE.on_action(state, a, ts_rule=at(0)).alerts for a in (first, second, first)]

    assert [[a.note for a in m] for m in made] == [["air naik"], ["air naik lagi"], []]


def test_a_refused_action_sent_again_is_not_refused_twice() -> None:
    state = sensor_state()
    opened = opened_water_alarm(state)
    act(state, "resolve", 20, opened.alarm_id)
    late_ack = action("ack", 30, alarm_id=opened.alarm_id)

    with pytest.raises(ActionRejected):
        ENGINE.on_action(state, late_ack, ts_rule=at(30))
    assert ENGINE.on_action(state, late_ack, ts_rule=at(31)).alerts == []


def test_remembered_action_ids_stay_bounded() -> None:
    state = sensor_state()
    opened = opened_water_alarm(state)
    for i in range(200):
        ENGINE.on_action(state, person("comment", 20 + i, opened.alarm_id), ts_rule=at(0))

    assert len(state.action_ids) == ACTION_IDS_KEPT
