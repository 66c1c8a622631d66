"""Migrations on real PostgreSQL: idempotent, tamper-evident, and the writer role's rights."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pantau.ids import utcnow
from pantau.settings import Settings
from storage.migrate import MigrationError, apply, discover


@pytest.fixture
def empty_database(services: Settings) -> Iterator[dict[str, Any]]:
    owner = services.postgres.connect_kwargs("owner")
    name = f"pantau_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**owner, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    yield {**owner, "dbname": name}
    with psycopg.connect(**owner, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_apply_then_reapply_is_a_no_op(empty_database: dict[str, Any]) -> None:
    with psycopg.connect(**empty_database) as conn:
        first = apply(conn)
        assert [m.version for m in first] == [m.version for m in discover()]
        assert apply(conn) == []
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert {"sensor_readings", "detections", "camera_health", "dead_letters"} <= tables
    with psycopg.connect(**empty_database) as conn:
        types = dict(
            conn.execute(
                "SELECT table_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' AND column_name = 'time'"
            ).fetchall()
        )
    assert set(types.values()) == {"timestamp with time zone"}


def test_a_changed_applied_migration_is_refused(empty_database: dict[str, Any]) -> None:
    migrations = discover()
    with psycopg.connect(**empty_database) as conn:
        apply(conn, migrations)
        edited = [dataclasses.replace(migrations[0], sql=migrations[0].sql + "\n-- edited\n")]
        with pytest.raises(
            MigrationError, match=r"0001_core\.sql was changed after it was applied"
        ):
            apply(conn, edited)


def test_writer_role_inserts_but_cannot_delete_or_drop(services: Settings, database: str) -> None:
    writer = {**services.postgres.connect_kwargs("writer"), "dbname": database}
    with psycopg.connect(**writer, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, quantity, value, reading_id, seq, "
            "ingested_at) VALUES (%s, 'aq-role-test', 'pm25', 10, %s, 1, %s)",
            (utcnow(), uuid.uuid4(), utcnow()),
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM sensor_readings WHERE sensor_id = 'aq-role-test'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE detections")
