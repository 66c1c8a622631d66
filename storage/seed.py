"""Synthetic history for benchmarks, dashboards and demos: `pantau db seed`.

Generates a plausible past for N sensors and M cameras spread over Mojokerto's desa —
readings every minute with daily rhythms, sampled detections, heartbeats, dumping events
with their alerts and notifications, and the sink's own metrics — directly in PostgreSQL
with `generate_series`, a day at a time. Seeded sources are named `seed-...` so they never
collide with real ones, and `--replace` removes a previous seed first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

log = logging.getLogger(__name__)

DESA = (
    ("Sooko", "Sooko", -7.492, 112.429),
    ("Japan", "Sooko", -7.501, 112.417),
    ("Gedeg", "Gedeg", -7.456, 112.405),
    ("Kemlagi", "Kemlagi", -7.417, 112.382),
    ("Lengkong", "Mojoanyar", -7.450, 112.415),
    ("Magersari", "Magersari", -7.481, 112.447),
    ("Kranggan", "Prajurit Kulon", -7.470, 112.434),
    ("Kauman", "Prajurit Kulon", -7.474, 112.440),
    ("Trowulan", "Trowulan", -7.560, 112.382),
    ("Puri", "Puri", -7.513, 112.463),
    ("Bangsal", "Bangsal", -7.487, 112.493),
    ("Mojosari", "Mojosari", -7.515, 112.558),
)


@dataclass(frozen=True)
class SeedPlan:
    end: datetime
    days: int
    sensors: int
    cameras: int
    interval_s: int = 60

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)


def seed(
    conn: psycopg.Connection,
    plan: SeedPlan,
    *,
    replace: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Insert the synthetic history; returns rows written per table."""
    conn.autocommit = True
    if replace:
        _remove_previous(conn)
    _registries(conn, plan)
    written: dict[str, int] = {}

    def run(table: str, statement: str, **params: object) -> None:
        cursor = conn.execute(statement.encode(), params)
        written[table] = written.get(table, 0) + max(cursor.rowcount, 0)

    day = plan.start
    while day < plan.end:
        until = min(day + timedelta(days=1), plan.end)
        window = {"lo": day, "hi": until, "step": timedelta(seconds=plan.interval_s)}
        run("sensor_readings", _READINGS, **window)
        run("detections", _DETECTIONS, **window)
        run("camera_health", _HEALTH, **window)
        run("camera_view_changes", _VIEW_CHANGES, **window)
        run("pipeline_metrics", _METRICS, **window)
        run("pipeline_metrics", _SUPERVISED, **window)
        run("dumping_events", _EVENTS, **window)
        run("dead_letters", _DEAD_LETTERS, **window)
        if progress is not None:
            progress(day.date().isoformat(), sum(written.values()))
        day = until
    run("alerts", _ALERTS, lo=plan.start, hi=plan.end)
    run("notifications", _NOTIFICATIONS, lo=plan.start, hi=plan.end)
    run("alarm_history", _ALARM_HISTORY, lo=plan.start, hi=plan.end)
    conn.execute("ANALYZE")
    return written


def _remove_previous(conn: psycopg.Connection) -> None:
    conn.execute(
        "DELETE FROM alarm_history h USING alerts a "
        "WHERE a.alarm_id = h.alarm_id AND a.source_id LIKE 'seed-%'"
    )
    for table, column in (
        ("sensor_readings", "sensor_id"),
        ("sensor_readings_hourly", "sensor_id"),
        ("detections", "camera_id"),
        ("camera_health", "camera_id"),
        ("camera_view_changes", "camera_id"),
        ("dumping_events", "camera_id"),
        ("alerts", "source_id"),
        ("zones", "camera_id"),
        ("cameras", "camera_id"),
        ("sensors", "sensor_id"),
    ):
        conn.execute(f"DELETE FROM {table} WHERE {column} LIKE 'seed-%'".encode())  # noqa: S608
    conn.execute("DELETE FROM pipeline_metrics WHERE instance = 'seed' OR instance LIKE 'seed/%'")
    conn.execute("DELETE FROM dead_letters WHERE source_key LIKE 'seed-%'")
    conn.execute(
        "DELETE FROM notifications WHERE NOT EXISTS "
        "(SELECT 1 FROM alerts a WHERE a.alarm_id = notifications.alarm_id)"
    )


def _registries(conn: psycopg.Connection, plan: SeedPlan) -> None:
    kinds = ("air_quality", "air_quality", "water_level", "waste_container")
    with conn.transaction():
        for i in range(plan.sensors):
            desa, kecamatan, lat, lon = DESA[i % len(DESA)]
            kind = kinds[i % len(kinds)]
            conn.execute(
                "INSERT INTO sensors (sensor_id, type, name, lat, lon, desa, kecamatan) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (sensor_id) DO NOTHING",
                (
                    f"seed-{kind.split('_')[0]}-{i:04d}",
                    kind,
                    f"{kind} {desa} {i}",
                    lat + (i % 17) * 0.0011,
                    lon + (i % 13) * 0.0013,
                    desa,
                    kecamatan,
                ),
            )
        for i in range(plan.cameras):
            desa, kecamatan, lat, lon = DESA[i % len(DESA)]
            camera = f"seed-cam-{i:03d}"
            conn.execute(
                "INSERT INTO cameras (camera_id, name, lat, lon, desa, kecamatan) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (camera_id) DO NOTHING",
                (camera, f"TPS {desa} {i}", lat - 0.002, lon + 0.002, desa, kecamatan),
            )
            conn.execute(
                "INSERT INTO zones (camera_id, zone_id, name, kind, polygon, dwell_s) "
                "VALUES (%s, 'tepi-jalan', 'Tepi jalan', 'watch', "
                "'[[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]', 30) "
                "ON CONFLICT DO NOTHING",
                (camera,),
            )


# The SQL below draws values from the hour of the day in WIB and from hashes of the source
# id, so that every sensor and camera has its own level and the days look alike but not
# identical. `random()` adds noise.

_READINGS = """
INSERT INTO sensor_readings (time, sensor_id, quantity, value, seq, ingested_at)
SELECT t, s.sensor_id, q.quantity,
       CASE q.quantity
         WHEN 'pm25' THEN round((base * (0.75 + 0.6 * exp(-power(h - 7, 2) / 4.5)
                                 + 0.9 * exp(-power(h - 19, 2) / 8)) * (0.9 + 0.2 * random()))::numeric, 1)
         WHEN 'pm10' THEN round((base * 1.7 * (0.75 + 0.6 * exp(-power(h - 7, 2) / 4.5)
                                 + 0.9 * exp(-power(h - 19, 2) / 8)) * (0.9 + 0.2 * random()))::numeric, 1)
         WHEN 'waterLevel' THEN round((1.6 + base / 60 + 0.4 * sin(extract(epoch FROM t) / 86400 / 3)
                                 + 0.02 * random())::numeric, 3)
         -- Containers fill over about a day and a half and are emptied; their phases are
         -- spread by the golden ratio over the containers' own ordinals (every fourth
         -- sensor is one), so that at any moment one of six or more is at 90 %% or above.
         ELSE round(least(1.0, (fill - floor(fill)) * 1.3)::numeric, 3)
       END,
       (extract(epoch FROM t) / 60)::bigint,
       t + interval '2 seconds'
FROM sensors s
CROSS JOIN LATERAL (SELECT 20 + abs(hashtext(s.sensor_id)) %% 30 AS base,
                           substring(s.sensor_id FROM '[0-9]+$')::int / 4 * 0.618034 AS phase)
     AS b
JOIN LATERAL (VALUES ('air_quality', 'pm25'), ('air_quality', 'pm10'),
                     ('water_level', 'waterLevel'), ('waste_container', 'fillingLevel'))
     AS q (type, quantity) ON q.type = s.type
CROSS JOIN generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 microsecond',
                           %(step)s::interval) AS t
CROSS JOIN LATERAL (SELECT extract(hour FROM t AT TIME ZONE 'Asia/Jakarta')
                           + extract(minute FROM t) / 60.0 AS h,
                           extract(epoch FROM t) / 86400 * 0.7 + phase AS fill) AS hh
WHERE s.sensor_id LIKE 'seed-%%'
ON CONFLICT DO NOTHING
"""

_DETECTIONS = """
INSERT INTO detections (time, camera_id, frame_id, box_index, class_id, label, confidence,
                        x1, y1, x2, y2, track_id, model, frame_width, frame_height, detected_at)
SELECT t, c.camera_id, gen_random_uuid(), 0, l.class_id, l.label,
       round((0.4 + 0.55 * random())::numeric, 3), 100, 80, 180, 300,
       (extract(epoch FROM t) / 30)::bigint %% 100000, 'yolo11n_int8_openvino_model', 640, 360,
       t + interval '80 milliseconds'
FROM cameras c
CROSS JOIN generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 microsecond',
                           interval '30 seconds') AS t
CROSS JOIN LATERAL (SELECT (ARRAY[0, 0, 0, 3, 3, 2, 1, 24, 26, 7])[1 + (abs(hashtext(
                               c.camera_id || t::text)) %% 10)] AS class_id) AS k
JOIN (VALUES (0, 'person'), (1, 'bicycle'), (2, 'car'), (3, 'motorcycle'), (7, 'truck'),
             (24, 'backpack'), (26, 'handbag')) AS l (class_id, label) USING (class_id)
WHERE c.camera_id LIKE 'seed-%%'
  AND extract(hour FROM t AT TIME ZONE 'Asia/Jakarta') BETWEEN 5 AND 22
ON CONFLICT DO NOTHING
"""

_HEALTH = """
INSERT INTO camera_health (time, camera_id, status, fps, frames_decoded, frames_published,
                           frames_skipped, reconnects, last_error, heartbeat_id)
SELECT t, c.camera_id, st.status, CASE WHEN st.status = 'online' THEN 4.9 + 0.2 * random() ELSE 0 END,
       (extract(epoch FROM t - %(lo)s::timestamptz) * 10)::bigint,
       (extract(epoch FROM t - %(lo)s::timestamptz) * 2)::bigint,
       (extract(epoch FROM t - %(lo)s::timestamptz) * 8)::bigint,
       0, NULL, gen_random_uuid()
FROM cameras c
CROSS JOIN generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 microsecond',
                           interval '1 minute') AS t
CROSS JOIN LATERAL (SELECT CASE WHEN abs(hashtext(c.camera_id || date_trunc('hour', t)::text)) %% 50 = 0
                                THEN 'reconnecting' ELSE 'online' END AS status) AS st
WHERE c.camera_id LIKE 'seed-%%'
ON CONFLICT DO NOTHING
"""

# Now and then a camera is turned, covered or fogged, and back two minutes later.
_VIEW_CHANGES = """
INSERT INTO camera_view_changes (time, id, camera_id, condition, phase, changed_frac,
                                 brightness_spread, sharpness_ratio, relearn_s)
SELECT t + v.after, gen_random_uuid(), c.camera_id, k.condition, v.phase,
       CASE WHEN k.condition = 'moved' AND v.phase = 'start' THEN 0.6 + 0.3 * random()
            ELSE 0.05 * random() END,
       CASE WHEN k.condition = 'covered' AND v.phase = 'start' THEN 2 + 3 * random()
            ELSE 40 + 20 * random() END,
       CASE WHEN k.condition = 'blurred' AND v.phase = 'start' THEN 0.05 + 0.1 * random()
            ELSE 0.9 + 0.2 * random() END,
       CASE WHEN k.condition = 'moved' AND v.phase = 'start' THEN 120 ELSE 0 END
FROM cameras c
CROSS JOIN generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 microsecond',
                           interval '6 hours') AS t
CROSS JOIN LATERAL (SELECT (ARRAY['moved', 'covered', 'blurred'])
                           [1 + abs(hashtext(c.camera_id || t::text)) %% 3] AS condition) AS k
CROSS JOIN (VALUES ('start', interval '0'), ('end', interval '2 minutes')) AS v (phase, after)
WHERE c.camera_id LIKE 'seed-%%' AND abs(hashtext(c.camera_id || t::text || 'view')) %% 3 = 0
ON CONFLICT DO NOTHING
"""

_METRICS = """
INSERT INTO pipeline_metrics (time, component, instance, metric, value, unit, labels)
SELECT t, 'sink', 'seed', m.metric, m.value, m.unit, m.labels::jsonb
FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 microsecond',
                     interval '10 seconds') AS t
CROSS JOIN LATERAL (VALUES
    ('rows_per_s', 900 + 200 * random(), 'rows/s', '{"table": "sensor_readings"}'),
    ('rows_per_s', 30 + 10 * random(), 'rows/s', '{"table": "detections"}'),
    ('consumer_lag', floor(20 * random()), 'records', '{}'),
    ('capture_to_stored_p95_s', 0.8 + 0.6 * random(), 's', '{}')
) AS m (metric, value, unit, labels)
ON CONFLICT DO NOTHING
"""

# What the supervisors of the long-running stages report, a minute apart: up, and restarts;
# now and then a worker restarting, with the reason a supervisor gives.
_SUPERVISED = """
INSERT INTO pipeline_metrics (time, component, instance, metric, value, unit, labels)
SELECT t, c.component, 'seed/' || c.worker, m.metric,
       CASE m.metric WHEN 'up' THEN CASE WHEN st.down THEN 0 ELSE 1 END
                     ELSE floor(extract(epoch FROM t - %(lo)s::timestamptz) / 86400) END,
       m.unit,
       jsonb_build_object('worker', c.worker, 'state',
                          CASE WHEN st.down THEN 'restarting' ELSE 'running' END)
       || CASE WHEN st.down THEN jsonb_build_object('reason', c.reason) ELSE '{}' END
FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 microsecond',
                     interval '1 minute') AS t
CROSS JOIN (VALUES
    ('ingest-camera', 'ingest-camera', 'exited with code 1: camera seed-03 unreachable'),
    ('ingest-sensors', 'ingest-sensors', 'exited with code 1: MQTT connection refused'),
    ('detect', 'detect', 'killed by SIGKILL'),
    ('streams', 'streams', 'exited with code 75'),
    ('sink', 'sink-1', 'exited with code 1: database unavailable'),
    ('sink', 'sink-2', 'exited with code 1: database unavailable'),
    ('notify', 'notify', 'no progress for 120 s: stopped to start afresh')
) AS c (component, worker, reason)
CROSS JOIN LATERAL (SELECT abs(hashtext(c.worker || date_trunc('hour', t)::text)) %% 97 = 0
                           AS down) AS st
CROSS JOIN (VALUES ('up', ''), ('restarts', 'restarts')) AS m (metric, unit)
ON CONFLICT DO NOTHING
"""

# A few refused inputs an hour, with the reasons the stages really give.
_DEAD_LETTERS = """
INSERT INTO dead_letters (time, id, stage, source_kind, source_topic, source_partition,
                          source_offset, source_key, error, original)
SELECT t, gen_random_uuid(), d.stage, d.kind, d.topic, 0, (extract(epoch FROM t))::bigint,
       s.sensor_id, replace(d.error, '{id}', s.sensor_id), convert_to('{"seed": true}', 'UTF8')
FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 microsecond',
                     interval '10 minutes') AS t
CROSS JOIN LATERAL (SELECT sensor_id FROM sensors WHERE sensor_id LIKE 'seed-%%'
                    ORDER BY sensor_id OFFSET (extract(epoch FROM t) / 600)::bigint %% 40
                    LIMIT 1) AS s
CROSS JOIN LATERAL (SELECT * FROM (VALUES
    (0, 'ingest-sensors', 'mqtt', 'pantau/sensors', 'sensor {id}: missing timestamp dateObserved'),
    (1, 'ingest-sensors', 'mqtt', 'pantau/sensors', 'unknown sensor ''{id}'': not in the sensor registry'),
    (2, 'ingest-sensors', 'mqtt', 'pantau/sensors', 'sensor {id}: waterLevel 41.0 m is out of range'),
    (3, 'ingest-http', 'http', 'POST /v1/readings', 'sensor {id}: duplicate seq 1207'),
    (4, 'sink', 'kafka', 'sensors.readings.v1', 'payload is not JSON: Expecting value')
) AS v (n, stage, kind, topic, error)
WHERE v.n = abs(hashtext(t::text)) %% 7) AS d
ON CONFLICT DO NOTHING
"""

_EVENTS = """
INSERT INTO dumping_events (appeared_at, event_id, camera_id, zone_id, state, phase, version,
                            owner_left_at, alerted_at, ended_at, x1, y1, x2, y2, label,
                            owner_track_id, confidence, evidence, updated_at)
SELECT t, gen_random_uuid(), c.camera_id, 'tepi-jalan',
       CASE WHEN r < 0.7 THEN 'cleaned' WHEN r < 0.85 THEN 'expired' ELSE 'alerted' END,
       CASE WHEN r < 0.85 THEN 'end' ELSE 'update' END, 3,
       t + interval '20 seconds', t + interval '50 seconds',
       CASE WHEN r < 0.85 THEN t + make_interval(mins => (30 + r * 600)::int) END,
       300, 250, 340, 300, (ARRAY['handbag', 'backpack', 'suitcase', NULL])[1 + (abs(hashtext(t::text)) %% 4)],
       (abs(hashtext(c.camera_id || t::text)) %% 1000), round((0.6 + 0.4 * r)::numeric, 3),
       ('[{"kind": "alert", "uri": "file:///var/lib/pantau/evidence/seed.jpg", "sha256": "'
         || repeat('ab', 32) || '"}]')::jsonb,
       t + interval '50 seconds'
FROM cameras c
CROSS JOIN generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 microsecond',
                           interval '1 hour') AS t
-- Each event draws its own fate (cleaned, expired or still there) and time to clean: a
-- random() in a subquery of its own would be drawn once for the whole day.
CROSS JOIN LATERAL (SELECT (abs(hashtext('fate/' || c.camera_id || t::text)) %% 10000)
                           / 10000.0 AS r) AS rr
WHERE c.camera_id LIKE 'seed-%%'
  -- About three a day per camera, more in the evening and at night (WIB).
  AND abs(hashtext(c.camera_id || t::text)) %% 24 < CASE
        WHEN extract(hour FROM t AT TIME ZONE 'Asia/Jakarta') BETWEEN 18 AND 23 THEN 8
        WHEN extract(hour FROM t AT TIME ZONE 'Asia/Jakarta') < 5 THEN 4 ELSE 1 END
ON CONFLICT DO NOTHING
"""

_ALERTS = """
INSERT INTO alerts (opened_at, alarm_id, version, source_kind, source_id, alarm_type, severity,
                    state, count, last_value, message, updated_at, acknowledged_at,
                    dispatched_at, resolved_at, cleared_at, ts_capture, ts_ingest, ts_rule,
                    ts_notified, event_id)
SELECT e.alerted_at, gen_random_uuid(), 4, 'dumping', e.camera_id, 'dumping', 'major',
       CASE WHEN e.state = 'cleaned' THEN 'RESOLVED' WHEN e.state = 'expired' THEN 'FALSE_POSITIVE'
            ELSE 'OPEN' END,
       1, NULL::float8, 'Pembuangan sampah liar di ' || e.camera_id,
       coalesce(e.ended_at, e.alerted_at), e.alerted_at + interval '3 minutes',
       e.alerted_at + interval '10 minutes', e.ended_at, NULL::timestamptz,
       e.appeared_at + interval '49 seconds', e.appeared_at + interval '49.2 seconds',
       e.alerted_at, e.alerted_at + (0.3 + random()) * interval '1 second', e.event_id
FROM dumping_events e
WHERE e.camera_id LIKE 'seed-%%' AND e.appeared_at >= %(lo)s AND e.appeared_at < %(hi)s
UNION ALL
SELECT t, gen_random_uuid(), 2, 'sensor', s.sensor_id,
       CASE s.type WHEN 'water_level' THEN 'threshold' WHEN 'air_quality' THEN 'threshold'
            ELSE 'fill_level' END,
       CASE s.type WHEN 'water_level' THEN 'critical' ELSE 'minor' END,
       CASE WHEN random() < 0.9 THEN 'CLEARED' ELSE 'OPEN' END, 1 + (random() * 5)::int,
       NULL::float8, 'Ambang terlampaui', t + interval '20 minutes', NULL::timestamptz,
       NULL::timestamptz, NULL::timestamptz,
       t + interval '40 minutes', t - interval '1 second', t - interval '0.9 seconds', t,
       t + (0.2 + random()) * interval '1 second', NULL::uuid
FROM sensors s
CROSS JOIN generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz, interval '6 hours') AS t
WHERE s.sensor_id LIKE 'seed-%%' AND abs(hashtext(s.sensor_id || t::text)) %% 10 = 0
ON CONFLICT DO NOTHING
"""

# Each seeded alarm's versions: opened by the pipeline; acknowledged, dispatched and resolved
# by a seeded operator where the alarm says so.
_ALARM_HISTORY = """
INSERT INTO alarm_history (opened_at, alarm_id, version, time, state, change, severity, count,
                           message, by, device, note, dispatched_to)
SELECT a.opened_at, a.alarm_id, v.version, v.time, v.state, v.change, a.severity, a.count,
       a.message, v.by, v.device, v.note, v.dispatched_to
FROM alerts a
CROSS JOIN LATERAL (VALUES
    (0, a.opened_at, 'OPEN', 'opened', '', '', '', NULL),
    (1, a.acknowledged_at, 'ACK', 'acknowledged', 'seed-operator', 'console (desktop)', '', NULL),
    (2, a.dispatched_at, 'DISPATCHED', 'dispatched', 'seed-operator', 'console (desktop)', '',
     'Regu kebersihan'),
    (3, a.resolved_at, a.state, lower(a.state), 'seed-field', 'console (phone)',
     'sudah dibersihkan', NULL),
    (4, a.cleared_at, 'CLEARED', 'cleared', '', '', '', NULL)
) AS v (version, time, state, change, by, device, note, dispatched_to)
WHERE a.source_id LIKE 'seed-%%' AND a.opened_at >= %(lo)s AND a.opened_at <= %(hi)s
  AND v.time IS NOT NULL
ON CONFLICT DO NOTHING
"""

_NOTIFICATIONS = """
INSERT INTO notifications (created_at, notification_id, alarm_id, alarm_version, channel,
                           recipient, status, attempts, error, sent_at)
SELECT a.ts_rule, gen_random_uuid(), a.alarm_id, 1, ch.channel, ch.recipient,
       CASE WHEN random() < 0.99 THEN 'sent' ELSE 'failed' END, 1, NULL, a.ts_notified
FROM alerts a
CROSS JOIN (VALUES ('telegram', 'chat -100777'), ('email', 'dlh@mojokertokab.go.id'))
     AS ch (channel, recipient)
WHERE a.source_id LIKE 'seed-%%' AND a.opened_at >= %(lo)s AND a.opened_at <= %(hi)s
ON CONFLICT DO NOTHING
"""
