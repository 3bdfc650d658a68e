//! Error codes, reasons and disconnect codes: policy written down once, shared by the
//! server and every SDK so that both sides agree on what "retry" means and on why a
//! refused `connect` ends the connection ([`DisconnectCode::for_refusal`]).

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
    /// The app's before-send hook refused the message; the error's message is
    /// the hook's reason.
    Rejected,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 13] = [
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
        Self::Rejected,
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
            Self::Rejected => "rejected",
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
            Self::PermissionDenied | Self::Blocked | Self::Rejected => 403,
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

/// A finer, stable reason within an [`ErrorCode`] (the `reason` of an error on every
/// interface). The server only ever sends these; a client reads an unknown one (from
/// a newer server) as [`Reason::Other`] and an absent one as [`Reason::None`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Reason {
    /// No finer reason: the code says it all (sent as an empty string).
    #[default]
    None,
    /// The token was issued before a revocation of the user's or the app's tokens.
    Revoked,
    /// The user is deactivated.
    UserDeactivated,
    /// The token was issued before the user was deleted.
    UserDeleted,
    /// The token's user does not exist and users are not created on connect.
    UnknownUser,
    /// A `refresh` token names another user or app than the connection's.
    WrongUser,
    /// The user already has the maximum number of connections.
    ConnectionLimit,
    /// The token is not a compact JWS (or is too long).
    Malformed,
    /// The token's header says `alg: none`.
    AlgNone,
    /// The token's header has no `kid`.
    MissingKid,
    /// No signing key of that `kid` exists (or it was removed).
    UnknownKid,
    /// The header's `alg` is unknown or not the key's algorithm.
    AlgMismatch,
    /// The signature does not verify.
    BadSignature,
    /// The token's `exp` has passed.
    Expired,
    /// The token's `nbf` or `iat` is in the future.
    NotYetValid,
    /// The token has no `sub` claim.
    MissingSub,
    /// The token's `sub` is not a valid user id.
    InvalidSub,
    /// The token has no `app` claim.
    MissingApp,
    /// The token's app does not exist (or is not the key's).
    WrongApp,
    /// The token has no `exp` claim.
    MissingExp,
    /// `exp - iat` is longer than the server allows.
    LifetimeTooLong,
    /// The signing key is stored but cannot be used.
    KeyUnusable,
    /// A backend request without an API key.
    MissingCredentials,
    /// An unknown or revoked API key.
    InvalidApiKey,
    /// The operator API is not enabled on this server.
    OperatorApiOff,
    /// A wrong operator secret.
    InvalidOperatorSecret,
    /// The last owner of a group cannot step down or leave.
    LastOwner,
    /// The message is a tombstone: no edits or reactions.
    MessageDeleted,
    /// A write lost a race with a concurrent one; retried and still lost.
    Conflict,
    /// An HTTP method the path does not take (405, with `Allow`).
    MethodNotAllowed,
    /// A browser's `Origin` is not in the app's allowed origins (REST, WebSocket
    /// `connect`), or is foreign to a route browsers may not call.
    OriginNotAllowed,
    /// The app's before-send hook gave no usable answer (timeout, refused
    /// address, non-2xx, unreadable body) and the app fails closed.
    HookFailed,
    /// A reason this build does not know (from a newer server). Never sent.
    Other,
}

impl Reason {
    /// Every reason the server sends, [`Reason::None`] first.
    pub const ALL: [Reason; 32] = [
        Self::None,
        Self::Revoked,
        Self::UserDeactivated,
        Self::UserDeleted,
        Self::UnknownUser,
        Self::WrongUser,
        Self::ConnectionLimit,
        Self::Malformed,
        Self::AlgNone,
        Self::MissingKid,
        Self::UnknownKid,
        Self::AlgMismatch,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::MissingSub,
        Self::InvalidSub,
        Self::MissingApp,
        Self::WrongApp,
        Self::MissingExp,
        Self::LifetimeTooLong,
        Self::KeyUnusable,
        Self::MissingCredentials,
        Self::InvalidApiKey,
        Self::OperatorApiOff,
        Self::InvalidOperatorSecret,
        Self::LastOwner,
        Self::MessageDeleted,
        Self::Conflict,
        Self::MethodNotAllowed,
        Self::OriginNotAllowed,
        Self::HookFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Revoked => "revoked",
            Self::UserDeactivated => "user_deactivated",
            Self::UserDeleted => "user_deleted",
            Self::UnknownUser => "unknown_user",
            Self::WrongUser => "wrong_user",
            Self::ConnectionLimit => "connection_limit",
            Self::Malformed => "malformed",
            Self::AlgNone => "alg_none",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::AlgMismatch => "alg_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingSub => "missing_sub",
            Self::InvalidSub => "invalid_sub",
            Self::MissingApp => "missing_app",
            Self::WrongApp => "wrong_app",
            Self::MissingExp => "missing_exp",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::KeyUnusable => "key_unusable",
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidApiKey => "invalid_api_key",
            Self::OperatorApiOff => "operator_api_off",
            Self::InvalidOperatorSecret => "invalid_operator_secret",
            Self::LastOwner => "last_owner",
            Self::MessageDeleted => "message_deleted",
            Self::Conflict => "conflict",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::HookFailed => "hook_failed",
            Self::Other => "other",
        }
    }

    /// Parses a wire reason: empty reads as `None`, unknown reasons as `Other`.
    pub fn parse(reason: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == reason)
            .unwrap_or(Self::Other)
    }

    pub fn is_none(self) -> bool {
        self == Self::None
    }
}

impl fmt::Display for Reason {
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
    /// The browser page's origin is not among the app's allowed origins.
    OriginNotAllowed,
}

impl DisconnectCode {
    pub const ALL: [DisconnectCode; 13] = [
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
        Self::OriginNotAllowed,
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
            Self::OriginNotAllowed => 3506,
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
            Self::OriginNotAllowed => "origin_not_allowed",
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

    /// Why a refused `connect` (or a `refresh` refused after its token was checked)
    /// ends the connection: the server closes with this code, and a client that
    /// reads the refusal from the reply takes the same decision.
    ///
    /// A reason names the cause first; then a code the client cannot fix by waiting
    /// stops (a token problem → 3500), and one that may pass (`unavailable`,
    /// `internal`, `rate_limited`) reconnects with 3005.
    pub fn for_refusal(code: ErrorCode, reason: Reason) -> Self {
        match (code, reason) {
            (ErrorCode::TokenExpired, _) => Self::TokenExpired,
            (_, Reason::UserDeactivated) => Self::UserDeactivated,
            (_, Reason::UserDeleted) => Self::UserDeleted,
            (_, Reason::Revoked) => Self::TokensRevoked,
            (_, Reason::ConnectionLimit) => Self::ConnectionLimit,
            (_, Reason::OriginNotAllowed) => Self::OriginNotAllowed,
            _ if code.temporary() => Self::ServerError,
            _ => Self::InvalidToken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_and_unknown_reads_as_other() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), r, "{r:?}");
        }
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len(), "reason strings are unique");
        assert!(Reason::ALL.iter().all(|r| r
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')));
        assert_eq!(Reason::parse(""), Reason::None);
        assert_eq!(Reason::parse("from_a_newer_server"), Reason::Other);
        assert_eq!(Reason::parse("other"), Reason::Other);
        assert!(!Reason::ALL.contains(&Reason::Other), "never sent");
    }

    #[test]
    fn every_code_round_trips() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), c);
        }
        assert_eq!(ErrorCode::parse("from_a_newer_server"), ErrorCode::Internal);
        for d in DisconnectCode::ALL {
            assert_eq!(DisconnectCode::from_code(d.code()), Some(d));
            assert_eq!(d.reconnect(), d.code() < 3500, "{d:?}");
        }
    }

    /// The whole refusal table: every code with every reason.
    #[test]
    fn refusal_table() {
        use DisconnectCode as D;
        let reasons = Reason::ALL.into_iter().chain([Reason::Other]);
        for code in ErrorCode::ALL {
            for reason in reasons.clone() {
                let expected = match (code, reason) {
                    (ErrorCode::TokenExpired, _) => D::TokenExpired,
                    (_, Reason::UserDeactivated) => D::UserDeactivated,
                    (_, Reason::UserDeleted) => D::UserDeleted,
                    (_, Reason::Revoked) => D::TokensRevoked,
                    (_, Reason::ConnectionLimit) => D::ConnectionLimit,
                    (_, Reason::OriginNotAllowed) => D::OriginNotAllowed,
                    (ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::RateLimited, _) => {
                        D::ServerError
                    }
                    _ => D::InvalidToken,
                };
                assert_eq!(
                    DisconnectCode::for_refusal(code, reason),
                    expected,
                    "{code} / {reason:?}"
                );
            }
        }
        // What the server actually sends, spelled out.
        let cases = [
            (
                ErrorCode::TokenExpired,
                Reason::Expired,
                D::TokenExpired,
                true,
            ),
            (
                ErrorCode::PermissionDenied,
                Reason::UserDeactivated,
                D::UserDeactivated,
                false,
            ),
            (
                ErrorCode::InvalidToken,
                Reason::UserDeleted,
                D::UserDeleted,
                false,
            ),
            (
                ErrorCode::InvalidToken,
                Reason::Revoked,
                D::TokensRevoked,
                false,
            ),
            (
                ErrorCode::InvalidToken,
                Reason::UnknownKid,
                D::InvalidToken,
                false,
            ),
            (
                ErrorCode::InvalidToken,
                Reason::BadSignature,
                D::InvalidToken,
                false,
            ),
            (
                ErrorCode::InvalidToken,
                Reason::WrongUser,
                D::InvalidToken,
                false,
            ),
            (
                ErrorCode::Unauthenticated,
                Reason::UnknownUser,
                D::InvalidToken,
                false,
            ),
            (
                ErrorCode::PermissionDenied,
                Reason::ConnectionLimit,
                D::ConnectionLimit,
                false,
            ),
            (
                ErrorCode::PermissionDenied,
                Reason::OriginNotAllowed,
                D::OriginNotAllowed,
                false,
            ),
            (ErrorCode::Unavailable, Reason::None, D::ServerError, true),
            (
                ErrorCode::Unavailable,
                Reason::Conflict,
                D::ServerError,
                true,
            ),
            (ErrorCode::Internal, Reason::None, D::ServerError, true),
        ];
        for (code, reason, disconnect, reconnect) in cases {
            let d = DisconnectCode::for_refusal(code, reason);
            assert_eq!(
                (d, d.reconnect()),
                (disconnect, reconnect),
                "{code} / {reason:?}"
            );
        }
    }
}
