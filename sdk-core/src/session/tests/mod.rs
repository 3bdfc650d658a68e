//! Table and property tests of the session on a virtual clock: the harness plays
//! the driver (it records every output and answers as a server would).

mod connection;
mod delivery;
mod persistence;
mod random;
mod tokens;

use std::{collections::HashMap, time::Duration};

use mkondo_proto::{
    convert::millis_to_timestamp,
    v1::{self, client_frame::Command, push::Push, reply::Result as Reply, server_frame::Body},
};

use super::{Call, ConnId, FetchId, Input, Now, OpId, Output, Phase, Session, SessionConfig};
use crate::error::Error;
use crate::event::{ConnectionState, Event};
use crate::rt::Instant;

/// A session plus everything it said, on a clock that moves only when told.
pub(super) struct Sim {
    pub s: Session,
    pub now: Now,
    pub outputs: Vec<Output>,
    pub next_op: OpId,
}

pub(super) const START_UNIX_MS: i64 = 1_750_000_000_000;

pub(super) fn config() -> SessionConfig {
    SessionConfig {
        token: Some("token-1".into()),
        has_token_provider: true,
        seed: 7,
        ..SessionConfig::default()
    }
}

impl Sim {
    pub fn new(cfg: SessionConfig) -> Self {
        let now = Now {
            at: base_instant(),
            unix_ms: START_UNIX_MS,
        };
        Self {
            s: Session::new(cfg, now),
            now,
            outputs: Vec::new(),
            next_op: 1,
        }
    }

    pub fn input(&mut self, input: Input) {
        self.s.handle(self.now, input);
        while let Some(o) = self.s.poll_output() {
            self.outputs.push(o);
        }
    }

    /// Moves the clock by `d`, firing what falls due (one tick at the end, as a
    /// driver that slept until then would).
    pub fn advance(&mut self, d: Duration) {
        let until = self.now.at + d;
        // Fire every deadline on the way, in order.
        while let Some(next) = self.s.next_deadline() {
            if next > until {
                break;
            }
            self.set_time(next.max(self.now.at));
            self.input(Input::Tick);
            if self.s.next_deadline() == Some(next) {
                break; // a deadline that does not move: avoid spinning
            }
        }
        self.set_time(until);
        self.input(Input::Tick);
    }

    fn set_time(&mut self, at: Instant) {
        let delta = at.saturating_duration_since(self.now.at);
        self.now.at = at;
        self.now.unix_ms += delta.as_millis() as i64;
    }

    pub fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    pub fn events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        self.outputs.retain(|o| match o {
            Output::Event(e) => {
                events.push(e.clone());
                false
            }
            _ => true,
        });
        events
    }

    pub fn call(&mut self, call: Call) -> OpId {
        let op = self.next_op;
        self.next_op += 1;
        self.input(Input::Call { op, call });
        op
    }

    /// The outcome of a call, if it completed (and only once).
    pub fn done(&mut self, op: OpId) -> Option<Result<Reply, Error>> {
        let mut found = None;
        self.outputs.retain(|o| match o {
            Output::Done { op: o_op, result } if *o_op == op => {
                assert!(found.is_none(), "call {op} completed twice");
                found = Some(result.clone());
                false
            }
            _ => true,
        });
        found
    }

    /// The `Open` output: panics unless there is exactly one.
    pub fn opened(&mut self) -> ConnId {
        let opens: Vec<ConnId> = self
            .outputs
            .iter()
            .filter_map(|o| match o {
                Output::Open { conn } => Some(*conn),
                _ => None,
            })
            .collect();
        self.outputs.retain(|o| !matches!(o, Output::Open { .. }));
        assert_eq!(opens.len(), 1, "expected one Open, got {opens:?}");
        opens[0]
    }

    pub fn count_opens(&self) -> usize {
        self.outputs
            .iter()
            .filter(|o| matches!(o, Output::Open { .. }))
            .count()
    }

    pub fn fetches(&mut self) -> Vec<FetchId> {
        let fetches = self
            .outputs
            .iter()
            .filter_map(|o| match o {
                Output::FetchToken { fetch } => Some(*fetch),
                _ => None,
            })
            .collect();
        self.outputs
            .retain(|o| !matches!(o, Output::FetchToken { .. }));
        fetches
    }

    /// Every frame written to `conn` since the last call, in order (one entry per batch).
    pub fn batches(&mut self, conn: ConnId) -> Vec<Vec<v1::ClientFrame>> {
        let mut batches = Vec::new();
        self.outputs.retain(|o| match o {
            Output::Send { conn: c, frames } if *c == conn => {
                batches.push(frames.clone());
                false
            }
            _ => true,
        });
        batches
    }

    pub fn sent(&mut self, conn: ConnId) -> Vec<v1::ClientFrame> {
        self.batches(conn).into_iter().flatten().collect()
    }

    pub fn frames(&mut self, conn: ConnId, frames: Vec<v1::ServerFrame>) {
        self.input(Input::Frames { conn, frames });
    }

    pub fn closed(&mut self, conn: ConnId, code: Option<u16>) {
        self.input(Input::TransportClosed {
            conn,
            code,
            reason: String::new(),
        });
    }

    /// Connect → open → handshake → connected, answering `connect` with `result`.
    /// Returns the connection and the frames sent with `connect` (after it).
    pub fn connect_with(&mut self, result: v1::ConnectResult) -> (ConnId, Vec<v1::ClientFrame>) {
        self.input(Input::Connect);
        self.open_and_handshake(result)
    }

    pub fn open_and_handshake(
        &mut self,
        result: v1::ConnectResult,
    ) -> (ConnId, Vec<v1::ClientFrame>) {
        let conn = self.opened();
        self.input(Input::TransportOpened { conn });
        let mut frames = self.sent(conn);
        assert!(!frames.is_empty(), "nothing sent after open");
        let connect = frames.remove(0);
        assert!(
            matches!(connect.command, Some(Command::Connect(_))),
            "{connect:?}"
        );
        self.frames(conn, vec![reply(connect.id, Reply::Connect(result))]);
        assert_eq!(self.s.state(), ConnectionState::Connected);
        (conn, frames)
    }

    pub fn connect(&mut self) -> ConnId {
        let (conn, _) = self.connect_with(connect_result(None));
        conn
    }

    pub fn phase(&self) -> Phase {
        self.s.phase().clone()
    }
}

pub(super) fn base_instant() -> Instant {
    crate::rt::now()
}

pub(super) fn connect_result(expires_unix_ms: Option<i64>) -> v1::ConnectResult {
    v1::ConnectResult {
        user: Some(v1::User {
            id: "alice".into(),
            ..Default::default()
        }),
        token_expires_at: expires_unix_ms.map(millis_to_timestamp),
        limits: Some(v1::Limits {
            max_frame_bytes: 65536,
            rate_per_second: 20,
            rate_burst: 50,
            ping_interval_ms: 25_000,
            pong_timeout_ms: 10_000,
            replay_limit: 100,
            max_text_bytes: 16384,
            max_upload_bytes: 26_214_400,
        }),
        session_id: "s1".into(),
        ..Default::default()
    }
}

pub(super) fn reply(id: u32, result: Reply) -> v1::ServerFrame {
    v1::ServerFrame {
        id,
        body: Some(Body::Reply(v1::Reply {
            result: Some(result),
        })),
    }
}

pub(super) fn error(id: u32, code: &str, temporary: bool) -> v1::ServerFrame {
    v1::ServerFrame {
        id,
        body: Some(Body::Error(v1::Error {
            code: code.into(),
            message: format!("{code} for the test"),
            temporary,
            ..Default::default()
        })),
    }
}

pub(super) fn push(p: Push) -> v1::ServerFrame {
    v1::ServerFrame {
        id: 0,
        body: Some(Body::Push(v1::Push { push: Some(p) })),
    }
}

pub(super) fn disconnect(code: u16) -> v1::ServerFrame {
    push(Push::Disconnect(v1::Disconnect {
        code: u32::from(code),
        reason: format!("code {code}"),
        reconnect: mkondo_proto::DisconnectCode::should_reconnect(code),
    }))
}

pub(super) fn message(conv: &str, seq: u64, sender: &str) -> v1::Message {
    v1::Message {
        id: format!("m-{conv}-{seq}"),
        conversation_id: conv.into(),
        seq,
        sender_id: sender.into(),
        kind: "user".into(),
        text: format!("message {seq}"),
        ..Default::default()
    }
}

pub(super) fn ok() -> Reply {
    Reply::Ok(v1::Ok {})
}

/// The state changes among `events`, as (old, new, code).
pub(super) fn state_changes(events: &[Event]) -> Vec<(ConnectionState, ConnectionState, u16)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StateChanged { old, new, code, .. } => Some((*old, *new, *code)),
            _ => None,
        })
        .collect()
}

/// The seqs of message events, per conversation.
pub(super) fn delivered(events: &[Event]) -> HashMap<String, Vec<u64>> {
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    for e in events {
        if let Event::Message(m) = e {
            out.entry(m.conversation_id.clone())
                .or_default()
                .push(m.seq);
        }
    }
    out
}
