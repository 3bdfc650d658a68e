//! The socket.io v4 client side, hand-written over tokio-tungstenite so that one
//! tool drives both servers with the same workload, the same sockets and the
//! same measuring code.
//!
//! Only what the chat workload uses, WebSocket-only (no long-polling upgrade):
//!
//! - engine.io v4: `GET /socket.io/?EIO=4&transport=websocket`; the server opens
//!   with `0{"sid",...,"pingInterval"}`, pings with `2`, we answer `3`;
//!   `1` closes.
//! - socket.io v5 packets inside engine.io messages (`4`): connect to the main
//!   namespace `40{auth}` → `40{"sid"}` or `44{error}`; an event `42[name,
//!   data]`, with an ack id `42<id>[name, data]` answered by `43<id>[value]`;
//!   `41` disconnects.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::mk::ws_config;
use crate::net::Sources;
use crate::recorder::Recorder;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A socket connected to the main namespace and authenticated.
pub struct SioConn {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
}

impl SioConn {
    /// Opens the WebSocket, waits for engine.io's open packet, connects to the
    /// main namespace with `{"token"}` as auth, and waits for the answer.
    pub async fn connect(
        server: SocketAddr,
        sources: &Sources,
        index: usize,
        token: &str,
        recorder: Arc<Recorder>,
    ) -> anyhow::Result<SioConn> {
        let tcp = sources.connect(index, server).await?;
        let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config()))
            .await
            .context("WebSocket handshake")?;
        let open = next_text(&mut ws).await?;
        if !open.starts_with('0') {
            bail!("expected the engine.io open packet, got {open:?}");
        }
        ws.send(Message::text(format!("40{}", json!({ "token": token }))))
            .await?;
        loop {
            let packet = next_text(&mut ws).await?;
            match packet.as_bytes() {
                [b'4', b'0', ..] => break,
                [b'4', b'4', ..] => bail!("connect refused: {}", &packet[2..]),
                b"2" => ws.send(Message::text("3")).await?,
                _ => {}
            }
        }
        let (out, out_rx) = mpsc::unbounded_channel();
        let pending = Pending::default();
        let alive = Arc::new(AtomicBool::new(true));
        tokio::spawn(run(
            ws,
            out_rx,
            index,
            pending.clone(),
            recorder,
            alive.clone(),
        ));
        Ok(SioConn {
            out,
            pending,
            next_id: AtomicU64::new(1),
            alive,
        })
    }

    /// Emits `event` with `data` and an ack id; the receiver yields the ack.
    pub fn start(&self, event: &str, data: Value) -> anyhow::Result<oneshot::Receiver<Value>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        self.out
            .send(format!("42{id}{}", json!([event, data])))
            .map_err(|_| anyhow!("connection closed"))?;
        Ok(rx)
    }

    /// Emits and waits for the ack.
    pub async fn request(&self, event: &str, data: Value) -> anyhow::Result<Value> {
        let rx = self.start(event, data)?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => bail!("connection closed before the ack"),
            Err(_) => bail!("no ack within {REQUEST_TIMEOUT:?}"),
        }
    }

    /// `send` of the chat workload: the ack holds the stored message.
    pub fn send_text(
        &self,
        conversation: &str,
        text: String,
    ) -> anyhow::Result<oneshot::Receiver<Value>> {
        self.start(
            "send",
            json!({ "conversation_id": conversation, "text": text }),
        )
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

async fn next_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> anyhow::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Close(_))) | None => bail!("closed during the handshake"),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .map_err(|_| anyhow!("no answer within {REQUEST_TIMEOUT:?}"))?
}

async fn run<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    mut out_rx: mpsc::UnboundedReceiver<String>,
    me: usize,
    pending: Pending,
    recorder: Arc<Recorder>,
    alive: Arc<AtomicBool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            msg = stream.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                let packet = text.as_str();
                if packet == "2" {
                    if sink.send(Message::text("3")).await.is_err() {
                        break;
                    }
                } else if packet.starts_with("42[\"message\"") {
                    recorder.scan(me, packet.as_bytes());
                } else if let Some(ack) = packet.strip_prefix("43") {
                    let digits = ack.bytes().take_while(u8::is_ascii_digit).count();
                    let id = ack[..digits].parse::<u64>().unwrap_or(0);
                    let value = serde_json::from_str::<Value>(&ack[digits..])
                        .ok()
                        .and_then(|v| v.as_array().and_then(|a| a.first().cloned()))
                        .unwrap_or(Value::Null);
                    let waiter = pending.lock().expect("pending lock").remove(&id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(value);
                    }
                } else if packet.starts_with("41") || packet.starts_with('1') {
                    break;
                }
            }
            out = out_rx.recv() => {
                let Some(packet) = out else { break };
                if sink.send(Message::text(packet)).await.is_err() {
                    break;
                }
            }
        }
    }
    alive.store(false, Ordering::Relaxed);
    pending.lock().expect("pending lock").clear();
    let _ = sink.close().await;
}
