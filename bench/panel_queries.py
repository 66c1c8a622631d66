"""Grafana panel query latency on 30 days of history (500 sensors, 50 cameras).

Run with the services up: `python bench/panel_queries.py [--days 30 --sensors 500 --cameras 50]`.
Every panel query of the four dashboards is expanded the way Grafana expands it for the last
24 hours, with every variable at "All", and run `--runs` times as pantau_grafana, the role
Grafana reads as. Prints the p95 of each panel and, as `panel_query_p95_ms`, the worst one.
The first run seeds its database (several minutes); later runs reuse it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from seeded_history import ensure_seeded  # noqa: E402

from dashboards.export import render_dashboards  # noqa: E402
from dashboards.queries import expanded, panel_queries, resolve_variables  # noqa: E402


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower().replace("→", "to")).strip("_")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sensors", type=int, default=500)
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--hours", type=float, default=24.0, help="time range of the panels")
    parser.add_argument("--database", default="pantau_query_bench")
    args = parser.parse_args()

    settings = ensure_seeded(
        args.database, days=args.days, sensors=args.sensors, cameras=args.cameras
    )
    reader = {**settings.postgres.connect_kwargs("owner"), "user": "pantau_grafana"}
    now = datetime.now(UTC)
    time_from = now - timedelta(hours=args.hours)
    results: dict[str, float] = {}
    with psycopg.connect(**reader, autocommit=True) as conn:  # type: ignore[arg-type]
        jobs = []
        for dashboard in render_dashboards(settings).values():
            values, quoted = resolve_variables(
                dashboard,
                lambda sql: conn.execute(sql.encode()).fetchall(),
                time_from=time_from,
                time_to=now,
            )
            for query in panel_queries(dashboard):
                sql = expanded(
                    query, time_from=time_from, time_to=now, variables=values, quoted=quoted
                )
                name = f"{dashboard['uid'].removeprefix('pantau-')}_{slug(query.panel)}"
                if query.ref_id != "A":
                    name += f"_{query.ref_id.lower()}"
                jobs.append((name, sql))
        for name, sql in tqdm(jobs, desc="panels", unit="panel", file=sys.stderr):
            conn.execute(sql.encode()).fetchall()  # warm the cache and the plan
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                conn.execute(sql.encode()).fetchall()
                times.append((time.perf_counter() - started) * 1000)
            results[name] = statistics.quantiles(times, n=20)[-1]
    for name, value in results.items():
        print(f"figure: panel_{name}_p95_ms = {value:.1f} ms")
    worst = max(results, key=lambda n: results[n])
    print(f"figure: panel_query_p95_ms = {results[worst]:.1f} ms")
    print(f"slowest panel: {worst}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
