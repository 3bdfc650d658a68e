-- The event outbox: one row per change, written in the transaction of the
-- change (store/events.rs). Read by the feed (`GET /v1/events`), the webhook
-- deliverer and the push worker, in the order of (xact, pos):
--   xact  PostgreSQL: the writing transaction's id (`pg_current_xact_id()`), so a
--         reader serves only rows below the oldest transaction still running and
--         never skips a row that commits late; SQLite (one writer): 0.
--   pos   1, 2, … within the transaction (PostgreSQL) or the database (SQLite,
--         from `event_positions`, which never goes back: deleting the newest
--         events — retention, erasure — must not hand their positions out again).
-- `user_id` is whose change it is and `author_id` whose message it carries, when
-- another user's: erasing a user deletes the rows naming them in either.
-- `message_id`: the message a `message.*` row carries; deleting the message
-- redacts it in those rows (its text and data gone from the file, as from
-- `messages`).
CREATE TABLE events (
    id TEXT NOT NULL PRIMARY KEY,
    app_id TEXT NOT NULL,
    xact BIGINT NOT NULL,
    pos BIGINT NOT NULL,
    type TEXT NOT NULL,
    conversation_id TEXT,
    user_id TEXT,
    author_id TEXT,
    message_id TEXT,
    created_at BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX events_position ON events (xact, pos);
CREATE INDEX events_feed ON events (app_id, xact, pos);
CREATE INDEX events_user ON events (app_id, user_id);
CREATE INDEX events_author ON events (app_id, author_id) WHERE author_id IS NOT NULL;
CREATE INDEX events_message ON events (app_id, message_id) WHERE message_id IS NOT NULL;

-- SQLite's last event position (one row). PostgreSQL does not use it: there a
-- position's transaction id is never reused.
CREATE TABLE event_positions (
    id BIGINT PRIMARY KEY,
    last BIGINT NOT NULL
);
INSERT INTO event_positions (id, last) VALUES (1, 0);
