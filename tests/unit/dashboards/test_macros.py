"""Grafana's macros and variables expand to what Grafana's PostgreSQL datasource sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards.macros import (
    MacroError,
    QueryContext,
    expand,
    format_interval,
    go_number,
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
    assert expand(sql, ctx(timescaledb=True)) == "SELECT time_bucket('300.000s',time) AS \"time\""


@pytest.mark.parametrize(
    ("interval", "bucket", "plain"),
    [
        # Grafana writes the bucket with milliseconds: '0s' would fail, '2s' bucket wrongly.
        ("20ms", "time_bucket('0.020s',t)", "floor(extract(epoch from t)/0.02)*0.02"),
        ("1500ms", "time_bucket('1.500s',t)", "floor(extract(epoch from t)/1.5)*1.5"),
        (
            "2w",
            "time_bucket('1209600.000s',t)",
            "floor(extract(epoch from t)/1.2096e+06)*1.2096e+06",
        ),
    ],
)
def test_sub_second_and_long_buckets_are_written_as_grafana_writes_them(
    interval: str, bucket: str, plain: str
) -> None:
    sql = f"GROUP BY $__timeGroup(t, '{interval}')"
    assert expand(sql, ctx(timescaledb=True)) == f"GROUP BY {bucket}"
    assert expand(sql, ctx()) == f"GROUP BY {plain}"


def test_time_group_before_a_comma_gets_the_time_alias_as_in_grafana() -> None:
    sql = "SELECT $__timeGroup(t, '5m'), count(*) FROM x GROUP BY $__timeGroup(t, '5m')"
    assert expand(sql, ctx()) == (
        'SELECT floor(extract(epoch from t)/300)*300 AS "time", count(*) FROM x '
        "GROUP BY floor(extract(epoch from t)/300)*300"
    )
    # Inside a window's ORDER BY it is followed by ")" and stays bare.
    assert "AS" not in expand("lag(v) OVER (ORDER BY $__timeGroup(t, '5m'))", ctx())


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (300.0, "300"),
        (0.02, "0.02"),
        (1.5, "1.5"),
        (604800.0, "604800"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
    ],
)
def test_numbers_are_written_in_gos_shortest_form(value: float, text: str) -> None:
    assert go_number(value) == text


def test_epoch_seconds_are_floored_before_1970_too() -> None:
    before = datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)
    c = ctx(time_from=before, time_to=FROM)
    assert expand("SELECT $__unixEpochFrom()", c) == "SELECT -1"
    assert expand("WHERE $__unixEpochFilter(e)", c) == "WHERE e >= -1 AND e <= 1795366800"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT '${__from:date}'", "SELECT '2026-11-22T17:00:00.000Z'"),
        ("SELECT '${__to:date:iso}'", "SELECT '2026-11-23T17:00:00.500Z'"),
        ("SELECT ${__from:date:seconds}", "SELECT 1795366800"),
        ("SELECT $__from, ${__to}", "SELECT 1795366800000, 1795453200500"),
        # A lone value of a variable that is neither multi nor include-All: quotes doubled.
        ("WHERE n = '$q'", "WHERE n = 'O''Brien'"),
        ("WHERE d IN ([[desa:csv]])", "WHERE d IN (Sooko,Gedeg)"),
    ],
)
def test_dates_formats_and_lone_values_like_grafana(sql: str, expected: str) -> None:
    assert expand(sql, ctx()) == expected


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("WHERE $__timeFiltr(time)", "unknown Grafana macro $__timeFiltr"),
        ("WHERE desa IN ($desas)", "unknown template variable $desas"),
        ("SELECT $__timeGroup(time)", "needs 2 argument"),
        ("SELECT $__timeGroup(time, soon)", "interval must look like"),
        ("WHERE x = ${desa:json}", "unknown format"),
        ("WHERE $__timeFilter", "unknown Grafana macro $__timeFilter"),
        ("WHERE x = ${desa:a:b}", "unknown format 'a:b'"),
        ("WHERE x = [[desa:fmt]]", "unknown format 'fmt'"),
        ("SELECT ${__from:date:YYYY}", "unknown format 'date:YYYY'"),
        ("SELECT $__timeGroup(t, '5m', NULL)", "fill argument"),
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
