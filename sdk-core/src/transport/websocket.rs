//! Native WebSocket (tokio-tungstenite): JSON text or protobuf binary messages,
//! each holding one or more frames. WebSocket-level pings are not used (browsers
//! cannot send them); liveness is the protocol's own ping / pong.

use futures::{SinkExt, StreamExt};
use mkondo_proto::{codec, v1::ServerFrame, Encoding};
use tokio_tungstenite::tungstenite::{
    client::IntoClientRequest,
    http::HeaderValue,
    protocol::{frame::coding::CloseCode, CloseFrame},
    Message,
};

use std::sync::Arc;

use tokio_tungstenite::Connector;

use super::tls::TlsConfigs;
use super::{websocket_url, Link, Outgoing, Transport};
use crate::rt;

/// WebSocket in one encoding (`wss://` over rustls, see `tls.rs`).
#[derive(Debug, Clone)]
pub struct WebSocket {
    encoding: Encoding,
    tls: Arc<TlsConfigs>,
}

impl WebSocket {
    pub fn new(encoding: Encoding, tls: Arc<TlsConfigs>) -> Self {
        Self { encoding, tls }
    }
}

impl Transport for WebSocket {
    fn open(&self, link: Link) {
        rt::spawn(run(self.encoding, self.tls.clone(), link));
    }
}

async fn run(encoding: Encoding, tls: Arc<TlsConfigs>, mut link: Link) {
    let url = websocket_url(&link.url);
    let connector = if url.starts_with("wss://") {
        match tls.websocket() {
            Ok(config) => Some(Connector::Rustls(config)),
            Err(e) => return link.reporter.closed(None, e),
        }
    } else {
        None
    };
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return link.reporter.closed(None, format!("bad URL {url}: {e}")),
    };
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(encoding.subprotocol()),
    );
    let connected = tokio::select! {
        // Nagle off: frames are small and written as they happen.
        r = tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector) => r,
        // Closed before it opened: nothing to say.
        _ = wait_close(&mut link) => return,
    };
    let ws = match connected {
        Ok((ws, _)) => ws,
        Err(e) => return link.reporter.closed(None, e.to_string()),
    };
    link.reporter.opened();
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            out = link.outgoing.recv() => match out {
                Some(Outgoing::Frames(frames)) => {
                    let message = match codec::encode_batch(encoding, &frames) {
                        Ok(bytes) if encoding.is_binary() => Message::Binary(bytes),
                        Ok(bytes) => match String::from_utf8(bytes.to_vec()) {
                            Ok(text) => Message::Text(text.into()),
                            Err(e) => return link.reporter.closed(None, e.to_string()),
                        },
                        Err(e) => return link.reporter.closed(None, e.to_string()),
                    };
                    match rt::timeout(link.write_timeout, sink.send(message)).await {
                        Some(Ok(())) => {}
                        Some(Err(e)) => return link.reporter.closed(None, e.to_string()),
                        None => return link.reporter.closed(None, "write timed out"),
                    }
                }
                Some(Outgoing::Close) | None => {
                    let close = Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "client closed".into(),
                    }));
                    let _ = rt::timeout(link.write_timeout, sink.send(close)).await;
                    return;
                }
            },
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if !deliver(&link, encoding, text.as_bytes()) { return; }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if !deliver(&link, encoding, &bytes) { return; }
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                        .unwrap_or((None, String::new()));
                    return link.reporter.closed(code, reason);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return link.reporter.closed(None, e.to_string()),
                None => return link.reporter.closed(None, "connection ended"),
            },
        }
    }
}

/// Decodes a message and reports its frames; a message that does not decode
/// ends the connection (the server and client disagree on the protocol).
fn deliver(link: &Link, encoding: Encoding, data: &[u8]) -> bool {
    match codec::decode_batch::<ServerFrame>(encoding, data) {
        Ok(frames) => {
            link.reporter.frames(frames);
            true
        }
        Err(e) => {
            link.reporter
                .closed(None, format!("undecodable message: {e}"));
            false
        }
    }
}

/// Resolves when the driver asks to close (or drops the connection).
async fn wait_close(link: &mut Link) {
    while let Some(out) = link.outgoing.recv().await {
        if out == Outgoing::Close {
            return;
        }
    }
}
