-- The before-send hook of an app (at most one): the URL the server calls with
-- every user message (and edit) before storing it, the signing secret sealed
-- with the server's secrets key (`outbound::secrets`, never in the clear), how
-- long to wait for the answer, and what to do when there is none (fail_open 1:
-- store the message as sent; 0: refuse it with `unavailable`, reason
-- `hook_failed`). No row: no hook.
CREATE TABLE before_send_hooks (
    app_id TEXT PRIMARY KEY REFERENCES apps (id),
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    fail_open BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
