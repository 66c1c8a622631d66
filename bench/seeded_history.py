"""A database with N days of generated history for the query benchmarks, kept between runs.

The first run migrates a database of its own and seeds it (`pantau db seed`, several
minutes for 30 days); later runs reuse it while its newest reading is less than two hours
old, so "the last 24 hours" still holds data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pantau.settings import Settings, load_settings  # noqa: E402

CONFIG = REPO / "configs" / "pantau.yaml"


def ensure_seeded(database: str, *, days: int, sensors: int, cameras: int) -> Settings:
    """Settings pointing at `database`, which holds fresh seeded history."""
    env = {**os.environ, "PANTAU__POSTGRES__DBNAME": database}
    settings = load_settings(CONFIG, env)
    owner = settings.postgres.connect_kwargs("owner")
    with psycopg.connect(**{**owner, "dbname": "postgres"}, autocommit=True) as admin:  # type: ignore[arg-type]
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{database}"')
    pantau = [sys.executable, "-m", "pantau.cli", "--config", str(CONFIG)]
    subprocess.run([*pantau, "migrate"], env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    with psycopg.connect(**owner, autocommit=True) as conn:  # type: ignore[arg-type]
        row = conn.execute(
            "SELECT count(*), max(time) > now() - interval '2 hours' FROM sensors s "
            "LEFT JOIN LATERAL (SELECT time FROM sensor_readings r WHERE r.sensor_id = s.sensor_id "
            "ORDER BY time DESC LIMIT 1) r ON true WHERE s.sensor_id LIKE 'seed-%'"
        ).fetchone()
    if not row or row[0] != sensors or not row[1]:
        print(f"seeding {days} days, {sensors} sensors, {cameras} cameras…", file=sys.stderr)
        subprocess.run(
            [*pantau, "db", "seed", "--replace", "--days", str(days),
             "--sensors", str(sensors), "--cameras", str(cameras)],
            env=env, cwd=REPO, check=True,
        )  # fmt: skip
    with psycopg.connect(**owner) as conn:  # type: ignore[arg-type]
        size = conn.execute("SELECT count(*) FROM sensor_readings").fetchone()
    print(f"sensor_readings: {size[0] if size else 0:,} rows", file=sys.stderr)
    return settings
