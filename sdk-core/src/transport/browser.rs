//! The browser's WebSocket (web-sys): JSON text or protobuf binary messages.
//! Built and linted for `wasm32-unknown-unknown` here; run in a browser by the
//! web SDK's tests.

use mkondo_proto::{codec, v1::ServerFrame, Encoding};
use tokio::sync::mpsc;
use wasm_bindgen::{closure::Closure, JsCast};
use web_sys::{BinaryType, CloseEvent, MessageEvent};

use super::{websocket_url, Link, Outgoing, Reporter, Transport};
use crate::rt;

/// The browser's WebSocket in one encoding.
#[derive(Debug, Clone, Copy)]
pub struct BrowserWebSocket {
    encoding: Encoding,
}

impl BrowserWebSocket {
    pub fn new(encoding: Encoding) -> Self {
        Self { encoding }
    }
}

impl Transport for BrowserWebSocket {
    fn open(&self, link: Link) {
        rt::spawn(run(self.encoding, link));
    }
}

fn on_message(reporter: &Reporter, encoding: Encoding, event: &MessageEvent) {
    let data = event.data();
    let bytes = if let Some(text) = data.as_string() {
        text.into_bytes()
    } else if let Ok(buffer) = data.dyn_into::<js_sys::ArrayBuffer>() {
        js_sys::Uint8Array::new(&buffer).to_vec()
    } else {
        return;
    };
    match codec::decode_batch::<ServerFrame>(encoding, &bytes) {
        Ok(frames) => reporter.frames(frames),
        Err(e) => reporter.closed(None, format!("undecodable message: {e}")),
    }
}

async fn run(encoding: Encoding, mut link: Link) {
    let url = websocket_url(&link.url);
    let ws = match web_sys::WebSocket::new_with_str(&url, encoding.subprotocol()) {
        Ok(ws) => ws,
        Err(e) => {
            return link
                .reporter
                .closed(None, format!("cannot open {url}: {e:?}"))
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<()>();

    let reporter = link.reporter.clone();
    let onopen = Closure::<dyn FnMut()>::new(move || reporter.opened());
    let reporter = link.reporter.clone();
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        on_message(&reporter, encoding, &e)
    });
    let reporter = link.reporter.clone();
    let onclose = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
        reporter.closed(Some(e.code()), e.reason());
        let _ = ended_tx.send(());
    });
    ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));

    loop {
        tokio::select! {
            out = link.outgoing.recv() => match out {
                Some(Outgoing::Frames(frames)) => {
                    let sent = match codec::encode_batch(encoding, &frames) {
                        Ok(bytes) if encoding.is_binary() => ws.send_with_u8_array(&bytes).map_err(|e| format!("{e:?}")),
                        Ok(bytes) => match std::str::from_utf8(&bytes) {
                            Ok(text) => ws.send_with_str(text).map_err(|e| format!("{e:?}")),
                            Err(e) => Err(e.to_string()),
                        },
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = sent {
                        link.reporter.closed(None, e);
                        let _ = ws.close();
                        break;
                    }
                }
                Some(Outgoing::Close) | None => {
                    let _ = ws.close_with_code_and_reason(1000, "client closed");
                    break;
                }
            },
            _ = ended_rx.recv() => break,
        }
    }
    // Detach the handlers so that nothing calls into dropped closures.
    ws.set_onopen(None);
    ws.set_onmessage(None);
    ws.set_onclose(None);
}
