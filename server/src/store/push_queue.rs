//! The push worker's queue (migration 0013), from the event outbox to each
//! device. Invariants `node::push_worker` relies on:
//!
//! - An app's feed position moves only in the transaction that copies the
//!   messages and notifications it passes into `push_jobs` (compare-and-set
//!   from the position read): a crash loses none, two nodes never copy one
//!   range twice.
//! - A stream (a conversation's pushes) is fanned out by whoever holds its
//!   lease; the jobs it fanned out leave in the transaction that writes their
//!   `push_sends` rows, so a crash before that commit fans them out again.
//! - A send leaves `push_sends` only after the provider answered it (or it
//!   expired). A node that dies after the provider accepted it and before the
//!   delete leaves it to be sent again when its lease ends, with the same id
//!   and collapse id.

use std::collections::HashMap;

use super::columns::Flag;
use super::events::EventCursor;
use super::{now_ms, Engine, Store};
use crate::error::Result;

/// `push_streams.next_at` of a stream with no job: never due.
pub const IDLE: i64 = i64::MAX;
/// Values bound per statement in an `IN` list (PostgreSQL binds at most
/// 65,535).
const INSERT_CHUNK: usize = 500;
/// Rows per multi-row INSERT of sends (19 values each). Small on purpose:
/// SQLite looks a bound parameter up by walking the statement's list, so a
/// statement's cost grows with the square of its parameters (9,500 of them
/// spent three quarters of a 10,000-device fan-out there).
const SEND_ROWS_PER_INSERT: usize = 50;

/// An app that has push settings, and where its worker stands in the feed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PushApp {
    pub app_id: String,
    pub cursor_xact: i64,
    pub cursor_pos: i64,
}

impl PushApp {
    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            xact: self.cursor_xact,
            pos: self.cursor_pos,
        }
    }
}

/// A message or notification to push, as the copier queues it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub stream: String,
    pub event_id: String,
    pub seq: i64,
    pub created_at: i64,
}

/// A stream claimed to fan out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueStream {
    pub app_id: String,
    pub stream: String,
    pub last_sent_at: i64,
    /// The claim's token.
    pub lease_owner: String,
}

/// The newest job of a stream: the one its next push tells of.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub event_id: String,
    pub seq: i64,
}

/// A member who may be pushed a message, with one of their devices: not the
/// author, not muted, not in do-not-disturb, not read that far.
#[derive(Clone, sqlx::FromRow)]
pub struct Recipient {
    pub user_id: String,
    pub device_id: String,
    pub provider: String,
    pub token: String,
    pub p256dh: String,
    pub auth: String,
    pub topic: String,
    #[sqlx(try_from = "Flag")]
    pub sandbox: bool,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipient")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// What becomes of a send once its attempt is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The provider took it, or refused it for good, or it expired.
    Done,
    /// The device's credential is dead: the device goes too.
    Gone,
    /// Tried again at `next_at` (Unix ms).
    Retry { next_at: i64 },
}

/// One push to one device, as the fan-out writes it and the sender reads it.
#[derive(Clone, sqlx::FromRow)]
pub struct Send {
    pub app_id: String,
    /// A UUID, the same on every attempt (the `apns-id`).
    pub id: String,
    pub device_id: String,
    pub user_id: String,
    pub conversation_id: String,
    pub message_id: String,
    pub author_id: String,
    pub provider: String,
    pub token: String,
    pub p256dh: String,
    pub auth: String,
    pub topic: String,
    #[sqlx(try_from = "Flag")]
    pub sandbox: bool,
    pub collapse_id: String,
    /// JSON: what the push shows (`node::push_worker::Payload`).
    pub payload: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub attempts: i64,
    /// The claim holding it (empty before it is claimed).
    #[sqlx(default)]
    pub lease_owner: Option<String>,
}

impl std::fmt::Debug for Send {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credential and the payload (a message's text) stay out of logs.
        f.debug_struct("Send")
            .field("app_id", &self.app_id)
            .field("id", &self.id)
            .field("device_id", &self.device_id)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

const SEND_COLUMNS: &str = "app_id, id, device_id, user_id, conversation_id, message_id, \
    author_id, provider, token, p256dh, auth, topic, sandbox, collapse_id, payload, created_at, \
    expires_at, attempts, lease_owner";

impl Store {
    /// The apps with push settings and their feed positions.
    pub async fn push_apps(&self) -> Result<Vec<PushApp>> {
        Ok(
            sqlx::query_as("SELECT app_id, cursor_xact, cursor_pos FROM push_settings")
                .fetch_all(&self.reader)
                .await?,
        )
    }

    /// Moves `app`'s position from `from` to `to` and queues `jobs` (what
    /// lies between) in one transaction; false when another node moved it
    /// first (nothing is written).
    pub async fn copy_push_jobs(
        &self,
        app: &str,
        from: EventCursor,
        to: EventCursor,
        jobs: &[NewJob],
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let moved = sqlx::query(
            "UPDATE push_settings SET cursor_xact = $4, cursor_pos = $5 \
             WHERE app_id = $1 AND cursor_xact = $2 AND cursor_pos = $3",
        )
        .bind(app)
        .bind(from.xact)
        .bind(from.pos)
        .bind(to.xact)
        .bind(to.pos)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        for job in jobs {
            sqlx::query(
                "INSERT INTO push_jobs (app_id, stream, event_id, seq, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(app)
            .bind(&job.stream)
            .bind(&job.event_id)
            .bind(job.seq)
            .bind(job.created_at)
            .execute(&mut *tx)
            .await?;
            // A new stream is due now; an idle one becomes due (the worker
            // holds it back to the end of its collapse window); one already
            // due or waiting keeps its time.
            sqlx::query(&format!(
                "INSERT INTO push_streams (app_id, stream) VALUES ($1, $2) \
                 ON CONFLICT (app_id, stream) DO UPDATE SET next_at = \
                 CASE WHEN push_streams.next_at = {IDLE} THEN 0 ELSE push_streams.next_at END"
            ))
            .bind(app)
            .bind(&job.stream)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Takes the lease of up to `limit` streams due now whose lease is free,
    /// oldest due first, as `owner` (a token of this claim: a node never
    /// mistakes an older claim of its own for this one). Their
    /// `last_sent_at` is read by the claim itself.
    pub async fn claim_push_streams(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<DueStream>> {
        let picked = format!(
            "SELECT app_id, stream FROM push_streams WHERE next_at <= $3 AND lease_until < $3 \
             ORDER BY next_at LIMIT $4{}",
            self.skip_locked()
        );
        let sql = format!(
            "WITH picked AS MATERIALIZED ({picked}) \
             UPDATE push_streams SET lease_owner = $1, lease_until = $2 \
             WHERE lease_until < $3 AND next_at <= $3 \
               AND (app_id, stream) IN (SELECT app_id, stream FROM picked) \
             RETURNING app_id, stream, last_sent_at, lease_owner"
        );
        self.claim("push_streams", &sql, owner, now, lease_until, limit)
            .await
    }

    /// Runs a claim on `table`: `$1` the claim's token, `$2` its lease's end,
    /// `$3` now, `$4` the most rows taken; the rows taken come back. The
    /// rows are picked once (`MATERIALIZED`): a subquery under `IN` may be
    /// run again per row by PostgreSQL's planner, each run skipping what the
    /// statement locked already, and take more than `$4`. When nothing is
    /// due (a read, which never waits for SQLite's writer), no write is
    /// made: an idle worker leaves the database alone.
    async fn claim<T>(
        &self,
        table: &str,
        sql: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + std::marker::Send + Unpin,
    {
        let due: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT 1 FROM {table} WHERE next_at <= $1 AND lease_until < $1 LIMIT 1"
        ))
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(sql)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
            .await?)
    }

    /// `FOR UPDATE SKIP LOCKED` on PostgreSQL: another node's claim in
    /// flight is passed over, not waited for (SQLite has one writer).
    fn skip_locked(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The newest job of a stream (by seq, then time), if any.
    pub async fn newest_push_job(&self, app: &str, stream: &str) -> Result<Option<Job>> {
        Ok(sqlx::query_as(
            "SELECT event_id, seq FROM push_jobs WHERE app_id = $1 AND stream = $2 \
             ORDER BY seq DESC, created_at DESC LIMIT 1",
        )
        .bind(app)
        .bind(stream)
        .fetch_optional(&self.writer)
        .await?)
    }

    /// Holds a claimed stream back until `next_at` (its collapse window, or a
    /// retry after a failed fan-out) and releases its lease.
    pub async fn defer_push_stream(&self, s: &DueStream, next_at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE push_streams SET next_at = $4, lease_owner = NULL, lease_until = 0 \
             WHERE app_id = $1 AND stream = $2 AND lease_owner = $3",
        )
        .bind(&s.app_id)
        .bind(&s.stream)
        .bind(&s.lease_owner)
        .bind(next_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The members of `conv` a message with `seq` by `author` may be pushed
    /// to, one row per device: not the author, not muted, not in
    /// do-not-disturb at `now`, not read up to `seq` (on another device), and
    /// not blocking the author.
    pub async fn push_recipients(
        &self,
        app: &str,
        conv: &str,
        author: &str,
        seq: i64,
        now: i64,
    ) -> Result<Vec<Recipient>> {
        Ok(sqlx::query_as(
            "SELECT d.user_id, d.id AS device_id, d.provider, d.token, d.p256dh, d.auth, \
                    d.topic, d.sandbox \
             FROM members m \
             JOIN push_devices d ON d.app_id = m.app_id AND d.user_id = m.user_id \
             JOIN users u ON u.app_id = m.app_id AND u.id = m.user_id \
             WHERE m.app_id = $1 AND m.conversation_id = $2 AND m.user_id <> $3 \
               AND m.muted = 0 AND m.last_read_seq < $4 AND u.deactivated = 0 \
               AND (u.dnd_until IS NULL OR u.dnd_until <= $5) \
               AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.app_id = m.app_id \
                               AND b.user_id = m.user_id AND b.blocked_id = $3) \
             ORDER BY d.user_id, d.id",
        )
        .bind(app)
        .bind(conv)
        .bind(author)
        .bind(seq)
        .bind(now)
        .fetch_all(&self.reader)
        .await?)
    }

    /// A conversation's kind and name and its author's name: a push's title.
    pub async fn push_names(
        &self,
        app: &str,
        conv: &str,
        author: &str,
    ) -> Result<(String, String, String)> {
        let (kind, name): (String, String) =
            sqlx::query_as("SELECT kind, name FROM conversations WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(conv)
                .fetch_optional(&self.reader)
                .await?
                .unwrap_or_default();
        let author_name: Option<String> =
            sqlx::query_scalar("SELECT name FROM users WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(author)
                .fetch_optional(&self.reader)
                .await?;
        Ok((kind, name, author_name.unwrap_or_default()))
    }

    /// `user`'s devices if they may be pushed at `now` (active, not in
    /// do-not-disturb): a notification's recipients.
    pub async fn push_user_devices(
        &self,
        app: &str,
        user: &str,
        now: i64,
    ) -> Result<Vec<Recipient>> {
        Ok(sqlx::query_as(
            "SELECT d.user_id, d.id AS device_id, d.provider, d.token, d.p256dh, d.auth, \
                    d.topic, d.sandbox \
             FROM push_devices d JOIN users u ON u.app_id = d.app_id AND u.id = d.user_id \
             WHERE d.app_id = $1 AND d.user_id = $2 AND u.deactivated = 0 \
               AND (u.dnd_until IS NULL OR u.dnd_until <= $3) \
             ORDER BY d.id",
        )
        .bind(app)
        .bind(user)
        .bind(now)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Each user's total unread: the sum of their conversations' unread
    /// counts (muted ones included; a hidden conversation with nothing new
    /// counts 0, as in their list), read from the members' read positions
    /// now, not added up push by push.
    pub async fn total_unread(&self, app: &str, users: &[String]) -> Result<HashMap<String, i64>> {
        let mut totals = HashMap::with_capacity(users.len());
        for chunk in users.chunks(INSERT_CHUNK) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT m.user_id, CAST(SUM(CASE \
                     WHEN c.last_seq > m.last_read_seq AND c.last_seq > m.cleared_seq THEN \
                         c.last_seq - CASE WHEN m.last_read_seq > m.cleared_seq \
                                           THEN m.last_read_seq ELSE m.cleared_seq END \
                     ELSE 0 END) AS BIGINT) \
                 FROM members m JOIN conversations c \
                   ON c.app_id = m.app_id AND c.id = m.conversation_id \
                 WHERE m.app_id = $1 AND m.user_id IN ({}) GROUP BY m.user_id",
                marks.join(", ")
            );
            let mut query = sqlx::query_as::<_, (String, i64)>(&sql).bind(app);
            for user in chunk {
                query = query.bind(user);
            }
            totals.extend(query.fetch_all(&self.reader).await?);
        }
        Ok(totals)
    }

    /// Writes a fan-out's sends, removes the jobs it covered (`seq` up to
    /// `upto`'s; none when `upto` is `None`), and sets the stream's next time
    /// (a window after `now` if jobs remain, else idle), in one transaction.
    /// `Some(n)`: `n` sends written (none when the message was deleted
    /// meanwhile); `None` (and nothing written) when the lease was lost.
    pub async fn finish_push_fan_out(
        &self,
        s: &DueStream,
        upto: Option<&Job>,
        sends: &[Send],
        now: i64,
        window_ms: i64,
    ) -> Result<Option<usize>> {
        let mut tx = self.writer.begin().await?;
        // The stream's row first: a copier queueing a job for it either
        // committed before (its job is counted below) or waits for this
        // transaction (and then finds the stream idle and makes it due).
        let held = sqlx::query(
            "UPDATE push_streams SET lease_until = lease_until \
             WHERE app_id = $1 AND stream = $2 AND lease_owner = $3",
        )
        .bind(&s.app_id)
        .bind(&s.stream)
        .bind(&s.lease_owner)
        .execute(&mut *tx)
        .await?;
        if held.rows_affected() == 0 {
            return Ok(None);
        }
        // A delete commits its message's tombstone and removes its queued
        // pushes in one transaction: checked here (shared lock on
        // PostgreSQL, so a delete in flight is waited for), the text of a
        // message deleted during the fan-out is never queued. The sends of
        // a message name its conversation (the stream) and carry its seq.
        let alive = match sends.first() {
            Some(first) if !first.message_id.is_empty() => {
                let sql = format!(
                    "SELECT deleted_at FROM messages \
                     WHERE app_id = $1 AND conversation_id = $2 AND seq = $3 AND id = $4{}",
                    match self.engine {
                        Engine::Sqlite => "",
                        Engine::Postgres => " FOR SHARE",
                    }
                );
                let row: Option<(Option<i64>,)> = sqlx::query_as(&sql)
                    .bind(&s.app_id)
                    .bind(&first.conversation_id)
                    .bind(upto.map_or(0, |j| j.seq))
                    .bind(&first.message_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                matches!(row, Some((None,)))
            }
            _ => true,
        };
        let written = if alive { sends.len() } else { 0 };
        let covered = upto.map_or(i64::MIN, |j| j.seq);
        let remaining: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM push_jobs \
             WHERE app_id = $1 AND stream = $2 AND seq > $3",
        )
        .bind(&s.app_id)
        .bind(&s.stream)
        .bind(covered)
        .fetch_one(&mut *tx)
        .await?;
        let next_at = if remaining > 0 { now + window_ms } else { IDLE };
        // The window runs from the last push that went out.
        let sent_at = if written > 0 { now } else { s.last_sent_at };
        sqlx::query(
            "UPDATE push_streams SET last_sent_at = $4, next_at = $5, lease_owner = NULL, \
             lease_until = 0 WHERE app_id = $1 AND stream = $2 AND lease_owner = $3",
        )
        .bind(&s.app_id)
        .bind(&s.stream)
        .bind(&s.lease_owner)
        .bind(sent_at)
        .bind(next_at)
        .execute(&mut *tx)
        .await?;
        if upto.is_some() {
            sqlx::query("DELETE FROM push_jobs WHERE app_id = $1 AND stream = $2 AND seq <= $3")
                .bind(&s.app_id)
                .bind(&s.stream)
                .bind(covered)
                .execute(&mut *tx)
                .await?;
        }
        if written > 0 {
            insert_sends(&mut tx, sends, 0).await?;
        }
        tx.commit().await?;
        Ok(Some(written))
    }

    /// Queues sends made outside the outbox: a call's VoIP pushes, due
    /// before every other send (a ring is worth something for seconds).
    pub async fn queue_push_sends(&self, sends: &[Send]) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        insert_sends(&mut tx, sends, -1).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes the lease of up to `limit` sends due now, oldest due first, as
    /// `owner` (a token of this claim).
    pub async fn claim_push_sends(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Send>> {
        // Only sends whose device still belongs to their user with the same
        // credential: one moved to someone else (another sign-in on the
        // phone) or removed never gets them; the sweep deletes them.
        let picked = format!(
            "SELECT s.app_id, s.id FROM push_sends s WHERE s.next_at <= $3 \
               AND s.lease_until < $3 AND s.expires_at > $3 AND EXISTS ( \
                 SELECT 1 FROM push_devices d WHERE d.app_id = s.app_id \
                   AND d.id = s.device_id AND d.user_id = s.user_id AND d.token = s.token) \
             ORDER BY s.next_at LIMIT $4{}",
            self.skip_locked()
        );
        let sql = format!(
            "WITH picked AS MATERIALIZED ({picked}) \
             UPDATE push_sends SET lease_owner = $1, lease_until = $2 \
             WHERE lease_until < $3 AND next_at <= $3 \
               AND (app_id, id) IN (SELECT app_id, id FROM picked) \
             RETURNING {SEND_COLUMNS}"
        );
        self.claim("push_sends", &sql, owner, now, lease_until, limit)
            .await
    }

    /// Records what became of finished sends, in one transaction: a done
    /// send leaves the queue, a gone one takes its device with it (unless
    /// the credential was registered again since the push was made), a retry
    /// waits for `next_at` with its attempt counted. Only sends still held
    /// by the claim that took them are touched: one whose lease ran out is
    /// another claim's.
    pub async fn finish_push_sends(&self, finished: &[(&Send, &Finish)]) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let leaving: Vec<&Send> = finished
            .iter()
            .filter(|(_, f)| !matches!(f, Finish::Retry { .. }))
            .map(|(s, _)| *s)
            .collect();
        for chunk in leaving.chunks(INSERT_CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                .collect();
            let sql = format!(
                "DELETE FROM push_sends WHERE (app_id, id, lease_owner) IN ({})",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for s in chunk {
                query = query.bind(&s.app_id).bind(&s.id).bind(&s.lease_owner);
            }
            query.execute(&mut *tx).await?;
        }
        for (send, finish) in finished {
            match finish {
                Finish::Done => {}
                Finish::Gone => {
                    sqlx::query(
                        "DELETE FROM push_devices WHERE app_id = $1 AND id = $2 AND token = $3 \
                         AND updated_at <= $4",
                    )
                    .bind(&send.app_id)
                    .bind(&send.device_id)
                    .bind(&send.token)
                    .bind(send.created_at)
                    .execute(&mut *tx)
                    .await?;
                }
                Finish::Retry { next_at } => {
                    sqlx::query(
                        "UPDATE push_sends SET attempts = attempts + 1, next_at = $4, \
                         lease_owner = NULL, lease_until = 0 \
                         WHERE app_id = $1 AND id = $2 AND lease_owner = $3",
                    )
                    .bind(&send.app_id)
                    .bind(&send.id)
                    .bind(&send.lease_owner)
                    .bind(next_at)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets idle streams whose collapse window ended before `before`,
    /// sends past their time, and sends whose device moved to another user
    /// or went (never claimed: see [`Store::claim_push_sends`]).
    pub async fn sweep_push_queue(&self, before: i64) -> Result<()> {
        let now = now_ms();
        sqlx::query(&format!(
            "DELETE FROM push_streams WHERE next_at = {IDLE} AND last_sent_at < $1 \
             AND lease_until < $2"
        ))
        .bind(before)
        .bind(now)
        .execute(&self.writer)
        .await?;
        sqlx::query(
            "DELETE FROM push_sends WHERE lease_until < $1 AND (expires_at <= $1 OR NOT EXISTS ( \
                 SELECT 1 FROM push_devices d WHERE d.app_id = push_sends.app_id \
                   AND d.id = push_sends.device_id AND d.user_id = push_sends.user_id \
                   AND d.token = push_sends.token))",
        )
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

/// Inserts sends due at `next_at`.
async fn insert_sends(tx: &mut super::Tx<'_>, sends: &[Send], next_at: i64) -> Result<()> {
    const COLUMNS: usize = 19;
    for chunk in sends.chunks(SEND_ROWS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let marks: Vec<String> = (1..=COLUMNS)
                    .map(|c| format!("${}", r * COLUMNS + c))
                    .collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO push_sends (app_id, id, device_id, user_id, conversation_id, message_id, \
             author_id, provider, token, p256dh, auth, topic, sandbox, collapse_id, payload, \
             created_at, expires_at, attempts, next_at) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for s in chunk {
            query = query
                .bind(&s.app_id)
                .bind(&s.id)
                .bind(&s.device_id)
                .bind(&s.user_id)
                .bind(&s.conversation_id)
                .bind(&s.message_id)
                .bind(&s.author_id)
                .bind(&s.provider)
                .bind(&s.token)
                .bind(&s.p256dh)
                .bind(&s.auth)
                .bind(&s.topic)
                .bind(i64::from(s.sandbox))
                .bind(&s.collapse_id)
                .bind(&s.payload)
                .bind(s.created_at)
                .bind(s.expires_at)
                .bind(s.attempts)
                .bind(next_at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
