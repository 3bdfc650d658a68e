//! One live connection. A session owns no socket: it reads `Inbound` frames and
//! writes through a `Transport`, so WebSocket and gRPC share all of it.
//!
//! Invariants:
//! - The session joins the hub *before* it reads the store for a resume, and
//!   drops any `message` push whose seq it already delivered: a reconnecting
//!   client gets every missed message exactly once, in order, before newer ones.
//!   A live `message` push that arrives past a gap (another node published the
//!   earlier seq later) is preceded by the missing seqs read from the store, so
//!   the live stream too is every seq once, in order.
//! - Pushes wait in a bounded queue; a client too slow to drain it is closed
//!   with `slow_consumer` (by the hub), and every write races that close, so a
//!   stuck socket never pins the session.
//! - The token's expiry plus the grace period is a deadline; an in-band `refresh`
//!   moves it.
//! - A turn of the loop that only finds a push costs no timer or cancellation
//!   bookkeeping and no read attempt: the timer and the close and shutdown
//!   signals are pinned for the session's life, and they and the inbound stream
//!   are polled only when one of them woke the task (`wake.rs`).
//! - At most `max_concurrent_connects` `connect` commands run at once on a node;
//!   the others wait their turn, and one whose client hangs up while it waits is
//!   dropped without touching the store (a reconnect storm queues, it does not
//!   pile up work for clients that are gone).

mod commands;
mod message_commands;
mod people_commands;
mod social_commands;
mod wake;

use std::collections::HashSet;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::Peekable;
use futures::StreamExt;
use mkondo_proto::v1::{self, push::Push, server_frame::Body};
use mkondo_proto::DisconnectCode;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::{sleep_until, Instant, Sleep};

use super::counters;
use super::transport::{Inbound, InboundStream, Item, Transport};
use crate::engine::hub::{Closer, SessionHandle, SessionId, TokenStamp};
use crate::engine::outbound::Outbound;
use crate::engine::presence::AppState;
use crate::error::Error;
use crate::node::origins::BrowserOrigin;
use crate::node::{Bucket, ClientAddr, Node, Rate};
use wake::Control;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);
const MAX_BATCH: usize = 64;
/// A session's batch buffer above this capacity is dropped after its write.
const SMALL_BATCH: usize = 8;

struct Authed {
    app: Arc<str>,
    user: Arc<str>,
    /// When the connection must close unless refreshed: token expiry + grace.
    token_deadline: Instant,
}

struct Session {
    node: Arc<Node>,
    id: SessionId,
    closer: Closer,
    queue_tx: mpsc::Sender<Arc<Outbound>>,
    authed: Option<Authed>,
    app_state: AppState,
    subscriptions: HashSet<String>,
    /// Last message seq delivered per conversation (the live/replay merge point).
    /// Looked up for every message push: hashed with foldhash, not SipHash
    /// (the keys are the session's own conversations).
    delivered: foldhash::HashMap<String, u64>,
    /// The frames' budget until `connect` succeeds; then the user's, on the node
    /// (shared with the user's other connections and REST requests).
    bucket: Bucket,
    /// Where the connection comes from: failed connects are counted per address.
    from: ClientAddr,
    /// The browser page's origin (the WebSocket upgrade's `Origin`), checked at
    /// `connect` against the token's app; none for native clients and gRPC.
    origin: Option<Box<BrowserOrigin>>,
    /// A `ping` went out and no frame came back yet: close at this instant.
    pong_deadline: Option<Instant>,
    next_ping: Instant,
    /// Set by a command that must end the session after its reply is written.
    close_after_reply: Option<DisconnectCode>,
}

/// Runs a session to its end. The transport is closed when this returns.
pub async fn run<T: Transport>(
    node: Arc<Node>,
    mut transport: T,
    inbound: InboundStream,
    from: ClientAddr,
    origin: Option<Box<BrowserOrigin>>,
) {
    let _open = node.track_session();
    let mut inbound = inbound.peekable();
    let limits = node.limits().clone();
    let (queue_tx, mut queue_rx) = mpsc::channel::<Arc<Outbound>>(limits.outbound_queue);
    let now = Instant::now();
    let mut s = Session {
        id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
        closer: Closer::default(),
        queue_tx,
        authed: None,
        app_state: AppState::Foreground,
        subscriptions: HashSet::new(),
        delivered: foldhash::HashMap::default(),
        bucket: Bucket::full(session_rate(&limits), now.into_std()),
        from,
        origin,
        pong_deadline: None,
        next_ping: now + limits.ping_interval,
        close_after_reply: None,
        node,
    };
    metrics::gauge!("mkondo_connections").increment(1.0);
    let connect_deadline = now + limits.connect_timeout;

    // Pinned for the session's life: each is registered once (a cancellation
    // waiter, a timer-wheel entry), not made anew and dropped on every turn.
    let control = Control::new();
    let mut closed = pin!(s.closer.closed_owned());
    let mut shutdown = pin!(s.node.shutdown_signal().cancelled_owned());
    // One timer for every deadline: the earliest of ping, pong, token expiry
    // and connect; moved only when that changes (a frame, a ping, a refresh).
    let mut timer = pin!(sleep_until(s.next_deadline(connect_deadline)));
    // What the next write sends, kept between writes: no allocation per push.
    let mut items: Vec<Item> = Vec::new();

    let code: Option<DisconnectCode> = loop {
        let event = poll_fn(|cx| {
            // In the order of the `select!` this replaces: a close first, and
            // the client's frames before pushes.
            if control.take(cx) {
                let mut ccx = Context::from_waker(control.waker());
                if closed.as_mut().poll(&mut ccx).is_ready() {
                    return Poll::Ready(Event::Closed);
                }
                if shutdown.as_mut().poll(&mut ccx).is_ready() {
                    return Poll::Ready(Event::Shutdown);
                }
                if let Poll::Ready(frame) = inbound.poll_next_unpin(&mut ccx) {
                    // The timer was not polled, and the stream may hold more.
                    control.raise();
                    return Poll::Ready(Event::Inbound(frame));
                }
                if timer.as_mut().poll(&mut ccx).is_ready() {
                    return Poll::Ready(Event::Deadline);
                }
            }
            match queue_rx.poll_recv(cx) {
                Poll::Ready(Some(out)) => Poll::Ready(Event::Push(out)),
                // The session holds a sender: the queue never ends first.
                _ => Poll::Pending,
            }
        })
        .await;
        match event {
            Event::Closed => break s.closer.code(),
            Event::Shutdown => break Some(DisconnectCode::Shutdown),
            Event::Inbound(None) => break None,
            Event::Inbound(Some(frame)) => {
                s.pong_deadline = None;
                match frame {
                    Inbound::Frames(frames) => {
                        let _connect_slot = if s.authed.is_none() && frames.iter().any(is_connect) {
                            // Boxed, as is every rare await: an inline
                            // future would enlarge every session's task.
                            let slot = Box::pin(connect_slot(&s.node, &mut inbound)).await;
                            // It polled the stream with the task's waker.
                            control.raise();
                            match slot {
                                Ok(permit) => Some(permit),
                                Err(gone) => break gone,
                            }
                        } else {
                            None
                        };
                        for f in frames {
                            counters::frames_in(1);
                            // Boxed: the command futures are large, and held
                            // inline they would make every idle session's task
                            // that large for its whole life (kilobytes each).
                            if let Some(reply) = Box::pin(s.handle(f)).await {
                                items.push(Item::frame(reply));
                            }
                            if s.close_after_reply.is_some() {
                                break;
                            }
                        }
                    }
                    Inbound::Rejected { id, error } => {
                        items.push(Item::frame(match s.take_token() {
                            Ok(()) => error_frame(id, &error),
                            Err(wait) => error_frame(id, &Error::rate_limited(wait)),
                        }))
                    }
                    Inbound::Fatal(why) => {
                        tracing::debug!(session = s.id, %why, "protocol violation");
                        break Some(DisconnectCode::BadProtocol);
                    }
                }
                if !items.is_empty() && !s.write(&mut transport, &mut items).await {
                    break s.closer.code();
                }
                // Only pushes keep the buffer: a session that gets none
                // (an idle one, between its pings) holds no allocation.
                items = Vec::new();
                if let Some(code) = s.close_after_reply.take() {
                    break Some(code);
                }
                // The frame cleared the pong deadline; `connect` or `refresh`
                // set the token's.
                move_timer(timer.as_mut(), s.next_deadline(connect_deadline), &control);
            }
            Event::Deadline => {
                // A timer never fires early; by its own deadline, what is due is.
                let now = Instant::now().max(timer.deadline());
                let token_deadline = s.authed.as_ref().map(|a| a.token_deadline);
                if s.authed.is_some() && s.next_ping <= now {
                    s.next_ping = Instant::now() + limits.ping_interval;
                    if s.pong_deadline.is_none() {
                        s.pong_deadline = Some(Instant::now() + limits.pong_timeout);
                    }
                    items.push(Item::Push(Outbound::push(Push::Ping(v1::ServerPing {}))));
                    if !s.write(&mut transport, &mut items).await {
                        break s.closer.code();
                    }
                    items = Vec::new();
                } else if s.pong_deadline.is_some_and(|d| d <= now) {
                    break Some(DisconnectCode::NoPong);
                } else if token_deadline.is_some_and(|d| d <= now) {
                    break Some(DisconnectCode::TokenExpired);
                } else if s.authed.is_none() && connect_deadline <= now {
                    break Some(DisconnectCode::BadProtocol);
                }
                move_timer(timer.as_mut(), s.next_deadline(connect_deadline), &control);
                // Polled next turn even if its deadline stayed: another one
                // (a pong's, due with the ping) may be the same instant.
                control.raise();
            }
            Event::Push(first) => {
                let mut next = Some(first);
                for _ in 0..MAX_BATCH {
                    let Some(out) = next.take().or_else(|| queue_rx.try_recv().ok()) else {
                        break;
                    };
                    if let Some(gap) = s.admit(out, &mut items) {
                        Box::pin(s.fill_gap(gap, &mut items)).await;
                    }
                }
                if !items.is_empty() && !s.write(&mut transport, &mut items).await {
                    break s.closer.code();
                }
            }
        }
    };

    let disconnect = code.map(|c| v1::Disconnect {
        code: u32::from(c.code()),
        reason: c.reason().to_owned(),
        reconnect: c.reconnect(),
    });
    if let Some(code) = code {
        tracing::debug!(
            session = s.id,
            code = code.code(),
            reason = code.reason(),
            "closing session"
        );
    }
    // Leave the hub first: nothing more is queued for a session that is closing.
    Box::pin(s.leave()).await;
    // The goodbye is best effort: a slow consumer's socket is what is stuck.
    let closing = Box::pin(transport.close(disconnect));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), closing).await;
    metrics::gauge!("mkondo_connections").decrement(1.0);
}

/// A push that skipped seqs of its conversation: `after` is the last one
/// delivered.
struct Gap {
    after: u64,
    out: Arc<Outbound>,
}

/// What woke the session loop.
enum Event {
    Closed,
    Shutdown,
    /// A frame, or the end of the input (`None`).
    Inbound(Option<Inbound>),
    Deadline,
    Push(Arc<Outbound>),
}

/// Resets the loop's timer if its deadline changed (a reset moves its
/// timer-wheel entry). The loop polls it again on its next turn.
fn move_timer(timer: Pin<&mut Sleep>, deadline: Instant, control: &Control) {
    if timer.deadline() != deadline {
        timer.reset(deadline);
        control.raise();
    }
}

fn is_connect(frame: &v1::ClientFrame) -> bool {
    matches!(frame.command, Some(v1::client_frame::Command::Connect(_)))
}

/// Waits for a turn to run `connect`. `Err` ends the session: the client hung up
/// while it waited (nothing to say), or the node is shutting down.
async fn connect_slot(
    node: &Node,
    inbound: &mut Peekable<InboundStream>,
) -> Result<OwnedSemaphorePermit, Option<DisconnectCode>> {
    if let Some(permit) = node.try_connect_turn() {
        return Ok(permit);
    }
    metrics::counter!("mkondo_connects_queued_total").increment(1);
    tokio::select! {
        permit = node.connect_turn() => permit.ok_or(Some(DisconnectCode::Shutdown)),
        // A frame sent after `connect` stays peeked for the loop; only the
        // end of the stream (the client gave up) ends the wait.
        None = std::pin::Pin::new(&mut *inbound).peek() => {
            metrics::counter!("mkondo_connects_abandoned_total").increment(1);
            Err(None)
        }
    }
}

impl Session {
    /// Writes, unless the session is told to close first (a stuck socket must not
    /// hold it), within the write deadline: a client that sends but never reads
    /// is closed as a slow consumer rather than holding its session for ever.
    /// Returns false when the session must end.
    ///
    /// Nearly every write completes at its first poll (the socket's buffer has
    /// room): only one that does not is raced against the close and a timer.
    async fn write<T: Transport>(&mut self, transport: &mut T, items: &mut Vec<Item>) -> bool {
        if self.closer.is_closed() {
            return false;
        }
        let n = items.len() as u64;
        let ok = {
            let mut write = pin!(transport.write(items));
            let result = match poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                Poll::Ready(result) => result,
                Poll::Pending => {
                    let deadline = self.node.limits().write_timeout;
                    tokio::select! {
                        biased;
                        _ = self.closer.closed() => return false,
                        result = tokio::time::timeout(deadline, write) => match result {
                            Ok(result) => result,
                            Err(_) => {
                                metrics::counter!("mkondo_write_timeouts_total").increment(1);
                                self.closer.close(DisconnectCode::SlowConsumer);
                                return false;
                            }
                        },
                    }
                }
            };
            counters::frames_out(n);
            result.is_ok()
        };
        // A burst's large buffer is not kept for an idle session's life.
        if items.capacity() > SMALL_BATCH {
            *items = Vec::new();
        }
        ok
    }

    /// The earliest instant the loop must act at: the next ping, the pong's
    /// or the token's deadline once connected, the connect deadline before.
    fn next_deadline(&self, connect_deadline: Instant) -> Instant {
        let due = match &self.authed {
            Some(a) => self.next_ping.min(a.token_deadline),
            None => connect_deadline,
        };
        self.pong_deadline.map_or(due, |pong| due.min(pong))
    }

    /// The merge: a `message` push at or below what this session already
    /// delivered for its conversation is a duplicate (of the replay, or of a gap
    /// fill) and is dropped. A push past a gap brings the missing seqs from the store
    /// first: with several nodes, seq 7 published by one can overtake seq 6 published
    /// by another, and 6 is already committed (7 was allocated after 6's commit).
    ///
    /// Synchronous: nearly every push is the next seq (or unordered). One past
    /// a gap is returned, for [`Session::fill_gap`] to add after the missing ones.
    fn admit(&mut self, out: Arc<Outbound>, ready: &mut Vec<Item>) -> Option<Gap> {
        let Some((conv, seq)) = &out.ordered else {
            ready.push(Item::Push(out));
            return None;
        };
        let seq = *seq;
        // Per push and recipient: no allocation unless the conversation is new.
        let last = match self.delivered.get_mut(conv.as_str()) {
            Some(last) if seq <= *last => return None,
            Some(last) => std::mem::replace(last, seq),
            None => {
                self.delivered.insert(conv.clone(), seq);
                ready.push(Item::Push(out));
                return None;
            }
        };
        if seq > last + 1 {
            return Some(Gap { after: last, out });
        }
        ready.push(Item::Push(out));
        None
    }

    /// Adds the messages between a gap's ends, as far as the store has them
    /// (at most a replay page; the client pages history for a larger hole),
    /// then the push that ends it.
    async fn fill_gap(&self, gap: Gap, ready: &mut Vec<Item>) {
        let Gap { after, out } = gap;
        if let (Some(authed), Some((conv, before))) = (&self.authed, &out.ordered) {
            // Seqs come from the server's own pushes: never past i64::MAX.
            if let (Ok(after), Ok(before)) = (i64::try_from(after), i64::try_from(*before)) {
                match self.node.gap_fill(&authed.app, conv, after, before).await {
                    Ok(messages) => ready.extend(messages.iter().map(|m| {
                        Item::Push(Outbound::push(Push::Message(crate::views::message(m))))
                    })),
                    Err(err) => {
                        tracing::warn!(%err, conv, "filling a gap in the live stream failed");
                    }
                }
            }
        }
        ready.push(Item::Push(out));
    }

    fn handle_for_hub(&self, app: &Arc<str>, user: &Arc<str>, token: &TokenStamp) -> SessionHandle {
        SessionHandle {
            id: self.id,
            app: app.clone(),
            user: user.clone(),
            token: token.clone(),
            queue: self.queue_tx.clone(),
            close: self.closer.clone(),
        }
    }

    async fn leave(&mut self) {
        let Some(authed) = self.authed.take() else {
            return;
        };
        self.node
            .detach_session(self.id, self.subscriptions.drain());
        if let Err(err) = self
            .node
            .drop_presence(&authed.app, &authed.user, self.id)
            .await
        {
            tracing::warn!(%err, "presence update on disconnect failed");
        }
    }
}

pub(crate) fn error_frame(id: u32, error: &Error) -> v1::ServerFrame {
    v1::ServerFrame {
        id,
        body: Some(Body::Error(error.to_proto())),
    }
}

fn session_rate(limits: &crate::config::Limits) -> Rate {
    Rate::new(f64::from(limits.rate_per_second), limits.rate_burst)
}

impl Session {
    /// One frame's worth of the budget, or how long until there is one (ms).
    pub(super) fn take_token(&mut self) -> Result<(), u32> {
        match &self.authed {
            Some(a) => self.node.user_command(&a.app, &a.user),
            None => {
                let rate = session_rate(self.node.limits());
                self.bucket.take(rate, std::time::Instant::now())
            }
        }
    }
}
