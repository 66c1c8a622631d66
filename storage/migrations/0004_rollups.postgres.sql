-- Rollups on plain PostgreSQL, same names and columns as the TimescaleDB continuous
-- aggregates. The hourly readings are a table that `pantau maintain` updates for the last
-- days: a materialized view over sensor_readings would lose its history when raw partitions
-- are dropped after 90 days, while rollups are kept for two years. Incidents per day come
-- from dumping_events, kept as long as the rollup, so a materialized view serves.

CREATE TABLE sensor_readings_hourly (
    bucket     timestamptz      NOT NULL,
    sensor_id  text             NOT NULL,
    quantity   text             NOT NULL,
    n          bigint           NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    avg        double precision NOT NULL,
    PRIMARY KEY (sensor_id, quantity, bucket)
);
SELECT pantau_time_series('sensor_readings_hourly', 'bucket', '1 month', 'rollup');

CREATE MATERIALIZED VIEW incidents_daily AS
SELECT date_trunc('day', appeared_at, 'Asia/Jakarta')  AS day,
       camera_id,
       zone_id,
       count(*)                                  AS incidents,
       count(*) FILTER (WHERE state = 'cleaned') AS cleaned,
       avg(confidence)                           AS mean_confidence
FROM dumping_events
GROUP BY 1, 2, 3;
CREATE INDEX incidents_daily_day ON incidents_daily (day);

GRANT SELECT ON sensor_readings_hourly, incidents_daily TO pantau_grafana, pantau_analyst;
