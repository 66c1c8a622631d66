-- Time series on plain PostgreSQL: declarative range partitions by time, one per day (or
-- month), created ahead and dropped after their retention by `pantau maintain`. A default
-- partition takes rows outside every range, so no insert is ever refused; maintain moves
-- them into their own partition later.

CREATE FUNCTION pantau_partition_name(tbl text, lower_bound timestamptz, chunk interval)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT tbl || '_p' || to_char(lower_bound AT TIME ZONE 'UTC',
                                  CASE WHEN chunk >= interval '28 days' THEN 'YYYYMM'
                                       ELSE 'YYYYMMDD' END)
$$;

-- The partition of `chunk` containing `ts`: calendar months (UTC) for chunks of a month,
-- otherwise multiples of the chunk since the Unix epoch, so that partitions never overlap
-- whichever day they are created on (1-day chunks start at UTC midnight).
CREATE FUNCTION pantau_partition_bounds(ts timestamptz, chunk interval,
                                        OUT lower_bound timestamptz, OUT upper_bound timestamptz)
LANGUAGE sql IMMUTABLE AS $$
    SELECT b, b + chunk
    FROM (SELECT CASE
                 WHEN chunk >= interval '28 days'
                     THEN date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                 ELSE to_timestamp(floor(extract(epoch FROM ts) / extract(epoch FROM chunk))
                                   * extract(epoch FROM chunk))
                 END AS b) AS t
$$;

-- Creates the partition holding `ts` unless it exists, moving any rows the default
-- partition holds for its range into it first (ATTACH would refuse otherwise).
CREATE FUNCTION pantau_ensure_partition(tbl text, ts timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    spec   pantau_time_series%ROWTYPE;
    lo     timestamptz;
    hi     timestamptz;
    part   text;
BEGIN
    SELECT * INTO STRICT spec FROM pantau_time_series WHERE table_name = tbl;
    SELECT lower_bound, upper_bound INTO lo, hi FROM pantau_partition_bounds(ts, spec.chunk);
    part := pantau_partition_name(tbl, lo, spec.chunk);
    IF to_regclass(format('%I', part)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, tbl);
    EXECUTE format(
        'WITH moved AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *) '
        'INSERT INTO %I SELECT * FROM moved',
        tbl || '_default', spec.time_column, spec.time_column, part) USING lo, hi;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   tbl, part, lo, hi);
    RETURN part;
END
$$;

-- Drops the partitions wholly older than `cutoff` and deletes older rows from the default.
CREATE FUNCTION pantau_drop_partitions(tbl text, cutoff timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    spec     pantau_time_series%ROWTYPE;
    child    record;
    dropped  integer := 0;
    upper    timestamptz;
BEGIN
    SELECT * INTO STRICT spec FROM pantau_time_series WHERE table_name = tbl;
    FOR child IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = tbl::regclass AND NOT c.relpartbound IS NULL
    LOOP
        CONTINUE WHEN child.bound = 'DEFAULT';
        upper := substring(child.bound FROM 'TO \(''([^'']+)''\)')::timestamptz;
        IF upper <= cutoff THEN
            EXECUTE format('DROP TABLE %I', child.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    EXECUTE format('DELETE FROM %I WHERE %I < $1', tbl || '_default', spec.time_column)
        USING cutoff;
    RETURN dropped;
END
$$;

-- Turns a freshly created (empty) table into a partitioned time series with the same
-- columns, keys, defaults and comments; the TimescaleDB variant makes a hypertable instead.
CREATE FUNCTION pantau_time_series(tbl text, time_column text, chunk interval,
                                   retention_class text, segment_by text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL) PARTITION BY RANGE (%I)',
                   tbl || '_new', tbl, time_column);
    EXECUTE format('DROP TABLE %I', tbl);
    EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl || '_new', tbl);
    EXECUTE format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', tbl, tbl || '_new_pkey',
                   tbl || '_pkey');
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', tbl || '_default', tbl);
    -- Time-range scans over months of rows: a BRIN index is tiny and enough.
    EXECUTE format('CREATE INDEX %I ON %I USING brin (%I)', tbl || '_time_brin', tbl,
                   time_column);
    INSERT INTO pantau_time_series VALUES (tbl, time_column, chunk, retention_class, segment_by);
    PERFORM pantau_ensure_partition(tbl, now() + n * chunk) FROM generate_series(-1, 2) AS n;
END
$$;
