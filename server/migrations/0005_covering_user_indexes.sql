-- A user's memberships straight from one index. Without `conversation_id` in it,
-- SQLite's planner preferred the primary key's `(app_id, …)` prefix for
-- "conversations of user U" and walked every membership of the app.
DROP INDEX members_user;
CREATE INDEX members_user ON members (app_id, user_id, conversation_id);

-- The same for "who blocked user U".
DROP INDEX blocks_blocked;
CREATE INDEX blocks_blocked ON blocks (app_id, blocked_id, user_id);
