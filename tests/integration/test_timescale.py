"""The TimescaleDB flavour of the schema, checked on TimescaleDB's WASM build (PGlite with
TimescaleDB 2.23, served over TCP by tests/timescale/server.mjs): the migrations apply and
re-apply, the time series are hypertables, the rollups continuous aggregates, the
compression and retention policies follow the settings, and the access rules hold on the
chunks too (PGlite has one session: the roles are taken on with SET ROLE)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pantau.ids import utcnow
from pantau.settings import Settings, StorageSettings
from storage.admin import (
    access_problems,
    apply_access,
    apply_timescale_policies,
    current_flavour,
    maintain,
    sync_registry,
)
from storage.migrate import apply
from tests.conftest import REPO
from tests.integration.test_migrations import TIME_SERIES

SERVER = REPO / "tests" / "timescale"
# Everything partitioned on plain PostgreSQL is a hypertable here, except the hourly rollup,
# which is a continuous aggregate.
HYPERTABLES = TIME_SERIES - {"sensor_readings_hourly"}


@pytest.fixture(scope="module")
def timescale() -> Iterator[dict[str, Any]]:
    if not (SERVER / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        pytest.fail(
            "the TimescaleDB WASM server is not installed: run `npm ci` in tests/timescale "
            "(scripts/test does)",
            pytrace=False,
        )
    process = subprocess.Popen(
        ["node", "server.mjs", "0"],
        cwd=SERVER,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("ready "):
        process.kill()
        pytest.fail(f"TimescaleDB WASM server did not start: {line!r}", pytrace=False)
    yield {"host": "127.0.0.1", "port": int(line.split()[1]), "user": "postgres",
           "dbname": "postgres", "sslmode": "disable"}  # fmt: skip
    process.terminate()
    process.wait(timeout=30)


def test_timescale_schema_hypertables_aggregates_and_policies(
    timescale: dict[str, Any], base_settings: Settings
) -> None:
    storage = StorageSettings.model_validate(
        {"retention": {"raw_days": 60, "rollup_days": 400, "incident_days": 500}}
    )
    settings = base_settings.model_copy(update={"storage": storage})
    with psycopg.connect(**timescale, autocommit=True) as conn:
        applied = apply(conn, timescale="auto")
        assert [m.filename for m in applied][1] == "0002_time_series.timescale.sql"
        assert current_flavour(conn) == "timescale"
        assert apply(conn, timescale="auto") == []
        sync_registry(conn, settings)
        apply_access(conn, settings)
        # Twice: changed settings replace the policies instead of piling them up.
        apply_timescale_policies(conn, StorageSettings())
        apply_timescale_policies(conn, storage)

        hypertables = {
            row[0]
            for row in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
            )
        }
        assert hypertables >= HYPERTABLES
        aggregates = {
            row[0]
            for row in conn.execute(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates"
            )
        }
        assert aggregates == {"sensor_readings_hourly", "incidents_daily"}

        jobs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for proc, table, config in conn.execute(
            "SELECT j.proc_name, coalesce(c.view_name, j.hypertable_name), j.config "
            "FROM timescaledb_information.jobs j "
            "LEFT JOIN timescaledb_information.continuous_aggregates c "
            "ON c.materialization_hypertable_name = j.hypertable_name "
            "WHERE j.proc_name LIKE 'policy_%'"
        ):
            jobs.setdefault((proc, table), []).append(config)
        retention = {t: c for (p, t), c in jobs.items() if p == "policy_retention"}
        assert all(len(c) == 1 for c in retention.values())
        assert retention["sensor_readings"][0]["drop_after"] == "60 days"
        assert retention["alerts"][0]["drop_after"] == "500 days"
        assert retention["sensor_readings_hourly"][0]["drop_after"] == "400 days"
        compressed = {t for (p, t) in jobs if p == "policy_compression"}
        assert compressed == {
            "sensor_readings", "sensor_readings_1m", "detections", "camera_health",
            "pipeline_metrics",
        }  # fmt: skip
        refreshed = {t for (p, t) in jobs if p == "policy_refresh_continuous_aggregate"}
        assert refreshed == {"sensor_readings_hourly", "incidents_daily"}

        # Readings go in, and the hourly aggregate answers for them (real time).
        now = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sensor_readings (time, sensor_id, quantity, value, seq, ingested_at) "
                "VALUES (%s, 'aq-alun-alun', 'pm25', %s, %s, %s) ON CONFLICT DO NOTHING",
                [(now + timedelta(minutes=m), float(m), m, now) for m in range(90)],
            )
        conn.execute("CALL refresh_continuous_aggregate('sensor_readings_hourly', NULL, NULL)")
        hourly = conn.execute(
            "SELECT n, min, max FROM sensor_readings_hourly WHERE sensor_id = 'aq-alun-alun' "
            "ORDER BY bucket"
        ).fetchall()
        assert hourly == [(60, 0.0, 59.0), (30, 60.0, 89.0)]
        # On TimescaleDB, maintain leaves the work to its jobs.
        assert maintain(conn, storage).notes
        registered = conn.execute("SELECT count(*) FROM sensors").fetchone()
        assert registered == (len(settings.sensors),)

        # A dumping event lands in a chunk; neither reading role reads its evidence
        # references, through the hypertable or straight from the chunk.
        conn.execute(
            "INSERT INTO dumping_events (appeared_at, event_id, camera_id, state, phase, version, "
            "x1, y1, x2, y2, confidence, evidence, updated_at) VALUES (now(), gen_random_uuid(), "
            "'demo-table', 'alerted', 'new', 1, 1, 2, 3, 4, 0.9, "
            '\'[{"kind": "alert", "uri": "file:///evidence/a.jpg"}]\', now())'
        )
        chunk = conn.execute("SELECT show_chunks('dumping_events')::text LIMIT 1").fetchone()
        assert chunk is not None
        apply_access(conn, settings)
        assert access_problems(conn, settings) == []
        for role in ("pantau_grafana", "pantau_analyst"):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            try:
                assert conn.execute("SELECT count(*) FROM dumping_events").fetchone() == (1,)
                for forbidden in (
                    sql.SQL("SELECT evidence FROM dumping_events"),
                    sql.SQL("SELECT evidence FROM {}").format(sql.SQL(chunk[0])),
                    sql.SQL("SELECT original FROM dead_letters"),
                    sql.SQL("SELECT target FROM notification_outbox"),
                ):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(forbidden)
            finally:
                conn.execute("RESET ROLE")


def test_panel_queries_run_on_timescale(timescale: dict[str, Any], base_settings: Settings) -> None:
    """Deployments run TimescaleDB (the provisioned datasource has its TimescaleDB switch on):
    every panel and alert-rule query must run on its hypertables and continuous aggregates
    too, not only on plain PostgreSQL's partitions."""
    from dashboards import alerting
    from dashboards.export import render_dashboards
    from dashboards.queries import (
        expanded,
        panel_queries,
        resolve_variables,
        rule_expanded,
        rule_queries,
    )

    now = utcnow()
    ran = 0
    with psycopg.connect(**timescale, autocommit=True) as conn:
        apply(conn, timescale="auto")
        sync_registry(conn, base_settings)
        conn.execute(
            "INSERT INTO sensor_readings (time, sensor_id, quantity, value, seq, ingested_at) "
            "SELECT now() - make_interval(mins => n), s.sensor_id, q, 40 + n % 7, n, now() "
            "FROM sensors s, generate_series(1, 90) n, "
            "unnest(ARRAY['pm25', 'pm10', 'waterLevel', 'fillingLevel']) q"
        )
        apply_access(conn, base_settings)
        # As Grafana reads: the pantau_grafana role (its grants reach the chunks and the
        # continuous aggregates' materialised data).
        conn.execute("SET ROLE pantau_grafana")
        try:
            for dashboard in render_dashboards(base_settings).values():
                values, quoted = resolve_variables(
                    dashboard,
                    lambda sql: conn.execute(sql.encode()).fetchall(),
                    time_from=now - timedelta(hours=24),
                    time_to=now,
                )
                for query in panel_queries(dashboard):
                    sql = expanded(
                        query,
                        time_from=now - timedelta(hours=24),
                        time_to=now,
                        variables=values,
                        quoted=quoted,
                        timescaledb=True,
                    )
                    try:
                        conn.execute(sql.encode()).fetchall()
                    except psycopg.Error as exc:
                        pytest.fail(f"{query.name} fails on TimescaleDB: {exc}\n{sql}")
                    ran += 1
            for uid, window, sql in rule_queries(alerting.provisioning()):
                rows = conn.execute(
                    rule_expanded(sql, window_s=window, now=now, timescaledb=True).encode()
                ).fetchall()
                assert len(rows) == 1, uid
        finally:
            conn.execute("RESET ROLE")
    assert ran >= 25
