-- Alarm details the wall and the notifier need, and the notifier's outbox.

ALTER TABLE alerts ADD COLUMN change text;
ALTER TABLE alerts ADD COLUMN quantity text;
ALTER TABLE alerts ADD COLUMN threshold double precision;
ALTER TABLE alerts ADD COLUMN event_id uuid;
COMMENT ON COLUMN alerts.change IS 'what the latest version changed: opened, updated, escalated, reopened, cleared, acknowledged, dispatched, resolved, false_positive';
COMMENT ON COLUMN alerts.ts_notified IS 'first notification of this alarm delivered (from notifications)';

-- created_at is the capture time of the reading or frame behind the alarm state, so
-- sent_at - created_at is the whole way from the source to the person.
ALTER TABLE notifications ADD COLUMN alarm_type text;
ALTER TABLE notifications ADD COLUMN alarm_state text;
ALTER TABLE notifications ADD COLUMN severity text;
ALTER TABLE notifications ADD COLUMN route text;
ALTER TABLE notifications ADD COLUMN ts_ingest timestamptz;
ALTER TABLE notifications ADD COLUMN ts_rule timestamptz;
COMMENT ON COLUMN notifications.created_at IS 'capture time of the reading or frame behind the notified alarm state';

-- One row per notification to deliver: alarm state change x recipient. The id is derived from
-- both, so a re-delivered alert queues nothing twice. Holds delivery targets (webhook URLs
-- may carry tokens), so only the notifier's role may read it.
CREATE TABLE notification_outbox (
    notification_id  uuid        PRIMARY KEY,
    alarm_id         uuid        NOT NULL,
    alarm_version    integer     NOT NULL,
    route            text        NOT NULL,
    channel          text        NOT NULL,
    target           text        NOT NULL,
    recipient        text        NOT NULL,
    alert            jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
COMMENT ON TABLE notification_outbox IS 'The notifier''s outbox: pending, sent and failed deliveries with retry times.';
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE status = 'pending';
GRANT SELECT, INSERT, UPDATE ON notification_outbox TO pantau_writer;
