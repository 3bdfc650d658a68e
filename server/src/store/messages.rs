//! Messages. `send` is the one place a seq is allocated: in a write
//! transaction (shared with concurrent sends, see [`super::group_commit`]) it
//! locks the conversation's row, finds a retried `client_id`, inserts the
//! message, moves `last_seq` and the sender's read position — all or nothing.

use serde_json::Value;
use sqlx::{FromRow, Row};

use super::columns::JsonText;
use super::events::{self, NewEvent};
use super::{
    decode_cursor, encode_cursor, now_ms, retrying, DbRow, Message, Millis, Page, Store, Tx,
};
use crate::error::{Error, Result};

pub const MAX_TEXT_BYTES: usize = 16 * 1024;
pub const MAX_MESSAGE_DATA_BYTES: usize = 32 * 1024;
pub const MAX_CLIENT_ID_BYTES: usize = 128;

#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub sender_id: String,
    /// "user" or "system".
    pub kind: String,
    pub text: String,
    pub data: Option<Value>,
    pub client_id: Option<String>,
    pub reply_to: Option<i64>,
    /// Claimed uploads (`Store::claim_uploads`); the send's transaction
    /// records the message's seq on them.
    pub attachments: Vec<super::files::Attachment>,
}

/// A page request: `after` pages forward, `before` (or neither) backward; a
/// cursor from a previous page continues in its direction.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub cursor: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Message,
    /// The client_id had been used: this is the original message, nothing was written.
    pub duplicate: bool,
    /// The members when the message was written, read in its transaction after
    /// its seq was taken: a member removed before it (a lower seq) is not here.
    pub recipients: Vec<String>,
}

/// The columns a [`Message`] is read from (its `FromRow`, by name).
const MSG_COLUMNS: &str =
    "id, conversation_id, seq, sender_id, kind, text, data, client_id, reply_to, created_at, edited_at, deleted_at, attachments";

/// Written out, not derived: a deleted message is a tombstone, whose text and
/// data are never read (deleting erases them too). Reactions come from their
/// own table (`fill_reactions`).
impl FromRow<'_, DbRow> for Message {
    fn from_row(r: &DbRow) -> sqlx::Result<Self> {
        let deleted_at: Option<Millis> = r.try_get("deleted_at")?;
        let (text, data, attachments) = match deleted_at {
            Some(_) => (String::new(), Value::Object(Default::default()), Vec::new()),
            None => (
                r.try_get("text")?,
                r.try_get::<JsonText, _>("data")?.into(),
                attachments_from(r.try_get("attachments")?)?,
            ),
        };
        Ok(Message {
            id: r.try_get("id")?,
            conversation_id: r.try_get("conversation_id")?,
            seq: r.try_get("seq")?,
            sender_id: r.try_get("sender_id")?,
            kind: r.try_get("kind")?,
            text,
            data,
            client_id: r.try_get("client_id")?,
            reply_to: r.try_get("reply_to")?,
            created_at: r.try_get("created_at")?,
            edited_at: r.try_get("edited_at")?,
            deleted_at,
            reactions: Vec::new(),
            attachments,
        })
    }
}

/// A message's `attachments` column (a JSON array) as the model's list.
pub(crate) fn attachments_from(text: String) -> sqlx::Result<Vec<super::files::Attachment>> {
    serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
        index: "attachments".to_owned(),
        source: Box::new(e),
    })
}

pub fn check_new_message(msg: &NewMessage) -> Result<()> {
    if msg.text.len() > MAX_TEXT_BYTES {
        return Err(Error::too_large("text is larger than 16 KiB"));
    }
    if let Some(data) = &msg.data {
        if !data.is_object() {
            return Err(Error::invalid("data must be a JSON object"));
        }
        if data.to_string().len() > MAX_MESSAGE_DATA_BYTES {
            return Err(Error::too_large("message data is larger than 32 KiB"));
        }
    }
    if msg.text.is_empty()
        && msg.attachments.is_empty()
        && msg
            .data
            .as_ref()
            .is_none_or(|d| d.as_object().is_none_or(|o| o.is_empty()))
    {
        return Err(Error::invalid("a message needs text, data or attachments"));
    }
    if let Some(cid) = &msg.client_id {
        if cid.is_empty() || cid.len() > MAX_CLIENT_ID_BYTES {
            return Err(Error::invalid("client_id must be 1-128 bytes"));
        }
    }
    Ok(())
}

impl Store {
    /// Sends a message, or finds the one this sender already sent with the same
    /// `client_id` (from any node: the lookup comes after the conversation's row
    /// lock, so an earlier send of it has committed and is seen). Concurrent
    /// sends share one transaction ([`super::group_commit`]); this returns after
    /// the commit that holds this one.
    pub async fn send_message(&self, app: &str, conv: &str, msg: &NewMessage) -> Result<Sent> {
        check_new_message(msg)?;
        let mut sent = self.commits.send(app, conv, msg).await?;
        if sent.duplicate {
            let mut original = [sent.message];
            self.fill_reactions(app, conv, &mut original).await?;
            let [message] = original;
            sent.message = message;
        }
        Ok(sent)
    }

    /// Sends committed so far and the transactions they shared: (batches, sends).
    pub fn group_commit_stats(&self) -> (u64, u64) {
        self.commits.stats()
    }

    pub async fn message(&self, app: &str, conv: &str, seq: i64) -> Result<Option<Message>> {
        let sql = format!("SELECT {MSG_COLUMNS} FROM messages WHERE app_id = $1 AND conversation_id = $2 AND seq = $3");
        let message = sqlx::query_as(&sql)
            .bind(app)
            .bind(conv)
            .bind(seq)
            .fetch_optional(&self.reader)
            .await?;
        let Some(message) = message else {
            return Ok(None);
        };
        let mut found = [message];
        self.fill_reactions(app, conv, &mut found).await?;
        let [message] = found;
        Ok(Some(message))
    }

    /// A page of history in ascending seq order, never at or below `floor` (the
    /// viewer's cleared_seq). `after`: the oldest messages after it; `before`: the
    /// newest before it; neither: the newest. `more` says whether more exist in
    /// the direction of the page.
    pub async fn history(
        &self,
        app: &str,
        conv: &str,
        before: Option<i64>,
        after: Option<i64>,
        limit: u32,
        floor: i64,
    ) -> Result<(Vec<Message>, bool)> {
        let limit = i64::from(limit.clamp(1, 100));
        let (sql, bound) = match after {
            Some(after) => (
                format!(
                    "SELECT {MSG_COLUMNS} FROM messages WHERE app_id = $1 AND conversation_id = $2 AND seq > $3
                     ORDER BY seq ASC LIMIT $4"
                ),
                after.max(floor),
            ),
            None => (
                format!(
                    "SELECT {MSG_COLUMNS} FROM messages WHERE app_id = $1 AND conversation_id = $2 AND seq < $3 AND seq > $5
                     ORDER BY seq DESC LIMIT $4"
                ),
                before.unwrap_or(i64::MAX),
            ),
        };
        let mut query = sqlx::query_as(&sql)
            .bind(app)
            .bind(conv)
            .bind(bound)
            .bind(limit + 1);
        if after.is_none() {
            query = query.bind(floor);
        }
        let mut messages: Vec<Message> = query.fetch_all(&self.reader).await?;
        let more = messages.len() as i64 > limit;
        messages.truncate(limit as usize);
        if after.is_none() {
            messages.reverse();
        }
        self.fill_reactions(app, conv, &mut messages).await?;
        Ok((messages, more))
    }

    /// Cursor pages of history for REST: `after`/`before` bounds plus an opaque
    /// cursor that continues in the same direction.
    pub async fn history_page(
        &self,
        app: &str,
        conv: &str,
        q: &HistoryQuery,
        floor: i64,
    ) -> Result<Page<Message>> {
        let limit = q.limit;
        let (before, after) = match q.cursor.as_deref() {
            Some(c) => {
                let p = decode_cursor(c, 2)?;
                let seq: i64 = p[1].parse().map_err(|_| Error::invalid("invalid cursor"))?;
                match p[0].as_str() {
                    "a" => (None, Some(seq)),
                    "b" => (Some(seq), None),
                    _ => return Err(Error::invalid("invalid cursor")),
                }
            }
            None => (q.before, q.after),
        };
        let forward = after.is_some();
        let (items, more) = self.history(app, conv, before, after, limit, floor).await?;
        let next_cursor = match (more, forward) {
            (true, true) => items
                .last()
                .map(|m| encode_cursor(&["a", &m.seq.to_string()])),
            (true, false) => items
                .first()
                .map(|m| encode_cursor(&["b", &m.seq.to_string()])),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// Messages a user sent, newest first.
    pub async fn user_messages(
        &self,
        app: &str,
        user: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Message>> {
        let (before_at, before_id) = match cursor {
            Some(c) => {
                let p = decode_cursor(c, 2)?;
                (
                    p[0].parse::<i64>()
                        .map_err(|_| Error::invalid("invalid cursor"))?,
                    p[1].clone(),
                )
            }
            None => (i64::MAX, String::new()),
        };
        let sql = format!(
            "SELECT {MSG_COLUMNS} FROM messages WHERE app_id = $1 AND sender_id = $2
             AND (created_at < $3 OR (created_at = $3 AND ($4 = '' OR id < $4)))
             ORDER BY created_at DESC, id DESC LIMIT $5"
        );
        let items: Vec<Message> = sqlx::query_as(&sql)
            .bind(app)
            .bind(user)
            .bind(before_at)
            .bind(&before_id)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let (mut items, next_cursor) = Page::split(items, limit, |m| {
            encode_cursor(&[&m.created_at.0.to_string(), &m.id])
        });
        self.fill_reactions_any(app, &mut items).await?;
        Ok(Page { items, next_cursor })
    }
}

/// `message.*` for `message`, its sender's (erased with them).
pub(crate) fn message_event(
    app: &str,
    kind: &'static str,
    message: &Message,
    now: i64,
) -> NewEvent {
    NewEvent::new(
        app,
        kind,
        Some(&message.conversation_id),
        Some(&message.sender_id),
        now,
        serde_json::json!({ "message": message }),
    )
    .carrying(&message.id)
}

/// An edit: absent fields keep their value.
#[derive(Debug, Clone, Default)]
pub struct MessageEdit {
    pub text: Option<String>,
    pub data: Option<Value>,
}

impl Store {
    /// Replaces a message's text and/or data and sets `edited_at`. The result
    /// must still hold text or data; a deleted message cannot be edited.
    pub async fn edit_message(
        &self,
        app: &str,
        conv: &str,
        seq: i64,
        edit: &MessageEdit,
    ) -> Result<Message> {
        retrying(|| self.edit_message_once(app, conv, seq, edit)).await
    }

    async fn edit_message_once(
        &self,
        app: &str,
        conv: &str,
        seq: i64,
        edit: &MessageEdit,
    ) -> Result<Message> {
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        let current = self.locked_message(&mut tx, app, conv, seq).await?;
        if current.deleted_at.is_some() {
            return Err(super::reactions::deleted_error());
        }
        let text = edit.text.clone().unwrap_or_else(|| current.text.clone());
        let data = edit.data.clone().unwrap_or_else(|| current.data.clone());
        check_new_message(&NewMessage {
            text: text.clone(),
            data: Some(data.clone()),
            attachments: current.attachments.clone(),
            ..Default::default()
        })?;
        let now = now_ms();
        sqlx::query(
            "UPDATE messages SET text = $4, data = $5, edited_at = $6
             WHERE app_id = $1 AND conversation_id = $2 AND seq = $3",
        )
        .bind(app)
        .bind(conv)
        .bind(seq)
        .bind(&text)
        .bind(data.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut edited = [Message {
            text,
            data,
            edited_at: Some(Millis(now)),
            ..current
        }];
        super::reactions::fill_reactions_in(&mut tx, app, conv, &mut edited).await?;
        let [message] = edited;
        let event = message_event(app, "message.edited", &message, now);
        events::record(&mut tx, self.engine, vec![event]).await?;
        tx.commit().await?;
        Ok(message)
    }

    /// Turns a message into a tombstone: its text, data and reactions are erased
    /// from the database (not only hidden) and `deleted_at` is set; the row stays
    /// so its seq remains taken. Returns the tombstone and whether it was deleted
    /// now (false: it already was).
    pub async fn delete_message(&self, app: &str, conv: &str, seq: i64) -> Result<(Message, bool)> {
        retrying(|| self.delete_message_once(app, conv, seq)).await
    }

    async fn delete_message_once(
        &self,
        app: &str,
        conv: &str,
        seq: i64,
    ) -> Result<(Message, bool)> {
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        let current = self.locked_message(&mut tx, app, conv, seq).await?;
        if current.deleted_at.is_some() {
            return Ok((current, false));
        }
        let now = now_ms();
        sqlx::query(
            "UPDATE messages SET text = '', data = '{}', attachments = '[]', deleted_at = $4
             WHERE app_id = $1 AND conversation_id = $2 AND seq = $3",
        )
        .bind(app)
        .bind(conv)
        .bind(seq)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        super::files::delete_uploads(&mut tx, app, super::files::UploadsOf::Message(conv, seq))
            .await?;
        sqlx::query(
            "DELETE FROM reactions WHERE app_id = $1 AND conversation_id = $2 AND seq = $3",
        )
        .bind(app)
        .bind(conv)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        let tombstone = Message {
            text: String::new(),
            data: Value::Object(Default::default()),
            deleted_at: Some(Millis(now)),
            reactions: Vec::new(),
            attachments: Vec::new(),
            ..current
        };
        let body = serde_json::to_value(&tombstone).map_err(|_| Error::internal())?;
        events::redact_message(&mut tx, self.engine, app, &tombstone.id, &body).await?;
        let event = message_event(app, "message.deleted", &tombstone, now);
        events::record(&mut tx, self.engine, vec![event]).await?;
        tx.commit().await?;
        Ok((tombstone, true))
    }

    /// A message read inside a write transaction, its row locked until commit (so
    /// the change that follows applies to exactly this version, on any node).
    pub(crate) async fn locked_message(
        &self,
        tx: &mut Tx<'_>,
        app: &str,
        conv: &str,
        seq: i64,
    ) -> Result<Message> {
        let sql = format!(
            "SELECT {MSG_COLUMNS} FROM messages WHERE app_id = $1 AND conversation_id = $2 AND seq = $3{}",
            self.lock()
        );
        sqlx::query_as(&sql)
            .bind(app)
            .bind(conv)
            .bind(seq)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| Error::not_found("message"))
    }
}
