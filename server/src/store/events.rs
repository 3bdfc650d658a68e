//! The event outbox: one row per change, written in the transaction of the
//! change, so a committed change always has its event and a change that rolled
//! back has none. The feed (`GET /v1/events`, Admin `StreamEvents`), the webhook
//! deliverer and the push worker all read it.
//!
//! **Order and the gap-safe cursor.** Rows are read in `(xact, pos)` order. On
//! SQLite, whose one writer commits transactions one after another, `xact` is
//! 0 and `pos` counts up across the database: position order is commit order.
//! On PostgreSQL, numbers taken at insert time commit out of order (a
//! transaction that took 10 may commit after one that took 11), so a reader
//! trusting "the highest seen" would skip 10 for ever. Instead `xact` is the
//! writing transaction's id (`pg_current_xact_id()`), `pos` counts within it,
//! and a reader serves only rows whose transaction is older than every
//! transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`): no
//! row can later appear before what was served.
//!
//! **Per conversation, commit order.** A transaction gets its id at its first
//! write. Every transaction that records a conversation's events first takes
//! that conversation's advisory lock ([`lock_conversations`]), which writes
//! nothing; the lock is held to commit. So of two transactions changing one
//! conversation, the second cannot have an id before the first commits: their
//! events are in commit order, also when one of them (a batch of sends) spans
//! several conversations.

use serde::Serialize;
use serde_json::{json, Value};

use super::{Engine, Millis, Store, Tx};
use crate::error::{Error, Result};

/// Every event type the outbox records. Presence is not among them: it is not
/// stored, and its webhook events are best-effort (docs/webhooks.md).
pub const EVENT_TYPES: &[&str] = &[
    "message.created",
    "message.edited",
    "message.deleted",
    "message.reacted",
    "member.added",
    "member.removed",
    "member.role_changed",
    "conversation.created",
    "conversation.updated",
    "conversation.deleted",
    "conversation.hidden",
    "read.moved",
    "user.created",
    "user.updated",
    "user.deactivated",
    "user.reactivated",
    "user.deleted",
    "notification.sent",
    "notification.acknowledged",
    "user.blocked",
    "user.unblocked",
];

/// Event types that are not stored: no feed, no retries. A webhook endpoint
/// receives them only when its `event_types` name them (an endpoint with no
/// types gets every stored type, not these), once and best-effort: presence
/// changes, which are not in the database and change too often to keep.
pub const OPT_IN_TYPES: &[&str] = &["presence.changed"];

/// A position in the feed: after the event at this position. Opaque on the
/// wire (`Display`/`FromStr`). [`EventCursor::START`] is before every event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EventCursor {
    pub xact: i64,
    pub pos: i64,
}

impl EventCursor {
    pub const START: EventCursor = EventCursor { xact: 0, pos: 0 };
}

impl std::fmt::Display for EventCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.xact, self.pos)
    }
}

impl std::str::FromStr for EventCursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("invalid event cursor");
        let (xact, pos) = s.split_once('-').ok_or_else(bad)?;
        let number = |t: &str| {
            if t.is_empty() || t.len() > 19 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse::<i64>().map_err(|_| bad())
        };
        Ok(EventCursor {
            xact: number(xact)?,
            pos: number(pos)?,
        })
    }
}

/// One event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Stable and unique: `ev_` and a ULID (time-ordered).
    pub id: String,
    pub cursor: EventCursor,
    pub app_id: String,
    /// The event type, one of [`EVENT_TYPES`].
    pub kind: String,
    pub conversation_id: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// The entity as the REST API shows it, e.g. `{"message": {…}}`.
    pub data: Value,
}

impl StoredEvent {
    /// The public JSON of one event, the same in the feed and in a webhook's
    /// body.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.kind,
            "app_id": self.app_id,
            "conversation_id": self.conversation_id,
            "created_at": Millis(self.created_at),
            "cursor": self.cursor.to_string(),
            "data": self.data,
        })
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    app_id: String,
    xact: i64,
    pos: i64,
    #[sqlx(rename = "type")]
    kind: String,
    conversation_id: Option<String>,
    created_at: i64,
    data: String,
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = Error;
    fn try_from(row: EventRow) -> Result<Self> {
        Ok(StoredEvent {
            id: row.id,
            cursor: EventCursor {
                xact: row.xact,
                pos: row.pos,
            },
            app_id: row.app_id,
            kind: row.kind,
            conversation_id: row.conversation_id,
            created_at: row.created_at,
            data: serde_json::from_str(&row.data).map_err(|_| Error::internal())?,
        })
    }
}

/// An event to record with a change.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NewEvent {
    id: String,
    app: String,
    #[serde(rename = "type")]
    kind: &'static str,
    conv: Option<String>,
    /// Whose change it is (erased with them).
    user: Option<String>,
    /// Whose message it carries, when another user's (erased with them too).
    author: Option<String>,
    /// The message it carries (redacted when the message is deleted).
    message: Option<String>,
    at: i64,
    /// The entity, written into the statement's JSON parameter as an object
    /// (not a string of JSON to unescape): `j.value ->> 'data'` reads it back
    /// as JSON text for the TEXT column.
    data: Value,
    /// 1, 2, … in the order recorded within one statement.
    n: i64,
}

impl NewEvent {
    /// `data`: the entity, e.g. `json!({"message": message})`.
    pub(crate) fn new(
        app: &str,
        kind: &'static str,
        conv: Option<&str>,
        user: Option<&str>,
        at: i64,
        data: Value,
    ) -> Self {
        debug_assert!(EVENT_TYPES.contains(&kind), "unknown event type {kind}");
        NewEvent {
            id: new_event_id(at),
            app: app.to_owned(),
            kind,
            conv: conv.map(str::to_owned),
            user: user.map(str::to_owned),
            author: None,
            message: None,
            at,
            data,
            n: 0,
        }
    }

    /// The event carries a message of `author`, not the acting user.
    pub(crate) fn authored_by(mut self, author: &str) -> Self {
        self.author = Some(author.to_owned());
        self
    }

    /// The event carries the message `id`.
    pub(crate) fn carrying(mut self, id: &str) -> Self {
        self.message = Some(id.to_owned());
        self
    }
}

/// `ev_` and a ULID of the event's time: ids sort by time, which retention
/// uses ([`Store::purge_events`]).
fn new_event_id(at: i64) -> String {
    let id = ulid::Ulid::from_parts(at.max(0) as u64, rand::random::<u128>());
    format!("ev_{}", id.to_string().to_lowercase())
}

/// The events of one statement, numbered in order: `{"events": [...]}`.
#[derive(Serialize, Default)]
pub(crate) struct EventList {
    pub(crate) events: Vec<NewEvent>,
}

impl EventList {
    pub(crate) fn push(&mut self, mut event: NewEvent) {
        event.n = self.events.len() as i64 + 1;
        self.events.push(event);
    }
}

/// The transaction's id on PostgreSQL, 0 on SQLite (see the module's notes).
fn xact_expr(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "CAST(0 AS BIGINT)",
        Engine::Postgres => "CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)",
    }
}

/// The statements that insert a JSON list of [`NewEvent`]s, `$1`'s `list`,
/// read as rows as the group commit reads its batch. Positions follow the
/// transaction's last one (PostgreSQL) or `event_positions` (SQLite), which the
/// second statement moves on.
pub(crate) fn insert_sql(engine: Engine, list: &str) -> Vec<String> {
    let rows = match engine {
        Engine::Sqlite => format!("json_each($1, '$.{list}') AS j"),
        Engine::Postgres => format!("jsonb_array_elements($1::jsonb -> '{list}') AS j(value)"),
    };
    let base = match engine {
        Engine::Sqlite => {
            "SELECT CAST(0 AS BIGINT) AS xact, last AS pos FROM event_positions WHERE id = 1"
                .to_owned()
        }
        Engine::Postgres => {
            let xact = xact_expr(engine);
            format!(
                "SELECT {xact} AS xact, COALESCE(MAX(pos), 0) AS pos FROM events WHERE xact = {xact}"
            )
        }
    };
    let insert = format!(
        "WITH base AS MATERIALIZED ({base})
         INSERT INTO events (id, app_id, xact, pos, type, conversation_id, user_id, author_id, message_id, created_at, data)
         SELECT j.value ->> 'id', j.value ->> 'app', base.xact, base.pos + CAST(j.value ->> 'n' AS BIGINT),
            j.value ->> 'type', j.value ->> 'conv', j.value ->> 'user', j.value ->> 'author',
            j.value ->> 'message', CAST(j.value ->> 'at' AS BIGINT), j.value ->> 'data'
         FROM base CROSS JOIN {rows}"
    );
    match engine {
        Engine::Sqlite => vec![
            insert,
            format!(
                "UPDATE event_positions SET last = last + json_array_length($1, '$.{list}') WHERE id = 1"
            ),
        ],
        Engine::Postgres => vec![insert],
    }
}

/// Records `events` in `tx`, after the change they tell.
pub(crate) async fn record(tx: &mut Tx<'_>, engine: Engine, events: Vec<NewEvent>) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut list = EventList::default();
    for event in events {
        list.push(event);
    }
    let param = serde_json::to_string(&list).map_err(|_| Error::internal())?;
    for statement in insert_sql(engine, "events") {
        sqlx::query(&statement)
            .bind(&param)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Takes the advisory lock of each conversation (PostgreSQL; nothing on
/// SQLite, whose writer is one), in a fixed order, before the transaction's
/// first write: see the module's notes. Held until commit.
pub(crate) async fn lock_conversations(
    tx: &mut Tx<'_>,
    engine: Engine,
    keys: &[(&str, &str)],
) -> Result<()> {
    if engine != Engine::Postgres || keys.is_empty() {
        return Ok(());
    }
    let param = serde_json::to_string(
        &keys
            .iter()
            .map(|(app, conv)| format!("{app}\u{1f}{conv}"))
            .collect::<Vec<_>>(),
    )
    .map_err(|_| Error::internal())?;
    sqlx::query(LOCK_SQL).bind(param).execute(&mut **tx).await?;
    Ok(())
}

/// Locks `$1`, a JSON list of `app \x1f conversation` keys, in key order (the
/// sorted subquery is scanned in order; duplicates once).
pub(crate) const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(k) FROM (
         SELECT DISTINCT hashtextextended(t, 0) AS k FROM jsonb_array_elements_text($1::jsonb) AS t
         ORDER BY k) AS keys";

impl Store {
    /// Events of `app` after `after`, in feed order, at most `limit`: only
    /// those no running transaction can still precede (see the module's
    /// notes). `types`: None for all.
    pub async fn events_after(
        &self,
        app: &str,
        after: EventCursor,
        types: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let horizon = self.horizon();
        let filter = match (types, self.engine) {
            (None, _) => String::new(),
            (Some(_), Engine::Sqlite) => " AND type IN (SELECT value FROM json_each($5))".into(),
            (Some(_), Engine::Postgres) => {
                " AND type IN (SELECT jsonb_array_elements_text($5::jsonb))".into()
            }
        };
        let sql = format!(
            "SELECT id, app_id, xact, pos, type, conversation_id, created_at, data FROM events
             WHERE app_id = $1 AND (xact > $2 OR (xact = $2 AND pos > $3)) AND xact < {horizon}{filter}
             ORDER BY xact, pos LIMIT $4"
        );
        let mut query = sqlx::query_as::<_, EventRow>(&sql)
            .bind(app)
            .bind(after.xact)
            .bind(after.pos)
            .bind(i64::from(limit));
        if let Some(types) = types {
            query = query.bind(serde_json::to_string(types).map_err(|_| Error::internal())?);
        }
        query
            .fetch_all(&self.reader)
            .await?
            .into_iter()
            .map(StoredEvent::try_from)
            .collect()
    }

    /// Like [`Store::events_after`], and how far it looked: with a type
    /// filter, the rows of other types it passed over count as read, so a
    /// reader asking for a rare type moves on instead of scanning the same
    /// rows again. Returns the matching events (at most `limit`) and the
    /// position to ask from next (`after` when nothing new was committed).
    pub async fn events_scan(
        &self,
        app: &str,
        after: EventCursor,
        types: Option<&[String]>,
        limit: u32,
    ) -> Result<(Vec<StoredEvent>, EventCursor)> {
        let Some(types) = types else {
            let events = self.events_after(app, after, None, limit).await?;
            let next = events.last().map_or(after, |e| e.cursor);
            return Ok((events, next));
        };
        // Rows passed over are read once: type and position only.
        let scan = limit.saturating_mul(10).clamp(100, 10_000);
        let sql = format!(
            "SELECT xact, pos, type FROM events
             WHERE app_id = $1 AND (xact > $2 OR (xact = $2 AND pos > $3)) AND xact < {}
             ORDER BY xact, pos LIMIT $4",
            self.horizon()
        );
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(&sql)
            .bind(app)
            .bind(after.xact)
            .bind(after.pos)
            .bind(i64::from(scan))
            .fetch_all(&self.reader)
            .await?;
        let mut next = after;
        let mut wanted = 0u32;
        for (xact, pos, kind) in &rows {
            if types.iter().any(|t| t == kind) {
                if wanted == limit {
                    break;
                }
                wanted += 1;
            }
            next = EventCursor {
                xact: *xact,
                pos: *pos,
            };
        }
        let events = if wanted == 0 {
            Vec::new()
        } else {
            self.events_after(app, after, Some(types), wanted).await?
        };
        // A row deleted between the two reads (retention, erasure) may let a
        // later one be served: never stay behind what was served.
        let next = events.last().map_or(next, |e| e.cursor.max(next));
        Ok((events, next))
    }

    /// The gap-safe horizon: rows of transactions below it are all committed.
    fn horizon(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "9223372036854775807",
            Engine::Postgres => {
                "CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)"
            }
        }
    }

    /// One event of `app` by id, if still retained.
    pub async fn event(&self, app: &str, id: &str) -> Result<Option<StoredEvent>> {
        sqlx::query_as::<_, EventRow>(
            "SELECT id, app_id, xact, pos, type, conversation_id, created_at, data FROM events
             WHERE app_id = $1 AND id = $2",
        )
        .bind(app)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        .map(StoredEvent::try_from)
        .transpose()
    }

    /// Deletes events recorded before `before` (unix ms), oldest first, at most
    /// `limit` of them, except those an active webhook endpoint still owes
    /// (retries outlast no retention: none is lost); returns how many went.
    /// Ids are time-ordered ULIDs, so the oldest are found by the primary key.
    pub async fn purge_events(&self, before: i64, limit: u32) -> Result<u64> {
        let bound = ulid::Ulid::from_parts(before.max(0) as u64, 0)
            .to_string()
            .to_lowercase();
        let done = sqlx::query(
            "DELETE FROM events WHERE id IN (
                 SELECT e.id FROM events e WHERE e.id < $1 AND NOT EXISTS (
                     SELECT 1 FROM webhook_pending p JOIN webhooks w
                         ON w.app_id = p.app_id AND w.id = p.webhook_id
                     WHERE p.event_id = e.id AND w.disabled_at IS NULL)
                 ORDER BY e.id LIMIT $2)",
        )
        .bind(format!("ev_{bound}"))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }
}

/// The query of an app's feed head (`$1`: the app), as a reader may see it
/// now: below every running transaction on PostgreSQL, as `events_after`
/// reads.
pub(crate) fn head_sql(engine: Engine) -> String {
    let horizon = match engine {
        Engine::Sqlite => "9223372036854775807",
        Engine::Postgres => "CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)",
    };
    format!(
        "SELECT xact, pos FROM events WHERE app_id = $1 AND xact < {horizon} \
         ORDER BY xact DESC, pos DESC LIMIT 1"
    )
}

pub(crate) fn cursor_or_start(head: Option<(i64, i64)>) -> EventCursor {
    head.map(|(xact, pos)| EventCursor { xact, pos })
        .unwrap_or(EventCursor::START)
}

/// The feed head of `app` read inside a transaction (see [`head_sql`]).
pub(crate) async fn head_in(tx: &mut Tx<'_>, engine: Engine, app: &str) -> Result<EventCursor> {
    let head: Option<(i64, i64)> = sqlx::query_as(&head_sql(engine))
        .bind(app)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(cursor_or_start(head))
}

/// Replaces the message a deleted message's retained events carry with its
/// tombstone, inside the delete's transaction: its text and data leave the
/// outbox as they leave `messages`.
pub(crate) async fn redact_message(
    tx: &mut Tx<'_>,
    engine: Engine,
    app: &str,
    message_id: &str,
    tombstone: &Value,
) -> Result<()> {
    let set = match engine {
        Engine::Sqlite => "json_set(data, '$.message', json($3))",
        Engine::Postgres => {
            "CAST(jsonb_set(CAST(data AS jsonb), '{message}', CAST($3 AS jsonb)) AS TEXT)"
        }
    };
    sqlx::query(&format!(
        "UPDATE events SET data = {set} WHERE app_id = $1 AND message_id = $2"
    ))
    .bind(app)
    .bind(message_id)
    .bind(tombstone.to_string())
    .execute(&mut **tx)
    .await?;
    // Its pushes not sent yet carry its text.
    sqlx::query("DELETE FROM push_sends WHERE app_id = $1 AND message_id = $2")
        .bind(app)
        .bind(message_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Empties the text and data of every message the retained events of a
/// deleted conversation carry.
pub(crate) async fn redact_conversation(
    tx: &mut Tx<'_>,
    engine: Engine,
    app: &str,
    conv: &str,
) -> Result<()> {
    let set = match engine {
        Engine::Sqlite => "json_set(data, '$.message.text', '', '$.message.data', json('{}'))",
        Engine::Postgres => {
            "CAST(jsonb_set(jsonb_set(CAST(data AS jsonb), '{message,text}', '\"\"'), \
             '{message,data}', '{}') AS TEXT)"
        }
    };
    sqlx::query(&format!(
        "UPDATE events SET data = {set}
         WHERE app_id = $1 AND conversation_id = $2 AND message_id IS NOT NULL"
    ))
    .bind(app)
    .bind(conv)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM push_sends WHERE app_id = $1 AND conversation_id = $2")
        .bind(app)
        .bind(conv)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes the retained events of `user` of `app` (theirs, and those carrying
/// their messages) and the pushes not sent yet to them or of their messages,
/// inside an erasure's transaction.
pub(crate) async fn erase_user_events(tx: &mut Tx<'_>, app: &str, user: &str) -> Result<()> {
    for table in ["events", "push_sends"] {
        for column in ["user_id", "author_id"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE app_id = $1 AND {column} = $2"
            ))
            .bind(app)
            .bind(user)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let c = EventCursor { xact: 7, pos: 42 };
        assert_eq!(c.to_string().parse::<EventCursor>().unwrap(), c);
        assert_eq!("0-0".parse::<EventCursor>().unwrap(), EventCursor::START);
        for bad in [
            "",
            "1",
            "-1-2",
            "1--2",
            "a-1",
            "1-",
            "99999999999999999999-1",
            "1-2-3",
            " 1-2",
        ] {
            assert!(bad.parse::<EventCursor>().is_err(), "{bad:?}");
        }
        assert!(EventCursor { xact: 1, pos: 1 } > EventCursor { xact: 0, pos: 99 });
    }

    #[test]
    fn every_type_is_named_once() {
        let mut seen = std::collections::HashSet::new();
        for t in EVENT_TYPES {
            assert!(seen.insert(t), "{t} twice");
            assert!(t.contains('.'));
        }
    }
}
