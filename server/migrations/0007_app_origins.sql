-- The browser origins an app's web frontends are served from: a JSON array of
-- normalised origins (`https://chat.example`, `http://localhost:5173`) or `*`
-- (any origin, for development), checked against a browser's `Origin` on REST
-- requests and WebSocket `connect`s made with the app's credentials. Empty: only
-- the server's own origin (the page it serves itself, as `mkondo dev` does).
-- Existing apps start empty: docs/security.md says why.
ALTER TABLE apps ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';
