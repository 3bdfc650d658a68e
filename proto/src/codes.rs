//! Error codes and disconnect codes: policy written down once, shared by the server
//! and every SDK so that both sides agree on what "retry" means.

use std::fmt;

/// The error codes used everywhere: REST bodies, gRPC details, real-time replies, SDK errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    Unauthenticated,
    TokenExpired,
    InvalidToken,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    InvalidArgument,
    TooLarge,
    RateLimited,
    Blocked,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        Self::Unauthenticated,
        Self::TokenExpired,
        Self::InvalidToken,
        Self::PermissionDenied,
        Self::NotFound,
        Self::AlreadyExists,
        Self::InvalidArgument,
        Self::TooLarge,
        Self::RateLimited,
        Self::Blocked,
        Self::Unavailable,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::TokenExpired => "token_expired",
            Self::InvalidToken => "invalid_token",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::InvalidArgument => "invalid_argument",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::Blocked => "blocked",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// Parses a wire code; unknown codes (from a newer server) read as `Internal`.
    pub fn parse(code: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == code)
            .unwrap_or(Self::Internal)
    }

    /// The HTTP status a REST response carries for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Unauthenticated | Self::TokenExpired | Self::InvalidToken => 401,
            Self::PermissionDenied | Self::Blocked => 403,
            Self::NotFound => 404,
            Self::AlreadyExists => 409,
            Self::TooLarge => 413,
            Self::InvalidArgument => 422,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// Whether the same request may succeed later without changing it.
    pub fn temporary(self) -> bool {
        matches!(self, Self::RateLimited | Self::Unavailable | Self::Internal)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the server closed a real-time connection. Codes 3000–3499 mean "reconnect"
/// (with backoff); 3500–3999 mean "stop": reconnecting would fail the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectCode {
    /// The server is shutting down or restarting.
    Shutdown,
    /// The token expired and was not refreshed within the grace period.
    TokenExpired,
    /// The client read too slowly and its outbound queue filled up.
    SlowConsumer,
    /// The client did not answer the server's ping in time.
    NoPong,
    /// The server lost state it needs for this session; reconnect and resume.
    InsufficientState,
    /// An unexpected server error.
    ServerError,
    /// The token is invalid (bad signature, wrong app, unknown key, ...).
    InvalidToken,
    /// The user was deactivated.
    UserDeactivated,
    /// The user's tokens were revoked or the signing key was removed.
    TokensRevoked,
    /// The client broke the protocol (e.g. a command before `connect`, a frame over the hard limit).
    BadProtocol,
    /// The user already has the maximum number of connections.
    ConnectionLimit,
    /// The user was deleted.
    UserDeleted,
}

impl DisconnectCode {
    pub const ALL: [DisconnectCode; 12] = [
        Self::Shutdown,
        Self::TokenExpired,
        Self::SlowConsumer,
        Self::NoPong,
        Self::InsufficientState,
        Self::ServerError,
        Self::InvalidToken,
        Self::UserDeactivated,
        Self::TokensRevoked,
        Self::BadProtocol,
        Self::ConnectionLimit,
        Self::UserDeleted,
    ];

    pub fn code(self) -> u16 {
        match self {
            Self::Shutdown => 3000,
            Self::TokenExpired => 3001,
            Self::SlowConsumer => 3002,
            Self::NoPong => 3003,
            Self::InsufficientState => 3004,
            Self::ServerError => 3005,
            Self::InvalidToken => 3500,
            Self::UserDeactivated => 3501,
            Self::TokensRevoked => 3502,
            Self::BadProtocol => 3503,
            Self::ConnectionLimit => 3504,
            Self::UserDeleted => 3505,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::TokenExpired => "token_expired",
            Self::SlowConsumer => "slow_consumer",
            Self::NoPong => "no_pong",
            Self::InsufficientState => "insufficient_state",
            Self::ServerError => "server_error",
            Self::InvalidToken => "invalid_token",
            Self::UserDeactivated => "user_deactivated",
            Self::TokensRevoked => "tokens_revoked",
            Self::BadProtocol => "bad_protocol",
            Self::ConnectionLimit => "connection_limit",
            Self::UserDeleted => "user_deleted",
        }
    }

    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The policy for any code, known or not: 3000–3499 reconnect; everything in
    /// 3500–3999 stops. Other codes (transport closes such as 1006) reconnect.
    pub fn should_reconnect(code: u16) -> bool {
        !(3500..4000).contains(&code)
    }

    pub fn reconnect(self) -> bool {
        Self::should_reconnect(self.code())
    }
}
