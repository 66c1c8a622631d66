-- Core tables of the pipeline. Every time column is timestamptz (UTC on the wire); every
-- primary key is the record's natural key with its time, so a re-delivered message changes
-- nothing and the tables can become TimescaleDB hypertables or time partitions later.

CREATE TABLE sensor_readings (
    time         timestamptz      NOT NULL,  -- dateObserved from the sensor
    sensor_id    text             NOT NULL,
    quantity     text             NOT NULL,  -- FIWARE attribute: pm25, pm10, waterLevel, fillingLevel, ...
    value        double precision NOT NULL,
    reading_id   uuid             NOT NULL,  -- stable id of the reading message
    seq          bigint           NOT NULL,
    ingested_at  timestamptz      NOT NULL,
    stored_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, quantity, time)
);
CREATE INDEX sensor_readings_time_brin ON sensor_readings USING brin (time);

CREATE TABLE detections (
    time          timestamptz NOT NULL,  -- capture time of the frame
    camera_id     text        NOT NULL,
    frame_id      uuid        NOT NULL,
    box_index     smallint    NOT NULL,
    class_id      smallint    NOT NULL,
    label         text        NOT NULL,
    confidence    real        NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    x1            real        NOT NULL,
    y1            real        NOT NULL,
    x2            real        NOT NULL,
    y2            real        NOT NULL,
    track_id      bigint,
    model         text        NOT NULL,
    frame_width   integer     NOT NULL,
    frame_height  integer     NOT NULL,
    detected_at   timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (camera_id, time, frame_id, box_index)
);
CREATE INDEX detections_label_time ON detections (label, time DESC);

CREATE TABLE camera_health (
    time              timestamptz NOT NULL,
    camera_id         text        NOT NULL,
    status            text        NOT NULL,
    fps               real        NOT NULL,
    frames_decoded    bigint      NOT NULL,
    frames_published  bigint      NOT NULL,
    frames_skipped    bigint      NOT NULL,
    reconnects        integer     NOT NULL,
    last_error        text,
    heartbeat_id      uuid        NOT NULL,
    stored_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (camera_id, time)
);

CREATE TABLE dead_letters (
    time          timestamptz NOT NULL,  -- when the input was rejected
    id            uuid        NOT NULL,
    stage         text        NOT NULL,
    source_kind   text        NOT NULL,
    source_topic  text        NOT NULL,
    source_partition integer,
    source_offset bigint,
    source_key    text,
    error         text        NOT NULL,
    original      bytea       NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (time, id)
);
CREATE INDEX dead_letters_stage_time ON dead_letters (stage, time DESC);

-- The sink writes as pantau_writer: insert and read, nothing else.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pantau_writer') THEN
        CREATE ROLE pantau_writer LOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO pantau_writer;
GRANT SELECT, INSERT ON sensor_readings, detections, camera_health, dead_letters TO pantau_writer;
