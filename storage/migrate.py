"""Numbered SQL migrations, applied once each and recorded in `schema_migrations`.

Files are `NNNN_name.sql`, or `NNNN_name.timescale.sql` and `NNNN_name.postgres.sql` where
the two database flavours need different SQL for the same step: the TimescaleDB file when
the extension is available (or `storage.timescale: on`), the PostgreSQL one otherwise. A
database keeps the flavour it was created with.

A migration that was applied and later edited is refused: the database no longer matches
the file, and silently skipping it would hide that. A file whose first line is
`-- pantau: no-transaction` runs statement by statement outside a transaction (TimescaleDB's
continuous aggregates demand it); every other file runs in one transaction.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
Flavour = Literal["postgres", "timescale"]
FLAVOURS: tuple[Flavour, ...] = ("postgres", "timescale")
_NAME = re.compile(
    r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<flavour>postgres|timescale))?\.sql$"
)
_NO_TRANSACTION = "-- pantau: no-transaction"
# Any constant; it makes two concurrent `pantau migrate` runs take turns.
_LOCK_ID = 0x70616E746175


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    flavour: Flavour | None = None

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        suffix = f".{self.flavour}" if self.flavour else ""
        return f"{self.version:04d}_{self.name}{suffix}.sql"

    @property
    def transactional(self) -> bool:
        return not self.sql.lstrip().startswith(_NO_TRANSACTION)


def discover(flavour: Flavour, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations for one flavour, in order."""
    by_version: dict[int, list[Migration]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path.name}: migration files are named NNNN_name.sql or "
                "NNNN_name.postgres.sql / NNNN_name.timescale.sql"
            )
        migration = Migration(
            int(match["version"]),
            match["name"],
            path.read_text(encoding="utf-8"),
            match["flavour"],  # type: ignore[arg-type]
        )
        by_version.setdefault(migration.version, []).append(migration)
    chosen: list[Migration] = []
    for version, candidates in sorted(by_version.items()):
        common = [m for m in candidates if m.flavour is None]
        specific = {m.flavour: m for m in candidates if m.flavour is not None}
        if common and specific:
            raise MigrationError(f"version {version:04d} has both a common and a flavoured file")
        if len(common) > 1:
            raise MigrationError(f"two migrations share version {version:04d}")
        if specific and set(specific) != set(FLAVOURS):
            missing = ", ".join(sorted(set(FLAVOURS) - set(specific)))
            raise MigrationError(f"version {version:04d} lacks its {missing} file")
        chosen.append(common[0] if common else specific[flavour])
    return chosen


def detect_flavour(conn: psycopg.Connection, wanted: Literal["auto", "on", "off"]) -> Flavour:
    """The flavour recorded in the database, else what `wanted` and the server allow."""
    recorded = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if recorded and recorded[0]:
        row = conn.execute(
            "SELECT flavour FROM schema_migrations WHERE flavour IS NOT NULL LIMIT 1"
        ).fetchone()
        if row is not None:
            flavour: Flavour = row[0]
            return flavour
    available = conn.execute(
        "SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    has_timescale = bool(available and available[0])
    if wanted == "on" and not has_timescale:
        raise MigrationError(
            "storage.timescale is on, but this server has no timescaledb extension"
        )
    return "timescale" if has_timescale and wanted != "off" else "postgres"


def apply(
    conn: psycopg.Connection,
    migrations: list[Migration] | None = None,
    *,
    timescale: Literal["auto", "on", "off"] = "auto",
) -> list[Migration]:
    """Apply what is missing, in order; returns the migrations applied now."""
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
    try:
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer     PRIMARY KEY,
                name        text        NOT NULL,
                flavour     text,
                checksum    text        NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        if migrations is None:
            migrations = discover(detect_flavour(conn, timescale))
        applied = {
            version: (name, checksum)
            for version, name, checksum in conn.execute(
                "SELECT version, name, checksum FROM schema_migrations"
            )
        }
        done: list[Migration] = []
        for migration in migrations:
            if migration.version in applied:
                name, checksum = applied[migration.version]
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.filename} was changed after it was applied "
                        f"(applied as {migration.version:04d}_{name}, checksum {checksum[:12]}, "
                        f"file now {migration.checksum[:12]}); add a new migration instead"
                    )
                continue
            _run(conn, migration)
            log.info("applied migration %s", migration.filename)
            done.append(migration)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


def _run(conn: psycopg.Connection, migration: Migration) -> None:
    record = (
        "INSERT INTO schema_migrations (version, name, flavour, checksum) VALUES (%s, %s, %s, %s)"
    )
    values = (migration.version, migration.name, migration.flavour, migration.checksum)
    try:
        if migration.transactional:
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(record, values)
            return
        for statement in split_statements(migration.sql):
            conn.execute(statement.encode())
        conn.execute(record, values)
    except psycopg.Error as exc:
        raise MigrationError(f"migration {migration.filename} failed: {exc}") from exc


def split_statements(text: str) -> list[str]:
    """Top-level statements of an SQL script: semicolons inside quotes, dollar quotes and
    comments do not split."""
    return [s for s in (part.strip() for part in _split(text)) if _has_code(s)]


_DOLLAR = re.compile(r"\$[A-Za-z_0-9]*\$")


def _split(text: str) -> Iterator[str]:
    start = i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in ("'", '"'):
            end = i + 1
            while end < n:
                if text[end] == ch:
                    if end + 1 < n and text[end + 1] == ch:
                        end += 2
                        continue
                    break
                end += 1
            i = end + 1
        elif ch == "$" and (tag := _DOLLAR.match(text, i)) is not None:
            end = text.find(tag.group(), tag.end())
            i = n if end < 0 else end + len(tag.group())
        elif ch == ";":
            yield text[start:i]
            i += 1
            start = i
        else:
            i += 1
    yield text[start:]


def _has_code(statement: str) -> bool:
    lines = [line.strip() for line in statement.splitlines()]
    return any(line and not line.startswith("--") for line in lines)


def set_login_password(conn: psycopg.Connection, role: str, password: str) -> None:
    """Give a role created by the migrations its password (deployments pass it from the
    environment; the development cluster trusts local connections and needs none)."""
    conn.execute(
        sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
