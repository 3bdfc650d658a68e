//! What the client tells the application: connection and subscription states,
//! and every push of the protocol, as one [`Event`] type delivered to one
//! listener, one at a time, in wire order.

use std::fmt;

use mkondo_proto::v1;

use crate::error::Error;

/// The connection as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Not connected and not trying (never connected, `disconnect()`, or a terminal code).
    Disconnected,
    /// Opening a transport, authenticating, or waiting to retry.
    Connecting,
    /// Authenticated: calls go out at once.
    Connected,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subscription (typing and members' presence of one conversation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionState {
    Unsubscribed,
    /// Wanted, and waiting for the server (or for a connection).
    Subscribing,
    Subscribed,
}

/// Foreground or background: drives the user's `online` / `away` presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AppState {
    #[default]
    Foreground,
    Background,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Foreground => "foreground",
            Self::Background => "background",
        }
    }
}

/// Codes of state changes the client itself decides (the server's disconnect
/// codes, 3000–3999, and WebSocket close codes pass through as they are).
pub mod codes {
    /// `connect()` was called.
    pub const CONNECT_CALLED: u16 = 0;
    /// `disconnect()` was called.
    pub const DISCONNECT_CALLED: u16 = 1;
    /// The connection was established.
    pub const CONNECTED: u16 = 2;
    /// The transport failed or closed without a code.
    pub const TRANSPORT_CLOSED: u16 = 3;
    /// Nothing was received for the ping interval plus the pong timeout.
    pub const NO_PING: u16 = 4;
    /// The transport did not open, or `connect` was not answered, within the timeout.
    pub const CONNECT_TIMEOUT: u16 = 5;
    /// The token provider answered "unauthorized": the client stops.
    pub const UNAUTHORIZED: u16 = 6;
    /// The token provider failed (or took too long): retried with backoff.
    pub const TOKEN_PROVIDER_FAILED: u16 = 7;
    /// The network came back, or the app came to the foreground: retrying at once.
    pub const NETWORK_AVAILABLE: u16 = 8;
    /// No token and no token provider.
    pub const NO_TOKEN: u16 = 9;
}

/// One thing that happened, for the application's listener.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The connection state changed.
    StateChanged {
        old: ConnectionState,
        new: ConnectionState,
        /// A server disconnect code, a WebSocket close code, or one of [`codes`].
        code: u16,
        reason: String,
    },
    /// A new message, delivered once per seq and in seq order per conversation.
    Message(v1::Message),
    /// A message was edited, deleted, or its reactions changed.
    MessageUpdated {
        message: v1::Message,
        change: String,
    },
    /// Someone started (`typing: true`) or stopped typing; stops also come when a
    /// typing indicator expires (6 s without renewal).
    Typing {
        conversation_id: String,
        user_id: String,
        typing: bool,
    },
    /// A member read up to a seq (for the user's own devices: new unread count).
    Read(v1::ReadPush),
    /// A user's presence changed.
    Presence(v1::Presence),
    MemberJoined(v1::MemberJoined),
    MemberLeft(v1::MemberLeft),
    ConversationUpdated(v1::Conversation),
    SubscriptionStateChanged {
        conversation_id: String,
        old: SubscriptionState,
        new: SubscriptionState,
        /// Why a subscription failed, when it did.
        error: Option<Error>,
    },
    Notification(v1::Notification),
    Signal(v1::SignalPush),
    /// Messages `from_seq..=to_seq` of a conversation could not be recovered (not
    /// visible any more, or history failed): an explicit hole, never a silent one.
    Gap {
        conversation_id: String,
        from_seq: u64,
        to_seq: u64,
    },
    /// Something failed that no call was waiting for (e.g. a token refresh).
    Error(Error),
    /// The outcome of a message, edit, delete or reaction made in an earlier
    /// run (kept by the offline store) and sent in this one: the call that made
    /// it is gone, so its result comes here, once, by its key (a message's
    /// `client_id`). A read's outcome is the `Read` event, as always.
    Sent {
        client_id: String,
        result: Result<v1::Message, Error>,
    },
}
