-- Two more of the DLH's service figures: dumping again at a place that was dumped on before
-- (within 7 and 30 days), and how often each camera's dumping alarms were called false (to
-- tune the camera's zones, or move it). Plain views, read as the data stands now; a filter on
-- their time column reaches the partitions (chunks) below. Valid on PostgreSQL 15 with or
-- without TimescaleDB.

-- One row per dumping alarm: how people judged it.
CREATE VIEW dumping_verdicts AS
SELECT a.opened_at,
       date_trunc('week', a.opened_at, 'Asia/Jakarta') AS week,
       a.alarm_id,
       a.event_id,
       a.source_id AS camera_id,
       c.desa,
       c.kecamatan,
       a.state,
       a.state IN ('RESOLVED', 'FALSE_POSITIVE') AS judged,
       a.state = 'FALSE_POSITIVE'                AS false_alarm,
       r.reason
FROM alerts a
LEFT JOIN cameras c ON c.camera_id = a.source_id
-- The reason given with the latest false_positive version: an alarm called false, reopened
-- and called false again keeps the second reason.
LEFT JOIN LATERAL (
    SELECT h.reason
    FROM alarm_history h
    WHERE h.alarm_id = a.alarm_id AND h.opened_at = a.opened_at AND h.change = 'false_positive'
    ORDER BY h.version DESC
    LIMIT 1
) AS r ON a.state = 'FALSE_POSITIVE'
WHERE a.source_kind = 'dumping';

COMMENT ON VIEW dumping_verdicts IS 'One row per dumping alarm: whether people judged it (resolved, or called it a false alarm) and why a false one was false. Filter on opened_at to read a period.';
COMMENT ON COLUMN dumping_verdicts.opened_at IS 'when the alarm opened; filter on it to read only a period';
COMMENT ON COLUMN dumping_verdicts.week IS 'the WIB week the alarm opened in: Monday 00:00 Asia/Jakarta';
COMMENT ON COLUMN dumping_verdicts.camera_id IS 'the camera that saw the dumping';
COMMENT ON COLUMN dumping_verdicts.state IS 'the alarm''s state now';
COMMENT ON COLUMN dumping_verdicts.judged IS 'true: someone resolved it or called it a false alarm; false: still open, acknowledged or dispatched';
COMMENT ON COLUMN dumping_verdicts.false_alarm IS 'true: someone called it a false alarm (state FALSE_POSITIVE)';
COMMENT ON COLUMN dumping_verdicts.reason IS 'for a false alarm, the reason given: not_rubbish, belongs_there, person_present, camera_moved, other (NULL when none was given)';

CREATE VIEW camera_false_alarms_weekly AS
SELECT week,
       camera_id,
       desa,
       kecamatan,
       count(*)                                    AS alarms,
       count(*) FILTER (WHERE judged)              AS judged,
       count(*) FILTER (WHERE false_alarm)         AS false_alarms,
       (count(*) FILTER (WHERE false_alarm))::float8
           / nullif(count(*) FILTER (WHERE judged), 0) AS false_share,
       mode() WITHIN GROUP (ORDER BY reason)       AS top_reason
FROM dumping_verdicts
GROUP BY week, camera_id, desa, kecamatan;

COMMENT ON VIEW camera_false_alarms_weekly IS 'Dumping alarms per camera and WIB week: how many were judged, how many were false alarms, their share, and the reason given most. A camera with a high share needs its zones tuned or to be moved. Filter on week to read a period.';
COMMENT ON COLUMN camera_false_alarms_weekly.week IS 'Monday 00:00 WIB (Asia/Jakarta) of the week the alarms opened in';
COMMENT ON COLUMN camera_false_alarms_weekly.alarms IS 'dumping alarms the camera raised that week';
COMMENT ON COLUMN camera_false_alarms_weekly.judged IS 'of them, resolved or called false so far';
COMMENT ON COLUMN camera_false_alarms_weekly.false_alarms IS 'of them, called false alarms';
COMMENT ON COLUMN camera_false_alarms_weekly.false_share IS 'false_alarms / judged (0..1); NULL while none was judged';
COMMENT ON COLUMN camera_false_alarms_weekly.top_reason IS 'the false-alarm reason given most often that week (NULL when none was given)';

-- One row per dumping event that raised an alarm and was not called a false alarm: was the
-- same place (camera and zone) dumped on before, and how long before. The look-back reaches
-- 30 days before the event, whatever period the query reads.
--
-- The false alarms' events are read once per query into a hashed set (NOT IN over a
-- subquery): the place's previous events are then walked newest first through the camera's
-- index and the walk stops at the first real one.
CREATE VIEW dumping_false_alarm_events AS
SELECT event_id FROM alerts WHERE state = 'FALSE_POSITIVE' AND event_id IS NOT NULL;

COMMENT ON VIEW dumping_false_alarm_events IS 'The dumping events whose alarm people called false.';

CREATE VIEW dumping_repeats AS
SELECT e.appeared_at,
       date_trunc('week', e.appeared_at, 'Asia/Jakarta') AS week,
       e.event_id,
       e.camera_id,
       e.zone_id,
       c.desa,
       c.kecamatan,
       p.previous_at,
       (extract(epoch FROM e.appeared_at - p.previous_at) / 86400)::float8 AS days_since_previous,
       coalesce(p.previous_at > e.appeared_at - interval '7 days', false) AS again_within_7d,
       p.previous_at IS NOT NULL                                          AS again_within_30d
FROM dumping_events e
LEFT JOIN cameras c ON c.camera_id = e.camera_id
LEFT JOIN LATERAL (
    SELECT q.appeared_at AS previous_at
    FROM dumping_events q
    WHERE q.camera_id = e.camera_id
      AND q.zone_id IS NOT DISTINCT FROM e.zone_id
      AND q.appeared_at < e.appeared_at
      AND q.appeared_at >= e.appeared_at - interval '30 days'
      AND q.alerted_at IS NOT NULL
      AND q.event_id NOT IN (SELECT event_id FROM dumping_false_alarm_events)
    ORDER BY q.appeared_at DESC
    LIMIT 1
) AS p ON true
WHERE e.alerted_at IS NOT NULL
  AND e.event_id NOT IN (SELECT event_id FROM dumping_false_alarm_events);

COMMENT ON VIEW dumping_repeats IS 'One row per dumping event that raised an alarm (false alarms left out): whether the same place, camera and zone, had dumping within the 7 and 30 days before. Filter on appeared_at to read a period.';
COMMENT ON COLUMN dumping_repeats.appeared_at IS 'when the object appeared; filter on it to read only a period';
COMMENT ON COLUMN dumping_repeats.week IS 'the WIB week the object appeared in: Monday 00:00 Asia/Jakarta';
COMMENT ON COLUMN dumping_repeats.zone_id IS 'the camera''s zone it lay in (NULL: no zone); the place is the camera and zone';
COMMENT ON COLUMN dumping_repeats.previous_at IS 'when the place''s previous dumping (not a false alarm) appeared, if within 30 days';
COMMENT ON COLUMN dumping_repeats.days_since_previous IS 'days from previous_at to this one';
COMMENT ON COLUMN dumping_repeats.again_within_7d IS 'true: the place had dumping within the 7 days before';
COMMENT ON COLUMN dumping_repeats.again_within_30d IS 'true: the place had dumping within the 30 days before';

GRANT SELECT ON dumping_verdicts, camera_false_alarms_weekly, dumping_false_alarm_events,
                dumping_repeats
    TO pantau_analyst, pantau_grafana;
