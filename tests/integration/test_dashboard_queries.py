"""Every panel, variable and alert rule query runs on real PostgreSQL, as pantau_grafana,
against a seeded day, after the macro expansion Grafana does — and returns what its panel
needs to draw something."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from dashboards import alerting
from dashboards.export import render_dashboards
from dashboards.macros import parse_interval
from dashboards.queries import (
    PanelQuery,
    expanded,
    panel_queries,
    resolve_variables,
    rule_expanded,
    rule_queries,
    variable_queries,
)
from pantau.settings import Settings, load_settings
from tests.conftest import REPO
from tests.integration.conftest import seeded_database
from tests.integration.test_migrations import connect

NUMERIC = {20, 21, 23, 700, 701, 1700}  # int8, int2, int4, float4, float8, numeric
TIMESTAMPTZ = 1184
TEXT = {25, 1043}

SETTINGS = load_settings(REPO / "configs" / "pantau.yaml", {})
DASHBOARDS = render_dashboards(SETTINGS)
PANELS = [q for d in DASHBOARDS.values() for q in panel_queries(d)]
VARIABLES = [v for d in DASHBOARDS.values() for v in variable_queries(d)]


@pytest.fixture(scope="module")
def seeded(services: Settings) -> Iterator[str]:
    """A database of its own with one seeded day (and its hourly rollup)."""
    with seeded_database(services, "pantau_dash", days=1, sensors=40, cameras=8) as name:
        yield name


@pytest.fixture(scope="module")
def grafana(services: Settings, seeded: str) -> Iterator[psycopg.Connection[Any]]:
    """Connected as Grafana is: the read-only pantau_grafana role."""
    with connect(services, seeded, "pantau_grafana") as conn:
        conn.autocommit = True
        yield conn


def _default_range(dashboard: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    span = parse_interval(dashboard["time"]["from"].removeprefix("now-"))
    return now - span, now


def _link_columns(panel: Mapping[str, Any]) -> set[str]:
    """The columns the panel's data links take from the clicked row."""
    config = panel.get("fieldConfig", {})
    links = list(config.get("defaults", {}).get("links", []))
    for override in config.get("overrides", []):
        links += [
            link
            for item in override["properties"]
            if item["id"] == "links"
            for link in item["value"]
        ]
    return {c for link in links for c in re.findall(r"\$\{__data\.fields\.([^}:]+)\}", link["url"])}


def _run(
    conn: psycopg.Connection[Any], query: PanelQuery
) -> tuple[list[str], list[int], list[Any]]:
    dashboard = next(d for d in DASHBOARDS.values() if d["uid"] == query.dashboard)
    now = datetime.now(UTC)
    time_from, time_to = _default_range(dashboard, now)
    values, quoted = resolve_variables(
        dashboard,
        lambda sql: conn.execute(sql.encode()).fetchall(),
        time_from=time_from,
        time_to=time_to,
    )
    sql = expanded(query, time_from=time_from, time_to=time_to, variables=values, quoted=quoted)
    cursor = conn.execute(sql.encode())
    rows = cursor.fetchall()
    assert cursor.description is not None
    return [c.name for c in cursor.description], [c.type_code for c in cursor.description], rows


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda v: f"{v.dashboard}/{v.name}")
def test_variable_queries_offer_choices(grafana: psycopg.Connection[Any], variable: Any) -> None:
    dashboard = next(d for d in DASHBOARDS.values() if d["uid"] == variable.dashboard)
    now = datetime.now(UTC)
    values, _ = resolve_variables(
        dashboard, lambda sql: grafana.execute(sql.encode()).fetchall(), time_from=now, time_to=now
    )
    assert values[variable.name], f"{variable.name} offers nothing on the seeded day"


@pytest.mark.parametrize("query", PANELS, ids=lambda q: q.name)
def test_panel_query_returns_what_its_panel_draws(
    grafana: psycopg.Connection[Any], query: PanelQuery
) -> None:
    columns, types, rows = _run(grafana, query)
    assert rows, f"{query.name} is empty on a seeded day"
    numeric = [c for c, t in zip(columns, types, strict=True) if t in NUMERIC]
    panel = query.panel_config

    if query.format == "time_series":
        # Grafana's time-series format: a `time` column, numbers, optionally `metric`.
        assert columns[0] == "time", columns
        assert types[0] in NUMERIC | {TIMESTAMPTZ}
        values = [c for c in numeric if c != "time"]
        assert values, f"{query.name} returns no numeric series: {columns}"
        assert set(columns) <= {"time", "metric", *values}, columns
        times = [row[0] for row in rows]
        assert times == sorted(times), f"{query.name} is not ordered by time"
    if query.panel_type == "timeseries":
        assert query.format == "time_series"
    if query.panel_type == "stat":
        assert len(rows) == 1 and numeric, (columns, rows)
    if query.panel_type == "bargauge":
        pattern = panel["options"]["reduceOptions"]["fields"].strip("/^$")
        assert pattern in numeric, (pattern, columns)
    if query.panel_type == "barchart":
        assert panel["options"]["xField"] in columns
        assert numeric, columns
    if query.panel_type == "geomap":
        for layer in panel["options"]["layers"]:
            location = layer["location"]
            for column in (location["latitude"], location["longitude"]):
                assert types[columns.index(column)] in NUMERIC, column
            color = layer["config"]["style"]["color"].get("field")
            if color:
                assert types[columns.index(color)] in NUMERIC, color
        for row in rows:
            lat, lon = row[columns.index("lat")], row[columns.index("lon")]
            assert -90 <= lat <= 90 and -180 <= lon <= 180
    # Overrides and links name columns; a renamed column would silently drop them.
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        if override["matcher"]["id"] == "byName":
            assert override["matcher"]["options"] in columns, override["matcher"]["options"]
    # A data link puts the clicked row's value into the URL: a row without one links nowhere.
    for column in _link_columns(panel):
        assert column in columns, f"{query.name}: its links use {column}, not returned"
        assert all(row[columns.index(column)] is not None for row in rows), column


def test_no_query_changes_its_session() -> None:
    """The wall's queries stay under pantau_grafana's statement timeout only because none of
    them changes it: a SET would also outlast its query on Grafana's pooled connection."""
    queries = [q.sql for q in PANELS] + [v.sql for v in VARIABLES]
    queries += [sql for _uid, _window, sql in rule_queries(alerting.provisioning())]
    changing = re.compile(r"\b(SET|RESET|set_config|BEGIN|COMMIT|ROLLBACK)\b", re.IGNORECASE)
    assert [q for q in queries if changing.search(q)] == []


def test_every_panel_and_variable_was_checked() -> None:
    assert len(PANELS) >= 25
    assert {q.dashboard for q in PANELS} == {d["uid"] for d in DASHBOARDS.values()}


def test_the_wall_brings_a_notified_alarm_to_the_top(grafana: psycopg.Connection[Any]) -> None:
    wall = DASHBOARDS["wall"]
    query = next(q for q in panel_queries(wall) if q.panel == "Insiden terbaru")
    now = datetime.now(UTC)
    oldest = grafana.execute(
        "SELECT alarm_id::text FROM alerts WHERE source_kind = 'dumping' "
        "AND opened_at >= now() - interval '24 hours' ORDER BY opened_at LIMIT 1"
    ).fetchone()
    assert oldest is not None
    sql = expanded(
        query,
        time_from=now - timedelta(hours=24),
        time_to=now,
        variables={"alarm": oldest[0]},
        quoted=frozenset(),
    )
    cursor = grafana.execute(sql.encode())
    first = cursor.fetchone()
    assert cursor.description is not None and first is not None
    assert first[[c.name for c in cursor.description].index("Alarm")] == oldest[0]


def test_every_point_of_the_map_leads_to_its_place_in_the_console(
    grafana: psycopg.Connection[Any],
) -> None:
    """An incident opens its page (keyed by the alarm id), a camera or sensor its alarms."""
    query = next(q for q in panel_queries(DASHBOARDS["wall"]) if q.panel == "Peta")
    columns, _types, rows = _run(grafana, query)
    points = [dict(zip(columns, row, strict=True)) for row in rows]
    assert {p["kind"] for p in points} >= {"kamera", "sensor"}
    for point in points:
        if point["kind"] == "insiden":
            assert point["link"] == f"/incidents/{uuid.UUID(point['id'])}", point
        else:
            assert point["link"] == f"/incidents?source={point['id']}", point


def test_the_walls_incident_rows_carry_their_alarm_id(grafana: psycopg.Connection[Any]) -> None:
    query = next(q for q in panel_queries(DASHBOARDS["wall"]) if q.panel == "Insiden terbaru")
    columns, _types, rows = _run(grafana, query)
    alarms = [row[columns.index("Alarm")] for row in rows]
    known = {
        str(a)
        for (a,) in grafana.execute(
            "SELECT alarm_id FROM alerts WHERE source_kind = 'dumping'"
        ).fetchall()
    }
    assert alarms and set(alarms) <= known
    assert all(row[columns.index("Bukti")] == "foto" for row in rows)


def test_filtering_by_desa_and_sensor_type_narrows_the_summary(
    grafana: psycopg.Connection[Any],
) -> None:
    environment = DASHBOARDS["environment"]
    query = next(q for q in panel_queries(environment) if q.panel == "Ringkasan per desa")
    now = datetime.now(UTC)
    sql = expanded(
        query,
        time_from=now - timedelta(hours=24),
        time_to=now,
        variables={"desa": ["Sooko"], "sensor_type": ["air_quality"]},
        quoted=frozenset({"desa", "sensor_type"}),
    )
    cursor = grafana.execute(sql.encode())
    rows = cursor.fetchall()
    assert cursor.description is not None
    columns = [c.name for c in cursor.description]
    assert [row[0] for row in rows] == ["Sooko"]
    # Only air-quality sensors: PM values, no water or container levels.
    assert rows[0][columns.index("PM2.5")] is not None
    assert rows[0][columns.index("Tinggi air maks")] is None


@pytest.mark.parametrize(
    ("uid", "window_s", "sql"),
    list(rule_queries(alerting.provisioning())),
    ids=lambda x: str(x)[:30],
)
def test_alert_rule_queries_give_one_number(
    grafana: psycopg.Connection[Any], uid: str, window_s: int, sql: str
) -> None:
    cursor = grafana.execute(rule_expanded(sql, window_s=window_s, now=datetime.now(UTC)).encode())
    rows = cursor.fetchall()
    assert cursor.description is not None
    assert len(rows) == 1 and len(rows[0]) == 1, (uid, rows)
    assert cursor.description[0].type_code in NUMERIC, uid
    assert rows[0][0] is not None, uid


def test_time_to_clean_shows_the_seeded_clean_ups(grafana: psycopg.Connection[Any]) -> None:
    """Seeded dumping alarms are acknowledged 3 minutes and dispatched 10 minutes after the
    alert, and most are cleaned: the per-desa table shows exactly that, the weekly series a
    time to clean."""
    dumping = DASHBOARDS["dumping"]
    series = next(q for q in panel_queries(dumping) if q.panel == "Waktu sampai bersih")
    columns, _types, rows = _run(grafana, series)
    assert any(row[columns.index("Median")] is not None for row in rows), rows
    table = next(q for q in panel_queries(dumping) if q.panel == "Waktu respons per desa")
    columns, _types, rows = _run(grafana, table)
    per_desa = [dict(zip(columns, row, strict=True)) for row in rows]
    assert {(r["Diterima"], r["Dikirim"]) for r in per_desa} == {(3.0, 10.0)}
    assert any(r["Bersih"] is not None and r["Bersih"] > 0 for r in per_desa), per_desa
