-- DLH field staff on Telegram: where a person stood when they acted, which Telegram account
-- is which Pantau user, the messages the notifier sent (so the bot edits them in place), the
-- bot's update offset, and what the bot is waiting for from someone (a photo after "Selesai").
-- Valid on PostgreSQL 15 with or without TimescaleDB.

-- Nullable without defaults: added without rewriting the tables (or their chunks).
ALTER TABLE alarm_history ADD COLUMN lat double precision;
ALTER TABLE alarm_history ADD COLUMN lon double precision;
COMMENT ON COLUMN alarm_history.lat IS 'where the person stood when they acted (WGS 84), if they sent it';
ALTER TABLE alarm_actions ADD COLUMN lat double precision;
ALTER TABLE alarm_actions ADD COLUMN lon double precision;

-- A Telegram account linked to a Pantau user (once, with a one-time code).
CREATE TABLE telegram_links (
    telegram_user_id  bigint      PRIMARY KEY,
    username          text        NOT NULL REFERENCES console_users (username),
    telegram_name     text        NOT NULL DEFAULT '',
    linked_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telegram_links_user ON telegram_links (username);

-- One-time link codes (`pantau users link`, or the console): only their digest is kept.
CREATE TABLE telegram_link_codes (
    code_hash   text        PRIMARY KEY,
    username    text        NOT NULL REFERENCES console_users (username),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

-- Every alarm message the notifier sent to a Telegram chat: the bot edits them in place.
CREATE TABLE telegram_messages (
    chat_id     bigint      NOT NULL,
    message_id  bigint      NOT NULL,
    alarm_id    uuid        NOT NULL,
    with_photo  boolean     NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, message_id)
);
CREATE INDEX telegram_messages_alarm ON telegram_messages (alarm_id);

-- The bot's bookkeeping: the next update to ask for, so a restart neither loses nor repeats.
CREATE TABLE telegram_state (
    name   text   PRIMARY KEY,
    value  bigint NOT NULL
);

-- What the bot waits for from someone: the photo of the cleaned spot after "Selesai".
CREATE TABLE telegram_pending (
    telegram_user_id  bigint      PRIMARY KEY,
    chat_id           bigint      NOT NULL,
    alarm_id          uuid        NOT NULL,
    action            text        NOT NULL,
    lat               double precision,
    lon               double precision,
    asked_at          timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT ON telegram_messages TO pantau_writer;
-- The bot is the console's door on Telegram: it runs as pantau_console.
GRANT SELECT, INSERT, UPDATE, DELETE ON telegram_links, telegram_link_codes, telegram_state,
    telegram_pending TO pantau_console;
GRANT SELECT ON telegram_messages TO pantau_console;
