"""The DLH's service figures on real PostgreSQL: dumping again at the same place within 7 and
30 days (dumping_repeats), and false alarms per camera (dumping_verdicts,
camera_false_alarms_weekly), read by the analysts and by the dumping dashboard's panels
exactly as Grafana expands them, on a few events with known places, times and verdicts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import psycopg
import pytest

from dashboards.export import render_dashboards
from dashboards.queries import expanded, panel_queries, resolve_variables
from pantau.settings import Settings, load_settings
from tests.conftest import REPO
from tests.integration.conftest import fresh_database
from tests.integration.test_migrations import connect, rows_as_dicts

# Day 0 of the fixture: 01:00 WIB on the Monday eleven weeks back, so that camera b's alarms
# (days 1 to 4.5) fall in one WIB week and the whole history in the last 90 days.
WIB = timezone(timedelta(hours=7))
_TODAY = datetime.now(WIB).date()
DAY_0 = datetime.combine(
    _TODAY - timedelta(days=_TODAY.weekday() + 77), time(1), tzinfo=WIB
).astimezone(UTC)


@dataclass
class Event:
    """A dumping event at a camera's zone, `day` days after DAY_0, and its alarm's state now
    (None: it never raised an alarm), with the false-alarm reasons given, in order."""

    name: str
    camera: str
    zone: str | None
    day: float
    state: str | None
    reasons: tuple[str | None, ...] = ()
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def appeared_at(self) -> datetime:
        return DAY_0 + timedelta(days=self.day)


EVENTS = [
    # Camera a, its roadside zone.
    Event("first", "sf-cam-a", "tepi-jalan", 0, "RESOLVED"),
    Event("called false", "sf-cam-a", "tepi-jalan", 3, "FALSE_POSITIVE", ("not_rubbish",)),
    Event("five days on", "sf-cam-a", "tepi-jalan", 5, "RESOLVED"),
    Event("fifteen days on", "sf-cam-a", "tepi-jalan", 20, "OPEN"),
    # Another zone of the same camera is another place.
    Event("other zone", "sf-cam-a", "gerbang", 21, "RESOLVED"),
    # Seen, but taken back before any alarm: no dumping, and no previous one either.
    Event("never alerted", "sf-cam-a", "tepi-jalan", 59, None),
    Event("forty days on", "sf-cam-a", "tepi-jalan", 60, "OPEN"),
    # Camera b: mostly wrong, its view moved.
    Event("b moved", "sf-cam-b", None, 1, "FALSE_POSITIVE", ("camera_moved",)),
    Event("b moved again", "sf-cam-b", None, 2, "FALSE_POSITIVE", ("camera_moved",)),
    # Called false, reopened, called false again: the later reason counts.
    Event("b twice", "sf-cam-b", None, 2.5, "FALSE_POSITIVE", ("other", "camera_moved")),
    Event("b no reason", "sf-cam-b", None, 3, "FALSE_POSITIVE", (None,)),
    Event("b real", "sf-cam-b", None, 4, "RESOLVED"),
    Event("b open", "sf-cam-b", None, 4.5, "OPEN"),
]


def _store(conn: psycopg.Connection[Any], event: Event) -> None:
    at = event.appeared_at
    alerted = None if event.state is None else at + timedelta(seconds=50)
    conn.execute(
        "INSERT INTO dumping_events (appeared_at, event_id, camera_id, zone_id, state, phase, "
        "version, alerted_at, x1, y1, x2, y2, confidence, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, 'update', 2, %s, 1, 2, 3, 4, 0.9, %s)",
        (
            at, event.event_id, event.camera, event.zone,
            "picked_up" if alerted is None else "alerted", alerted, at,
        ),
    )  # fmt: skip
    if alerted is None:
        return
    alarm_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO alerts (opened_at, alarm_id, version, source_kind, source_id, alarm_type, "
        "severity, state, count, updated_at, ts_capture, event_id) "
        "VALUES (%s, %s, %s, 'dumping', %s, 'dumping', 'major', %s, 1, %s, %s, %s)",
        (
            alerted, alarm_id, 2 * len(event.reasons), event.camera, event.state, alerted,
            alerted, event.event_id,
        ),
    )  # fmt: skip
    versions: list[tuple[str, str | None]] = [("opened", None)]
    for i, reason in enumerate(event.reasons):
        if i:
            versions.append(("reopened", None))
        versions.append(("false_positive", reason))
    for version, (change, reason) in enumerate(versions):
        conn.execute(
            "INSERT INTO alarm_history (opened_at, alarm_id, version, time, state, change, "
            "severity, count, reason) VALUES (%s, %s, %s, %s, %s, %s, 'major', 1, %s)",
            (
                alerted, alarm_id, version, alerted + timedelta(minutes=version), event.state,
                change, reason,
            ),
        )  # fmt: skip


@pytest.fixture(scope="module")
def db(services: Settings) -> Iterator[str]:
    with fresh_database(services, "pantau_service") as name:
        with connect(services, name) as owner:
            owner.execute(
                "INSERT INTO cameras (camera_id, name, desa, kecamatan) VALUES "
                "('sf-cam-a', 'TPS Sooko', 'Sooko', 'Sooko'), "
                "('sf-cam-b', 'Pasar Gedeg', 'Gedeg', 'Gedeg')"
            )
            for event in EVENTS:
                _store(owner, event)
        yield name


def _panel(conn: psycopg.Connection[Any], title: str, since: datetime) -> list[dict[str, Any]]:
    """The dumping dashboard's panel `title`, expanded as Grafana expands it for the range
    from `since` to now with every camera selected, run as Grafana's role."""
    settings = load_settings(REPO / "configs" / "pantau.yaml", {})
    dashboard = next(
        d for d in render_dashboards(settings).values() if d["uid"] == "pantau-dumping"
    )
    query = next(q for q in panel_queries(dashboard) if q.panel == title)
    now, time_from = datetime.now(UTC), since
    values, quoted = resolve_variables(
        dashboard, lambda sql: conn.execute(sql.encode()).fetchall(), time_from=time_from,
        time_to=now,
    )  # fmt: skip
    sql = expanded(query, time_from=time_from, time_to=now, variables=values, quoted=quoted)
    return rows_as_dicts(conn, sql)


@pytest.mark.parametrize("role", ["pantau_analyst", "pantau_grafana"])
def test_each_dumping_knows_the_places_previous_dumping_within_30_days(
    services: Settings, db: str, role: str
) -> None:
    with connect(services, db, role) as conn:
        rows = rows_as_dicts(
            conn,
            "SELECT event_id, camera_id, zone_id, desa, previous_at, days_since_previous, "
            "again_within_7d, again_within_30d FROM dumping_repeats",
        )
    by_name = {e.name: r for e in EVENTS for r in rows if r["event_id"] == e.event_id}
    # False alarms and events that never raised an alarm are no dumping.
    assert sorted(by_name) == sorted(
        e.name for e in EVENTS if e.state not in (None, "FALSE_POSITIVE")
    )
    got = {n: (r["days_since_previous"], r["again_within_7d"], r["again_within_30d"])
           for n, r in by_name.items()}  # fmt: skip
    assert got == {
        "first": (None, False, False),
        # The false alarm on day 3 in between does not count: the previous is day 0's.
        "five days on": (pytest.approx(5.0), True, True),
        "fifteen days on": (pytest.approx(15.0), False, True),
        "other zone": (None, False, False),
        # Day 20's is 40 days back, beyond the look-back; day 59's never raised an alarm.
        "forty days on": (None, False, False),
        "b real": (None, False, False),
        "b open": (pytest.approx(0.5), True, True),
    }
    assert by_name["five days on"]["previous_at"] == EVENTS[0].appeared_at
    assert by_name["b open"]["desa"] == "Gedeg"


def test_false_alarms_per_camera_per_week_with_the_reason_given_most(
    services: Settings, db: str
) -> None:
    with connect(services, db, "pantau_analyst") as conn:
        verdicts = rows_as_dicts(
            conn, "SELECT event_id, judged, false_alarm, reason FROM dumping_verdicts"
        )
        weekly = rows_as_dicts(
            conn,
            "SELECT camera_id, sum(alarms) AS alarms, sum(judged) AS judged, "
            "sum(false_alarms) AS false_alarms FROM camera_false_alarms_weekly GROUP BY 1",
        )
        b_weeks = rows_as_dicts(
            conn,
            "SELECT week, alarms, judged, false_alarms, false_share, top_reason "
            "FROM camera_false_alarms_weekly WHERE camera_id = 'sf-cam-b'",
        )
    by_event = {r["event_id"]: r for r in verdicts}
    twice = next(e for e in EVENTS if e.name == "b twice")
    assert by_event[twice.event_id]["reason"] == "camera_moved"
    assert by_event[twice.event_id]["false_alarm"] is True
    assert {(r["camera_id"], r["alarms"], r["judged"], r["false_alarms"]) for r in weekly} == {
        ("sf-cam-a", 6, 4, 1),
        ("sf-cam-b", 6, 5, 4),
    }
    # Camera b's six alarms, Tuesday to Friday of one WIB week: four of the five judged were
    # false, three of them for a moved view (one reason was changed to it, one not given).
    monday = DAY_0 - timedelta(hours=1)
    assert b_weeks == [
        {
            "week": monday, "alarms": 6, "judged": 5, "false_alarms": 4,
            "false_share": pytest.approx(0.8), "top_reason": "camera_moved",
        }
    ]  # fmt: skip


def test_dumping_dashboard_shows_repeats_and_false_alarms_per_camera(
    services: Settings, db: str
) -> None:
    with connect(services, db, "pantau_grafana") as conn:
        everything = DAY_0 - timedelta(days=1)
        repeats = _panel(conn, "Dibuang lagi di tempat yang sama", everything)
        recent = _panel(conn, "Dibuang lagi di tempat yang sama", DAY_0 + timedelta(days=10))
        cameras = _panel(conn, "Alarm keliru per kamera", everything)
    # Seven real dumpings in all: two had one at their place within 7 days before, three
    # within 30.
    assert repeats == [
        {"Dalam 7 hari": pytest.approx(2 / 7), "Dalam 30 hari": pytest.approx(3 / 7)}
    ]
    # From day 10: three dumpings, and the look-back still reaches day 0 for "fifteen days on".
    assert recent == [{"Dalam 7 hari": pytest.approx(0.0), "Dalam 30 hari": pytest.approx(1 / 3)}]
    # Worst first, in the staff's words, with the camera's id for the console link.
    assert [
        (r["Kamera"], r["Desa"], r["Alarm"], r["Dinilai"], r["Keliru"], r["Alasan terbanyak"],
         r["camera_id"])
        for r in cameras
    ] == [
        ("Pasar Gedeg", "Gedeg", 6, 5, 4, "Kamera bergeser", "sf-cam-b"),
        ("TPS Sooko", "Sooko", 6, 4, 1, "Bukan sampah", "sf-cam-a"),
    ]  # fmt: skip
    assert [r["Bagian keliru"] for r in cameras] == [pytest.approx(0.8), pytest.approx(0.25)]
