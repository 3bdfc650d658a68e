//! WebSocket transport: `GET /v1/realtime`. Subprotocol `mkondo.v1.json` (default,
//! text frames) or `mkondo.v1.proto` (binary frames, length-delimited protobuf).
//! A frame may carry a batch; the reader checks sizes before decoding.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::Extension;
use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, StreamExt};
use futures::SinkExt;
use mkondo_proto::codec::{self, Encoding};
use mkondo_proto::v1;

use super::session;
use super::transport::{Inbound, Item, Transport};
use crate::engine::outbound::encode_frame;
use crate::error::Error;
use crate::node::origins::BrowserOrigin;
use crate::node::{ClientAddr, Node};
use crate::rest::auth::forwarded_for;

pub const PROTO_JSON: &str = "mkondo.v1.json";
pub const PROTO_PROTOBUF: &str = "mkondo.v1.proto";
/// A batch larger than this is refused whole: batching is for the server's pushes.
const MAX_FRAMES_PER_MESSAGE: usize = 100;
/// The socket read buffer each connection keeps for its whole life. The
/// library's default (128 KiB) multiplied by tens of thousands of mostly idle
/// connections is most of the server's memory; client frames are small (a
/// `send` is a few hundred bytes), and a larger message is still read whole,
/// only in more `read` calls.
const READ_BUFFER_BYTES: usize = 1024;

pub async fn upgrade(
    State(node): State<Arc<Node>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: http::HeaderMap,
    uri: http::Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let peer = peer.map(|c| c.0 .0);
    let from = node.client_addr(peer, &forwarded_for(&headers));
    // A browser's page origin, kept for `connect`: only the token names the
    // app whose allowed origins it is checked against.
    let origin = node.browser_origin(&headers, &uri, peer).map(Box::new);
    let hard = node.limits().hard_frame_bytes();
    ws.protocols([PROTO_JSON, PROTO_PROTOBUF])
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| serve(node, socket, from, origin))
}

async fn serve(
    node: Arc<Node>,
    socket: WebSocket,
    from: ClientAddr,
    origin: Option<Box<BrowserOrigin>>,
) {
    let encoding = match socket.protocol().and_then(|p| p.to_str().ok()) {
        Some(PROTO_PROTOBUF) => Encoding::Protobuf,
        _ => Encoding::Json,
    };
    let max = node.limits().max_frame_bytes;
    let (sink, stream) = socket.split();
    let inbound = stream
        .filter_map(move |msg| async move {
            match msg {
                Ok(Message::Text(text)) => Some(decode(encoding, text.as_bytes(), max, true)),
                Ok(Message::Binary(data)) => Some(decode(encoding, &data, max, false)),
                Ok(Message::Ping(_) | Message::Pong(_)) => None,
                Ok(Message::Close(_)) => Some(Inbound::Fatal("closed".into())),
                Err(err) => Some(Inbound::Fatal(err.to_string())),
            }
        })
        // A close or a read error ends the input.
        .scan(false, |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            if let Inbound::Fatal(why) = &item {
                *ended = true;
                if why == "closed" {
                    return futures::future::ready(None);
                }
            }
            futures::future::ready(Some(item))
        });
    let transport = WsTransport { sink, encoding };
    session::run(node, transport, Box::pin(inbound), from, origin).await;
}

fn decode(encoding: Encoding, data: &[u8], max: usize, text: bool) -> Inbound {
    // A JSON client sending binary, or a protobuf client sending text, still gets
    // decoded by the encoding of the frame.
    let encoding = match (encoding, text) {
        (Encoding::Protobuf, true) => Encoding::Json,
        (e, _) => e,
    };
    if data.len() > max {
        return Inbound::Rejected {
            id: codec::peek_id(encoding, data).unwrap_or(0),
            error: Error::too_large(format!(
                "frame of {} bytes is over the {max} byte limit",
                data.len()
            )),
        };
    }
    match codec::decode_batch::<v1::ClientFrame>(encoding, data) {
        Ok(frames) if frames.len() > MAX_FRAMES_PER_MESSAGE => Inbound::Rejected {
            id: frames.first().map_or(0, |f| f.id),
            error: Error::invalid(format!(
                "at most {MAX_FRAMES_PER_MESSAGE} frames in one message"
            )),
        },
        Ok(frames) => Inbound::Frames(frames),
        Err(err) => Inbound::Rejected {
            id: codec::peek_id(encoding, data).unwrap_or(0),
            error: Error::invalid(format!("malformed frame: {err}")),
        },
    }
}

/// One WebSocket message for a batch. A batch of one — nearly every push —
/// is the push's shared encoding itself, not a copy; a larger one is
/// concatenated once (JSON frames one per line).
fn message(encoding: Encoding, items: &[Item]) -> Option<Message> {
    let encode = |item: &Item| match item {
        Item::Push(out) => out.encoded(encoding),
        Item::Frame(frame) => encode_frame(encoding, frame),
    };
    let payload = match items {
        [one] => encode(one),
        _ => {
            let parts: Vec<Bytes> = items.iter().map(encode).collect();
            let separators = match encoding {
                Encoding::Json => parts.len().saturating_sub(1),
                Encoding::Protobuf => 0,
            };
            let len = parts.iter().map(Bytes::len).sum::<usize>() + separators;
            let mut buf = BytesMut::with_capacity(len);
            for (i, part) in parts.iter().enumerate() {
                if encoding == Encoding::Json && i > 0 {
                    buf.extend_from_slice(b"\n");
                }
                buf.extend_from_slice(part);
            }
            buf.freeze()
        }
    };
    match encoding {
        // Checked once, not copied: serde_json writes UTF-8, so this never fails.
        Encoding::Json => Utf8Bytes::try_from(payload).ok().map(Message::Text),
        Encoding::Protobuf => Some(Message::Binary(payload)),
    }
}

struct WsTransport {
    sink: SplitSink<WebSocket, Message>,
    encoding: Encoding,
}

impl Transport for WsTransport {
    async fn write(&mut self, items: &mut Vec<Item>) -> Result<(), ()> {
        let message = message(self.encoding, items);
        // The pushes' buffers are shared: the message holds what it needs.
        items.clear();
        self.sink.send(message.ok_or(())?).await.map_err(|_| ())
    }

    async fn close(&mut self, disconnect: Option<v1::Disconnect>) {
        let frame = disconnect.map(|d| {
            let code = d.code as u16;
            let reason = d.reason.clone();
            (
                v1::ServerFrame {
                    id: 0,
                    body: Some(v1::server_frame::Body::Push(v1::Push {
                        push: Some(v1::push::Push::Disconnect(d)),
                    })),
                },
                CloseFrame {
                    code,
                    reason: reason.into(),
                },
            )
        });
        if let Some((push, close)) = frame {
            let _ = self.write(&mut vec![Item::frame(push)]).await;
            let _ = self.sink.send(Message::Close(Some(close))).await;
        } else {
            let _ = self.sink.send(Message::Close(None)).await;
        }
        let _ = self.sink.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::outbound::Outbound;
    use mkondo_proto::v1::push::Push;

    fn typing(user: &str) -> Item {
        Item::Push(Outbound::push(Push::Typing(v1::TypingPush {
            conversation_id: "c1".into(),
            user_id: user.into(),
            stop: false,
        })))
    }

    #[test]
    fn a_single_push_is_sent_as_its_shared_encoding() {
        let push = typing("alice");
        let Item::Push(out) = &push else {
            unreachable!()
        };
        let shared = out.encoded(Encoding::Json);
        let Some(Message::Text(text)) = message(Encoding::Json, std::slice::from_ref(&push)) else {
            panic!("a JSON batch is a text message");
        };
        assert_eq!(text.as_str().as_ptr(), shared.as_ptr(), "not copied");
        let Some(Message::Binary(data)) = message(Encoding::Protobuf, std::slice::from_ref(&push))
        else {
            panic!("a protobuf batch is a binary message");
        };
        assert_eq!(data.as_ptr(), out.encoded(Encoding::Protobuf).as_ptr());
    }

    #[test]
    fn a_batch_is_one_message_of_every_frame() {
        let items = vec![
            typing("alice"),
            Item::frame(v1::ServerFrame { id: 7, body: None }),
            typing("bob"),
        ];
        let expected: Vec<v1::ServerFrame> = items
            .iter()
            .map(|item| match item {
                Item::Push(out) => out.frame.clone(),
                Item::Frame(frame) => (**frame).clone(),
            })
            .collect();
        let Some(Message::Text(text)) = message(Encoding::Json, &items) else {
            panic!("a JSON batch is a text message");
        };
        assert_eq!(text.as_str().lines().count(), 3);
        let decoded: Vec<v1::ServerFrame> =
            codec::decode_batch(Encoding::Json, text.as_bytes()).unwrap();
        assert_eq!(decoded, expected);
        let Some(Message::Binary(data)) = message(Encoding::Protobuf, &items) else {
            panic!("a protobuf batch is a binary message");
        };
        let decoded: Vec<v1::ServerFrame> = codec::decode_batch(Encoding::Protobuf, &data).unwrap();
        assert_eq!(decoded, expected);
    }
}
