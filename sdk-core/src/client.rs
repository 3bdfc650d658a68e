//! The handle applications hold: connection control, the state cache, and (in
//! `calls.rs`) one method per protocol call. A handle is cheap to clone; the
//! client shuts down when `shutdown()` is called or the last handle is dropped.
//!
//! Every call is handed to the driver when it is made, not when its future is
//! first polled: calls leave in the order they were made, and a call whose
//! future is dropped still happens (`subscribe()` before `connect()` works).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use mkondo_proto::v1::{self, reply::Result as Reply};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cache::Cache;
use crate::config::Config;
use crate::driver::{self, Command, Driver, EventListener};
use crate::error::{Error, Result};
use crate::event::{AppState, ConnectionState, Event, SubscriptionState};
use crate::rt;
use crate::session::{Call as SessionCall, Input, Session, SessionConfig, StoreSettings};
use crate::store::StoreKey;

/// A Mkondo client. See the crate documentation.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    next_op: AtomicU64,
    cache: Arc<Mutex<Cache>>,
    state: watch::Receiver<ConnectionState>,
    shut: Arc<AtomicBool>,
    /// Push credentials registered through this client: `sign_out` removes them.
    devices: Mutex<Vec<String>>,
    restored: watch::Receiver<bool>,
    stopped: watch::Receiver<bool>,
    /// What uploads need: the server's HTTP origin and trust.
    http: Arc<crate::uploads::Http>,
    /// The uploads in progress, by ticket: `shutdown` stops them.
    uploads: Mutex<(u64, Vec<(u64, futures::future::AbortHandle)>)>,
}

impl Client {
    /// Starts a client (disconnected: call [`Client::connect`]). On native targets
    /// it must be created inside a tokio runtime, which runs its task.
    pub fn new(config: Config, listener: impl EventListener + 'static) -> Result<Client> {
        Self::with_listener(config, Arc::new(listener))
    }

    /// Starts a client with an offline store ([`Config::with_store`]) and
    /// returns once the store's content is in the cache: `cached_conversations`
    /// and `cached_messages` answer from it before any network. Without a
    /// store it is [`Client::with_listener`]. Call [`Client::connect`] next.
    pub async fn open(config: Config, listener: Arc<dyn EventListener>) -> Result<Client> {
        let client = Self::with_listener(config, listener)?;
        client.restored().await;
        Ok(client)
    }

    /// Resolves once the offline store's content is in the cache (at once
    /// without a store).
    pub async fn restored(&self) {
        let mut restored = self.inner.restored.clone();
        let _ = restored.wait_for(|r| *r).await;
    }

    /// A client whose events arrive on a channel.
    pub fn with_channel(config: Config) -> Result<(Client, mpsc::UnboundedReceiver<Event>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = Self::new(config, move |event| {
            let _ = tx.send(event);
        })?;
        Ok((client, rx))
    }

    pub fn with_listener(config: Config, listener: Arc<dyn EventListener>) -> Result<Client> {
        if config.token.is_none() && config.token_provider.is_none() {
            return Err(Error::Config("give a token or a token provider".into()));
        }
        // With the built-in transports (a custom one reads the URL its own way).
        if let Some((scheme, _)) = crate::transport::split_scheme(&config.url) {
            if config.custom_transport.is_none()
                && !crate::transport::SCHEMES.contains(&scheme.as_str())
            {
                return Err(Error::Config(format!(
                    "the server URL's scheme must be https, wss, http or ws, not {scheme:?}"
                )));
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        if crate::transport::tls::is_plaintext_beyond_loopback(&config.url) {
            tracing::warn!(
                url = %config.url,
                "connecting without TLS to another machine: tokens and messages cross the \
                 network in the clear; use https:// or wss://"
            );
        }
        let http = Arc::new(crate::uploads::Http {
            base: crate::transport::grpc_url(&config.url),
            min_delay: config.min_delay,
            max_delay: config.max_delay,
            #[cfg(not(target_arch = "wasm32"))]
            tls: Arc::new(crate::transport::tls::TlsConfigs::new(
                crate::transport::tls::TlsTrust {
                    extra_ca_pem: config.extra_ca_pem.clone(),
                },
            )),
            rng: Mutex::new(crate::backoff::Rng::new(
                config.seed.unwrap_or_else(rt::entropy),
            )),
        });
        let transport = match &config.custom_transport {
            Some(t) => t.clone(),
            None => crate::transport::for_kind(config.transport, config.extra_ca_pem.clone())?,
        };
        let now = driver::now();
        let session = Session::new(
            SessionConfig {
                min_delay: config.min_delay,
                max_delay: config.max_delay,
                request_timeout: config.request_timeout,
                outbox_limit: config.outbox_limit,
                app_state: config.app_state,
                conversations_limit: config.conversations_limit,
                has_token_provider: config.token_provider.is_some(),
                token: config.token.clone(),
                seed: config.seed.unwrap_or_else(rt::entropy),
                store: config.store.as_ref().map(|s| StoreSettings {
                    user_id: s.user_id.clone(),
                    messages_per_conversation: s.messages_per_conversation,
                }),
            },
            now,
        );
        let cache = session.cache();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(ConnectionState::Disconnected);
        let (restored_tx, restored_rx) = watch::channel(false);
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let shut = Arc::new(AtomicBool::new(false));
        let store = config.store.as_ref().map(|s| {
            let key = StoreKey {
                url: config.url.clone(),
                user_id: s.user_id.clone(),
            };
            (s.store.clone(), key)
        });
        let driver = Driver {
            session,
            transport,
            url: config.url.clone(),
            provider: config.token_provider.clone(),
            listener,
            commands: commands_rx,
            state: state_tx,
            shut: shut.clone(),
            write_timeout: config.request_timeout,
            store,
            restored: restored_tx,
            stopped: stopped_tx,
        };
        rt::spawn(driver.run());
        Ok(Client {
            inner: Arc::new(Inner {
                commands: commands_tx,
                next_op: AtomicU64::new(1),
                cache,
                state: state_rx,
                shut,
                devices: Mutex::new(Vec::new()),
                restored: restored_rx,
                stopped: stopped_rx,
                http,
                uploads: Mutex::new((0, Vec::new())),
            }),
        })
    }

    pub(crate) fn input(&self, input: Input) {
        let _ = self.inner.commands.send(Command::Input(input));
    }

    pub(crate) fn http(&self) -> &crate::uploads::Http {
        &self.inner.http
    }

    /// The server's HTTP origin (`https://host[:port]`), which the links
    /// the server hands out (uploads, attachments) are relative to.
    pub fn http_base(&self) -> String {
        self.inner.http.base.clone()
    }

    pub(crate) fn is_shut(&self) -> bool {
        self.inner.shut.load(Ordering::SeqCst)
    }

    /// Starts connecting (and keeps the connection up). Idempotent.
    pub fn connect(&self) {
        self.input(Input::Connect);
    }

    /// Closes the connection and stops reconnecting. Idempotent. Queued messages
    /// stay in the outbox for the next `connect()`.
    pub fn disconnect(&self) {
        self.input(Input::Disconnect);
    }

    /// Releases everything: no event is delivered once this returns, and every
    /// pending call fails with [`Error::Shutdown`].
    pub fn shutdown(&self) {
        self.inner.shut.store(true, Ordering::SeqCst);
        self.input(Input::Shutdown);
        for (_, upload) in self.inner.uploads.lock().unwrap().1.drain(..) {
            upload.abort();
        }
    }

    /// Keeps an upload's abort handle until it ends (`untrack_upload`), so
    /// that `shutdown` stops it; a ticket names it.
    pub(crate) fn track_upload(&self, upload: futures::future::AbortHandle) -> u64 {
        let mut uploads = self.inner.uploads.lock().unwrap();
        uploads.0 += 1;
        let ticket = uploads.0;
        uploads.1.push((ticket, upload));
        ticket
    }

    pub(crate) fn untrack_upload(&self, ticket: u64) {
        self.inner
            .uploads
            .lock()
            .unwrap()
            .1
            .retain(|(t, _)| *t != ticket);
    }

    /// Signs the user out of this device: unregisters every push credential
    /// registered through this client (so the device is not woken for them
    /// any more), wipes the offline store, then shuts the client down and
    /// returns once it stopped. The client shuts down even when an
    /// unregister fails (offline, say); the error is returned so the app can
    /// tell its backend, which can remove the device over REST.
    pub async fn sign_out(&self) -> Result<()> {
        let devices = std::mem::take(&mut *self.inner.devices.lock().unwrap());
        let mut outcome = Ok(());
        for device in devices {
            match self.unregister_device(&device).await {
                Ok(()) => {}
                // Removed already (by the backend, or moved to another user).
                Err(Error::Server {
                    code: mkondo_proto::ErrorCode::NotFound,
                    ..
                }) => {}
                Err(e) => {
                    if outcome.is_ok() {
                        outcome = Err(e);
                    }
                }
            }
        }
        // The offline store is wiped before the client stops.
        self.input(Input::Forget);
        self.shutdown();
        let mut stopped = self.inner.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
        outcome
    }

    pub(crate) fn remember_device(&self, token: &str) {
        let mut devices = self.inner.devices.lock().unwrap();
        if !devices.iter().any(|d| d == token) {
            devices.push(token.to_owned());
        }
    }

    pub(crate) fn forget_device(&self, token: &str) {
        self.inner.devices.lock().unwrap().retain(|d| d != token);
    }

    /// The network came back (`true`: retry now instead of waiting) or went away.
    pub fn set_network_available(&self, available: bool) {
        self.input(Input::NetworkAvailable(available));
    }

    /// Foreground (retry now when waiting; the user shows `online`) or
    /// background (the user shows `away`).
    pub fn set_app_state(&self, state: AppState) {
        self.input(Input::AppState(state));
    }

    /// The connection state, as last announced.
    pub fn state(&self) -> ConnectionState {
        *self.inner.state.borrow()
    }

    /// Waits until the connection state is `state`.
    pub async fn wait_for_state(&self, state: ConnectionState) -> Result<()> {
        let mut rx = self.inner.state.clone();
        rx.wait_for(|s| *s == state)
            .await
            .map(|_| ())
            .map_err(|_| Error::Shutdown)
    }

    /// Reads the state cache.
    pub fn with_cache<T>(&self, read: impl FnOnce(&Cache) -> T) -> T {
        read(&self.inner.cache.lock().unwrap())
    }

    /// Known conversations, latest activity first, with unread counts.
    pub fn cached_conversations(&self) -> Vec<v1::Conversation> {
        self.with_cache(Cache::conversations)
    }

    /// The newest messages of a conversation the client keeps (with an
    /// offline store: restored at start, then kept current), ascending by seq.
    pub fn cached_messages(&self, conversation_id: &str) -> Vec<v1::Message> {
        self.with_cache(|c| c.messages(conversation_id))
    }

    /// One known conversation, as [`Client::cached_conversations`] has it.
    pub fn cached_conversation(&self, conversation_id: &str) -> Option<v1::Conversation> {
        self.with_cache(|c| c.conversation(conversation_id).cloned())
    }

    /// The sum of the unread counts of the cached conversations, without a
    /// round trip ([`Client::unread_total`] asks the server for all of them).
    pub fn total_unread(&self) -> u64 {
        self.with_cache(Cache::total_unread)
    }

    /// The server's id of the current (or last) session: what a backend
    /// names to disconnect this one; empty before the first connect.
    pub fn session_id(&self) -> String {
        self.with_cache(|c| c.session_id().to_owned())
    }

    /// The last known presence of a user.
    pub fn cached_presence(&self, user_id: &str) -> Option<v1::Presence> {
        self.with_cache(|c| c.presence(user_id).cloned())
    }

    /// Who is typing in a conversation now.
    pub fn typing_users(&self, conversation_id: &str) -> Vec<String> {
        self.with_cache(|c| c.typing(conversation_id))
    }

    /// The connected user (from the last connect, or the last profile update).
    pub fn user(&self) -> Option<v1::User> {
        self.with_cache(|c| c.user().cloned())
    }

    pub fn subscription_state(&self, conversation_id: &str) -> SubscriptionState {
        self.with_cache(|c| c.subscription(conversation_id))
    }

    /// Hands a call to the driver now; the future waits for its outcome.
    pub(crate) fn call<T>(&self, call: SessionCall, map: fn(Reply) -> Result<T>) -> Call<T> {
        let op = self.inner.next_op.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let sent = self.inner.commands.send(Command::Call {
            op,
            call,
            reply: tx,
        });
        Call {
            state: match sent {
                Ok(()) => CallState::Waiting(rx),
                Err(_) => CallState::Failed(Some(Error::Shutdown)),
            },
            map,
        }
    }

    pub(crate) fn failed<T>(&self, error: Error) -> Call<T> {
        Call {
            state: CallState::Failed(Some(error)),
            map: |_| Err(Error::Shutdown),
        }
    }
}

enum CallState {
    Waiting(oneshot::Receiver<Result<Reply>>),
    Failed(Option<Error>),
}

/// A call in progress: resolves with its typed result or error.
#[must_use = "the call is made either way; await it for its result"]
pub struct Call<T> {
    state: CallState,
    map: fn(Reply) -> Result<T>,
}

impl<T> Future for Call<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let map = self.map;
        match &mut self.state {
            CallState::Failed(error) => Poll::Ready(Err(error.take().unwrap_or(Error::Shutdown))),
            CallState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(result)) => Poll::Ready(result.and_then(map)),
                Poll::Ready(Err(_)) => Poll::Ready(Err(Error::Shutdown)),
            },
        }
    }
}
