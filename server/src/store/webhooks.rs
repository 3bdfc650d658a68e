//! Webhook endpoints and the state of their delivery (migration 0009).
//!
//! Invariants the delivery worker (`node::webhook_worker`) relies on:
//! - An endpoint's feed position moves only in the transaction that copies the
//!   events it passes into `webhook_pending`, and only from the position the
//!   copier read (compare-and-set): a crash loses nothing and two nodes never
//!   copy one range twice.
//! - A stream (endpoint, conversation) is delivered by whoever holds its lease:
//!   taken by an `UPDATE … WHERE lease_until < now`, renewed with every event
//!   delivered, released on a failure or when the stream is empty.
//! - An event leaves `webhook_pending` only in the transaction that records its
//!   successful attempt.
//!
//! Secrets are stored as the node sealed them; this module never sees them in
//! the clear. Reads go to the reader pool (on SQLite they never wait for the
//! one writer): a stale read only makes a claim or a compare-and-set miss,
//! and the next tick reads again.

use serde::Serialize;

use super::columns::StringList;
use super::events::{EventCursor, StoredEvent};
use super::{decode_cursor, encode_cursor, now_ms, retrying, Engine, Millis, Page, Store};
use crate::error::{Error, Result};

/// An endpoint as stored, sealed secrets included: never serialized.
#[derive(Clone, sqlx::FromRow)]
pub struct WebhookRow {
    pub app_id: String,
    pub id: String,
    pub url: String,
    #[sqlx(try_from = "StringList")]
    pub event_types: Vec<String>,
    pub description: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_until: Option<i64>,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub cursor_xact: i64,
    pub cursor_pos: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for WebhookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRow")
            .field("app_id", &self.app_id)
            .field("id", &self.id)
            .field("url", &self.url)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

const WEBHOOK_COLUMNS: &str = "app_id, id, url, event_types, description, secret, \
    previous_secret, previous_until, disabled_at, disabled_reason, failing_since, \
    cursor_xact, cursor_pos, created_at, updated_at";

impl WebhookRow {
    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            xact: self.cursor_xact,
            pos: self.cursor_pos,
        }
    }

    /// The public view: no secret.
    pub fn view(&self) -> Webhook {
        Webhook {
            id: self.id.clone(),
            url: self.url.clone(),
            event_types: self.event_types.clone(),
            description: self.description.clone(),
            status: if self.disabled_at.is_some() {
                WebhookStatus::Disabled
            } else {
                WebhookStatus::Active
            },
            disabled_reason: self.disabled_reason.clone(),
            disabled_at: self.disabled_at.map(Millis),
            failing_since: self.failing_since.map(Millis),
            created_at: Millis(self.created_at),
            updated_at: Millis(self.updated_at),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    Active,
    Disabled,
}

/// A webhook endpoint as the API shows it (its secret never).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    /// `wh_` and a ULID.
    pub id: String,
    pub url: String,
    /// The event types delivered; empty: all.
    pub event_types: Vec<String>,
    pub description: String,
    /// `disabled` after failing continuously for the give-up time (or never re-enabled since).
    pub status: WebhookStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<Millis>,
    /// When the current run of failed attempts began; absent when the last attempt succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One delivery attempt of an endpoint.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct WebhookAttempt {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt of this event to this endpoint.
    pub attempt: i64,
    pub attempted_at: Millis,
    /// The HTTP status the endpoint answered; absent when there was no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i64>,
    /// Why there was no answer (refused, timeout, connection), or why it was not 2xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// An attempt to record, with the event it was for.
pub struct AttemptRecord<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub attempt: i64,
    pub attempted_at: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// A new endpoint, checked by the node.
pub struct NewWebhook {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub sealed_secret: String,
    /// Where its delivery starts in the feed: the head at creation.
    pub start: EventCursor,
}

/// Fields to change, checked by the node. `enabled`: `Some(true)`
/// re-activates a disabled endpoint, `Some(false)` disables an active one
/// (with `DISABLED_BY_APP` as its reason).
#[derive(Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// The reason of an endpoint the app disabled itself.
pub const DISABLED_BY_APP: &str = "disabled by the app";

/// A stream ready to deliver, as the worker found it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueStream {
    pub app_id: String,
    pub webhook_id: String,
    pub stream: String,
    pub failures: i64,
}

/// An event owed to an endpoint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingEvent {
    pub cursor_xact: i64,
    pub cursor_pos: i64,
    pub event_id: String,
    pub attempts: i64,
}

/// The stream an event belongs to: its conversation, or `''` for none.
pub fn stream_of(event: &StoredEvent) -> &str {
    event.conversation_id.as_deref().unwrap_or("")
}

impl Store {
    /// The feed's end for `app`, as a reader may see it now (below every
    /// running transaction on PostgreSQL, as `events_after` reads): where a
    /// new endpoint starts, so it receives what commits after its creation.
    pub async fn events_head(&self, app: &str) -> Result<EventCursor> {
        let head: Option<(i64, i64)> = sqlx::query_as(&super::events::head_sql(self.engine))
            .bind(app)
            .fetch_optional(&self.reader)
            .await?;
        Ok(super::events::cursor_or_start(head))
    }

    /// Inserts an endpoint unless the app has `cap` already.
    pub async fn create_webhook(
        &self,
        app: &str,
        new: &NewWebhook,
        cap: u32,
    ) -> Result<WebhookRow> {
        let types = serde_json::to_string(&new.event_types).map_err(|_| Error::internal())?;
        let now = now_ms();
        retrying(|| async {
            let mut tx = self.writer.begin().await?;
            // On PostgreSQL, the app's row serializes concurrent creations, so the cap holds.
            let lock = format!("SELECT id FROM apps WHERE id = $1{}", self.lock());
            sqlx::query(&lock).bind(app).execute(&mut *tx).await?;
            let count: i64 = sqlx::query_scalar(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM webhooks WHERE app_id = $1",
            )
            .bind(app)
            .fetch_one(&mut *tx)
            .await?;
            if count >= i64::from(cap) {
                return Err(Error::denied(format!(
                    "the app has {count} webhooks, the most it may have"
                )));
            }
            sqlx::query(
                "INSERT INTO webhooks (app_id, id, url, event_types, description, secret, \
                 cursor_xact, cursor_pos, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .bind(app)
            .bind(&new.id)
            .bind(&new.url)
            .bind(&types)
            .bind(&new.description)
            .bind(&new.sealed_secret)
            .bind(new.start.xact)
            .bind(new.start.pos)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        self.webhook(app, &new.id)
            .await?
            .ok_or_else(Error::internal)
    }

    pub async fn webhook(&self, app: &str, id: &str) -> Result<Option<WebhookRow>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE app_id = $1 AND id = $2");
        Ok(sqlx::query_as(&sql)
            .bind(app)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// The app's endpoints by id.
    pub async fn list_webhooks(
        &self,
        app: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Webhook>> {
        let after = match cursor {
            Some(c) => decode_cursor(c, 1)?.remove(0),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE app_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3"
        );
        let rows: Vec<WebhookRow> = sqlx::query_as(&sql)
            .bind(app)
            .bind(&after)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let items = rows.iter().map(WebhookRow::view).collect();
        let (items, next_cursor) = Page::split(items, limit, |w: &Webhook| encode_cursor(&[&w.id]));
        Ok(Page { items, next_cursor })
    }

    /// Changes an endpoint; None when it does not exist. Re-enabling clears
    /// the failure run and makes every stream of it due now.
    pub async fn update_webhook(
        &self,
        app: &str,
        id: &str,
        patch: &WebhookPatch,
    ) -> Result<Option<WebhookRow>> {
        let types = patch
            .event_types
            .as_ref()
            .map(|t| serde_json::to_string(t).map_err(|_| Error::internal()))
            .transpose()?;
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE webhooks SET url = COALESCE($3, url), event_types = COALESCE($4, event_types), \
             description = COALESCE($5, description), updated_at = $6 \
             WHERE app_id = $1 AND id = $2",
        )
        .bind(app)
        .bind(id)
        .bind(&patch.url)
        .bind(&types)
        .bind(&patch.description)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        match patch.enabled {
            Some(true) => {
                sqlx::query(
                    "UPDATE webhooks SET disabled_at = NULL, disabled_reason = NULL, \
                     failing_since = NULL WHERE app_id = $1 AND id = $2",
                )
                .bind(app)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE webhook_streams SET next_attempt_at = 0, failures = 0 \
                     WHERE app_id = $1 AND webhook_id = $2",
                )
                .bind(app)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            Some(false) => {
                sqlx::query(
                    "UPDATE webhooks SET disabled_at = $3, disabled_reason = $4 \
                     WHERE app_id = $1 AND id = $2 AND disabled_at IS NULL",
                )
                .bind(app)
                .bind(id)
                .bind(now_ms())
                .bind(DISABLED_BY_APP)
                .execute(&mut *tx)
                .await?;
            }
            None => {}
        }
        tx.commit().await?;
        self.webhook(app, id).await
    }

    /// A new secret; the current one stays valid until `previous_until`.
    pub async fn rotate_webhook_secret(
        &self,
        app: &str,
        id: &str,
        sealed: &str,
        previous_until: i64,
    ) -> Result<Option<WebhookRow>> {
        let done = sqlx::query(
            "UPDATE webhooks SET previous_secret = secret, previous_until = $3, secret = $4, \
             updated_at = $5 WHERE app_id = $1 AND id = $2",
        )
        .bind(app)
        .bind(id)
        .bind(previous_until)
        .bind(sealed)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.webhook(app, id).await
    }

    /// Deletes an endpoint with everything it still owed and its attempt log.
    pub async fn delete_webhook(&self, app: &str, id: &str) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        // The endpoint's row first: a copier's position update waits for it
        // (PostgreSQL) and then finds no endpoint, so nothing is left behind.
        let done = sqlx::query("DELETE FROM webhooks WHERE app_id = $1 AND id = $2")
            .bind(app)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for table in ["webhook_pending", "webhook_streams", "webhook_attempts"] {
            let sql = format!("DELETE FROM {table} WHERE app_id = $1 AND webhook_id = $2");
            sqlx::query(&sql)
                .bind(app)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// An endpoint's attempts, newest first.
    pub async fn webhook_attempts(
        &self,
        app: &str,
        id: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<WebhookAttempt>> {
        let before = match cursor {
            Some(c) => decode_cursor(c, 1)?.remove(0),
            // Above every ULID.
            None => "~".to_owned(),
        };
        let rows: Vec<WebhookAttempt> = sqlx::query_as(
            "SELECT id, event_id, event_type, attempt, attempted_at, status_code, error, \
             duration_ms FROM webhook_attempts WHERE app_id = $1 AND webhook_id = $2 AND id < $3 \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(app)
        .bind(id)
        .bind(&before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await?;
        let (items, next_cursor) =
            Page::split(rows, limit, |a: &WebhookAttempt| encode_cursor(&[&a.id]));
        Ok(Page { items, next_cursor })
    }

    /// Queues `event` for the endpoint again (manual redelivery): at its place
    /// in its stream, due now. Already pending: nothing changes.
    pub async fn requeue_webhook_event(
        &self,
        app: &str,
        id: &str,
        event: &StoredEvent,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        insert_pending(&mut tx, app, id, event).await?;
        sqlx::query(
            "UPDATE webhook_streams SET next_attempt_at = 0 \
             WHERE app_id = $1 AND webhook_id = $2 AND stream = $3",
        )
        .bind(app)
        .bind(id)
        .bind(stream_of(event))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- the delivery worker

    /// Every active endpoint of every app.
    pub async fn active_webhooks(&self) -> Result<Vec<WebhookRow>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE disabled_at IS NULL");
        Ok(sqlx::query_as(&sql).fetch_all(&self.reader).await?)
    }

    /// Copies `events` (read after `from`) into the endpoint's pending rows and
    /// moves its position to `to` (the last event, or past rows of other
    /// types), in one transaction, if the position is still `from` and the
    /// endpoint active. False when another node moved it first (nothing written).
    pub async fn copy_webhook_events(
        &self,
        hook: &WebhookRow,
        from: EventCursor,
        to: EventCursor,
        events: &[StoredEvent],
    ) -> Result<bool> {
        if to == from {
            return Ok(true);
        }
        let mut tx = self.writer.begin().await?;
        let moved = sqlx::query(
            "UPDATE webhooks SET cursor_xact = $3, cursor_pos = $4 WHERE app_id = $1 AND id = $2 \
             AND cursor_xact = $5 AND cursor_pos = $6 AND disabled_at IS NULL",
        )
        .bind(&hook.app_id)
        .bind(&hook.id)
        .bind(to.xact)
        .bind(to.pos)
        .bind(from.xact)
        .bind(from.pos)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        for event in events {
            insert_pending(&mut tx, &hook.app_id, &hook.id, event).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Streams of active endpoints that are due and not leased.
    pub async fn due_webhook_streams(&self, now: i64, limit: u32) -> Result<Vec<DueStream>> {
        Ok(sqlx::query_as(
            "SELECT s.app_id, s.webhook_id, s.stream, s.failures FROM webhook_streams s \
             JOIN webhooks w ON w.app_id = s.app_id AND w.id = s.webhook_id \
             WHERE w.disabled_at IS NULL AND s.next_attempt_at <= $1 AND s.lease_until < $1 \
             ORDER BY s.next_attempt_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Takes a stream's lease if it is free (expired) and the stream due: true when taken.
    pub async fn claim_webhook_stream(
        &self,
        s: &DueStream,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_streams SET lease_owner = $4, lease_until = $5 \
             WHERE app_id = $1 AND webhook_id = $2 AND stream = $3 \
             AND lease_until < $6 AND next_attempt_at <= $6",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .bind(&s.stream)
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The oldest events a stream owes.
    pub async fn webhook_stream_pending(
        &self,
        s: &DueStream,
        limit: u32,
    ) -> Result<Vec<PendingEvent>> {
        Ok(sqlx::query_as(
            "SELECT cursor_xact, cursor_pos, event_id, attempts FROM webhook_pending \
             WHERE app_id = $1 AND webhook_id = $2 AND stream = $3 \
             ORDER BY cursor_xact, cursor_pos LIMIT $4",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .bind(&s.stream)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Records a successful delivery: the event leaves the stream, the attempt
    /// is logged, the failure run ends and the lease is renewed. False when the
    /// lease was lost meanwhile (the worker stops the stream).
    pub async fn webhook_delivered(
        &self,
        s: &DueStream,
        event: &PendingEvent,
        attempt: &AttemptRecord<'_>,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        // The lease first: a node that lost it changes nothing (the event
        // stays pending for the stream's new holder).
        let held = sqlx::query(
            "UPDATE webhook_streams SET failures = 0, lease_until = $5 \
             WHERE app_id = $1 AND webhook_id = $2 AND stream = $3 AND lease_owner = $4",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .bind(&s.stream)
        .bind(owner)
        .bind(lease_until)
        .execute(&mut *tx)
        .await?;
        if held.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "DELETE FROM webhook_pending WHERE app_id = $1 AND webhook_id = $2 AND stream = $3 \
             AND cursor_xact = $4 AND cursor_pos = $5",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .bind(&s.stream)
        .bind(event.cursor_xact)
        .bind(event.cursor_pos)
        .execute(&mut *tx)
        .await?;
        insert_attempt(&mut tx, &s.app_id, &s.webhook_id, attempt).await?;
        sqlx::query(
            "UPDATE webhooks SET failing_since = NULL WHERE app_id = $1 AND id = $2 \
             AND failing_since IS NOT NULL",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a failed attempt: the stream waits until `next_attempt_at` (its
    /// lease released), and the endpoint's failure run starts if it had not.
    /// When that run began before `give_up_before`, the endpoint is disabled
    /// with `reason`: true when this call disabled it.
    #[allow(clippy::too_many_arguments)]
    pub async fn webhook_failed(
        &self,
        s: &DueStream,
        event: &PendingEvent,
        attempt: &AttemptRecord<'_>,
        owner: &str,
        next_attempt_at: i64,
        give_up_before: i64,
        reason: &str,
    ) -> Result<bool> {
        let now = attempt.attempted_at;
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE webhook_pending SET attempts = attempts + 1 WHERE app_id = $1 \
             AND webhook_id = $2 AND stream = $3 AND cursor_xact = $4 AND cursor_pos = $5",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .bind(&s.stream)
        .bind(event.cursor_xact)
        .bind(event.cursor_pos)
        .execute(&mut *tx)
        .await?;
        insert_attempt(&mut tx, &s.app_id, &s.webhook_id, attempt).await?;
        sqlx::query(
            "UPDATE webhook_streams SET failures = failures + 1, next_attempt_at = $5, \
             lease_owner = NULL, lease_until = 0 \
             WHERE app_id = $1 AND webhook_id = $2 AND stream = $3 AND lease_owner = $4",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .bind(&s.stream)
        .bind(owner)
        .bind(next_attempt_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhooks SET failing_since = $3 WHERE app_id = $1 AND id = $2 \
             AND failing_since IS NULL",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let disabled = sqlx::query(
            "UPDATE webhooks SET disabled_at = $3, disabled_reason = $4, updated_at = $3 \
             WHERE app_id = $1 AND id = $2 AND disabled_at IS NULL AND failing_since <= $5",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .bind(now)
        .bind(reason)
        .bind(give_up_before)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(disabled.rows_affected() == 1)
    }

    /// Drops an event the feed no longer holds (past its retention, or purged).
    pub async fn drop_webhook_event(&self, s: &DueStream, event: &PendingEvent) -> Result<()> {
        sqlx::query(
            "DELETE FROM webhook_pending WHERE app_id = $1 AND webhook_id = $2 AND stream = $3 \
             AND cursor_xact = $4 AND cursor_pos = $5",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .bind(&s.stream)
        .bind(event.cursor_xact)
        .bind(event.cursor_pos)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Lets go of a stream: deleted if it owes nothing (a copier adding an
    /// event meanwhile makes it again), else released for the next round.
    pub async fn release_webhook_stream(&self, s: &DueStream, owner: &str) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        // The endpoint's row first, which a copier's position update holds
        // until it commits: the check below then sees what it copied (on
        // PostgreSQL; SQLite's one writer already serializes them).
        sqlx::query(&format!(
            "SELECT id FROM webhooks WHERE app_id = $1 AND id = $2{}",
            self.lock()
        ))
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .fetch_optional(&mut *tx)
        .await?;
        let deleted = sqlx::query(
            "DELETE FROM webhook_streams WHERE app_id = $1 AND webhook_id = $2 AND stream = $3 \
             AND lease_owner = $4 AND NOT EXISTS (SELECT 1 FROM webhook_pending p \
             WHERE p.app_id = $1 AND p.webhook_id = $2 AND p.stream = $3)",
        )
        .bind(&s.app_id)
        .bind(&s.webhook_id)
        .bind(&s.stream)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() == 0 {
            sqlx::query(
                "UPDATE webhook_streams SET lease_owner = NULL, lease_until = 0 \
                 WHERE app_id = $1 AND webhook_id = $2 AND stream = $3 AND lease_owner = $4",
            )
            .bind(&s.app_id)
            .bind(&s.webhook_id)
            .bind(&s.stream)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// On SQLite one process serves the database: leases left by a process
    /// that died are released when the next one starts. (On PostgreSQL other
    /// nodes may hold theirs: they expire.)
    pub async fn release_stale_webhook_leases(&self) -> Result<()> {
        if self.engine == Engine::Sqlite {
            sqlx::query("UPDATE webhook_streams SET lease_owner = NULL, lease_until = 0")
                .execute(&self.writer)
                .await?;
        }
        Ok(())
    }

    /// Keeps the newest `keep` attempts of an endpoint.
    pub async fn trim_webhook_attempts(&self, app: &str, id: &str, keep: u32) -> Result<()> {
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE app_id = $1 AND webhook_id = $2 AND id < \
             (SELECT id FROM webhook_attempts WHERE app_id = $1 AND webhook_id = $2 \
              ORDER BY id DESC LIMIT 1 OFFSET $3)",
        )
        .bind(app)
        .bind(id)
        .bind(i64::from(keep) - 1)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

/// Queues one event for an endpoint and makes sure its stream exists.
async fn insert_pending(
    tx: &mut super::Tx<'_>,
    app: &str,
    webhook: &str,
    event: &StoredEvent,
) -> Result<()> {
    let stream = stream_of(event);
    sqlx::query(
        "INSERT INTO webhook_pending (app_id, webhook_id, stream, cursor_xact, cursor_pos, \
         event_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(app)
    .bind(webhook)
    .bind(stream)
    .bind(event.cursor.xact)
    .bind(event.cursor.pos)
    .bind(&event.id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO webhook_streams (app_id, webhook_id, stream) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(app)
    .bind(webhook)
    .bind(stream)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_attempt(
    tx: &mut super::Tx<'_>,
    app: &str,
    webhook: &str,
    a: &AttemptRecord<'_>,
) -> Result<()> {
    // Not for an endpoint deleted while its attempt was in flight.
    sqlx::query(
        "INSERT INTO webhook_attempts (app_id, webhook_id, id, event_id, event_type, attempt, \
         attempted_at, status_code, error, duration_ms) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
         WHERE EXISTS (SELECT 1 FROM webhooks WHERE app_id = $1 AND id = $2)",
    )
    .bind(app)
    .bind(webhook)
    .bind(ulid::Ulid::new().to_string())
    .bind(a.event_id)
    .bind(a.event_type)
    .bind(a.attempt)
    .bind(a.attempted_at)
    .bind(a.status_code.map(i64::from))
    .bind(&a.error)
    .bind(a.duration_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
