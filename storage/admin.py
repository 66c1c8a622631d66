"""What `pantau migrate` does after the migrations, and what `pantau maintain` does on a
schedule: settings-driven state that SQL files cannot hold.

- registries: cameras, zones and sensors from the YAML config (removed ones marked inactive);
- role passwords and the analyst's access to evidence references;
- TimescaleDB: compression and retention policies from `storage.retention`;
- plain PostgreSQL: partitions created ahead, old ones dropped, rollups refreshed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from pantau.ids import utcnow
from pantau.settings import Location, Settings, StorageSettings
from storage.migrate import Flavour, set_login_password

log = logging.getLogger(__name__)

EVIDENCE_COLUMN = "evidence"
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


def apply_access(conn: psycopg.Connection, settings: Settings) -> None:
    """Role passwords from the settings, and whether analysts see evidence references."""
    pg = settings.postgres
    for role, secret in (
        ("pantau_writer", pg.writer_password),
        ("pantau_grafana", pg.grafana_password),
        ("pantau_analyst", pg.analyst_password),
    ):
        if secret is not None and secret.get_secret_value():
            set_login_password(conn, role, secret.get_secret_value())
    with conn.transaction():
        conn.execute("REVOKE SELECT ON dumping_events FROM pantau_analyst")
        if settings.storage.analyst_evidence_access:
            conn.execute("GRANT SELECT ON dumping_events TO pantau_analyst")
            return
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = 'dumping_events' "
                "ORDER BY ordinal_position"
            )
            if row[0] != EVIDENCE_COLUMN
        ]
        conn.execute(
            sql.SQL("GRANT SELECT ({}) ON dumping_events TO pantau_analyst").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in columns)
            )
        )


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
) -> MaintenanceReport:
    """Keep a plain-PostgreSQL database in shape; on TimescaleDB its own jobs do this."""
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
        with conn.transaction():
            # Partitions for every range the default partition had to take, then ahead.
            stray = conn.execute(
                sql.SQL("SELECT DISTINCT {} FROM {}").format(
                    sql.SQL("(pantau_partition_bounds({}, %s)).lower_bound").format(
                        sql.Identifier(time_column)
                    ),
                    sql.Identifier(f"{table}_default"),
                ),
                (chunk,),
            ).fetchall()
            cutoff = now - keep[retention_class]
            moments = [row[0] for row in stray if row[0] >= cutoff]
            step, moment = chunk, now - chunk
            while moment <= now + ahead:
                moments.append(moment)
                moment += step
            for moment in moments:
                created = conn.execute(
                    "SELECT pantau_ensure_partition(%s, %s)", (table, moment)
                ).fetchone()
                if created and created[0]:
                    report.created.append(created[0])
            dropped = conn.execute(
                "SELECT pantau_drop_partitions(%s, %s)", (table, cutoff)
            ).fetchone()
            if dropped and dropped[0]:
                report.dropped[table] = int(dropped[0])
    report.rollup_rows = refresh_rollups(conn, now=now, since=rollup_since)
    return report


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


def refresh_rollups(
    conn: psycopg.Connection, *, now: datetime, since: datetime | None = None
) -> int:
    """Recompute the hourly readings of the last days (all of them if the rollup is empty)
    and the incidents per day; returns the hourly rows written."""
    with conn.transaction():
        if since is None:
            empty = conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM sensor_readings_hourly)"
            ).fetchone()
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
        rows = max(cursor.rowcount, 0)
        conn.execute("REFRESH MATERIALIZED VIEW incidents_daily")
    return rows
