//! The sans-IO session: every client behaviour, as a synchronous state machine.
//!
//! The driver pushes in what happened ([`Input`]: a user call, a transport
//! opening or closing, a frame, a token from the provider, or just time passing)
//! together with the current time, and pulls out what must happen
//! ([`Output`]: open or close a transport, write frames, ask the token provider,
//! emit an event, complete a call), then sleeps until [`Session::next_deadline`].
//! The session owns no socket, task or clock, so every rule below is tested with
//! a virtual clock, thousands of runs per second.
//!
//! Invariants:
//! - Inputs from a transport other than the current one (an older generation)
//!   are ignored: a replaced connection cannot change anything.
//! - While the state is `connecting` there is always a live transport attempt,
//!   a token fetch or a backoff timer, each with a deadline: the client never
//!   waits for nothing.
//! - Events leave in the order the frames arrived; messages of a conversation
//!   leave once per seq, in seq order, or a [`Event::Gap`] says what is missing.
//! - Every call completes exactly once ([`Output::Done`]).

mod connection;
mod outbox;
mod pushes;
mod recovery;
mod requests;
mod subscriptions;
#[cfg(test)]
mod tests;
mod tokens;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as Reply};

use crate::backoff::{Backoff, Rng};
use crate::cache::Cache;
use crate::error::Error;
use crate::event::{AppState, ConnectionState, Event};
use crate::rt::Instant;
use crate::store::{Change, Pending, Snapshot};

pub use connection::Phase;
use outbox::Outbox;
use recovery::Recovery;
use requests::Requests;
use subscriptions::Subscriptions;
use tokens::Tokens;

/// Identifies a user call, chosen by the driver; echoed by [`Output::Done`].
pub type OpId = u64;
/// A transport generation: every transport the session opens gets a new one.
pub type ConnId = u64;
/// One call of the token provider.
pub type FetchId = u64;

/// The current time: monotonic for deadlines, wall clock for the server's
/// timestamps (token expiry).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub unix_ms: i64,
}

/// The settings the session needs (from [`Config`](crate::Config)).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub request_timeout: Duration,
    pub outbox_limit: usize,
    pub app_state: AppState,
    pub conversations_limit: u32,
    pub has_token_provider: bool,
    pub token: Option<String>,
    pub seed: u64,
    /// With an offline store: whose it is, and how many recent messages of
    /// each conversation the cache keeps.
    pub store: Option<StoreSettings>,
}

/// What the session needs of an offline store's setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// The user the store belongs to: a connection as anyone else stops using it.
    pub user_id: String,
    pub messages_per_conversation: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
            outbox_limit: 1000,
            app_state: AppState::Foreground,
            conversations_limit: 20,
            has_token_provider: true,
            token: None,
            seed: 0,
            store: None,
        }
    }
}

/// A user call that is not a plain request.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A one-shot request. Idempotent ones (reads) are sent again after a
    /// reconnect; others fail with [`Error::ConnectionLost`].
    Request {
        command: Command,
        idempotent: bool,
    },
    /// A message for the outbox: queued while disconnected, resent with the same
    /// `client_id` until acknowledged.
    Send(v1::SendRequest),
    /// An edit, delete, reaction or read for the outbox, queued like a message.
    Queue(Command),
    Subscribe(String),
    Unsubscribe(String),
    /// Throttled to one per 3 s per conversation; dropped (not queued) offline.
    Typing {
        conversation_id: String,
        stop: bool,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Connect,
    Disconnect,
    Shutdown,
    NetworkAvailable(bool),
    AppState(AppState),
    Call {
        op: OpId,
        call: Call,
    },
    TransportOpened {
        conn: ConnId,
    },
    TransportClosed {
        conn: ConnId,
        code: Option<u16>,
        reason: String,
    },
    Frames {
        conn: ConnId,
        frames: Vec<v1::ServerFrame>,
    },
    Token {
        fetch: FetchId,
        result: Result<String, crate::TokenError>,
    },
    /// Nothing but time passed.
    Tick,
    /// What the offline store held, before the first `connect`.
    Restore(Snapshot),
    /// Sign-out: the offline store is wiped (then `Shutdown`).
    Forget,
    /// Outbox entries the offline store handed over (another tab's, gone):
    /// queued like restored ones.
    Adopt(Vec<Pending>),
    /// This client began sending an upload (its id): a message naming it
    /// waits in the outbox until it ends.
    UploadStarted(String),
    /// The upload ended: sent, or failed (its waiting messages fail too).
    UploadEnded {
        id: String,
        result: Result<(), Error>,
    },
}

/// What must happen.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open a new transport (after closing any other).
    Open {
        conn: ConnId,
    },
    /// Close this transport (gracefully if it can).
    Close {
        conn: ConnId,
    },
    /// Write these frames, in order (one message where the transport batches).
    Send {
        conn: ConnId,
        frames: Vec<v1::ClientFrame>,
    },
    /// Call the token provider and hand back its answer as [`Input::Token`].
    FetchToken {
        fetch: FetchId,
    },
    Event(Event),
    /// A call's outcome.
    Done {
        op: OpId,
        result: Result<Reply, Error>,
    },
    /// Apply these changes to the offline store, in order, before carrying out
    /// the outputs after this one (only with a store).
    Persist(Vec<Change>),
}

/// The client's whole behaviour; see the module documentation.
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    /// The last state announced with an event.
    announced: ConnectionState,
    next_conn: ConnId,
    rng: Rng,
    backoff: Backoff,
    tokens: Tokens,
    requests: Requests,
    outbox: Outbox,
    subs: Subscriptions,
    recovery: Recovery,
    cache: Arc<Mutex<Cache>>,
    app_state: AppState,
    network_available: bool,
    /// The `disconnect` push of the current transport: its code wins over the close's.
    pending_disconnect: Option<(u16, String)>,
    /// Nothing received for this long means the connection is dead.
    liveness: Duration,
    last_received: Instant,
    outputs: VecDeque<Output>,
    /// Changes for the offline store not yet handed out, besides the cache's
    /// (outbox, wipe); `None` without a store.
    store_changes: Option<Vec<Change>>,
}

impl Session {
    pub fn new(cfg: SessionConfig, now: Now) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let tokens = Tokens::new(cfg.token.clone(), cfg.has_token_provider, &cfg);
        let mut session = Self {
            backoff: Backoff::new(cfg.min_delay, cfg.max_delay),
            requests: Requests::new(rng.next_u64(), now.at),
            outbox: Outbox::new(cfg.outbox_limit),
            app_state: cfg.app_state,
            rng,
            tokens,
            phase: Phase::Idle,
            announced: ConnectionState::Disconnected,
            next_conn: 1,
            subs: Subscriptions::default(),
            recovery: Recovery::default(),
            cache: Arc::new(Mutex::new(Cache::default())),
            network_available: true,
            pending_disconnect: None,
            liveness: Duration::from_secs(35),
            last_received: now.at,
            outputs: VecDeque::new(),
            store_changes: cfg.store.as_ref().map(|_| Vec::new()),
            cfg,
        };
        if let Some(store) = &session.cfg.store {
            session
                .cache
                .lock()
                .unwrap()
                .persist(store.messages_per_conversation);
            session.recovery.track_moves = true;
        }
        session
    }

    /// Feeds one input; outputs queue up for [`Session::poll_output`].
    pub fn handle(&mut self, now: Now, input: Input) {
        if matches!(self.phase, Phase::Shut) {
            // Nothing after shutdown, but a call still completes exactly once.
            if let Input::Call { op, .. } = input {
                self.done(op, Err(Error::Shutdown));
            }
            return;
        }
        let first_output = self.outputs.len();
        match input {
            Input::Call { op, call } => self.call(now, op, call),
            Input::Restore(snapshot) => self.restore(snapshot),
            // Wiped, then shut in the same step: nothing handled in between
            // writes the signed-out user's data back.
            Input::Forget => {
                self.forget();
                self.connection_input(now, Input::Shutdown);
            }
            Input::Adopt(entries) => self.adopt(entries),
            Input::UploadStarted(id) => self.upload_started(id),
            Input::UploadEnded { id, result } => self.upload_ended(&id, result),
            Input::Frames { conn, frames } => {
                for frame in frames {
                    if !self.is_current(conn) {
                        break;
                    }
                    self.last_received = now.at;
                    self.frame(now, conn, frame);
                }
            }
            Input::Token { fetch, result } => self.token_result(now, fetch, result),
            Input::AppState(state) => self.set_app_state(now, state),
            other => self.connection_input(now, other),
        }
        self.timers(now);
        self.pump(now);
        self.persist(first_output);
    }

    /// Hands what changed in this step to the store, ahead of this step's
    /// events and call outcomes.
    fn persist(&mut self, first_output: usize) {
        let Some(pending) = self.store_changes.as_mut() else {
            return;
        };
        let mut changes = std::mem::take(pending);
        changes.extend(self.cache.lock().unwrap().take_changes());
        changes.extend(self.recovery.take_moved().into_iter().map(|(conv, seq)| {
            Change::Position {
                conversation_id: conv,
                seq,
            }
        }));
        if !changes.is_empty() {
            // A shutdown in this step dropped its events: never past the end.
            let at = first_output.min(self.outputs.len());
            self.outputs.insert(at, Output::Persist(changes));
        }
    }

    fn record(&mut self, change: Change) {
        if let Some(pending) = self.store_changes.as_mut() {
            pending.push(change);
        }
    }

    /// Starts from what the store held: the cache, the positions to resume
    /// from, and the messages still to send (whose results arrive as
    /// [`Event::Sent`], the calls that wrote them being gone). The restored
    /// conversations are told as `conversation_updated`, latest first.
    fn restore(&mut self, snapshot: Snapshot) {
        self.cache.lock().unwrap().restore(
            snapshot.user,
            snapshot.conversations,
            snapshot.messages,
        );
        self.recovery.restore(&snapshot.positions);
        for request in snapshot.outbox {
            self.outbox.restore(request);
        }
        let conversations = self.cache.lock().unwrap().conversations();
        for c in conversations {
            self.emit(Event::ConversationUpdated(c));
        }
    }

    /// Entries another client left in the shared store, sent from here now
    /// (their results arrive as [`Event::Sent`]); ignored once the store is
    /// not used (another user's token).
    fn adopt(&mut self, entries: Vec<Pending>) {
        if self.cfg.store.is_some() {
            for pending in entries {
                self.outbox.restore(pending);
            }
        }
    }

    /// Sign-out: the store is wiped, the cache forgets the user.
    fn forget(&mut self) {
        self.cache.lock().unwrap().forget();
        if let Some(pending) = self.store_changes.as_mut() {
            pending.clear();
            pending.push(Change::Wipe);
        }
    }

    /// The connection is some other user's than the store's: the store is
    /// neither read nor written from now on.
    fn store_not_mine(&mut self, user: &str) {
        let Some(store) = self.stop_store() else {
            return;
        };
        self.cache.lock().unwrap().forget();
        self.recovery = Recovery::default();
        // Nothing the store held is sent as this user.
        self.outbox.drop_restored();
        self.emit(Event::Error(Error::Config(format!(
            "the token is {user}'s but the offline store {}'s: the store is not used",
            store.user_id
        ))));
    }

    /// Runs on without the offline store (it could not be read): nothing is
    /// recorded for it from now on.
    pub fn without_store(&mut self) {
        self.stop_store();
    }

    /// Stops recording for the store; its settings, if there was one.
    fn stop_store(&mut self) -> Option<StoreSettings> {
        let store = self.cfg.store.take()?;
        self.store_changes = None;
        self.cache.lock().unwrap().stop_persisting();
        self.recovery.track_moves = false;
        Some(store)
    }

    /// The next output, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Session::handle`] with [`Input::Tick`] at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.phase_deadline(),
            self.tokens.deadline(self.is_connected()),
            self.requests.deadline(),
            self.is_connected().then(|| self.send_deadline()).flatten(),
            self.subs.deadline(),
            self.cache.lock().unwrap().typing_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The state as last announced.
    pub fn state(&self) -> ConnectionState {
        self.announced
    }

    /// The internal phase (finer than the state; for tests and logs).
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The state cache, shared with the client handle for reads without a round trip.
    pub fn cache(&self) -> Arc<Mutex<Cache>> {
        self.cache.clone()
    }

    /// The last seq delivered per conversation (what a reconnect resumes from).
    pub fn positions(&self) -> std::collections::HashMap<String, u64> {
        self.recovery.positions()
    }

    /// Whether the offline store is in use: configured, and not given up for a
    /// connection as another user.
    pub fn uses_store(&self) -> bool {
        self.cfg.store.is_some()
    }

    /// How many messages wait in the outbox (sent or not, not yet acknowledged).
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    fn emit(&mut self, event: Event) {
        self.mirror(&event);
        self.outputs.push_back(Output::Event(event));
    }

    fn done(&mut self, op: OpId, result: Result<Reply, Error>) {
        self.outputs.push_back(Output::Done { op, result });
    }

    fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    fn me(&self) -> Option<String> {
        self.cache.lock().unwrap().me().map(str::to_owned)
    }

    fn call(&mut self, now: Now, op: OpId, call: Call) {
        match call {
            Call::Request {
                command,
                idempotent,
            } => self.request(now, op, command, idempotent),
            Call::Send(req) => self.enqueue_message(now, op, req),
            Call::Queue(command) => self.enqueue_change(now, op, command),
            Call::Subscribe(conv) => self.subscribe(now, op, conv),
            Call::Unsubscribe(conv) => self.unsubscribe(now, op, conv),
            Call::Typing {
                conversation_id,
                stop,
            } => self.typing(now, op, conversation_id, stop),
        }
    }

    /// Fires whatever is due.
    fn timers(&mut self, now: Now) {
        self.phase_timers(now);
        self.token_timers(now);
        self.request_timers(now);
        self.subscription_timers(now);
        let expired = self.cache.lock().unwrap().expire_typing(now.at);
        for (conversation_id, user_id) in expired {
            self.emit(Event::Typing {
                conversation_id,
                user_id,
                typing: false,
            });
        }
    }
}
