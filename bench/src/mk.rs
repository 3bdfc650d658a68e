//! A lean Mkondo real-time client for load: thousands of them share two cores
//! with the server under test, so each connection is one task that owns its
//! socket, answers server pings, matches replies to requests, and hands pushes
//! to the [`Recorder`] as raw bytes (see `recorder.rs` for why not decoded).
//!
//! It speaks all three transports with the real schema and codec from
//! `mkondo-proto`: WebSocket + JSON, WebSocket + protobuf, and gRPC.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _};
use futures::{SinkExt, StreamExt};
use mkondo_proto::{
    codec::{self, Encoding},
    prost::Message as _,
    v1::{self, client_frame::Command, push::Push, server_frame::Body, ClientFrame, ServerFrame},
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_tungstenite::tungstenite::{
    client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig, Message,
};

use crate::net::Sources;
use crate::recorder::Recorder;

/// How long a request waits for its reply before the run counts it as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One of Mkondo's three real-time transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Wire {
    WsJson,
    WsProto,
    Grpc,
}

impl Wire {
    pub const ALL: [Wire; 3] = [Wire::WsJson, Wire::WsProto, Wire::Grpc];

    pub fn name(self) -> &'static str {
        match self {
            Wire::WsJson => "ws-json",
            Wire::WsProto => "ws-proto",
            Wire::Grpc => "grpc",
        }
    }

    pub fn parse(s: &str) -> Option<Wire> {
        Wire::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// The client's socket buffers. tungstenite reserves 128 KiB per read buffer
/// by default; twenty thousand connections in one generator need far less.
/// The name the `--tls` certificate is for.
fn localhost() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("localhost").expect("a valid name")
}

pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Body>>>>;

/// A connected, authenticated Mkondo client.
pub struct MkConn {
    out: mpsc::UnboundedSender<ClientFrame>,
    pending: Pending,
    next_id: AtomicU32,
    alive: Arc<AtomicBool>,
}

impl MkConn {
    /// Opens a connection (from connection `index`'s source address) and sends
    /// `connect` with `token`; returns once the server accepted it.
    pub async fn connect(
        wire: Wire,
        server: SocketAddr,
        sources: &Sources,
        index: usize,
        token: &str,
        recorder: Arc<Recorder>,
    ) -> anyhow::Result<MkConn> {
        let (out, out_rx) = mpsc::unbounded_channel();
        let pending = Pending::default();
        let alive = Arc::new(AtomicBool::new(true));
        let reader = Reader {
            me: index,
            pending: pending.clone(),
            recorder,
            out: out.downgrade(),
            alive: alive.clone(),
        };
        match wire {
            Wire::WsJson | Wire::WsProto => {
                let enc = if wire == Wire::WsJson {
                    Encoding::Json
                } else {
                    Encoding::Protobuf
                };
                let tcp = sources.connect(index, server).await?;
                let scheme = if crate::tls::get().is_some() {
                    "wss"
                } else {
                    "ws"
                };
                let mut request = format!("{scheme}://localhost:{}/v1/realtime", server.port())
                    .into_client_request()?;
                request.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_static(enc.subprotocol()),
                );
                match crate::tls::get() {
                    Some(tls) => {
                        let stream = tokio_rustls::TlsConnector::from(tls.http1.clone())
                            .connect(localhost(), tcp)
                            .await
                            .context("TLS handshake")?;
                        let (ws, _) = tokio_tungstenite::client_async_with_config(
                            request,
                            stream,
                            Some(ws_config()),
                        )
                        .await
                        .context("WebSocket handshake")?;
                        tokio::spawn(run_ws(ws, enc, out_rx, reader));
                    }
                    None => {
                        let (ws, _) = tokio_tungstenite::client_async_with_config(
                            request,
                            tcp,
                            Some(ws_config()),
                        )
                        .await
                        .context("WebSocket handshake")?;
                        tokio::spawn(run_ws(ws, enc, out_rx, reader));
                    }
                }
            }
            Wire::Grpc => {
                let channel = match crate::tls::get() {
                    None => tonic::transport::Endpoint::from_shared(format!("http://{server}"))?
                        .local_address(Some(sources.ip(index)))
                        .tcp_nodelay(true)
                        .connect()
                        .await
                        .context("gRPC connection")?,
                    Some(tls) => {
                        let connector = tokio_rustls::TlsConnector::from(tls.h2.clone());
                        let tcp = sources.connect(index, server).await?;
                        let slot = Arc::new(std::sync::Mutex::new(Some(tcp)));
                        // One connection per channel: the connector hands over
                        // the TCP stream opened from this connection's source.
                        let connect = tower::service_fn(move |_: tonic::transport::Uri| {
                            let (connector, slot) = (connector.clone(), slot.clone());
                            async move {
                                let tcp = slot.lock().unwrap().take().ok_or_else(|| {
                                    std::io::Error::other("the connection was used already")
                                })?;
                                let stream = connector.connect(localhost(), tcp).await?;
                                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                            }
                        });
                        tonic::transport::Endpoint::from_shared(format!(
                            "https://localhost:{}",
                            server.port()
                        ))?
                        .connect_with_connector(connect)
                        .await
                        .context("gRPC connection over TLS")?
                    }
                };
                let mut grpc = v1::realtime_client::RealtimeClient::new(channel);
                tokio::spawn(async move {
                    // The server may hold the response headers until `connect`
                    // arrives, so the call is awaited here, not before returning.
                    let stream = UnboundedReceiverStream::new(out_rx);
                    match grpc.connect(stream).await {
                        Ok(response) => run_grpc(response.into_inner(), reader).await,
                        Err(_) => reader.close(),
                    }
                });
            }
        }
        let conn = MkConn {
            out,
            pending,
            next_id: AtomicU32::new(1),
            alive,
        };
        let connect = v1::ConnectRequest {
            token: token.to_owned(),
            ..Default::default()
        };
        match conn.request(Command::Connect(connect)).await? {
            Body::Reply(_) => Ok(conn),
            other => bail!("connect refused: {other:?}"),
        }
    }

    /// Sends a command and waits for its reply (or error) frame.
    pub async fn request(&self, command: Command) -> anyhow::Result<Body> {
        let rx = self.start(command)?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(_)) => bail!("connection closed before the reply"),
            Err(_) => bail!("no reply within {REQUEST_TIMEOUT:?}"),
        }
    }

    /// Sends a command now; the receiver yields its reply.
    pub fn start(&self, command: Command) -> anyhow::Result<oneshot::Receiver<Body>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        self.out
            .send(ClientFrame {
                id,
                command: Some(command),
            })
            .map_err(|_| anyhow!("connection closed"))?;
        Ok(rx)
    }

    /// Sends `text` to a conversation; the receiver yields the server's answer.
    pub fn send_text(
        &self,
        conversation: &str,
        text: String,
    ) -> anyhow::Result<oneshot::Receiver<Body>> {
        self.start(Command::Send(v1::SendRequest {
            conversation_id: conversation.to_owned(),
            text,
            ..Default::default()
        }))
    }

    /// Whether the connection is still open.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

/// What every transport's read loop shares.
struct Reader {
    me: usize,
    pending: Pending,
    recorder: Arc<Recorder>,
    // Weak, so that dropping the [`MkConn`] ends the write side and closes
    // the connection even though the reader still answers pings.
    out: mpsc::WeakUnboundedSender<ClientFrame>,
    alive: Arc<AtomicBool>,
}

impl Reader {
    fn frame(&self, frame: ServerFrame) {
        match frame.body {
            Some(Body::Push(v1::Push {
                push: Some(Push::Ping(_)),
            })) => {
                if let Some(out) = self.out.upgrade() {
                    let _ = out.send(ClientFrame {
                        id: 0,
                        command: Some(Command::Pong(v1::Pong {})),
                    });
                }
            }
            Some(Body::Push(_)) | None => {}
            Some(body) => {
                let waiter = self.pending.lock().expect("pending lock").remove(&frame.id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(body);
                }
            }
        }
    }

    /// One WebSocket message: a batch of frames. Pushes are only scanned for
    /// benchmark markers; replies and pings are decoded.
    fn message(&self, enc: Encoding, data: &[u8]) {
        match enc {
            Encoding::Json => {
                for line in data.split(|&b| b == b'\n') {
                    if line.starts_with(b"{\"push\":{\"message\"") {
                        self.recorder.scan(self.me, line);
                    } else if line.starts_with(b"{\"push\"")
                        && !line.starts_with(b"{\"push\":{\"ping\"")
                    {
                        // Other pushes (read, presence …) carry nothing to time.
                    } else if let Ok(frame) = serde_json::from_slice::<ServerFrame>(line) {
                        self.frame(frame);
                    }
                }
            }
            Encoding::Protobuf => {
                let mut rest = data;
                while !rest.is_empty() {
                    match ServerFrame::decode_length_delimited(&mut rest) {
                        Ok(frame) => self.push_or_frame(frame),
                        Err(_) => break,
                    }
                }
            }
        }
    }

    fn push_or_frame(&self, frame: ServerFrame) {
        if let Some(Body::Push(v1::Push {
            push: Some(Push::Message(m)),
        })) = &frame.body
        {
            self.recorder.scan(self.me, m.text.as_bytes());
        } else {
            self.frame(frame);
        }
    }

    fn close(&self) {
        self.alive.store(false, Ordering::Relaxed);
        // Dropping the waiters fails their requests at once.
        self.pending.lock().expect("pending lock").clear();
    }
}

async fn run_ws<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    enc: Encoding,
    mut out_rx: mpsc::UnboundedReceiver<ClientFrame>,
    reader: Reader,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => reader.message(enc, text.as_bytes()),
                Some(Ok(Message::Binary(data))) => reader.message(enc, &data),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            frame = out_rx.recv() => {
                let Some(frame) = frame else { break };
                let Ok(bytes) = codec::encode(enc, &frame) else { continue };
                let msg = match enc {
                    Encoding::Json => match String::from_utf8(bytes.to_vec()) {
                        Ok(text) => Message::text(text),
                        Err(_) => continue,
                    },
                    Encoding::Protobuf => Message::binary(bytes),
                };
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        }
    }
    reader.close();
    let _ = sink.close().await;
}

async fn run_grpc(mut stream: tonic::Streaming<ServerFrame>, reader: Reader) {
    while let Ok(Some(frame)) = stream.message().await {
        reader.push_or_frame(frame);
    }
    reader.close();
}

/// Reads the error out of a reply body, for reporting.
pub fn error_code(body: &Body) -> Option<&str> {
    match body {
        Body::Error(e) => Some(e.code.as_str()),
        _ => None,
    }
}

/// How long the server asked us to wait, when it rate-limited a command.
pub fn retry_after(body: &Body) -> Option<Duration> {
    match body {
        Body::Error(e) if e.code == "rate_limited" => {
            Some(Duration::from_millis(u64::from(e.retry_after_ms.max(10))))
        }
        _ => None,
    }
}
