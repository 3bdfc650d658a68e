//! One face for every server's clients, so that every scenario is written once
//! and runs the same workload against Mkondo (three transports), socket.io and
//! the bare baseline.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use mkondo_proto::v1::{self, client_frame::Command, server_frame::Body};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::mk::{self, MkConn, Wire};
use crate::net::Sources;
use crate::recorder::Recorder;
use crate::sio::SioConn;

/// What a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Target {
    Mkondo(Wire),
    SocketIo,
    /// `mkondo-baseline`: the transport floor, spoken to with Mkondo's own
    /// WebSocket JSON client.
    Baseline,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Mkondo(w) => w.name(),
            Target::SocketIo => "socket.io",
            Target::Baseline => "baseline",
        }
    }
}

pub enum Conn {
    Mk(MkConn),
    Sio(SioConn),
}

/// The answer to a `send`, still to come.
pub enum AckRx {
    Mk(oneshot::Receiver<Body>),
    Sio(oneshot::Receiver<Value>),
}

/// How a `send` ended.
#[derive(Debug)]
pub enum Outcome {
    Stored,
    RateLimited(Duration),
    Failed(String),
}

/// How long an answer may take before the send counts as failed.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

impl AckRx {
    pub async fn outcome(self) -> Outcome {
        tokio::time::timeout(ACK_TIMEOUT, self.wait())
            .await
            .unwrap_or_else(|_| Outcome::Failed("no answer within 30 s".into()))
    }

    async fn wait(self) -> Outcome {
        match self {
            AckRx::Mk(rx) => match rx.await {
                Ok(body) => match (mk::retry_after(&body), mk::error_code(&body)) {
                    (Some(wait), _) => Outcome::RateLimited(wait),
                    (None, Some(code)) => Outcome::Failed(code.to_owned()),
                    (None, None) => Outcome::Stored,
                },
                Err(_) => Outcome::Failed("closed".into()),
            },
            AckRx::Sio(rx) => match rx.await {
                Ok(v) if v.get("message").is_some() => Outcome::Stored,
                Ok(v) => Outcome::Failed(v.to_string()),
                Err(_) => Outcome::Failed("closed".into()),
            },
        }
    }
}

impl Conn {
    pub async fn open(
        target: Target,
        server: SocketAddr,
        sources: &Sources,
        index: usize,
        token: &str,
        recorder: Arc<Recorder>,
    ) -> anyhow::Result<Conn> {
        Ok(match target {
            Target::Mkondo(wire) => {
                Conn::Mk(MkConn::connect(wire, server, sources, index, token, recorder).await?)
            }
            Target::SocketIo => {
                Conn::Sio(SioConn::connect(server, sources, index, token, recorder).await?)
            }
            Target::Baseline => Conn::Mk(
                MkConn::connect(Wire::WsJson, server, sources, index, token, recorder).await?,
            ),
        })
    }

    /// Puts the connection in `room` on the baseline, which has no
    /// conversations to add members to: there, `subscribe` is the join.
    pub async fn join_baseline_room(&self, room: &str) -> anyhow::Result<()> {
        let Conn::Mk(conn) = self else {
            anyhow::bail!("not a baseline connection")
        };
        let subscribe = v1::SubscribeRequest {
            conversation_id: room.to_owned(),
        };
        match conn.request(Command::Subscribe(subscribe)).await? {
            Body::Reply(_) => Ok(()),
            other => anyhow::bail!("subscribe to {room} refused: {other:?}"),
        }
    }

    pub fn send_text(&self, conversation: &str, text: String) -> anyhow::Result<AckRx> {
        Ok(match self {
            Conn::Mk(c) => AckRx::Mk(c.send_text(conversation, text)?),
            Conn::Sio(c) => AckRx::Sio(c.send_text(conversation, text)?),
        })
    }

    pub fn is_alive(&self) -> bool {
        match self {
            Conn::Mk(c) => c.is_alive(),
            Conn::Sio(c) => c.is_alive(),
        }
    }
}

/// A progress bar for `len` steps of `what` (hidden when not on a terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {per_sec} {msg}")
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// Handshakes in flight at once while opening many connections: enough to
/// keep both servers busy, few enough not to overflow their accept queues.
const PARALLEL_OPENS: usize = 256;

/// Opens connections `0..n` (`token(i)` each), [`PARALLEL_OPENS`] at a time.
/// Returns the connections in index order, `None` where one failed, and the
/// first failure's reason.
pub async fn open_all(
    target: Target,
    server: SocketAddr,
    sources: Sources,
    n: usize,
    token: impl Fn(usize) -> String,
    recorder: Arc<Recorder>,
    what: &str,
) -> (Vec<Option<Conn>>, Option<String>) {
    let bar = progress(n as u64, what);
    let tokens: Vec<String> = (0..n).map(token).collect();
    let results: Vec<(usize, anyhow::Result<Conn>)> =
        futures::stream::iter(tokens.into_iter().enumerate())
            .map(|(i, token)| {
                let recorder = recorder.clone();
                let bar = bar.clone();
                async move {
                    let conn = Conn::open(target, server, &sources, i, &token, recorder).await;
                    bar.inc(1);
                    (i, conn)
                }
            })
            .buffer_unordered(PARALLEL_OPENS)
            .collect()
            .await;
    bar.finish_and_clear();
    let mut conns: Vec<Option<Conn>> = (0..n).map(|_| None).collect();
    let mut first_error = None;
    for (i, result) in results {
        match result {
            Ok(conn) => conns[i] = Some(conn),
            Err(e) => {
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    (conns, first_error)
}
