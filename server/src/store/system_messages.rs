//! Membership and conversation changes that history records: each writes its
//! change and the system message telling it ("dave joined", "the group was
//! renamed") in one transaction, so history never misses a change nor tells one
//! that did not happen.
//!
//! Read positions: a system message counts as unread like any message (so
//! `unread = last_seq − last_read_seq` stays exact), but it never marks anything
//! read that its reader has not seen. The one who caused it moves past it only
//! if they had read everything before it, and a new member starts having read
//! their own "joined" message.
//!
//! Each change takes the conversation's row lock first (as a send does), so
//! changes and sends on any node apply one after the other: the owner check sees
//! every other change, and no two transactions wait for each other's rows.

use serde_json::Value;

use super::conversations::member_event;
use super::events::{self, NewEvent};
use super::messages::message_event;
use super::{now_ms, retrying, Member, Message, Millis, Role, Store, Tx};
use crate::error::{Error, Result};
use mkondo_proto::Reason;

/// The sender id of system messages.
pub const SYSTEM_SENDER: &str = "system";

/// A system message to write with a change.
#[derive(Debug, Clone)]
pub struct Notice {
    pub text: String,
    /// `{"event": …, "user_id": …, "by": …}`.
    pub data: Value,
}

/// A conversation's name, icon or data, as `PATCH` gives them (absent: unchanged).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConversationPatch<'a> {
    pub name: Option<&'a str>,
    pub icon_url: Option<&'a str>,
    pub data: Option<&'a Value>,
}

/// Refuse a change that leaves a conversation with members but no owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// Users must hand ownership over first.
    KeepOne,
    /// The backend may leave a group without an owner.
    MayLeaveNone,
}

/// Who makes a membership change, and whether it may leave the group ownerless.
#[derive(Debug, Clone, Copy)]
pub struct ChangeBy<'a> {
    /// The member who made it (None: the backend, or the member themselves leaving).
    pub member: Option<&'a str>,
    pub owners: Owners,
}

impl Store {
    /// Adds users as members with `role`, each with their notice (given per user
    /// id). Returns the members added (with their read position after the
    /// notices) and the notices written, in seq order; users who were members
    /// already get neither.
    pub async fn add_members_noticed(
        &self,
        app: &str,
        conv: &str,
        notices: &[(String, Notice)],
        role: Role,
        by: Option<&str>,
    ) -> Result<(Vec<Member>, Vec<Message>)> {
        retrying(|| self.add_members_noticed_once(app, conv, notices, role, by)).await
    }

    async fn add_members_noticed_once(
        &self,
        app: &str,
        conv: &str,
        notices: &[(String, Notice)],
        role: Role,
        by: Option<&str>,
    ) -> Result<(Vec<Member>, Vec<Message>)> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        let last_seq = lock_conversation(&mut tx, self.lock(), app, conv)
            .await?
            .ok_or_else(|| Error::not_found("conversation"))?;
        let mut added = Vec::new();
        let mut to_write = Vec::new();
        for (user, notice) in notices {
            let inserted = sqlx::query(
                "INSERT INTO members (app_id, conversation_id, user_id, role, joined_at, last_read_seq)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app_id, conversation_id, user_id) DO NOTHING",
            )
            .bind(app)
            .bind(conv)
            .bind(user)
            .bind(role.as_str())
            .bind(now)
            .bind(last_seq)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            if inserted {
                added.push(Member {
                    user_id: user.clone(),
                    role,
                    joined_at: Millis(now),
                    last_read_seq: last_seq,
                    cleared_seq: 0,
                    muted: false,
                });
                to_write.push(notice.clone());
            }
        }
        let written = append_notices(&mut tx, app, conv, &to_write, by, now).await?;
        if let Some(last) = written.last() {
            // A new member has read nothing from before they joined but the
            // story of their own arrival: history stays readable, unread is 0.
            for m in &mut added {
                set_read(&mut tx, app, conv, &m.user_id, last.seq).await?;
                m.last_read_seq = last.seq;
            }
        }
        let mut recorded: Vec<NewEvent> = added
            .iter()
            .map(|m| member_event(app, conv, "member.added", m, now))
            .collect();
        recorded.extend(notice_events(app, &written, now));
        events::record(&mut tx, self.engine, recorded).await?;
        tx.commit().await?;
        Ok((added, written))
    }

    /// Removes `user` with a notice. None when they were not a member.
    pub async fn remove_member_noticed(
        &self,
        app: &str,
        conv: &str,
        user: &str,
        notice: Notice,
        change: ChangeBy<'_>,
    ) -> Result<Option<Message>> {
        retrying(|| self.remove_member_noticed_once(app, conv, user, &notice, change)).await
    }

    async fn remove_member_noticed_once(
        &self,
        app: &str,
        conv: &str,
        user: &str,
        notice: &Notice,
        change: ChangeBy<'_>,
    ) -> Result<Option<Message>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        lock_conversation(&mut tx, self.lock(), app, conv).await?;
        let removed: Option<Member> = sqlx::query_as(
            "DELETE FROM members WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3
             RETURNING user_id, role, joined_at, last_read_seq, cleared_seq, muted",
        )
        .bind(app)
        .bind(conv)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(member) = removed else {
            return Ok(None);
        };
        let role = member.role.as_str();
        // Only an owner leaving can leave the group ownerless: a member of a
        // group the backend made (which has no owner) may always leave.
        if change.owners == Owners::KeepOne && role == Role::Owner.as_str() {
            require_an_owner(&mut tx, app, conv).await?;
        }
        let by = change.member.filter(|b| *b != user);
        let mut written =
            append_notices(&mut tx, app, conv, std::slice::from_ref(notice), by, now).await?;
        let mut recorded = vec![member_event(app, conv, "member.removed", &member, now)];
        recorded.extend(notice_events(app, &written, now));
        events::record(&mut tx, self.engine, recorded).await?;
        tx.commit().await?;
        Ok(written.pop())
    }

    /// Updates name, icon and data; when the name changes, with `renamed`'s notice.
    /// Returns the notice written, if any.
    pub async fn update_conversation_noticed(
        &self,
        app: &str,
        conv: &str,
        patch: ConversationPatch<'_>,
        renamed: Notice,
        by: Option<&str>,
    ) -> Result<Option<Message>> {
        check_patch(&patch)?;
        retrying(|| self.update_conversation_noticed_once(app, conv, patch, &renamed, by)).await
    }

    async fn update_conversation_noticed_once(
        &self,
        app: &str,
        conv: &str,
        patch: ConversationPatch<'_>,
        renamed: &Notice,
        by: Option<&str>,
    ) -> Result<Option<Message>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        let old_name: Option<String> = sqlx::query_scalar(&format!(
            "SELECT name FROM conversations WHERE app_id = $1 AND id = $2{}",
            self.lock()
        ))
        .bind(app)
        .bind(conv)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(old_name) = old_name else {
            return Err(Error::not_found("conversation"));
        };
        sqlx::query(
            "UPDATE conversations SET name = COALESCE($3, name), icon_url = COALESCE($4, icon_url),
             data = COALESCE($5, data), updated_at = $6 WHERE app_id = $1 AND id = $2",
        )
        .bind(app)
        .bind(conv)
        .bind(patch.name)
        .bind(patch.icon_url)
        .bind(patch.data.map(Value::to_string))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut written = Vec::new();
        if patch.name.is_some_and(|n| n != old_name) {
            written =
                append_notices(&mut tx, app, conv, std::slice::from_ref(renamed), by, now).await?;
        }
        self.record_updated(&mut tx, app, conv, by, now).await?;
        events::record(&mut tx, self.engine, notice_events(app, &written, now)).await?;
        tx.commit().await?;
        Ok(written.pop())
    }

    /// Sets `user`'s role, with a notice when it changes. None when `user` is not
    /// a member; otherwise the member as now and the notice written, if any.
    pub async fn set_role_noticed(
        &self,
        app: &str,
        conv: &str,
        user: &str,
        role: Role,
        notice: Notice,
        change: ChangeBy<'_>,
    ) -> Result<Option<(Member, Option<Message>)>> {
        let written =
            retrying(|| self.set_role_noticed_once(app, conv, user, role, &notice, change)).await?;
        let Some(written) = written else {
            return Ok(None);
        };
        let member = self
            .member(app, conv, user)
            .await?
            .ok_or_else(Error::internal)?;
        Ok(Some((member, written)))
    }

    /// None when `user` is not a member; otherwise the notice written, if any.
    async fn set_role_noticed_once(
        &self,
        app: &str,
        conv: &str,
        user: &str,
        role: Role,
        notice: &Notice,
        change: ChangeBy<'_>,
    ) -> Result<Option<Option<Message>>> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        lock_conversation(&mut tx, self.lock(), app, conv).await?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT role FROM members WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3",
        )
        .bind(app)
        .bind(conv)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else {
            return Ok(None);
        };
        let mut written = Vec::new();
        if current != role.as_str() {
            sqlx::query(
                "UPDATE members SET role = $4 WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3",
            )
            .bind(app)
            .bind(conv)
            .bind(user)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
            if change.owners == Owners::KeepOne && current == Role::Owner.as_str() {
                require_an_owner(&mut tx, app, conv).await?;
            }
            written = append_notices(
                &mut tx,
                app,
                conv,
                std::slice::from_ref(notice),
                change.member,
                now,
            )
            .await?;
            let member: Member = sqlx::query_as(
                "SELECT user_id, role, joined_at, last_read_seq, cleared_seq, muted FROM members
                 WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3",
            )
            .bind(app)
            .bind(conv)
            .bind(user)
            .fetch_one(&mut *tx)
            .await?;
            let mut recorded = vec![member_event(app, conv, "member.role_changed", &member, now)];
            recorded.extend(notice_events(app, &written, now));
            events::record(&mut tx, self.engine, recorded).await?;
        }
        tx.commit().await?;
        Ok(Some(written.pop()))
    }
}

/// `message.created` for each system message written.
fn notice_events(app: &str, written: &[Message], now: i64) -> Vec<NewEvent> {
    written
        .iter()
        .map(|m| message_event(app, "message.created", m, now))
        .collect()
}

fn check_patch(patch: &ConversationPatch<'_>) -> Result<()> {
    if patch.name.is_some_and(|n| n.len() > 256) || patch.icon_url.is_some_and(|u| u.len() > 2048) {
        return Err(Error::invalid("name or icon_url too long"));
    }
    if let Some(d) = patch.data {
        if !d.is_object() {
            return Err(Error::invalid("data must be a JSON object"));
        }
        if d.to_string().len() > super::conversations::MAX_CONVERSATION_DATA_BYTES {
            return Err(Error::too_large("conversation data is larger than 16 KiB"));
        }
    }
    Ok(())
}

/// The conversation's `last_seq`, its row locked until commit (`lock`:
/// [`Store::lock`]); None when there is no such conversation.
async fn lock_conversation(
    tx: &mut Tx<'_>,
    lock: &str,
    app: &str,
    conv: &str,
) -> Result<Option<i64>> {
    let last: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT last_seq FROM conversations WHERE app_id = $1 AND id = $2{lock}"
    ))
    .bind(app)
    .bind(conv)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(last)
}

async fn set_read(tx: &mut Tx<'_>, app: &str, conv: &str, user: &str, seq: i64) -> Result<()> {
    sqlx::query(
        "UPDATE members SET last_read_seq = $4 WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3",
    )
    .bind(app)
    .bind(conv)
    .bind(user)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How many members a conversation has, and how many of them own it.
#[derive(sqlx::FromRow)]
struct OwnerCount {
    members: i64,
    owners: i64,
}

/// Fails when the conversation still has members but no owner.
async fn require_an_owner(tx: &mut Tx<'_>, app: &str, conv: &str) -> Result<()> {
    let count: OwnerCount = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT) AS members,
                CAST(COALESCE(SUM(CASE WHEN role = 'owner' THEN 1 ELSE 0 END), 0) AS BIGINT) AS owners
         FROM members WHERE app_id = $1 AND conversation_id = $2",
    )
    .bind(app)
    .bind(conv)
    .fetch_one(&mut **tx)
    .await?;
    if count.members > 0 && count.owners == 0 {
        return Err(
            Error::denied("the last owner must make someone else an owner first")
                .with_reason(Reason::LastOwner),
        );
    }
    Ok(())
}

/// Appends system messages with the next seqs. `by`, the member who caused them,
/// moves past them only if they had read everything before.
async fn append_notices(
    tx: &mut Tx<'_>,
    app: &str,
    conv: &str,
    notices: &[Notice],
    by: Option<&str>,
    now: i64,
) -> Result<Vec<Message>> {
    let mut written = Vec::with_capacity(notices.len());
    for notice in notices {
        let seq: i64 = sqlx::query_scalar(
            "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = $3
             WHERE app_id = $1 AND id = $2 RETURNING last_seq",
        )
        .bind(app)
        .bind(conv)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::not_found("conversation"))?;
        let message = Message {
            id: ulid::Ulid::new().to_string(),
            conversation_id: conv.to_owned(),
            seq,
            sender_id: SYSTEM_SENDER.to_owned(),
            kind: "system".to_owned(),
            text: notice.text.clone(),
            data: notice.data.clone(),
            client_id: None,
            reply_to: None,
            created_at: Millis(now),
            edited_at: None,
            deleted_at: None,
            reactions: Vec::new(),
            attachments: Vec::new(),
        };
        sqlx::query(
            "INSERT INTO messages (app_id, conversation_id, seq, id, sender_id, kind, text, data, created_at)
             VALUES ($1, $2, $3, $4, $5, 'system', $6, $7, $8)",
        )
        .bind(app)
        .bind(conv)
        .bind(seq)
        .bind(&message.id)
        .bind(&message.sender_id)
        .bind(&message.text)
        .bind(message.data.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        written.push(message);
    }
    if let (Some(by), Some(first), Some(last)) = (by, written.first(), written.last()) {
        sqlx::query(
            "UPDATE members SET last_read_seq = $4 WHERE app_id = $1 AND conversation_id = $2
             AND user_id = $3 AND (last_read_seq >= $5 OR cleared_seq >= $5)",
        )
        .bind(app)
        .bind(conv)
        .bind(by)
        .bind(last.seq)
        .bind(first.seq - 1)
        .execute(&mut **tx)
        .await?;
    }
    Ok(written)
}
