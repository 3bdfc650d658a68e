//! The platform seam for the wire: how frames travel. Each transport opens one
//! connection per [`Link`] in a task of its own, reports what happens through
//! the link's [`Reporter`] (opened, frames, closed: tagged with the connection's
//! generation, so the session can ignore a replaced one), and writes what the
//! driver sends until told to close.
//!
//! - [`websocket`]: native WebSocket (tokio-tungstenite), JSON or protobuf.
//! - [`grpc`]: native gRPC (tonic) `mkondo.v1.Realtime/Connect`.
//! - [`browser`]: the browser's WebSocket (web-sys), JSON or protobuf.
//! - [`memory`]: in-process, for tests: the test plays the server.

#[cfg(target_arch = "wasm32")]
pub mod browser;
#[cfg(not(target_arch = "wasm32"))]
pub mod grpc;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod http;
pub mod memory;
#[cfg(not(target_arch = "wasm32"))]
pub mod tls;
#[cfg(not(target_arch = "wasm32"))]
pub mod websocket;
#[cfg(target_arch = "wasm32")]
pub(crate) mod xhr;

use std::time::Duration;

use mkondo_proto::v1::{ClientFrame, ServerFrame};
use tokio::sync::mpsc;

use crate::config::TransportKind;
use crate::rt::{SendOutsideWasm, SyncOutsideWasm};
use crate::session::ConnId;

/// What a connection reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportEvent {
    Opened,
    /// Frames in the order they arrived (one WebSocket message may hold several).
    Frames(Vec<ServerFrame>),
    /// The connection ended (or never opened): the close code when there was one.
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

/// Sends a connection's reports to the driver, tagged with its generation.
#[derive(Debug, Clone)]
pub struct Reporter {
    conn: ConnId,
    tx: mpsc::UnboundedSender<(ConnId, TransportEvent)>,
}

impl Reporter {
    pub fn new(conn: ConnId, tx: mpsc::UnboundedSender<(ConnId, TransportEvent)>) -> Self {
        Self { conn, tx }
    }

    pub fn opened(&self) {
        let _ = self.tx.send((self.conn, TransportEvent::Opened));
    }

    pub fn frames(&self, frames: Vec<ServerFrame>) {
        let _ = self.tx.send((self.conn, TransportEvent::Frames(frames)));
    }

    pub fn closed(&self, code: Option<u16>, reason: impl Into<String>) {
        let reason = reason.into();
        let _ = self
            .tx
            .send((self.conn, TransportEvent::Closed { code, reason }));
    }
}

/// What the driver asks a connection to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// Write these frames (as one message where the wire batches).
    Frames(Vec<ClientFrame>),
    /// Close (a normal close), then stop.
    Close,
}

/// One connection to open.
#[derive(Debug)]
pub struct Link {
    /// The server URL from the configuration.
    pub url: String,
    pub reporter: Reporter,
    /// Ends (returns `None`) when the driver dropped the connection.
    pub outgoing: mpsc::UnboundedReceiver<Outgoing>,
    /// A write that takes longer than this means the connection is stuck.
    pub write_timeout: Duration,
}

/// A wire: opens connections in the background.
pub trait Transport: SendOutsideWasm + SyncOutsideWasm {
    /// Starts opening a connection; everything else goes through the link.
    fn open(&self, link: Link);
}

/// The transport a [`TransportKind`] names on this platform. `extra_ca_pem`
/// is a CA trusted besides the platform's store for TLS (native only: a browser
/// uses its own trust store).
pub fn for_kind(
    kind: TransportKind,
    extra_ca_pem: Option<String>,
) -> Result<std::sync::Arc<dyn Transport>, crate::Error> {
    use mkondo_proto::Encoding;
    #[cfg(not(target_arch = "wasm32"))]
    {
        if let Some(pem) = &extra_ca_pem {
            tls::parse_extra_ca(pem).map_err(crate::Error::Config)?;
        }
        let tls = std::sync::Arc::new(tls::TlsConfigs::new(tls::TlsTrust { extra_ca_pem }));
        Ok(match kind {
            TransportKind::WebSocketJson => {
                std::sync::Arc::new(websocket::WebSocket::new(Encoding::Json, tls))
            }
            TransportKind::WebSocketProtobuf => {
                std::sync::Arc::new(websocket::WebSocket::new(Encoding::Protobuf, tls))
            }
            TransportKind::Grpc => std::sync::Arc::new(grpc::Grpc::new(tls)),
        })
    }
    #[cfg(target_arch = "wasm32")]
    {
        if extra_ca_pem.is_some() {
            return Err(crate::Error::Config(
                "a browser trusts its own store: extra_ca_pem is for native clients".into(),
            ));
        }
        match kind {
            TransportKind::WebSocketJson => Ok(std::sync::Arc::new(
                browser::BrowserWebSocket::new(Encoding::Json),
            )),
            TransportKind::WebSocketProtobuf => Ok(std::sync::Arc::new(
                browser::BrowserWebSocket::new(Encoding::Protobuf),
            )),
            TransportKind::Grpc => Err(crate::Error::Config(
                "gRPC is not available in browsers: use a WebSocket transport".into(),
            )),
        }
    }
}

/// A server URL's scheme, lower-cased as URLs compare it (`HTTPS://` is
/// `https://`: TLS is chosen from this, never from the text as written), and
/// the rest; `None` without `://`.
pub fn split_scheme(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.trim().split_once("://")?;
    Some((scheme.to_ascii_lowercase(), rest))
}

/// The schemes a server URL may have.
pub const SCHEMES: [&str; 4] = ["http", "https", "ws", "wss"];

/// The WebSocket URL of a server URL: `http(s)://host[:port]` or
/// `ws(s)://host[:port]`, with `/v1/realtime` when no path is given.
pub fn websocket_url(url: &str) -> String {
    let url = url.trim();
    let split = split_scheme(url);
    let (scheme, rest) = match split.as_ref().map(|(s, r)| (s.as_str(), *r)) {
        Some(("http", rest)) => ("ws", rest),
        Some(("https", rest)) => ("wss", rest),
        Some((scheme, rest)) => (scheme, rest),
        None => ("ws", url),
    };
    if rest.trim_end_matches('/').contains('/') {
        format!("{scheme}://{rest}")
    } else {
        format!("{scheme}://{}/v1/realtime", rest.trim_end_matches('/'))
    }
}

/// The gRPC endpoint of a server URL: `http(s)://host[:port]` without a path.
pub fn grpc_url(url: &str) -> String {
    let url = url.trim();
    let split = split_scheme(url);
    let (scheme, rest) = match split.as_ref().map(|(s, r)| (s.as_str(), *r)) {
        Some(("ws", rest)) => ("http", rest),
        Some(("wss", rest)) => ("https", rest),
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", url),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_serves_every_transport() {
        assert_eq!(
            websocket_url("http://127.0.0.1:8080"),
            "ws://127.0.0.1:8080/v1/realtime"
        );
        assert_eq!(
            websocket_url("https://chat.example.com/"),
            "wss://chat.example.com/v1/realtime"
        );
        assert_eq!(
            websocket_url("ws://h:1/v1/realtime"),
            "ws://h:1/v1/realtime"
        );
        assert_eq!(websocket_url("h:1"), "ws://h:1/v1/realtime");
        assert_eq!(grpc_url("ws://h:1/v1/realtime"), "http://h:1");
        assert_eq!(grpc_url("wss://h/v1/realtime"), "https://h");
        assert_eq!(grpc_url("http://h:1"), "http://h:1");
        // The scheme is compared as URLs compare it: upper case is still TLS.
        assert_eq!(grpc_url("HTTPS://h"), "https://h");
        assert_eq!(grpc_url("Wss://h/v1/realtime"), "https://h");
        assert_eq!(websocket_url("HTTPS://h"), "wss://h/v1/realtime");
        assert_eq!(websocket_url("WSS://h:1/x"), "wss://h:1/x");
    }
}
