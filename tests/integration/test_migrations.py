"""Migrations on real PostgreSQL 15: idempotent, tamper-evident, partitioned time series, the
registries from the config, and what each role may do."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pantau.ids import utcnow
from pantau.settings import Settings
from storage.migrate import MigrationError, apply, discover
from tests.conftest import REPO
from tests.integration.conftest import BASE_CONFIG, base_environ, drop_database

TIME_SERIES = {
    "sensor_readings",
    "sensor_readings_1m",
    "detections",
    "camera_health",
    "pipeline_metrics",
    "dead_letters",
    "dumping_events",
    "alerts",
    "notifications",
    "sensor_readings_hourly",
    # Every version of every alarm, and people's actions (the incident console).
    "alarm_history",
    "alarm_actions",
    # The detector's word on each camera's view.
    "camera_view_changes",
}


@pytest.fixture
def empty_database(services: Settings) -> Iterator[str]:
    owner = services.postgres.connect_kwargs("owner")
    name = f"pantau_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**owner, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    drop_database(services, name)


def migrate(dbname: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pantau.cli", "--config", str(BASE_CONFIG), "migrate"],
        capture_output=True,
        text=True,
        env={**base_environ(), "PANTAU__POSTGRES__DBNAME": dbname, **env},
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def connect(services: Settings, dbname: str, role: str = "owner") -> psycopg.Connection[Any]:
    """Connected to `dbname` as the owner or as one of the roles, with the password
    `pantau migrate` gave that role (none where the settings hold none)."""
    pg = services.postgres
    kwargs = pg.connect_kwargs("owner")
    kwargs["dbname"] = dbname
    if role != "owner":
        secret = {
            "pantau_writer": pg.writer_password,
            "pantau_grafana": pg.grafana_password,
            "pantau_analyst": pg.analyst_password,
        }[role]
        kwargs["user"] = role
        kwargs.pop("password", None)
        if secret is not None:
            kwargs["password"] = secret.get_secret_value()
    return psycopg.connect(**kwargs, autocommit=True)  # type: ignore[arg-type]


def rows_as_dicts(conn: psycopg.Connection[Any], query: str, *args: Any) -> list[dict[str, Any]]:
    """The query's rows, each as {column: value}."""
    cursor = conn.execute(query.encode(), args or None)
    assert cursor.description is not None
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_migrate_creates_partitioned_time_series_and_reapplies_as_a_no_op(
    services: Settings, empty_database: str
) -> None:
    first = migrate(empty_database)
    assert "applied (postgres): 0001_roles_and_registries.sql" in first
    assert "schema is up to date (postgres)" in migrate(empty_database)
    with connect(services, empty_database) as conn:
        partitioned = {
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
            )
        }
        assert partitioned == TIME_SERIES
        # Every time column is timestamptz, in every table.
        types = {
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' AND column_name IN "
                "('time', 'appeared_at', 'opened_at', 'created_at', 'bucket', 'stored_at')"
            )
        }
        assert types == {"timestamp with time zone"}
        # Today's partition exists (and a week ahead), next to the default partition.
        today = conn.execute(
            "SELECT pantau_partition_name('sensor_readings', "
            "(pantau_partition_bounds(now(), '1 day')).lower_bound, '1 day')"
        ).fetchone()
        assert today is not None
        children = {
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'sensor_readings'::regclass"
            )
        }
        assert {today[0], "sensor_readings_default"} <= children
        assert len(children) >= 9
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'sensor_readings'"
            )
        }
        assert any("USING brin" in d for d in indexes)
        assert any('(sensor_id, quantity, "time")' in d for d in indexes)


def test_a_changed_applied_migration_is_refused(services: Settings, empty_database: str) -> None:
    migrations = discover("postgres")
    with connect(services, empty_database) as conn:
        apply(conn, migrations)
        edited = [dataclasses.replace(migrations[0], sql=migrations[0].sql + "\n-- edited\n")]
        with pytest.raises(MigrationError, match=r"0001_roles_and_registries\.sql was changed"):
            apply(conn, edited)


def test_registries_follow_the_config(services: Settings, empty_database: str) -> None:
    migrate(empty_database)
    with connect(services, empty_database) as conn:
        sensors = dict(conn.execute("SELECT sensor_id, desa FROM sensors WHERE active").fetchall())
        assert sensors["wl-brantas-lengkong"] == "Lengkong"
        assert len(sensors) == len(services.sensors)
        camera = conn.execute(
            "SELECT lat, lon, desa FROM cameras WHERE camera_id = 'demo-table'"
        ).fetchone()
        assert camera == (-7.4726, 112.4381, "Sooko")
    # A zone added, a sensor renamed away: the registry follows, history stays.
    migrate(
        empty_database,
        PANTAU__CAMERAS__0__ZONES="[{id: tepi-meja, polygon: [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0]], dwell_s: 20}]",
        PANTAU__SENSORS__0__ID="aq-alun-alun-2",
        # The development gateway sends for the renamed sensor too.
        PANTAU__GATEWAYS__0__SENSORS="[aq-alun-alun-2, aq-pasar-tanjung, wl-brantas-lengkong, "
        "wl-sadar-magersari, tps-gedeg-01, tps-sooko-01]",
    )
    with connect(services, empty_database) as conn:
        zone = conn.execute(
            "SELECT kind, polygon, dwell_s FROM zones WHERE zone_id = 'tepi-meja'"
        ).fetchone()
        assert zone == ("watch", [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0]], 20.0)
        states = dict(conn.execute("SELECT sensor_id, active FROM sensors").fetchall())
        assert states["aq-alun-alun"] is False
        assert states["aq-alun-alun-2"] is True


def test_what_each_role_may_do(services: Settings, database: str) -> None:
    now = utcnow()
    with connect(services, database, "pantau_writer") as writer:
        writer.execute(
            "INSERT INTO sensor_readings (time, sensor_id, quantity, value, seq, ingested_at) "
            "VALUES (%s, 'aq-role-test', 'pm25', 10, 1, %s)",
            (now, now),
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            writer.execute("DELETE FROM sensor_readings WHERE sensor_id = 'aq-role-test'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            writer.execute("DROP TABLE detections")

    with connect(services, database, "pantau_analyst") as analyst:
        value = analyst.execute(
            "SELECT value FROM sensor_readings WHERE sensor_id = 'aq-role-test'"
        ).fetchone()
        assert value == (10.0,)
        assert analyst.execute("SHOW statement_timeout").fetchone() == ("30s",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            analyst.execute(
                "INSERT INTO sensors (sensor_id, type) VALUES ('intruder', 'air_quality')"
            )
        analyst.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute(
                "INSERT INTO sensors (sensor_id, type) VALUES ('intruder', 'air_quality')"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("UPDATE alerts SET state = 'RESOLVED'")
        # Evidence references (paths of stills and clips of people) are not for analysts.
        analyst.execute("SELECT event_id, camera_id, state FROM dumping_events LIMIT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("SELECT evidence FROM dumping_events LIMIT 1")

    with connect(services, database, "pantau_grafana") as grafana:
        grafana.execute("SELECT count(*) FROM sensor_readings_hourly")
        grafana.execute("SELECT event_id, camera_id, state FROM dumping_events LIMIT 1")
        # The wall shows an incident's event id, never where its stills and clip are.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            grafana.execute("SELECT evidence FROM dumping_events LIMIT 1")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            grafana.execute("DELETE FROM alerts")
