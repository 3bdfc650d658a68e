//! The public errors. The core's [`mkondo_sdk::Error`] is the detailed one; this
//! small enum keeps a variant only where an app would act differently: show a
//! server refusal, retry later, slow down, fix its input, or stop.
//! (The message is `detail`, not `message`: Kotlin exceptions already have one.)

use mkondo_sdk::Error as Core;

/// What went wrong with a call. Every variant carries `code` (the protocol's
/// error code, as JavaScript's `MkondoError.code`), `detail` (the message),
/// `reason` (a finer stable reason, or empty) and `temporary` (the same call
/// may succeed later), so an app can handle any error by its fields alone.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
pub enum MkondoError {
    /// The server refused the call (`not_found`, `permission_denied`,
    /// `rate_limited`, `rejected` — the app's before-send hook refused a
    /// message, `detail` is its reason — …).
    #[error("{code}: {detail}")]
    Server {
        code: String,
        detail: String,
        reason: String,
        temporary: bool,
        retry_after_ms: Option<u64>,
    },
    /// No connection or no reply in time (`code` `unavailable`): the same
    /// call may work later.
    #[error("unavailable ({reason}): {detail}")]
    Unavailable {
        code: String,
        detail: String,
        reason: String,
        temporary: bool,
    },
    /// Too many messages wait in the outbox (`code` `rate_limited`): slow down.
    #[error("the outbox is full ({limit} messages wait)")]
    OutboxFull {
        code: String,
        detail: String,
        reason: String,
        temporary: bool,
        limit: u64,
    },
    /// Bad input or configuration, caught before anything was sent (`code`
    /// `invalid_argument`).
    #[error("invalid argument: {detail}")]
    InvalidArgument {
        code: String,
        detail: String,
        reason: String,
        temporary: bool,
    },
    /// The client was shut down, or the subscription cancelled.
    #[error("cancelled: {detail}")]
    Cancelled {
        code: String,
        detail: String,
        reason: String,
        temporary: bool,
    },
}

impl MkondoError {
    /// A bad argument caught in the bindings, as the core reports its own.
    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Core::InvalidArgument(detail.into()).into()
    }
}

impl From<Core> for MkondoError {
    fn from(e: Core) -> Self {
        let code = e.code().as_str().to_owned();
        let reason = e.reason().to_owned();
        let temporary = e.temporary();
        match e {
            Core::Server {
                message,
                retry_after,
                ..
            } => Self::Server {
                code,
                detail: message,
                reason,
                temporary,
                retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
            },
            Core::OutboxFull { limit } => Self::OutboxFull {
                detail: e.to_string(),
                code,
                reason,
                temporary,
                limit: limit as u64,
            },
            Core::InvalidArgument(_) | Core::Config(_) => Self::InvalidArgument {
                detail: e.to_string(),
                code,
                reason,
                temporary,
            },
            Core::Shutdown | Core::Unsubscribed | Core::Cancelled => Self::Cancelled {
                detail: e.to_string(),
                code,
                reason,
                temporary,
            },
            other => Self::Unavailable {
                detail: other.to_string(),
                code,
                reason,
                temporary,
            },
        }
    }
}

/// Why the app's token provider gave no token.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
pub enum TokenError {
    /// The app's backend refuses this user: the client stops for good.
    #[error("unauthorized: {detail}")]
    Unauthorized { detail: String },
    /// Anything else (network, a 500 …): retried with backoff.
    #[error("token provider failed: {detail}")]
    Failed { detail: String },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for TokenError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed { detail: e.reason }
    }
}

impl From<TokenError> for mkondo_sdk::TokenError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Unauthorized { detail } => Self::Unauthorized(detail),
            TokenError::Failed { detail } => Self::Failed(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mkondo_proto::ErrorCode;

    use super::*;

    #[test]
    fn core_errors_map_onto_what_the_app_does_next() {
        let server = Core::Server {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            temporary: true,
            retry_after: Some(Duration::from_millis(1500)),
            reason: "messages".into(),
        };
        assert_eq!(
            MkondoError::from(server),
            MkondoError::Server {
                code: "rate_limited".into(),
                detail: "slow down".into(),
                reason: "messages".into(),
                temporary: true,
                retry_after_ms: Some(1500),
            }
        );
        let timeout = MkondoError::from(Core::Timeout(Duration::from_secs(1)));
        assert!(matches!(
            timeout,
            MkondoError::Unavailable { code, reason, temporary: true, .. }
                if reason == "timeout" && code == "unavailable"
        ));
        assert!(matches!(
            MkondoError::from(Core::ConnectionLost),
            MkondoError::Unavailable { .. }
        ));
        assert!(matches!(
            MkondoError::from(Core::OutboxFull { limit: 3 }),
            MkondoError::OutboxFull { limit: 3, code, temporary: true, .. } if code == "rate_limited"
        ));
        assert!(matches!(
            MkondoError::invalid("bad"),
            MkondoError::InvalidArgument { code, temporary: false, .. } if code == "invalid_argument"
        ));
        assert!(matches!(
            MkondoError::from(Core::Config("no token".into())),
            MkondoError::InvalidArgument { .. }
        ));
        assert!(matches!(
            MkondoError::from(Core::Shutdown),
            MkondoError::Cancelled { .. }
        ));
        assert!(matches!(
            MkondoError::from(Core::Unsubscribed),
            MkondoError::Cancelled { .. }
        ));
        // A before-send hook's refusal: final, with the hook's reason as detail.
        let rejected = Core::Server {
            code: ErrorCode::parse("rejected"),
            message: "no spam".into(),
            temporary: ErrorCode::Rejected.temporary(),
            retry_after: None,
            reason: String::new(),
        };
        assert_eq!(
            MkondoError::from(rejected),
            MkondoError::Server {
                code: "rejected".into(),
                detail: "no spam".into(),
                reason: String::new(),
                temporary: false,
                retry_after_ms: None,
            }
        );
    }

    #[test]
    fn token_errors_keep_stop_versus_retry() {
        let stop: mkondo_sdk::TokenError = TokenError::Unauthorized {
            detail: "banned".into(),
        }
        .into();
        assert_eq!(stop, mkondo_sdk::TokenError::Unauthorized("banned".into()));
        let retry: mkondo_sdk::TokenError = TokenError::Failed {
            detail: "500".into(),
        }
        .into();
        assert_eq!(retry, mkondo_sdk::TokenError::Failed("500".into()));
    }
}
