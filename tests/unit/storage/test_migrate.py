from __future__ import annotations

from pathlib import Path

import pytest

from storage.migrate import MigrationError, discover, split_statements


def test_each_flavour_gets_the_common_files_and_its_own() -> None:
    postgres = [m.filename for m in discover("postgres")]
    timescale = [m.filename for m in discover("timescale")]
    assert [name.split("_")[0] for name in postgres] == [name.split("_")[0] for name in timescale]
    assert "0002_time_series.postgres.sql" in postgres
    assert "0002_time_series.timescale.sql" in timescale
    assert set(postgres) & set(timescale) >= {"0001_roles_and_registries.sql", "0003_tables.sql"}


def test_continuous_aggregates_run_outside_a_transaction() -> None:
    (rollups,) = [m for m in discover("timescale") if m.name == "rollups"]
    assert not rollups.transactional
    assert all(m.transactional for m in discover("postgres"))


@pytest.mark.parametrize(
    ("files", "error"),
    [
        (["0001_a.sql", "0001_b.sql"], "two migrations share version 0001"),
        (["0001_a.postgres.sql"], "lacks its timescale file"),
        (
            ["0001_a.sql", "0001_a.timescale.sql", "0001_a.postgres.sql"],
            "both a common and a flavoured",
        ),
        (["1_bad.sql"], "migration files are named"),
    ],
)
def test_badly_laid_out_migrations_are_refused(
    tmp_path: Path, files: list[str], error: str
) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=error):
        discover("postgres", tmp_path)


def test_split_statements_respects_quotes_dollar_quotes_and_comments() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (x text DEFAULT 'a;b');
    DO $$ BEGIN PERFORM 1; PERFORM 2; END $$;
    /* block; comment */ SELECT $tag$ ; $tag$, "odd;name" FROM a;
    -- trailing comment only
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[0].endswith("DEFAULT 'a;b')")
    assert statements[1].startswith("DO $$") and statements[1].endswith("END $$")
    assert '"odd;name"' in statements[2]
