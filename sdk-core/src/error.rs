//! The one error every call returns. Each variant exists because a caller would
//! act differently on it; [`Error::code`] maps it onto the protocol's error codes
//! so that every language binding shows the same `code` / `message` / `temporary`.

use std::time::Duration;

use mkondo_proto::{v1, ErrorCode};

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error.
    #[error("{code}: {message}")]
    Server {
        code: ErrorCode,
        message: String,
        temporary: bool,
        /// With `rate_limited`: how long to wait before retrying.
        retry_after: Option<Duration>,
        /// A finer, stable reason within the code (e.g. `connection_limit`).
        reason: String,
    },
    /// No reply within the request timeout.
    #[error("no reply within {} ms", .0.as_millis() as u64)]
    Timeout(Duration),
    /// The connection ended before the reply came, and the call is not safe to repeat.
    #[error("the connection was lost before the reply arrived")]
    ConnectionLost,
    /// The client is disconnected (not trying to connect), so the call cannot be made.
    #[error("not connected: call connect() first")]
    NotConnected,
    /// Too many messages wait in the outbox.
    #[error("the outbox is full ({limit} messages wait to be sent)")]
    OutboxFull { limit: usize },
    /// The client was shut down.
    #[error("the client was shut down")]
    Shutdown,
    /// The upload was cancelled (and a message waiting for it was not sent).
    #[error("the upload was cancelled")]
    Cancelled,
    /// The subscription was cancelled by `unsubscribe()` before it completed.
    #[error("unsubscribed before the subscription completed")]
    Unsubscribed,
    /// A bad argument, caught before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The token provider failed (retried with backoff).
    #[error("the token provider failed: {0}")]
    TokenProvider(String),
    /// The configuration cannot work (e.g. no token and no token provider).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A connection attempt failed before the server answered `connect` (the
    /// client retries with backoff): the transport's reason, such as a server
    /// certificate the client does not trust. Delivered as an [`Event::Error`].
    ///
    /// [`Event::Error`]: crate::Event::Error
    #[error("connecting failed: {0}")]
    ConnectFailed(String),
    /// The offline store failed to load or write (delivered as an
    /// [`Event::Error`]; the client goes on without what it could not keep).
    ///
    /// [`Event::Error`]: crate::Event::Error
    #[error("the offline store failed: {0}")]
    Store(String),
}

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The protocol error code this error reads as.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Server { code, .. } => *code,
            Self::Timeout(_)
            | Self::ConnectionLost
            | Self::NotConnected
            | Self::Shutdown
            | Self::TokenProvider(_)
            | Self::ConnectFailed(_) => ErrorCode::Unavailable,
            Self::OutboxFull { .. } => ErrorCode::RateLimited,
            Self::Unsubscribed | Self::Cancelled => ErrorCode::NotFound,
            Self::InvalidArgument(_) | Self::Config(_) => ErrorCode::InvalidArgument,
            Self::Store(_) => ErrorCode::Internal,
        }
    }

    /// Whether the same call may succeed if made again later.
    pub fn temporary(&self) -> bool {
        match self {
            Self::Server { temporary, .. } => *temporary,
            Self::Timeout(_)
            | Self::ConnectionLost
            | Self::NotConnected
            | Self::OutboxFull { .. }
            | Self::TokenProvider(_)
            | Self::ConnectFailed(_) => true,
            Self::Shutdown
            | Self::Cancelled
            | Self::Unsubscribed
            | Self::InvalidArgument(_)
            | Self::Config(_)
            | Self::Store(_) => false,
        }
    }

    /// The finer reason: the server's, or the variant's name for client-side errors.
    pub fn reason(&self) -> &str {
        match self {
            Self::Server { reason, .. } => reason,
            Self::Timeout(_) => "timeout",
            Self::ConnectionLost => "connection_lost",
            Self::NotConnected => "not_connected",
            Self::OutboxFull { .. } => "outbox_full",
            Self::Shutdown => "shutdown",
            Self::Unsubscribed => "unsubscribed",
            Self::Cancelled => "cancelled",
            Self::InvalidArgument(_) => "",
            Self::Config(_) => "config",
            Self::TokenProvider(_) => "token_provider",
            Self::ConnectFailed(_) => "connect_failed",
            Self::Store(_) => "store",
        }
    }

    /// The error of a server `error` frame.
    pub fn from_wire(e: &v1::Error) -> Self {
        Self::Server {
            code: ErrorCode::parse(&e.code),
            message: e.message.clone(),
            temporary: e.temporary,
            retry_after: (e.retry_after_ms > 0)
                .then(|| Duration::from_millis(u64::from(e.retry_after_ms))),
            reason: e.reason.clone(),
        }
    }

    /// A server error whose code is `code`.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.code() == code
    }
}

/// A value in an error message: its `Debug` form natively; in browsers its
/// type only — the `Debug` code of every wire type would weigh on the package.
pub(crate) fn shown<T: std::fmt::Debug>(value: &T) -> String {
    #[cfg(not(target_arch = "wasm32"))]
    {
        format!("{value:?}")
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = value;
        std::any::type_name::<T>().to_owned()
    }
}
