-- Webhooks: an app's endpoints, where each one stands in the event feed, the
-- events it still owes per stream, who is delivering a stream now, and what
-- each attempt answered. Portable SQL, as 0001.

-- One endpoint. `secret` (and `previous_secret` while a rotation overlaps,
-- until `previous_until`) are sealed with the server key (outbound::secrets),
-- never stored in the clear. `event_types`: a JSON array, empty for all.
-- `cursor_xact`/`cursor_pos`: the feed position up to which events were copied
-- into webhook_pending (moved in the same transaction as the copy).
-- `failing_since`: the first failure of the current run of failures (NULL when
-- the last attempt succeeded); past the give-up time the endpoint is disabled.
CREATE TABLE webhooks (
    app_id TEXT NOT NULL,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    event_types TEXT NOT NULL DEFAULT '[]',
    description TEXT NOT NULL DEFAULT '',
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_until BIGINT,
    disabled_at BIGINT,
    disabled_reason TEXT,
    failing_since BIGINT,
    cursor_xact BIGINT NOT NULL,
    cursor_pos BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, id)
);

-- Events an endpoint still owes, per stream (a conversation id, or '' for the
-- events of no conversation), delivered oldest (feed order) first.
CREATE TABLE webhook_pending (
    app_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    cursor_xact BIGINT NOT NULL,
    cursor_pos BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, webhook_id, stream, cursor_xact, cursor_pos)
);

-- A stream with pending events: when it may be tried next, how many attempts
-- in a row failed (the backoff), and who holds it (a node id, until
-- `lease_until`): a node delivers a stream only while its lease holds, taken
-- with an UPDATE that matches an expired lease only, so two nodes never
-- deliver one stream at once.
CREATE TABLE webhook_streams (
    app_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, webhook_id, stream)
);
CREATE INDEX webhook_streams_due ON webhook_streams (next_attempt_at);

-- Every delivery attempt, newest kept (trimmed per endpoint). `id` is a ULID:
-- newest first is `id` descending.
CREATE TABLE webhook_attempts (
    app_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, webhook_id, id)
);

-- Retention keeps an event while an active endpoint still owes it.
CREATE INDEX webhook_pending_event ON webhook_pending (event_id);
