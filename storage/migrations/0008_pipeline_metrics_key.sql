-- One measurement per labelled series: the sink reports rows_per_s for each table at the same
-- moment, and the supervisors report `up` and `restarts` per worker. Keyed without the labels,
-- all but one table's rate of each report was dropped as a repeat.
-- Works alike on a partitioned PostgreSQL table and a TimescaleDB hypertable (the key keeps
-- the time column), compressed chunks included.

ALTER TABLE pipeline_metrics DROP CONSTRAINT pipeline_metrics_pkey;
ALTER TABLE pipeline_metrics ADD PRIMARY KEY (component, instance, metric, labels, time);
