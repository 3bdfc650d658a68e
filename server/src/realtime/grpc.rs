//! gRPC transport: `mkondo.v1.Realtime/Connect`, a bidirectional stream of the
//! same frames, one per stream message. The session is the WebSocket's.
//!
//! The service is written against `tonic::server::Grpc` with our own codec rather
//! than the generated server, so that a push is encoded once for all gRPC
//! streams (the bytes are cached in its `Outbound`), as it is for WebSocket.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BufMut;
use futures::future::BoxFuture;
use futures::StreamExt;
use mkondo_proto::v1;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::session;
use super::transport::{Inbound, Item, Transport};
use crate::engine::outbound::Outbound;
use crate::error::Error;
use crate::node::Node;

const CONNECT_PATH: &str = "/mkondo.v1.Realtime/Connect";

/// The `mkondo.v1.Realtime` service, mounted on the shared HTTP/2 port.
#[derive(Clone)]
pub struct RealtimeService {
    node: Arc<Node>,
}

impl RealtimeService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

impl NamedService for RealtimeService {
    const NAME: &'static str = "mkondo.v1.Realtime";
}

impl<B> tower::Service<http::Request<B>> for RealtimeService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let node = self.node.clone();
        Box::pin(async move {
            if req.uri().path() != CONNECT_PATH {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let hard = node.limits().hard_frame_bytes();
            let mut grpc = Grpc::new(FrameCodec).apply_max_message_size_config(Some(hard), None);
            Ok(grpc.streaming(ConnectMethod { node }, req).await)
        })
    }
}

struct ConnectMethod {
    node: Arc<Node>,
}

impl StreamingService<v1::ClientFrame> for ConnectMethod {
    type Response = Wire;
    type ResponseStream =
        futures::stream::Map<ReceiverStream<Wire>, fn(Wire) -> Result<Wire, Status>>;
    type Future = BoxFuture<'static, Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<v1::ClientFrame>>) -> Self::Future {
        let node = self.node.clone();
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        let forwarded: Vec<&str> = request
            .metadata()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let from = node.client_addr(peer, &forwarded);
        Box::pin(async move {
            let max = node.limits().max_frame_bytes;
            let inbound = request.into_inner().map(move |frame| match frame {
                Ok(frame) if frame.encoded_len() > max => Inbound::Rejected {
                    id: frame.id,
                    error: Error::too_large(format!("frame is over the {max} byte limit")),
                },
                Ok(frame) => Inbound::Frames(vec![frame]),
                Err(status) => Inbound::Fatal(status.message().to_owned()),
            });
            // A small channel: HTTP/2 flow control pushes back into the session's queue.
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(session::run(
                node,
                GrpcTransport { tx },
                Box::pin(inbound),
                from,
                // Browsers do not speak gRPC: no Origin to check.
                None,
            ));
            let ok: fn(Wire) -> Result<Wire, Status> = Ok;
            Ok(Response::new(ReceiverStream::new(rx).map(ok)))
        })
    }
}

/// A server frame on its way out: a shared push (bytes cached) or a reply.
/// Pointer-sized, because tokio's channel allocates its slots in blocks of 32
/// up front: a `ServerFrame` (or a `Result` with tonic's `Status`) held inline
/// made every idle gRPC connection's queue tens of kilobytes.
pub enum Wire {
    Push(Arc<Outbound>),
    Frame(Box<v1::ServerFrame>),
}

#[derive(Default, Clone, Copy)]
struct FrameCodec;

impl Codec for FrameCodec {
    type Encode = Wire;
    type Decode = v1::ClientFrame;
    type Encoder = FrameCodec;
    type Decoder = FrameCodec;

    fn encoder(&mut self) -> Self::Encoder {
        FrameCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        FrameCodec
    }
}

/// Per-stream codec buffers start at 1 KiB instead of tonic's 8 KiB and grow
/// for larger frames: most connections sit idle, and every one holds an encode
/// and a decode buffer (the WebSocket read buffer is sized the same way).
fn small_buffers() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

impl Encoder for FrameCodec {
    type Item = Wire;
    type Error = Status;

    fn buffer_settings(&self) -> BufferSettings {
        small_buffers()
    }

    fn encode(&mut self, item: Wire, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Wire::Push(out) => dst.put_slice(&out.encoded_raw()),
            Wire::Frame(frame) => frame
                .encode(dst)
                .map_err(|e| Status::internal(format!("encoding a frame: {e}")))?,
        }
        Ok(())
    }
}

impl Decoder for FrameCodec {
    type Item = v1::ClientFrame;
    type Error = Status;

    fn buffer_settings(&self) -> BufferSettings {
        small_buffers()
    }

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<v1::ClientFrame>, Status> {
        v1::ClientFrame::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed frame: {e}")))
    }
}

struct GrpcTransport {
    tx: mpsc::Sender<Wire>,
}

impl Transport for GrpcTransport {
    async fn write(&mut self, items: &mut Vec<Item>) -> Result<(), ()> {
        for item in items.drain(..) {
            let wire = match item {
                Item::Push(out) => Wire::Push(out),
                Item::Frame(frame) => Wire::Frame(frame),
            };
            self.tx.send(wire).await.map_err(|_| ())?;
        }
        Ok(())
    }

    async fn close(&mut self, disconnect: Option<v1::Disconnect>) {
        if let Some(d) = disconnect {
            let push = v1::ServerFrame {
                id: 0,
                body: Some(v1::server_frame::Body::Push(v1::Push {
                    push: Some(v1::push::Push::Disconnect(d)),
                })),
            };
            let _ = self.tx.send(Wire::Frame(Box::new(push))).await;
        }
        // Dropping the sender ends the response stream.
    }
}
