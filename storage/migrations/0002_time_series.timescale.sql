-- Time series on TimescaleDB: hypertables, chunked by time. Compression and retention
-- policies are set by `pantau migrate` from the settings (storage.retention).

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE FUNCTION pantau_time_series(tbl text, time_column text, chunk interval,
                                   retention_class text, segment_by text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM create_hypertable(tbl::regclass, by_range(time_column, chunk));
    INSERT INTO pantau_time_series VALUES (tbl, time_column, chunk, retention_class, segment_by);
END
$$;
