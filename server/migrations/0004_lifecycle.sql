-- Lifecycle and revocation. Portable SQL, as 0001.

-- A deleted user's id, so that tokens issued before the deletion stay refused
-- (with auto-created users, a valid token would otherwise bring the user back).
-- A user created again with this id starts with tokens_valid_after = deleted_at.
CREATE TABLE deleted_users (
    app_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    deleted_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, user_id)
);

-- Revocations made without the server (the `mkondo app` CLI writes the database
-- directly): every running server polls this table and closes the sessions each
-- row selects. Ids increase by one per row; a server remembers the last it saw.
CREATE TABLE revocations (
    id BIGINT PRIMARY KEY,
    app_id TEXT NOT NULL,
    -- NULL: every user of the app.
    user_id TEXT,
    -- Only sessions whose token was signed with this key; NULL: any key.
    kid TEXT,
    -- Only sessions whose token was issued (iat, ms) before this; NULL: any.
    issued_before BIGINT,
    -- The disconnect code sent to the sessions closed.
    code BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
