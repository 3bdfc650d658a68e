//! A bare WebSocket to the real-time endpoint: nothing runs in the background, so
//! it reads only when told to (a slow consumer) and answers no ping by itself.

use std::{net::SocketAddr, time::Duration};

use futures::{SinkExt, StreamExt};
use mkondo_proto::{
    codec::{self, Encoding},
    v1::{self, client_frame::Command, ClientFrame, ServerFrame},
};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{tungstenite::Message, WebSocketStream};

/// What one read of a [`RawWs`] gave.
#[derive(Debug)]
pub enum RawEvent {
    /// A message, decoded (it may hold a batch of frames).
    Frames(Vec<ServerFrame>),
    /// A message that is not valid in the connection's encoding.
    Undecodable(Vec<u8>),
    /// The server's close frame.
    Close(Option<u16>, String),
    /// The connection ended (EOF or a reset) without, or after, a close frame.
    Ended(String),
}

pub struct RawWs {
    ws: WebSocketStream<TcpStream>,
    pub encoding: Encoding,
}

impl RawWs {
    /// Opens a WebSocket asking for `subprotocol` (none: the default, JSON).
    pub async fn open(addr: SocketAddr, subprotocol: Option<&str>) -> RawWs {
        Self::open_with_buffer(addr, subprotocol, None).await
    }

    /// Like [`RawWs::open`] with the socket's kernel receive buffer set to
    /// `recv_buffer` bytes, so that a client that stops reading is felt sooner.
    pub async fn open_with_buffer(
        addr: SocketAddr,
        subprotocol: Option<&str>,
        recv_buffer: Option<u32>,
    ) -> RawWs {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let stream = socket
            .connect(addr)
            .await
            .unwrap_or_else(|e| panic!("TCP connect to {addr}: {e}"));
        let request = crate::client::realtime_request(addr, subprotocol);
        let (ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .unwrap_or_else(|e| panic!("WebSocket upgrade at {addr}: {e}"));
        let encoding = subprotocol
            .and_then(Encoding::from_subprotocol)
            .unwrap_or_default();
        RawWs { ws, encoding }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.ws.send(Message::binary(data.to_vec())).await.unwrap();
    }

    /// Sends a frame in the connection's encoding.
    pub async fn send_frame(&mut self, frame: &ClientFrame) {
        let bytes = codec::encode(self.encoding, frame).unwrap();
        let msg = if self.encoding.is_binary() {
            Message::Binary(bytes)
        } else {
            Message::text(String::from_utf8(bytes.to_vec()).unwrap())
        };
        self.ws.send(msg).await.unwrap();
    }

    /// Reads one message; `None` if nothing came within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<RawEvent> {
        loop {
            let next = tokio::time::timeout(timeout, self.ws.next()).await.ok()?;
            let data = match next {
                None => return Some(RawEvent::Ended("end of stream".into())),
                Some(Err(e)) => return Some(RawEvent::Ended(e.to_string())),
                Some(Ok(Message::Close(frame))) => {
                    return Some(match frame {
                        Some(f) => RawEvent::Close(Some(u16::from(f.code)), f.reason.to_string()),
                        None => RawEvent::Close(None, String::new()),
                    })
                }
                Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                Some(Ok(Message::Binary(b))) => b.to_vec(),
                Some(Ok(_)) => continue,
            };
            return Some(match codec::decode_batch(self.encoding, &data) {
                Ok(frames) => RawEvent::Frames(frames),
                Err(_) => RawEvent::Undecodable(data),
            });
        }
    }

    /// Sends `connect` (id 1) and reads until its reply, which it returns.
    pub async fn connect(&mut self, token: &str) -> ServerFrame {
        let frame = ClientFrame {
            id: 1,
            command: Some(Command::Connect(v1::ConnectRequest {
                token: token.to_owned(),
                ..Default::default()
            })),
        };
        self.send_frame(&frame).await;
        loop {
            match self.recv(crate::WAIT).await {
                Some(RawEvent::Frames(frames)) => {
                    if let Some(reply) = frames.into_iter().find(|f| f.id == 1) {
                        return reply;
                    }
                }
                other => panic!("no reply to connect: {other:?}"),
            }
        }
    }

    /// Reads until the connection ends (or `timeout` passes), returning every frame
    /// read and how it ended (`None`: still open at the deadline).
    pub async fn drain(&mut self, timeout: Duration) -> (Vec<ServerFrame>, Option<RawEvent>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                None => return (frames, None),
                Some(RawEvent::Frames(f)) => frames.extend(f),
                Some(RawEvent::Undecodable(data)) => panic!(
                    "undecodable server message: {:?}",
                    String::from_utf8_lossy(&data[..data.len().min(300)])
                ),
                Some(end) => return (frames, Some(end)),
            }
        }
    }
}
