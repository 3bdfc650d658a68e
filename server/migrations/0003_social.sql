-- Between people: notifications from the customer's backend, blocks, and
-- hidden conversations ("delete chat"). Portable SQL, as 0001.

-- A payload for one user, kept until a device acknowledges it or it expires.
-- Ids are ULIDs: ordering by id is ordering by creation time.
CREATE TABLE notifications (
    app_id TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, id),
    FOREIGN KEY (app_id, user_id) REFERENCES users (app_id, id) ON DELETE CASCADE
);
CREATE INDEX notifications_user ON notifications (app_id, user_id, id);
CREATE INDEX notifications_expiry ON notifications (expires_at);

-- user_id blocks blocked_id. Direct messaging refuses a block in either direction.
CREATE TABLE blocks (
    app_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, user_id, blocked_id),
    FOREIGN KEY (app_id, user_id) REFERENCES users (app_id, id) ON DELETE CASCADE,
    FOREIGN KEY (app_id, blocked_id) REFERENCES users (app_id, id) ON DELETE CASCADE
);
CREATE INDEX blocks_blocked ON blocks (app_id, blocked_id);

-- 1 once the member hid the conversation. It stays out of their list while no
-- message came after their cleared_seq (so an empty conversation can be hidden too).
ALTER TABLE members ADD COLUMN hidden BIGINT NOT NULL DEFAULT 0;
