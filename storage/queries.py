"""Read-side queries used by the CLI (`pantau db stats`) and the demo summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from storage.rows import TABLES


def table_stats(conn: psycopg.Connection, since: datetime | None = None) -> dict[str, Any]:
    """Row counts per table, detections per label, readings per quantity, dead letters per
    stage; `since` limits everything but the totals to rows stored from then on."""
    since_clause = sql.SQL("WHERE stored_at >= %(since)s") if since else sql.SQL("")
    params = {"since": since}
    totals: dict[str, int] = {}
    recent: dict[str, int] = {}
    for table in TABLES:
        name = sql.Identifier(table.name)
        row = conn.execute(
            sql.SQL("SELECT count(*), count(*) FILTER ({}) FROM {}").format(
                sql.SQL("WHERE stored_at >= %(since)s") if since else sql.SQL("WHERE true"), name
            ),
            params,
        ).fetchone()
        assert row is not None
        totals[table.name], recent[table.name] = int(row[0]), int(row[1])

    def grouped(query: sql.Composed) -> dict[str, int]:
        return {str(k): int(v) for k, v in conn.execute(query, params).fetchall()}

    return {
        "rows_total": totals,
        "rows_since": recent,
        "detections_by_label": grouped(
            sql.SQL("SELECT label, count(*) FROM detections {} GROUP BY 1 ORDER BY 2 DESC").format(
                since_clause
            )
        ),
        "frames_with_detections": grouped(
            sql.SQL(
                "SELECT camera_id, count(DISTINCT frame_id) FROM detections {} GROUP BY 1"
            ).format(since_clause)
        ),
        "readings_by_quantity": grouped(
            sql.SQL(
                "SELECT quantity, count(*) FROM sensor_readings {} GROUP BY 1 ORDER BY 1"
            ).format(since_clause)
        ),
        "dead_letters_by_stage": grouped(
            sql.SQL("SELECT stage, count(*) FROM dead_letters {} GROUP BY 1 ORDER BY 1").format(
                since_clause
            )
        ),
    }


def dead_letter_reasons(
    conn: psycopg.Connection, since: datetime | None = None, limit: int = 10
) -> list[tuple[str, str, int]]:
    """(stage, reason, count), most frequent first."""
    where = sql.SQL("WHERE stored_at >= %(since)s") if since else sql.SQL("")
    query = sql.SQL(
        "SELECT stage, error, count(*) FROM dead_letters {} "
        "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT %(limit)s"
    ).format(where)
    return [
        (str(a), str(b), int(c))
        for a, b, c in conn.execute(query, {"since": since, "limit": limit})
    ]
