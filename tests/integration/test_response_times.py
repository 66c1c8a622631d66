"""The clean-up loop measured (alarm_response, alarm_response_weekly) on real PostgreSQL: a
few alarms with known histories in a database of their own, read as the analysts and the
wall read them — first acknowledgement and dispatch, cleaned by a person, by the camera or by
an emptied TPS, WIB weeks, and the medians, 90th percentiles and counts per week and desa."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pantau.settings import Settings
from tests.integration.conftest import fresh_database
from tests.integration.test_migrations import connect, rows_as_dicts

# Monday 5 January 2026, 00:00 WIB (UTC+7): the first week of the fixture.
WEEK_1 = datetime(2026, 1, 4, 17, 0, tzinfo=UTC)
WEEK_2 = WEEK_1 + timedelta(days=7)
NOW = datetime.now(UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@dataclass
class Alarm:
    """One alarm as the sink stores it: its latest state in alerts, its versions in
    alarm_history (change -> minutes after opening, in order), and for a dumping alarm its
    event's end."""

    name: str
    source_kind: str
    source_id: str
    opened_at: datetime
    state: str
    history: list[tuple[str, float]] = field(default_factory=list)
    # The alarm's own life-cycle columns (minutes after opening), as its latest version left them.
    stamps: dict[str, float] = field(default_factory=dict)
    alarm_type: str = "dumping"
    quantity: str | None = None
    event_end: tuple[str, float] | None = None
    # False: stored before alarm_history was kept, only the alarm's own columns tell.
    with_history: bool = True
    alarm_id: uuid.UUID = field(default_factory=uuid.uuid4)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)


ALARMS = [
    # Sooko (camera a), week 1.
    Alarm(
        "resolved", "dumping", "rt-cam-a", WEEK_1 + timedelta(hours=30), "RESOLVED",
        [("acknowledged", 4), ("dispatched", 10), ("resolved", 60)],
        {"acknowledged_at": 4, "dispatched_at": 10, "resolved_at": 60},
        event_end=("cleaned", 90),
    ),
    Alarm(
        "camera saw it clean", "dumping", "rt-cam-a", WEEK_1 + timedelta(hours=31), "RESOLVED",
        [("acknowledged", 2), ("dispatched", 20), ("cleared", 31), ("resolved", 45)],
        {"acknowledged_at": 2, "dispatched_at": 20, "resolved_at": 45},
        event_end=("cleaned", 30),
    ),
    Alarm(
        "false alarm", "dumping", "rt-cam-a", WEEK_1 + timedelta(hours=32), "FALSE_POSITIVE",
        [("acknowledged", 6), ("false_positive", 8)],
        {"acknowledged_at": 6, "resolved_at": 8},
        event_end=("cleaned", 50),
    ),
    Alarm(
        "acknowledged twice", "dumping", "rt-cam-a", WEEK_1 + timedelta(hours=33), "ACK",
        [("acknowledged", 10), ("cleared", 20), ("reopened", 25), ("acknowledged", 40)],
        {"acknowledged_at": 40},
        event_end=("picked_up", 20),
    ),
    Alarm(
        "cleaned late", "dumping", "rt-cam-a", WEEK_1 + timedelta(hours=34), "RESOLVED",
        [("commented", 5), ("resolved", 2880)],
        {"resolved_at": 2880},
    ),
    # Gedeg (camera b): an alarm stored without history, on the last evening of week 1 (WIB),
    # and one ten minutes into week 2 (WIB), which is still the same day in UTC.
    Alarm(
        "without history", "dumping", "rt-cam-b", WEEK_2 - minutes(30), "RESOLVED", [],
        {"acknowledged_at": 7, "resolved_at": 15}, with_history=False,
    ),
    Alarm("week 2", "dumping", "rt-cam-b", WEEK_2 + minutes(10), "OPEN"),
    # Sooko's TPS container: emptied (its fill-level alarm cleared), and silent for a while.
    Alarm(
        "emptied", "sensor", "rt-tps-1", WEEK_1 + timedelta(hours=40), "CLEARED",
        [("cleared", 120)], {"cleared_at": 120}, alarm_type="tps-full", quantity="fillingLevel",
    ),
    Alarm(
        "tps silent", "sensor", "rt-tps-1", WEEK_1 + timedelta(hours=41), "CLEARED",
        [("cleared", 30)], {"cleared_at": 30}, alarm_type="sensor-silent",
    ),
    # A water gauge in Sooko: cleared by the water going down, which is no cleaning.
    Alarm(
        "water", "sensor", "rt-wl-1", WEEK_1 + timedelta(hours=42), "CLEARED",
        [("cleared", 15)], {"cleared_at": 15}, alarm_type="water-high", quantity="waterLevel",
    ),
    # Opened two hours ago and not cleaned yet: its day is not over.
    Alarm("recent", "dumping", "rt-cam-a", NOW - timedelta(hours=2), "OPEN"),
]  # fmt: skip


def _store(conn: psycopg.Connection[Any], alarm: Alarm) -> None:
    at = {k: alarm.opened_at + minutes(v) for k, v in alarm.stamps.items()}
    conn.execute(
        """
        INSERT INTO alerts (opened_at, alarm_id, version, source_kind, source_id, alarm_type,
                            severity, state, count, updated_at, acknowledged_at, dispatched_at,
                            resolved_at, cleared_at, ts_capture, quantity, event_id)
        VALUES (%s, %s, %s, %s, %s, %s, 'major', %s, 1, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            alarm.opened_at, alarm.alarm_id, len(alarm.history), alarm.source_kind,
            alarm.source_id, alarm.alarm_type, alarm.state, alarm.opened_at,
            at.get("acknowledged_at"), at.get("dispatched_at"), at.get("resolved_at"),
            at.get("cleared_at"), alarm.opened_at, alarm.quantity,
            alarm.event_id if alarm.source_kind == "dumping" else None,
        ),
    )  # fmt: skip
    if alarm.with_history:
        versions = [("opened", 0.0), *alarm.history]
        for version, (change, after) in enumerate(versions):
            conn.execute(
                "INSERT INTO alarm_history (opened_at, alarm_id, version, time, state, change, "
                "severity, count) VALUES (%s, %s, %s, %s, %s, %s, 'major', 1)",
                (
                    alarm.opened_at, alarm.alarm_id, version, alarm.opened_at + minutes(after),
                    alarm.state, change,
                ),
            )  # fmt: skip
    if alarm.source_kind == "dumping":
        state, ended = alarm.event_end or ("alerted", None)
        conn.execute(
            "INSERT INTO dumping_events (appeared_at, event_id, camera_id, zone_id, state, "
            "phase, version, alerted_at, ended_at, x1, y1, x2, y2, confidence, updated_at) "
            "VALUES (%s, %s, %s, 'tepi-jalan', %s, %s, 3, %s, %s, 1, 2, 3, 4, 0.9, %s)",
            (
                alarm.opened_at - minutes(1), alarm.event_id, alarm.source_id, state,
                "end" if ended is not None else "update", alarm.opened_at,
                None if ended is None else alarm.opened_at + minutes(ended), alarm.opened_at,
            ),
        )  # fmt: skip


@pytest.fixture(scope="module")
def db(services: Settings) -> Iterator[str]:
    with fresh_database(services, "pantau_response") as name:
        with connect(services, name) as owner:
            owner.execute(
                "INSERT INTO cameras (camera_id, name, desa, kecamatan) VALUES "
                "('rt-cam-a', 'TPS Sooko', 'Sooko', 'Sooko'), "
                "('rt-cam-b', 'Pasar Gedeg', 'Gedeg', 'Gedeg')"
            )
            owner.execute(
                "INSERT INTO sensors (sensor_id, type, name, desa, kecamatan) VALUES "
                "('rt-tps-1', 'waste_container', 'TPS Sooko', 'Sooko', 'Sooko'), "
                "('rt-wl-1', 'water_level', 'Kali Sooko', 'Sooko', 'Sooko')"
            )
            for alarm in ALARMS:
                _store(owner, alarm)
        yield name


@pytest.mark.parametrize("role", ["pantau_analyst", "pantau_grafana"])
def test_each_alarm_waits_from_opening_to_first_ack_dispatch_and_clean(
    services: Settings, db: str, role: str
) -> None:
    with connect(services, db, role) as conn:
        rows = rows_as_dicts(
            conn,
            "SELECT alarm_id, week, kind, desa, kecamatan, minutes_to_ack, minutes_to_dispatch, "
            "minutes_to_clean, cleaned_via, cleaned_within_day FROM alarm_response",
        )
    by_name = {a.name: r for a in ALARMS for r in rows if r["alarm_id"] == a.alarm_id}
    assert len(by_name) == len(ALARMS) == len(rows)
    got = {
        name: (
            r["kind"], r["desa"], r["minutes_to_ack"], r["minutes_to_dispatch"],
            r["minutes_to_clean"], r["cleaned_via"], r["cleaned_within_day"],
        )
        for name, r in by_name.items()
    }  # fmt: skip
    assert got == {
        "resolved": ("dumping", "Sooko", 4.0, 10.0, 60.0, "resolved", True),
        "camera saw it clean": ("dumping", "Sooko", 2.0, 20.0, 30.0, "camera", True),
        # Called false: not cleaned, whatever the camera saw later.
        "false alarm": ("dumping", "Sooko", 6.0, None, None, None, None),
        # The first acknowledgement counts; an object taken back by its owner is no cleaning.
        "acknowledged twice": ("dumping", "Sooko", 10.0, None, None, None, False),
        "cleaned late": ("dumping", "Sooko", None, None, 2880.0, "resolved", False),
        "without history": ("dumping", "Gedeg", 7.0, None, 15.0, "resolved", True),
        "week 2": ("dumping", "Gedeg", None, None, None, None, False),
        "emptied": ("tps", "Sooko", None, None, 120.0, "emptied", True),
        "tps silent": ("tps", "Sooko", None, None, None, None, False),
        "water": ("other", "Sooko", None, None, None, None, False),
        "recent": ("dumping", "Sooko", None, None, None, None, None),
    }
    # WIB weeks: half an hour before Monday 00:00 WIB is the week before; ten minutes after
    # is the new week, though both are Sunday in UTC.
    assert by_name["without history"]["week"] == WEEK_1
    assert by_name["week 2"]["week"] == WEEK_2
    assert by_name["resolved"]["kecamatan"] == "Sooko"


def test_weekly_medians_percentiles_and_counts_per_desa_and_kind(
    services: Settings, db: str
) -> None:
    with connect(services, db, "pantau_analyst") as conn:
        rows = rows_as_dicts(
            conn,
            # Earlier weeks than the recent alarm's.
            "SELECT * FROM alarm_response_weekly WHERE week < now() - interval '7 days' "
            "ORDER BY week, desa, kind",
        )
    got = {(r["week"], r["desa"], r["kind"]): r for r in rows}
    assert sorted(got) == [
        (WEEK_1, "Gedeg", "dumping"),
        (WEEK_1, "Sooko", "dumping"),
        (WEEK_1, "Sooko", "other"),
        (WEEK_1, "Sooko", "tps"),
        (WEEK_2, "Gedeg", "dumping"),
    ]
    sooko = got[(WEEK_1, "Sooko", "dumping")]
    assert {k: v for k, v in sooko.items() if k not in ("week", "desa", "kind")} == {
        "kecamatan": "Sooko",
        "alarms": 5,
        "acknowledged": 4,
        "dispatched": 2,
        "cleaned": 3,
        "false_positives": 1,
        # Acknowledged after 2, 4, 6 and 10 minutes.
        "median_minutes_to_ack": pytest.approx(5.0),
        "p90_minutes_to_ack": pytest.approx(8.8),
        # Dispatched after 10 and 20.
        "median_minutes_to_dispatch": pytest.approx(15.0),
        "p90_minutes_to_dispatch": pytest.approx(19.0),
        # Cleaned after 30, 60 and 2880.
        "median_minutes_to_clean": pytest.approx(60.0),
        "p90_minutes_to_clean": pytest.approx(2316.0),
        # Two of the four that could be cleaned were, within a day (the false alarm aside).
        "share_cleaned_within_day": pytest.approx(0.5),
    }
    tps = got[(WEEK_1, "Sooko", "tps")]
    assert (tps["alarms"], tps["cleaned"], tps["median_minutes_to_clean"]) == (2, 1, 120.0)
    assert tps["share_cleaned_within_day"] == pytest.approx(0.5)
    gedeg = got[(WEEK_1, "Gedeg", "dumping")]
    assert (gedeg["alarms"], gedeg["median_minutes_to_ack"], gedeg["p90_minutes_to_clean"]) == (
        1,
        7.0,
        15.0,
    )
    week_2 = got[(WEEK_2, "Gedeg", "dumping")]
    assert (week_2["alarms"], week_2["cleaned"], week_2["median_minutes_to_clean"]) == (1, 0, None)
    assert week_2["share_cleaned_within_day"] == 0.0
    water = got[(WEEK_1, "Sooko", "other")]
    assert (water["alarms"], water["cleaned"]) == (1, 0)
