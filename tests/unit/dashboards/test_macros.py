"""Grafana's macros and variables expand to what Grafana's PostgreSQL datasource sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards.macros import (
    MacroError,
    QueryContext,
    expand,
    format_interval,
    panel_interval,
    parse_interval,
)

FROM = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
TO = datetime(2026, 11, 23, 17, 0, 0, 500_000, tzinfo=UTC)


def ctx(**overrides: object) -> QueryContext:
    values: dict[str, object] = {
        "time_from": FROM,
        "time_to": TO,
        "interval": timedelta(minutes=5),
        "variables": {"desa": ["Sooko", "Gedeg"], "camera": "cam-1", "alarm": "", "q": "O'Brien"},
        "quoted": frozenset({"desa"}),
    }
    values.update(overrides)
    return QueryContext(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "WHERE $__timeFilter(time)",
            "WHERE time BETWEEN '2026-11-22T17:00:00Z' AND '2026-11-23T17:00:00.5Z'",
        ),
        (
            "SELECT $__timeFrom(), $__timeTo()",
            "SELECT '2026-11-22T17:00:00Z', '2026-11-23T17:00:00.5Z'",
        ),
        (
            "SELECT $__timeGroupAlias(time, $__interval)",
            'SELECT floor(extract(epoch from time)/300)*300 AS "time"',
        ),
        ("SELECT $__timeGroup(t, '1h')", "SELECT floor(extract(epoch from t)/3600)*3600"),
        ("SELECT $__timeGroup(t, 1d)", "SELECT floor(extract(epoch from t)/86400)*86400"),
        ("SELECT $__time(t)", 'SELECT t AS "time"'),
        ("LIMIT $__interval_ms", "LIMIT 300000"),
        ("WHERE e >= $__unixEpochFrom()", "WHERE e >= 1795366800"),
        ("WHERE desa IN ($desa)", "WHERE desa IN ('Sooko','Gedeg')"),
        ("WHERE desa IN (${desa})", "WHERE desa IN ('Sooko','Gedeg')"),
        ("WHERE desa IN ([[desa]])", "WHERE desa IN ('Sooko','Gedeg')"),
        # A single-value variable that is neither multi nor include-All goes in raw.
        ("WHERE camera_id = '$camera'", "WHERE camera_id = 'cam-1'"),
        ("WHERE id = ${alarm:sqlstring}", "WHERE id = ''"),
        ("WHERE n = ${q:sqlstring}", "WHERE n = 'O''Brien'"),
        ("WHERE d = '${desa:csv}'", "WHERE d = 'Sooko,Gedeg'"),
        ("WHERE d = ${q:singlequote}", "WHERE d = 'O\\'Brien'"),
    ],
)
def test_expansion_matches_grafana(sql: str, expected: str) -> None:
    assert expand(sql, ctx()) == expected


def test_timescaledb_switch_groups_with_time_bucket() -> None:
    sql = "SELECT $__timeGroupAlias(time, $__interval)"
    assert expand(sql, ctx(timescaledb=True)) == "SELECT time_bucket('300s',time) AS \"time\""


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("WHERE $__timeFiltr(time)", "unknown Grafana macro $__timeFiltr"),
        ("WHERE desa IN ($desas)", "unknown template variable $desas"),
        ("SELECT $__timeGroup(time)", "needs 2 argument"),
        ("SELECT $__timeGroup(time, soon)", "interval must look like"),
        ("WHERE x = ${desa:json}", "unknown format"),
        ("WHERE $__timeFilter", "unknown Grafana macro $__timeFilter"),
    ],
)
def test_mistakes_fail_instead_of_reaching_the_wall(sql: str, message: str) -> None:
    with pytest.raises(MacroError, match=message.replace("$", r"\$")):
        expand(sql, ctx())


def test_an_empty_multi_value_variable_is_an_error_not_an_empty_list() -> None:
    with pytest.raises(MacroError, match="has no value"):
        expand("WHERE d IN ($desa)", ctx(variables={"desa": []}))


@pytest.mark.parametrize(
    ("span", "points", "minimum", "expected"),
    [
        (timedelta(hours=24), 1000, None, "1m"),  # 86.4 s → 1m
        (timedelta(hours=24), 1000, "5m", "5m"),
        (timedelta(hours=6), 1000, None, "20s"),  # 21.6 s → 20s
        (timedelta(hours=6), 1000, "1m", "1m"),
        (timedelta(days=30), 1000, None, "30m"),  # 43 min → 30m
        (timedelta(days=30), 1000, "1d", "1d"),
        (timedelta(minutes=5), 1000, None, "200ms"),  # 300 ms → 200ms
    ],
)
def test_panel_interval_like_grafana(
    span: timedelta, points: int, minimum: str | None, expected: str
) -> None:
    assert (
        format_interval(panel_interval(TO - span, TO, max_data_points=points, min_interval=minimum))
        == expected
    )


@pytest.mark.parametrize("text", ["30s", "5m", "1h", "12h", "1d", "1w", "'10m'"])
def test_interval_text_round_trips(text: str) -> None:
    assert format_interval(parse_interval(text)) == text.strip("'")


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        QueryContext(datetime(2026, 1, 1), TO, timedelta(minutes=1))
