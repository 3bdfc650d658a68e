//! The offline store: what a client keeps across restarts, so that it opens
//! with its conversations and recent messages before any network, and a
//! message written offline survives the process.
//!
//! The session stays free of I/O: every change to what must survive leaves it
//! as a batch of [`Change`]s ([`Output::Persist`](crate::session::Output)),
//! which the driver applies to the [`Store`] in order, before the events of the
//! same step reach the app. At start the driver loads the store's
//! [`Snapshot`] and hands it to the session before `connect`.
//!
//! A store belongs to one (server URL, user): [`StoreKey`]. Opened with another
//! key it reads as empty and its old content is wiped, so one user never sees
//! another's cache.

#[cfg(target_arch = "wasm32")]
pub mod indexeddb;
#[cfg(not(target_arch = "wasm32"))]
pub mod sqlite;

use mkondo_proto::v1::{self, client_frame::Command};

use crate::rt::{BoxFuture, SendOutsideWasm, SyncOutsideWasm};

/// How many recent messages of each conversation a store keeps by default.
pub const DEFAULT_MESSAGES_PER_CONVERSATION: usize = 50;

/// Whose store: the server it talks to and the user it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKey {
    pub url: String,
    pub user_id: String,
}

/// Everything a store holds, as the session restores it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub user: Option<v1::User>,
    /// With their unread counts and last messages.
    pub conversations: Vec<v1::Conversation>,
    /// The recent messages of each conversation, ascending by seq within one.
    pub messages: Vec<v1::Message>,
    /// Changes made but not acknowledged (sends, edits, deletes, reactions,
    /// read positions), in the order they were made.
    pub outbox: Vec<Pending>,
    /// The last seq delivered per conversation: where recovery resumes.
    pub positions: Vec<(String, u64)>,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self == &Snapshot::default()
    }
}

/// A change the user made that waits in the outbox: its key (a send's
/// `client_id`) and its command.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub key: String,
    pub command: v1::client_frame::Command,
}

/// An outbox command as a store keeps it: the bytes of a `ClientFrame`
/// holding it (the same field numbers), read back without the decoder of every
/// other command — in the browser package that decoder would weigh more than
/// the store itself.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StoredCommand {
    #[prost(oneof = "Stored", tags = "6, 7, 8, 9, 10, 12")]
    command: Option<Stored>,
}

/// The commands that wait in the outbox, under their `ClientFrame` tags.
#[derive(Clone, PartialEq, prost::Oneof)]
enum Stored {
    #[prost(message, tag = "6")]
    Send(v1::SendRequest),
    #[prost(message, tag = "7")]
    Edit(v1::EditRequest),
    #[prost(message, tag = "8")]
    Delete(v1::DeleteRequest),
    #[prost(message, tag = "9")]
    React(v1::ReactRequest),
    #[prost(message, tag = "10")]
    Unreact(v1::ReactRequest),
    #[prost(message, tag = "12")]
    Read(v1::ReadRequest),
}

impl StoredCommand {
    /// Only outbox commands are stored (anything else is stored empty).
    pub(crate) fn of(command: Command) -> Self {
        let command = match command {
            Command::Send(r) => Stored::Send(r),
            Command::Edit(r) => Stored::Edit(r),
            Command::Delete(r) => Stored::Delete(r),
            Command::React(r) => Stored::React(r),
            Command::Unreact(r) => Stored::Unreact(r),
            Command::Read(r) => Stored::Read(r),
            _ => return Self { command: None },
        };
        Self {
            command: Some(command),
        }
    }

    pub(crate) fn into_command(self) -> Option<Command> {
        Some(match self.command? {
            Stored::Send(r) => Command::Send(r),
            Stored::Edit(r) => Command::Edit(r),
            Stored::Delete(r) => Command::Delete(r),
            Stored::React(r) => Command::React(r),
            Stored::Unreact(r) => Command::Unreact(r),
            Stored::Read(r) => Command::Read(r),
        })
    }
}

/// One change to what survives.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    User(v1::User),
    /// Inserted or replaced whole.
    Conversation(v1::Conversation),
    /// Gone with its messages and position.
    RemoveConversation(String),
    /// Inserted or replaced by (conversation, seq); the store keeps the newest
    /// few of each conversation.
    Message(v1::Message),
    OutboxAdd(Pending),
    /// By its key.
    OutboxRemove(String),
    Position {
        conversation_id: String,
        seq: u64,
    },
    /// Everything (sign-out, a token for another user).
    Wipe,
}

/// Why a store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the offline store failed: {0}")]
pub struct StoreError(pub String);

/// Where a client keeps what survives: SQLite natively (`sqlite::SqliteStore`),
/// IndexedDB in browsers (`indexeddb::IndexedDbStore`). `apply` writes a batch
/// atomically, in order.
pub trait Store: SendOutsideWasm + SyncOutsideWasm {
    /// What the store holds for `key`; empty (and the rest wiped) when it held
    /// another key's.
    fn load(&self, key: &StoreKey) -> BoxFuture<'static, Result<Snapshot, StoreError>>;
    fn apply(&self, changes: Vec<Change>) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Resolves with outbox entries that became this client's to send: where
    /// several clients share a store (browser tabs), those of a client that is
    /// gone. The driver calls it again after each answer. A store with one
    /// client (a SQLite file) has none: the default never resolves.
    fn adopt(&self) -> BoxFuture<'static, Result<Vec<Pending>, StoreError>> {
        Box::pin(std::future::pending())
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn a_stored_command_is_the_frame_that_holds_it() {
        let commands = [
            Command::Send(v1::SendRequest {
                conversation_id: "c".into(),
                client_id: "c-1".into(),
                text: "hello".into(),
                ..Default::default()
            }),
            Command::Edit(v1::EditRequest {
                conversation_id: "c".into(),
                seq: 4,
                text: "hello!".into(),
                data: None,
            }),
            Command::Delete(v1::DeleteRequest {
                conversation_id: "c".into(),
                seq: 4,
            }),
            Command::React(v1::ReactRequest {
                conversation_id: "c".into(),
                seq: 4,
                emoji: "👍".into(),
            }),
            Command::Unreact(v1::ReactRequest {
                conversation_id: "c".into(),
                seq: 4,
                emoji: "👍".into(),
            }),
            Command::Read(v1::ReadRequest {
                conversation_id: "c".into(),
                seq: 4,
            }),
        ];
        for command in commands {
            let frame = v1::ClientFrame {
                id: 0,
                command: Some(command.clone()),
            };
            let bytes = StoredCommand::of(command.clone()).encode_to_vec();
            // What stores written with whole frames hold reads back the same.
            assert_eq!(bytes, frame.encode_to_vec());
            let read = StoredCommand::decode(bytes.as_slice()).unwrap();
            assert_eq!(read.into_command(), Some(command));
        }
        // Nothing but outbox commands is kept.
        let ping = StoredCommand::of(Command::Ping(v1::PingRequest {}));
        assert_eq!(ping.into_command(), None);
    }
}
