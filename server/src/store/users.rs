//! Users of an app: created by the backend or on first connect from token claims.

use serde_json::Value;

use super::events::{self, NewEvent};
use super::{decode_cursor, encode_cursor, now_ms, retrying, Page, Store, Tx, User};
use crate::auth;
use crate::error::{Error, Result};

pub const MAX_USER_DATA_BYTES: usize = 4096;

/// Fields of a create or update; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct UserPatch {
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub data: Option<Value>,
}

/// The columns a [`User`] is read from (`FromRow`, by name).
const USER_COLUMNS: &str =
    "id, name, avatar_url, data, created_at, updated_at, deactivated, last_seen, tokens_valid_after";

fn check_patch(patch: &UserPatch) -> Result<()> {
    if let Some(name) = &patch.name {
        if name.len() > 256 {
            return Err(Error::invalid("name is longer than 256 bytes"));
        }
    }
    if let Some(url) = &patch.avatar_url {
        if url.len() > 2048 {
            return Err(Error::invalid("avatar_url is longer than 2048 bytes"));
        }
    }
    if let Some(data) = &patch.data {
        if !data.is_object() {
            return Err(Error::invalid("data must be a JSON object"));
        }
        if data.to_string().len() > MAX_USER_DATA_BYTES {
            return Err(Error::too_large("user data is larger than 4 KiB"));
        }
    }
    Ok(())
}

/// Creates a user unless it exists ($1 app, $2 id, $3 name, $4 avatar_url,
/// $5 data, $6 now). A user created again after a deletion keeps refusing the
/// tokens issued before it (see `delete_user`).
const INSERT_USER_UNLESS_EXISTS: &str =
    "INSERT INTO users (app_id, id, name, avatar_url, data, created_at, updated_at, tokens_valid_after)
     VALUES ($1, $2, COALESCE($3, ''), COALESCE($4, ''), COALESCE($5, '{}'), $6, $6,
             COALESCE((SELECT deleted_at FROM deleted_users WHERE app_id = $1 AND user_id = $2), 0))
     ON CONFLICT (app_id, id) DO NOTHING";

impl Store {
    /// Creates the user, or updates the given fields of an existing one.
    /// Returns the user and whether it was created.
    pub async fn upsert_user(
        &self,
        app: &str,
        id: &str,
        patch: &UserPatch,
    ) -> Result<(User, bool)> {
        if !auth::valid_user_id(id) {
            return Err(Error::invalid(
                "user id must be 1-128 characters of A-Z a-z 0-9 . _ @ : -",
            ));
        }
        check_patch(patch)?;
        retrying(|| self.upsert_user_once(app, id, patch)).await
    }

    async fn upsert_user_once(
        &self,
        app: &str,
        id: &str,
        patch: &UserPatch,
    ) -> Result<(User, bool)> {
        let now = now_ms();
        let data = patch.data.as_ref().map(Value::to_string);
        let mut tx = self.writer.begin().await?;
        let created = sqlx::query(INSERT_USER_UNLESS_EXISTS)
            .bind(app)
            .bind(id)
            .bind(&patch.name)
            .bind(&patch.avatar_url)
            .bind(&data)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let changes = patch.name.is_some() || patch.avatar_url.is_some() || data.is_some();
        if !created && changes {
            update_user_in(&mut tx, app, id, patch, now).await?;
        }
        let user = user_in(&mut tx, app, id)
            .await?
            .ok_or_else(Error::internal)?;
        if created || changes {
            let kind = if created {
                "user.created"
            } else {
                "user.updated"
            };
            events::record(
                &mut tx,
                self.engine,
                vec![user_event(app, kind, &user, now)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok((user, created))
    }

    /// Creates each of `users` that does not exist yet, empty, inside `tx`: a
    /// write that creates users for a request commits them with it or not at all.
    /// Returns the `user.created` events for the caller to record after its
    /// own change's.
    pub(crate) async fn insert_missing_users(
        tx: &mut Tx<'_>,
        app: &str,
        users: &[String],
        now: i64,
    ) -> Result<Vec<NewEvent>> {
        let mut created = Vec::new();
        for id in users {
            let inserted = sqlx::query(INSERT_USER_UNLESS_EXISTS)
                .bind(app)
                .bind(id)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                > 0;
            if inserted {
                let user = user_in(tx, app, id).await?.ok_or_else(Error::internal)?;
                created.push(user_event(app, "user.created", &user, now));
            }
        }
        Ok(created)
    }

    pub async fn update_user(&self, app: &str, id: &str, patch: &UserPatch) -> Result<User> {
        check_patch(patch)?;
        retrying(|| self.update_user_once(app, id, patch)).await
    }

    async fn update_user_once(&self, app: &str, id: &str, patch: &UserPatch) -> Result<User> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        if !update_user_in(&mut tx, app, id, patch, now).await? {
            return Err(Error::not_found("user"));
        }
        let user = user_in(&mut tx, app, id)
            .await?
            .ok_or_else(|| Error::not_found("user"))?;
        events::record(
            &mut tx,
            self.engine,
            vec![user_event(app, "user.updated", &user, now)],
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn get_user(&self, app: &str, id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE app_id = $1 AND id = $2");
        Ok(sqlx::query_as(&sql)
            .bind(app)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// The users of `ids` that exist, in the order asked (one per mention),
    /// read in one query per 500 distinct ids rather than one per id.
    pub async fn get_users(&self, app: &str, ids: &[String]) -> Result<Vec<User>> {
        let mut distinct: Vec<&String> = ids.iter().collect();
        distinct.sort();
        distinct.dedup();
        let mut found = std::collections::HashMap::with_capacity(distinct.len());
        for chunk in distinct.chunks(500) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE app_id = $1 AND id IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query_as::<_, User>(&sql).bind(app);
            for id in chunk {
                query = query.bind(*id);
            }
            for user in query.fetch_all(&self.reader).await? {
                found.insert(user.id.clone(), user);
            }
        }
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    /// Users by id order, optionally filtered by a search over id and name.
    pub async fn list_users(
        &self,
        app: &str,
        q: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<User>> {
        let after = match cursor {
            Some(c) => decode_cursor(c, 1)?.remove(0),
            None => String::new(),
        };
        let pattern = q.map(contains_pattern);
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE app_id = $1 AND id > $2
             AND ($3 IS NULL OR LOWER(id) LIKE $3 ESCAPE '\\' OR LOWER(name) LIKE $3 ESCAPE '\\')
             ORDER BY id LIMIT $4"
        );
        let items: Vec<User> = sqlx::query_as(&sql)
            .bind(app)
            .bind(&after)
            .bind(&pattern)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let (items, next_cursor) = Page::split(items, limit, |u| encode_cursor(&[&u.id]));
        Ok(Page { items, next_cursor })
    }

    /// Which of `users` share a conversation with `me`, in one query.
    pub async fn peers_among(&self, app: &str, me: &str, users: &[String]) -> Result<Vec<String>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (0..users.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT DISTINCT them.user_id FROM members mine JOIN members them
               ON them.app_id = mine.app_id AND them.conversation_id = mine.conversation_id
             WHERE mine.app_id = $1 AND mine.user_id = $2 AND them.user_id IN ({})",
            marks.join(", ")
        );
        let mut query = sqlx::query_scalar(&sql).bind(app).bind(me);
        for u in users {
            query = query.bind(u);
        }
        Ok(query.fetch_all(&self.reader).await?)
    }

    /// The app's directory as `me` searches it: active users but `me` whose id
    /// or name contains `q` (case-insensitively), with no block between them
    /// and `me`, in id order.
    pub async fn search_directory(
        &self,
        app: &str,
        me: &str,
        q: &str,
        limit: u32,
    ) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE app_id = $1 AND id <> $2
             AND deactivated = 0
             AND (LOWER(id) LIKE $3 ESCAPE '\\' OR LOWER(name) LIKE $3 ESCAPE '\\')
             AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.app_id = u.app_id
                 AND ((b.user_id = u.id AND b.blocked_id = $2)
                   OR (b.user_id = $2 AND b.blocked_id = u.id)))
             ORDER BY id LIMIT $4"
        );
        Ok(sqlx::query_as(&sql)
            .bind(app)
            .bind(me)
            .bind(contains_pattern(q))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?)
    }

    pub async fn set_last_seen(&self, app: &str, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE users SET last_seen = $3 WHERE app_id = $1 AND id = $2")
            .bind(app)
            .bind(id)
            .bind(at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

/// A `LIKE … ESCAPE '\'` pattern matching text that contains `q`, lower-cased.
fn contains_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{}%", escaped.to_lowercase())
}

/// What deleting a user changed.
#[derive(Debug, Clone, Default)]
pub struct DeletedUser {
    /// The conversations the user was a member of (their members are told).
    pub conversations: Vec<String>,
    /// Messages erased (tombstoned) with `erase`.
    pub erased: u64,
    /// Tokens of this id issued (`iat`, ms) before this stay refused.
    pub tokens_valid_after: i64,
}

// Lifecycle: deactivation, token revocation, deletion.
impl Store {
    /// Sets or clears `deactivated`; `None` when there is no such user.
    pub async fn set_deactivated(
        &self,
        app: &str,
        id: &str,
        deactivated: bool,
    ) -> Result<Option<User>> {
        retrying(|| self.set_deactivated_once(app, id, deactivated)).await
    }

    async fn set_deactivated_once(
        &self,
        app: &str,
        id: &str,
        deactivated: bool,
    ) -> Result<Option<User>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET deactivated = $3, updated_at = $4 WHERE app_id = $1 AND id = $2",
        )
        .bind(app)
        .bind(id)
        .bind(i64::from(deactivated))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let user = user_in(&mut tx, app, id)
            .await?
            .ok_or_else(Error::internal)?;
        let kind = if deactivated {
            "user.deactivated"
        } else {
            "user.reactivated"
        };
        events::record(
            &mut tx,
            self.engine,
            vec![user_event(app, kind, &user, now)],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    /// Refuses the user's tokens issued (`iat`, ms) before `valid_after`; never
    /// moves the point back. False when there is no such user.
    pub async fn revoke_user_tokens(&self, app: &str, id: &str, valid_after: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET tokens_valid_after =
                 CASE WHEN tokens_valid_after > $3 THEN tokens_valid_after ELSE $3 END
             WHERE app_id = $1 AND id = $2",
        )
        .bind(app)
        .bind(id)
        .bind(valid_after)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// When a user with this id was last deleted, if ever (tokens issued before
    /// it stay refused).
    pub async fn user_deleted_at(&self, app: &str, id: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT deleted_at FROM deleted_users WHERE app_id = $1 AND user_id = $2",
        )
        .bind(app)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Deletes a user in one transaction: their memberships, blocks (both ways)
    /// and pending notifications go, the user row goes, and `deleted_users`
    /// remembers `tokens_before` so the tokens issued before it stay refused. Their messages
    /// stay (with their sender id) unless `erase`: then each becomes a tombstone
    /// (text and data wiped, `deleted_at` set, its reactions removed), and their
    /// reactions to other messages go too. `None` when there is no such user.
    pub async fn delete_user(
        &self,
        app: &str,
        id: &str,
        erase: bool,
        tokens_before: i64,
    ) -> Result<Option<DeletedUser>> {
        retrying(|| self.delete_user_once(app, id, erase, tokens_before)).await
    }

    async fn delete_user_once(
        &self,
        app: &str,
        id: &str,
        erase: bool,
        tokens_before: i64,
    ) -> Result<Option<DeletedUser>> {
        let mut tx = self.writer.begin().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM users WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let conversations: Vec<String> = sqlx::query_scalar(
            "SELECT conversation_id FROM members WHERE app_id = $1 AND user_id = $2 ORDER BY conversation_id",
        )
        .bind(app)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        // Reads only so far: the conversations' advisory locks come before the
        // first write (store/events.rs), for the `member.removed` events.
        let keys: Vec<(&str, &str)> = conversations.iter().map(|c| (app, c.as_str())).collect();
        events::lock_conversations(&mut tx, self.engine, &keys).await?;
        // Read again under the locks: a join in between would otherwise
        // lose its `member.removed` (the transaction runs again instead).
        let rows = sqlx::query(
            "SELECT conversation_id, user_id, role, joined_at, last_read_seq, cleared_seq, muted
             FROM members WHERE app_id = $1 AND user_id = $2 ORDER BY conversation_id",
        )
        .bind(app)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let mut memberships: Vec<(String, super::Member)> = Vec::with_capacity(rows.len());
        for row in &rows {
            use sqlx::{FromRow, Row};
            memberships.push((
                row.try_get("conversation_id")?,
                super::Member::from_row(row)?,
            ));
        }
        if memberships.iter().map(|(c, _)| c).ne(conversations.iter()) {
            return Err(Error::conflict());
        }
        let by_user = [
            "DELETE FROM members WHERE app_id = $1 AND user_id = $2",
            "DELETE FROM blocks WHERE app_id = $1 AND (user_id = $2 OR blocked_id = $2)",
            "DELETE FROM notifications WHERE app_id = $1 AND user_id = $2",
            "DELETE FROM push_devices WHERE app_id = $1 AND user_id = $2",
        ];
        for sql in by_user {
            sqlx::query(sql)
                .bind(app)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let mut erased = 0;
        if erase {
            sqlx::query(
                "DELETE FROM reactions WHERE app_id = $1 AND (user_id = $2 OR EXISTS (
                     SELECT 1 FROM messages m WHERE m.app_id = reactions.app_id
                     AND m.conversation_id = reactions.conversation_id
                     AND m.seq = reactions.seq AND m.sender_id = $2))",
            )
            .bind(app)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            erased = sqlx::query(
                "UPDATE messages SET text = '', data = '{}', attachments = '[]', deleted_at = $3
                 WHERE app_id = $1 AND sender_id = $2 AND deleted_at IS NULL",
            )
            .bind(app)
            .bind(id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        super::files::delete_uploads(&mut tx, app, super::files::UploadsOf::User(id, erase))
            .await?;
        sqlx::query("DELETE FROM users WHERE app_id = $1 AND id = $2")
            .bind(app)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO deleted_users (app_id, user_id, deleted_at) VALUES ($1, $2, $3)
             ON CONFLICT (app_id, user_id) DO UPDATE SET deleted_at = excluded.deleted_at",
        )
        .bind(app)
        .bind(id)
        .bind(tokens_before)
        .execute(&mut *tx)
        .await?;
        // Erasure takes their retained events too: what they did and the
        // events carrying their messages.
        if erase {
            events::erase_user_events(&mut tx, app, id).await?;
        }
        let now = now_ms();
        let mut recorded: Vec<NewEvent> = memberships
            .iter()
            .map(|(conv, m)| {
                super::conversations::member_event(app, conv, "member.removed", m, now)
            })
            .collect();
        recorded.push(NewEvent::new(
            app,
            "user.deleted",
            None,
            Some(id),
            now,
            serde_json::json!({ "user_id": id, "erased": erase }),
        ));
        events::record(&mut tx, self.engine, recorded).await?;
        tx.commit().await?;
        Ok(Some(DeletedUser {
            conversations,
            erased,
            tokens_valid_after: tokens_before,
        }))
    }
}

/// The user as stored, read inside `tx`.
async fn user_in(tx: &mut Tx<'_>, app: &str, id: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE app_id = $1 AND id = $2");
    Ok(sqlx::query_as(&sql)
        .bind(app)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Applies `patch` in `tx`; false when there is no such user.
async fn update_user_in(
    tx: &mut Tx<'_>,
    app: &str,
    id: &str,
    patch: &UserPatch,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET name = COALESCE($3, name), avatar_url = COALESCE($4, avatar_url),
         data = COALESCE($5, data), updated_at = $6 WHERE app_id = $1 AND id = $2",
    )
    .bind(app)
    .bind(id)
    .bind(&patch.name)
    .bind(&patch.avatar_url)
    .bind(patch.data.as_ref().map(Value::to_string))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

fn user_event(app: &str, kind: &'static str, user: &User, now: i64) -> NewEvent {
    NewEvent::new(
        app,
        kind,
        None,
        Some(&user.id),
        now,
        serde_json::json!({ "user": user }),
    )
}
