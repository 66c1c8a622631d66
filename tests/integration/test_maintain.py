"""`pantau maintain` on plain PostgreSQL: partitions, retention and rollups."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from pantau.ids import utcnow
from pantau.settings import Settings
from tests.conftest import REPO
from tests.integration.conftest import BASE_CONFIG, base_environ
from tests.integration.test_migrations import connect, empty_database, migrate

__all__ = ["empty_database"]


def maintain(dbname: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pantau.cli", "--config", str(BASE_CONFIG), "maintain", *args],
        capture_output=True,
        text=True,
        env={**base_environ(), "PANTAU__POSTGRES__DBNAME": dbname},
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def partitions(conn, table: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {
        row[0]
        for row in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            (table,),
        )
    }


@pytest.mark.usefixtures("services")
def test_partitions_retention_and_rollups(services: Settings, empty_database: str) -> None:
    migrate(empty_database)
    now = utcnow()
    days_ago_20 = now - timedelta(days=20)
    days_ago_200 = now - timedelta(days=200)
    with connect(services, empty_database) as conn:
        rows = [
            (days_ago_20 + timedelta(minutes=m), "aq-alun-alun", "pm25", float(m), m, now)
            for m in range(120)
        ] + [(days_ago_200, "aq-alun-alun", "pm25", 1.0, 0, now)]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sensor_readings (time, sensor_id, quantity, value, seq, ingested_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
        # Both landed in the default partition: no partition covers them yet.
        assert conn.execute("SELECT count(*) FROM sensor_readings_default").fetchone() == (121,)
        old = conn.execute(
            "SELECT pantau_ensure_partition('detections', now() - interval '100 days')"
        ).fetchone()
        assert old is not None and old[0] in partitions(conn, "detections")
        conn.execute(
            "INSERT INTO dumping_events (appeared_at, event_id, camera_id, zone_id, state, phase, "
            "version, x1, y1, x2, y2, confidence, updated_at) VALUES "
            "(%s, %s, 'demo-table', 'z1', 'cleaned', 'end', 3, 1, 2, 3, 4, 0.8, %s)",
            (days_ago_20, uuid.uuid4(), now),
        )

    out = maintain(empty_database)
    assert "partitions created" in out

    with connect(services, empty_database) as conn:
        # The 20-day-old readings moved into their own daily partition(s); the 200-day-old
        # one is past the 90-day retention and is gone.
        assert conn.execute("SELECT count(*) FROM sensor_readings_default").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM sensor_readings").fetchone() == (120,)
        own = conn.execute(
            "SELECT tableoid::regclass::text FROM sensor_readings ORDER BY time LIMIT 1"
        ).fetchone()
        assert own is not None and own[0].startswith("sensor_readings_p")
        # A detections partition older than the retention was dropped.
        assert old[0] not in partitions(conn, "detections")
        # Hourly rollups: 120 minutes → two or three hour buckets, 120 readings in all.
        hourly = conn.execute(
            "SELECT sum(n), min(min), max(max) FROM sensor_readings_hourly "
            "WHERE sensor_id = 'aq-alun-alun'"
        ).fetchone()
        assert hourly == (120, 0.0, 119.0)
        daily = conn.execute(
            "SELECT incidents, cleaned FROM incidents_daily WHERE camera_id = 'demo-table'"
        ).fetchone()
        assert daily == (1, 1)

    # Idempotent: nothing left to create or drop the second time.
    again = maintain(empty_database)
    assert again.startswith("maintain: 0 partitions created, 0 dropped")
