//! A real-time client over any of the three transports, with the same API.
//!
//! A background task reads every frame: replies go to the command that waits for
//! them (matched by id), pushes are queued in order, server pings are answered
//! with a pong, and a `disconnect` push is kept for [`Client::wait_closed`].

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use mkondo_proto::{
    codec::{self, Encoding},
    v1::{
        self, client_frame::Command, push::Push as PushKind, reply::Result as ReplyResult,
        server_frame::Body, ClientFrame, ServerFrame,
    },
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_tungstenite::tungstenite::{
    self, client::IntoClientRequest, http::HeaderValue, protocol::CloseFrame, Message,
};

use crate::WAIT;

/// How a client talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// WebSocket, subprotocol `mkondo.v1.json`: JSON text frames.
    WsJson,
    /// WebSocket, subprotocol `mkondo.v1.proto`: length-delimited protobuf binary frames.
    WsProto,
    /// gRPC `mkondo.v1.Realtime/Connect`: one frame per stream message.
    Grpc,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::WsJson, Transport::WsProto, Transport::Grpc];

    pub fn encoding(self) -> Option<Encoding> {
        match self {
            Transport::WsJson => Some(Encoding::Json),
            Transport::WsProto => Some(Encoding::Protobuf),
            Transport::Grpc => None,
        }
    }
}

/// How the harness client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Answer server pings with a pong (a well-behaved client does).
    pub auto_pong: bool,
    /// WebSocket subprotocol to ask for; `None` asks for none (the server's default,
    /// JSON, applies). Defaults to the transport's own.
    pub subprotocol: Option<String>,
}

impl ClientOptions {
    pub fn for_transport(transport: Transport) -> Self {
        ClientOptions {
            auto_pong: true,
            subprotocol: transport.encoding().map(|e| e.subprotocol().to_owned()),
        }
    }
}

/// A WebSocket message written as is, bypassing the codec.
#[derive(Debug, Clone)]
pub enum RawMessage {
    Text(String),
    Binary(Vec<u8>),
}

/// How a connection ended.
#[derive(Debug, Clone, Default)]
pub struct Closed {
    /// The `disconnect` push received before the end, if any.
    pub disconnect: Option<v1::Disconnect>,
    /// The WebSocket close code, if the server sent a close frame.
    pub close_code: Option<u16>,
    pub close_reason: String,
    /// The gRPC status the stream ended with, if not OK.
    pub grpc_status: Option<String>,
}

impl Closed {
    /// The disconnect code: the push's, else the WebSocket close frame's.
    pub fn code(&self) -> Option<u32> {
        self.disconnect
            .as_ref()
            .map(|d| d.code)
            .or(self.close_code.map(u32::from))
    }
}

enum Outbound {
    Frame(ClientFrame),
    Raw(RawMessage),
    Close,
}

#[derive(Default)]
struct Pending {
    closed: bool,
    waiting: HashMap<u32, oneshot::Sender<(u64, ServerFrame)>>,
}

struct Shared {
    pending: Mutex<Pending>,
    auto_pong: AtomicBool,
    pings: AtomicU64,
    frames: AtomicU64,
    /// Anything the server sent that the harness could not decode: a server bug.
    violations: Mutex<Vec<String>>,
}

/// A real-time session with the server. Dropping it drops the connection.
pub struct Client {
    pub transport: Transport,
    out: mpsc::UnboundedSender<Outbound>,
    shared: Arc<Shared>,
    pushes: tokio::sync::Mutex<mpsc::UnboundedReceiver<(u64, PushKind)>>,
    unrouted: tokio::sync::Mutex<mpsc::UnboundedReceiver<ServerFrame>>,
    closed: watch::Receiver<Option<Closed>>,
    next_id: AtomicU32,
    connect_index: AtomicU64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The error a command gets when the connection closed before its reply came.
pub const CONNECTION_CLOSED: &str = "connection_closed";

/// The upgrade request for `/v1/realtime`, asking for `subprotocol` if given.
pub(crate) fn realtime_request(
    addr: impl std::fmt::Display,
    subprotocol: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = format!("ws://{addr}/v1/realtime")
        .into_client_request()
        .unwrap();
    if let Some(sp) = subprotocol {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(sp).unwrap());
    }
    request
}

fn closed_error() -> v1::Error {
    v1::Error {
        code: CONNECTION_CLOSED.into(),
        message: "the connection closed before the reply arrived".into(),
        ..Default::default()
    }
}

struct Reader {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Outbound>,
    pushes: mpsc::UnboundedSender<(u64, PushKind)>,
    unrouted: mpsc::UnboundedSender<ServerFrame>,
    closed: watch::Sender<Option<Closed>>,
    ending: Closed,
}

impl Reader {
    fn dispatch(&mut self, frame: ServerFrame) {
        let index = self.shared.frames.fetch_add(1, Ordering::SeqCst);
        match frame.body {
            Some(Body::Push(v1::Push { push: Some(push) })) => match push {
                PushKind::Ping(_) => {
                    self.shared.pings.fetch_add(1, Ordering::SeqCst);
                    if self.shared.auto_pong.load(Ordering::SeqCst) {
                        let pong = ClientFrame {
                            id: 0,
                            command: Some(Command::Pong(v1::Pong {})),
                        };
                        let _ = self.out.send(Outbound::Frame(pong));
                    }
                }
                PushKind::Disconnect(d) => self.ending.disconnect = Some(d),
                other => {
                    let _ = self.pushes.send((index, other));
                }
            },
            Some(Body::Reply(_)) | Some(Body::Error(_)) if frame.id != 0 => {
                let waiter = self
                    .shared
                    .pending
                    .lock()
                    .unwrap()
                    .waiting
                    .remove(&frame.id);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send((index, frame));
                    }
                    None => {
                        let _ = self.unrouted.send(frame);
                    }
                }
            }
            _ => {
                let _ = self.unrouted.send(frame);
            }
        }
    }

    fn violation(&self, what: String) {
        self.shared.violations.lock().unwrap().push(what);
    }

    fn finish(self) {
        {
            let mut pending = self.shared.pending.lock().unwrap();
            pending.closed = true;
            pending.waiting.clear();
        }
        let _ = self.closed.send(Some(self.ending));
    }
}

impl Client {
    /// Opens a connection (WebSocket upgrade or gRPC stream); `connect` comes next.
    pub async fn open(addr: SocketAddr, transport: Transport) -> Client {
        Self::open_with(addr, transport, ClientOptions::for_transport(transport)).await
    }

    pub async fn open_with(addr: SocketAddr, transport: Transport, opts: ClientOptions) -> Client {
        Self::open_inner(addr, transport, opts, None).await
    }

    /// Like [`Client::open`] over TLS (`wss://`, or gRPC over TLS with ALPN
    /// `h2`), trusting the roots of `tls` only.
    pub async fn open_tls(
        addr: SocketAddr,
        transport: Transport,
        tls: Arc<rustls::ClientConfig>,
    ) -> Client {
        let opts = ClientOptions::for_transport(transport);
        Self::open_inner(addr, transport, opts, Some(tls)).await
    }

    async fn open_inner(
        addr: SocketAddr,
        transport: Transport,
        opts: ClientOptions,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Client {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            auto_pong: AtomicBool::new(opts.auto_pong),
            pings: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            violations: Mutex::new(Vec::new()),
        });
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let (unrouted_tx, unrouted_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = watch::channel(None);
        let reader = Reader {
            shared: shared.clone(),
            out: out_tx.clone(),
            pushes: push_tx,
            unrouted: unrouted_tx,
            closed: closed_tx,
            ending: Closed::default(),
        };
        let tasks = match transport.encoding() {
            Some(enc) => {
                let subprotocol = opts.subprotocol.as_deref();
                open_ws(addr, enc, subprotocol, tls, out_rx, reader).await
            }
            None => open_grpc(addr, tls, out_rx, reader).await,
        };
        Client {
            transport,
            out: out_tx,
            shared,
            pushes: tokio::sync::Mutex::new(push_rx),
            unrouted: tokio::sync::Mutex::new(unrouted_rx),
            closed: closed_rx,
            next_id: AtomicU32::new(1),
            connect_index: AtomicU64::new(0),
            tasks,
        }
    }

    #[track_caller]
    fn check_violations(&self) {
        let violations = self.shared.violations.lock().unwrap();
        if !violations.is_empty() {
            panic!("the server sent frames the client cannot decode: {violations:#?}");
        }
    }

    /// A fresh command id.
    pub fn next_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Sends `connect` and waits for its reply.
    pub async fn connect(
        &self,
        token: &str,
        resume: HashMap<String, u64>,
    ) -> Result<v1::ConnectResult, v1::Error> {
        self.connect_with(v1::ConnectRequest {
            token: token.to_owned(),
            resume,
            ..Default::default()
        })
        .await
    }

    pub async fn connect_with(
        &self,
        req: v1::ConnectRequest,
    ) -> Result<v1::ConnectResult, v1::Error> {
        let (index, result) = self.request_indexed(Command::Connect(req)).await;
        self.connect_index.store(index, Ordering::SeqCst);
        match result? {
            ReplyResult::Connect(c) => Ok(c),
            other => panic!("unexpected reply to connect: {other:?}"),
        }
    }

    /// The position of the connect reply among every frame received: pushes with a
    /// smaller index (see [`Client::next_push_indexed`]) arrived before it.
    pub fn connect_reply_index(&self) -> u64 {
        self.connect_index.load(Ordering::SeqCst)
    }

    /// Sends a command and waits (10 s, else panics) for its reply.
    pub async fn request(&self, command: Command) -> Result<ReplyResult, v1::Error> {
        self.request_indexed(command).await.1
    }

    /// Like [`Client::request`], with the reply's position among received frames.
    pub async fn request_indexed(&self, command: Command) -> (u64, Result<ReplyResult, v1::Error>) {
        let id = self.next_id();
        let name = command_name(&command);
        let frame = ClientFrame {
            id,
            command: Some(command),
        };
        self.exchange(id, Outbound::Frame(frame), name).await
    }

    /// Sends a WebSocket message as is (for malformed frames), expecting the server
    /// to answer on `id`. Panics after 10 s without a reply.
    pub async fn send_raw_expect(
        &self,
        id: u32,
        msg: RawMessage,
    ) -> Result<ReplyResult, v1::Error> {
        self.exchange(id, Outbound::Raw(msg), "raw frame").await.1
    }

    /// Sends a frame as is (any id, even a duplicate) and waits for the reply on `id`.
    pub async fn send_frame_expect(&self, frame: ClientFrame) -> Result<ReplyResult, v1::Error> {
        let id = frame.id;
        self.exchange(id, Outbound::Frame(frame), "frame").await.1
    }

    async fn exchange(
        &self,
        id: u32,
        msg: Outbound,
        name: &str,
    ) -> (u64, Result<ReplyResult, v1::Error>) {
        self.check_violations();
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.shared.pending.lock().unwrap();
            if pending.closed {
                return (u64::MAX, Err(closed_error()));
            }
            pending.waiting.insert(id, tx);
        }
        let _ = self.out.send(msg);
        match tokio::time::timeout(WAIT, rx).await {
            Err(_) => {
                self.check_violations();
                panic!(
                    "no reply to {name} (id {id}) within {WAIT:?} over {:?}",
                    self.transport
                )
            }
            Ok(Err(_)) => (u64::MAX, Err(closed_error())),
            Ok(Ok((index, frame))) => match frame.body {
                Some(Body::Reply(v1::Reply {
                    result: Some(result),
                })) => (index, Ok(result)),
                Some(Body::Error(e)) => (index, Err(e)),
                other => panic!("reply to {name} (id {id}) without a result: {other:?}"),
            },
        }
    }

    /// Sends a frame without waiting for anything.
    pub fn send_frame(&self, frame: ClientFrame) {
        let _ = self.out.send(Outbound::Frame(frame));
    }

    /// Sends a WebSocket message as is, without waiting for anything.
    pub fn send_raw(&self, msg: RawMessage) {
        assert!(
            self.transport != Transport::Grpc,
            "raw messages are WebSocket only"
        );
        let _ = self.out.send(Outbound::Raw(msg));
    }

    /// Stops (or resumes) answering server pings.
    pub fn set_auto_pong(&self, on: bool) {
        self.shared.auto_pong.store(on, Ordering::SeqCst);
    }

    /// How many server pings arrived so far.
    pub fn pings_received(&self) -> u64 {
        self.shared.pings.load(Ordering::SeqCst)
    }

    /// The next push (server pings and the final disconnect are handled by the
    /// harness and never returned), or `None` after `timeout` or once the connection
    /// has closed and every push was taken.
    pub async fn next_push(&self, timeout: Duration) -> Option<PushKind> {
        self.next_push_indexed(timeout).await.map(|(_, p)| p)
    }

    /// [`Client::next_push`] with the push's position among every frame received.
    pub async fn next_push_indexed(&self, timeout: Duration) -> Option<(u64, PushKind)> {
        self.check_violations();
        let mut pushes = self.pushes.lock().await;
        tokio::time::timeout(timeout, pushes.recv())
            .await
            .ok()
            .flatten()
    }

    /// Takes pushes until `matcher` accepts one (others are dropped); panics after
    /// `timeout` naming `what`.
    pub async fn expect_push<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut matcher: impl FnMut(&PushKind) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_push(left).await {
                Some(push) => match matcher(&push) {
                    Some(found) => return found,
                    None => skipped.push(push),
                },
                None => {
                    let closed = self.closed.borrow().clone();
                    panic!(
                        "{what}: not received within {timeout:?} over {:?} (closed: {closed:?}); other pushes: {skipped:#?}",
                        self.transport
                    )
                }
            }
        }
    }

    /// Takes every push for `listen` and panics if `forbidden` matches one.
    pub async fn expect_no_push(
        &self,
        what: &str,
        listen: Duration,
        mut forbidden: impl FnMut(&PushKind) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + listen;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_push(left).await {
                Some(push) if forbidden(&push) => {
                    panic!("{what}: received {push:#?} over {:?}", self.transport)
                }
                Some(_) => {}
                None => return,
            }
        }
    }

    /// The next `message` push of conversation `conv`, skipping other pushes.
    pub async fn expect_message(&self, conv: &str, timeout: Duration) -> v1::Message {
        self.expect_push(&format!("a message in {conv}"), timeout, |p| match p {
            PushKind::Message(m) if m.conversation_id == conv => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// Collects `message` pushes of `conv` until `done` says so (given what was
    /// collected so far), in arrival order. Panics after `timeout`.
    pub async fn collect_messages(
        &self,
        conv: &str,
        timeout: Duration,
        mut done: impl FnMut(&[v1::Message]) -> bool,
    ) -> Vec<v1::Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_push(left).await {
                Some(PushKind::Message(m)) if m.conversation_id == conv => got.push(m),
                Some(_) => {}
                None => panic!(
                    "collecting messages of {conv} over {:?}: stopped after {} within {timeout:?}: seqs {:?}",
                    self.transport,
                    got.len(),
                    got.iter().map(|m| m.seq).collect::<Vec<_>>()
                ),
            }
        }
        got
    }

    /// A frame that was neither a push nor the reply to a waiting command (e.g. the
    /// error answering a malformed frame).
    pub async fn next_unrouted(&self, timeout: Duration) -> Option<ServerFrame> {
        let mut unrouted = self.unrouted.lock().await;
        tokio::time::timeout(timeout, unrouted.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for the connection to end; `None` if it is still open after `timeout`.
    pub async fn wait_closed(&self, timeout: Duration) -> Option<Closed> {
        let mut closed = self.closed.clone();
        let result = tokio::time::timeout(timeout, closed.wait_for(Option::is_some)).await;
        match result {
            Ok(Ok(c)) => c.clone(),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Closes the connection from the client's side (WebSocket close frame, or end of
    /// the gRPC request stream) and waits for the end.
    pub async fn close(self) {
        let _ = self.out.send(Outbound::Close);
        let _ = self.wait_closed(Duration::from_secs(2)).await;
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Connect(_) => "connect",
        Command::Refresh(_) => "refresh",
        Command::Subscribe(_) => "subscribe",
        Command::Unsubscribe(_) => "unsubscribe",
        Command::Send(_) => "send",
        Command::Edit(_) => "edit",
        Command::Delete(_) => "delete",
        Command::React(_) => "react",
        Command::Unreact(_) => "unreact",
        Command::Typing(_) => "typing",
        Command::Read(_) => "read",
        Command::History(_) => "history",
        Command::Conversations(_) => "conversations",
        Command::CreateGroup(_) => "create_group",
        Command::StartDirect(_) => "start_direct",
        Command::AddMembers(_) => "add_members",
        Command::RemoveMember(_) => "remove_member",
        Command::Leave(_) => "leave",
        Command::Hide(_) => "hide",
        Command::Presence(_) => "presence",
        Command::AppState(_) => "app_state",
        Command::Block(_) => "block",
        Command::Unblock(_) => "unblock",
        Command::Signal(_) => "signal",
        Command::AckNotification(_) => "ack_notification",
        Command::RegisterDevice(_) => "register_device",
        Command::UnregisterDevice(_) => "unregister_device",
        Command::Devices(_) => "devices",
        Command::Mute(_) => "mute",
        Command::DoNotDisturb(_) => "do_not_disturb",
        Command::Members(_) => "members",
        Command::Users(_) => "users",
        Command::SearchUsers(_) => "search_users",
        Command::UpdateProfile(_) => "update_profile",
        Command::UpdateConversation(_) => "update_conversation",
        Command::SetRole(_) => "set_role",
        Command::DeleteConversation(_) => "delete_conversation",
        Command::Blocks(_) => "blocks",
        Command::Unread(_) => "unread",
        Command::CreateUpload(_) => "create_upload",
        Command::AttachmentUrls(_) => "attachment_urls",
        Command::Ping(_) => "ping",
        Command::Pong(_) => "pong",
    }
}

async fn open_ws(
    addr: SocketAddr,
    enc: Encoding,
    subprotocol: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
    mut out_rx: mpsc::UnboundedReceiver<Outbound>,
    mut reader: Reader,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut request = realtime_request(addr, subprotocol);
    let connected = match tls {
        None => tokio_tungstenite::connect_async(request).await,
        Some(config) => {
            *request.uri_mut() = format!("wss://{addr}/v1/realtime").parse().unwrap();
            let connector = tokio_tungstenite::Connector::Rustls(config);
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector))
                .await
        }
    };
    let (ws, response) =
        connected.unwrap_or_else(|e| panic!("WebSocket upgrade at {addr} failed: {e}"));
    if let Some(sp) = subprotocol {
        let chosen = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            chosen,
            Some(sp),
            "the server did not accept subprotocol {sp}"
        );
    }
    let (mut sink, mut stream) = ws.split();

    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let ws_msg = match msg {
                Outbound::Frame(frame) => {
                    let bytes = codec::encode(enc, &frame).expect("encode a client frame");
                    if enc.is_binary() {
                        Message::Binary(bytes)
                    } else {
                        Message::text(String::from_utf8(bytes.to_vec()).unwrap())
                    }
                }
                Outbound::Raw(RawMessage::Text(text)) => Message::text(text),
                Outbound::Raw(RawMessage::Binary(data)) => Message::binary(data),
                Outbound::Close => {
                    let _ = sink.close().await;
                    return;
                }
            };
            if sink.send(ws_msg).await.is_err() {
                return;
            }
        }
    });

    let reader = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let data = match msg {
                Ok(Message::Text(text)) => {
                    if enc.is_binary() {
                        reader.violation(format!("text message on a protobuf connection: {text}"));
                    }
                    bytes::Bytes::copy_from_slice(text.as_bytes())
                }
                Ok(Message::Binary(data)) => {
                    if !enc.is_binary() {
                        reader.violation("binary message on a JSON connection".into());
                    }
                    data
                }
                Ok(Message::Close(frame)) => {
                    if let Some(CloseFrame { code, reason }) = frame {
                        reader.ending.close_code = Some(u16::from(code));
                        reader.ending.close_reason = reason.to_string();
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => break,
                Err(_) => break,
            };
            // A message may hold several frames (a batch).
            match codec::decode_batch::<ServerFrame>(enc, &data) {
                Ok(frames) => {
                    for frame in frames {
                        reader.dispatch(frame);
                    }
                }
                Err(e) => reader.violation(format!(
                    "undecodable server message ({e}): {:?}",
                    String::from_utf8_lossy(&data[..data.len().min(300)])
                )),
            }
        }
        reader.finish();
    });
    vec![writer, reader]
}

async fn open_grpc(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    mut out_rx: mpsc::UnboundedReceiver<Outbound>,
    mut reader: Reader,
) -> Vec<tokio::task::JoinHandle<()>> {
    let channel = match tls {
        None => {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
        }
        Some(config) => crate::tls::grpc_channel(addr, config).await,
    };
    let channel = channel.unwrap_or_else(|e| panic!("gRPC connection to {addr} failed: {e}"));
    let mut grpc = v1::realtime_client::RealtimeClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024);
    let (frames_tx, frames_rx) = mpsc::unbounded_channel::<ClientFrame>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            match msg {
                Outbound::Frame(frame) => {
                    if frames_tx.send(frame).is_err() {
                        return;
                    }
                }
                Outbound::Raw(_) => panic!("raw messages are WebSocket only"),
                // Dropping the sender ends the request stream.
                Outbound::Close => return,
            }
        }
    });
    // The response (headers, then frames) is awaited in the reader task: a server
    // may hold its headers until the first frame (`connect`) arrives.
    let reader = tokio::spawn(async move {
        let mut stream = match grpc.connect(UnboundedReceiverStream::new(frames_rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                reader.ending.grpc_status =
                    Some(format!("{:?}: {}", status.code(), status.message()));
                reader.finish();
                return;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(frame)) => reader.dispatch(frame),
                Ok(None) => break,
                Err(status) => {
                    if status.code() != tonic::Code::Ok {
                        reader.ending.grpc_status =
                            Some(format!("{:?}: {}", status.code(), status.message()));
                    }
                    break;
                }
            }
        }
        reader.finish();
    });
    vec![writer, reader]
}
