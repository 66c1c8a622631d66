-- Hotspot risk for patrols: how much dumping to expect at each place (a camera and zone) and
-- in each desa in the coming week, on which days and at which hours (WIB), from the place's
-- history of real dumping (alarms not called false).
--
-- The score (the reference is storage/risk.py, `RiskModel()`; a test holds the two to the
-- same numbers): every incident of the 120 days before weighs 2^(-age / 28 days); the
-- weighted count times 7 ln 2 / 28 is incidents per week (an exponential decay with a 28-day
-- half-life remembers 28 / ln 2 days). The week is spread over the days of the week and the
-- hours of the day by the place's own weighted profile plus two incidents' worth of the
-- profile of all places, so a place seen twice is not said to dump only at those two hours.
--
-- Functions take the moment the risk is read at (a panel passes the end of its range; an
-- evaluation passes each week's start); the views read it as of now. Plain SQL, valid on
-- PostgreSQL 15 with or without TimescaleDB; the 120-day filter on appeared_at reaches only
-- those partitions (chunks).

-- One row per real dumping: an event that raised an alarm not called false.
CREATE VIEW dumping_incidents AS
SELECT e.appeared_at,
       e.event_id,
       e.camera_id,
       e.zone_id,
       c.desa,
       c.kecamatan,
       extract(isodow FROM e.appeared_at AT TIME ZONE 'Asia/Jakarta')::int AS weekday,
       extract(hour FROM e.appeared_at AT TIME ZONE 'Asia/Jakarta')::int   AS hour
FROM dumping_events e
LEFT JOIN cameras c ON c.camera_id = e.camera_id
WHERE e.alerted_at IS NOT NULL
  AND e.event_id NOT IN (SELECT event_id FROM dumping_false_alarm_events);

COMMENT ON VIEW dumping_incidents IS 'One row per real dumping: an event that raised an alarm that was not called a false alarm, with its WIB day of the week and hour. Filter on appeared_at to read a period.';
COMMENT ON COLUMN dumping_incidents.appeared_at IS 'when the object appeared; filter on it to read only a period';
COMMENT ON COLUMN dumping_incidents.zone_id IS 'the camera''s zone it lay in (NULL: no zone); the place is the camera and zone';
COMMENT ON COLUMN dumping_incidents.weekday IS 'WIB day of the week it appeared on: 1 Monday .. 7 Sunday (ISO)';
COMMENT ON COLUMN dumping_incidents.hour IS 'WIB hour of the day it appeared in, 0..23';

-- The profile of every place that had real dumping in the 120 days before as_of: its
-- expected week, and the share of it on each WIB day of the week (part 'weekday', slot 1..7)
-- and in each hour of the day (part 'hour', slot 0..23). The functions below read it.
CREATE FUNCTION hotspot_risk_profile_at(as_of timestamptz)
RETURNS TABLE (
    camera_id      text,
    zone_id        text,
    part           text,
    slot           integer,
    share          double precision,
    expected_week  double precision,
    incidents      bigint,
    last_at        timestamptz
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH recent AS (
    -- The zone as '' inside, so that a place without a zone joins to itself.
    SELECT i.camera_id, coalesce(i.zone_id, '') AS zone, i.weekday, i.hour, i.appeared_at,
           power(0.5, extract(epoch FROM as_of - i.appeared_at)::float8 / (28 * 86400)) AS w
    FROM dumping_incidents i
    WHERE i.appeared_at >= as_of - interval '120 days' AND i.appeared_at < as_of
),
place AS (
    SELECT r.camera_id, r.zone, sum(r.w) AS total, count(*) AS incidents,
           max(r.appeared_at) AS last_at
    FROM recent r GROUP BY r.camera_id, r.zone
),
own AS (
    SELECT r.camera_id, r.zone, 'weekday' AS part, r.weekday AS slot, sum(r.w) AS w
    FROM recent r GROUP BY r.camera_id, r.zone, r.weekday
    UNION ALL
    SELECT r.camera_id, r.zone, 'hour', r.hour, sum(r.w)
    FROM recent r GROUP BY r.camera_id, r.zone, r.hour
),
everyone AS (
    SELECT o.part, o.slot, sum(o.w) / sum(sum(o.w)) OVER (PARTITION BY o.part) AS share
    FROM own o GROUP BY o.part, o.slot
),
slots AS (
    SELECT 'weekday' AS part, d AS slot FROM generate_series(1, 7) AS d
    UNION ALL
    SELECT 'hour', h FROM generate_series(0, 23) AS h
),
-- Every place gets every slot, those without dumping at zero: a union and one hashed
-- grouping, where a join of the places' slots to their own weights was sorted and filtered
-- row by row.
grid AS (
    SELECT f.camera_id, f.zone, f.part, f.slot, sum(f.w) AS w
    FROM (
        SELECT o.camera_id, o.zone, o.part, o.slot, o.w FROM own o
        UNION ALL
        SELECT p.camera_id, p.zone, s.part, s.slot, 0 FROM place p CROSS JOIN slots s
    ) AS f
    GROUP BY f.camera_id, f.zone, f.part, f.slot
)
SELECT p.camera_id,
       nullif(p.zone, ''),
       g.part,
       g.slot,
       -- Two incidents' worth of the profile of all places mixed into the place's own.
       (g.w + 2 * coalesce(e.share, 0)) / (p.total + 2),
       p.total * 7 * ln(2) / 28,
       p.incidents,
       p.last_at
FROM grid g
JOIN place p ON p.camera_id = g.camera_id AND p.zone = g.zone
LEFT JOIN everyone e ON e.part = g.part AND e.slot = g.slot
$$;

COMMENT ON FUNCTION hotspot_risk_profile_at(timestamptz) IS 'Hotspot risk as of the given moment, per place (camera and zone): the dumping expected in the coming week and the share of it on each WIB day of the week (part weekday, slot 1..7) and in each hour (part hour, slot 0..23).';

-- The risk of every place for each WIB day of the week and hour of the coming week: 168
-- rows per place.
CREATE FUNCTION hotspot_risk_slots_at(as_of timestamptz)
RETURNS TABLE (
    camera_id      text,
    zone_id        text,
    weekday        integer,
    hour           integer,
    expected       double precision,
    expected_week  double precision,
    weekday_share  double precision,
    hour_share     double precision
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
-- Each place's days and hours as arrays, unnested against each other: no join for the
-- planner to misjudge (a join of the profile's hour rows to its day rows ran as a nested
-- loop over both).
WITH places AS (
    SELECT p.camera_id, p.zone_id, max(p.expected_week) AS expected_week,
           array_agg(p.slot ORDER BY p.slot) FILTER (WHERE p.part = 'weekday') AS days,
           array_agg(p.share ORDER BY p.slot) FILTER (WHERE p.part = 'weekday') AS day_shares,
           array_agg(p.slot ORDER BY p.slot) FILTER (WHERE p.part = 'hour') AS hours,
           array_agg(p.share ORDER BY p.slot) FILTER (WHERE p.part = 'hour') AS hour_shares
    FROM hotspot_risk_profile_at(as_of) p
    GROUP BY p.camera_id, p.zone_id
)
SELECT p.camera_id, p.zone_id, d.weekday, h.hour,
       p.expected_week * d.share * h.share, p.expected_week, d.share, h.share
FROM places p
CROSS JOIN LATERAL unnest(p.days, p.day_shares) AS d (weekday, share)
CROSS JOIN LATERAL unnest(p.hours, p.hour_shares) AS h (hour, share)
$$;

COMMENT ON FUNCTION hotspot_risk_slots_at(timestamptz) IS 'Hotspot risk as of the given moment, per place (camera and zone), WIB day of the week and hour: the dumping expected in that hour of the coming week (expected = expected_week x weekday_share x hour_share), from the 120 days of real dumping before it, each weighing half as much every 28 days.';

-- One row per place: the coming week, today and tomorrow (WIB days of as_of and the day
-- after), the likeliest day and hour, and the place's rank by the week.
CREATE FUNCTION hotspot_risk_at(as_of timestamptz)
RETURNS TABLE (
    rank               bigint,
    camera_id          text,
    zone_id            text,
    camera_name        text,
    zone_name          text,
    desa               text,
    kecamatan          text,
    expected_week      double precision,
    expected_today     double precision,
    expected_tomorrow  double precision,
    likely_weekday     integer,
    likely_hour        integer,
    incidents          bigint,
    last_at            timestamptz
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH today AS (
    SELECT extract(isodow FROM as_of AT TIME ZONE 'Asia/Jakarta')::int AS weekday
),
place AS (
    SELECT p.camera_id, p.zone_id,
           max(p.expected_week) AS expected_week,
           max(p.expected_week * p.share)
               FILTER (WHERE p.part = 'weekday' AND p.slot = t.weekday) AS expected_today,
           max(p.expected_week * p.share)
               FILTER (WHERE p.part = 'weekday' AND p.slot = t.weekday % 7 + 1)
               AS expected_tomorrow,
           (array_agg(p.slot ORDER BY p.share DESC, p.slot)
               FILTER (WHERE p.part = 'weekday'))[1] AS likely_weekday,
           (array_agg(p.slot ORDER BY p.share DESC, p.slot)
               FILTER (WHERE p.part = 'hour'))[1] AS likely_hour,
           max(p.incidents) AS incidents,
           max(p.last_at) AS last_at
    FROM hotspot_risk_profile_at(as_of) p CROSS JOIN today t
    GROUP BY p.camera_id, p.zone_id
)
SELECT row_number() OVER (ORDER BY p.expected_week DESC, p.camera_id, p.zone_id),
       p.camera_id,
       p.zone_id,
       coalesce(nullif(c.name, ''), p.camera_id),
       coalesce(z.name, p.zone_id),
       c.desa,
       c.kecamatan,
       p.expected_week,
       p.expected_today,
       p.expected_tomorrow,
       p.likely_weekday,
       p.likely_hour,
       p.incidents,
       p.last_at
FROM place p
LEFT JOIN cameras c ON c.camera_id = p.camera_id
LEFT JOIN zones z ON z.camera_id = p.camera_id AND z.zone_id = p.zone_id
$$;

COMMENT ON FUNCTION hotspot_risk_at(timestamptz) IS 'Hotspot risk as of the given moment, one row per place (camera and zone) that had real dumping in the 120 days before: the dumping expected in the coming week, today and tomorrow (WIB), the likeliest day and hour, and the rank by the week.';

-- One row per desa: its places' risk summed; the likeliest day and hour of the desa as a
-- whole (the hours of its places summed, each place's spread by its own profile).
CREATE FUNCTION hotspot_risk_desa_at(as_of timestamptz)
RETURNS TABLE (
    rank               bigint,
    desa               text,
    kecamatan          text,
    places             bigint,
    expected_week      double precision,
    expected_today     double precision,
    expected_tomorrow  double precision,
    likely_weekday     integer,
    likely_hour        integer,
    incidents          bigint
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH profile AS (
    SELECT coalesce(c.desa, '-') AS desa, coalesce(c.kecamatan, '-') AS kecamatan, p.*
    FROM hotspot_risk_profile_at(as_of) p
    LEFT JOIN cameras c ON c.camera_id = p.camera_id
),
today AS (
    SELECT extract(isodow FROM as_of AT TIME ZONE 'Asia/Jakarta')::int AS weekday
),
slots AS (
    SELECT p.desa, p.kecamatan, p.part, p.slot, sum(p.expected_week * p.share) AS expected
    FROM profile p GROUP BY p.desa, p.kecamatan, p.part, p.slot
),
places AS (
    SELECT p.desa, p.kecamatan, count(*) AS places, sum(p.expected_week) AS expected_week,
           sum(p.incidents)::bigint AS incidents
    FROM profile p
    WHERE p.part = 'weekday' AND p.slot = 1
    GROUP BY p.desa, p.kecamatan
),
likely AS (
    SELECT s.desa, s.kecamatan,
           sum(s.expected) FILTER (WHERE s.part = 'weekday' AND s.slot = t.weekday)
               AS expected_today,
           sum(s.expected) FILTER (WHERE s.part = 'weekday' AND s.slot = t.weekday % 7 + 1)
               AS expected_tomorrow,
           (array_agg(s.slot ORDER BY s.expected DESC, s.slot)
               FILTER (WHERE s.part = 'weekday'))[1] AS likely_weekday,
           (array_agg(s.slot ORDER BY s.expected DESC, s.slot)
               FILTER (WHERE s.part = 'hour'))[1] AS likely_hour
    FROM slots s CROSS JOIN today t
    GROUP BY s.desa, s.kecamatan
)
SELECT row_number() OVER (ORDER BY p.expected_week DESC, p.desa),
       p.desa, p.kecamatan, p.places, p.expected_week, l.expected_today, l.expected_tomorrow,
       l.likely_weekday, l.likely_hour, p.incidents
FROM places p
JOIN likely l USING (desa, kecamatan)
$$;

COMMENT ON FUNCTION hotspot_risk_desa_at(timestamptz) IS 'Hotspot risk as of the given moment, one row per desa: its places'' risk summed (the coming week, today, tomorrow), the likeliest WIB day and hour of the desa as a whole, and the rank by the week.';

CREATE VIEW hotspot_risk AS SELECT * FROM hotspot_risk_at(now());
CREATE VIEW hotspot_risk_slots AS SELECT * FROM hotspot_risk_slots_at(now());
CREATE VIEW hotspot_risk_desa AS SELECT * FROM hotspot_risk_desa_at(now());

COMMENT ON VIEW hotspot_risk IS 'Hotspot risk now, one row per place (camera and zone) with real dumping in the last 120 days, ranked by the dumping expected in the coming week; hotspot_risk_at(moment) reads it as of another moment.';
COMMENT ON COLUMN hotspot_risk.rank IS '1 for the place with the most dumping expected in the coming week';
COMMENT ON COLUMN hotspot_risk.zone_id IS 'the camera''s zone (NULL: no zone); the place is the camera and zone';
COMMENT ON COLUMN hotspot_risk.expected_week IS 'dumping expected at the place in the coming 7 days: the recency-weighted count (half-life 28 days) per week';
COMMENT ON COLUMN hotspot_risk.expected_today IS 'of it, on today''s WIB day of the week';
COMMENT ON COLUMN hotspot_risk.expected_tomorrow IS 'of it, on tomorrow''s WIB day of the week';
COMMENT ON COLUMN hotspot_risk.likely_weekday IS 'the WIB day of the week with the most expected: 1 Monday .. 7 Sunday';
COMMENT ON COLUMN hotspot_risk.likely_hour IS 'the WIB hour of the day with the most expected, 0..23';
COMMENT ON COLUMN hotspot_risk.incidents IS 'real dumping at the place in the last 120 days';
COMMENT ON COLUMN hotspot_risk.last_at IS 'when the latest of them appeared';

COMMENT ON VIEW hotspot_risk_slots IS 'Hotspot risk now, per place (camera and zone), WIB day of the week and hour: the dumping expected in that hour of the coming week; hotspot_risk_slots_at(moment) reads it as of another moment.';
COMMENT ON COLUMN hotspot_risk_slots.weekday IS 'WIB day of the week: 1 Monday .. 7 Sunday';
COMMENT ON COLUMN hotspot_risk_slots.hour IS 'WIB hour of the day, 0..23';
COMMENT ON COLUMN hotspot_risk_slots.expected IS 'dumping expected at the place in that hour of the coming week: expected_week x weekday_share x hour_share';
COMMENT ON COLUMN hotspot_risk_slots.weekday_share IS 'share of the place''s week on that day: its own recency-weighted profile with two incidents'' worth of all places'' profile';
COMMENT ON COLUMN hotspot_risk_slots.hour_share IS 'share of the place''s day in that hour, likewise';

COMMENT ON VIEW hotspot_risk_desa IS 'Hotspot risk now, one row per desa: its places'' risk summed, the likeliest WIB day and hour, ranked by the coming week; hotspot_risk_desa_at(moment) reads it as of another moment.';
COMMENT ON COLUMN hotspot_risk_desa.places IS 'places (camera and zone) in the desa with real dumping in the last 120 days';
COMMENT ON COLUMN hotspot_risk_desa.expected_week IS 'dumping expected in the desa in the coming 7 days';

GRANT SELECT ON dumping_incidents, hotspot_risk, hotspot_risk_slots, hotspot_risk_desa
    TO pantau_analyst, pantau_grafana;
-- Functions are executable by everyone unless taken back; only the reading roles need these.
REVOKE EXECUTE ON FUNCTION hotspot_risk_profile_at(timestamptz), hotspot_risk_slots_at(timestamptz),
                           hotspot_risk_at(timestamptz), hotspot_risk_desa_at(timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hotspot_risk_profile_at(timestamptz), hotspot_risk_slots_at(timestamptz),
                          hotspot_risk_at(timestamptz), hotspot_risk_desa_at(timestamptz)
    TO pantau_analyst, pantau_grafana;
