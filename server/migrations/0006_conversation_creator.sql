-- Who created a group: the user whose token created it, or NULL when the
-- backend did (API key, Admin gRPC) or a token's `groups` claim did. A `groups`
-- claim joins only groups without a user creator, so a user cannot take an id
-- the backend will later name and collect the backend's users into it.
ALTER TABLE conversations ADD COLUMN created_by TEXT;

-- Groups made before this column: a user token's group has that user as its
-- owner from the first moment, which neither the backend nor a `groups` claim
-- gives at creation. A first member the backend made owner later is told in
-- history by a `role_changed` notice, and is not taken for the creator.
UPDATE conversations SET created_by = (
    SELECT MIN(m.user_id) FROM members m
    WHERE m.app_id = conversations.app_id
      AND m.conversation_id = conversations.id
      AND m.role = 'owner'
      AND m.joined_at = conversations.created_at
      AND NOT EXISTS (
          SELECT 1 FROM messages n
          WHERE n.app_id = m.app_id
            AND n.conversation_id = m.conversation_id
            AND n.kind = 'system'
            AND n.data LIKE '%"event":"role_changed"%'
            -- The id's own `%` and `_` are not wildcards: `a_b` is not `axb`.
            AND n.data LIKE '%"user_id":"'
                || REPLACE(REPLACE(REPLACE(m.user_id, '\', '\\'), '%', '\%'), '_', '\_')
                || '"%' ESCAPE '\'
      )
)
WHERE kind = 'group';
