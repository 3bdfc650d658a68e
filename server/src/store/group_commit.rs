//! Group commit: concurrent sends share one write transaction, so a commit (and
//! on SQLite its `fsync`) is paid once per batch instead of once per message, and
//! throughput grows with the number of senders instead of stopping at one commit
//! per message.
//!
//! Sends queue for one committer task. It takes what is waiting (up to
//! [`MAX_BATCH`]) and writes it in one transaction, with a fixed number of
//! statements whatever the batch's size: the batch travels as one JSON parameter
//! that each statement reads as rows (`json_each` on SQLite,
//! `jsonb_array_elements` on PostgreSQL). In order:
//!
//! 1. lock the batch's conversations: on PostgreSQL their advisory locks (the
//!    outbox's order, store/events.rs), then `FOR NO KEY UPDATE` in (app, id) order, so two nodes' batches never deadlock; on SQLite `BEGIN
//!    IMMEDIATE` takes the one writer lock, which excludes every other write;
//! 2. read their `last_seq` and members (the recipients, as of this
//!    transaction, after the lock) and whether a block stands inside a direct
//!    conversation, in one statement;
//! 3. find retried sends (`client_id`) already stored;
//! 4. decide each send in the batch's order, in memory: not found, not a member,
//!    blocked, a duplicate, a bad `reply_to` — or its seq, the conversation's
//!    last plus one;
//! 5. write what was accepted: `last_seq` of each conversation, the messages,
//!    the senders' read positions, a `message.created` event per message in the
//!    outbox (store/events.rs; on SQLite these five are one round trip to its
//!    worker thread);
//! 6. commit, then answer every send.
//!
//! A refused send is decided before anything is written, so it never rolls back
//! the others: no savepoint is needed. A failure of the transaction itself (the
//! database) would fail the whole batch, so the batch's sends are then written
//! again one at a time: no send fails for another's fault. Seqs stay gap-free:
//! a refused or duplicate send takes none.
//!
//! Per conversation, the node still holds its conversation lock from before a
//! send is queued until it is published, so one conversation's sends commit in
//! turn (each in whichever batch is next); many conversations share each commit.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyPool, FromRow, Row};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::events::{self, EventList};
use super::messages::{NewMessage, Sent};
use super::social::blocked_error;
use super::{now_ms, retrying, Engine, Message, Millis};
use crate::error::{Error, Result};

/// Sends in one transaction at most: large enough that a commit is shared by
/// hundreds of senders, small enough that one batch's statements stay short.
const MAX_BATCH: usize = 512;
/// Joins the member ids a batch reads per conversation (`char(31)`): user ids
/// are letters, digits and `.` `_` `@` `:` `-`.
const MEMBER_SEPARATOR: char = '\u{1f}';
/// Sends waiting for a batch before a new send waits for room (backpressure
/// on the callers rather than an unbounded queue).
const QUEUE: usize = 8192;

/// The queue in front of the committer. Cheap to clone: every `Store` clone
/// shares it.
#[derive(Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
    stats: Arc<Stats>,
}

/// Batches and sends committed so far (also on `/metrics`:
/// `mkondo_send_batches_total`, `mkondo_send_batch_size`).
#[derive(Default)]
struct Stats {
    batches: AtomicU64,
    sends: AtomicU64,
}

/// One send as the committer gets it.
struct Request {
    app: String,
    conv: String,
    msg: NewMessage,
}

struct Pending {
    request: Request,
    done: oneshot::Sender<Result<Sent>>,
}

impl GroupCommit {
    /// Starts the committer. `concurrent`: batches written at once (1 on
    /// SQLite, whose writer is one connection; a few on PostgreSQL, whose
    /// row locks order batches that share a conversation).
    pub(super) fn start(writer: AnyPool, engine: Engine, concurrent: usize) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let committer = Committer {
            writer,
            sql: Arc::new(Sql::new(engine)),
            stats: stats.clone(),
        };
        tokio::spawn(committer.run(rx, concurrent.max(1)));
        Self { queue, stats }
    }

    /// Queues a checked send and waits for the commit of the batch that holds it.
    pub(super) async fn send(&self, app: &str, conv: &str, msg: &NewMessage) -> Result<Sent> {
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            request: Request {
                app: app.to_owned(),
                conv: conv.to_owned(),
                msg: msg.clone(),
            },
            done,
        };
        let gone = || Error::new(mkondo_proto::ErrorCode::Unavailable, "the store is closed");
        self.queue.send(pending).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// (batches committed, sends in them).
    pub(super) fn stats(&self) -> (u64, u64) {
        (
            self.stats.batches.load(Ordering::Relaxed),
            self.stats.sends.load(Ordering::Relaxed),
        )
    }
}

/// The task that owns the queue's receiving end. It holds the writer pool, not
/// a `Store`: when the last `Store` is dropped the queue closes and it ends.
struct Committer {
    writer: AnyPool,
    sql: Arc<Sql>,
    stats: Arc<Stats>,
}

impl Committer {
    async fn run(self, mut rx: mpsc::Receiver<Pending>, concurrent: usize) {
        let turns = Arc::new(Semaphore::new(concurrent));
        let this = Arc::new(self);
        loop {
            // A turn first, then the batch: while every turn is busy, sends
            // accumulate into the next batch.
            let Ok(turn) = turns.clone().acquire_owned().await else {
                return;
            };
            let mut batch = Vec::new();
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
            let this = this.clone();
            tokio::spawn(async move {
                this.commit(batch).await;
                drop(turn);
            });
        }
    }

    async fn commit(&self, batch: Vec<Pending>) {
        let (requests, answers): (Vec<Request>, Vec<_>) =
            batch.into_iter().map(|p| (p.request, p.done)).unzip();
        metrics::histogram!("mkondo_send_batch_size").record(requests.len() as f64);
        match retrying(|| self.write(&requests)).await {
            Ok(outcomes) => {
                self.count(requests.len());
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(outcome);
                }
            }
            Err(err) if requests.len() > 1 => {
                tracing::warn!(error = %err, sends = requests.len(),
                    "a batch of sends failed to commit; writing them one at a time");
                for (request, answer) in requests.iter().zip(answers) {
                    let one = std::slice::from_ref(request);
                    let outcome = retrying(|| self.write(one)).await;
                    self.count(1);
                    let _ = answer.send(outcome.and_then(|mut o| o.remove(0)));
                }
            }
            Err(err) => {
                for answer in answers {
                    let _ = answer.send(Err(err.clone()));
                }
            }
        }
    }

    fn count(&self, sends: usize) {
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.sends.fetch_add(sends as u64, Ordering::Relaxed);
        metrics::counter!("mkondo_send_batches_total").increment(1);
    }

    /// One transaction for `requests`: each one's outcome, in order. `Err` only
    /// when the transaction itself failed (nothing of it was written).
    async fn write(&self, requests: &[Request]) -> Result<Vec<Result<Sent>>> {
        let sql = &self.sql;
        let mut tx = self.writer.begin_with(sql.begin).await?;
        let now = now_ms();

        // 1. Lock the conversations in a fixed order (PostgreSQL; SQLite's
        // writer lock, taken by `BEGIN IMMEDIATE`, already excludes every
        // other writer).
        let keys: BTreeSet<(&str, &str)> = requests
            .iter()
            .map(|r| (r.app.as_str(), r.conv.as_str()))
            .collect();
        // Their advisory locks first, before anything gives the transaction
        // an id: the events' order per conversation (store/events.rs).
        let key_list: Vec<(&str, &str)> = keys.iter().copied().collect();
        events::lock_conversations(&mut tx, sql.engine, &key_list).await?;
        let keys = rows_param(keys.iter().map(|&(app, conv)| ConvKey { app, conv }));
        if let Some(lock) = &sql.lock {
            sqlx::query(lock).bind(&keys).execute(&mut *tx).await?;
        }

        // 2. Their last seqs and members, read after the lock: a membership
        // change either committed before it (and is seen) or waits for this
        // batch.
        let mut convs: HashMap<(String, String), Conv> = HashMap::new();
        for row in sqlx::query(&sql.read)
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?
        {
            let members: Option<String> = row.try_get("members")?;
            let conv = Conv {
                direct: row.try_get::<String, _>("kind")? == "direct",
                last_seq: row.try_get("last_seq")?,
                members: members
                    .as_deref()
                    .map(|m| m.split(MEMBER_SEPARATOR).map(str::to_owned).collect())
                    .unwrap_or_default(),
                blocked: row.try_get::<i64, _>("blocks")? != 0,
                changed: false,
            };
            convs.insert((row.try_get("app_id")?, row.try_get("id")?), conv);
        }
        // Sorted here, not by the database (whose text order depends on its
        // collation): `decide` looks members up by binary search.
        for conv in convs.values_mut() {
            conv.members.sort_unstable();
        }

        // 3. Retried sends already stored.
        let mut earlier: HashMap<RetryKey, Message> = HashMap::new();
        let retries: Vec<RetryParam<'_>> = requests
            .iter()
            .filter_map(|r| {
                Some(RetryParam {
                    app: &r.app,
                    conv: &r.conv,
                    sender: &r.msg.sender_id,
                    client_id: r.msg.client_id.as_deref()?,
                })
            })
            .collect();
        if !retries.is_empty() {
            let param = rows_param(retries);
            for row in sqlx::query(&sql.retries)
                .bind(&param)
                .fetch_all(&mut *tx)
                .await?
            {
                let message = Message::from_row(&row)?;
                let key = RetryKey {
                    app: row.try_get("app_id")?,
                    conv: message.conversation_id.clone(),
                    sender: message.sender_id.clone(),
                    client_id: message.client_id.clone().unwrap_or_default(),
                };
                earlier.insert(key, message);
            }
        }

        // 4. Each send, in order.
        let mut writes = Writes::default();
        let mut outcomes = Vec::with_capacity(requests.len());
        for r in requests {
            outcomes.push(decide(r, &mut convs, &mut earlier, &mut writes, now));
        }
        if writes.messages.is_empty() {
            // Nothing accepted: the transaction wrote nothing.
            return Ok(outcomes);
        }

        // 5. Write what was accepted.
        writes.conversations = convs
            .iter()
            .filter(|(_, c)| c.changed)
            .map(|((app, conv), c)| ConvWrite {
                app: app.clone(),
                conv: conv.clone(),
                last_seq: c.last_seq,
                at: now,
            })
            .collect();
        let param = serde_json::to_string(&writes).map_err(|_| Error::internal())?;
        for statement in &sql.writes {
            sqlx::query(statement)
                .bind(&param)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// A conversation of the batch, as locked and read in its transaction.
struct Conv {
    direct: bool,
    last_seq: i64,
    /// Sorted by id.
    members: Vec<String>,
    /// A direct conversation whose two members have a block between them.
    blocked: bool,
    /// Seqs were taken in this batch.
    changed: bool,
}

#[derive(Hash, PartialEq, Eq)]
struct RetryKey {
    app: String,
    conv: String,
    sender: String,
    client_id: String,
}

/// The outcome of one send, decided in memory after the batch's reads; an
/// accepted one is added to `writes` and, if it has a `client_id`, to `earlier`
/// (a retry later in the same batch finds it).
fn decide(
    r: &Request,
    convs: &mut HashMap<(String, String), Conv>,
    earlier: &mut HashMap<RetryKey, Message>,
    writes: &mut Writes,
    now: i64,
) -> Result<Sent> {
    let msg = &r.msg;
    let Some(conv) = convs.get_mut(&(r.app.clone(), r.conv.clone())) else {
        return Err(Error::not_found("conversation"));
    };
    if msg.kind != "system" {
        if conv.members.binary_search(&msg.sender_id).is_err() {
            return Err(Error::denied(
                "the sender is not a member of this conversation",
            ));
        }
        if conv.direct && conv.blocked {
            return Err(blocked_error());
        }
    }
    let retry_key = msg.client_id.as_ref().map(|client_id| RetryKey {
        app: r.app.clone(),
        conv: r.conv.clone(),
        sender: msg.sender_id.clone(),
        client_id: client_id.clone(),
    });
    if let Some(original) = retry_key.as_ref().and_then(|k| earlier.get(k)) {
        return Ok(Sent {
            message: original.clone(),
            duplicate: true,
            recipients: conv.members.clone(),
        });
    }
    let seq = conv.last_seq + 1;
    if let Some(reply_to) = msg.reply_to {
        if reply_to < 1 || reply_to >= seq {
            return Err(Error::invalid(
                "reply_to must be an existing seq of this conversation",
            ));
        }
    }
    conv.last_seq = seq;
    conv.changed = true;
    let message = Message {
        id: ulid::Ulid::new().to_string(),
        conversation_id: r.conv.clone(),
        seq,
        sender_id: msg.sender_id.clone(),
        kind: msg.kind.clone(),
        text: msg.text.clone(),
        data: msg
            .data
            .clone()
            .unwrap_or_else(|| Value::Object(Default::default())),
        client_id: msg.client_id.clone(),
        reply_to: msg.reply_to,
        created_at: Millis(now),
        edited_at: None,
        deleted_at: None,
        reactions: Vec::new(),
        attachments: msg.attachments.clone(),
    };
    // The claimed uploads get the message's seq in its transaction: from the
    // commit on, deleting the message deletes them.
    writes
        .attach
        .extend(msg.attachments.iter().map(|a| AttachWrite {
            app: r.app.clone(),
            id: a.id.clone(),
            seq,
        }));
    writes.messages.push(MessageWrite {
        app: r.app.clone(),
        conv: r.conv.clone(),
        seq,
        id: message.id.clone(),
        sender: message.sender_id.clone(),
        kind: message.kind.clone(),
        text: message.text.clone(),
        data: message.data.to_string(),
        attachments: serde_json::to_string(&message.attachments).map_err(|_| Error::internal())?,
        client_id: message.client_id.clone(),
        reply_to: message.reply_to,
        at: now,
    });
    // Sending means having read everything up to one's own message. A later
    // send of the same sender in this batch moves it further: the last wins.
    writes.reads.push(ReadWrite {
        app: r.app.clone(),
        conv: r.conv.clone(),
        user: message.sender_id.clone(),
        seq,
    });
    writes.events.push(super::messages::message_event(
        &r.app,
        "message.created",
        &message,
        now,
    ));
    if let Some(key) = retry_key {
        earlier.insert(key, message.clone());
    }
    Ok(Sent {
        message,
        duplicate: false,
        recipients: conv.members.clone(),
    })
}

// ----- the JSON parameters

#[derive(Serialize)]
struct ConvKey<'a> {
    app: &'a str,
    conv: &'a str,
}

#[derive(Serialize)]
struct RetryParam<'a> {
    app: &'a str,
    conv: &'a str,
    sender: &'a str,
    client_id: &'a str,
}

/// `{"rows": [...]}`: what [`Sql`]'s reads take as `$1`.
fn rows_param<T: Serialize>(rows: impl IntoIterator<Item = T>) -> String {
    #[derive(Serialize)]
    struct Rows<T> {
        rows: Vec<T>,
    }
    serde_json::to_string(&Rows {
        rows: rows.into_iter().collect(),
    })
    .expect("plain strings serialize")
}

/// Everything a batch writes, as the `$1` of [`Sql::writes`].
#[derive(Serialize, Default)]
struct Writes {
    conversations: Vec<ConvWrite>,
    messages: Vec<MessageWrite>,
    reads: Vec<ReadWrite>,
    attach: Vec<AttachWrite>,
    /// `events`: a `message.created` per message.
    #[serde(flatten)]
    events: EventList,
}

#[derive(Serialize)]
struct ConvWrite {
    app: String,
    conv: String,
    last_seq: i64,
    at: i64,
}

#[derive(Serialize)]
struct MessageWrite {
    app: String,
    conv: String,
    seq: i64,
    id: String,
    sender: String,
    kind: String,
    text: String,
    /// The data object as JSON text (the column is TEXT on both engines).
    data: String,
    /// The attachments, a JSON array as text.
    attachments: String,
    client_id: Option<String>,
    reply_to: Option<i64>,
    at: i64,
}

#[derive(Serialize)]
struct AttachWrite {
    app: String,
    id: String,
    seq: i64,
}

#[derive(Serialize)]
struct ReadWrite {
    app: String,
    conv: String,
    user: String,
    seq: i64,
}

// ----- the statements

/// The batch's statements for one engine, built once. Each takes one JSON
/// parameter and reads a list of it as rows `j` with a JSON object `j.value`
/// per row (`j.value ->> 'field'` is text, or NULL for null, on both engines).
struct Sql {
    engine: Engine,
    /// SQLite: `BEGIN IMMEDIATE`, the write lock from the start. A transaction
    /// that has read cannot wait for the lock to upgrade (SQLite answers busy
    /// at once); one that asks for it first waits up to `busy_timeout`, as when
    /// another process (the CLI) holds it for a moment.
    begin: &'static str,
    /// PostgreSQL: locks the batch's conversations in (app, id) order.
    lock: Option<String>,
    /// Each conversation's kind, last seq, members and blocked flag.
    read: String,
    retries: String,
    /// SQLite: one string of all the statements (one round trip to its
    /// worker thread); PostgreSQL: one statement each (its protocol takes one
    /// per query with parameters).
    writes: Vec<String>,
}

impl Sql {
    fn new(engine: Engine) -> Self {
        let rows = |list: &str| match engine {
            Engine::Sqlite => format!("json_each($1, '$.{list}') AS j"),
            Engine::Postgres => format!("jsonb_array_elements($1::jsonb -> '{list}') AS j(value)"),
        };
        let keys = rows("rows");
        let writes = [
            format!(
                "UPDATE conversations SET last_seq = CAST(j.value ->> 'last_seq' AS BIGINT),
                    last_activity_at = CAST(j.value ->> 'at' AS BIGINT)
                 FROM {} WHERE conversations.app_id = j.value ->> 'app' AND conversations.id = j.value ->> 'conv'",
                rows("conversations")
            ),
            format!(
                "INSERT INTO messages (app_id, conversation_id, seq, id, sender_id, kind, text, data, attachments, client_id, reply_to, created_at)
                 SELECT j.value ->> 'app', j.value ->> 'conv', CAST(j.value ->> 'seq' AS BIGINT), j.value ->> 'id',
                    j.value ->> 'sender', j.value ->> 'kind', j.value ->> 'text', j.value ->> 'data', j.value ->> 'attachments',
                    j.value ->> 'client_id', CAST(j.value ->> 'reply_to' AS BIGINT), CAST(j.value ->> 'at' AS BIGINT)
                 FROM {}",
                rows("messages")
            ),
            format!(
                "UPDATE members SET last_read_seq = CAST(j.value ->> 'seq' AS BIGINT)
                 FROM {} WHERE members.app_id = j.value ->> 'app'
                    AND members.conversation_id = j.value ->> 'conv' AND members.user_id = j.value ->> 'user'",
                rows("reads")
            ),
            format!(
                "UPDATE uploads SET message_seq = CAST(j.value ->> 'seq' AS BIGINT)
                 FROM {} WHERE uploads.app_id = j.value ->> 'app' AND uploads.id = j.value ->> 'id'
                    AND uploads.state = 'attached'",
                rows("attach")
            ),
        ]
        .into_iter()
        .chain(events::insert_sql(engine, "events"))
        .collect::<Vec<_>>();
        Self {
            engine,
            begin: match engine {
                Engine::Sqlite => "BEGIN IMMEDIATE",
                Engine::Postgres => "BEGIN",
            },
            lock: (engine == Engine::Postgres).then(|| {
                format!(
                    "SELECT c.id FROM {keys}
                     JOIN conversations c ON c.app_id = j.value ->> 'app' AND c.id = j.value ->> 'conv'
                     ORDER BY c.app_id, c.id FOR NO KEY UPDATE OF c"
                )
            }),
            // One row per conversation, its members joined into one text (a
            // row per member would cost a row decode each: thousands per send
            // into a large group), by subqueries rather than GROUP BY, which
            // would sort. `blocks`: in a direct conversation, a member blocks
            // the other.
            read: format!(
                "SELECT c.app_id, c.id, c.kind, c.last_seq,
                    (SELECT {join} FROM members m
                     WHERE m.app_id = c.app_id AND m.conversation_id = c.id) AS members,
                    CASE WHEN c.kind = 'direct' AND EXISTS (
                        SELECT 1 FROM members m
                        JOIN members o ON o.app_id = m.app_id
                            AND o.conversation_id = m.conversation_id AND o.user_id <> m.user_id
                        WHERE m.app_id = c.app_id AND m.conversation_id = c.id
                            AND EXISTS (SELECT 1 FROM blocks b WHERE b.app_id = m.app_id
                                AND b.user_id = m.user_id AND b.blocked_id = o.user_id)
                    ) THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS blocks
                 FROM {keys}
                 JOIN conversations c ON c.app_id = j.value ->> 'app' AND c.id = j.value ->> 'conv'",
                join = match engine {
                    Engine::Sqlite => "group_concat(m.user_id, char(31))",
                    Engine::Postgres => "string_agg(m.user_id, chr(31))",
                }
            ),
            retries: format!(
                "SELECT m.app_id, m.id, m.conversation_id, m.seq, m.sender_id, m.kind, m.text, m.data,
                    m.client_id, m.reply_to, m.created_at, m.edited_at, m.deleted_at, m.attachments
                 FROM {keys}
                 JOIN messages m ON m.app_id = j.value ->> 'app' AND m.conversation_id = j.value ->> 'conv'
                    AND m.sender_id = j.value ->> 'sender' AND m.client_id = j.value ->> 'client_id'"
            ),
            writes: match engine {
                Engine::Sqlite => vec![writes.join(";\n")],
                Engine::Postgres => writes,
            },
        }
    }
}
