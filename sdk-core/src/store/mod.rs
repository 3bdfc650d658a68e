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

#[cfg(not(target_arch = "wasm32"))]
pub mod sqlite;

use mkondo_proto::v1;

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

/// Where a client keeps what survives: SQLite natively ([`sqlite::SqliteStore`]),
/// IndexedDB in browsers. `apply` writes a batch atomically, in order.
pub trait Store: SendOutsideWasm + SyncOutsideWasm {
    /// What the store holds for `key`; empty (and the rest wiped) when it held
    /// another key's.
    fn load(&self, key: &StoreKey) -> BoxFuture<'static, Result<Snapshot, StoreError>>;
    fn apply(&self, changes: Vec<Change>) -> BoxFuture<'static, Result<(), StoreError>>;
}
