//! Storage: everything durable, behind one `Store` over sqlx.
//!
//! SQLite in WAL mode by default. Writes go through a single-connection pool, so
//! SQLite never answers "busy" and a message's seq allocation, insert and the
//! conversation's `last_seq` update happen in one short transaction: seqs per
//! conversation are gap-free and unique however many senders race. Reads use a
//! separate pool and never wait for writers (WAL). The SQL is portable so the same
//! migrations can serve PostgreSQL.

mod apps;
mod conversations;
pub mod messages;
mod models;
pub mod reactions;
pub mod social;
pub mod system_messages;
pub mod users;

use std::{str::FromStr, time::Duration};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use apps::{
    Announce, ApiKeyInfo, AppCreds, AppOverview, AppRow, CreatedApiKey, KeyInfo, KeyRow, Revocation,
};
pub use conversations::{valid_conversation_id, NewGroup, Page};
pub use messages::{NewMessage, Sent};
pub use models::*;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating if needed) the database at `url` — a path or `sqlite://path` —
    /// and runs the embedded migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if url.starts_with("postgres") {
            anyhow::bail!("PostgreSQL storage is not available in this build; use a SQLite path");
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a committed transaction survives a process crash (SIGKILL).
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Deleted and erased content is overwritten in the file, not left in
            // free space: a tombstone's text is gone from the disk too.
            .pragma("secure_delete", "on")
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Flushes and closes both pools (graceful shutdown).
    pub async fn close(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await;
        self.reader.close().await;
        self.writer.close().await;
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
