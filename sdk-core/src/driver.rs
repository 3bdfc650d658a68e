//! The one async loop that feeds the session: it waits on user commands,
//! transport reports, token answers and the session's next deadline, hands each
//! to the session with the current time, and carries out what comes back
//! (open / write / close transports, call the token provider, deliver events one
//! at a time, complete calls).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use mkondo_proto::v1::reply::Result as Reply;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{TokenError, TokenProvider};
use crate::error::Error;
use crate::event::{ConnectionState, Event};
use crate::rt;
use crate::session::{Call, ConnId, FetchId, Input, Now, OpId, Output, Session};
use crate::store::{Store, StoreKey};
use crate::transport::{Link, Outgoing, Reporter, Transport, TransportEvent};

/// Receives every event, one at a time, in order. Called on the client's task:
/// keep it short (hand work off); calling the client from inside is safe.
pub trait EventListener: rt::SendOutsideWasm + rt::SyncOutsideWasm {
    fn on_event(&self, event: Event);
}

impl<F: Fn(Event) + rt::SendOutsideWasm + rt::SyncOutsideWasm> EventListener for F {
    fn on_event(&self, event: Event) {
        self(event)
    }
}

pub(crate) type Waiter = oneshot::Sender<Result<Reply, Error>>;

/// What the client handle asks of the driver.
pub(crate) enum Command {
    Input(Input),
    Call { op: OpId, call: Call, reply: Waiter },
}

pub(crate) struct Driver {
    pub session: Session,
    pub transport: Arc<dyn Transport>,
    pub url: String,
    pub provider: Option<Arc<dyn TokenProvider>>,
    pub listener: Arc<dyn EventListener>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub state: watch::Sender<ConnectionState>,
    pub shut: Arc<AtomicBool>,
    pub write_timeout: Duration,
    /// The offline store and whose it is.
    pub store: Option<(Arc<dyn Store>, StoreKey)>,
    /// True once the store's snapshot is in the session (or there is none).
    pub restored: watch::Sender<bool>,
    /// True once the driver stopped (after shutdown, the store written).
    pub stopped: watch::Sender<bool>,
}

pub(crate) fn now() -> Now {
    Now {
        at: rt::now(),
        unix_ms: rt::unix_ms(),
    }
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let (events_tx, mut events_rx) = mpsc::unbounded_channel::<(ConnId, TransportEvent)>();
        let (tokens_tx, mut tokens_rx) =
            mpsc::unbounded_channel::<(FetchId, Result<String, TokenError>)>();
        let mut waiting: HashMap<OpId, Waiter> = HashMap::new();
        let mut current: Option<(ConnId, mpsc::UnboundedSender<Outgoing>)> = None;
        if let Some((store, key)) = &self.store {
            match store.load(key).await {
                Ok(snapshot) => self.session.handle(now(), Input::Restore(snapshot)),
                Err(e) => {
                    // A store that cannot be read (a newer SDK's, storage
                    // blocked) is not written either: the client runs without.
                    self.listener.on_event(Event::Error(Error::Store(e.0)));
                    self.store = None;
                    self.session.without_store();
                }
            }
        }
        // Outbox entries the store hands over later (a shared browser store).
        let adopt = |store: &Option<(Arc<dyn Store>, StoreKey)>| match store {
            Some((store, _)) => store.adopt(),
            None => Box::pin(std::future::pending()),
        };
        let mut adopting = adopt(&self.store);
        loop {
            while let Some(output) = self.session.poll_output() {
                match output {
                    Output::Open { conn } => {
                        if let Some((_, old)) = current.take() {
                            let _ = old.send(Outgoing::Close);
                        }
                        let (tx, rx) = mpsc::unbounded_channel();
                        self.transport.open(Link {
                            url: self.url.clone(),
                            reporter: Reporter::new(conn, events_tx.clone()),
                            outgoing: rx,
                            write_timeout: self.write_timeout,
                        });
                        current = Some((conn, tx));
                    }
                    Output::Close { conn } => {
                        if let Some((_, tx)) = current.take_if(|(c, _)| *c == conn) {
                            let _ = tx.send(Outgoing::Close);
                        }
                    }
                    Output::Send { conn, frames } => {
                        if let Some((_, tx)) = current.as_ref().filter(|(c, _)| *c == conn) {
                            let _ = tx.send(Outgoing::Frames(frames));
                        }
                    }
                    Output::FetchToken { fetch } => {
                        if let Some(provider) = &self.provider {
                            let answer = provider.fetch_token();
                            let tx = tokens_tx.clone();
                            rt::spawn(async move {
                                let _ = tx.send((fetch, answer.await));
                            });
                        }
                    }
                    Output::Event(event) => {
                        if !self.shut.load(Ordering::SeqCst) {
                            self.listener.on_event(event);
                        }
                    }
                    Output::Done { op, result } => {
                        if let Some(waiter) = waiting.remove(&op) {
                            let _ = waiter.send(result);
                        }
                    }
                    Output::Persist(changes) => {
                        let Some((store, _)) = &self.store else {
                            continue;
                        };
                        if let Err(e) = store.apply(changes).await {
                            tracing::warn!(error = %e, "the offline store failed to write");
                            if !self.shut.load(Ordering::SeqCst) {
                                self.listener.on_event(Event::Error(Error::Store(e.0)));
                            }
                        }
                    }
                }
            }
            if self.store.is_some() && !self.session.uses_store() {
                // A connection as another user: the store is let go (with its
                // browser locks, which the user's other tabs may need).
                self.store = None;
                adopting = adopt(&self.store);
            }
            // Restored once the snapshot's events were delivered too.
            self.restored
                .send_if_modified(|r| !std::mem::replace(r, true));
            let state = self.session.state();
            self.state
                .send_if_modified(|s| std::mem::replace(s, state) != state);
            if matches!(self.session.phase(), crate::session::Phase::Shut) {
                if let Some((_, tx)) = current.take() {
                    let _ = tx.send(Outgoing::Close);
                }
                self.stopped.send_replace(true);
                return;
            }

            let deadline = self.session.next_deadline();
            let sleep = async move {
                match deadline {
                    Some(at) => rt::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let input = tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Input(input)) => input,
                    Some(Command::Call { op, call, reply }) => {
                        waiting.insert(op, reply);
                        Input::Call { op, call }
                    }
                    // Every handle is gone.
                    None => Input::Shutdown,
                },
                Some((conn, event)) = events_rx.recv() => match event {
                    TransportEvent::Opened => Input::TransportOpened { conn },
                    TransportEvent::Frames(frames) => Input::Frames { conn, frames },
                    TransportEvent::Closed { code, reason } => Input::TransportClosed { conn, code, reason },
                },
                Some((fetch, result)) = tokens_rx.recv() => Input::Token { fetch, result },
                adopted = &mut adopting => {
                    adopting = adopt(&self.store);
                    match adopted {
                        Ok(entries) => Input::Adopt(entries),
                        Err(e) => {
                            tracing::warn!(error = %e, "the offline store failed to hand over outbox entries");
                            Input::Tick
                        }
                    }
                }
                () = sleep => Input::Tick,
            };
            self.session.handle(now(), input);
        }
    }
}
