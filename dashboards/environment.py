"""Environment: air quality against the ISPU bands, river levels, TPS bins, per desa."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    TIMEZONE,
    Rules,
    Sql,
    datasource,
    desa_filter,
    desa_variable,
    sensor_type_variable,
    threshold_override,
    thresholds,
    time_bin,
    timepicker,
)
from pantau.settings import Settings

UID = "pantau-environment"

# Indeks Standar Pencemar Udara (KLHK regulation P.14/2020): upper bounds of the bands
# Baik / Sedang / Tidak Sehat / Sangat Tidak Sehat, above which it is Berbahaya, in µg/m³,
# with the colours the index is published in.
ISPU_PM25 = ((None, "green"), (15.6, "blue"), (55.5, "yellow"), (150.5, "red"), (250.5, "#1f1f1f"))
ISPU_PM10 = ((None, "green"), (51, "blue"), (151, "yellow"), (351, "red"), (421, "#1f1f1f"))

# ISPU is defined on hourly means, so air quality reads the hourly rollup.
_PM_PER_DESA = """
    SELECT {bucket},
           s.desa AS metric,
           avg(h.avg) AS "{quantity}"
    FROM sensor_readings_hourly h
    JOIN sensors s USING (sensor_id)
    WHERE h.quantity = '{quantity}' AND $__timeFilter(h.bucket) AND {desa}
    GROUP BY 1, 2
    ORDER BY 1
"""
PM25 = _PM_PER_DESA.format(quantity="pm25", bucket=time_bin("h.bucket"), desa=desa_filter("s.desa"))
PM10 = _PM_PER_DESA.format(quantity="pm10", bucket=time_bin("h.bucket"), desa=desa_filter("s.desa"))

# The trend reads the hourly rollup (the highest level of each hour): a day of raw readings
# from every gauge is too much to fetch each refresh. The latest level comes from the raw
# readings, one index lookup per gauge.
WATER_LEVEL = f"""
    SELECT {time_bin("h.bucket")},
           s.desa AS metric,
           max(h.max) AS "waterLevel"
    FROM sensor_readings_hourly h
    JOIN sensors s USING (sensor_id)
    WHERE s.type = 'water_level' AND h.quantity = 'waterLevel'
      AND $__timeFilter(h.bucket) AND {desa_filter("s.desa")}
    GROUP BY 1, 2
    ORDER BY 1
"""

# The latest reading of each sensor of a type, one index lookup per sensor, fullest first.
_LATEST = """
    SELECT coalesce(nullif(s.name, ''), s.sensor_id) AS "{name}",
           r.value AS "{quantity}"
    FROM sensors s
    CROSS JOIN LATERAL (SELECT value FROM sensor_readings
                        WHERE sensor_id = s.sensor_id AND quantity = '{quantity}'
                          AND time >= $__timeTo()::timestamptz - interval '{within}'
                          AND time <= $__timeTo()::timestamptz
                        ORDER BY time DESC LIMIT 1) r
    WHERE s.type = '{sensor_type}' AND s.active AND {desa}
    ORDER BY r.value DESC
    LIMIT {limit}
"""
WATER_NOW = _LATEST.format(
    name="Pos", quantity="waterLevel", within="1 hour", sensor_type="water_level",
    desa=desa_filter("s.desa"), limit=20,
)  # fmt: skip
BIN_FILL = _LATEST.format(
    name="TPS", quantity="fillingLevel", within="1 day", sensor_type="waste_container",
    desa=desa_filter("s.desa"), limit=40,
)  # fmt: skip

PER_DESA = f"""
    SELECT coalesce(s.desa, '-') AS "Desa",
           round(avg(h.avg) FILTER (WHERE h.quantity = 'pm25')::numeric, 1) AS "PM2.5",
           round(avg(h.avg) FILTER (WHERE h.quantity = 'pm10')::numeric, 1) AS "PM10",
           max(h.max) FILTER (WHERE h.quantity = 'waterLevel') AS "Tinggi air maks",
           max(h.max) FILTER (WHERE h.quantity = 'fillingLevel') AS "Isi TPS maks",
           count(DISTINCT h.sensor_id) AS "Sensor"
    FROM sensor_readings_hourly h
    JOIN sensors s USING (sensor_id)
    WHERE $__timeFilter(h.bucket) AND {desa_filter("s.desa")} AND s.type IN ($sensor_type)
    GROUP BY 1
    ORDER BY 1
"""


def _pm_panel(
    title: str, sql: str, bands: tuple[tuple[float | None, str], ...]
) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(
            "Hourly mean per desa; the background bands are ISPU's: Baik, Sedang, Tidak Sehat, "
            "Sangat Tidak Sehat, Berbahaya."
        )
        .datasource(datasource())
        .with_target(Sql(sql, fmt="time_series"))
        .interval("1h")
        .unit("conµgm3")
        .min(0)
        .thresholds(thresholds(*bands))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.AREA))
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .calcs(["mean", "max"])
            .show_legend(True)
        )
        .height(9)
        .span(12)
    )


def build(settings: Settings) -> db.Dashboard:
    rules = Rules.from_settings(settings)
    water_steps: list[tuple[float | None, str]] = [(None, "green"), (rules.water_raise, "orange")]
    if rules.water_critical is not None:
        water_steps.append((rules.water_critical, "red"))
    water = (
        timeseries.Panel()
        .title("Tinggi muka air per desa")
        .description(
            "Highest level of the desa's gauges per hour; the lines are the alarm levels of "
            "the water-high rule (a gauge may set its own)."
        )
        .datasource(datasource())
        .with_target(Sql(WATER_LEVEL, fmt="time_series"))
        .interval("1h")
        .unit("lengthm")
        .thresholds(thresholds(*water_steps))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .height(9)
        .span(12)
    )
    water_now = (
        bargauge.Panel()
        .title("Tinggi muka air terkini")
        .description("Latest level of each gauge (up to an hour old), highest first.")
        .datasource(datasource())
        .with_target(Sql(WATER_NOW))
        .unit("lengthm")
        .min(0)
        .max((rules.water_critical or rules.water_raise) * 1.25)
        .thresholds(thresholds(*water_steps))
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(cb.ReduceDataOptions().values(True).calcs([]).fields("/^waterLevel$/"))
        .height(9)
        .span(12)
    )
    bins = (
        bargauge.Panel()
        .title("Isi kontainer TPS")
        .description("Latest filling level of each container (up to a day old), fullest first.")
        .datasource(datasource())
        .with_target(Sql(BIN_FILL))
        .unit("percentunit")
        .min(0)
        .max(1)
        .thresholds(
            thresholds(
                (None, "green"), (rules.fill_raise - 0.2, "orange"), (rules.fill_raise, "red")
            )
        )
        .display_mode(cm.BarGaugeDisplayMode.LCD)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(cb.ReduceDataOptions().values(True).calcs([]).fields("/^fillingLevel$/"))
        .height(9)
        .span(12)
    )
    per_desa = (
        table.Panel()
        .title("Ringkasan per desa")
        .description(
            "Means and maxima over the time range, from the hourly rollup, of the selected "
            "desa and sensor types."
        )
        .datasource(datasource())
        .with_target(Sql(PER_DESA))
        .override_by_name(
            "PM2.5",
            [
                threshold_override(*ISPU_PM25),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
            ],
        )
        .override_by_name(
            "PM10",
            [
                threshold_override(*ISPU_PM10),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
            ],
        )
        .override_by_name(
            "Tinggi air maks", [dm.DynamicConfigValue(id_val="unit", value="lengthm")]
        )
        .override_by_name(
            "Isi TPS maks", [dm.DynamicConfigValue(id_val="unit", value="percentunit")]
        )
        .height(9)
        .span(12)
    )
    return (
        db.Dashboard("Pantau — Lingkungan")
        .uid(UID)
        .description("Air quality (ISPU), river levels and TPS container fill levels per desa.")
        .tags(["pantau", "environment"])
        .timezone(TIMEZONE)
        .time("now-24h", "now")
        .refresh("1m")
        .timepicker(timepicker())
        .with_variable(desa_variable())
        .with_variable(sensor_type_variable())
        .with_panel(_pm_panel("PM2.5 per desa", PM25, ISPU_PM25))
        .with_panel(_pm_panel("PM10 per desa", PM10, ISPU_PM10))
        .with_panel(water)
        .with_panel(water_now)
        .with_panel(bins)
        .with_panel(per_desa)
    )
