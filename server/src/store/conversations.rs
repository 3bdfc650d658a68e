//! Conversations and their members. A direct conversation is unique per pair of
//! users (enforced by a unique `direct_key`), so starting one twice returns the same.

use serde::Serialize;
use serde_json::Value;

use super::events::{self, NewEvent};
use super::{
    decode_cursor, encode_cursor, now_ms, retrying, unread, Conversation, Kind, Member, Millis,
    Role, Store, Tx, Viewer,
};
use crate::error::{Error, Result};

pub const MAX_CONVERSATION_DATA_BYTES: usize = 16 * 1024;

/// One page of a list. `next_cursor` is passed as `?cursor=` for the next page;
/// it is null on the last page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Lists read one row past `limit` to learn whether there is a next page: this
    /// trims that row and makes the cursor from the last item kept.
    pub(crate) fn split(
        mut items: Vec<T>,
        limit: u32,
        cursor_of: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        if items.len() > limit as usize {
            items.truncate(limit as usize);
            let next = items.last().map(cursor_of);
            (items, next)
        } else {
            (items, None)
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct NewGroup {
    pub id: Option<String>,
    pub name: String,
    pub icon_url: String,
    pub data: Option<Value>,
    /// Becomes the owner and is recorded as `created_by`; None when the backend
    /// or a token's `groups` claim creates it.
    pub creator: Option<String>,
    pub members: Vec<String>,
    /// Create members that do not exist yet (the backend's groups), in the
    /// group's transaction: a refused create leaves no user behind.
    pub create_missing_members: bool,
}

/// The columns a [`Conversation`] is read from (`FromRow`, by name), of the
/// `conversations` table as `c`.
const CONV_COLUMNS: &str =
    "c.id, c.kind, c.name, c.icon_url, c.data, c.created_at, c.updated_at, c.last_activity_at, c.last_seq, c.created_by";

/// The columns a [`Member`] is read from (`FromRow`, by name).
const MEMBER_COLUMNS: &str = "user_id, role, joined_at, last_read_seq, cleared_seq, muted";

/// Where a member has read to.
#[derive(sqlx::FromRow)]
struct ReadPosition {
    last_read_seq: i64,
    cleared_seq: i64,
}

pub fn valid_conversation_id(id: &str) -> bool {
    crate::auth::valid_user_id(id)
}

/// The limits of a conversation's name, icon and data.
pub fn check_conversation_fields(
    name: Option<&str>,
    icon_url: Option<&str>,
    data: Option<&Value>,
) -> Result<()> {
    if name.is_some_and(|n| n.len() > 256) || icon_url.is_some_and(|u| u.len() > 2048) {
        return Err(Error::invalid("name or icon_url too long"));
    }
    check_data(&data.cloned())
}

fn check_data(data: &Option<Value>) -> Result<()> {
    if let Some(d) = data {
        if !d.is_object() {
            return Err(Error::invalid("data must be a JSON object"));
        }
        if d.to_string().len() > MAX_CONVERSATION_DATA_BYTES {
            return Err(Error::too_large("conversation data is larger than 16 KiB"));
        }
    }
    Ok(())
}

impl Store {
    pub async fn create_group(&self, app: &str, group: NewGroup) -> Result<Conversation> {
        let id = match &group.id {
            Some(id) if valid_conversation_id(id) => id.clone(),
            Some(_) => return Err(Error::invalid("invalid conversation id")),
            None => new_conversation_id(),
        };
        if group.name.len() > 256 || group.icon_url.len() > 2048 {
            return Err(Error::invalid("name or icon_url too long"));
        }
        check_data(&group.data)?;
        let creator = group.creator.clone();
        retrying(|| self.create_group_once(app, &id, &group)).await?;
        self.get_conversation(app, &id, creator.as_deref())
            .await?
            .ok_or_else(Error::internal)
    }

    async fn create_group_once(&self, app: &str, id: &str, group: &NewGroup) -> Result<()> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO conversations (app_id, id, kind, name, icon_url, data, created_at, updated_at, last_activity_at, created_by)
             VALUES ($1, $2, 'group', $3, $4, $5, $6, $6, $6, $7) ON CONFLICT (app_id, id) DO NOTHING",
        )
        .bind(app)
        .bind(id)
        .bind(&group.name)
        .bind(&group.icon_url)
        .bind(group.data.as_ref().map(Value::to_string).unwrap_or_else(|| "{}".into()))
        .bind(now)
        .bind(&group.creator)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(Error::new(
                mkondo_proto::ErrorCode::AlreadyExists,
                "conversation already exists",
            ));
        }
        let mut members: Vec<(String, Role)> = Vec::new();
        if let Some(creator) = &group.creator {
            members.push((creator.clone(), Role::Owner));
        }
        for m in &group.members {
            if !members.iter().any(|(u, _)| u == m) {
                members.push((m.clone(), Role::Member));
            }
        }
        let mut created = Vec::new();
        if group.create_missing_members {
            created = Store::insert_missing_users(&mut tx, app, &group.members, now).await?;
        }
        for (user, role) in &members {
            insert_member(&mut tx, app, id, user, *role, 0, now).await?;
        }
        let conversation = conversation_in(&mut tx, app, id)
            .await?
            .ok_or_else(Error::internal)?;
        let mut recorded = created;
        recorded.push(created_event(
            app,
            &conversation,
            group.creator.as_deref(),
            now,
        ));
        events::record(&mut tx, self.engine, recorded).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The direct conversation of `a` and `b`, created when missing. Returns it and
    /// whether it was created now.
    pub async fn direct_conversation(
        &self,
        app: &str,
        a: &str,
        b: &str,
    ) -> Result<(Conversation, bool)> {
        if a == b {
            return Err(Error::invalid(
                "a direct conversation needs two different users",
            ));
        }
        let key = if a < b {
            format!("{a}|{b}")
        } else {
            format!("{b}|{a}")
        };
        let (id, created) = retrying(|| self.direct_conversation_once(app, a, b, &key)).await?;
        let conv = self
            .get_conversation(app, &id, Some(a))
            .await?
            .ok_or_else(Error::internal)?;
        Ok((conv, created))
    }

    /// Inserts the pair's conversation unless it exists. Two nodes starting the
    /// same pair at once: the second insert waits for the first to commit, then
    /// does nothing, and the select that follows sees the first one's row.
    async fn direct_conversation_once(
        &self,
        app: &str,
        a: &str,
        b: &str,
        key: &str,
    ) -> Result<(String, bool)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let id = new_conversation_id();
        let created = sqlx::query(
            "INSERT INTO conversations (app_id, id, kind, direct_key, created_at, updated_at, last_activity_at)
             VALUES ($1, $2, 'direct', $3, $4, $4, $4) ON CONFLICT (app_id, direct_key) DO NOTHING",
        )
        .bind(app)
        .bind(&id)
        .bind(key)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let id: String = if created {
            for user in [a, b] {
                insert_member(&mut tx, app, &id, user, Role::Member, 0, now).await?;
            }
            let conversation = conversation_in(&mut tx, app, &id)
                .await?
                .ok_or_else(Error::internal)?;
            let event = created_event(app, &conversation, Some(a), now);
            events::record(&mut tx, self.engine, vec![event]).await?;
            id
        } else {
            sqlx::query_scalar("SELECT id FROM conversations WHERE app_id = $1 AND direct_key = $2")
                .bind(app)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?
        };
        tx.commit().await?;
        Ok((id, created))
    }

    /// A conversation with its summary; with `viewer`, their membership joined on
    /// (None when the viewer is not a member).
    pub async fn get_conversation(
        &self,
        app: &str,
        id: &str,
        viewer: Option<&str>,
    ) -> Result<Option<Conversation>> {
        let sql =
            format!("SELECT {CONV_COLUMNS} FROM conversations c WHERE c.app_id = $1 AND c.id = $2");
        let conv = sqlx::query_as(&sql)
            .bind(app)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        let Some(mut conv) = conv else {
            return Ok(None);
        };
        self.complete(app, &mut conv, viewer).await?;
        Ok(Some(conv))
    }

    /// Fills in member count, last message, the pair of a direct conversation and the viewer's membership.
    async fn complete(
        &self,
        app: &str,
        conv: &mut Conversation,
        viewer: Option<&str>,
    ) -> Result<()> {
        conv.member_count = sqlx::query_scalar(
            "SELECT COUNT(*) FROM members WHERE app_id = $1 AND conversation_id = $2",
        )
        .bind(app)
        .bind(&conv.id)
        .fetch_one(&self.reader)
        .await?;
        if conv.kind == Kind::Direct {
            conv.members = self.member_ids(app, &conv.id).await?;
        }
        if let Some(user) = viewer {
            if let Some(m) = self.member(app, &conv.id, user).await? {
                // Only a conversation with nothing after cleared_seq can be hidden.
                let hidden = m.cleared_seq >= conv.last_seq
                    && self.hid_conversation(app, &conv.id, user).await?;
                conv.viewer = Some(Viewer {
                    role: m.role,
                    last_read_seq: m.last_read_seq,
                    cleared_seq: m.cleared_seq,
                    unread_count: unread(conv.last_seq, m.last_read_seq, m.cleared_seq),
                    muted: m.muted,
                    hidden,
                });
            }
        }
        let visible_from = conv.viewer.as_ref().map_or(0, |v| v.cleared_seq);
        if conv.last_seq > visible_from {
            conv.last_message = self.message(app, &conv.id, conv.last_seq).await?;
        }
        Ok(())
    }

    pub async fn update_conversation(
        &self,
        app: &str,
        id: &str,
        name: Option<&str>,
        icon_url: Option<&str>,
        data: Option<&Value>,
    ) -> Result<()> {
        check_conversation_fields(name, icon_url, data)?;
        retrying(|| self.update_conversation_once(app, id, name, icon_url, data)).await
    }

    async fn update_conversation_once(
        &self,
        app: &str,
        id: &str,
        name: Option<&str>,
        icon_url: Option<&str>,
        data: Option<&Value>,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, id)]).await?;
        let done = sqlx::query(
            "UPDATE conversations SET name = COALESCE($3, name), icon_url = COALESCE($4, icon_url),
             data = COALESCE($5, data), updated_at = $6 WHERE app_id = $1 AND id = $2",
        )
        .bind(app)
        .bind(id)
        .bind(name)
        .bind(icon_url)
        .bind(data.map(Value::to_string))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("conversation"));
        }
        self.record_updated(&mut tx, app, id, None, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records `conversation.updated` with the conversation as it is now in `tx`.
    pub(crate) async fn record_updated(
        &self,
        tx: &mut Tx<'_>,
        app: &str,
        conv: &str,
        by: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let conversation = conversation_in(tx, app, conv)
            .await?
            .ok_or_else(|| Error::not_found("conversation"))?;
        let event = NewEvent::new(
            app,
            "conversation.updated",
            Some(conv),
            by,
            now,
            serde_json::json!({ "conversation": conversation }),
        );
        events::record(tx, self.engine, vec![event]).await
    }

    /// Every conversation of the app, latest activity first (backend view).
    pub async fn list_conversations(
        &self,
        app: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Conversation>> {
        self.conversation_page(app, None, cursor, limit).await
    }

    /// The conversations `user` is in, latest activity first, with unread counts.
    pub async fn user_conversations(
        &self,
        app: &str,
        user: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Conversation>> {
        self.conversation_page(app, Some(user), cursor, limit).await
    }

    async fn conversation_page(
        &self,
        app: &str,
        user: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Conversation>> {
        let (before_at, before_id) = match cursor {
            Some(c) => {
                let p = decode_cursor(c, 2)?;
                let at: i64 = p[0].parse().map_err(|_| Error::invalid("invalid cursor"))?;
                (at, p[1].clone())
            }
            None => (i64::MAX, String::new()),
        };
        let page =
            "(c.last_activity_at < $3 OR (c.last_activity_at = $3 AND ($4 = '' OR c.id < $4)))
             ORDER BY c.last_activity_at DESC, c.id DESC LIMIT $5";
        let sql = if user.is_some() {
            // Driven from the user's memberships: left to itself SQLite's planner
            // walks the whole app's conversations by activity and probes each for
            // the user, which made a connect slow in an app with thousands of
            // conversations. `CROSS JOIN` fixes SQLite's join order (PostgreSQL
            // plans it as a plain join). A conversation the member hid stays out
            // of their list until a message comes after the hide.
            format!(
                "WITH mine AS MATERIALIZED (
                     SELECT conversation_id, hidden, cleared_seq FROM members
                     WHERE app_id = $1 AND user_id = $2)
                 SELECT {CONV_COLUMNS} FROM mine m CROSS JOIN conversations c
                 WHERE c.app_id = $1 AND c.id = m.conversation_id
                   AND (m.hidden = 0 OR c.last_seq > m.cleared_seq) AND {page}"
            )
        } else {
            format!(
                "SELECT {CONV_COLUMNS} FROM conversations c
                 WHERE c.app_id = $1 AND ($2 IS NULL) AND {page}"
            )
        };
        let items: Vec<Conversation> = sqlx::query_as(&sql)
            .bind(app)
            .bind(user)
            .bind(before_at)
            .bind(&before_id)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let (mut items, next_cursor) = Page::split(items, limit, |c| {
            encode_cursor(&[&c.last_activity_at.0.to_string(), &c.id])
        });
        for conv in &mut items {
            self.complete(app, conv, user).await?;
        }
        Ok(Page { items, next_cursor })
    }

    pub async fn member(&self, app: &str, conv: &str, user: &str) -> Result<Option<Member>> {
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} FROM members
             WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3"
        );
        Ok(sqlx::query_as(&sql)
            .bind(app)
            .bind(conv)
            .bind(user)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub async fn members(
        &self,
        app: &str,
        conv: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Member>> {
        let after = match cursor {
            Some(c) => decode_cursor(c, 1)?.remove(0),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} FROM members
             WHERE app_id = $1 AND conversation_id = $2 AND user_id > $3 ORDER BY user_id LIMIT $4"
        );
        let items: Vec<Member> = sqlx::query_as(&sql)
            .bind(app)
            .bind(conv)
            .bind(&after)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let (items, next_cursor) = Page::split(items, limit, |m| encode_cursor(&[&m.user_id]));
        Ok(Page { items, next_cursor })
    }

    pub async fn member_ids(&self, app: &str, conv: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM members WHERE app_id = $1 AND conversation_id = $2 ORDER BY user_id",
        )
        .bind(app)
        .bind(conv)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Adds users as members; returns those who were not members before.
    pub async fn add_members(
        &self,
        app: &str,
        conv: &str,
        users: &[String],
        role: Role,
    ) -> Result<Vec<Member>> {
        retrying(|| self.add_members_once(app, conv, users, role)).await
    }

    async fn add_members_once(
        &self,
        app: &str,
        conv: &str,
        users: &[String],
        role: Role,
    ) -> Result<Vec<Member>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        // Locked: a message sent meanwhile comes before or after the join, not during.
        let last_seq: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT last_seq FROM conversations WHERE app_id = $1 AND id = $2{}",
            self.lock()
        ))
        .bind(app)
        .bind(conv)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(last_seq) = last_seq else {
            return Err(Error::not_found("conversation"));
        };
        let mut added = Vec::new();
        for user in users {
            // A new member has read nothing before joining: history stays readable, unread starts at 0.
            if insert_member(&mut tx, app, conv, user, role, last_seq, now).await? {
                added.push(Member {
                    user_id: user.clone(),
                    role,
                    joined_at: Millis(now),
                    last_read_seq: last_seq,
                    cleared_seq: 0,
                    muted: false,
                });
            }
        }
        let recorded = added
            .iter()
            .map(|m| member_event(app, conv, "member.added", m, now))
            .collect();
        events::record(&mut tx, self.engine, recorded).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Deletes a conversation with its members, messages and reactions, in one
    /// transaction. Returns false when there was no such conversation.
    pub async fn delete_conversation(&self, app: &str, conv: &str) -> Result<bool> {
        retrying(|| self.delete_conversation_once(app, conv)).await
    }

    async fn delete_conversation_once(&self, app: &str, conv: &str) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        // The conversation's row first, as every writer takes it: no deadlock
        // with a send that holds it and waits for a member row deleted here.
        sqlx::query(&format!(
            "SELECT id FROM conversations WHERE app_id = $1 AND id = $2{}",
            self.lock()
        ))
        .bind(app)
        .bind(conv)
        .fetch_optional(&mut *tx)
        .await?;
        super::files::delete_uploads(&mut tx, app, super::files::UploadsOf::Conversation(conv))
            .await?;
        for table in ["reactions", "messages", "members"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE app_id = $1 AND conversation_id = $2"
            ))
            .bind(app)
            .bind(conv)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query("DELETE FROM conversations WHERE app_id = $1 AND id = $2")
            .bind(app)
            .bind(conv)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            events::redact_conversation(&mut tx, self.engine, app, conv).await?;
            let event = NewEvent::new(
                app,
                "conversation.deleted",
                Some(conv),
                None,
                now_ms(),
                serde_json::json!({ "conversation_id": conv }),
            );
            events::record(&mut tx, self.engine, vec![event]).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Users who share a direct conversation with `user`.
    pub async fn contacts(&self, app: &str, user: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            // From the user's memberships out (see `conversation_page`).
            "WITH mine AS MATERIALIZED (
                 SELECT conversation_id FROM members WHERE app_id = $1 AND user_id = $2)
             SELECT DISTINCT o.user_id FROM mine CROSS JOIN conversations c CROSS JOIN members o
             WHERE c.app_id = $1 AND c.id = mine.conversation_id AND c.kind = 'direct'
               AND o.app_id = $1 AND o.conversation_id = mine.conversation_id AND o.user_id <> $2",
        )
        .bind(app)
        .bind(user)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Ids of every conversation `user` is in.
    pub async fn conversation_ids_of(&self, app: &str, user: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT conversation_id FROM members WHERE app_id = $1 AND user_id = $2",
        )
        .bind(app)
        .bind(user)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Marks `conv` read by `user` up to `seq` (never backwards, never past the end).
    /// Returns the new last_read_seq and unread count.
    pub async fn mark_read(
        &self,
        app: &str,
        conv: &str,
        user: &str,
        seq: i64,
    ) -> Result<(i64, i64)> {
        retrying(|| self.mark_read_once(app, conv, user, seq)).await
    }

    async fn mark_read_once(
        &self,
        app: &str,
        conv: &str,
        user: &str,
        seq: i64,
    ) -> Result<(i64, i64)> {
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        let last_seq: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM conversations WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(conv)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(last_seq) = last_seq else {
            return Err(Error::not_found("conversation"));
        };
        let target = seq.clamp(0, last_seq);
        let moved = sqlx::query(
            "UPDATE members SET last_read_seq = $4 WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3 AND last_read_seq < $4",
        )
        .bind(app)
        .bind(conv)
        .bind(user)
        .bind(target)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let read: ReadPosition = sqlx::query_as(
            "SELECT last_read_seq, cleared_seq FROM members WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3",
        )
        .bind(app)
        .bind(conv)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::not_found("conversation"))?;
        if moved {
            let event = NewEvent::new(
                app,
                "read.moved",
                Some(conv),
                Some(user),
                now_ms(),
                serde_json::json!({
                    "conversation_id": conv,
                    "user_id": user,
                    "last_read_seq": read.last_read_seq,
                    "unread_count": unread(last_seq, read.last_read_seq, read.cleared_seq),
                }),
            );
            events::record(&mut tx, self.engine, vec![event]).await?;
        }
        tx.commit().await?;
        Ok((
            read.last_read_seq,
            unread(last_seq, read.last_read_seq, read.cleared_seq),
        ))
    }
}

async fn insert_member(
    tx: &mut Tx<'_>,
    app: &str,
    conv: &str,
    user: &str,
    role: Role,
    last_read_seq: i64,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO members (app_id, conversation_id, user_id, role, joined_at, last_read_seq)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app_id, conversation_id, user_id) DO NOTHING",
    )
    .bind(app)
    .bind(conv)
    .bind(user)
    .bind(role.as_str())
    .bind(now)
    .bind(last_read_seq)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A conversation as the backend's REST view shows it (without a viewer or
/// its last message), read inside `tx` for an event.
pub(crate) async fn conversation_in(
    tx: &mut Tx<'_>,
    app: &str,
    id: &str,
) -> Result<Option<Conversation>> {
    let sql =
        format!("SELECT {CONV_COLUMNS} FROM conversations c WHERE c.app_id = $1 AND c.id = $2");
    let Some(mut conv): Option<Conversation> = sqlx::query_as(&sql)
        .bind(app)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let members: Vec<String> = sqlx::query_scalar(
        "SELECT user_id FROM members WHERE app_id = $1 AND conversation_id = $2 ORDER BY user_id",
    )
    .bind(app)
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    conv.member_count = members.len() as i64;
    if conv.kind == Kind::Direct {
        conv.members = members;
    }
    Ok(Some(conv))
}

fn created_event(app: &str, conv: &Conversation, by: Option<&str>, now: i64) -> NewEvent {
    NewEvent::new(
        app,
        "conversation.created",
        Some(&conv.id),
        by,
        now,
        serde_json::json!({ "conversation": conv }),
    )
}

/// `member.added`, `member.removed` or `member.role_changed` for `member`.
pub(crate) fn member_event(
    app: &str,
    conv: &str,
    kind: &'static str,
    member: &Member,
    now: i64,
) -> NewEvent {
    NewEvent::new(
        app,
        kind,
        Some(conv),
        Some(&member.user_id),
        now,
        serde_json::json!({ "conversation_id": conv, "member": member }),
    )
}

fn new_conversation_id() -> String {
    format!("c{}", ulid::Ulid::new().to_string().to_lowercase())
}
