-- The push worker's queue (issue 18): from the event outbox to each device.
-- Portable SQL, as 0001.
--
-- 1. Where the worker stands in each app's event feed. Set to the feed's head
--    when the app first saves push settings (a new app is not pushed its
--    history), moved only in the transaction that copies what it passes into
--    push_jobs (compare-and-set), as webhooks' positions.
ALTER TABLE push_settings ADD COLUMN cursor_xact BIGINT NOT NULL DEFAULT 0;
ALTER TABLE push_settings ADD COLUMN cursor_pos BIGINT NOT NULL DEFAULT 0;
-- Apps that saved push settings before this migration start at their head too.
UPDATE push_settings SET
    cursor_xact = COALESCE((SELECT e.xact FROM events e WHERE e.app_id = push_settings.app_id
                            ORDER BY e.xact DESC, e.pos DESC LIMIT 1), 0),
    cursor_pos = COALESCE((SELECT e.pos FROM events e WHERE e.app_id = push_settings.app_id
                           ORDER BY e.xact DESC, e.pos DESC LIMIT 1), 0);

-- 2. One row per message or backend notification to push, until it is fanned
--    out: never a row per recipient in the send transaction. `stream`: the
--    conversation id (pushes of one conversation collapse), or `n:` and the
--    notification's event id (a notification is pushed on its own). `seq`:
--    the message's seq (0 for a notification): the newest of a stream wins.
CREATE TABLE push_jobs (
    app_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, stream, event_id)
);

-- 3. A stream with jobs: when it was last fanned out (the collapse window
--    runs from there), when it is due, and who holds it (a node, until
--    `lease_until`; taken with an UPDATE that matches a free lease only).
CREATE TABLE push_streams (
    app_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    last_sent_at BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, stream)
);
CREATE INDEX push_streams_due ON push_streams (next_at);

-- 4. One push to one device, from the fan-out until the provider answered.
--    `id` is the push's stable id (a UUID: the `apns-id`), the same on every
--    attempt; `collapse_id` replaces an earlier push of the same conversation
--    on the device. `payload`: what the push shows (JSON, built at fan-out).
--    The device's credential is copied with it; a send is claimed only
--    while its device still belongs to its user with that credential, so a
--    device moved to someone else (another sign-in on the phone) or removed
--    never gets it. Calls' VoIP pushes are queued with `next_at` -1: first.
CREATE TABLE push_sends (
    app_id TEXT NOT NULL,
    id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    -- What it tells of ('' for a notification's): deleting the message or
    -- the conversation, or erasing its recipient or author, deletes the
    -- pushes not yet sent.
    conversation_id TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL DEFAULT '',
    author_id TEXT NOT NULL DEFAULT '',
    provider TEXT NOT NULL,
    token TEXT NOT NULL,
    p256dh TEXT NOT NULL DEFAULT '',
    auth TEXT NOT NULL DEFAULT '',
    topic TEXT NOT NULL DEFAULT '',
    sandbox BIGINT NOT NULL DEFAULT 0,
    collapse_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, id)
);
CREATE INDEX push_sends_due ON push_sends (next_at);
CREATE INDEX push_sends_user ON push_sends (app_id, user_id);
CREATE INDEX push_sends_author ON push_sends (app_id, author_id);
CREATE INDEX push_sends_message ON push_sends (app_id, message_id);
CREATE INDEX push_sends_conversation ON push_sends (app_id, conversation_id);
