-- pantau: no-transaction
-- Rollups as continuous aggregates (they cannot be created inside a transaction, hence the
-- line above). Real-time: the newest, not yet materialised hours are computed on read.

CREATE MATERIALIZED VIEW sensor_readings_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 hour', time) AS bucket,
       sensor_id,
       quantity,
       count(*)   AS n,
       min(value) AS min,
       max(value) AS max,
       avg(value) AS avg
FROM sensor_readings
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('sensor_readings_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');

-- Days are Mojokerto days (WIB), which is how people count incidents.
CREATE MATERIALIZED VIEW incidents_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket('1 day', appeared_at, 'Asia/Jakarta') AS day,
       camera_id,
       zone_id,
       count(*)                                 AS incidents,
       count(*) FILTER (WHERE state = 'cleaned') AS cleaned,
       avg(confidence)                          AS mean_confidence
FROM dumping_events
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('incidents_daily',
    start_offset => INTERVAL '60 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour');

INSERT INTO pantau_time_series VALUES
    ('sensor_readings_hourly', 'bucket', INTERVAL '1 month', 'rollup', NULL),
    ('incidents_daily', 'day', INTERVAL '1 month', 'rollup', NULL);

GRANT SELECT ON sensor_readings_hourly, incidents_daily TO pantau_grafana, pantau_analyst;
