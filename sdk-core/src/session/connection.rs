//! The connection's lifecycle: a table of `(phase, input)` transitions.
//!
//! Phases refine the public state: `Idle` and `Stopped` are `disconnected`
//! (`Stopped` after a terminal code: nothing retries until `connect()`);
//! `Backoff`, `Token`, `Opening` and `Handshake` are `connecting`, each with a
//! deadline; `Connected` is `connected`. `Shut` ends everything.

use std::time::Duration;

use mkondo_proto::{
    convert::timestamp_to_millis,
    v1::{self, client_frame::Command},
    DisconnectCode, ErrorCode, Reason,
};

use super::{ConnId, Input, Now, Session};
use crate::error::Error;
use crate::event::{codes, AppState, ConnectionState, Event};
use crate::rt::Instant;

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Disconnected, by choice (never connected, or `disconnect()`).
    Idle,
    /// Disconnected for good after a terminal code; `connect()` starts over.
    Stopped,
    /// Waiting to retry.
    Backoff {
        until: Instant,
    },
    /// Waiting for the token provider (its fetch has a deadline).
    Token,
    /// The transport is opening.
    Opening {
        conn: ConnId,
        deadline: Instant,
    },
    /// `connect` was sent; waiting for its reply.
    Handshake {
        conn: ConnId,
        id: u32,
        deadline: Instant,
    },
    Connected {
        conn: ConnId,
    },
    /// `shutdown()`: nothing more happens.
    Shut,
}

impl Phase {
    pub fn state(&self) -> ConnectionState {
        match self {
            Self::Idle | Self::Stopped | Self::Shut => ConnectionState::Disconnected,
            Self::Backoff { .. } | Self::Token | Self::Opening { .. } | Self::Handshake { .. } => {
                ConnectionState::Connecting
            }
            Self::Connected { .. } => ConnectionState::Connected,
        }
    }

    /// The live transport, if any.
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Self::Opening { conn, .. }
            | Self::Handshake { conn, .. }
            | Self::Connected { conn } => Some(*conn),
            _ => None,
        }
    }
}

/// An input the current phase has no rule for (typically a late callback).
#[derive(Debug)]
struct Unexpected(String);

impl Session {
    pub(super) fn is_current(&self, conn: ConnId) -> bool {
        self.phase.conn() == Some(conn)
    }

    /// The transition table of connection-level inputs.
    pub(super) fn connection_input(&mut self, now: Now, input: Input) {
        if let Err(Unexpected(what)) = self.transition(now, input) {
            tracing::debug!(phase = ?self.phase, "ignored: {what}");
        }
    }

    fn transition(&mut self, now: Now, input: Input) -> Result<(), Unexpected> {
        match (&self.phase, input) {
            (Phase::Shut, input) => Err(Unexpected(format!(
                "{} after shutdown",
                crate::error::shown(&input)
            ))),
            (_, Input::Shutdown) => {
                self.shutdown();
                Ok(())
            }
            (Phase::Idle | Phase::Stopped, Input::Connect) => {
                self.backoff.reset();
                self.announce(
                    ConnectionState::Connecting,
                    codes::CONNECT_CALLED,
                    "connect called",
                );
                self.start_attempt(now);
                Ok(())
            }
            // Idempotent: already connecting or connected.
            (_, Input::Connect) => Ok(()),
            (Phase::Idle | Phase::Stopped, Input::Disconnect) => Ok(()),
            (_, Input::Disconnect) => {
                self.go_down(
                    now,
                    Phase::Idle,
                    codes::DISCONNECT_CALLED,
                    "disconnect called",
                );
                Ok(())
            }
            (Phase::Opening { conn, .. }, Input::TransportOpened { conn: opened })
                if *conn == opened =>
            {
                self.handshake(now, opened);
                Ok(())
            }
            (phase, Input::TransportClosed { conn, code, reason })
                if phase.conn() == Some(conn) =>
            {
                let (code, reason) = match self.pending_disconnect.take() {
                    Some(pushed) => pushed,
                    None => (
                        code.unwrap_or(codes::TRANSPORT_CLOSED),
                        if reason.is_empty() {
                            "transport closed".into()
                        } else {
                            reason
                        },
                    ),
                };
                self.lost(now, code, &reason);
                Ok(())
            }
            (Phase::Backoff { .. }, Input::NetworkAvailable(true)) => {
                self.network_available = true;
                self.start_attempt(now);
                Ok(())
            }
            (_, Input::NetworkAvailable(available)) => {
                self.network_available = available;
                Ok(())
            }
            (_, Input::Tick) => Ok(()),
            (_, input) => Err(Unexpected(crate::error::shown(&input))),
        }
    }

    pub(super) fn set_app_state(&mut self, now: Now, state: AppState) {
        let was = std::mem::replace(&mut self.app_state, state);
        if was == state {
            return;
        }
        match (&self.phase, state) {
            (Phase::Connected { .. }, _) => {
                let command = Command::AppState(v1::AppStateRequest {
                    state: state.as_str().into(),
                });
                self.control(command, super::requests::Purpose::Internal);
            }
            // Coming back to the foreground: no reason to keep waiting.
            (Phase::Backoff { .. }, AppState::Foreground) => self.start_attempt(now),
            _ => {}
        }
    }

    /// Starts one connection attempt: with the token in hand, or by asking for one.
    pub(super) fn start_attempt(&mut self, now: Now) {
        if self.tokens.usable(now.at) {
            let conn = self.next_conn;
            self.next_conn += 1;
            self.pending_disconnect = None;
            self.phase = Phase::Opening {
                conn,
                deadline: now.at + self.cfg.request_timeout,
            };
            self.outputs.push_back(super::Output::Open { conn });
        } else if self.tokens.has_provider() {
            self.phase = Phase::Token;
            self.fetch_token_for_connect(now);
        } else {
            self.go_down(
                now,
                Phase::Stopped,
                codes::NO_TOKEN,
                "no token and no token provider",
            );
        }
    }

    fn handshake(&mut self, now: Now, conn: ConnId) {
        let token = self.tokens.current().unwrap_or_default().to_owned();
        let id = self.requests.allocate_id();
        let connect = v1::ClientFrame {
            id,
            command: Some(Command::Connect(v1::ConnectRequest {
                token,
                app_state: self.app_state.as_str().into(),
                resume: self.recovery.positions(),
                conversations_limit: self.cfg.conversations_limit,
            })),
        };
        self.phase = Phase::Handshake {
            conn,
            id,
            deadline: now.at + self.cfg.request_timeout,
        };
        self.last_received = now.at;
        self.requests.reset_bucket(now.at);
        // Every wanted subscription leaves in the same message as `connect`.
        let mut frames = vec![connect];
        frames.extend(self.subscribe_frames(now));
        self.outputs.push_back(super::Output::Send { conn, frames });
    }

    /// The reply to `connect`: an answer or an error.
    pub(super) fn handshake_reply(
        &mut self,
        now: Now,
        conn: ConnId,
        result: Result<v1::ConnectResult, v1::Error>,
    ) {
        match result {
            Ok(reply) => {
                self.phase = Phase::Connected { conn };
                self.backoff.reset();
                if let Some(limits) = &reply.limits {
                    let ping = u64::from(limits.ping_interval_ms);
                    let pong = u64::from(limits.pong_timeout_ms);
                    if ping > 0 {
                        self.liveness = Duration::from_millis(ping + pong.max(1000));
                    }
                    self.requests
                        .set_rate(limits.rate_per_second, limits.rate_burst, now.at);
                }
                let expires = reply.token_expires_at.as_ref().map(timestamp_to_millis);
                self.tokens.connected(now, expires);
                let user = reply
                    .user
                    .as_ref()
                    .map(|u| u.id.clone())
                    .unwrap_or_default();
                if self.cfg.store.as_ref().is_some_and(|s| s.user_id != user) {
                    self.store_not_mine(&user);
                }
                self.cache.lock().unwrap().connected(&reply);
                self.recovery.baseline(&reply.conversations);
                self.announce(ConnectionState::Connected, codes::CONNECTED, "connected");
                for recovered in reply.recovered {
                    self.recover(now, recovered);
                }
                for n in reply.notifications {
                    self.emit(Event::Notification(n));
                }
            }
            Err(err) => {
                let code = ErrorCode::parse(&err.code);
                // The server closes with the same code, from the same table.
                let disconnect = DisconnectCode::for_refusal(code, Reason::parse(&err.reason));
                self.outputs.push_back(super::Output::Close { conn });
                let reason = format!("{}: {}", err.code, err.message);
                self.lost(now, disconnect.code(), &reason);
            }
        }
    }

    /// The transport is gone (closed, failed, timed out or rejected): retry or stop.
    pub(super) fn lost(&mut self, now: Now, code: u16, reason: &str) {
        // An attempt that never reached `connected` changes no state (it stays
        // `connecting`): its reason is told as an error event instead.
        if matches!(self.phase, Phase::Opening { .. }) {
            self.emit(Event::Error(Error::ConnectFailed(reason.to_owned())));
        }
        if !DisconnectCode::should_reconnect(code) {
            self.go_down(now, Phase::Stopped, code, reason);
            return;
        }
        if code == DisconnectCode::TokenExpired.code() {
            self.tokens.rejected_as_expired();
        }
        self.connection_gone(now);
        self.schedule_retry(now, code, reason);
    }

    pub(super) fn schedule_retry(&mut self, now: Now, code: u16, reason: &str) {
        let delay = self.backoff.next_delay(&mut self.rng);
        self.phase = Phase::Backoff {
            until: now.at + delay,
        };
        self.announce(ConnectionState::Connecting, code, reason);
    }

    /// Ends the connection for good (`Stopped`) or by choice (`Idle`).
    pub(super) fn go_down(&mut self, now: Now, to: Phase, code: u16, reason: &str) {
        if let Some(conn) = self.phase.conn() {
            self.outputs.push_back(super::Output::Close { conn });
        }
        self.connection_gone(now);
        self.tokens.orphan_fetch();
        self.phase = to;
        self.requests
            .fail_queued(|_| Error::NotConnected, &mut self.outputs);
        self.announce(ConnectionState::Disconnected, code, reason);
    }

    /// What every end of a transport does: in-flight work is failed or put back.
    fn connection_gone(&mut self, now: Now) {
        self.pending_disconnect = None;
        self.tokens.connection_gone();
        self.requests.connection_gone(now.at, &mut self.outputs);
        self.outbox.connection_gone();
        self.recovery.connection_gone();
        let changes = self.subs.connection_gone();
        for event in changes {
            self.emit(event);
        }
    }

    fn shutdown(&mut self) {
        if let Some(conn) = self.phase.conn() {
            self.outputs.push_back(super::Output::Close { conn });
        }
        self.phase = super::Phase::Shut;
        let mut outputs = std::mem::take(&mut self.outputs);
        // No event after shutdown: only completions (every call ends once).
        outputs.retain(|o| !matches!(o, super::Output::Event(_)));
        self.requests.fail_all(Error::Shutdown, &mut outputs);
        for op in self.outbox.drain_ops() {
            outputs.push_back(super::Output::Done {
                op,
                result: Err(Error::Shutdown),
            });
        }
        for op in self.subs.drain_waiters() {
            outputs.push_back(super::Output::Done {
                op,
                result: Err(Error::Shutdown),
            });
        }
        self.outputs = outputs;
    }

    /// One event per change of the public state.
    pub(super) fn announce(&mut self, new: ConnectionState, code: u16, reason: &str) {
        let old = self.announced;
        if old == new {
            return;
        }
        self.announced = new;
        self.emit(Event::StateChanged {
            old,
            new,
            code,
            reason: reason.to_owned(),
        });
    }

    pub(super) fn phase_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Backoff { until } => Some(*until),
            Phase::Opening { deadline, .. } | Phase::Handshake { deadline, .. } => Some(*deadline),
            Phase::Connected { .. } => Some(self.last_received + self.liveness),
            Phase::Idle | Phase::Stopped | Phase::Token | Phase::Shut => None,
        }
    }

    pub(super) fn phase_timers(&mut self, now: Now) {
        match self.phase.clone() {
            Phase::Backoff { until } if until <= now.at => self.start_attempt(now),
            Phase::Opening { conn, deadline } | Phase::Handshake { conn, deadline, .. }
                if deadline <= now.at =>
            {
                self.outputs.push_back(super::Output::Close { conn });
                self.lost(
                    now,
                    codes::CONNECT_TIMEOUT,
                    "no connection within the request timeout",
                );
            }
            Phase::Connected { conn } if self.last_received + self.liveness <= now.at => {
                self.outputs.push_back(super::Output::Close { conn });
                self.lost(
                    now,
                    codes::NO_PING,
                    "nothing received within the ping interval and grace",
                );
            }
            _ => {}
        }
    }

    /// A frame of the current transport.
    pub(super) fn frame(&mut self, now: Now, conn: ConnId, frame: v1::ServerFrame) {
        use v1::server_frame::Body;
        if let Phase::Handshake { id, .. } = self.phase {
            if frame.id == id && frame.id != 0 {
                let result = match frame.body {
                    Some(Body::Reply(v1::Reply {
                        result: Some(v1::reply::Result::Connect(reply)),
                    })) => Ok(reply),
                    Some(Body::Error(err)) => Err(err),
                    other => Err(v1::Error {
                        code: "internal".into(),
                        message: format!(
                            "unexpected answer to connect: {}",
                            crate::error::shown(&other)
                        ),
                        ..Default::default()
                    }),
                };
                self.handshake_reply(now, conn, result);
                return;
            }
        }
        match frame.body {
            Some(Body::Push(v1::Push { push: Some(push) })) => self.push(now, conn, push),
            Some(Body::Reply(reply)) if frame.id != 0 => {
                self.reply(now, frame.id, Ok(reply.result));
            }
            Some(Body::Error(err)) if frame.id != 0 => self.reply(now, frame.id, Err(err)),
            Some(Body::Error(err)) => self.emit(Event::Error(Error::from_wire(&err))),
            other => tracing::debug!("ignored frame: {other:?}"),
        }
    }
}
