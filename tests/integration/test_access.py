"""Least privilege on real PostgreSQL 15, as each role, connected with the password
`pantau migrate` gave it: the wall and the analysts never read evidence references, the
notifier's outbox or the bytes of refused input, write nothing and create nothing; the writer
stores what the sink and the notifier store and opens no other table; a read role's forgotten
transaction ends by itself and never holds maintenance up for long."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.errors import IdleInTransactionSessionTimeout, InsufficientPrivilege

from pantau.ids import utcnow
from pantau.settings import Settings
from storage.admin import access_problems
from storage.rows import TABLES, Row, Table, all_rows_for
from storage.sink import PostgresWriter
from tests.factories import SAMPLES
from tests.integration.conftest import fresh_database
from tests.integration.test_maintain import maintain, partitions
from tests.integration.test_migrations import connect, migrate

READERS = ["pantau_grafana", "pantau_analyst"]
EVENT = uuid.UUID("0b3c8f6e-5d1a-4c1e-9a51-000000000001")
LETTER = uuid.UUID("0b3c8f6e-5d1a-4c1e-9a51-000000000002")
STILL = "file:///srv/pantau/evidence/tps-gedeg/2026-01-05/0b3c8f6e/alert.jpg"
WEBHOOK = "https://hooks.example.org/services/T0KEN-IN-THE-URL"
REFUSED = b'{"kind": "dumping_event", "evidence": [{"uri": "file:///srv/pantau/x.jpg"}]}'

# What each role reads, and what it must not even open (beyond the columns tested below).
READS = {
    "pantau_grafana": [
        "cameras", "zones", "sensors", "sensor_readings", "sensor_readings_hourly", "detections",
        "camera_health", "pipeline_metrics", "alerts", "notifications", "incidents_daily",
        "dumping_events", "dead_letters", "camera_view_changes",
    ],
    "pantau_analyst": [
        "cameras", "zones", "sensors", "sensor_readings", "sensor_readings_1m",
        "sensor_readings_hourly", "detections", "camera_health", "pipeline_metrics", "alerts",
        "notifications", "incidents_daily", "dumping_events", "dead_letters",
        "camera_view_changes",
    ],
    "pantau_writer": [
        "sensor_readings", "sensor_readings_1m", "detections", "camera_health",
        "pipeline_metrics", "dead_letters", "dumping_events", "alerts", "notifications",
        "notification_outbox", "camera_view_changes",
    ],
}  # fmt: skip
NOT_READ = {
    "pantau_grafana": [
        "notification_outbox", "sensor_readings_1m", "pantau_time_series", "schema_migrations",
    ],
    "pantau_analyst": ["notification_outbox", "pantau_time_series", "schema_migrations"],
    "pantau_writer": [
        "cameras", "zones", "sensors", "sensor_readings_hourly", "incidents_daily",
        "pantau_time_series", "schema_migrations",
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def db(services: Settings) -> Iterator[str]:
    """A database of its own, migrated, with one dumping event and its evidence, one refused
    input and one queued webhook delivery, stored by the owner."""
    with fresh_database(services, "pantau_access") as name:
        now = utcnow()
        with connect(services, name) as owner:
            owner.execute(
                "INSERT INTO dumping_events (appeared_at, event_id, camera_id, zone_id, state, "
                "phase, version, x1, y1, x2, y2, confidence, evidence, updated_at) VALUES "
                "(%s, %s, 'demo-table', 'z1', 'alerted', 'update', 2, 1, 2, 3, 4, 0.8, %s, %s)",
                (now, EVENT, json.dumps([{"kind": "alert", "uri": STILL, "sha256": "ab"}]), now),
            )
            owner.execute(
                "INSERT INTO dead_letters (time, id, stage, source_kind, source_topic, error, "
                "original) VALUES (%s, %s, 'sink', 'dumping_event', 'events.dumping.v1', "
                "'not a dumping event', %s)",
                (now, LETTER, REFUSED),
            )
            owner.execute(
                "INSERT INTO notification_outbox (notification_id, alarm_id, alarm_version, "
                "route, channel, target, recipient, alert) VALUES "
                "(%s, %s, 1, 'ops', 'webhook', %s, 'hooks.example.org', %s)",
                (uuid.uuid4(), uuid.uuid4(), WEBHOOK, json.dumps({"evidence": [{"uri": STILL}]})),
            )
        yield name


def partition_of(services: Settings, db: str, table: str) -> str:
    """The partition holding the fixture's row of dumping_events or dead_letters, which a
    role could name directly."""
    key, value = {"dumping_events": ("event_id", EVENT), "dead_letters": ("id", LETTER)}[table]
    with connect(services, db) as owner:
        row = owner.execute(
            sql.SQL("SELECT tableoid::regclass::text FROM {} WHERE {} = %s").format(
                sql.Identifier(table), sql.Identifier(key)
            ),
            (value,),
        ).fetchone()
    assert row is not None and row[0] != table
    return str(row[0])


def on(template: str, *tables: str) -> sql.Composed:
    """`template` with its {} replaced by the tables' names, quoted."""
    return sql.SQL(template).format(*(sql.Identifier(t) for t in tables))  # type: ignore[arg-type]


def refused(conn: psycopg.Connection[Any], query: str | sql.Composable) -> bool:
    try:
        conn.execute(query.encode() if isinstance(query, str) else query)
    except InsufficientPrivilege:
        return True
    return False


@pytest.mark.parametrize("role", READERS)
def test_a_reading_role_never_sees_evidence_the_outbox_or_refused_bytes(
    services: Settings, db: str, role: str
) -> None:
    events = partition_of(services, db, "dumping_events")
    letters = partition_of(services, db, "dead_letters")
    with connect(services, db, role) as conn:
        # What the role is for: the incident and the refusal, without what they carry.
        assert conn.execute(
            "SELECT event_id, camera_id, state, evidence_error FROM dumping_events "
            "WHERE event_id = %s",
            (EVENT,),
        ).fetchall() == [(EVENT, "demo-table", "alerted", None)]
        assert conn.execute(
            "SELECT stage, error FROM dead_letters WHERE id = %s", (LETTER,)
        ).fetchall() == [("sink", "not a dumping event")]
        forbidden = [
            "SELECT evidence FROM dumping_events",
            "SELECT * FROM dumping_events",
            "SELECT evidence -> 0 ->> 'uri' FROM dumping_events",
            # Around the parent's column grants, straight to the partition.
            on("SELECT evidence FROM {}", events),
            on("SELECT event_id FROM {}", events),
            "SELECT original FROM dead_letters",
            "SELECT * FROM dead_letters",
            on("SELECT original FROM {}", letters),
            "SELECT target FROM notification_outbox",
            "SELECT alert -> 'evidence' FROM notification_outbox",
            "SELECT count(*) FROM notification_outbox",
        ]
        assert [q for q in forbidden if not refused(conn, q)] == []


@pytest.mark.parametrize("role", [*READERS, "pantau_writer"])
def test_each_role_opens_the_tables_it_needs_and_no_other(
    services: Settings, db: str, role: str
) -> None:
    with connect(services, db, role) as conn:
        for table in READS[role]:
            conn.execute(on("SELECT count(*) FROM {}", table))
        assert [
            t for t in NOT_READ[role] if not refused(conn, on("SELECT count(*) FROM {}", t))
        ] == []


def test_a_table_created_later_is_nobodys_until_a_migration_grants_it(
    services: Settings, db: str
) -> None:
    with connect(services, db) as owner:
        owner.execute("CREATE TABLE IF NOT EXISTS added_later (x integer)")
        owner.execute("INSERT INTO added_later VALUES (1)")
        # A partition maintenance makes next year: readable through its parent only.
        part = owner.execute(
            "SELECT pantau_ensure_partition('dumping_events', now() + interval '400 days')"
        ).fetchone()
    assert part is not None and part[0]
    for role in [*READERS, "pantau_writer"]:
        with connect(services, db, role) as conn:
            assert refused(conn, "SELECT x FROM added_later"), role
            assert refused(conn, on("SELECT event_id FROM {}", part[0])), role


@pytest.mark.parametrize("role", READERS)
def test_a_reading_role_writes_nothing_and_creates_nothing(
    services: Settings, db: str, role: str
) -> None:
    with connect(services, db, role) as conn:
        # Read-only is only the session's default; the grants are what refuse.
        conn.execute("SET default_transaction_read_only = off")
        statements = [
            "INSERT INTO sensors (sensor_id, type) VALUES ('intruder', 'air_quality')",
            "UPDATE alerts SET state = 'RESOLVED'",
            "UPDATE dumping_events SET state = 'cleaned'",
            "DELETE FROM sensor_readings",
            "TRUNCATE detections",
            "INSERT INTO notification_outbox (notification_id, alarm_id, alarm_version, route, "
            "channel, target, recipient, alert) VALUES (gen_random_uuid(), gen_random_uuid(), "
            "1, 'r', 'webhook', 'https://evil.example', 'x', '{}')",
            "CREATE TABLE mine (x integer)",
            "CREATE TEMP TABLE mine (x integer)",
            "CREATE VIEW mine AS SELECT 1",
            "CREATE SCHEMA mine",
            "ALTER TABLE cameras ADD COLUMN mine integer",
            "DROP TABLE dumping_events",
            "REFRESH MATERIALIZED VIEW incidents_daily",
            "SELECT pantau_drop_partitions('sensor_readings', now())",
        ]
        assert [s for s in statements if not refused(conn, s)] == []


def test_the_sink_stores_every_kind_of_row_as_the_writer(services: Settings, db: str) -> None:
    """The sink's own writer, as pantau_writer: binary COPY first, and for a batch stored
    again the staging table and the upserts (a re-delivered batch changes nothing)."""
    batch: dict[Table, list[Row]] = {}
    # Every kind of message, camera views included.
    for message in SAMPLES.values():
        try:
            tables = all_rows_for(message)
        except TypeError:
            continue  # frames are not stored
        for table, rows in tables:
            if rows:
                batch.setdefault(table, []).extend(rows)
    writer = PostgresWriter({**services.postgres.connect_kwargs("writer"), "dbname": db})
    try:
        first = writer.write(batch)
        again = writer.write(batch)
    finally:
        writer.close()
    assert first.rejected == [] and again.rejected == []
    assert first.inserted == {t.name: len(rows) for t, rows in batch.items()}
    # Every table the sink writes, the alarms' history and people's actions included.
    assert set(first.inserted) == {t.name for t in TABLES}


def test_the_writer_stores_what_it_stores_and_changes_nothing_else(
    services: Settings, db: str
) -> None:
    now = utcnow()
    event = uuid.uuid4()
    with connect(services, db, "pantau_writer") as writer:
        # The sink's way in: a staging table like the target, then an upsert.
        writer.execute("CREATE TEMP TABLE stage_dumping_events (LIKE dumping_events)")
        writer.execute(
            "INSERT INTO dumping_events (appeared_at, event_id, camera_id, state, phase, version, "
            "x1, y1, x2, y2, confidence, updated_at) VALUES "
            "(%s, %s, 'demo-table', 'unattended', 'new', 1, 1, 2, 3, 4, 0.5, %s)",
            (now, event, now),
        )
        writer.execute(
            "UPDATE dumping_events SET state = 'alerted', version = 2 WHERE event_id = %s",
            (event,),
        )
        writer.execute(
            "INSERT INTO dead_letters (time, id, stage, source_kind, source_topic, error, "
            "original) VALUES (%s, %s, 'sink', 'x', 't', 'e', 'bytes')",
            (now, uuid.uuid4()),
        )
        # The notifier's way in: queue, claim, mark sent.
        outbox = uuid.uuid4()
        writer.execute(
            "INSERT INTO notification_outbox (notification_id, alarm_id, alarm_version, route, "
            "channel, target, recipient, alert) VALUES (%s, %s, 1, 'r', 'webhook', %s, 'x', '{}')",
            (outbox, uuid.uuid4(), WEBHOOK),
        )
        with writer.transaction():
            writer.execute(
                "SELECT target FROM notification_outbox WHERE notification_id = %s "
                "FOR UPDATE SKIP LOCKED",
                (outbox,),
            )
            writer.execute(
                "UPDATE notification_outbox SET status = 'sent' WHERE notification_id = %s",
                (outbox,),
            )
        statements = [
            "DELETE FROM sensor_readings",
            "DELETE FROM notification_outbox",
            "UPDATE sensor_readings SET value = 0",
            "TRUNCATE dead_letters",
            "INSERT INTO cameras (camera_id) VALUES ('intruder')",
            "CREATE TABLE mine (x integer)",
            "ALTER TABLE alerts ADD COLUMN mine integer",
            "DROP TABLE detections",
            on(
                "INSERT INTO {} SELECT * FROM dead_letters",
                partition_of(services, db, "dead_letters"),
            ),
        ]
        assert [s for s in statements if not refused(writer, s)] == []
    with connect(services, db) as owner:
        assert owner.execute(
            "SELECT state FROM dumping_events WHERE event_id = %s", (event,)
        ).fetchone() == ("alerted",)


def test_analysts_read_evidence_references_only_when_the_setting_allows(
    services: Settings, db: str
) -> None:
    try:
        migrate(db, PANTAU__STORAGE__ANALYST_EVIDENCE_ACCESS="true")
        with connect(services, db, "pantau_analyst") as analyst:
            assert analyst.execute(
                "SELECT evidence -> 0 ->> 'uri' FROM dumping_events WHERE event_id = %s", (EVENT,)
            ).fetchall() == [(STILL,)]
            # Only the evidence column, and only through the table: nothing else opens up.
            still_refused = [
                "SELECT original FROM dead_letters",
                "SELECT target FROM notification_outbox",
                on("SELECT evidence FROM {}", partition_of(services, db, "dumping_events")),
            ]
            assert [q for q in still_refused if not refused(analyst, q)] == []
        with connect(services, db, "pantau_grafana") as grafana:
            assert refused(grafana, "SELECT evidence FROM dumping_events")
    finally:
        migrate(db)
    with connect(services, db, "pantau_analyst") as analyst:
        assert refused(analyst, "SELECT evidence FROM dumping_events")


def test_a_grant_made_by_hand_is_found_and_migrate_takes_it_back(
    services: Settings, db: str
) -> None:
    events = partition_of(services, db, "dumping_events")
    with connect(services, db) as owner:
        owner.execute(f"GRANT SELECT ON {events} TO pantau_analyst")
        owner.execute("GRANT SELECT ON notification_outbox TO pantau_grafana")
        assert set(access_problems(owner, services)) == {
            f"pantau_analyst can read {events}.evidence",
            "pantau_grafana can read or write notification_outbox",
        }
    migrate(db)
    with connect(services, db) as owner:
        assert access_problems(owner, services) == []
    with connect(services, db, "pantau_grafana") as grafana:
        assert refused(grafana, "SELECT target FROM notification_outbox")


@pytest.mark.parametrize(
    ("role", "timeout"), [("pantau_grafana", "15s"), ("pantau_analyst", "30s")]
)
def test_a_reading_role_starts_read_only_with_its_timeouts(
    services: Settings, db: str, role: str, timeout: str
) -> None:
    with connect(services, db, role) as conn:
        settings = conn.execute(
            "SELECT current_setting('statement_timeout'), "
            "current_setting('idle_in_transaction_session_timeout'), "
            "current_setting('default_transaction_read_only')"
        ).fetchone()
    assert settings == (timeout, "1min", "on")


def test_a_forgotten_read_transaction_neither_stalls_maintenance_nor_outlives_its_timeout(
    services: Settings,
) -> None:
    with fresh_database(services, "pantau_locks") as db:
        with connect(services, db) as owner:
            # Partitions past the 90-day retention, for maintenance to drop.
            old = {
                table: owner.execute(
                    "SELECT pantau_ensure_partition(%s, now() - interval '100 days')", (table,)
                ).fetchone()
                for table in ("detections", "sensor_readings")
            }
        analyst = connect(services, db, "pantau_analyst")
        grafana = connect(services, db, "pantau_grafana")
        try:
            # An analyst's transaction left open after reading detections (it holds a lock on
            # every partition); the wall's, after reading the cameras.
            analyst.autocommit = grafana.autocommit = False
            analyst.execute("SELECT count(*) FROM detections")
            grafana.execute("SELECT count(*) FROM cameras")
            pids = [analyst.info.backend_pid, grafana.info.backend_pid]

            out = maintain(db)
            assert "could not drop the old partitions of detections" in out, out
            assert f"pantau_analyst (pid {pids[0]})" in out, out
            with connect(services, db) as owner:
                # Maintenance finished while the transaction still held its lock...
                held = owner.execute(
                    "SELECT count(*) FROM pg_locks WHERE pid = %s AND granted "
                    "AND relation = 'detections'::regclass",
                    (pids[0],),
                ).fetchone()
                assert held == (1,)
                # ...and did the rest: the other table's old partition is gone.
                assert old["detections"] is not None and old["sensor_readings"] is not None
                assert old["detections"][0] in partitions(owner, "detections")
                assert old["sensor_readings"][0] not in partitions(owner, "sensor_readings")

                # Both idle transactions end by themselves (60 s), and their sessions with them.
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    left = owner.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
                    ).fetchone()
                    if left == (0,):
                        break
                    time.sleep(1)
            for conn in (analyst, grafana):
                with pytest.raises(IdleInTransactionSessionTimeout):
                    conn.execute("SELECT 1")

            again = maintain(db)
            assert "could not" not in again, again
            with connect(services, db) as owner:
                assert old["detections"][0] not in partitions(owner, "detections")
        finally:
            analyst.close()
            grafana.close()
