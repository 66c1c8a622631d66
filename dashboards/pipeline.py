"""Pipeline health: is every stage running and keeping up? Stages as their supervisors see
them, frames per camera, detector latency, Kafka lag, sink throughput, reading → alert latency
and refused input."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    TIMEZONE,
    Sql,
    camera_variable,
    coloured_states,
    datasource,
    desa_variable,
    thresholds,
    time_bin,
    timepicker,
)
from pantau.settings import Settings

UID = "pantau-pipeline"

# The ingest's counters run since it started; their growth over the range is what it did.
# A restart resets them: a camera whose counter went down shows its growth since then.
_GROWTH = "CASE WHEN l.{c} >= f.{c} THEN l.{c} - f.{c} ELSE l.{c} END"
FRAMES = f"""
    SELECT c.camera_id AS "Kamera",
           {_GROWTH.format(c="frames_decoded")} AS "Didekode",
           {_GROWTH.format(c="frames_published")} AS "Dikirim",
           {_GROWTH.format(c="frames_skipped")} AS "Dilewati",
           round(l.fps::numeric, 1) AS "fps",
           l.status AS "Status"
    FROM cameras c
    CROSS JOIN LATERAL (SELECT * FROM camera_health
                        WHERE camera_id = c.camera_id AND $__timeFilter(time)
                        ORDER BY time LIMIT 1) f
    CROSS JOIN LATERAL (SELECT * FROM camera_health
                        WHERE camera_id = c.camera_id AND $__timeFilter(time)
                        ORDER BY time DESC LIMIT 1) l
    WHERE c.camera_id IN ($camera)
    ORDER BY 1
"""

FPS = f"""
    SELECT {time_bin("time")}, camera_id AS metric, avg(fps) AS fps
    FROM camera_health
    WHERE $__timeFilter(time) AND camera_id IN ($camera)
    GROUP BY 1, 2
    ORDER BY 1
"""

DETECTOR_LATENCY = f"""
    SELECT {time_bin("time")},
           percentile_cont(0.5) WITHIN GROUP (ORDER BY date_part('epoch', detected_at - time))
               AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY date_part('epoch', detected_at - time))
               AS p95
    FROM detections
    WHERE $__timeFilter(time) AND camera_id IN ($camera)
    GROUP BY 1
    ORDER BY 1
"""

# Each process of a consumer group reports the lag of the partitions it holds: the group's
# lag is the sum over its processes.
CONSUMER_LAG = f"""
    SELECT t AS time, component AS metric, sum(lag) AS lag
    FROM (SELECT {time_bin("time", alias="t")}, component, instance, max(value) AS lag
          FROM pipeline_metrics
          WHERE metric = 'consumer_lag' AND $__timeFilter(time)
          GROUP BY 1, 2, 3) per_instance
    GROUP BY 1, 2
    ORDER BY 1
"""

# Each sink process reports its own rate; the pipeline's is their sum.
SINK_ROWS = f"""
    SELECT t AS time, tbl AS metric, sum(rate) AS rows_per_s
    FROM (SELECT {time_bin("time", alias="t")}, labels ->> 'table' AS tbl,
                 instance,
                 avg(value) AS rate
          FROM pipeline_metrics
          WHERE component = 'sink' AND metric = 'rows_per_s' AND $__timeFilter(time)
          GROUP BY 1, 2, 3) per_instance
    GROUP BY 1, 2
    ORDER BY 1
"""

_P95 = """
    SELECT {bucket},
           percentile_cont(0.95) WITHIN GROUP (ORDER BY date_part('epoch', {delay}))
               AS "{name}"
    FROM {table}
    WHERE $__timeFilter({time}) AND {where}
    GROUP BY 1
    ORDER BY 1
"""
READING_TO_ALERT = _P95.format(
    bucket=time_bin("opened_at"), delay="ts_rule - ts_capture", name="capture → alarm p95",
    table="alerts", time="opened_at", where="ts_rule IS NOT NULL",
)  # fmt: skip
NOTIFICATION_DELAY = _P95.format(
    bucket=time_bin("created_at"), delay="sent_at - created_at",
    name="capture → notification p95", table="notifications", time="created_at",
    where="status = 'sent' AND sent_at IS NOT NULL",
)  # fmt: skip

# What each stage's supervisor said last: running, restarting (with why), stalled. A worker
# whose last report is more than a minute older than the range's end has gone silent (its
# supervisor is gone, or the metrics cannot reach the database).
STAGES = """
    SELECT u.component AS "Tahap",
           u.labels ->> 'worker' AS "Proses",
           CASE WHEN u.time < $__timeTo()::timestamptz - interval '1 minute' THEN 'silent'
                ELSE u.labels ->> 'state' END AS "Status",
           r.value AS "Restart",
           coalesce(u.labels ->> 'reason', '') AS "Alasan",
           u.time AS "Laporan terakhir"
    FROM (SELECT DISTINCT ON (component, labels ->> 'worker') *
          FROM pipeline_metrics
          WHERE metric = 'up' AND $__timeFilter(time)
          ORDER BY component, labels ->> 'worker', time DESC) u
    LEFT JOIN pipeline_metrics r
           ON r.component = u.component AND r.instance = u.instance AND r.time = u.time
              AND r.metric = 'restarts'
    ORDER BY 1, 2
"""

# Reasons name the source and quote the bad value; dropping the `sensor X:` prefix, what is
# quoted, the numbers and everything after a colon (a parser's details) groups them by kind.
DEAD_LETTERS = """
    SELECT stage AS "Tahap",
           btrim(split_part(regexp_replace(regexp_replace(
               regexp_replace(error, '^sensor [^:]+: ', ''),
               '''[^'']*''|"[^"]*"', '…', 'g'), '[0-9][0-9.]*', 'N', 'g'), ':', 1)) AS "Alasan",
           count(*) AS "Jumlah",
           max(time) AS "Terakhir"
    FROM dead_letters
    WHERE $__timeFilter(time)
    GROUP BY 1, 2
    ORDER BY 3 DESC
    LIMIT 50
"""


def _series(title: str, description: str, *targets: Sql, unit: str) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .unit(unit)
        .interval("1m")
        .line_width(2)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .height(8)
        .span(12)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def build(settings: Settings) -> db.Dashboard:
    del settings
    stages = (
        table.Panel()
        .title("Tahapan pipeline")
        .description(
            "Every long-running stage as its supervisor last reported it: running, restarting "
            "(with the reason: exit code and last error), stalled (no progress), stopped; "
            "silent when no report came for a minute. Restarts since the supervisor started."
        )
        .datasource(datasource())
        .with_target(Sql(STAGES))
        .override_by_name(
            *coloured_states(
                "Status",
                {
                    "running": ("berjalan", "green"),
                    "done": ("selesai", "text"),
                    "starting": ("memulai", "yellow"),
                    "restarting": ("memulai ulang", "orange"),
                    "stalled": ("macet", "red"),
                    "stopping": ("berhenti", "yellow"),
                    "stopped": ("berhenti", "red"),
                    "silent": ("diam", "red"),
                },
            )
        )
        .height(7)
        .span(24)
    )
    frames = (
        table.Panel()
        .title("Frame per kamera")
        .description(
            "Frames decoded at the camera, published to Kafka, and skipped by the motion gate "
            "or sampling, over the range; the latest published fps and status."
        )
        .datasource(datasource())
        .with_target(Sql(FRAMES))
        .override_by_name(
            *coloured_states(
                "Status",
                {
                    "online": (None, "green"),
                    "connecting": (None, "yellow"),
                    "reconnecting": (None, "orange"),
                    "stalled": (None, "red"),
                    "ended": (None, "text"),
                },
            )
        )
        .height(9)
        .span(12)
    )
    latency = _series(
        "Latensi detektor",
        "From frame capture to detection (includes Kafka transport and queueing).",
        Sql(DETECTOR_LATENCY, fmt="time_series"),
        unit="s",
    ).thresholds(thresholds((None, "green"), (1, "orange"), (5, "red")))
    dead = (
        table.Panel()
        .title("Data ditolak")
        .description("Input refused and dead-lettered in the range, by stage and reason.")
        .datasource(datasource())
        .with_target(Sql(DEAD_LETTERS))
        .height(8)
        .span(12)
    )
    return (
        db.Dashboard("Pantau — Kesehatan pipeline")
        .uid(UID)
        .description("Cameras, detector, Kafka, sink and alert latency: is everything keeping up?")
        .tags(["pantau", "pipeline"])
        .timezone(TIMEZONE)
        .time("now-6h", "now")
        .refresh("30s")
        .timepicker(timepicker())
        .with_variable(desa_variable().hide(dm.VariableHide.HIDE_VARIABLE))
        .with_variable(camera_variable())
        .with_panel(stages)
        .with_panel(frames)
        .with_panel(
            _series(
                "fps per kamera",
                "Frames published per second, per camera.",
                Sql(FPS, fmt="time_series"),
                unit="fps",
            )
            .interval("5m")
            .height(9)
        )
        .with_panel(latency)
        .with_panel(
            _series(
                "Lag konsumen Kafka",
                "Records waiting for each consumer group.",
                Sql(CONSUMER_LAG, fmt="time_series"),
                unit="short",
            )
        )
        .with_panel(
            _series(
                "Baris tersimpan per detik",
                "Rows the sink writes to the database per second, per table.",
                Sql(SINK_ROWS, fmt="time_series"),
                unit="rowsps",
            )
        )
        .with_panel(
            _series(
                "Latensi sampai alarm dan notifikasi",
                "95th percentile from the reading or frame being captured to the alarm rule "
                "firing, and to the notification being delivered.",
                Sql(READING_TO_ALERT, fmt="time_series", ref_id="A"),
                Sql(NOTIFICATION_DELAY, fmt="time_series", ref_id="B"),
                unit="s",
            )
        )
        .with_panel(dead)
    )
