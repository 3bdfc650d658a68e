-- The app's user directory (`search_users`): off until the app turns it on.
ALTER TABLE apps ADD COLUMN user_directory BIGINT NOT NULL DEFAULT 0;
