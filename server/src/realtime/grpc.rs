//! gRPC transport: `mkondo.v1.Realtime/Connect`, a bidirectional stream of the
//! same frames, one per stream message. The session is the WebSocket's.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use mkondo_proto::v1::{self, realtime_server::Realtime};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::session;
use super::transport::{Inbound, Item, Transport};
use crate::error::Error;
use crate::node::Node;

pub struct RealtimeService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Realtime for RealtimeService {
    type ConnectStream = ReceiverStream<Result<v1::ServerFrame, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<v1::ClientFrame>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let max = self.node.config.limits.max_frame_bytes;
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
            self.node.clone(),
            Box::new(GrpcTransport { tx }),
            Box::pin(inbound),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct GrpcTransport {
    tx: mpsc::Sender<Result<v1::ServerFrame, Status>>,
}

#[async_trait]
impl Transport for GrpcTransport {
    async fn write(&mut self, items: Vec<Item>) -> Result<(), ()> {
        for item in items {
            let frame = match item {
                Item::Push(out) => out.frame.clone(),
                Item::Frame(frame) => frame,
            };
            self.tx.send(Ok(frame)).await.map_err(|_| ())?;
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
            let _ = self.tx.send(Ok(push)).await;
        }
        // Dropping the sender ends the response stream.
    }
}
