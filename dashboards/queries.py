"""Every SQL query the dashboards and alert rules make Grafana run, ready to execute.

Reads the rendered JSON (what Grafana gets), so what is tested and benchmarked is what is
deployed: each panel target, each query variable, each alert rule query. `expanded()` turns
one into the SQL Grafana's PostgreSQL datasource would send for a time range, with the
variables at "All" — their options come from running the variables' own queries first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dashboards.macros import QueryContext, expand, panel_interval, parse_interval


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel: str  # title
    panel_type: str
    ref_id: str
    format: str
    sql: str
    min_interval: str | None
    panel_config: Mapping[str, Any]

    @property
    def name(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.ref_id}"


@dataclass(frozen=True)
class VariableQuery:
    dashboard: str
    name: str
    sql: str
    quoted: bool  # multi-value or include-All: Grafana quotes its values


def panel_queries(dashboard: Mapping[str, Any]) -> Iterator[PanelQuery]:
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield PanelQuery(
                dashboard=dashboard["uid"],
                panel=panel["title"],
                panel_type=panel["type"],
                ref_id=target["refId"],
                format=target.get("format", "table"),
                sql=target["rawSql"],
                min_interval=panel.get("interval"),
                panel_config=panel,
            )


def variable_queries(dashboard: Mapping[str, Any]) -> Iterator[VariableQuery]:
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            yield VariableQuery(
                dashboard=dashboard["uid"],
                name=variable["name"],
                sql=variable["query"],
                quoted=bool(variable.get("multi") or variable.get("includeAll")),
            )


def rule_queries(alerting: Mapping[str, Any]) -> Iterator[tuple[str, int, str]]:
    """(rule uid, window in seconds, SQL) of each alert rule's datasource query; the `$$`
    that protects macros from Grafana's environment expansion is undone, as Grafana does."""
    for group in alerting.get("groups", []):
        for rule in group["rules"]:
            for query in rule["data"]:
                sql = query["model"].get("rawSql")
                if sql is not None:
                    window = int(query["relativeTimeRange"]["from"])
                    yield rule["uid"], window, sql.replace("$$", "$")


def resolve_variables(
    dashboard: Mapping[str, Any],
    run: Callable[[str], Sequence[Sequence[Any]]],
    *,
    time_from: datetime,
    time_to: datetime,
) -> tuple[dict[str, list[str] | str], frozenset[str]]:
    """Values of every variable with "All" selected, in the order Grafana resolves them (a
    variable's query may use the ones before it); textbox and constant variables take their
    default. Returns the values and the names Grafana quotes."""
    values: dict[str, list[str] | str] = {}
    quoted: set[str] = set()
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        if variable.get("type") == "query":
            ctx = QueryContext(time_from, time_to, timedelta(minutes=1), values, frozenset(quoted))
            rows = run(expand(variable["query"], ctx))
            values[name] = [str(row[0]) for row in rows]
            if variable.get("multi") or variable.get("includeAll"):
                quoted.add(name)
        elif variable.get("type") in ("textbox", "constant"):
            values[name] = str(variable.get("query", ""))
        elif variable.get("type") == "custom":
            values[name] = [v.strip() for v in str(variable.get("query", "")).split(",")]
            quoted.add(name)
    return values, frozenset(quoted)


def expanded(
    query: PanelQuery,
    *,
    time_from: datetime,
    time_to: datetime,
    variables: Mapping[str, list[str] | str],
    quoted: frozenset[str],
    timescaledb: bool = False,
    max_data_points: int = 1000,
) -> str:
    interval = panel_interval(
        time_from, time_to, max_data_points=max_data_points, min_interval=query.min_interval
    )
    ctx = QueryContext(time_from, time_to, interval, variables, quoted, timescaledb)
    return expand(query.sql, ctx)


def rule_expanded(sql: str, *, window_s: int, now: datetime, timescaledb: bool = False) -> str:
    time_from = now - timedelta(seconds=window_s)
    ctx = QueryContext(time_from, now, parse_interval("1m"), {}, frozenset(), timescaledb)
    return expand(sql, ctx)
