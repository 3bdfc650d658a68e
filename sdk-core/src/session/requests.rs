//! Requests: command ids, what each frame in flight is for, the queue of calls
//! waiting for a connection, and the pacing that keeps the client under the
//! server's command rate (so that the outbox is not refused in bursts).
//!
//! Every frame but `pong` leaves through [`Session::pump`], in this order:
//! internal frames (refresh, recovery pages, subscriptions, app state), then
//! user calls, then the outbox in its original order.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as Reply};

use super::{ConnId, Now, OpId, Output, Phase, Session};
use crate::error::Error;
use crate::event::Event;
use crate::rt::Instant;

/// Why a frame is in flight (or waits to be sent).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Purpose {
    User {
        op: OpId,
        idempotent: bool,
        command: Command,
        deadline: Instant,
    },
    Typing {
        op: OpId,
        deadline: Instant,
    },
    Send {
        client_id: String,
    },
    Subscribe(String),
    Unsubscribe {
        op: Option<OpId>,
    },
    Refresh,
    History {
        conversation_id: String,
    },
    /// A frame whose reply matters only when it is an error (app state, the
    /// typing stop that follows a sent message).
    Internal,
}

impl Purpose {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Self::User { deadline, .. } | Self::Typing { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }
}

/// A user call waiting for a connection.
#[derive(Debug)]
struct Queued {
    op: OpId,
    command: Command,
    idempotent: bool,
    deadline: Instant,
}

/// The server's command rate, mirrored so that the client never exceeds it.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
    }

    fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn ready_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64(missing / self.rate) + Duration::from_millis(1)
    }
}

pub(super) struct Requests {
    next_id: u32,
    in_flight: HashMap<u32, Purpose>,
    queue: VecDeque<Queued>,
    control: VecDeque<(Command, Purpose)>,
    bucket: Bucket,
    /// When each conversation's last `typing` left (the 3 s throttle).
    typing_sent: HashMap<String, Instant>,
}

/// Sends at most one `typing` per conversation this often.
const TYPING_THROTTLE: Duration = Duration::from_secs(3);
/// A `typing` older than this has expired on the receivers' side: no stop needed.
const TYPING_EXPIRY: Duration = Duration::from_secs(6);
/// Below the server's own numbers, for the jitter between sending and arriving.
const RATE_MARGIN: f64 = 0.9;
const BURST_MARGIN: f64 = 5.0;

impl Requests {
    pub(super) fn new(seed: u64, now: Instant) -> Self {
        Self {
            // Ids restart from a random point so that replies to an older
            // connection's commands are unlikely to match anything.
            next_id: (seed as u32 % 1_000_000).max(1),
            in_flight: HashMap::new(),
            queue: VecDeque::new(),
            control: VecDeque::new(),
            bucket: Bucket {
                rate: 20.0 * RATE_MARGIN,
                burst: 50.0 - BURST_MARGIN,
                tokens: 50.0 - BURST_MARGIN,
                at: now,
            },
            typing_sent: HashMap::new(),
        }
    }

    pub(super) fn allocate_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.in_flight.contains_key(&id) {
                return id;
            }
        }
    }

    /// A new connection: the server's bucket starts full.
    pub(super) fn reset_bucket(&mut self, now: Instant) {
        self.bucket.tokens = self.bucket.burst;
        self.bucket.at = now;
    }

    pub(super) fn set_rate(&mut self, per_second: u32, burst: u32, now: Instant) {
        if per_second == 0 || burst == 0 {
            return;
        }
        self.bucket.refill(now);
        self.bucket.rate = f64::from(per_second) * RATE_MARGIN;
        self.bucket.burst = (f64::from(burst) - BURST_MARGIN).max(1.0);
        self.bucket.tokens = self.bucket.tokens.min(self.bucket.burst);
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        let queued = self.queue.iter().map(|q| q.deadline);
        let in_flight = self.in_flight.values().filter_map(Purpose::deadline);
        queued.chain(in_flight).min()
    }

    /// A transport ended: idempotent calls go back to the queue (in their
    /// original order), the others fail; internal frames are dropped (the next
    /// connection redoes them).
    pub(super) fn connection_gone(&mut self, now: Instant, outputs: &mut VecDeque<Output>) {
        let mut ids: Vec<u32> = self.in_flight.keys().copied().collect();
        ids.sort_unstable();
        let mut requeue = Vec::new();
        for id in ids {
            let Some(purpose) = self.in_flight.remove(&id) else {
                continue;
            };
            match purpose {
                Purpose::User {
                    op,
                    idempotent: true,
                    command,
                    deadline,
                } if deadline > now => requeue.push(Queued {
                    op,
                    command,
                    idempotent: true,
                    deadline,
                }),
                Purpose::User { op, .. } | Purpose::Typing { op, .. } => {
                    outputs.push_back(Output::Done {
                        op,
                        result: Err(Error::ConnectionLost),
                    });
                }
                // The server forgets subscriptions with the connection.
                Purpose::Unsubscribe { op: Some(op) } => outputs.push_back(Output::Done {
                    op,
                    result: Ok(Reply::Ok(v1::Ok {})),
                }),
                _ => {}
            }
        }
        for q in requeue.into_iter().rev() {
            self.queue.push_front(q);
        }
        for (_, purpose) in self.control.drain(..) {
            if let Purpose::Unsubscribe { op: Some(op) } = purpose {
                outputs.push_back(Output::Done {
                    op,
                    result: Ok(Reply::Ok(v1::Ok {})),
                });
            }
        }
        self.typing_sent.clear();
    }

    /// Fails every call still waiting to be sent.
    pub(super) fn fail_queued(
        &mut self,
        error: impl Fn(OpId) -> Error,
        outputs: &mut VecDeque<Output>,
    ) {
        for q in self.queue.drain(..) {
            outputs.push_back(Output::Done {
                op: q.op,
                result: Err(error(q.op)),
            });
        }
    }

    /// Fails every call, sent or not (shutdown).
    pub(super) fn fail_all(&mut self, error: Error, outputs: &mut VecDeque<Output>) {
        self.fail_queued(|_| error.clone(), outputs);
        let mut ops: Vec<(u32, OpId)> = self
            .in_flight
            .drain()
            .filter_map(|(id, p)| match p {
                Purpose::User { op, .. }
                | Purpose::Typing { op, .. }
                | Purpose::Unsubscribe { op: Some(op) } => Some((id, op)),
                _ => None,
            })
            .collect();
        ops.sort_unstable();
        for (_, op) in ops {
            outputs.push_back(Output::Done {
                op,
                result: Err(error.clone()),
            });
        }
        for (_, purpose) in self.control.drain(..) {
            if let Purpose::Unsubscribe { op: Some(op) } = purpose {
                outputs.push_back(Output::Done {
                    op,
                    result: Err(error.clone()),
                });
            }
        }
    }
}

fn frame(id: u32, command: Command) -> v1::ClientFrame {
    v1::ClientFrame {
        id,
        command: Some(command),
    }
}

impl Session {
    /// A one-shot user request.
    pub(super) fn request(&mut self, now: Now, op: OpId, command: Command, idempotent: bool) {
        if matches!(self.phase, Phase::Idle | Phase::Stopped) {
            self.done(op, Err(Error::NotConnected));
            return;
        }
        self.requests.queue.push_back(Queued {
            op,
            command,
            idempotent,
            deadline: now.at + self.cfg.request_timeout,
        });
    }

    /// `typing`: live only, throttled.
    pub(super) fn typing(&mut self, now: Now, op: OpId, conversation_id: String, stop: bool) {
        let last = self.requests.typing_sent.get(&conversation_id).copied();
        let send = self.is_connected()
            && match (stop, last) {
                (false, Some(at)) => now.at >= at + TYPING_THROTTLE,
                (false, None) => true,
                (true, Some(at)) => now.at < at + TYPING_EXPIRY,
                (true, None) => false,
            };
        if !send {
            self.done(op, Ok(Reply::Ok(v1::Ok {})));
            return;
        }
        if stop {
            self.requests.typing_sent.remove(&conversation_id);
        } else {
            self.requests
                .typing_sent
                .insert(conversation_id.clone(), now.at);
        }
        let command = Command::Typing(v1::TypingRequest {
            conversation_id,
            stop,
        });
        let deadline = now.at + self.cfg.request_timeout;
        self.control(command, Purpose::Typing { op, deadline });
    }

    /// After a message is sent: the receivers stop showing "typing" for it.
    pub(super) fn typing_done(&mut self, now: Now, conversation_id: &str) {
        if let Some(at) = self.requests.typing_sent.remove(conversation_id) {
            if now.at < at + TYPING_EXPIRY {
                let command = Command::Typing(v1::TypingRequest {
                    conversation_id: conversation_id.to_owned(),
                    stop: true,
                });
                self.control(command, Purpose::Internal);
            }
        }
    }

    /// Queues an internal frame for the next pump.
    pub(super) fn control(&mut self, command: Command, purpose: Purpose) {
        self.requests.control.push_back((command, purpose));
    }

    /// Frames sent outside the pump (the handshake's subscribes) still count.
    pub(super) fn register(&mut self, command: Command, purpose: Purpose) -> v1::ClientFrame {
        let id = self.requests.allocate_id();
        self.requests.bucket.tokens -= 1.0;
        self.requests.in_flight.insert(id, purpose);
        frame(id, command)
    }

    /// Sends what may be sent now, as one batch.
    pub(super) fn pump(&mut self, now: Now) {
        let Phase::Connected { conn } = self.phase else {
            return;
        };
        let mut frames = Vec::new();
        while let Some((command, purpose)) = self.next_to_send(now) {
            let id = self.requests.allocate_id();
            self.requests.in_flight.insert(id, purpose);
            frames.push(frame(id, command));
        }
        self.send_frames(conn, frames);
    }

    pub(super) fn send_frames(&mut self, conn: ConnId, frames: Vec<v1::ClientFrame>) {
        if !frames.is_empty() {
            self.outputs.push_back(Output::Send { conn, frames });
        }
    }

    fn next_to_send(&mut self, now: Now) -> Option<(Command, Purpose)> {
        let waiting = !self.requests.control.is_empty()
            || !self.requests.queue.is_empty()
            || self.outbox.next_ready(now.at).is_some();
        if !waiting || !self.requests.bucket.try_take(now.at) {
            return None;
        }
        if let Some(next) = self.requests.control.pop_front() {
            return Some(next);
        }
        if let Some(q) = self.requests.queue.pop_front() {
            let purpose = Purpose::User {
                op: q.op,
                idempotent: q.idempotent,
                command: q.command.clone(),
                deadline: q.deadline,
            };
            return Some((q.command, purpose));
        }
        self.outbox.take_next(now.at)
    }

    /// When the pump can send what waits, if it is waiting for time.
    pub(super) fn send_deadline(&self) -> Option<Instant> {
        let control = !self.requests.control.is_empty() || !self.requests.queue.is_empty();
        let unsent = self.outbox.first_unsent();
        if control || unsent.is_some_and(|at| at.is_none()) {
            let ready = self.requests.bucket.ready_at();
            return Some(unsent.flatten().map_or(ready, |at| at.max(ready)));
        }
        unsent
            .flatten()
            .map(|at| at.max(self.requests.bucket.ready_at()))
    }

    pub(super) fn request_timers(&mut self, now: Now) {
        let timeout = self.cfg.request_timeout;
        let mut expired = Vec::new();
        self.requests.queue.retain(|q| {
            let keep = q.deadline > now.at;
            if !keep {
                expired.push(q.op);
            }
            keep
        });
        let mut ids: Vec<u32> = self
            .requests
            .in_flight
            .iter()
            .filter(|(_, p)| p.deadline().is_some_and(|d| d <= now.at))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(Purpose::User { op, .. } | Purpose::Typing { op, .. }) =
                self.requests.in_flight.remove(&id)
            {
                expired.push(op);
            }
        }
        for op in expired {
            self.done(op, Err(Error::Timeout(timeout)));
        }
    }

    /// A reply (or error) to a command of the current connection.
    pub(super) fn reply(&mut self, now: Now, id: u32, result: Result<Option<Reply>, v1::Error>) {
        let Some(purpose) = self.requests.in_flight.remove(&id) else {
            tracing::debug!(
                id,
                "reply to no command in flight (timed out, or an older connection)"
            );
            return;
        };
        let result = match result {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(Error::Server {
                code: mkondo_proto::ErrorCode::Internal,
                message: "an empty reply".into(),
                temporary: true,
                retry_after: None,
                reason: String::new(),
            }),
            Err(e) => Err(Error::from_wire(&e)),
        };
        match purpose {
            Purpose::User { op, .. } | Purpose::Typing { op, .. } => {
                if let Ok(reply) = &result {
                    self.observe_reply(reply);
                }
                self.done(op, result);
            }
            Purpose::Send { client_id } => self.send_reply(now, &client_id, result),
            Purpose::Subscribe(conv) => self.subscribe_reply(now, conv, result),
            Purpose::Unsubscribe { op } => {
                if let Some(op) = op {
                    self.done(op, result);
                }
            }
            Purpose::Refresh => self.refresh_reply(
                now,
                result.and_then(|r| match r {
                    Reply::Refresh(r) => Ok(r),
                    other => Err(Error::InvalidArgument(format!(
                        "unexpected reply {}",
                        crate::error::shown(&other)
                    ))),
                }),
            ),
            Purpose::History { conversation_id } => self.fill_reply(now, conversation_id, result),
            Purpose::Internal => {
                if let Err(err) = result {
                    self.emit(Event::Error(err));
                }
            }
        }
    }
}
