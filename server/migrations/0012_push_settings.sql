-- An app's push settings (issue 18): the credentials the server sends pushes
-- with, sealed with the server's secrets key (`outbound::secrets`, never in
-- the clear), and what a push shows. One row per app that set any; an empty
-- sealed column: that provider is not configured.
CREATE TABLE push_settings (
    app_id TEXT PRIMARY KEY REFERENCES apps (id),
    -- APNs token auth: the .p8 key (PEM, sealed), its key id and team id, and
    -- the app's bundle id (`apns-topic` when a device names none).
    apns_key TEXT NOT NULL DEFAULT '',
    apns_key_id TEXT NOT NULL DEFAULT '',
    apns_team_id TEXT NOT NULL DEFAULT '',
    apns_topic TEXT NOT NULL DEFAULT '',
    -- FCM HTTP v1: the service account's JSON key (sealed), and its project
    -- id and client email, shown to the operator.
    fcm_service_account TEXT NOT NULL DEFAULT '',
    fcm_project_id TEXT NOT NULL DEFAULT '',
    fcm_client_email TEXT NOT NULL DEFAULT '',
    -- Web Push (VAPID): the P-256 private key (base64url, sealed), its public
    -- key (the web SDK's `applicationServerKey`) and the contact (`sub`).
    vapid_private_key TEXT NOT NULL DEFAULT '',
    vapid_public_key TEXT NOT NULL DEFAULT '',
    vapid_subject TEXT NOT NULL DEFAULT '',
    -- What a message push shows: `full` (the text), `generic` ("New
    -- message") or `none` (no alert text; the app fetches it).
    preview TEXT NOT NULL DEFAULT 'full',
    updated_at BIGINT NOT NULL
);
