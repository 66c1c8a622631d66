-- Which gateway sent each reading: the registry's device that logged in with its own secret
-- (over MQTT, the one gateway the broker lets write the sensor's topic; over HTTP, the one
-- whose token came with it). NULL for readings from before gateways, or from an open door.
-- Nullable without a default, so the column is added without rewriting the table (a
-- TimescaleDB hypertable, compressed chunks included, and a partitioned PostgreSQL table).

ALTER TABLE sensor_readings ADD COLUMN gateway text;
COMMENT ON COLUMN sensor_readings.gateway IS 'the registry''s gateway that sent it (authenticated); NULL for readings from before gateways or from an open door';
