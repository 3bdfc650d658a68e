-- Message changes: reactions are a set per (message, emoji, user). Edits and
-- deletes need no new columns: `messages.edited_at` / `deleted_at` exist since
-- 0001, and a deleted message keeps its row (its seq stays taken) with its text
-- and data wiped.

CREATE TABLE reactions (
    app_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    emoji TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, conversation_id, seq, emoji, user_id),
    FOREIGN KEY (app_id, conversation_id, seq) REFERENCES messages (app_id, conversation_id, seq) ON DELETE CASCADE
);
