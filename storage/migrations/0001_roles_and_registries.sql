-- Roles and the registries of what is installed where (synced from the YAML config by
-- `pantau migrate`). Valid on PostgreSQL 15 with or without TimescaleDB.

DO $$
BEGIN
    -- pantau_writer: the sink. pantau_grafana: the wall. pantau_analyst: people writing SQL.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pantau_writer') THEN
        CREATE ROLE pantau_writer LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pantau_grafana') THEN
        CREATE ROLE pantau_grafana LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pantau_analyst') THEN
        CREATE ROLE pantau_analyst LOGIN;
    END IF;
END
$$;

-- A runaway analyst query must not slow the wall down; the wall's own queries are short.
ALTER ROLE pantau_analyst SET statement_timeout = '30s';
ALTER ROLE pantau_analyst SET default_transaction_read_only = on;
ALTER ROLE pantau_grafana SET statement_timeout = '15s';
ALTER ROLE pantau_grafana SET default_transaction_read_only = on;

GRANT USAGE ON SCHEMA public TO pantau_writer, pantau_grafana, pantau_analyst;
-- Everything the owner creates from now on is readable by the wall and the analysts.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO pantau_grafana, pantau_analyst;

CREATE TABLE cameras (
    camera_id   text        PRIMARY KEY,
    name        text        NOT NULL DEFAULT '',
    lat         double precision,
    lon         double precision,
    desa        text,
    kecamatan   text,
    enabled     boolean     NOT NULL DEFAULT true,
    active      boolean     NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cameras IS 'Cameras from the config; active = still configured.';
COMMENT ON COLUMN cameras.desa IS 'desa / kelurahan (village) the camera watches';

CREATE TABLE zones (
    camera_id   text        NOT NULL REFERENCES cameras (camera_id),
    zone_id     text        NOT NULL,
    name        text        NOT NULL DEFAULT '',
    kind        text        NOT NULL CHECK (kind IN ('watch', 'fixture', 'ignore')),
    polygon     jsonb       NOT NULL,
    dwell_s     real        NOT NULL,
    active      boolean     NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (camera_id, zone_id)
);
COMMENT ON COLUMN zones.polygon IS 'corners as [x, y] fractions of the frame (0..1)';

CREATE TABLE sensors (
    sensor_id   text        PRIMARY KEY,
    type        text        NOT NULL,
    name        text        NOT NULL DEFAULT '',
    lat         double precision,
    lon         double precision,
    desa        text,
    kecamatan   text,
    active      boolean     NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN sensors.type IS 'air_quality, water_level or waste_container';

GRANT SELECT ON cameras, zones, sensors TO pantau_writer, pantau_grafana, pantau_analyst;

-- Which tables are time series, and how each is partitioned and kept.
CREATE TABLE pantau_time_series (
    table_name      text     PRIMARY KEY,
    time_column     text     NOT NULL,
    chunk           interval NOT NULL,
    retention_class text     NOT NULL CHECK (retention_class IN ('raw', 'rollup', 'incident')),
    segment_by      text
);
