"""What `pantau migrate` does after the migrations, and what `pantau maintain` does on a
schedule: settings-driven state that SQL files cannot hold.

- registries: cameras, zones and sensors from the YAML config (removed ones marked inactive);
- role passwords, and the columns the reading roles may see (evidence references are the
  analyst's only with `storage.analyst_evidence_access`); the rest of the access rules are
  migrations (0009);
- TimescaleDB: compression and retention policies from `storage.retention`;
- plain PostgreSQL: partitions created ahead, old ones dropped, rollups refreshed, without
  ever waiting long for a lock that a reader's open transaction holds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

import psycopg
from psycopg import sql

from pantau.ids import utcnow
from pantau.runtime import alive
from pantau.settings import CONSOLE_ROLE, WRITER_ROLE, Location, Settings, StorageSettings
from storage.migrate import Flavour, set_login_password

log = logging.getLogger(__name__)

T = TypeVar("T")

GRAFANA_ROLE = "pantau_grafana"
ANALYST_ROLE = "pantau_analyst"
READ_ROLES = (GRAFANA_ROLE, ANALYST_ROLE)
EVIDENCE_COLUMN = "evidence"
# Columns no reading role sees. Evidence references lead to stills and clips of people.
# Refused input is kept as it came, so it holds whatever a source sent: a refused dumping
# event's or alert's evidence references, a sensor's raw payload, up to 256 KiB of it.
WITHHELD_COLUMNS: dict[str, tuple[str, ...]] = {
    "dumping_events": (EVIDENCE_COLUMN,),
    "dead_letters": ("original",),
    # Photos uploaded with actions are evidence too.
    "alarm_history": ("photo",),
    "alarm_actions": ("photo",),
}
# Tables no reading role sees at all: the outbox holds delivery targets (webhook URLs carry
# tokens) and each alert as sent, evidence references included.
PRIVATE_TABLES = (
    "notification_outbox",
    # The console's users (password hashes), sessions, tokens and audit log.
    "console_users",
    "console_sessions",
    "console_tokens",
    "console_audit",
    # Which Telegram account is whom, link codes, the bot's bookkeeping.
    "telegram_links",
    "telegram_link_codes",
    "telegram_messages",
    "telegram_state",
    "telegram_pending",
)
# Rollup refresh window on plain PostgreSQL: late readings up to this old still count.
_ROLLUP_LOOKBACK = timedelta(days=3)


def current_flavour(conn: psycopg.Connection) -> Flavour:
    row = conn.execute(
        "SELECT flavour FROM schema_migrations WHERE flavour IS NOT NULL LIMIT 1"
    ).fetchone()
    if row is None:
        raise RuntimeError("the schema is not migrated yet; run `pantau migrate`")
    flavour: Flavour = row[0]
    return flavour


# --------------------------------------------------------------------------- after migrate


def _place(loc: Location | None) -> tuple[float | None, float | None, str | None, str | None]:
    if loc is None:
        return (None, None, None, None)
    return (loc.lat, loc.lon, loc.desa, loc.kecamatan)


def sync_registry(conn: psycopg.Connection, settings: Settings) -> dict[str, int]:
    """Upsert the configured cameras, zones and sensors; mark the others inactive (except
    the synthetic `seed-` sources of `pantau db seed`, which that command manages)."""
    with conn.transaction():
        for camera in settings.cameras:
            conn.execute(
                """
                INSERT INTO cameras (camera_id, name, lat, lon, desa, kecamatan, enabled, active,
                                     updated_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, true, now())
                ON CONFLICT (camera_id) DO UPDATE SET
                    name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
                    desa = EXCLUDED.desa, kecamatan = EXCLUDED.kecamatan,
                    enabled = EXCLUDED.enabled, active = true, updated_at = now()
                """,
                (camera.id, camera.name, *_place(camera.location), camera.enabled),
            )
            for zone in camera.zones:
                conn.execute(
                    """
                    INSERT INTO zones (camera_id, zone_id, name, kind, polygon, dwell_s, active,
                                       updated_at)
                    VALUES (%s, %s, %s, %s, %s, %s, true, now())
                    ON CONFLICT (camera_id, zone_id) DO UPDATE SET
                        name = EXCLUDED.name, kind = EXCLUDED.kind, polygon = EXCLUDED.polygon,
                        dwell_s = EXCLUDED.dwell_s, active = true, updated_at = now()
                    """,
                    (
                        camera.id,
                        zone.id,
                        zone.name,
                        zone.kind,
                        json.dumps([list(p) for p in zone.polygon]),
                        zone.dwell_s,
                    ),
                )
        for sensor in settings.sensors:
            conn.execute(
                """
                INSERT INTO sensors (sensor_id, type, name, lat, lon, desa, kecamatan, active,
                                     updated_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, true, now())
                ON CONFLICT (sensor_id) DO UPDATE SET
                    type = EXCLUDED.type, name = EXCLUDED.name, lat = EXCLUDED.lat,
                    lon = EXCLUDED.lon, desa = EXCLUDED.desa, kecamatan = EXCLUDED.kecamatan,
                    active = true, updated_at = now()
                """,
                (sensor.id, sensor.type, sensor.name, *_place(sensor.location)),
            )
        cameras = [c.id for c in settings.cameras]
        zones = [f"{c.id}/{z.id}" for c in settings.cameras for z in c.zones]
        sensors = [s.id for s in settings.sensors]
        conn.execute(
            "UPDATE cameras SET active = false, updated_at = now() "
            "WHERE active AND NOT camera_id = ANY(%s) AND camera_id NOT LIKE 'seed-%%'",
            (cameras,),
        )
        conn.execute(
            "UPDATE zones SET active = false, updated_at = now() "
            "WHERE active AND NOT camera_id || '/' || zone_id = ANY(%s) "
            "AND camera_id NOT LIKE 'seed-%%'",
            (zones,),
        )
        conn.execute(
            "UPDATE sensors SET active = false, updated_at = now() "
            "WHERE active AND NOT sensor_id = ANY(%s) AND sensor_id NOT LIKE 'seed-%%'",
            (sensors,),
        )
    return {"cameras": len(cameras), "zones": len(zones), "sensors": len(sensors)}


class AccessError(RuntimeError):
    """A reading role can read what it must not, or write: the access rules do not hold."""


def apply_access(conn: psycopg.Connection, settings: Settings) -> None:
    """Role passwords from the settings, and the columns of dumping_events and dead_letters
    the reading roles may see (whether analysts see evidence references is a setting); then
    checks that no reading role can see more, however it got the privilege."""
    pg = settings.postgres
    for role, secret in (
        (WRITER_ROLE, pg.writer_password),
        (GRAFANA_ROLE, pg.grafana_password),
        (ANALYST_ROLE, pg.analyst_password),
        (CONSOLE_ROLE, pg.console_password),
    ):
        if secret is not None and secret.get_secret_value():
            set_login_password(conn, role, secret.get_secret_value())
    readers = sql.SQL(", ").join(sql.Identifier(r) for r in READ_ROLES)
    with conn.transaction():
        for table, withheld in WITHHELD_COLUMNS.items():
            # Revoking the table's SELECT revokes its column grants too: what is granted
            # below is all a reading role keeps, whatever was granted before. Its partitions
            # (chunks) are read through it, never directly.
            conn.execute(
                sql.SQL("REVOKE SELECT ON {} FROM {}").format(sql.Identifier(table), readers)
            )
            for part in _descendants(conn, table):
                conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.SQL(part), readers))
            for role in READ_ROLES:
                hidden = set(withheld) - _opened_by_setting(role, table, settings)
                columns = [c for c in _columns(conn, table) if c not in hidden]
                conn.execute(
                    sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                        sql.Identifier(table),
                        sql.Identifier(role),
                    )
                )
        for table in PRIVATE_TABLES:
            conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(table), readers))
    problems = access_problems(conn, settings)
    if problems:
        raise AccessError(
            "the reading roles can see or do more than Pantau grants them (a grant made by "
            "hand, or membership in another role?): " + "; ".join(problems)
        )


def _opened_by_setting(role: str, table: str, settings: Settings) -> set[str]:
    """The withheld columns of `table` that the settings let `role` read nonetheless."""
    if (
        role == ANALYST_ROLE
        and table == "dumping_events"
        and settings.storage.analyst_evidence_access
    ):
        return {EVIDENCE_COLUMN}
    return set()


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,),
        )
    ]


def _descendants(conn: psycopg.Connection, table: str) -> list[str]:
    """The partitions (PostgreSQL) or chunks (TimescaleDB) of a table, at every level, as
    qualified names."""
    return [
        row[0]
        for row in conn.execute(
            """
            WITH RECURSIVE tree(oid) AS (
                SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass
                UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid
            )
            SELECT oid::regclass::text FROM tree ORDER BY 1
            """,
            (table,),
        )
    ]


def access_problems(conn: psycopg.Connection, settings: Settings) -> list[str]:
    """What the reading roles can do beyond their grants, as sentences (none: all is well).

    Asked of PostgreSQL's privilege functions, which count privileges inherited through role
    membership; withheld columns are checked on every partition (PostgreSQL) or chunk
    (TimescaleDB) too, which a role could otherwise read directly."""
    problems: list[str] = []
    for table, withheld in WITHHELD_COLUMNS.items():
        relations = [table, *_descendants(conn, table)]
        for role in READ_ROLES:
            shown = _opened_by_setting(role, table, settings)
            for column in withheld:
                readable = conn.execute(
                    "SELECT r FROM unnest(%s::text[]) AS r "
                    "WHERE has_column_privilege(%s, r::regclass, %s, 'SELECT')",
                    (relations, role, column),
                ).fetchall()
                problems.extend(
                    f"{role} can read {row[0]}.{column}"
                    for row in readable
                    if not (row[0] == table and column in shown)
                )
    for role in READ_ROLES:
        for table in PRIVATE_TABLES:
            row = conn.execute(
                "SELECT has_any_column_privilege(%s, %s::regclass, 'SELECT, INSERT, UPDATE')",
                (role, table),
            ).fetchone()
            if row and row[0]:
                problems.append(f"{role} can read or write {table}")
        writable = conn.execute(
            """
            SELECT c.oid::regclass::text FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
              AND (has_table_privilege(%s, c.oid, 'DELETE, TRUNCATE, TRIGGER')
                   OR has_any_column_privilege(%s, c.oid, 'INSERT, UPDATE, REFERENCES'))
            ORDER BY 1
            """,
            (role, role),
        ).fetchall()
        problems.extend(f"{role} can write {row[0]}" for row in writable)
    return problems


def _days(n: int) -> timedelta:
    return timedelta(days=n)


def retention_by_class(storage: StorageSettings) -> dict[str, timedelta]:
    r = storage.retention
    return {
        "raw": _days(r.raw_days),
        "rollup": _days(r.rollup_days),
        "incident": _days(r.incident_days),
    }


def apply_timescale_policies(conn: psycopg.Connection, storage: StorageSettings) -> list[str]:
    """Compression and retention policies matching the settings (replaced, so re-runs and
    changed settings converge)."""
    keep = retention_by_class(storage)
    done: list[str] = []
    rows = conn.execute(
        "SELECT table_name, retention_class, segment_by FROM pantau_time_series ORDER BY 1"
    ).fetchall()
    caggs = {
        row[0]
        for row in conn.execute(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        )
    }
    for table, retention_class, segment_by in rows:
        relation = sql.Literal(table)
        if table not in caggs and retention_class == "raw" and segment_by:
            conn.execute(
                sql.SQL(
                    "ALTER TABLE {} SET (timescaledb.compress, "
                    "timescaledb.compress_segmentby = {}, timescaledb.compress_orderby = {})"
                ).format(sql.Identifier(table), sql.Literal(segment_by), sql.Literal("time DESC"))
            )
            conn.execute(
                sql.SQL("SELECT remove_compression_policy({}, if_exists => true)").format(relation)
            )
            conn.execute(
                sql.SQL("SELECT add_compression_policy({}, {}::interval)").format(
                    relation, sql.Literal(_days(storage.compress_after_days))
                )
            )
            done.append(f"compress {table} after {storage.compress_after_days} days")
        conn.execute(
            sql.SQL("SELECT remove_retention_policy({}, if_exists => true)").format(relation)
        )
        conn.execute(
            sql.SQL("SELECT add_retention_policy({}, {}::interval)").format(
                relation, sql.Literal(keep[retention_class])
            )
        )
        done.append(f"keep {table} {keep[retention_class].days} days")
    return done


# --------------------------------------------------------------------------- maintain


@dataclass(frozen=True)
class LockPatience:
    """How long maintenance DDL waits for a lock, how often it tries, and the pause between.

    Dropping a partition, attaching one next to a default partition that is being read, and
    refreshing incidents_daily need the table to themselves, which any open transaction that
    read it withholds: an analyst's forgotten one, for as long as it stays open. While the DDL
    waits, every new reader of the table queues behind it, the wall included. So it waits a
    few seconds, tries a few times a while apart, and then leaves the table for the next run.
    """

    lock_timeout_s: float = 3.0
    tries: int = 3
    pause_s: float = 5.0


@dataclass
class MaintenanceReport:
    created: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    rollup_rows: int = 0
    notes: list[str] = field(default_factory=list)


def maintain(
    conn: psycopg.Connection,
    storage: StorageSettings,
    *,
    now: datetime | None = None,
    rollup_since: datetime | None = None,
    patience: LockPatience = LockPatience(),
) -> MaintenanceReport:
    """Keep a plain-PostgreSQL database in shape; on TimescaleDB its own jobs do this.

    Each table is its own step: one that cannot get its lock is left for the next run, with
    a note saying so, and the others go on."""
    report = MaintenanceReport()
    if current_flavour(conn) == "timescale":
        report.notes.append("TimescaleDB: chunks, rollups and retention run as its own jobs")
        return report
    now = now or utcnow()
    keep = retention_by_class(storage)
    tables = conn.execute(
        "SELECT table_name, time_column, chunk, retention_class FROM pantau_time_series ORDER BY 1"
    ).fetchall()
    ahead = timedelta(days=storage.partitions_ahead_days)
    for table, time_column, chunk, retention_class in tables:
        cutoff = now - keep[retention_class]
        create = partial(
            _create_partitions, conn, table, time_column, chunk, now=now, cutoff=cutoff, ahead=ahead
        )
        created = _patiently(
            conn, patience, report, f"create the partitions of {table}", table, create
        )
        report.created.extend(created or [])
        drop = partial(_drop_partitions, conn, table, cutoff)
        dropped = _patiently(
            conn, patience, report, f"drop the old partitions of {table}", table, drop
        )
        if dropped:
            report.dropped[table] = dropped
    hourly = partial(_refresh_hourly, conn, now=now, since=rollup_since)
    rows = _patiently(
        conn, patience, report, "refresh sensor_readings_hourly", "sensor_readings_hourly", hourly
    )
    report.rollup_rows = rows or 0
    daily = partial(conn.execute, "REFRESH MATERIALIZED VIEW incidents_daily")
    _patiently(conn, patience, report, "refresh incidents_daily", "incidents_daily", daily)
    return report


def _create_partitions(
    conn: psycopg.Connection,
    table: str,
    time_column: str,
    chunk: timedelta,
    *,
    now: datetime,
    cutoff: datetime,
    ahead: timedelta,
) -> list[str]:
    """Partitions for every range the default partition had to take, then ahead."""
    stray = conn.execute(
        sql.SQL("SELECT DISTINCT {} FROM {}").format(
            sql.SQL("(pantau_partition_bounds({}, %s)).lower_bound").format(
                sql.Identifier(time_column)
            ),
            sql.Identifier(f"{table}_default"),
        ),
        (chunk,),
    ).fetchall()
    moments = [row[0] for row in stray if row[0] >= cutoff]
    moment = now - chunk
    while moment <= now + ahead:
        moments.append(moment)
        moment += chunk
    created: list[str] = []
    for moment in moments:
        row = conn.execute("SELECT pantau_ensure_partition(%s, %s)", (table, moment)).fetchone()
        if row and row[0]:
            created.append(row[0])
    return created


def _drop_partitions(conn: psycopg.Connection, table: str, cutoff: datetime) -> int:
    row = conn.execute("SELECT pantau_drop_partitions(%s, %s)", (table, cutoff)).fetchone()
    return int(row[0]) if row and row[0] else 0


def _patiently(
    conn: psycopg.Connection,
    patience: LockPatience,
    report: MaintenanceReport,
    what: str,
    table: str,
    work: Callable[[], T],
) -> T | None:
    """`work()` in a transaction that waits at most `patience.lock_timeout_s` for each lock,
    tried `patience.tries` times; None, noted in the report, when the lock never came."""
    timeout = f"{round(patience.lock_timeout_s * 1000)}ms"
    holders = ""
    for attempt in range(1, patience.tries + 1):
        alive()
        try:
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
                return work()
        except psycopg.errors.LockNotAvailable:
            holders = _lock_holders(conn, table)
            log.warning(
                "maintain: could not %s (try %d of %d): no lock within %g s; held by %s",
                what,
                attempt,
                patience.tries,
                patience.lock_timeout_s,
                holders,
            )
        if attempt < patience.tries:
            _pause(patience.pause_s)
    report.notes.append(
        f"could not {what}: {table} stayed locked by {holders} through {patience.tries} tries "
        f"of {patience.lock_timeout_s:g} s; left for the next run"
    )
    return None


def _lock_holders(conn: psycopg.Connection, table: str) -> str:
    """Who holds a lock on the table or one of its partitions, e.g. "pantau_analyst (pid 42)"."""
    rows = conn.execute(
        """
        SELECT DISTINCT coalesce(a.usename::text, a.backend_type), l.pid
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.relation IN (SELECT %s::regclass::oid
                             UNION ALL SELECT inhrelid FROM pg_inherits
                             WHERE inhparent = %s::regclass)
        ORDER BY 2
        """,
        (table, table),
    ).fetchall()
    return ", ".join(f"{user} (pid {pid})" for user, pid in rows) or "another session"


def _pause(seconds: float) -> None:
    """Sleep, telling the supervisor every second that maintenance is still going."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        alive()
        time.sleep(min(1.0, left))


def ensure_partitions(conn: psycopg.Connection, since: datetime, until: datetime) -> int:
    """Plain PostgreSQL: partitions covering [since, until] for every time series (before a
    backfill, so the rows go straight to their partitions); returns how many were created."""
    created = 0
    with conn.transaction():
        for table, chunk in conn.execute(
            "SELECT table_name, chunk FROM pantau_time_series ORDER BY 1"
        ).fetchall():
            moment = since
            while moment <= until + chunk:
                row = conn.execute(
                    "SELECT pantau_ensure_partition(%s, %s)", (table, moment)
                ).fetchone()
                created += bool(row and row[0])
                moment += min(chunk, timedelta(days=1))
    return created


def _refresh_hourly(
    conn: psycopg.Connection, *, now: datetime, since: datetime | None = None
) -> int:
    """Recompute the hourly readings of the last days (all of them if the rollup is empty);
    returns the rows written."""
    if since is None:
        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM sensor_readings_hourly)").fetchone()
        since = datetime.min.replace(tzinfo=now.tzinfo) if empty and empty[0] else None
        if since is None:
            since = now - _ROLLUP_LOOKBACK
    cursor = conn.execute(
        """
        INSERT INTO sensor_readings_hourly (bucket, sensor_id, quantity, n, min, max, avg)
        SELECT date_trunc('hour', time), sensor_id, quantity,
               count(*), min(value), max(value), avg(value)
        FROM sensor_readings
        WHERE time >= date_trunc('hour', %s::timestamptz)
        GROUP BY 1, 2, 3
        ON CONFLICT (sensor_id, quantity, bucket) DO UPDATE SET
            n = EXCLUDED.n, min = EXCLUDED.min, max = EXCLUDED.max, avg = EXCLUDED.avg
        """,
        (since,),
    )
    return max(cursor.rowcount, 0)
