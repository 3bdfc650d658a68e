//! Storage: everything durable, behind one `Store` over sqlx's `Any` driver, so the
//! same code and the same migrations serve SQLite and PostgreSQL.
//!
//! SQLite (the default, embedded) in WAL mode: writes go through a
//! single-connection pool, so SQLite never answers "busy" and a message's seq
//! allocation, insert and the conversation's `last_seq` update happen in one short
//! transaction. Reads use a separate pool and never wait for writers (WAL).
//!
//! PostgreSQL (`postgres://…`, for several nodes sharing one database): one pool.
//! Writers on any node serialize per conversation on its row: `UPDATE
//! conversations SET last_seq = last_seq + 1 … RETURNING` (or `FOR NO KEY
//! UPDATE`, see [`Store::lock`]) holds the row lock until commit, so seqs stay
//! gap-free and unique however many processes send at once. What still races
//! (a deadlock, a unique key another node inserted between a check and an insert)
//! is reported as a conflict and the whole transaction runs again ([`retrying`]).
//!
//! The SQL is portable: `$1` placeholders, BIGINT times and 0/1 flags, TEXT JSON,
//! `ON CONFLICT`, `RETURNING`. Every column read is TEXT or BIGINT on both engines
//! (the `Any` driver decodes nothing else the same way on both). Text ordering
//! (cursors over ids) is bytewise: SQLite compares with BINARY, and a PostgreSQL
//! database must use the "C" collation (checked at open).

mod apps;
mod columns;
mod conversations;
pub mod devices;
pub mod events;
pub mod files;
mod group_commit;
pub mod hooks;
pub mod messages;
mod models;
pub mod push_queue;
pub mod push_settings;
pub mod reactions;
pub mod social;
pub mod system_messages;
pub mod users;
pub mod webhooks;

use std::{future::Future, time::Duration};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor};

pub use apps::{
    Announce, ApiKeyInfo, ApnsInfo, AppCreds, AppOverview, AppRow, AppSettingsChange,
    CreatedApiKey, FcmInfo, HookInfo, KeyInfo, KeyRow, PushInfo, Revocation, WebPushInfo,
};
pub use conversations::{check_conversation_fields, valid_conversation_id, NewGroup, Page};
pub use messages::{NewMessage, Sent};
pub use models::*;

use crate::error::{Error, Result};

/// A row as the store reads it, whatever the engine.
pub(crate) type DbRow = AnyRow;
/// A write transaction, whatever the engine.
pub(crate) type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// How a [`Store`] connects.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// PostgreSQL: connections in the pool of this process (each node has its own).
    /// SQLite ignores it: one writer and a few readers.
    pub max_connections: u32,
    /// SQLite: how hard a commit waits for the disk (PostgreSQL ignores it).
    pub sqlite_synchronous: Synchronous,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            sqlite_synchronous: Synchronous::Full,
        }
    }
}

/// SQLite's `synchronous` level in WAL mode. `Full` (the default) syncs the log
/// at every commit: an acknowledged message survives power loss. `Normal` syncs
/// at checkpoints only: a commit survives the process dying (SIGKILL), but the
/// last ones before a power cut or kernel crash may be lost; it writes faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

impl Synchronous {
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Full => "full",
            Synchronous::Normal => "normal",
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            _ => anyhow::bail!("--sqlite-synchronous must be full or normal"),
        }
    }
}

/// PostgreSQL connections per node by default: with three nodes, 48 of
/// PostgreSQL's default 100.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

#[derive(Clone)]
pub struct Store {
    writer: AnyPool,
    reader: AnyPool,
    engine: Engine,
    /// The queue of sends in front of the writer.
    commits: group_commit::GroupCommit,
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Per SQLite connection: WAL (with the `synchronous` level of [`Synchronous`]),
/// foreign keys, and deleted or erased content overwritten in the file rather
/// than left in free space (a tombstone's text is gone from the disk). The
/// statement journal (what lets one statement of a batch roll back alone) in
/// memory, not a temporary file written for every multi-row statement; the log
/// checkpointed into the database every 4,000 pages (16 MiB) rather than 1,000,
/// so a page written by many commits is copied once.
const SQLITE_WRITER_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
     PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY; \
     PRAGMA wal_autocheckpoint = 4000;";
const SQLITE_READER_PRAGMAS: &str = "PRAGMA busy_timeout = 10000;";

impl Store {
    /// Opens the database at `url` — a SQLite path, `sqlite://path`, or
    /// `postgres://…` — creating a SQLite file if needed, and runs the embedded
    /// migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    pub async fn open_with(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url, options).await
        } else if url.contains("://") && !url.starts_with("sqlite://") {
            anyhow::bail!(
                "unsupported database URL {:?}: use a SQLite path (or sqlite://path) or postgres://…",
                url.split("://").next().unwrap_or_default()
            )
        } else {
            Self::open_sqlite(url, options.sqlite_synchronous).await
        }
    }

    async fn open_sqlite(url: &str, synchronous: Synchronous) -> anyhow::Result<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = std::path::absolute(path)?;
        let location = sqlite_url(&path);
        // No ping before each acquire (sqlx's default): a local file does not
        // go stale like a network connection, and every ping is one more
        // round trip to the connection's worker thread.
        let writer = AnyPoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_WRITER_PRAGMAS).await?;
                    let level = format!("PRAGMA synchronous = {}", synchronous.as_str());
                    conn.execute(level.as_str()).await.map(drop)
                })
            })
            .connect(&format!("{location}?mode=rwc"))
            .await?;
        migrate_sqlite(&writer).await?;
        let reader = AnyPoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(|conn, _| {
                Box::pin(async move { conn.execute(SQLITE_READER_PRAGMAS).await.map(drop) })
            })
            .connect(&format!("{location}?mode=ro"))
            .await?;
        Ok(Self {
            commits: group_commit::GroupCommit::start(writer.clone(), Engine::Sqlite, 1),
            writer,
            reader,
            engine: Engine::Sqlite,
        })
    }

    async fn open_postgres(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(15))
            .connect(url)
            .await?;
        // Several nodes may start at once: the migrator holds an advisory lock
        // while it runs, so each migration is applied exactly once.
        MIGRATOR.run(&pool).await?;
        let collation: String = sqlx::query_scalar(
            "SELECT datcollate FROM pg_database WHERE datname = current_database()",
        )
        .fetch_one(&pool)
        .await?;
        if collation != "C" && collation != "POSIX" {
            tracing::warn!(
                collation,
                "the database does not use the C collation: ids sort differently than on \
                 SQLite; create it with LC_COLLATE 'C' (see docs/deploy.md)"
            );
        }
        // Batches written at once: a quarter of the pool, the rest left to
        // every other query.
        let batches = (options.max_connections / 4).max(1) as usize;
        Ok(Self {
            commits: group_commit::GroupCommit::start(pool.clone(), Engine::Postgres, batches),
            writer: pool.clone(),
            reader: pool,
            engine: Engine::Postgres,
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// What a `SELECT` inside a write transaction appends to lock the rows it
    /// reads until commit. SQLite needs nothing: its single writer already
    /// serializes every write transaction. `NO KEY UPDATE` leaves foreign-key
    /// checks (inserts referencing the row) unblocked.
    pub(crate) fn lock(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR NO KEY UPDATE",
        }
    }

    /// SQLite's `synchronous` level on the writer, as SQLite reports it
    /// (0 off, 1 normal, 2 full, 3 extra); None on PostgreSQL.
    pub async fn sqlite_synchronous(&self) -> Result<Option<i64>> {
        if self.engine != Engine::Sqlite {
            return Ok(None);
        }
        Ok(Some(
            sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&self.writer)
                .await?,
        ))
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Flushes and closes the pools (graceful shutdown).
    pub async fn close(&self) {
        if self.engine == Engine::Sqlite {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.writer)
                .await;
        }
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Runs the migrations on SQLite. sqlx takes no lock there, so two processes
/// opening a new file at once (a server and the CLI, two nodes in a test) may both
/// try a migration: the later one fails on the table the other just created and
/// rolls back. Running again then finds it applied and goes on.
async fn migrate_sqlite(writer: &AnyPool) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        match MIGRATOR.run(writer).await {
            Ok(()) => return Ok(()),
            Err(err) if tries < 5 => {
                tries += 1;
                tracing::debug!(error = %err, "migration raced another process; running again");
                tokio::time::sleep(Duration::from_millis(20 * tries)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// `sqlite://` and the absolute path, percent-encoded so that no character of the
/// path (`?`, `#`, `%`, spaces) is taken for URL syntax.
fn sqlite_url(path: &std::path::Path) -> String {
    let mut url = String::from("sqlite://");
    for &byte in path.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_alphanumeric() || b"/._-~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

/// How many times a write is tried when it conflicts with a concurrent one.
const ATTEMPTS: u32 = 8;

/// Runs `attempt` (one whole write transaction) again while it fails with a
/// conflict with a concurrent writer on another connection or node
/// ([`Error::is_conflict`]: PostgreSQL serialization failure or deadlock, or a
/// unique key inserted by someone else since this attempt checked for it), after
/// a short random pause. The next attempt sees what the other writer committed.
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(err) if err.is_conflict() && tries < ATTEMPTS => {
                let pause = rand::random::<u64>() % (2u64 << tries.min(6));
                tokio::time::sleep(Duration::from_millis(1 + pause)).await;
                tries += 1;
            }
            result => return result,
        }
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Encodes an opaque list cursor. Cursors are base64url of "a|b" keys.
pub(crate) fn encode_cursor(parts: &[&str]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(parts.join("\u{1f}"))
}

pub(crate) fn decode_cursor(cursor: &str, n: usize) -> Result<Vec<String>> {
    use base64::Engine;
    let bad = || Error::invalid("invalid cursor");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<String> = text.split('\u{1f}').map(str::to_owned).collect();
    if parts.len() != n {
        return Err(bad());
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_commits_wait_for_the_disk_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.db");
        let store = Store::open(path.to_str().unwrap()).await.unwrap();
        assert_eq!(store.sqlite_synchronous().await.unwrap(), Some(2), "FULL");
        store.close().await;

        let options = StoreOptions {
            sqlite_synchronous: Synchronous::Normal,
            ..StoreOptions::default()
        };
        let path = dir.path().join("normal.db");
        let store = Store::open_with(path.to_str().unwrap(), &options)
            .await
            .unwrap();
        assert_eq!(store.sqlite_synchronous().await.unwrap(), Some(1), "NORMAL");
        store.close().await;
    }

    /// Migration 0006 finds who created each existing group: the owner who
    /// joined at its creation, unless a `role_changed` notice names that user
    /// (the backend made them owner later). An id's `_` is not a LIKE
    /// wildcard: a notice for `axb` does not hide the creator `a_b`.
    #[tokio::test]
    async fn the_creator_backfill_matches_user_ids_exactly() {
        use sqlx::{Connection, Row};
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        for sql in [
            include_str!("../../migrations/0001_core.sql"),
            include_str!("../../migrations/0002_message_changes.sql"),
            include_str!("../../migrations/0003_social.sql"),
            include_str!("../../migrations/0004_lifecycle.sql"),
            include_str!("../../migrations/0005_covering_user_indexes.sql"),
        ] {
            sqlx::raw_sql(sql).execute(&mut db).await.unwrap();
        }
        let seed = r#"
            INSERT INTO apps (id, name, created_at) VALUES ('app', 'app', 1);
            INSERT INTO conversations (app_id, id, kind, created_at, updated_at, last_activity_at)
            VALUES ('app', 'made-by-a_b', 'group', 10, 10, 10),
                   ('app', 'made-by-backend', 'group', 10, 10, 10);
            INSERT INTO members (app_id, conversation_id, user_id, role, joined_at)
            VALUES ('app', 'made-by-a_b', 'a_b', 'owner', 10),
                   ('app', 'made-by-a_b', 'axb', 'owner', 11),
                   ('app', 'made-by-backend', 'c_d', 'owner', 10);
            INSERT INTO messages (app_id, conversation_id, seq, id, sender_id, kind, data, created_at)
            VALUES ('app', 'made-by-a_b', 1, 'm1', '', 'system',
                    '{"event":"role_changed","user_id":"axb","role":"owner"}', 11),
                   ('app', 'made-by-backend', 1, 'm2', '', 'system',
                    '{"event":"role_changed","user_id":"c_d","role":"owner"}', 10);
        "#;
        sqlx::raw_sql(seed).execute(&mut db).await.unwrap();
        sqlx::raw_sql(include_str!(
            "../../migrations/0006_conversation_creator.sql"
        ))
        .execute(&mut db)
        .await
        .unwrap();
        let rows = sqlx::query("SELECT id, created_by FROM conversations ORDER BY id")
            .fetch_all(&mut db)
            .await
            .unwrap();
        let got: Vec<(String, Option<String>)> = rows
            .iter()
            .map(|r| (r.get("id"), r.get("created_by")))
            .collect();
        assert_eq!(
            got,
            [
                ("made-by-a_b".to_owned(), Some("a_b".to_owned())),
                ("made-by-backend".to_owned(), None),
            ]
        );
    }
}
