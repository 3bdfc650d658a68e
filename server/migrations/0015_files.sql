-- Files (issue 21): uploads and the attachments of messages.
--
-- An upload is asked for in a conversation by one user (name, declared size
-- and type), filled over tus, then processed: `ready` once every byte arrived
-- and passed the checks, `attached` once a message of its uploader in its
-- conversation carries it. `deleted`: its message, conversation or user went,
-- or it was not written to nor attached for a day; the file sweeper removes
-- its bytes and marks it `gone`, a row kept a day after its creation so that
-- it still counts in its uploader's daily quota.
CREATE TABLE uploads (
    app_id TEXT NOT NULL REFERENCES apps (id),
    id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    declared_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    -- 'uploading', 'ready', 'attached', 'deleted' or 'gone'.
    state TEXT NOT NULL,
    -- Set when ready: the type sniffed from the bytes (the declared one when
    -- the bytes have no signature), and for images their size after the EXIF
    -- orientation, whether a thumbnail was made, and the blurhash.
    content_type TEXT NOT NULL DEFAULT '',
    width BIGINT NOT NULL DEFAULT 0,
    height BIGINT NOT NULL DEFAULT 0,
    thumbnail BIGINT NOT NULL DEFAULT 0,
    blurhash TEXT NOT NULL DEFAULT '',
    -- The message that carries it, once sent.
    message_seq BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, id)
);
-- A user's uploads of the last day (their daily quota).
CREATE INDEX uploads_user ON uploads (app_id, user_id, created_at);
-- What the sweeper looks for: deleted rows, and uploads never attached.
CREATE INDEX uploads_state ON uploads (state, updated_at);
-- A conversation's files (deleting it deletes them).
CREATE INDEX uploads_conversation ON uploads (app_id, conversation_id, message_seq);

-- A message's attachments: a JSON array of their metadata (id, name,
-- content_type, size, width, height, thumbnail, blurhash), '[]' for none.
ALTER TABLE messages ADD COLUMN attachments TEXT NOT NULL DEFAULT '[]';

-- An app's file limits; NULL: the server's default.
ALTER TABLE apps ADD COLUMN file_max_bytes BIGINT;
-- Allowed types, comma-separated (`image/*` matches a family); NULL: any.
ALTER TABLE apps ADD COLUMN file_types TEXT;
-- Bytes one user may upload in 24 hours, and the app's total stored.
ALTER TABLE apps ADD COLUMN file_user_daily_bytes BIGINT;
ALTER TABLE apps ADD COLUMN file_app_total_bytes BIGINT;
