"""Query latency on 30 days of history: the analysts' example queries and wall-style panels.

Run with the services up: `python bench/query_latency.py [--days 30 --sensors 500 --cameras 50]`.
The first run seeds a database of its own (`pantau db seed`, several minutes) and keeps it;
later runs reuse it. Each query runs `--runs` times as the role that would run it
(pantau_analyst for the examples, pantau_grafana for the panels); the p95 of each, and the
worst p95, are printed as figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from seeded_history import ensure_seeded  # noqa: E402

from storage.dictionary import example_queries  # noqa: E402

# What the wall asks every few seconds, over the last 24 hours.
PANELS = {
    "pm25_one_sensor_24h": """
        SELECT date_trunc('minute', time) - (extract(minute FROM time)::int % 5) * interval '1 minute' AS t,
               avg(value)
        FROM sensor_readings
        WHERE sensor_id = 'seed-air-0004' AND quantity = 'pm25'
          AND time >= now() - interval '24 hours'
        GROUP BY 1 ORDER BY 1""",
    "pm25_per_desa_24h": """
        SELECT h.bucket AS t, s.desa, avg(h.avg) AS pm25
        FROM sensor_readings_hourly h JOIN sensors s USING (sensor_id)
        WHERE h.quantity = 'pm25' AND h.bucket >= now() - interval '24 hours'
        GROUP BY 1, 2 ORDER BY 1""",
    "water_level_desa_24h": """
        SELECT date_trunc('hour', r.time) + floor(extract(minute FROM r.time) / 10) * interval '10 minutes' AS t,
               r.sensor_id, avg(r.value)
        FROM sensor_readings r JOIN sensors s USING (sensor_id)
        WHERE s.desa = 'Lengkong' AND s.type = 'water_level' AND r.quantity = 'waterLevel'
          AND r.time >= now() - interval '24 hours'
        GROUP BY 1, 2 ORDER BY 1""",
    "latest_value_per_sensor": """
        SELECT DISTINCT ON (r.sensor_id, r.quantity) r.sensor_id, r.quantity, r.value, r.time,
               s.lat, s.lon, s.desa
        FROM sensor_readings r JOIN sensors s USING (sensor_id)
        WHERE r.time >= now() - interval '15 minutes'
        ORDER BY r.sensor_id, r.quantity, r.time DESC""",
    "cameras_online": """
        SELECT count(*) FILTER (WHERE h.status = 'online' AND h.time >= now() - interval '2 minutes'),
               count(*)
        FROM cameras c
        LEFT JOIN LATERAL (SELECT status, time FROM camera_health
                           WHERE camera_id = c.camera_id ORDER BY time DESC LIMIT 1) h ON true
        WHERE c.active""",
    "open_alerts_by_severity": """
        SELECT severity, count(*) FROM alerts
        WHERE state IN ('OPEN', 'ACK', 'DISPATCHED') AND opened_at >= now() - interval '30 days'
        GROUP BY 1""",
    "incidents_by_hour_24h": """
        SELECT date_trunc('hour', appeared_at) AS t, count(*) FROM dumping_events
        WHERE appeared_at >= now() - interval '24 hours' GROUP BY 1 ORDER BY 1""",
    "detections_by_label_24h": """
        SELECT date_trunc('hour', time) AS t, label, count(*) FROM detections
        WHERE time >= now() - interval '24 hours' GROUP BY 1, 2 ORDER BY 1""",
    "sink_rows_per_s_24h": """
        SELECT date_trunc('minute', time) - (extract(minute FROM time)::int % 5) * interval '1 minute' AS t,
               labels ->> 'table' AS tbl, avg(value)
        FROM pipeline_metrics
        WHERE component = 'sink' AND metric = 'rows_per_s' AND time >= now() - interval '24 hours'
        GROUP BY 1, 2 ORDER BY 1""",
    "reading_to_alert_p95_24h": """
        SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM ts_rule - ts_capture))
        FROM alerts WHERE opened_at >= now() - interval '24 hours' AND ts_rule IS NOT NULL""",
}


def timed(conn: psycopg.Connection, query: str, runs: int) -> list[float]:
    conn.execute(query.encode()).fetchall()  # warm the cache and the plan
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(query.encode()).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sensors", type=int, default=500)
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--database", default="pantau_query_bench")
    args = parser.parse_args()

    settings = ensure_seeded(
        args.database, days=args.days, sensors=args.sensors, cameras=args.cameras
    )
    owner = settings.postgres.connect_kwargs("owner")

    results: dict[str, list[float]] = {}
    roles = [
        ("pantau_analyst", example_queries(REPO / "docs" / "data-dictionary.md")),
        ("pantau_grafana", PANELS),
    ]
    for role, queries in roles:
        kwargs = {**owner, "user": role}
        with psycopg.connect(**kwargs, autocommit=True) as conn:  # type: ignore[arg-type]
            for name, query in queries.items():
                results[name] = timed(conn, query, args.runs)

    worst = 0.0
    for name, times in results.items():
        value = p95(times)
        worst = max(worst, value)
        print(f"figure: query_{name}_p95_ms = {value:.1f} ms")
    print(f"figure: query_p95_ms = {worst:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
