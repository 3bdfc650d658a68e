-- Push devices: the credentials a user's devices registered for push (issue
-- 18). One row per credential: an APNs device token (`apns`, or `apns_voip`
-- for a PushKit token), an FCM registration token (`fcm`), or a Web Push
-- subscription (`webpush`: the endpoint URL in `token`, its keys in `p256dh`
-- and `auth`). A credential belongs to one user of the app: registering it
-- again, for the same or another user, updates this row (the unique index).
CREATE TABLE push_devices (
    app_id TEXT NOT NULL REFERENCES apps (id),
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    token TEXT NOT NULL,
    p256dh TEXT NOT NULL DEFAULT '',
    auth TEXT NOT NULL DEFAULT '',
    -- APNs: the bundle id the token belongs to (`apns-topic`); empty for the
    -- app's configured one.
    topic TEXT NOT NULL DEFAULT '',
    -- APNs: 1 for the sandbox (development) environment.
    sandbox BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, id)
);
CREATE UNIQUE INDEX push_devices_credential ON push_devices (app_id, provider, token);
CREATE INDEX push_devices_user ON push_devices (app_id, user_id, id);

-- A user's "do not disturb until" time (ms since the epoch): no push before
-- it. NULL: pushes as usual.
ALTER TABLE users ADD COLUMN dnd_until BIGINT;
