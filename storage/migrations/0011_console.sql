-- The incident console: who is on an alarm, every version of every alarm and every action
-- people took (accepted or refused), and the console's own users, sessions, tokens and audit.
-- Valid on PostgreSQL 15 with or without TimescaleDB.

DO $$
BEGIN
    -- pantau_console: the incident console's web service.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pantau_console') THEN
        CREATE ROLE pantau_console LOGIN;
    END IF;
END
$$;
-- The console's queries are single pages of a list or one incident; nothing runs long.
ALTER ROLE pantau_console SET statement_timeout = '15s';
ALTER ROLE pantau_console SET idle_in_transaction_session_timeout = '60s';
GRANT USAGE ON SCHEMA public TO pantau_console;

-- Nullable without defaults: added without rewriting the table (or its chunks).
ALTER TABLE alerts ADD COLUMN assignee text;
ALTER TABLE alerts ADD COLUMN dispatched_to text;
COMMENT ON COLUMN alerts.assignee IS 'the console user the alarm is assigned to';
COMMENT ON COLUMN alerts.dispatched_to IS 'who was sent to the place (a team or a person)';

-- Every version of every alarm, as the stream processor decided it. Partitioned by the
-- alarm's opening time, so one alarm's versions sit together and leave together.
CREATE TABLE alarm_history (
    opened_at      timestamptz NOT NULL,
    alarm_id       uuid        NOT NULL,
    version        integer     NOT NULL,
    time           timestamptz NOT NULL,
    state          text        NOT NULL,
    change         text        NOT NULL,
    severity       text        NOT NULL,
    count          integer     NOT NULL,
    last_value     double precision,
    message        text        NOT NULL DEFAULT '',
    assignee       text,
    dispatched_to  text,
    action_id      uuid,
    by             text        NOT NULL DEFAULT '',
    device         text        NOT NULL DEFAULT '',
    note           text        NOT NULL DEFAULT '',
    reason         text,
    photo          jsonb,
    stored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alarm_id, opened_at, version)
);
COMMENT ON TABLE alarm_history IS 'Every version of every alarm: what changed, when, and for a person''s action who, from where, with which note.';
COMMENT ON COLUMN alarm_history.time IS 'when this version was made (the action''s time for a person''s action)';
COMMENT ON COLUMN alarm_history.by IS 'who made it (a console user, a Telegram user); empty: the pipeline';
COMMENT ON COLUMN alarm_history.device IS 'from where they acted: console, api, telegram, cli';
COMMENT ON COLUMN alarm_history.reason IS 'why a false positive: not_rubbish, belongs_there, person_present, camera_moved, other';
COMMENT ON COLUMN alarm_history.photo IS 'photo uploaded with the action (e.g. the cleaned spot): {kind, uri, sha256}';
SELECT pantau_time_series('alarm_history', 'opened_at', '1 month', 'incident');
CREATE INDEX alarm_history_action ON alarm_history (action_id) WHERE action_id IS NOT NULL;

-- Every action people sent (periodic checks aside), and the reason when the stream processor
-- refused it (a later version of the row: version 1).
CREATE TABLE alarm_actions (
    time         timestamptz NOT NULL,
    action_id    uuid        NOT NULL,
    alarm_id     uuid,
    source_kind  text        NOT NULL,
    source_id    text        NOT NULL,
    action       text        NOT NULL,
    by           text        NOT NULL DEFAULT '',
    device       text        NOT NULL DEFAULT '',
    note         text        NOT NULL DEFAULT '',
    "to"         text,
    reason       text,
    photo        jsonb,
    refused      text,
    version      integer     NOT NULL DEFAULT 0,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (action_id, time)
);
COMMENT ON TABLE alarm_actions IS 'Actions people took on alarms (ack, dispatch, resolve, false_positive, comment, assign), with the refusal reason when the alarm''s state did not allow it.';
COMMENT ON COLUMN alarm_actions.refused IS 'why the stream processor refused it; NULL: applied (see alarm_history.action_id) or not yet decided';
SELECT pantau_time_series('alarm_actions', 'time', '1 month', 'incident');
CREATE INDEX alarm_actions_alarm ON alarm_actions (alarm_id, time);

-- The console's own tables: nobody else reads them (password hashes, session and token
-- digests). Only digests of sessions and tokens are stored.
CREATE TABLE console_users (
    username       text        PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    display_name   text        NOT NULL DEFAULT '',
    role           text        NOT NULL CHECK (role IN ('operator', 'dlh_field', 'viewer', 'admin')),
    kecamatan      text[]      NOT NULL DEFAULT '{}',
    password_hash  text,
    disabled       boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE console_users IS 'People who use the incident console, their role and (for dlh_field) their kecamatan.';

CREATE TABLE console_sessions (
    session_hash   text        PRIMARY KEY,
    username       text        NOT NULL REFERENCES console_users (username),
    csrf_token     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    address        text,
    user_agent     text
);
CREATE INDEX console_sessions_user ON console_sessions (username);

CREATE TABLE console_tokens (
    token_id       text        PRIMARY KEY,
    username       text        NOT NULL REFERENCES console_users (username),
    token_hash     text        NOT NULL,
    name           text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz,
    revoked        boolean     NOT NULL DEFAULT false
);

CREATE TABLE console_audit (
    time      timestamptz NOT NULL DEFAULT now(),
    username  text,
    event     text        NOT NULL,
    target    text,
    address   text,
    detail    jsonb       NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE console_audit IS 'What people did in the console: logins (and refused ones), actions sent, evidence opened.';
CREATE INDEX console_audit_time ON console_audit (time DESC);

GRANT SELECT, INSERT, UPDATE ON alarm_history, alarm_actions TO pantau_writer;
GRANT SELECT ON cameras, zones, sensors, sensor_readings, sensor_readings_1m, camera_health,
    alerts, alarm_history, alarm_actions, dumping_events, notifications TO pantau_console;
GRANT SELECT, INSERT, UPDATE, DELETE ON console_users, console_sessions, console_tokens
    TO pantau_console;
GRANT SELECT, INSERT ON console_audit TO pantau_console;
-- The wall and the analysts read the history (photos aside: granted by column, as evidence).
