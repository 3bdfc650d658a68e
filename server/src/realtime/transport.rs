//! The seam between a session and its connection. A session writes through a
//! write-only `Transport` and reads an `Inbound` stream; WebSocket (JSON or
//! protobuf) and gRPC each provide both, so one session implementation serves all.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use mkondo_proto::v1;

use crate::engine::outbound::Outbound;
use crate::error::Error;

/// Something to write: a shared push (encoded once per encoding) or a reply.
/// Pointer-sized (a reply is boxed): a session keeps one batch buffer of
/// these for its whole life.
#[derive(Debug, Clone)]
pub enum Item {
    Push(Arc<Outbound>),
    Frame(Box<v1::ServerFrame>),
}

impl Item {
    pub fn frame(frame: v1::ServerFrame) -> Self {
        Self::Frame(Box::new(frame))
    }
}

/// The session is generic over its transport, not `dyn`: a write is the
/// session's most frequent await (one per push), and a trait object's
/// future would be a heap allocation each time.
pub trait Transport: Send {
    /// Writes a batch of frames as one transport message where the transport
    /// can, and leaves `items` empty (its capacity is kept for the next batch).
    /// An error means the connection is gone.
    fn write(&mut self, items: &mut Vec<Item>) -> impl Future<Output = Result<(), ()>> + Send;
    /// Sends the disconnect (if any) and closes.
    fn close(&mut self, disconnect: Option<v1::Disconnect>) -> impl Future<Output = ()> + Send;
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
