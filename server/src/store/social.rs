//! Storage between people: notifications kept for a user until acknowledged or
//! expired, blocks, and hiding a conversation ("delete chat").
//!
//! An expired notification is never returned (every read filters on
//! `expires_at`), and expired rows are purged whenever a new one is written, so
//! the table holds at most what is still deliverable plus what expired since.

use serde::Serialize;
use serde_json::Value;

use super::columns::JsonText;
use super::events::{self, NewEvent};
use super::{decode_cursor, encode_cursor, now_ms, retrying, Millis, Page, Store};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Notification {
    pub id: String,
    pub user_id: String,
    /// Opaque to the server: what the backend sent.
    #[schema(value_type = Object)]
    #[sqlx(try_from = "JsonText")]
    pub payload: Value,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// One entry of a user's block list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Block {
    /// The blocked user.
    #[sqlx(rename = "blocked_id")]
    pub user_id: String,
    pub created_at: Millis,
}

/// A send or a new direct conversation refused because a block stands between
/// the two users, in either direction.
fn block_event(app: &str, kind: &'static str, user: &str, other: &str, now: i64) -> NewEvent {
    NewEvent::new(
        app,
        kind,
        None,
        Some(user),
        now,
        serde_json::json!({ "user_id": user, "blocked_id": other }),
    )
}

pub(crate) fn blocked_error() -> Error {
    Error::new(
        mkondo_proto::ErrorCode::Blocked,
        "a block stands between you and this user",
    )
}

impl Store {
    // ----- notifications

    /// Stores a notification for `user`, valid for `ttl_ms`, and purges expired ones.
    pub async fn insert_notification(
        &self,
        app: &str,
        user: &str,
        payload: &Value,
        ttl_ms: i64,
    ) -> Result<Notification> {
        let now = now_ms();
        let n = Notification {
            id: ulid::Ulid::new().to_string(),
            user_id: user.to_owned(),
            payload: payload.clone(),
            created_at: Millis(now),
            expires_at: Millis(now.saturating_add(ttl_ms)),
        };
        // Two purges at once may lock the same expired rows in a different
        // order: the one the database picks as a deadlock victim runs again.
        retrying(|| self.insert_notification_once(app, &n)).await?;
        Ok(n)
    }

    async fn insert_notification_once(&self, app: &str, n: &Notification) -> Result<()> {
        let payload = &n.payload;
        let now = n.created_at.0;
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM notifications WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO notifications (app_id, id, user_id, payload, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(app)
        .bind(&n.id)
        .bind(&n.user_id)
        .bind(payload.to_string())
        .bind(n.created_at.0)
        .bind(n.expires_at.0)
        .execute(&mut *tx)
        .await?;
        let event = NewEvent::new(
            app,
            "notification.sent",
            None,
            Some(&n.user_id),
            now,
            serde_json::json!({ "notification": n }),
        );
        events::record(&mut tx, self.engine, vec![event]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `user`'s unexpired, unacknowledged notifications, oldest first.
    pub async fn pending_notifications(
        &self,
        app: &str,
        user: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Notification>> {
        let after = match cursor {
            Some(c) => decode_cursor(c, 1)?.remove(0),
            None => String::new(),
        };
        let items: Vec<Notification> = sqlx::query_as(
            "SELECT id, user_id, payload, created_at, expires_at FROM notifications
             WHERE app_id = $1 AND user_id = $2 AND id > $3 AND expires_at > $4
             ORDER BY id LIMIT $5",
        )
        .bind(app)
        .bind(user)
        .bind(&after)
        .bind(now_ms())
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await?;
        let (items, next_cursor) = Page::split(items, limit, |n| encode_cursor(&[&n.id]));
        Ok(Page { items, next_cursor })
    }

    /// Removes `user`'s notification `id`; false when there was none (or it expired).
    pub async fn ack_notification(&self, app: &str, user: &str, id: &str) -> Result<bool> {
        let now = now_ms();
        self.write_with_event(
            sqlx::query(
                "DELETE FROM notifications WHERE app_id = $1 AND user_id = $2 AND id = $3 AND expires_at > $4",
            )
            .bind(app)
            .bind(user)
            .bind(id)
            .bind(now),
            NewEvent::new(
                app,
                "notification.acknowledged",
                None,
                Some(user),
                now,
                serde_json::json!({ "notification_id": id, "user_id": user }),
            ),
        )
        .await
    }

    /// Runs one write and, when it changed a row, records `event` with it.
    /// Returns whether it changed a row.
    async fn write_with_event<'q>(
        &self,
        write: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        event: NewEvent,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let changed = write.execute(&mut *tx).await?.rows_affected() > 0;
        if changed {
            events::record(&mut tx, self.engine, vec![event]).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    // ----- blocks

    /// `user` blocks `other`; false when the block already stood.
    pub async fn block(&self, app: &str, user: &str, other: &str) -> Result<bool> {
        let now = now_ms();
        self.write_with_event(
            sqlx::query(
                "INSERT INTO blocks (app_id, user_id, blocked_id, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (app_id, user_id, blocked_id) DO NOTHING",
            )
            .bind(app)
            .bind(user)
            .bind(other)
            .bind(now),
            block_event(app, "user.blocked", user, other, now),
        )
        .await
    }

    /// `user` unblocks `other`; false when there was no block.
    pub async fn unblock(&self, app: &str, user: &str, other: &str) -> Result<bool> {
        let now = now_ms();
        self.write_with_event(
            sqlx::query(
                "DELETE FROM blocks WHERE app_id = $1 AND user_id = $2 AND blocked_id = $3",
            )
            .bind(app)
            .bind(user)
            .bind(other),
            block_event(app, "user.unblocked", user, other, now),
        )
        .await
    }

    /// The users `user` blocked, by id.
    pub async fn blocks_of(
        &self,
        app: &str,
        user: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Block>> {
        let after = match cursor {
            Some(c) => decode_cursor(c, 1)?.remove(0),
            None => String::new(),
        };
        let items: Vec<Block> = sqlx::query_as(
            "SELECT blocked_id, created_at FROM blocks
             WHERE app_id = $1 AND user_id = $2 AND blocked_id > $3 ORDER BY blocked_id LIMIT $4",
        )
        .bind(app)
        .bind(user)
        .bind(&after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await?;
        let (items, next_cursor) = Page::split(items, limit, |b| encode_cursor(&[&b.user_id]));
        Ok(Page { items, next_cursor })
    }

    /// Whether a block stands between `a` and `b`, in either direction.
    pub async fn blocked_between(&self, app: &str, a: &str, b: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM blocks WHERE app_id = $1
             AND ((user_id = $2 AND blocked_id = $3) OR (user_id = $3 AND blocked_id = $2)) LIMIT 1",
        )
        .bind(app)
        .bind(a)
        .bind(b)
        .fetch_optional(&self.reader)
        .await?;
        Ok(found.is_some())
    }

    /// Everyone `user` blocked or is blocked by.
    pub async fn block_peers(&self, app: &str, user: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT blocked_id FROM blocks WHERE app_id = $1 AND user_id = $2
             UNION SELECT user_id FROM blocks WHERE app_id = $1 AND blocked_id = $2",
        )
        .bind(app)
        .bind(user)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Whether `conv` is a direct conversation whose other member and `user`
    /// have a block between them.
    pub async fn direct_blocked(&self, app: &str, conv: &str, user: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM conversations c
             JOIN members o ON o.app_id = c.app_id AND o.conversation_id = c.id AND o.user_id <> $3
             JOIN blocks b ON b.app_id = c.app_id
                AND ((b.user_id = $3 AND b.blocked_id = o.user_id) OR (b.user_id = o.user_id AND b.blocked_id = $3))
             WHERE c.app_id = $1 AND c.id = $2 AND c.kind = 'direct' LIMIT 1",
        )
        .bind(app)
        .bind(conv)
        .bind(user)
        .fetch_optional(&self.reader)
        .await?;
        Ok(found.is_some())
    }

    // ----- hide ("delete chat")

    /// Hides `conv` from `user` up to its current last message: `cleared_seq`
    /// moves to `last_seq`, `last_read_seq` at least there. False when `user` is
    /// not a member.
    pub async fn hide_conversation(&self, app: &str, conv: &str, user: &str) -> Result<bool> {
        retrying(|| self.hide_conversation_once(app, conv, user)).await
    }

    async fn hide_conversation_once(&self, app: &str, conv: &str, user: &str) -> Result<bool> {
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
        let done = sqlx::query(
            "UPDATE members SET hidden = 1,
                cleared_seq = CASE WHEN cleared_seq > $4 THEN cleared_seq ELSE $4 END,
                last_read_seq = CASE WHEN last_read_seq > $4 THEN last_read_seq ELSE $4 END
             WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3",
        )
        .bind(app)
        .bind(conv)
        .bind(user)
        .bind(last_seq)
        .execute(&mut *tx)
        .await?;
        let hidden = done.rows_affected() > 0;
        if hidden {
            let event = NewEvent::new(
                app,
                "conversation.hidden",
                Some(conv),
                Some(user),
                now_ms(),
                serde_json::json!({ "conversation_id": conv, "user_id": user, "cleared_seq": last_seq }),
            );
            events::record(&mut tx, self.engine, vec![event]).await?;
        }
        tx.commit().await?;
        Ok(hidden)
    }

    /// Whether `user` hid `conv` at some point (it is out of their list while no
    /// message came after their `cleared_seq`).
    pub async fn hid_conversation(&self, app: &str, conv: &str, user: &str) -> Result<bool> {
        let hidden: Option<i64> = sqlx::query_scalar(
            "SELECT hidden FROM members WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3",
        )
        .bind(app)
        .bind(conv)
        .bind(user)
        .fetch_optional(&self.reader)
        .await?;
        Ok(hidden.unwrap_or(0) != 0)
    }
}
