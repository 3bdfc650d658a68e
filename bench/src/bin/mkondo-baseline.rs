//! `mkondo-baseline`: the transport floor the benchmarks measure Mkondo against.
//!
//! A bare WebSocket broadcast server on the stack Mkondo is built on (tokio's
//! multi-threaded runtime, tungstenite), with nothing else: no token check, no
//! storage, no rate limits, no presence, no timers. What a fan-out delivery
//! costs here is what any server on this stack must pay at least (the task
//! wake-up, the WebSocket framing, the kernel's `send()`), so Mkondo's cost as
//! a multiple of this one says how much of it is ours to cut.
//!
//! It speaks just enough of Mkondo's WebSocket JSON protocol (subprotocol
//! `mkondo.v1.json`, the real frames from `mkondo-proto`) for the load
//! generator's Mkondo client to drive it unchanged:
//!
//! - `connect` is answered at once, whatever the token;
//! - `subscribe` puts the connection in the room named by its
//!   `conversation_id` (rooms exist while someone is in them): the generator
//!   joins its members this way, as Mkondo's backend would add them;
//! - `send` gives the message the room's next `seq`, pushes the same `message`
//!   frame Mkondo pushes to every member of the room (the sender included) and
//!   answers the sender with the message, as Mkondo does;
//! - anything else is answered with an `unimplemented` error.
//!
//! The hot path is laid out like Mkondo's: each push is encoded once and the
//! same bytes are queued to every member; each connection is one task that
//! reads its socket and writes what is queued for it, one WebSocket message
//! (one `send()`) per push; a member whose queue is full is closed as a slow
//! consumer, so memory stays bounded when the server saturates. Accepted
//! sockets get TCP_NODELAY.
//!
//! Prints `baseline listening on HOST:PORT` once it accepts connections.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use mkondo_proto::{
    codec::{self, Encoding},
    pbjson_types::Timestamp,
    v1::{self, client_frame::Command, reply::Result as Answer, server_frame::Body},
    ClientFrame, ServerFrame,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, Notify},
};
use tokio_tungstenite::tungstenite::{
    handshake::server::{Callback, ErrorResponse, Request, Response},
    http::HeaderValue,
    protocol::WebSocketConfig,
    Message, Utf8Bytes,
};

/// Pushes queued per connection before it is closed as a slow consumer:
/// Mkondo's default (`--outbound-queue`).
const QUEUE: usize = 1024;

/// The socket read buffer each connection keeps, as Mkondo sets it (client
/// frames are small; tungstenite's 128 KiB default is for large messages).
const READ_BUFFER_BYTES: usize = 1024;

#[derive(Debug, Parser)]
#[command(
    name = "mkondo-baseline",
    about = "A bare WebSocket broadcast server: the cost floor of Mkondo's stack"
)]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    println!("baseline listening on {}", listener.local_addr()?);
    let rooms = Arc::new(Rooms::default());
    let mut next_conn = 0u64;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors or a connection reset before it was taken:
            // the listener itself is fine.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        next_conn += 1;
        tokio::spawn(serve(tcp, next_conn, rooms.clone()));
    }
}

/// Someone in a room: where its pushes go, and how to close it when they pile up.
#[derive(Clone)]
struct Member {
    conn: u64,
    queue: mpsc::Sender<Utf8Bytes>,
    kick: Arc<Notify>,
}

#[derive(Default)]
struct Room {
    seq: u64,
    /// Copied on join and leave, shared while broadcasting, so a send holds
    /// the lock only to take the next `seq` and a reference to the members.
    members: Arc<Vec<Member>>,
}

#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, Room>>,
    next_message: AtomicU64,
}

impl Rooms {
    fn join(&self, name: &str, member: &Member) {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let room = rooms.entry(name.to_owned()).or_default();
        if !room.members.iter().any(|m| m.conn == member.conn) {
            Arc::make_mut(&mut room.members).push(member.clone());
        }
    }

    fn leave(&self, name: &str, conn: u64) {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        if let Some(room) = rooms.get_mut(name) {
            Arc::make_mut(&mut room.members).retain(|m| m.conn != conn);
            if room.members.is_empty() {
                rooms.remove(name);
            }
        }
    }

    /// Stores nothing: builds the message, queues its push to every member
    /// (the sender included) and returns it for the sender's answer. `None`
    /// when the sender is not in the room.
    fn send(&self, conn: u64, req: v1::SendRequest) -> Option<v1::Message> {
        let (seq, members) = {
            let mut rooms = self.rooms.lock().expect("rooms lock");
            let room = rooms.get_mut(&req.conversation_id)?;
            if !room.members.iter().any(|m| m.conn == conn) {
                return None;
            }
            room.seq += 1;
            (room.seq, room.members.clone())
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let message = v1::Message {
            // Mkondo's ids are 26-character ULIDs; the same length keeps the
            // frames the same size.
            id: format!("{:026}", self.next_message.fetch_add(1, Ordering::Relaxed)),
            conversation_id: req.conversation_id,
            seq,
            sender_id: format!("conn-{conn}"),
            kind: "user".into(),
            text: req.text,
            data: req.data,
            client_id: req.client_id,
            reply_to: req.reply_to,
            // Milliseconds, as Mkondo stores them.
            created_at: Some(Timestamp {
                seconds: now.as_secs() as i64,
                nanos: now.subsec_millis() as i32 * 1_000_000,
            }),
            ..Default::default()
        };
        let push = ServerFrame {
            id: 0,
            body: Some(Body::Push(v1::Push {
                push: Some(v1::push::Push::Message(message.clone())),
            })),
        };
        // Encoded once; every member's queue gets the same bytes.
        let Some(bytes) = text(&push) else {
            return Some(message);
        };
        for member in members.iter() {
            if member.queue.try_send(bytes.clone()).is_err() {
                // Full (a slow consumer) or already closing.
                member.kick.notify_one();
            }
        }
        Some(message)
    }
}

/// One frame as a JSON text message.
fn text(frame: &ServerFrame) -> Option<Utf8Bytes> {
    let bytes = codec::encode(Encoding::Json, frame).ok()?;
    Utf8Bytes::try_from(bytes).ok()
}

/// The upgrade's answer: it names Mkondo's JSON subprotocol when the client
/// asks for it. A client asking only for another one gets none, which a
/// WebSocket client takes as a refusal.
struct Negotiate;

impl Callback for Negotiate {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        let asked = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == codec::SUBPROTOCOL_JSON);
        if asked {
            response.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(codec::SUBPROTOCOL_JSON),
            );
        }
        Ok(response)
    }
}

/// One connection, from the handshake to its close: reads frames and answers
/// them, and writes the pushes queued for it, in one task.
async fn serve(tcp: TcpStream, conn: u64, rooms: Arc<Rooms>) {
    // Small frames are the whole workload: never hold them back.
    if tcp.set_nodelay(true).is_err() {
        return;
    }
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, Negotiate, Some(config)).await
    else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (queue, mut queued) = mpsc::channel(QUEUE);
    let me = Member {
        conn,
        queue,
        kick: Arc::new(Notify::new()),
    };
    let mut joined: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = me.kick.notified() => break,
            push = queued.recv() => {
                // `me` holds a sender, so the queue never ends while we loop.
                let Some(push) = push else { break };
                if sink.send(Message::Text(push)).await.is_err() {
                    break;
                }
            }
            msg = stream.next() => {
                let data = match msg {
                    Some(Ok(Message::Text(t))) => t.into(),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                // The generator sends no malformed frames; any would be ignored.
                let frames = codec::decode_batch::<ClientFrame>(Encoding::Json, &data)
                    .unwrap_or_default();
                let mut failed = false;
                for frame in frames {
                    let Some(answer) = answer(frame, &me, &rooms, &mut joined) else {
                        continue;
                    };
                    let Some(bytes) = text(&answer) else { continue };
                    if sink.send(Message::Text(bytes)).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed {
                    break;
                }
            }
        }
    }
    for room in &joined {
        rooms.leave(room, conn);
    }
    // The goodbye is best effort: a slow consumer's socket is what is stuck.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// The answer to one command (`None` for a `pong`, which expects none).
fn answer(
    frame: ClientFrame,
    me: &Member,
    rooms: &Rooms,
    joined: &mut Vec<String>,
) -> Option<ServerFrame> {
    let reply = |result: Answer| {
        Body::Reply(v1::Reply {
            result: Some(result),
        })
    };
    let body = match frame.command? {
        Command::Connect(_) => reply(Answer::Connect(v1::ConnectResult::default())),
        Command::Subscribe(req) => {
            rooms.join(&req.conversation_id, me);
            if !joined.contains(&req.conversation_id) {
                joined.push(req.conversation_id);
            }
            reply(Answer::Subscribe(v1::SubscribeResult::default()))
        }
        Command::Send(req) => match rooms.send(me.conn, req) {
            Some(message) => reply(Answer::Send(v1::SendResult {
                message: Some(message),
                duplicate: false,
            })),
            None => error("not_found", "subscribe to the conversation first"),
        },
        Command::Pong(_) => return None,
        _ => error(
            "unimplemented",
            "the baseline answers connect, subscribe and send only",
        ),
    };
    Some(ServerFrame {
        id: frame.id,
        body: Some(body),
    })
}

fn error(code: &str, message: &str) -> Body {
    Body::Error(v1::Error {
        code: code.into(),
        message: message.into(),
        ..Default::default()
    })
}
