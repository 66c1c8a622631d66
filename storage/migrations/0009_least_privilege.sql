-- Least privilege: each role gets what it needs, granted here by name, and nothing by
-- default. Until now the owner's default privileges made every table it created readable by
-- the wall and the analysts: the notifier's outbox (webhook URLs carry tokens, alert payloads
-- carry evidence references), and every partition or chunk of dumping_events and
-- dead_letters, read directly around the column grants on their parents.
--
-- dumping_events and dead_letters are granted by column, by `pantau migrate` after the
-- migrations (storage/admin.py, apply_access), since `storage.analyst_evidence_access`
-- decides one of them. A table added later is readable by whoever its migration grants it to.
-- Valid on PostgreSQL 15 with or without TimescaleDB, which passes grants and revokes on a
-- hypertable on to its chunks.

ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES
    FROM pantau_grafana, pantau_analyst;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM pantau_writer, pantau_grafana, pantau_analyst;

-- The sink copies into the time series and upserts the life-cycle rows through a temporary
-- staging table (CREATE TEMP TABLE ... LIKE needs SELECT on the table); the notifier queues,
-- claims and updates deliveries in the outbox. No DELETE, no TRUNCATE, and not the registries,
-- rollups or bookkeeping, which it never reads.
GRANT SELECT, INSERT ON sensor_readings, detections, camera_health, pipeline_metrics,
    dead_letters TO pantau_writer;
GRANT SELECT, INSERT, UPDATE ON sensor_readings_1m, dumping_events, alerts, notifications,
    notification_outbox TO pantau_writer;

-- The wall: what its panels, variables and alert rules read.
GRANT SELECT ON cameras, zones, sensors, sensor_readings, sensor_readings_hourly, detections,
    camera_health, pipeline_metrics, alerts, notifications, incidents_daily TO pantau_grafana;
-- Analysts: the tables of docs/data-dictionary.md.
GRANT SELECT ON cameras, zones, sensors, sensor_readings, sensor_readings_1m,
    sensor_readings_hourly, detections, camera_health, pipeline_metrics, alerts, notifications,
    incidents_daily TO pantau_analyst;

-- Temporary tables are the sink's staging; the reading roles create nothing, not even those.
-- TimescaleDB's WASM build, on which this flavour is tested, cannot change the privileges of
-- the database it runs in (an internal error, "tuple concurrently deleted"): there, and only
-- there, temporary tables stay open to every role, with a warning.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO pantau_writer', current_database());
EXCEPTION WHEN internal_error THEN
    RAISE WARNING 'temporary tables stay open to every role: %', SQLERRM;
END
$$;
-- Nobody but the owner creates anything in the schema (PostgreSQL 15's default; a database
-- upgraded from an older cluster may still allow it).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- An idle transaction keeps its locks and its snapshot: one an analyst left open held up
-- maintenance's partition drop (and vacuum). A minute is more than any pause between the
-- statements of a person or a panel. Like statement_timeout, a default the session may change.
ALTER ROLE pantau_analyst SET idle_in_transaction_session_timeout = '60s';
ALTER ROLE pantau_grafana SET idle_in_transaction_session_timeout = '60s';
