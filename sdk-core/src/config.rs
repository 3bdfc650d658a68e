//! How a client is set up: where, over what, with which token, and the limits of
//! its retries, requests and outbox.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use crate::event::AppState;
use crate::rt::{BoxFuture, SendOutsideWasm, SyncOutsideWasm};
use crate::store::Store;
use crate::transport::Transport;

/// Which wire the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransportKind {
    /// WebSocket with JSON text frames (the web's default).
    #[default]
    WebSocketJson,
    /// WebSocket with protobuf binary frames.
    WebSocketProtobuf,
    /// gRPC `mkondo.v1.Realtime/Connect` (native targets only; mobile's default).
    Grpc,
}

/// Why the token provider gave no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The application's backend refuses this user: the client stops for good.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Anything else (network, a 500 …): retried with backoff.
    #[error("token provider failed: {0}")]
    Failed(String),
}

/// Fetches a user token from the application's own backend. The client calls it
/// only when it has no token, when the token is about to expire, or when the
/// server rejected it as expired; never twice at once.
pub trait TokenProvider: SendOutsideWasm + SyncOutsideWasm {
    fn fetch_token(&self) -> BoxFuture<'static, Result<String, TokenError>>;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn() -> Fut + SendOutsideWasm + SyncOutsideWasm,
    Fut: Future<Output = Result<String, TokenError>> + SendOutsideWasm + 'static,
{
    fn fetch_token(&self) -> BoxFuture<'static, Result<String, TokenError>> {
        Box::pin(self())
    }
}

/// Everything a [`Client`](crate::Client) needs.
#[derive(Clone)]
pub struct Config {
    /// The server: `ws://host:port/v1/realtime` or `http://host:port` (either form
    /// works for every transport; `wss` / `https` for TLS).
    pub url: String,
    pub transport: TransportKind,
    /// A token to start with; the provider is asked when it is missing or expires.
    pub token: Option<String>,
    pub token_provider: Option<Arc<dyn TokenProvider>>,
    /// First reconnect delay (attempt 0 waits between `min_delay` and twice that).
    pub min_delay: Duration,
    /// Longest reconnect delay.
    pub max_delay: Duration,
    /// How long a call waits for its reply (and a connect for its answer).
    pub request_timeout: Duration,
    /// How many unsent messages may wait in the outbox.
    pub outbox_limit: usize,
    /// The app state to connect with.
    pub app_state: AppState,
    /// How many recent conversations the connect reply brings (max 100).
    pub conversations_limit: u32,
    /// Replaces the transport chosen by `transport` (tests, custom wires).
    pub custom_transport: Option<Arc<dyn Transport>>,
    /// Seed of the jitter and client-id generator; random when `None`. Tests set it
    /// to replay a run exactly.
    pub seed: Option<u64>,
    /// An extra CA (PEM) that `wss://` and `https://` servers may be signed by,
    /// for private deployments; trusted besides the platform's store.
    pub extra_ca_pem: Option<String>,
    /// The offline store, and whose it is (see [`crate::store`]).
    pub store: Option<StoreConfig>,
}

/// An offline store for a client: the store, the user it belongs to (the
/// token's user must be this one, or the store is not used), and how many
/// recent messages of each conversation the client keeps.
#[derive(Clone)]
pub struct StoreConfig {
    pub store: Arc<dyn Store>,
    pub user_id: String,
    pub messages_per_conversation: usize,
}

impl Config {
    pub fn new(url: impl Into<String>, transport: TransportKind) -> Self {
        Self {
            url: url.into(),
            transport,
            token: None,
            token_provider: None,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
            outbox_limit: 1000,
            app_state: AppState::Foreground,
            conversations_limit: 20,
            custom_transport: None,
            seed: None,
            extra_ca_pem: None,
            store: None,
        }
    }

    /// Keeps what survives a restart in `store`, for `user_id` (the user the
    /// app signs in as; a token for anyone else leaves the store unused).
    pub fn with_store(mut self, store: Arc<dyn Store>, user_id: impl Into<String>) -> Self {
        self.store = Some(StoreConfig {
            store,
            user_id: user_id.into(),
            messages_per_conversation: crate::store::DEFAULT_MESSAGES_PER_CONVERSATION,
        });
        self
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn with_token_provider(mut self, provider: impl TokenProvider + 'static) -> Self {
        self.token_provider = Some(Arc::new(provider));
        self
    }

    pub fn with_reconnect_delays(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max;
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn with_outbox_limit(mut self, limit: usize) -> Self {
        self.outbox_limit = limit;
        self
    }

    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.custom_transport = Some(transport);
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Trusts servers whose certificate this CA (PEM) signed, besides the
    /// platform's trust store.
    pub fn with_extra_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.extra_ca_pem = Some(pem.into());
        self
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("token_provider", &self.token_provider.is_some())
            .field("min_delay", &self.min_delay)
            .field("max_delay", &self.max_delay)
            .field("request_timeout", &self.request_timeout)
            .field("outbox_limit", &self.outbox_limit)
            .field("app_state", &self.app_state)
            .field("extra_ca_pem", &self.extra_ca_pem.is_some())
            .field("store", &self.store.as_ref().map(|s| s.user_id.as_str()))
            .finish_non_exhaustive()
    }
}
