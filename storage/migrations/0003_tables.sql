-- The pipeline's tables. Every time column is timestamptz; every primary key is the record's
-- natural key with its time, so a re-delivered message changes nothing and each table can
-- be a hypertable or a partitioned table with the same columns.

CREATE TABLE sensor_readings (
    time         timestamptz      NOT NULL,
    sensor_id    text             NOT NULL,
    quantity     text             NOT NULL,
    value        double precision NOT NULL,
    seq          bigint           NOT NULL,
    ingested_at  timestamptz      NOT NULL,
    stored_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, quantity, time)
);
COMMENT ON TABLE sensor_readings IS 'One row per measured value (narrow): a reading of PM2.5 and PM10 is two rows.';
COMMENT ON COLUMN sensor_readings.time IS 'dateObserved: when the sensor measured';
COMMENT ON COLUMN sensor_readings.quantity IS 'FIWARE attribute: pm25, pm10, temperature, relativeHumidity, noiseLevel, waterLevel, fillingLevel';
COMMENT ON COLUMN sensor_readings.value IS 'µg/m³ (pm25, pm10), °C, fraction 0..1 (relativeHumidity, fillingLevel), dB(A), metres (waterLevel)';
SELECT pantau_time_series('sensor_readings', 'time', '1 day', 'raw', 'sensor_id, quantity');

CREATE TABLE sensor_readings_1m (
    time         timestamptz      NOT NULL,
    sensor_id    text             NOT NULL,
    quantity     text             NOT NULL,
    count        integer          NOT NULL,
    min          double precision NOT NULL,
    max          double precision NOT NULL,
    mean         double precision NOT NULL,
    stored_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, quantity, time)
);
COMMENT ON TABLE sensor_readings_1m IS '1-minute tumbling windows from the stream processor; time is the window start.';
SELECT pantau_time_series('sensor_readings_1m', 'time', '7 days', 'raw', 'sensor_id, quantity');

CREATE TABLE detections (
    time          timestamptz NOT NULL,
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
COMMENT ON TABLE detections IS 'Detected objects, sampled: a tracked object is stored at most once per sink.detection_sample_s.';
COMMENT ON COLUMN detections.time IS 'capture time of the frame';
COMMENT ON COLUMN detections.x1 IS 'box corners in pixels of the frame (frame_width x frame_height)';
SELECT pantau_time_series('detections', 'time', '1 day', 'raw', 'camera_id');
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
COMMENT ON TABLE camera_health IS 'Camera heartbeats (every few seconds): status connecting, online, reconnecting, stalled or ended; counters since the ingest started.';
SELECT pantau_time_series('camera_health', 'time', '7 days', 'raw', 'camera_id');

CREATE TABLE pipeline_metrics (
    time       timestamptz      NOT NULL,
    component  text             NOT NULL,
    instance   text             NOT NULL,
    metric     text             NOT NULL,
    value      double precision NOT NULL,
    unit       text             NOT NULL DEFAULT '',
    labels     jsonb            NOT NULL DEFAULT '{}',
    stored_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (component, instance, metric, time)
);
COMMENT ON TABLE pipeline_metrics IS 'The pipeline measuring itself: sink rows/s per table, batch sizes, consumer lag, capture-to-stored latency, ...';
SELECT pantau_time_series('pipeline_metrics', 'time', '1 day', 'raw', 'component, metric');

CREATE TABLE dead_letters (
    time              timestamptz NOT NULL,
    id                uuid        NOT NULL,
    stage             text        NOT NULL,
    source_kind       text        NOT NULL,
    source_topic      text        NOT NULL,
    source_partition  integer,
    source_offset     bigint,
    source_key        text,
    error             text        NOT NULL,
    original          bytea       NOT NULL,
    stored_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, time)
);
COMMENT ON TABLE dead_letters IS 'Input a stage rejected, kept whole with the reason (error).';
SELECT pantau_time_series('dead_letters', 'time', '1 month', 'incident');
CREATE INDEX dead_letters_stage_time ON dead_letters (stage, time DESC);

CREATE TABLE dumping_events (
    appeared_at     timestamptz NOT NULL,
    event_id        uuid        NOT NULL,
    camera_id       text        NOT NULL,
    zone_id         text,
    state           text        NOT NULL,
    phase           text        NOT NULL,
    version         integer     NOT NULL,
    owner_left_at   timestamptz,
    alerted_at      timestamptz,
    ended_at        timestamptz,
    x1              real        NOT NULL,
    y1              real        NOT NULL,
    x2              real        NOT NULL,
    y2              real        NOT NULL,
    label           text,
    owner_track_id  bigint,
    confidence      real        NOT NULL,
    evidence        jsonb       NOT NULL DEFAULT '[]',
    updated_at      timestamptz NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, appeared_at)
);
COMMENT ON TABLE dumping_events IS 'One row per dumping event, updated through its life (new, update, end); version orders the updates.';
COMMENT ON COLUMN dumping_events.evidence IS 'evidence pack: [{kind, uri, sha256}] (stills, owner crop, clip)';
SELECT pantau_time_series('dumping_events', 'appeared_at', '1 month', 'incident');
CREATE INDEX dumping_events_camera ON dumping_events (camera_id, appeared_at DESC);

CREATE TABLE alerts (
    opened_at        timestamptz      NOT NULL,
    alarm_id         uuid             NOT NULL,
    version          integer          NOT NULL,
    source_kind      text             NOT NULL,
    source_id        text             NOT NULL,
    alarm_type       text             NOT NULL,
    severity         text             NOT NULL,
    state            text             NOT NULL,
    count            integer          NOT NULL,
    last_value       double precision,
    message          text             NOT NULL DEFAULT '',
    updated_at       timestamptz      NOT NULL,
    acknowledged_at  timestamptz,
    dispatched_at    timestamptz,
    resolved_at      timestamptz,
    cleared_at       timestamptz,
    ts_capture       timestamptz      NOT NULL,
    ts_ingest        timestamptz,
    ts_rule          timestamptz,
    ts_notified      timestamptz,
    stored_at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (alarm_id, opened_at)
);
COMMENT ON TABLE alerts IS 'One row per alarm (per source and type), its latest state; stage timestamps ts_capture -> ts_ingest -> ts_rule -> ts_notified.';
COMMENT ON COLUMN alerts.state IS 'OPEN, ACK, DISPATCHED, RESOLVED, FALSE_POSITIVE or CLEARED';
SELECT pantau_time_series('alerts', 'opened_at', '1 month', 'incident');
CREATE INDEX alerts_state ON alerts (state, opened_at DESC);
CREATE INDEX alerts_source ON alerts (source_id, opened_at DESC);

CREATE TABLE notifications (
    created_at       timestamptz NOT NULL,
    notification_id  uuid        NOT NULL,
    alarm_id         uuid        NOT NULL,
    alarm_version    integer     NOT NULL,
    channel          text        NOT NULL,
    recipient        text        NOT NULL,
    status           text        NOT NULL,
    attempts         integer     NOT NULL,
    error            text,
    sent_at          timestamptz,
    stored_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (notification_id, created_at)
);
COMMENT ON TABLE notifications IS 'Delivery log of the notifier: one row per notification, latest attempt.';
SELECT pantau_time_series('notifications', 'created_at', '1 month', 'incident');
CREATE INDEX notifications_alarm ON notifications (alarm_id);

-- The sink inserts and, for the life-cycle tables, updates; nothing else.
GRANT SELECT, INSERT ON sensor_readings, detections, camera_health, pipeline_metrics,
    dead_letters TO pantau_writer;
GRANT SELECT, INSERT, UPDATE ON sensor_readings_1m, dumping_events, alerts, notifications
    TO pantau_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO pantau_grafana, pantau_analyst;
