//! The offline store in a SQLite file the app names (native and mobile), through
//! rusqlite: bundled natively, the system's SQLite on Apple platforms. Wire
//! types are kept as their protobuf bytes; the schema is versioned with
//! `PRAGMA user_version`, each migration applied once, in a transaction.
//!
//! The file is in WAL mode with `synchronous = NORMAL`: a batch that `apply`
//! returned from survives the process being killed (not a power loss; the
//! server's `client_id` deduplication covers a message sent again after one).

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use prost::Message as _;
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    Change, Pending, Snapshot, Store, StoreError, StoreKey, StoredCommand,
    DEFAULT_MESSAGES_PER_CONVERSATION,
};
use crate::rt::BoxFuture;

/// The schema, one migration per entry: entry `i` moves `user_version` to `i + 1`.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE profile (id INTEGER PRIMARY KEY CHECK (id = 1), body BLOB NOT NULL);
    CREATE TABLE conversations (id TEXT PRIMARY KEY, body BLOB NOT NULL);
    CREATE TABLE messages (
        conversation_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (conversation_id, seq)
    );
    CREATE TABLE outbox (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id TEXT NOT NULL UNIQUE,
        body BLOB NOT NULL
    );
    CREATE TABLE positions (conversation_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"];

const TABLES: &[&str] = &[
    "meta",
    "profile",
    "conversations",
    "messages",
    "outbox",
    "positions",
];

/// A store in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Mutex<Connection>>,
    messages_per_conversation: usize,
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`, keeping the newest
    /// [`DEFAULT_MESSAGES_PER_CONVERSATION`] messages of each conversation.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_keeping(path, DEFAULT_MESSAGES_PER_CONVERSATION)
    }

    /// Opens the store, keeping the newest `messages_per_conversation` messages
    /// of each conversation (at least 1).
    pub fn open_keeping(
        path: impl AsRef<Path>,
        messages_per_conversation: usize,
    ) -> Result<Self, StoreError> {
        let mut db = Connection::open(path).map_err(failed)?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(failed)?;
        db.pragma_update(None, "synchronous", "NORMAL")
            .map_err(failed)?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(failed)?;
        migrate(&mut db)?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
            messages_per_conversation: messages_per_conversation.max(1),
        })
    }

    /// Runs `work` on the connection off the async workers.
    fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, usize) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let db = self.db.clone();
        let keep = self.messages_per_conversation;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut db = db.lock().map_err(|_| failed("a store call panicked"))?;
                work(&mut db, keep)
            })
            .await
            .map_err(failed)?
        })
    }
}

fn migrate(db: &mut Connection) -> Result<(), StoreError> {
    let version: usize = db
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(failed)?;
    if version > MIGRATIONS.len() {
        return Err(failed(format!(
            "the store was written by a newer SDK (schema {version}, this one knows {})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = db.transaction().map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", i + 1)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

fn decode<T: prost::Message + Default>(bytes: Vec<u8>) -> Result<T, StoreError> {
    T::decode(bytes.as_slice()).map_err(failed)
}

fn meta(db: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    db.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
    .map_err(failed)
}

fn wipe(db: &Connection) -> Result<(), StoreError> {
    for table in TABLES {
        db.execute(&format!("DELETE FROM {table}"), [])
            .map_err(failed)?;
    }
    Ok(())
}

fn load(db: &mut Connection, key: &StoreKey) -> Result<Snapshot, StoreError> {
    let tx = db.transaction().map_err(failed)?;
    let held = (meta(&tx, "url")?, meta(&tx, "user_id")?);
    if held != (Some(key.url.clone()), Some(key.user_id.clone())) {
        // Another user's (or server's) store, or a new one: never read.
        wipe(&tx)?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('url', ?1), ('user_id', ?2)",
            params![key.url, key.user_id],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        return Ok(Snapshot::default());
    }
    let blobs = |sql: &str| -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = tx.prepare(sql).map_err(failed)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)
    };
    let user = blobs("SELECT body FROM profile")?
        .into_iter()
        .next()
        .map(decode)
        .transpose()?;
    let conversations = blobs("SELECT body FROM conversations")?
        .into_iter()
        .map(decode)
        .collect::<Result<_, _>>()?;
    let messages = blobs("SELECT body FROM messages ORDER BY conversation_id, seq")?
        .into_iter()
        .map(decode)
        .collect::<Result<_, _>>()?;
    let outbox = {
        let mut stmt = tx
            .prepare("SELECT client_id, body FROM outbox ORDER BY position")
            .map_err(failed)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(failed)?;
        let mut pending = Vec::new();
        for row in rows {
            let (key, body) = row.map_err(failed)?;
            let stored: StoredCommand = decode(body)?;
            let command = stored
                .into_command()
                .ok_or_else(|| failed(format!("outbox entry {key} has no command")))?;
            pending.push(Pending { key, command });
        }
        pending
    };
    let positions = {
        let mut stmt = tx
            .prepare("SELECT conversation_id, seq FROM positions")
            .map_err(failed)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)?
    };
    drop(tx);
    Ok(Snapshot {
        user,
        conversations,
        messages,
        outbox,
        positions,
    })
}

fn apply(db: &mut Connection, changes: Vec<Change>, keep: usize) -> Result<(), StoreError> {
    let tx = db.transaction().map_err(failed)?;
    for change in changes {
        match change {
            Change::User(u) => {
                tx.execute(
                    "INSERT OR REPLACE INTO profile (id, body) VALUES (1, ?1)",
                    [u.encode_to_vec()],
                )
                .map_err(failed)?;
            }
            Change::Conversation(c) => {
                tx.execute(
                    "INSERT OR REPLACE INTO conversations (id, body) VALUES (?1, ?2)",
                    params![c.id, c.encode_to_vec()],
                )
                .map_err(failed)?;
            }
            Change::RemoveConversation(id) => {
                for sql in [
                    "DELETE FROM conversations WHERE id = ?1",
                    "DELETE FROM messages WHERE conversation_id = ?1",
                    "DELETE FROM positions WHERE conversation_id = ?1",
                ] {
                    tx.execute(sql, [&id]).map_err(failed)?;
                }
            }
            Change::Message(m) => {
                tx.execute(
                    "INSERT OR REPLACE INTO messages (conversation_id, seq, body) VALUES (?1, ?2, ?3)",
                    params![m.conversation_id, m.seq as i64, m.encode_to_vec()],
                )
                .map_err(failed)?;
                tx.execute(
                    "DELETE FROM messages WHERE conversation_id = ?1 AND seq <= (
                         SELECT seq FROM messages WHERE conversation_id = ?1
                         ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                    params![m.conversation_id, keep as i64],
                )
                .map_err(failed)?;
            }
            Change::OutboxAdd(Pending { key, command }) => {
                tx.execute(
                    "INSERT OR IGNORE INTO outbox (client_id, body) VALUES (?1, ?2)",
                    params![key, StoredCommand::of(command).encode_to_vec()],
                )
                .map_err(failed)?;
            }
            Change::OutboxRemove(client_id) => {
                tx.execute("DELETE FROM outbox WHERE client_id = ?1", [client_id])
                    .map_err(failed)?;
            }
            Change::Position {
                conversation_id,
                seq,
            } => {
                tx.execute(
                    "INSERT INTO positions (conversation_id, seq) VALUES (?1, ?2)
                     ON CONFLICT (conversation_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                    params![conversation_id, seq as i64],
                )
                .map_err(failed)?;
            }
            Change::Wipe => {
                // The key goes too: the next load starts afresh.
                wipe(&tx)?;
            }
        }
    }
    tx.commit().map_err(failed)
}

impl Store for SqliteStore {
    fn load(&self, key: &StoreKey) -> BoxFuture<'static, Result<Snapshot, StoreError>> {
        let key = key.clone();
        self.run(move |db, _| load(db, &key))
    }

    fn apply(&self, changes: Vec<Change>) -> BoxFuture<'static, Result<(), StoreError>> {
        self.run(move |db, keep| apply(db, changes, keep))
    }
}

#[cfg(test)]
mod tests {
    use mkondo_proto::v1;

    use super::*;

    fn key(user: &str) -> StoreKey {
        StoreKey {
            url: "https://chat.example".into(),
            user_id: user.into(),
        }
    }

    fn message(conv: &str, seq: u64) -> v1::Message {
        v1::Message {
            id: format!("m{seq}"),
            conversation_id: conv.into(),
            seq,
            text: format!("text {seq}"),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_store_keeps_what_it_was_given_for_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = SqliteStore::open_keeping(&path, 3).unwrap();
        assert!(store.load(&key("alice")).await.unwrap().is_empty());
        let mut changes = vec![
            Change::User(v1::User {
                id: "alice".into(),
                ..Default::default()
            }),
            Change::Conversation(v1::Conversation {
                id: "c1".into(),
                unread_count: 2,
                ..Default::default()
            }),
            Change::OutboxAdd(Pending {
                key: "k2".into(),
                command: v1::client_frame::Command::Send(v1::SendRequest {
                    client_id: "k2".into(),
                    conversation_id: "c1".into(),
                    ..Default::default()
                }),
            }),
            Change::OutboxAdd(Pending {
                key: "k1".into(),
                command: v1::client_frame::Command::Read(v1::ReadRequest {
                    conversation_id: "c1".into(),
                    seq: 4,
                }),
            }),
            Change::Position {
                conversation_id: "c1".into(),
                seq: 5,
            },
            Change::Position {
                conversation_id: "c1".into(),
                seq: 4,
            },
        ];
        changes.extend((1..=5).map(|seq| Change::Message(message("c1", seq))));
        store.apply(changes).await.unwrap();
        store
            .apply(vec![Change::OutboxRemove("k2".into())])
            .await
            .unwrap();
        drop(store);

        // Reopened: the same content, the newest three messages, the outbox
        // in the order written, the position never moved back.
        let store = SqliteStore::open_keeping(&path, 3).unwrap();
        let snap = store.load(&key("alice")).await.unwrap();
        assert_eq!(snap.user.unwrap().id, "alice");
        assert_eq!(snap.conversations[0].unread_count, 2);
        let seqs: Vec<u64> = snap.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        let outbox: Vec<&str> = snap.outbox.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(outbox, ["k1"]);
        assert!(matches!(
            &snap.outbox[0].command,
            v1::client_frame::Command::Read(r) if r.seq == 4
        ));
        assert_eq!(snap.positions, [("c1".to_owned(), 5)]);

        // Another user's key reads nothing and leaves nothing behind.
        assert!(store.load(&key("bob")).await.unwrap().is_empty());
        assert!(store.load(&key("alice")).await.unwrap().is_empty());

        // A wipe empties it.
        store
            .apply(vec![Change::Message(message("c1", 9))])
            .await
            .unwrap();
        store.apply(vec![Change::Wipe]).await.unwrap();
        assert!(store.load(&key("alice")).await.unwrap().is_empty());
    }

    #[test]
    fn a_store_from_a_newer_sdk_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        drop(SqliteStore::open(&path).unwrap());
        let db = Connection::open(&path).unwrap();
        db.pragma_update(None, "user_version", MIGRATIONS.len() + 1)
            .unwrap();
        drop(db);
        let err = SqliteStore::open(&path).err().unwrap();
        assert!(err.0.contains("newer SDK"), "{err}");
    }
}
