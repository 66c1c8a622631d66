"""Subcommands of the storage stage: `migrate`, `sink`, `db stats`."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import datetime

from pantau.commands import Context, SubParsers, supervised
from pantau.runtime import alive, stop_after, stop_on_signals
from pantau.settings import Settings


def register(sub: SubParsers) -> None:
    migrate = sub.add_parser("migrate", help="create or update the database schema")
    migrate.set_defaults(handler=_migrate)

    maintain = sub.add_parser(
        "maintain", help="partitions, retention and rollups on plain PostgreSQL"
    )
    maintain.add_argument(
        "--every", type=float, metavar="SECONDS", help="repeat until stopped (e.g. 3600)"
    )
    maintain.add_argument(
        "--rollups-since", type=datetime.fromisoformat, help="recompute rollups from (ISO)"
    )
    supervised(maintain, "maintain")
    maintain.set_defaults(handler=_maintain)

    sink = sub.add_parser("sink", help="store Kafka topics in PostgreSQL")
    sink.add_argument("--duration", type=float, help="stop after this many seconds")
    sink.add_argument(
        "--idle-exit", type=float, metavar="SECONDS", help="stop once nothing arrived for this long"
    )
    sink.add_argument(
        "--workers",
        type=int,
        help="sink processes in the consumer group, started by the supervisor "
        "(default: sink.workers)",
    )
    supervised(sink, "sink", _sink_workers)
    sink.set_defaults(handler=_sink)

    db = sub.add_parser("db", help="database tools")
    what = db.add_subparsers(dest="db_command", required=True, metavar="TOOL")
    stats = what.add_parser("stats", help="row counts per table and what they hold")
    stats.add_argument("--since", type=datetime.fromisoformat, help="only rows stored since (ISO)")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(handler=_stats)
    seed = what.add_parser("seed", help="generate synthetic history (benchmarks, dashboards)")
    seed.add_argument("--days", type=int, default=30)
    seed.add_argument("--sensors", type=int, default=500)
    seed.add_argument("--cameras", type=int, default=50)
    seed.add_argument("--interval-s", type=int, default=60, help="seconds between readings")
    seed.add_argument("--replace", action="store_true", help="remove an earlier seed first")
    seed.set_defaults(handler=_seed)


def _connect(ctx: Context, role: str = "owner"):  # type: ignore[no-untyped-def]
    import psycopg

    kwargs = ctx.settings.postgres.connect_kwargs("owner" if role == "owner" else "writer")
    try:
        return psycopg.connect(**kwargs, autocommit=True)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pg = ctx.settings.postgres
        raise SystemExit(
            f"cannot connect to PostgreSQL at {pg.host}:{pg.port}/{pg.dbname}: {first}"
        ) from exc


def _migrate(args: argparse.Namespace, ctx: Context) -> int:
    from storage.admin import (
        AccessError,
        apply_access,
        apply_timescale_policies,
        current_flavour,
        maintain,
        sync_registry,
    )
    from storage.migrate import MigrationError, apply

    settings = ctx.settings
    with _connect(ctx) as conn:
        try:
            done = apply(conn, timescale=settings.storage.timescale)
        except MigrationError as exc:
            print(f"pantau migrate: {exc}", file=sys.stderr)
            return 1
        flavour = current_flavour(conn)
        registry = sync_registry(conn, settings)
        try:
            apply_access(conn, settings)
        except AccessError as exc:
            print(f"pantau migrate: {exc}", file=sys.stderr)
            return 1
        if flavour == "timescale":
            policies = apply_timescale_policies(conn, settings.storage)
            extra = f"{len(policies)} TimescaleDB policies set"
        else:
            report = maintain(conn, settings.storage)
            extra = f"{len(report.created)} partitions created"
    if done:
        print(f"applied ({flavour}): " + ", ".join(m.filename for m in done))
    else:
        print(f"schema is up to date ({flavour})")
    print(
        f"registry: {registry['cameras']} cameras, {registry['zones']} zones, "
        f"{registry['sensors']} sensors; {extra}"
    )
    return 0


def _maintain(args: argparse.Namespace, ctx: Context) -> int:
    from storage.admin import maintain

    stop = stop_on_signals()
    while True:
        with _connect(ctx) as conn:
            report = maintain(conn, ctx.settings.storage, rollup_since=args.rollups_since)
        dropped = sum(report.dropped.values())
        print(
            f"maintain: {len(report.created)} partitions created, {dropped} dropped, "
            f"{report.rollup_rows} hourly rollup rows refreshed"
            + "".join(f"; {note}" for note in report.notes),
            flush=True,
        )
        if args.every is None or _wait_alive(stop, args.every):
            return 0


def _wait_alive(stop: threading.Event, seconds: float) -> bool:
    """`stop.wait(seconds)`, telling the supervisor every second that all is well."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        alive()
        if stop.wait(min(1.0, left)):
            return True
    return stop.is_set()


def _sink_workers(args: argparse.Namespace, settings: Settings) -> int:
    # Python decodes on one core; more processes in the group use the others.
    count: int = args.workers or settings.sink.workers
    return count


def _sink(args: argparse.Namespace, ctx: Context) -> int:
    """One sink, in this process: a worker of `pantau sink`'s supervisor (which starts
    `--workers` of them), or the only one with --no-supervise."""
    from storage.sink import SinkFailed, build

    stop = stop_on_signals()
    stop_after(stop, args.duration)
    sink = build(ctx.settings)
    try:
        stats = sink.run(stop, idle_exit_s=args.idle_exit)
    except SinkFailed as exc:
        print(f"pantau sink: stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        sink.close()
    inserted = ", ".join(f"{k} {v}" for k, v in sorted(stats.inserted.items())) or "nothing"
    duplicates = sum(stats.duplicates.values())
    print(
        f"sink: {stats.records} records, inserted {inserted}; "
        f"{duplicates} duplicate rows skipped; {stats.dead_letters} dead letters"
    )
    return 0


def _stats(args: argparse.Namespace, ctx: Context) -> int:
    from storage.queries import dead_letter_reasons, table_stats

    with _connect(ctx) as conn:
        stats = table_stats(conn, args.since)
        stats["dead_letter_reasons"] = [
            {"stage": s, "error": e, "count": n}
            for s, e, n in dead_letter_reasons(conn, args.since)
        ]
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
        return 0
    for table, total in stats["rows_total"].items():
        print(f"{table:<16} {total:>10} rows ({stats['rows_since'][table]} since)")
    for label, count in stats["detections_by_label"].items():
        print(f"  detections {label:<14} {count:>8}")
    return 0


def _seed(args: argparse.Namespace, ctx: Context) -> int:
    from tqdm import tqdm

    from pantau.ids import utcnow
    from storage.admin import current_flavour, ensure_partitions, maintain
    from storage.seed import SeedPlan, seed

    plan = SeedPlan(
        end=utcnow(),
        days=args.days,
        sensors=args.sensors,
        cameras=args.cameras,
        interval_s=args.interval_s,
    )
    bar = tqdm(total=args.days, desc="seeding", unit="day", file=sys.stderr)

    def progress(day: str, rows: int) -> None:
        bar.set_postfix(day=day, rows=rows, refresh=False)
        bar.update(1)

    with _connect(ctx) as conn:
        # Partitions first, so the history does not all land in the default partitions.
        if current_flavour(conn) == "postgres":
            ensure_partitions(conn, plan.start, plan.end)
        written = seed(conn, plan, replace=args.replace, progress=progress)
        bar.close()
        if current_flavour(conn) == "postgres":
            maintain(conn, ctx.settings.storage, rollup_since=plan.start)
        else:
            conn.execute("CALL refresh_continuous_aggregate('sensor_readings_hourly', NULL, NULL)")
            conn.execute("CALL refresh_continuous_aggregate('incidents_daily', NULL, NULL)")
    for table, rows in written.items():
        print(f"{table:<18} {rows:>10} rows")
    return 0
