"""The analysts' data dictionary matches the database, and its example queries run as
pantau_analyst on a seeded history and answer something."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pantau.settings import Settings
from storage.dictionary import documented_columns, example_queries
from tests.conftest import REPO
from tests.integration.conftest import seeded_database
from tests.integration.test_migrations import connect

DICTIONARY = REPO / "docs" / "data-dictionary.md"


@pytest.fixture(scope="module")
def seeded(services: Settings) -> Iterator[str]:
    """A database of its own, migrated and seeded with two days of history."""
    with seeded_database(services, "pantau_dict", days=2, sensors=24, cameras=4) as name:
        yield name


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
