"""What every Pantau dashboard shares: the datasource, SQL targets, variables, colours.

The grafana-foundation-sdk has no builder for the PostgreSQL datasource's query model, so
`Sql` below is one: it produces the target Grafana's PostgreSQL datasource stores when a
query is written in code mode.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Literal

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from pantau.settings import Settings, ThresholdRule

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "pantau-db"
DATASOURCE_NAME = "Pantau TimescaleDB"
FOLDER_UID = "pantau"
FOLDER_TITLE = "Pantau"
TIMEZONE = "Asia/Jakarta"

# The incident console's address as a hidden constant of each dashboard that links to it, set
# from settings.console.public_url at export: links name it, so one setting moves them all.
CONSOLE_VARIABLE = "console_url"

# States of an alarm that still needs someone.
OPEN_STATES = "('OPEN', 'ACK', 'DISPATCHED')"
# Value of the desa variable for sources without a place, so "All" still includes them.
NO_DESA = "(tanpa desa)"

Format = Literal["table", "time_series"]


def datasource() -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class SqlQuery(cogvariants.Dataquery):
    """A raw SQL target of the PostgreSQL datasource (Grafana's `code` editor mode)."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: Format) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": datasource().to_json(),
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, sql: str, *, fmt: Format = "table", ref_id: str = "A") -> None:
        self._query = SqlQuery(ref_id, textwrap.dedent(sql).strip(), fmt)

    def build(self) -> SqlQuery:
        return self._query


def time_bin(column: str, alias: str | None = "time") -> str:
    """The panel's time bucket, `$__interval` wide, as a `time` column (or `alias`).

    Grafana's $__timeGroup computes buckets in numeric arithmetic on the epoch, which costs
    three to seven times more than date_bin on a day of readings, and aligns them to UTC.
    date_bin (PostgreSQL 14+, TimescaleDB alike) works on the timestamps and is anchored at
    midnight WIB, so hourly and daily buckets are Mojokerto's hours and days.
    """
    bucket = (
        f"date_bin(make_interval(secs => $__interval_ms / 1000.0), {column}, "
        "timestamptz '2000-01-03 00:00:00+07')"
    )
    return f"{bucket} AS {alias}" if alias else bucket


def coloured_states(
    column: str, states: dict[str, tuple[str | None, str]]
) -> tuple[str, list[dm.DynamicConfigValue]]:
    """A table column of states shown as coloured cells: state -> (display text, colour)."""
    options: dict[str, dict[str, object]] = {}
    for index, (state, (text, colour)) in enumerate(states.items()):
        options[state] = {"color": colour, "index": index}
        if text is not None:
            options[state]["text"] = text
    return column, [
        dm.DynamicConfigValue(id_val="mappings", value=[{"type": "value", "options": options}]),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
    ]


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (from minus infinity)."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


def threshold_override(*steps: tuple[float | None, str]) -> dm.DynamicConfigValue:
    """The same thresholds as a field override (for one column of a table)."""
    return dm.DynamicConfigValue(id_val="thresholds", value=thresholds(*steps).build().to_json())


def stat_panel(title: str, description: str, sql: str) -> stat.Panel:
    """A stat panel showing the (last) number of each column its query returns, by name."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .with_target(Sql(sql))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .graph_mode(cm.BigValueGraphMode.NONE)
    )


def fixed_color(color: str) -> list[dm.DynamicConfigValue]:
    return [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})]


def _choice(name: str, label: str, query: str) -> db.QueryVariable:
    """A multi-value variable with "All", filled from the database when the dashboard loads."""
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(datasource())
        .query(query)
        .multi(True)
        .include_all(True)
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def desa_variable() -> db.QueryVariable:
    return _choice(
        "desa",
        "Desa",
        f"SELECT coalesce(desa, '{NO_DESA}') FROM sensors WHERE active "
        f"UNION SELECT coalesce(desa, '{NO_DESA}') FROM cameras WHERE active ORDER BY 1",
    )


def camera_variable() -> db.QueryVariable:
    return _choice(
        "camera",
        "Kamera",
        f"SELECT camera_id FROM cameras WHERE active AND coalesce(desa, '{NO_DESA}') IN ($desa) "
        "ORDER BY 1",
    )


def sensor_type_variable() -> db.QueryVariable:
    return _choice(
        "sensor_type", "Jenis sensor", "SELECT DISTINCT type FROM sensors WHERE active ORDER BY 1"
    )


def desa_filter(column: str) -> str:
    return f"coalesce({column}, '{NO_DESA}') IN ($desa)"


def console_variable(settings: Settings) -> db.ConstantVariable:
    return (
        db.ConstantVariable(CONSOLE_VARIABLE)
        .label("Konsol insiden")
        .description("the incident console's address: links open alarms and evidence there")
        .value(settings.console.public_url.rstrip("/"))
    )


def field_ref(column: str) -> str:
    """The value of `column` in the row a data link is clicked on (or the map point)."""
    return "${__data.fields." + column + "}"


def console_link(title: str, path: str) -> dict[str, object]:
    """A data link to `path` in the incident console, opened beside the dashboard.

    Grafana 11 percent-encodes what it puts into a data link as encodeURI does, which leaves
    a URL's `:`, `/`, `?`, `&` and `=` as they are: the console's address, alarm ids (UUIDs)
    and the paths the queries build arrive intact.
    """
    return {"title": title, "url": "${" + CONSOLE_VARIABLE + "}" + path, "targetBlank": True}


def incident_link(alarm_column: str) -> dict[str, object]:
    """The console's page of the alarm in `alarm_column`."""
    return console_link("Buka insiden di konsol", f"/incidents/{field_ref(alarm_column)}")


def evidence_link(alarm_column: str, kind: str = "alert") -> dict[str, object]:
    """One evidence artefact of the alarm in `alarm_column` (the alert still by default),
    served by the console to those allowed to see it, after checking its SHA-256."""
    return console_link(
        "Buka foto bukti", f"/api/v1/alarms/{field_ref(alarm_column)}/evidence/{kind}"
    )


def links(*items: dict[str, object]) -> list[dm.DynamicConfigValue]:
    """Override properties: these data links, in place of any an earlier override set."""
    return [dm.DynamicConfigValue(id_val="links", value=list(items))]


def timepicker() -> db.TimePicker:
    return db.TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m", "1h"])


@dataclass(frozen=True)
class Rules:
    """The alarm levels the stream processor uses, drawn as thresholds on the wall."""

    water_raise: float
    water_critical: float | None
    fill_raise: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        # Levels drawn when no rule names the quantity.
        water_raise, fill_raise = 3.0, 0.9
        water_critical: float | None = 4.0
        for rule in settings.streams.rules:
            if not isinstance(rule, ThresholdRule):
                continue
            if rule.quantity == "waterLevel":
                water_raise, water_critical = rule.raise_above, rule.critical_above
            elif rule.quantity == "fillingLevel":
                fill_raise = rule.raise_above
        return cls(water_raise, water_critical, fill_raise)
