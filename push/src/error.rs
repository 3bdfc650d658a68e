//! Why a push got no verdict from its provider. A variant exists only where
//! the caller acts differently: fix the push ([`Error::Invalid`]), fix the
//! app's credentials ([`Error::Credentials`], [`Error::Unauthorized`]), or
//! try again later ([`Error::Transport`], [`Error::Answer`]).

/// A push client's error. What the provider said about a push it did answer
/// is an [`Outcome`](crate::Outcome), not an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's input can never make a valid request as it is (a device
    /// token of the wrong shape, a collapse id too long, a payload too large).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A credential cannot be used: a key that does not parse, a
    /// service-account file missing a field. Set at configuration time.
    #[error("unusable credentials: {0}")]
    Credentials(String),
    /// The provider refused the app's credentials (after one renewal where
    /// the provider allows it): every push of this app fails until they are
    /// fixed. `status` is the HTTP status; `reason` the provider's words.
    #[error("the provider refused the credentials ({status}): {reason}")]
    Unauthorized { status: u16, reason: String },
    /// No answer: connection, TLS, timeout, or a body cut short. It carries
    /// no URL (an APNs URL holds a device token, a Web Push endpoint is a
    /// capability).
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// An answer this crate cannot read (a token endpoint's 200 without a
    /// token, say). Worth trying again later.
    #[error("unexpected answer: {0}")]
    Answer(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
