//! An in-process transport for tests: every connection the client opens shows
//! up at the [`MemoryServer`], where the test reads the client's frames and
//! answers, opens, refuses or closes as a server (or a broken network) would.

use std::sync::Arc;

use mkondo_proto::v1::{ClientFrame, ServerFrame};
use tokio::sync::{mpsc, Mutex};

use super::{Link, Outgoing, Transport};

/// The client's side: hand it to [`Config::with_transport`](crate::Config::with_transport).
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    accepted: mpsc::UnboundedSender<Link>,
}

/// The test's side.
#[derive(Debug, Clone)]
pub struct MemoryServer {
    incoming: Arc<Mutex<mpsc::UnboundedReceiver<Link>>>,
}

/// A pair of ends.
pub fn pair() -> (MemoryTransport, MemoryServer) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        MemoryTransport { accepted: tx },
        MemoryServer {
            incoming: Arc::new(Mutex::new(rx)),
        },
    )
}

impl Transport for MemoryTransport {
    fn open(&self, link: Link) {
        let _ = self.accepted.send(link);
    }
}

impl MemoryServer {
    /// The next connection the client opens (not yet reported open).
    pub async fn accept(&self) -> MemoryConn {
        let link = self
            .incoming
            .lock()
            .await
            .recv()
            .await
            .expect("the client is gone");
        MemoryConn { link }
    }

    /// A connection opened since the last call, if any.
    pub async fn try_accept(&self) -> Option<MemoryConn> {
        self.incoming
            .lock()
            .await
            .try_recv()
            .ok()
            .map(|link| MemoryConn { link })
    }
}

/// One connection, seen from the server.
#[derive(Debug)]
pub struct MemoryConn {
    link: Link,
}

impl MemoryConn {
    /// The URL the client connected to.
    pub fn url(&self) -> &str {
        &self.link.url
    }

    /// Completes the opening (a WebSocket upgrade, a gRPC stream).
    pub fn open(&self) {
        self.link.reporter.opened();
    }

    pub fn send(&self, frames: Vec<ServerFrame>) {
        self.link.reporter.frames(frames);
    }

    /// Ends the connection with a close code, as a server would.
    pub fn close(&self, code: Option<u16>, reason: &str) {
        self.link.reporter.closed(code, reason);
    }

    /// The next batch the client wrote; `None` when it closed the connection.
    pub async fn recv(&mut self) -> Option<Vec<ClientFrame>> {
        match self.link.outgoing.recv().await? {
            Outgoing::Frames(frames) => Some(frames),
            Outgoing::Close => None,
        }
    }
}
