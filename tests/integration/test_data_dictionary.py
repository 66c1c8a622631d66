"""The analysts' data dictionary matches the database, and its example queries run as
pantau_analyst on a seeded history and answer something."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from pantau.settings import Settings
from storage.dictionary import documented_columns, example_queries
from tests.conftest import REPO
from tests.integration.conftest import BASE_CONFIG, base_environ
from tests.integration.test_migrations import connect, migrate

DICTIONARY = REPO / "docs" / "data-dictionary.md"


@pytest.fixture(scope="module")
def seeded(services: Settings) -> Iterator[str]:
    """A database of its own, migrated and seeded with two days of history."""
    owner = services.postgres.connect_kwargs("owner")
    empty_database = f"pantau_dict_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**owner, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{empty_database}"')
    migrate(empty_database)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pantau.cli",
            "--config",
            str(BASE_CONFIG),
            "db",
            "seed",
            "--days",
            "2",
            "--sensors",
            "24",
            "--cameras",
            "4",
        ],
        capture_output=True,
        text=True,
        env={**base_environ(), "PANTAU__POSTGRES__DBNAME": empty_database},
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "sensor_readings" in result.stdout
    yield empty_database
    with psycopg.connect(**owner, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE "{empty_database}" WITH (FORCE)')


def test_every_documented_table_and_column_exists(services: Settings, seeded: str) -> None:
    documented = documented_columns(DICTIONARY)
    assert len(documented) >= 14
    with connect(services, seeded) as conn:
        for table, columns in documented.items():
            actual = {
                row[0]
                for row in conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                    "AND attnum > 0 AND NOT attisdropped",
                    (table,),
                )
            }
            assert columns <= actual, f"{table}: documented but missing {columns - actual}"


@pytest.mark.parametrize("name", sorted(example_queries(DICTIONARY)))
def test_example_query_runs_as_analyst_and_finds_rows(
    services: Settings, seeded: str, name: str
) -> None:
    query = example_queries(DICTIONARY)[name]
    with connect(services, seeded, "pantau_analyst") as conn:
        rows = conn.execute(query.encode()).fetchall()
    assert rows, f"{name} found nothing on two seeded days"
