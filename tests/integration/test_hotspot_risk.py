"""Hotspot risk on real PostgreSQL: the hotspot_risk views and functions give the numbers of
the reference scoring (storage.risk) on a history with a planted pattern, leave false alarms
out, rank the planted places on top (in the analysts' view and on the dumping dashboard's
panel), and reproduce the rolling evaluation's hits week by week; and the weekly summary
(`pantau risk summary --send`) reaches the head of the DLH by Telegram and e-mail."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from dashboards.export import render_dashboards
from dashboards.queries import expanded, panel_queries, resolve_variables
from pantau.settings import Settings, load_settings
from storage.risk import (
    WIB,
    Incident,
    PlantedHistory,
    evaluate,
    naive_week,
    planted_history,
    score,
    top_places,
)
from tests.conftest import REPO
from tests.integration.conftest import BASE_CONFIG, base_environ, fresh_database
from tests.integration.fake_telegram import TOKEN, fake_telegram
from tests.integration.test_migrations import connect, rows_as_dicts
from tests.integration.test_notify_channels import smtp_server  # noqa: F401 - a fixture

# Ten weeks of history ending at the latest Monday 00:00 WIB: the evaluation's weeks start
# on Mondays, and the views (read as of now) still see all of it.
_NOW = datetime.now(WIB)
END = (_NOW - timedelta(days=_NOW.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
WEEKS = 10
HISTORY = planted_history(start=END - timedelta(weeks=WEEKS), weeks=WEEKS, places=30, seed=5)
DESA = ("Sooko", "Gedeg", "Japan")


def camera_of(place: str) -> str:
    return place.split("/")[0]


def desa_of(place: str) -> str:
    return DESA[int(camera_of(place)[-3:]) % len(DESA)]


def _event(conn: psycopg.Connection[Any], at: datetime, camera: str, state: str | None) -> None:
    """A dumping event at the camera's roadside zone and its alarm in `state` (None: it never
    raised one)."""
    event_id = uuid.uuid4()
    alerted = None if state is None else at + timedelta(seconds=50)
    conn.execute(
        "INSERT INTO dumping_events (appeared_at, event_id, camera_id, zone_id, state, phase, "
        "version, alerted_at, x1, y1, x2, y2, confidence, updated_at) "
        "VALUES (%s, %s, %s, 'tepi-jalan', %s, 'update', 2, %s, 1, 2, 3, 4, 0.9, %s)",
        (at, event_id, camera, "picked_up" if alerted is None else "alerted",
         alerted, at),
    )  # fmt: skip
    if alerted is not None:
        conn.execute(
            "INSERT INTO alerts (opened_at, alarm_id, version, source_kind, source_id, "
            "alarm_type, severity, state, count, updated_at, ts_capture, event_id) "
            "VALUES (%s, %s, 1, 'dumping', %s, 'dumping', 'major', %s, 1, %s, %s, %s)",
            (alerted, uuid.uuid4(), camera, state, alerted, alerted, event_id),
        )


@pytest.fixture(scope="module")
def db(services: Settings) -> Iterator[str]:
    with fresh_database(services, "pantau_risk") as name:
        with connect(services, name) as owner:
            for place in HISTORY.places:
                camera = camera_of(place)
                owner.execute(
                    "INSERT INTO cameras (camera_id, name, desa, kecamatan) VALUES (%s, %s, %s, %s)",
                    (camera, f"TPS {camera[-3:]}", desa_of(place), desa_of(place)),
                )
            for incident in HISTORY.incidents:
                _event(owner, incident.at, camera_of(incident.place), "RESOLVED")
            # What is no dumping: false alarms, and an object taken back before any alarm,
            # heaped on a place the planted pattern leaves quiet.
            quiet = next(p for p in HISTORY.places if p not in HISTORY.rhythmic + HISTORY.steady)
            for hours in range(1, 25):
                _event(owner, END - timedelta(hours=hours), camera_of(quiet), "FALSE_POSITIVE")
                _event(owner, END - timedelta(hours=hours, minutes=30), camera_of(quiet), None)
        yield name


@pytest.mark.parametrize("role", ["pantau_analyst", "pantau_grafana"])
def test_sql_risk_matches_the_reference_scoring(services: Settings, db: str, role: str) -> None:
    expected = score(HISTORY.incidents, END)
    with connect(services, db, role) as conn:
        rows = rows_as_dicts(conn, "SELECT * FROM hotspot_risk_at(%s) ORDER BY rank", END)
        slots = rows_as_dicts(
            conn,
            "SELECT camera_id, weekday, hour, expected FROM hotspot_risk_slots_at(%s)",
            END,
        )
    assert {r["camera_id"] + "/" + r["zone_id"] for r in rows} == set(expected)
    tomorrow = END.weekday() + 1
    for row in rows:
        place = expected[row["camera_id"] + "/" + row["zone_id"]]
        assert row["expected_week"] == pytest.approx(place.expected_week, rel=1e-9)
        assert row["expected_tomorrow"] == pytest.approx(place.expected_day(tomorrow % 7))
        # Weekdays are ISO in SQL (1 Monday), 0-based in Python.
        assert row["likely_weekday"] == place.likely_weekdays(1)[0] + 1
        assert row["likely_hour"] == place.likely_hours(1)[0]
        assert row["incidents"] == place.incidents
        assert row["desa"] == desa_of(place.place)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert len(slots) == 168 * len(rows)
    for slot in slots[:: len(slots) // 50]:
        place = expected[slot["camera_id"] + "/tepi-jalan"]
        assert slot["expected"] == pytest.approx(
            place.expected_slot(slot["weekday"] - 1, slot["hour"])
        )


def test_desa_risk_sums_its_places(services: Settings, db: str) -> None:
    by_desa = score([Incident(i.at, desa_of(i.place)) for i in HISTORY.incidents], END)
    with connect(services, db, "pantau_analyst") as conn:
        rows = rows_as_dicts(conn, "SELECT * FROM hotspot_risk_desa_at(%s) ORDER BY rank", END)
    assert {r["desa"]: r["expected_week"] for r in rows} == pytest.approx(
        {d: r.expected_week for d, r in by_desa.items()}
    )
    assert sum(r["places"] for r in rows) == len(score(HISTORY.incidents, END))


def test_the_views_read_as_of_now_and_false_alarms_are_no_dumping(
    services: Settings, db: str
) -> None:
    with connect(services, db, "pantau_analyst") as conn:
        now_rows = rows_as_dicts(conn, "SELECT camera_id, incidents FROM hotspot_risk")
        incidents = rows_as_dicts(conn, "SELECT count(*) AS n FROM dumping_incidents")
    # Nothing happened since END: as of now, the same places with the same counts.
    assert {r["camera_id"]: r["incidents"] for r in now_rows} == {
        camera_of(p): r.incidents for p, r in score(HISTORY.incidents, END).items()
    }
    assert incidents == [{"n": len(HISTORY.incidents)}]


def test_the_planted_places_top_the_dashboard_panel(services: Settings, db: str) -> None:
    settings = load_settings(REPO / "configs" / "pantau.yaml", {})
    dashboard = next(
        d for d in render_dashboards(settings).values() if d["uid"] == "pantau-dumping"
    )
    query = next(q for q in panel_queries(dashboard) if q.panel == "Risiko titik rawan")
    now = datetime.now(UTC)
    with connect(services, db, "pantau_grafana") as conn:
        values, quoted = resolve_variables(
            dashboard,
            lambda sql: conn.execute(sql.encode()).fetchall(),
            time_from=now - timedelta(days=30),
            time_to=now,
        )
        sql = expanded(
            query, time_from=now - timedelta(days=30), time_to=now, variables=values, quoted=quoted
        )
        rows = rows_as_dicts(conn, sql)
    top = [r["camera_id"] for r in rows[:6]]
    planted = {camera_of(p) for p in HISTORY.rhythmic + HISTORY.steady}
    assert len(set(top) & planted) >= 5, (top, planted)
    assert rows[0]["Hari rawan"] in ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")


def test_sql_ranking_reproduces_the_evaluation(services: Settings, db: str) -> None:
    history: PlantedHistory = HISTORY
    starts = [history.start + timedelta(weeks=w) for w in range(4, history.weeks)]
    # The weeks' incidents, inserted as they are: the last week's are in the history too.
    reference = evaluate(history.incidents, history.places, starts)
    hits = naive_hits = 0
    with connect(services, db, "pantau_analyst") as conn:
        for start in starts:
            ranked = rows_as_dicts(
                conn, "SELECT camera_id, zone_id, expected_week FROM hotspot_risk_at(%s)", start
            )
            scores = {r["camera_id"] + "/" + r["zone_id"]: r["expected_week"] for r in ranked}
            top = top_places(scores, history.places, 0.1)
            naive = top_places(naive_week(history.incidents, start), history.places, 0.1)
            coming = [
                i.place for i in history.incidents if start <= i.at < start + timedelta(weeks=1)
            ]
            hits += sum(p in top for p in coming)
            naive_hits += sum(p in naive for p in coming)
    assert (hits, naive_hits) == (reference.risk_hits, reference.naive_hits)
    assert reference.risk_hit_rate > reference.naive_hit_rate


HEAD_CHAT = -100777


def _summary(db: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pantau.cli", "--config", str(BASE_CONFIG), "risk", "summary",
         "--at", END.isoformat(), *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**base_environ(), "PANTAU__POSTGRES__DBNAME": db, **env},
    )  # fmt: skip


def test_weekly_summary_reaches_the_head_of_the_dlh_by_telegram_and_email(
    db: str,
    smtp_server: tuple[Any, int],  # noqa: F811 - the fixture imported above
) -> None:
    inbox, port = smtp_server
    risks = score(HISTORY.incidents, END)
    top = sorted(risks.values(), key=lambda r: (-r.expected_week, r.place))[0]
    with fake_telegram() as fake:
        env = {
            "PANTAU_TELEGRAM_API": fake.url,
            "PANTAU__NOTIFY__TELEGRAM__TOKEN": TOKEN,
            "PANTAU_TELEGRAM_CHAT_DLH_HEAD": str(HEAD_CHAT),
            "PANTAU_SMTP_HOST": "127.0.0.1",
            "PANTAU_SMTP_PORT": str(port),
            "PANTAU_EMAIL_DLH_HEAD": "kepala@dlh.example",
        }
        # Without --send: printed, nothing sent.
        dry = _summary(db, env)
        assert dry.returncode == 0, dry.stderr
        assert fake.chat_messages(HEAD_CHAT) == [] and inbox.messages == []

        sent = _summary(db, env, "--send", "--top", "3")
        assert sent.returncode == 0, sent.stderr
        messages = fake.chat_messages(HEAD_CHAT)
    assert len(messages) == 1
    text = messages[0].text
    first = text.splitlines()[0]
    assert first.startswith("<b>Risiko pembuangan sampah liar, ") and "s.d." in first
    # The top place first, with its likeliest day and hour, in Bahasa Indonesia.
    camera = f"TPS {top.place.split('/')[0][-3:]}"
    line = next(x for x in text.splitlines() if x.startswith("1. "))
    weekday = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")[
        top.likely_weekdays(1)[0]
    ]
    assert camera in line and f"paling sering {weekday}" in line
    assert f"{top.likely_hours(1)[0]:02d}.00" in line
    assert f"±{top.expected_week:.1f}".replace(".", ",") in line
    assert sum(x[:2] in ("1.", "2.", "3.", "4.") for x in text.splitlines()) == 3
    assert "Desa paling rawan:" in text
    # No buttons: it is no alarm.
    assert messages[0].markup is None
    # The same message by e-mail.
    assert len(inbox.messages) == 1
    _, recipients, raw = inbox.messages[0]
    assert recipients == ["kepala@dlh.example"]
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(mail["Subject"]).startswith("Pantau: Risiko pembuangan sampah liar")
    body = mail.get_body(("plain",))
    assert body is not None and camera in body.get_content()
    # The bot token shows nowhere.
    assert TOKEN not in sent.stdout + sent.stderr + dry.stdout + dry.stderr
    assert "sent by telegram" in sent.stdout and "sent by email" in sent.stdout


def test_weekly_summary_fails_loudly_when_telegram_refuses(db: str) -> None:
    env = {
        # Nothing listens on either: retryable, tried three times, then a non-zero exit.
        "PANTAU_TELEGRAM_API": "http://127.0.0.1:9",
        "PANTAU__NOTIFY__TELEGRAM__TOKEN": TOKEN,
        "PANTAU_TELEGRAM_CHAT_DLH_HEAD": str(HEAD_CHAT),
        "PANTAU_SMTP_HOST": "127.0.0.1",
        "PANTAU_SMTP_PORT": "9",
        "PANTAU__NOTIFY__TIMEOUT_S": "1",
    }
    result = _summary(db, env, "--send")
    assert result.returncode == 1
    assert "not sent: telegram to -100777 (route kepala-dlh)" in result.stderr
    assert "not sent: email to kepala-dlh@localhost (route kepala-dlh)" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
