-- Mkondo core schema. Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Times are unix milliseconds (BIGINT); booleans are BIGINT 0/1; JSON is TEXT.

CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    auto_create_users BIGINT NOT NULL DEFAULT 1,
    tokens_valid_after BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (id),
    alg TEXT NOT NULL,
    material TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX signing_keys_app ON signing_keys (app_id);

CREATE TABLE api_keys (
    hash TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (id),
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_app ON api_keys (app_id);

CREATE TABLE users (
    app_id TEXT NOT NULL REFERENCES apps (id),
    id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    avatar_url TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deactivated BIGINT NOT NULL DEFAULT 0,
    last_seen BIGINT,
    tokens_valid_after BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, id)
);

CREATE TABLE conversations (
    app_id TEXT NOT NULL REFERENCES apps (id),
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    icon_url TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}',
    -- "alice|bob" (sorted) for direct conversations: one per pair.
    direct_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, id)
);
CREATE UNIQUE INDEX conversations_direct ON conversations (app_id, direct_key);
CREATE INDEX conversations_activity ON conversations (app_id, last_activity_at);

CREATE TABLE members (
    app_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    cleared_seq BIGINT NOT NULL DEFAULT 0,
    muted BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, conversation_id, user_id),
    FOREIGN KEY (app_id, conversation_id) REFERENCES conversations (app_id, id) ON DELETE CASCADE
);
CREATE INDEX members_user ON members (app_id, user_id);

CREATE TABLE messages (
    app_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    id TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}',
    client_id TEXT,
    reply_to BIGINT,
    created_at BIGINT NOT NULL,
    edited_at BIGINT,
    deleted_at BIGINT,
    PRIMARY KEY (app_id, conversation_id, seq),
    FOREIGN KEY (app_id, conversation_id) REFERENCES conversations (app_id, id) ON DELETE CASCADE
);
-- A retried send (same sender, same client_id) finds the original. NULLs never collide.
CREATE UNIQUE INDEX messages_client_id ON messages (app_id, conversation_id, sender_id, client_id);
CREATE INDEX messages_sender ON messages (app_id, sender_id, created_at);
