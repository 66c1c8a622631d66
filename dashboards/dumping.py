"""Dumping analytics: where and when rubbish is dumped, how fast it is cleaned, how often the
detector was wrong. Times of day and days of the week are WIB. A recurring site opens the
incident console's list of its camera's alarms."""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    TIMEZONE,
    Sql,
    camera_variable,
    console_link,
    console_variable,
    datasource,
    desa_filter,
    desa_variable,
    field_ref,
    links,
    stat_panel,
    threshold_override,
    thresholds,
    timepicker,
)
from pantau.messages import FALSE_POSITIVE_REASON_WORDS
from pantau.settings import Settings

UID = "pantau-dumping"

# Dumping alarms of the selected cameras, opened in the time range.
_ALARMS = (
    "alerts a WHERE a.source_kind = 'dumping' AND a.source_id IN ($camera)"
    " AND $__timeFilter(a.opened_at)"
)

HOTSPOTS_DESA = f"""
    SELECT coalesce(c.desa, '-') AS "Desa", sum(i.incidents) AS "Insiden"
    FROM incidents_daily i
    JOIN cameras c USING (camera_id)
    WHERE $__timeFilter(i.day) AND i.camera_id IN ($camera) AND {desa_filter("c.desa")}
    GROUP BY 1
    ORDER BY 2 DESC
    LIMIT 20
"""

HOTSPOTS_ZONE = """
    SELECT coalesce(nullif(c.name, ''), c.camera_id) || ' / ' || coalesce(z.name, i.zone_id, '-')
               AS "Zona",
           sum(i.incidents) AS "Insiden"
    FROM incidents_daily i
    JOIN cameras c USING (camera_id)
    LEFT JOIN zones z ON z.camera_id = i.camera_id AND z.zone_id = i.zone_id
    WHERE $__timeFilter(i.day) AND i.camera_id IN ($camera)
    GROUP BY 1
    ORDER BY 2 DESC
    LIMIT 20
"""

BY_HOUR = """
    SELECT lpad(h::text, 2, '0') AS "Jam", count(e.event_id) AS "Insiden"
    FROM generate_series(0, 23) AS h
    LEFT JOIN dumping_events e
           ON extract(hour FROM e.appeared_at AT TIME ZONE 'Asia/Jakarta') = h
          AND $__timeFilter(e.appeared_at) AND e.camera_id IN ($camera)
    GROUP BY h
    ORDER BY h
"""

BY_WEEKDAY = """
    SELECT (ARRAY['Senin', 'Selasa', 'Rabu', 'Kamis', 'Jumat', 'Sabtu', 'Minggu'])[d] AS "Hari",
           count(e.event_id) AS "Insiden"
    FROM generate_series(1, 7) AS d
    LEFT JOIN dumping_events e
           ON extract(isodow FROM e.appeared_at AT TIME ZONE 'Asia/Jakarta') = d
          AND $__timeFilter(e.appeared_at) AND e.camera_id IN ($camera)
    GROUP BY d
    ORDER BY d
"""

_TAKEN = "a.resolved_at - a.opened_at"
TIME_TO_RESOLVE = f"""
    SELECT extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY {_TAKEN})) AS "Median",
           extract(epoch FROM percentile_cont(0.9) WITHIN GROUP (ORDER BY {_TAKEN})) AS "P90"
    FROM {_ALARMS} AND a.resolved_at IS NOT NULL AND a.state = 'RESOLVED'
"""

# Time to clean, from the alarm_response view: medians are computed here from the alarms
# themselves, since the weekly view's per-desa medians cannot be combined into one.
_RESPONSES = (
    "alarm_response r WHERE r.kind = 'dumping' AND r.source_id IN ($camera)"
    " AND $__timeFilter(r.opened_at)"
)

TIME_TO_CLEAN = f"""
    SELECT r.week AS time,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY r.minutes_to_clean) AS "Median",
           percentile_cont(0.9) WITHIN GROUP (ORDER BY r.minutes_to_clean) AS "P90"
    FROM {_RESPONSES}
    GROUP BY r.week
    ORDER BY r.week
"""

RESPONSE_PER_DESA = f"""
    SELECT coalesce(r.desa, '-') AS "Desa",
           coalesce(r.kecamatan, '-') AS "Kecamatan",
           count(*) AS "Alarm",
           percentile_cont(0.5) WITHIN GROUP (ORDER BY r.minutes_to_ack) AS "Diterima",
           percentile_cont(0.5) WITHIN GROUP (ORDER BY r.minutes_to_dispatch) AS "Dikirim",
           percentile_cont(0.5) WITHIN GROUP (ORDER BY r.minutes_to_clean) AS "Bersih",
           percentile_cont(0.9) WITHIN GROUP (ORDER BY r.minutes_to_clean) AS "Bersih P90",
           avg(r.cleaned_within_day::int)::float8 AS "Bersih dalam sehari"
    FROM {_RESPONSES}
    GROUP BY 1, 2
    ORDER BY "Bersih" DESC NULLS LAST, 1
"""

FALSE_POSITIVE_RATE = f"""
    SELECT count(*) FILTER (WHERE a.state = 'FALSE_POSITIVE')::float8
           / nullif(count(*) FILTER (WHERE a.state IN ('RESOLVED', 'FALSE_POSITIVE')), 0)
               AS "Alarm keliru"
    FROM {_ALARMS}
"""

RECURRENCE = """
    SELECT coalesce(nullif(c.name, ''), c.camera_id) AS "Kamera",
           coalesce(z.name, e.zone_id, '-') AS "Zona",
           coalesce(c.desa, '-') AS "Desa",
           count(*) AS "Insiden",
           count(DISTINCT (e.appeared_at AT TIME ZONE 'Asia/Jakarta')::date) AS "Hari",
           round(extract(epoch FROM max(e.appeared_at) - min(e.appeared_at))::numeric
                 / 86400 / nullif(count(*) - 1, 0), 1) AS "Selang (hari)",
           max(e.appeared_at) AS "Terakhir",
           c.camera_id
    FROM dumping_events e
    JOIN cameras c USING (camera_id)
    LEFT JOIN zones z ON z.camera_id = e.camera_id AND z.zone_id = e.zone_id
    WHERE $__timeFilter(e.appeared_at) AND e.camera_id IN ($camera)
    GROUP BY c.camera_id, 1, 2, 3
    ORDER BY 4 DESC
    LIMIT 50
"""


# Dumping again where it was dumped before (the dumping_repeats view: false alarms left out).
REPEATS = """
    SELECT avg(r.again_within_7d::int)::float8 AS "Dalam 7 hari",
           avg(r.again_within_30d::int)::float8 AS "Dalam 30 hari"
    FROM dumping_repeats r
    WHERE r.camera_id IN ($camera) AND $__timeFilter(r.appeared_at)
"""

# A false alarm's reason as the field staff's Telegram buttons word it.
_REASON_WORDS = (
    "CASE v.top_reason "
    + " ".join(
        f"WHEN '{reason}' THEN '{words}'" for reason, words in FALSE_POSITIVE_REASON_WORDS.items()
    )
    + " ELSE '-' END"
)

FALSE_PER_CAMERA = f"""
    SELECT coalesce(nullif(c.name, ''), v.camera_id) AS "Kamera",
           coalesce(v.desa, '-') AS "Desa",
           v.alarms AS "Alarm",
           v.judged AS "Dinilai",
           v.false_alarms AS "Keliru",
           v.false_alarms::float8 / nullif(v.judged, 0) AS "Bagian keliru",
           {_REASON_WORDS} AS "Alasan terbanyak",
           v.camera_id
    FROM (
        SELECT d.camera_id, d.desa,
               count(*) AS alarms,
               count(*) FILTER (WHERE d.judged) AS judged,
               count(*) FILTER (WHERE d.false_alarm) AS false_alarms,
               mode() WITHIN GROUP (ORDER BY d.reason) AS top_reason
        FROM dumping_verdicts d
        WHERE d.camera_id IN ($camera) AND $__timeFilter(d.opened_at)
        GROUP BY d.camera_id, d.desa
    ) AS v
    LEFT JOIN cameras c ON c.camera_id = v.camera_id
    ORDER BY "Bagian keliru" DESC NULLS LAST, "Alarm" DESC, 1
    LIMIT 50
"""


_WEEKDAY_NAMES = "ARRAY['Senin', 'Selasa', 'Rabu', 'Kamis', 'Jumat', 'Sabtu', 'Minggu']"

# Hotspot risk as of the end of the range (the hotspot_risk_at function: the 120 days before
# it, recency-weighted, spread by each place's WIB day and hour profile).
RISK_PLACES = f"""
    SELECT r.rank AS "Peringkat",
           r.camera_name || ' / ' || coalesce(r.zone_name, '-') AS "Zona",
           coalesce(r.desa, '-') AS "Desa",
           r.expected_week AS "Perkiraan 7 hari",
           r.expected_tomorrow AS "Perkiraan besok",
           ({_WEEKDAY_NAMES})[r.likely_weekday] AS "Hari rawan",
           lpad(r.likely_hour::text, 2, '0') || ':00' AS "Jam rawan",
           r.incidents AS "Insiden 120 hari",
           r.camera_id
    FROM hotspot_risk_at($__timeTo()) r
    WHERE r.camera_id IN ($camera) AND {desa_filter("r.desa")}
    ORDER BY r.rank
    LIMIT 20
"""

RISK_DESA = f"""
    SELECT coalesce(r.desa, '-') AS "Desa", sum(r.expected_week) AS "Perkiraan 7 hari"
    FROM hotspot_risk_at($__timeTo()) r
    WHERE r.camera_id IN ($camera) AND {desa_filter("r.desa")}
    GROUP BY 1
    ORDER BY 2 DESC
    LIMIT 20
"""


def _bars(title: str, description: str, sql: str, x_field: str) -> barchart.Panel:
    return (
        barchart.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .with_target(Sql(sql))
        .x_field(x_field)
        .orientation(cm.VizOrientation.AUTO)
        .show_value(cm.VisibilityMode.AUTO)
        .fill_opacity(80)
        .legend(
            cb.VizLegendOptions()
            .show_legend(False)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
        )
        .height(8)
        .span(12)
    )


def _opens_its_camera(panel: table.Panel, label: str) -> table.Panel:
    """A row of the table opens its camera's alarms in the incident console; the camera id
    the link takes is hidden."""
    link = links(console_link(label, f"/incidents?source={field_ref('camera_id')}"))
    hidden = [dm.DynamicConfigValue(id_val="custom.hidden", value=True)]
    return panel.override_by_query("A", link).override_by_name("camera_id", hidden)


def build(settings: Settings) -> db.Dashboard:
    resolve = (
        stat_panel(
            "Waktu sampai selesai",
            "From the alert to the incident marked resolved: median and 90th percentile.",
            TIME_TO_RESOLVE,
        )
        .unit("s")
        .thresholds(thresholds((None, "green"), (4 * 3600, "orange"), (24 * 3600, "red")))
        .height(6)
        .span(12)
    )
    false_rate = (
        stat_panel(
            "Alarm keliru",
            "Share of closed dumping alarms that operators marked as false positives.",
            FALSE_POSITIVE_RATE,
        )
        .unit("percentunit")
        .decimals(1)
        .thresholds(thresholds((None, "green"), (0.1, "orange"), (0.25, "red")))
        .height(6)
        .span(12)
    )
    # Service-level colours: cleaned within four hours is good, beyond a day is a failure.
    clean_steps: tuple[tuple[float | None, str], ...] = (
        (None, "green"),
        (4 * 60, "orange"),
        (24 * 60, "red"),
    )
    time_to_clean = (
        timeseries.Panel()
        .title("Waktu sampai bersih")
        .description(
            "Minutes from the alert until the spot was clean, per WIB week of the alert: "
            "median and 90th percentile. Clean: an officer resolved the alarm or the camera "
            "saw the object gone, whichever came first; false alarms are left out."
        )
        .datasource(datasource())
        .with_target(Sql(TIME_TO_CLEAN, fmt="time_series"))
        .unit("m")
        .min(0)
        .line_width(2)
        .show_points(cm.VisibilityMode.ALWAYS)
        .point_size(6)
        .span_nulls(True)
        .thresholds(thresholds(*clean_steps))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .height(8)
        .span(12)
    )
    minutes = dm.DynamicConfigValue(id_val="unit", value="m")
    coloured = dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"})
    response_per_desa = (
        table.Panel()
        .title("Waktu respons per desa")
        .description(
            "Dumping alarms per desa in the range: median minutes from the alert to the "
            "first acknowledgement (Diterima), to the first dispatch (Dikirim) and to clean "
            "(Bersih, with its 90th percentile), and the share cleaned within 24 hours."
        )
        .datasource(datasource())
        .with_target(Sql(RESPONSE_PER_DESA))
        .override_by_name("Diterima", [minutes])
        .override_by_name("Dikirim", [minutes])
        .override_by_name("Bersih", [minutes, coloured, threshold_override(*clean_steps)])
        .override_by_name("Bersih P90", [minutes, coloured, threshold_override(*clean_steps)])
        .override_by_name(
            "Bersih dalam sehari",
            [
                dm.DynamicConfigValue(id_val="unit", value="percentunit"),
                coloured,
                threshold_override((None, "red"), (0.8, "orange"), (0.95, "green")),
            ],
        )
        .height(8)
        .span(12)
    )
    recurrence = (
        table.Panel()
        .title("Lokasi berulang")
        .description(
            "Sites by number of incidents in the range: on how many days, the mean gap "
            "between incidents, and the latest. A row opens the alarms of its camera in the "
            "incident console."
        )
        .datasource(datasource())
        .with_target(Sql(RECURRENCE))
        .override_by_name(
            "Insiden",
            [
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "gauge", "mode": "basic"}
                ),
                threshold_override((None, "orange"), (10, "red")),
            ],
        )
        .height(10)
        .span(24)
    )
    recurrence = _opens_its_camera(recurrence, "Insiden kamera ini di konsol")
    repeats = (
        stat_panel(
            "Dibuang lagi di tempat yang sama",
            "Share of the dumping in the range (false alarms left out) at a place, camera and "
            "zone, that had dumping within the 7 and the 30 days before.",
            REPEATS,
        )
        .unit("percentunit")
        .decimals(0)
        .thresholds(thresholds((None, "green"), (0.25, "orange"), (0.5, "red")))
        .height(6)
        .span(12)
    )
    false_per_camera = (
        table.Panel()
        .title("Alarm keliru per kamera")
        .description(
            "Dumping alarms per camera in the range: how many people judged (resolved or "
            "called false), how many were false alarms, their share of the judged, and the "
            "reason given most. A camera high on this list needs its zones tuned or to be "
            "moved; a row opens its alarms in the incident console."
        )
        .datasource(datasource())
        .with_target(Sql(FALSE_PER_CAMERA))
        .override_by_name(
            "Bagian keliru",
            [
                dm.DynamicConfigValue(id_val="unit", value="percentunit"),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
                threshold_override((None, "green"), (0.1, "orange"), (0.25, "red")),
            ],
        )
        .height(10)
        .span(12)
    )
    false_per_camera = _opens_its_camera(false_per_camera, "Alarm kamera ini di konsol")
    risk = (
        table.Panel()
        .title("Risiko titik rawan")
        .description(
            "Where dumping is likeliest in the coming week, as of the end of the range: each "
            "place's real dumping (false alarms left out) of the 120 days before, each weighing "
            "half as much every 28 days, as dumping expected per week; the day and hour (WIB) "
            "with the most of it. For patrol planning; a row opens the camera's alarms in the "
            "incident console."
        )
        .datasource(datasource())
        .with_target(Sql(RISK_PLACES))
        .override_by_name(
            "Perkiraan 7 hari",
            [
                dm.DynamicConfigValue(id_val="decimals", value=1),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "gauge", "mode": "basic"}
                ),
                threshold_override((None, "orange"), (3, "red")),
            ],
        )
        .override_by_name("Perkiraan besok", [dm.DynamicConfigValue(id_val="decimals", value=2)])
        .height(10)
        .span(16)
    )
    risk = _opens_its_camera(risk, "Insiden kamera ini di konsol")
    return (
        db.Dashboard("Pantau — Analitik pembuangan sampah")
        .uid(UID)
        .description(
            "Illegal dumping: hotspots, times, time to clean, recurrence, dumping again at "
            "the same place, false alarms per camera, and where dumping is likeliest next."
        )
        .tags(["pantau", "dumping"])
        .timezone(TIMEZONE)
        .time("now-30d", "now")
        .refresh("5m")
        .timepicker(timepicker())
        .with_variable(desa_variable())
        .with_variable(camera_variable())
        .with_variable(console_variable(settings))
        .with_panel(
            _bars("Titik rawan per desa", "Incidents per desa in the range.", HOTSPOTS_DESA, "Desa")
        )
        .with_panel(
            _bars(
                "Titik rawan per zona",
                "Incidents per camera zone in the range.",
                HOTSPOTS_ZONE,
                "Zona",
            )
        )
        .with_panel(
            _bars(
                "Insiden per jam (WIB)", "When objects appear, by hour of the day.", BY_HOUR, "Jam"
            )
        )
        .with_panel(
            _bars(
                "Insiden per hari", "When objects appear, by day of the week.", BY_WEEKDAY, "Hari"
            )
        )
        .with_panel(resolve)
        .with_panel(false_rate)
        .with_panel(time_to_clean)
        .with_panel(response_per_desa)
        .with_panel(recurrence)
        .with_panel(repeats)
        .with_panel(false_per_camera)
        .with_panel(risk)
        .with_panel(
            _bars(
                "Risiko per desa",
                "Dumping expected in the coming week per desa, as of the end of the range: "
                "the risk of its places summed.",
                RISK_DESA,
                "Desa",
            )
            .height(10)
            .span(8)
        )
    )
