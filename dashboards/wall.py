"""The command-center wall: one 1920x1080 screen, readable from across the room (kiosk mode).

Top: four big numbers. Middle: the map of cameras, sensors and open incidents, next to the
latest incidents. Bottom: alarms opened over time.

Incidents open in the incident console (`console_url`, from settings.console.public_url): a
row of the table or a point of the map opens its page there, and the table's Bukti the alert
still, which the console serves to those allowed to see it. The wall itself never reads
evidence references. A link with `var-alarm=<alarm id>` still puts that alarm at the top of
the table.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, stat, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from dashboards.common import (
    OPEN_STATES,
    TIMEZONE,
    Sql,
    coloured_states,
    console_link,
    console_variable,
    datasource,
    evidence_link,
    field_ref,
    fixed_color,
    incident_link,
    links,
    stat_panel,
    thresholds,
    time_bin,
    timepicker,
)
from pantau.settings import Settings

UID = "pantau-wall"

# A camera is online when its latest heartbeat of the last two minutes says so (heartbeats
# come every few seconds); a sensor reports when it sent anything in the last 15 minutes,
# the stale-sensor rule's default.
_CAMERA_STATUS = """
    LEFT JOIN LATERAL (SELECT status FROM camera_health
                       WHERE camera_id = c.camera_id AND time >= now() - interval '2 minutes'
                       ORDER BY time DESC LIMIT 1) h ON true"""

OPEN_INCIDENTS = f"""
    SELECT count(*) AS "Insiden terbuka"
    FROM alerts
    WHERE source_kind = 'dumping' AND state IN {OPEN_STATES}
"""

ALERTS_BY_SEVERITY = f"""
    SELECT count(*) FILTER (WHERE severity = 'critical') AS "Kritis",
           count(*) FILTER (WHERE severity = 'major')    AS "Mayor",
           count(*) FILTER (WHERE severity = 'minor')    AS "Minor",
           count(*) FILTER (WHERE severity IN ('warning', 'info')) AS "Peringatan"
    FROM alerts
    WHERE state IN {OPEN_STATES}
"""

CAMERAS_ONLINE = f"""
    SELECT count(*) FILTER (WHERE h.status = 'online') AS "Online",
           count(*)                                    AS "Total"
    FROM cameras c{_CAMERA_STATUS}
    WHERE c.active AND c.enabled
"""

SENSORS_REPORTING = """
    SELECT count(r.sensor_id) AS "Melapor",
           count(*)           AS "Total"
    FROM sensors s
    LEFT JOIN LATERAL (SELECT sensor_id FROM sensor_readings
                       WHERE sensor_id = s.sensor_id AND time >= now() - interval '15 minutes'
                       LIMIT 1) r ON true
    WHERE s.active
"""

# level: 0 normal, 1 silent or offline, 2 open alarm, 3 open dumping incident.
# link: where the point leads in the incident console: an incident to its page, a camera or a
# sensor to the list of its alarms.
MAP = f"""
    SELECT 'kamera' AS kind, c.camera_id AS id, c.name, c.desa, c.lat, c.lon,
           CASE WHEN a.n > 0 THEN 2 WHEN h.status = 'online' THEN 0 ELSE 1 END AS level,
           '/incidents?source=' || c.camera_id AS link
    FROM cameras c{_CAMERA_STATUS}
    LEFT JOIN LATERAL (SELECT count(*) AS n FROM alerts
                       WHERE source_id = c.camera_id AND source_kind = 'camera'
                         AND state IN {OPEN_STATES}) a ON true
    WHERE c.active AND c.lat IS NOT NULL
    UNION ALL
    SELECT 'sensor', s.sensor_id, s.name, s.desa, s.lat, s.lon,
           CASE WHEN a.n > 0 THEN 2 WHEN r.reported THEN 0 ELSE 1 END,
           '/incidents?source=' || s.sensor_id
    FROM sensors s
    LEFT JOIN LATERAL (SELECT true AS reported FROM sensor_readings
                       WHERE sensor_id = s.sensor_id AND time >= now() - interval '15 minutes'
                       LIMIT 1) r ON true
    LEFT JOIN LATERAL (SELECT count(*) AS n FROM alerts
                       WHERE source_id = s.sensor_id AND source_kind = 'sensor'
                         AND state IN {OPEN_STATES}) a ON true
    WHERE s.active AND s.lat IS NOT NULL
    UNION ALL
    SELECT 'insiden', a.alarm_id::text, c.name, c.desa, c.lat, c.lon, 3,
           '/incidents/' || a.alarm_id::text
    FROM alerts a
    JOIN cameras c ON c.camera_id = a.source_id
    WHERE a.source_kind = 'dumping' AND a.state IN {OPEN_STATES} AND c.lat IS NOT NULL
"""

LATEST_INCIDENTS = """
    SELECT a.opened_at AS "Waktu",
           coalesce(c.desa, '-') AS "Desa",
           coalesce(nullif(c.name, ''), a.source_id) AS "Kamera",
           coalesce(z.name, e.zone_id, '-') AS "Zona",
           a.state AS "Status",
           CASE WHEN a.event_id IS NOT NULL THEN 'foto' END AS "Bukti",
           a.alarm_id::text AS "Alarm"
    FROM alerts a
    LEFT JOIN cameras c ON c.camera_id = a.source_id
    LEFT JOIN dumping_events e ON e.event_id = a.event_id
    LEFT JOIN zones z ON z.camera_id = e.camera_id AND z.zone_id = e.zone_id
    WHERE a.source_kind = 'dumping' AND $__timeFilter(a.opened_at)
    ORDER BY a.alarm_id::text = ${alarm:sqlstring} DESC, a.opened_at DESC
    LIMIT 50
"""

TIMELINE = f"""
    SELECT {time_bin("opened_at")},
           alarm_type AS metric,
           count(*) AS n
    FROM alerts
    WHERE $__timeFilter(opened_at)
    GROUP BY 1, 2
    ORDER BY 1
"""

_LEVELS: list[dm.ValueMap | dm.RangeMap | dm.RegexMap | dm.SpecialValueMap] = [
    dm.ValueMap(
        options={
            "0": dm.ValueMappingResult(text="normal", color="green", index=0),
            "1": dm.ValueMappingResult(text="tidak melapor", color="orange", index=1),
            "2": dm.ValueMappingResult(text="alarm", color="red", index=2),
            "3": dm.ValueMappingResult(text="insiden pembuangan", color="purple", index=3),
        }
    )
]


def _big_number(title: str, sql: str, description: str) -> stat.Panel:
    """A number readable from across the room."""
    return (
        stat_panel(title, description, sql)
        .color_mode(cm.BigValueColorMode.VALUE)
        .justify_mode(cm.BigValueJustifyMode.CENTER)
        .text(cb.VizTextDisplayOptions().title_size(22).value_size(64))
        .height(4)
    )


def build(settings: Settings) -> db.Dashboard:
    severity = (
        _big_number(
            "Alarm terbuka per tingkat",
            ALERTS_BY_SEVERITY,
            "Open alarms (open, acknowledged or dispatched) by severity.",
        )
        .thresholds(thresholds((None, "text")))
        .override_by_name("Kritis", fixed_color("red"))
        .override_by_name("Mayor", fixed_color("orange"))
        .override_by_name("Minor", fixed_color("yellow"))
        .override_by_name("Peringatan", fixed_color("blue"))
        .span(9)
    )
    incidents = (
        _big_number(
            "Insiden pembuangan",
            OPEN_INCIDENTS,
            "Dumping incidents not yet resolved or marked false.",
        )
        .thresholds(thresholds((None, "green"), (1, "red")))
        .span(5)
    )
    cameras = (
        _big_number(
            "Kamera",
            CAMERAS_ONLINE,
            "Cameras whose latest heartbeat of the last 2 minutes says online, of all enabled.",
        )
        .thresholds(thresholds((None, "text")))
        .override_by_name("Online", fixed_color("green"))
        .span(5)
    )
    sensors = (
        _big_number(
            "Sensor",
            SENSORS_REPORTING,
            "Sensors that sent a reading in the last 15 minutes, of all configured.",
        )
        .thresholds(thresholds((None, "text")))
        .override_by_name("Melapor", fixed_color("green"))
        .span(5)
    )
    map_panel = (
        geomap.Panel()
        .title("Peta")
        .description(
            "Cameras, sensors and open dumping incidents. Green: normal; orange: silent or "
            "offline; red: open alarm; purple: dumping incident."
        )
        .datasource(datasource())
        .with_target(Sql(MAP))
        .view(
            # Mojokerto. The SDK types lon as int; Grafana stores a float.
            geomap.MapViewConfig().id("coords").lat(-7.47).lon(112.44).zoom(12)  # type: ignore[arg-type]
        )
        .basemap(cb.MapLayerOptions().type("default").name("Peta dasar"))
        .layers(
            [
                cb.MapLayerOptions()
                .type("markers")
                .name("Titik")
                .location(
                    cb.FrameGeometrySource()
                    .mode(cm.FrameGeometrySourceMode.COORDS)
                    .latitude("lat")
                    .longitude("lon")
                )
                .config(
                    {
                        "showLegend": True,
                        "style": {
                            "color": {"field": "level", "fixed": "green"},
                            "size": {"fixed": 9, "min": 4, "max": 15},
                            "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                            "opacity": 0.85,
                        },
                    }
                )
                .tooltip(True)
            ]
        )
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(False))
        # Hovering a point shows it; a click holds the tooltip, with the point's console link.
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .override_by_query("A", links(console_link("Buka di konsol insiden", field_ref("link"))))
        .override_by_name(
            "link",
            [
                dm.DynamicConfigValue(
                    id_val="custom.hideFrom",
                    value={"legend": False, "tooltip": True, "viz": False},
                )
            ],
        )
        .mappings(_LEVELS)
        .thresholds(thresholds((None, "green"), (1, "orange"), (2, "red"), (3, "purple")))
        .height(13)
        .span(14)
    )
    latest = (
        table.Panel()
        .title("Insiden terbaru")
        .description(
            "Dumping incidents in the time range, newest first; the alarm named by var-alarm "
            "comes first. A row opens the incident in the incident console; Bukti opens its "
            "alert still there, for the people allowed to see it. The wall never reads "
            "evidence references."
        )
        .datasource(datasource())
        .with_target(Sql(LATEST_INCIDENTS))
        .cell_height(cm.TableCellHeight.MD)
        # Every cell of a row links to its incident; Bukti's link, set after, replaces it.
        .override_by_query("A", links(incident_link("Alarm")))
        .override_by_name(
            "Bukti",
            [
                dm.DynamicConfigValue(id_val="custom.width", value=80),
                *links(evidence_link("Alarm")),
            ],
        )
        .override_by_name("Alarm", [dm.DynamicConfigValue(id_val="custom.hidden", value=True)])
        .override_by_name(
            *coloured_states(
                "Status",
                {
                    "OPEN": ("baru", "red"),
                    "ACK": ("diterima", "orange"),
                    "DISPATCHED": ("petugas", "yellow"),
                    "RESOLVED": ("selesai", "green"),
                    "FALSE_POSITIVE": ("keliru", "text"),
                },
            )
        )
        .height(13)
        .span(10)
    )
    timeline = (
        timeseries.Panel()
        .title("Linimasa alarm")
        .description("Alarms opened per interval, by type.")
        .datasource(datasource())
        .with_target(Sql(TIMELINE, fmt="time_series"))
        .interval("10m")
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.RIGHT)
            .show_legend(True)
        )
        .height(9)
        .span(24)
    )
    alarm = (
        db.TextBoxVariable("alarm")
        .label("Alarm")
        .description("an alarm id to bring to the top of the incidents table")
        .default_value("")
        .hide(dm.VariableHide.HIDE_VARIABLE)
    )
    return (
        db.Dashboard("Pantau — Dinding komando")
        .uid(UID)
        .description("Command-center wall: incidents, alarms, cameras and sensors at a glance.")
        .tags(["pantau", "wall"])
        .timezone(TIMEZONE)
        .time("now-24h", "now")
        .refresh("30s")
        .timepicker(timepicker())
        .tooltip(dm.DashboardCursorSync.OFF)
        .readonly()
        .with_variable(alarm)
        .with_variable(console_variable(settings))
        .with_panel(incidents)
        .with_panel(severity)
        .with_panel(cameras)
        .with_panel(sensors)
        .with_panel(map_panel)
        .with_panel(latest)
        .with_panel(timeline)
    )
