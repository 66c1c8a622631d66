-- Why a dumping event's evidence is missing or incomplete (an evidence store full or
-- unwritable, a frame no longer buffered): the event is stored all the same, and says so.
-- Nullable without a default, so the column is added without rewriting the table (a
-- TimescaleDB hypertable and a partitioned PostgreSQL table alike).

ALTER TABLE dumping_events ADD COLUMN evidence_error text;
COMMENT ON COLUMN dumping_events.evidence_error IS 'why evidence is missing or incomplete, e.g. "clip missing: OSError: [Errno 28] No space left on device"; NULL when every artefact was written';
