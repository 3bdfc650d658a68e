//! The seam between a session and its connection. A session writes through a
//! write-only `Transport` and reads an `Inbound` stream; WebSocket (JSON or
//! protobuf) and gRPC each provide both, so one session implementation serves all.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use mkondo_proto::v1;

use crate::engine::outbound::Outbound;
use crate::error::Error;

/// Something to write: a shared push (encoded once per encoding) or a reply.
#[derive(Debug, Clone)]
pub enum Item {
    Push(Arc<Outbound>),
    Frame(v1::ServerFrame),
}

#[async_trait]
pub trait Transport: Send {
    /// Writes a batch of frames as one transport message where the transport can.
    /// An error means the connection is gone.
    async fn write(&mut self, items: Vec<Item>) -> Result<(), ()>;
    /// Sends the disconnect (if any) and closes.
    async fn close(&mut self, disconnect: Option<v1::Disconnect>);
}

/// What the reading half of a connection produced.
#[derive(Debug)]
pub enum Inbound {
    Frames(Vec<v1::ClientFrame>),
    /// A frame that could not be used; answered with an error carrying `id` (0 if unknown).
    Rejected {
        id: u32,
        error: Error,
    },
    /// The client broke the protocol beyond answering (e.g. a frame over the hard limit).
    Fatal(String),
}

pub type InboundStream = Pin<Box<dyn Stream<Item = Inbound> + Send>>;
