-- The clean-up loop, measured: how long each alarm waited until someone took it on
-- (acknowledged), sent someone to the place (dispatched), and until the place was clean
-- again; per alarm, and per WIB week, desa and kind of alarm. Time to clean is the DLH's own
-- service level.
--
-- Plain views, read as the life cycle stands now. alarm_response keeps each alarm's own
-- columns as they are, so a filter on opened_at (or the source, state, type) reaches the
-- partitions (chunks) of alerts below it; the history and the dumping events are joined as
-- wholes (hash joins), which keeps even a scan of every week to a few seconds.
-- Valid on PostgreSQL 15 with or without TimescaleDB.

CREATE VIEW alarm_response AS
SELECT a.alarm_id,
       a.opened_at,
       date_trunc('week', a.opened_at, 'Asia/Jakarta') AS week,
       a.source_kind,
       a.source_id,
       a.alarm_type,
       k.kind,
       coalesce(c.desa, s.desa)           AS desa,
       coalesce(c.kecamatan, s.kecamatan) AS kecamatan,
       a.state,
       a.acknowledged_at,
       a.dispatched_at,
       cl.cleaned_at,
       cl.cleaned_via,
       (extract(epoch FROM a.acknowledged_at - a.opened_at) / 60)::float8 AS minutes_to_ack,
       (extract(epoch FROM a.dispatched_at - a.opened_at) / 60)::float8   AS minutes_to_dispatch,
       (extract(epoch FROM cl.cleaned_at - a.opened_at) / 60)::float8     AS minutes_to_clean,
       CASE WHEN cl.cleaned_at <= a.opened_at + interval '1 day' THEN true
            WHEN a.state <> 'FALSE_POSITIVE' AND a.opened_at + interval '1 day' <= now()
                THEN false
       END AS cleaned_within_day
FROM (
    -- The first version of each step. An alarm that was cleared and came back keeps its
    -- acknowledged_at until the next acknowledgement overwrites it: the history remembers
    -- the first. The alarm's own columns stand in for alarms stored without a history.
    -- Every column is grouped on (one alarm, one group), so filters on them go below.
    SELECT a.alarm_id, a.opened_at, a.source_kind, a.source_id, a.alarm_type, a.state,
           a.quantity, a.event_id,
           least(min(h.time) FILTER (WHERE h.change = 'acknowledged'), a.acknowledged_at)
               AS acknowledged_at,
           least(min(h.time) FILTER (WHERE h.change = 'dispatched'), a.dispatched_at)
               AS dispatched_at,
           -- A false positive stamps resolved_at too, with state FALSE_POSITIVE.
           least(min(h.time) FILTER (WHERE h.change = 'resolved'),
                 CASE WHEN a.state = 'RESOLVED' THEN a.resolved_at END) AS resolved_at,
           least(min(h.time) FILTER (WHERE h.change = 'cleared'), a.cleared_at) AS cleared_at
    FROM alerts a
    LEFT JOIN alarm_history h
           ON h.alarm_id = a.alarm_id AND h.opened_at = a.opened_at
          AND h.change IN ('acknowledged', 'dispatched', 'resolved', 'cleared')
    GROUP BY a.alarm_id, a.opened_at, a.source_kind, a.source_id, a.alarm_type, a.state,
             a.quantity, a.event_id, a.acknowledged_at, a.dispatched_at, a.resolved_at,
             a.cleared_at
) AS a
LEFT JOIN cameras c ON a.source_kind IN ('dumping', 'camera') AND c.camera_id = a.source_id
LEFT JOIN sensors s ON a.source_kind = 'sensor' AND s.sensor_id = a.source_id
-- The camera saw the spot cleaned: the event ended 'cleaned' (not 'picked_up' by whoever
-- brought it, nor 'expired'). One row per event.
LEFT JOIN dumping_events e ON e.event_id = a.event_id AND e.state = 'cleaned'
CROSS JOIN LATERAL (
    SELECT CASE WHEN a.source_kind = 'dumping' THEN 'dumping'
                WHEN a.source_kind = 'sensor' AND s.type = 'waste_container' THEN 'tps'
                ELSE 'other' END AS kind
) AS k
-- Cleaned: the first of a person resolving it, the camera seeing the spot cleaned, and for a
-- TPS fill-level alarm the level falling back (the alarm cleared: the container was
-- emptied). A false alarm is never cleaned.
CROSS JOIN LATERAL (
    SELECT a.resolved_at AS resolved,
           e.ended_at    AS camera,
           CASE WHEN k.kind = 'tps' AND a.quantity = 'fillingLevel' THEN a.cleared_at END
                         AS emptied
) AS w
CROSS JOIN LATERAL (
    SELECT CASE WHEN a.state <> 'FALSE_POSITIVE'
                THEN least(w.resolved, w.camera, w.emptied) END AS cleaned_at
) AS c0
CROSS JOIN LATERAL (
    SELECT c0.cleaned_at,
           CASE WHEN c0.cleaned_at = w.camera THEN 'camera'
                WHEN c0.cleaned_at = w.emptied THEN 'emptied'
                WHEN c0.cleaned_at = w.resolved THEN 'resolved' END AS cleaned_via
) AS cl;

COMMENT ON VIEW alarm_response IS 'One row per alarm: when it was first acknowledged, dispatched and cleaned, and how many minutes after it opened. Filter on opened_at (or week) to read a period.';
COMMENT ON COLUMN alarm_response.opened_at IS 'when the alarm opened (the alert); filter on it to read only a period';
COMMENT ON COLUMN alarm_response.week IS 'the WIB week the alarm opened in: Monday 00:00 Asia/Jakarta';
COMMENT ON COLUMN alarm_response.kind IS 'dumping (illegal dumping seen by a camera), tps (an alarm of a waste_container sensor), other (water, air, silent sensors, offline cameras)';
COMMENT ON COLUMN alarm_response.desa IS 'desa of the camera (dumping and camera alarms) or of the sensor';
COMMENT ON COLUMN alarm_response.kecamatan IS 'kecamatan of the camera or of the sensor';
COMMENT ON COLUMN alarm_response.state IS 'the alarm''s state now: OPEN, ACK, DISPATCHED, RESOLVED, FALSE_POSITIVE or CLEARED';
COMMENT ON COLUMN alarm_response.acknowledged_at IS 'first acknowledgement: the time of the first acknowledged version in alarm_history (alerts.acknowledged_at for an alarm without history)';
COMMENT ON COLUMN alarm_response.dispatched_at IS 'first dispatch: the time of the first dispatched version in alarm_history (alerts.dispatched_at for an alarm without history)';
COMMENT ON COLUMN alarm_response.cleaned_at IS 'the earliest of: a person resolved it (first resolved version; a false positive does not count), the camera saw the spot cleaned (dumping_events.ended_at of its event, state cleaned), and for a TPS fillingLevel alarm the first clear (the container emptied); NULL for a false alarm (state FALSE_POSITIVE) and while none of these happened';
COMMENT ON COLUMN alarm_response.cleaned_via IS 'which came first: resolved (a person), camera (the event ended cleaned) or emptied (the TPS level fell back); at the same instant camera, then emptied, then resolved';
COMMENT ON COLUMN alarm_response.minutes_to_ack IS 'minutes from opened_at to acknowledged_at';
COMMENT ON COLUMN alarm_response.minutes_to_dispatch IS 'minutes from opened_at to dispatched_at';
COMMENT ON COLUMN alarm_response.minutes_to_clean IS 'minutes from opened_at to cleaned_at: the DLH''s time to clean';
COMMENT ON COLUMN alarm_response.cleaned_within_day IS 'true: cleaned within 24 hours of opening; false: not, and the 24 hours are over; NULL: a false alarm, or opened less than 24 hours ago and not cleaned yet';

CREATE VIEW alarm_response_weekly AS
SELECT week,
       kecamatan,
       desa,
       kind,
       count(*)                                           AS alarms,
       count(acknowledged_at)                             AS acknowledged,
       count(dispatched_at)                               AS dispatched,
       count(cleaned_at)                                  AS cleaned,
       count(*) FILTER (WHERE state = 'FALSE_POSITIVE')   AS false_positives,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY minutes_to_ack)      AS median_minutes_to_ack,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY minutes_to_ack)      AS p90_minutes_to_ack,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY minutes_to_dispatch) AS median_minutes_to_dispatch,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY minutes_to_dispatch) AS p90_minutes_to_dispatch,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY minutes_to_clean)    AS median_minutes_to_clean,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY minutes_to_clean)    AS p90_minutes_to_clean,
       avg(cleaned_within_day::int)::float8               AS share_cleaned_within_day
FROM alarm_response
GROUP BY week, kecamatan, desa, kind;

COMMENT ON VIEW alarm_response_weekly IS 'Response times per WIB week, desa and kind of alarm (from alarm_response): alarms, how many were acknowledged, dispatched and cleaned, median and 90th percentile minutes to each step, and the share cleaned within a day. Filter on week to read a period.';
COMMENT ON COLUMN alarm_response_weekly.week IS 'Monday 00:00 WIB (Asia/Jakarta) of the week the alarms opened in';
COMMENT ON COLUMN alarm_response_weekly.kind IS 'dumping, tps (waste_container sensors) or other; see alarm_response.kind';
COMMENT ON COLUMN alarm_response_weekly.alarms IS 'alarms opened that week';
COMMENT ON COLUMN alarm_response_weekly.acknowledged IS 'of them, acknowledged so far';
COMMENT ON COLUMN alarm_response_weekly.dispatched IS 'of them, dispatched so far';
COMMENT ON COLUMN alarm_response_weekly.cleaned IS 'of them, cleaned so far (see alarm_response.cleaned_at)';
COMMENT ON COLUMN alarm_response_weekly.false_positives IS 'of them, called false alarms (state FALSE_POSITIVE)';
COMMENT ON COLUMN alarm_response_weekly.median_minutes_to_ack IS 'median minutes from opening to the first acknowledgement, of the acknowledged alarms';
COMMENT ON COLUMN alarm_response_weekly.p90_minutes_to_ack IS '90th percentile (interpolated) of the same';
COMMENT ON COLUMN alarm_response_weekly.median_minutes_to_dispatch IS 'median minutes from opening to the first dispatch, of the dispatched alarms';
COMMENT ON COLUMN alarm_response_weekly.p90_minutes_to_dispatch IS '90th percentile (interpolated) of the same';
COMMENT ON COLUMN alarm_response_weekly.median_minutes_to_clean IS 'median minutes from opening to cleaned (alarm_response.cleaned_at), of the cleaned alarms: the DLH''s time to clean';
COMMENT ON COLUMN alarm_response_weekly.p90_minutes_to_clean IS '90th percentile (interpolated) of the same';
COMMENT ON COLUMN alarm_response_weekly.share_cleaned_within_day IS 'alarms cleaned within 24 hours of opening, as a fraction (0..1) of the alarms that are not false alarms and either were cleaned or opened at least 24 hours ago (alarm_response.cleaned_within_day); NULL when there are none';

GRANT SELECT ON alarm_response, alarm_response_weekly TO pantau_analyst, pantau_grafana;
