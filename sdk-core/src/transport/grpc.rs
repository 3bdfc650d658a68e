//! Native gRPC (tonic): `mkondo.v1.Realtime/Connect`, one frame per stream
//! message, over HTTP/2 (cleartext `http://` or TLS `https://`).

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use mkondo_proto::v1::{realtime_client::RealtimeClient, ClientFrame};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::tls::TlsConfigs;
use super::{grpc_url, Link, Outgoing, Transport};
use crate::rt;

/// gRPC (over TLS with ALPN `h2` for `https://`, see `tls.rs`).
#[derive(Debug, Clone)]
pub struct Grpc {
    tls: Arc<TlsConfigs>,
}

impl Grpc {
    pub fn new(tls: Arc<TlsConfigs>) -> Self {
        Self { tls }
    }
}

impl Transport for Grpc {
    fn open(&self, link: Link) {
        rt::spawn(run(self.tls.clone(), link));
    }
}

async fn run(tls: Arc<TlsConfigs>, mut link: Link) {
    let url = grpc_url(&link.url);
    let endpoint = match Endpoint::from_shared(url.clone()) {
        Ok(e) => e.connect_timeout(link.write_timeout),
        Err(e) => return link.reporter.closed(None, format!("bad URL {url}: {e}")),
    };
    let connected = tokio::select! {
        // grpc_url lower-cases the scheme: `HTTPS://` is TLS too.
        r = connect(&tls, endpoint, url.starts_with("https://")) => r,
        _ = wait_close(&mut link) => return,
    };
    let channel = match connected {
        Ok(channel) => channel,
        Err(e) => return link.reporter.closed(None, e),
    };
    // Open once HTTP/2 is up: the server may hold the response headers until
    // the first frame (`connect`) arrives, so the call is awaited while writing.
    link.reporter.opened();
    let (tx, rx) = mpsc::unbounded_channel::<ClientFrame>();
    let mut client = RealtimeClient::new(channel);
    let call = client.connect(UnboundedReceiverStream::new(rx));
    tokio::pin!(call);
    let mut inbound = loop {
        tokio::select! {
            response = &mut call => match response {
                Ok(response) => break response.into_inner(),
                Err(status) => return link.reporter.closed(None, status.message().to_owned()),
            },
            out = link.outgoing.recv() => match out {
                Some(Outgoing::Frames(frames)) => {
                    for frame in frames {
                        let _ = tx.send(frame);
                    }
                }
                Some(Outgoing::Close) | None => return,
            },
        }
    };
    loop {
        tokio::select! {
            out = link.outgoing.recv() => match out {
                Some(Outgoing::Frames(frames)) => {
                    for frame in frames {
                        if tx.send(frame).is_err() {
                            return link.reporter.closed(None, "request stream closed");
                        }
                    }
                }
                // Ending the request stream ends the call.
                Some(Outgoing::Close) | None => return,
            },
            message = inbound.message() => match message {
                Ok(Some(frame)) => link.reporter.frames(vec![frame]),
                Ok(None) => return link.reporter.closed(None, "stream ended"),
                Err(status) => return link.reporter.closed(None, status.message().to_owned()),
            },
        }
    }
}

/// HTTP/2 in the clear, or over rustls with the client's trust and ALPN `h2`.
async fn connect(tls: &TlsConfigs, endpoint: Endpoint, secure: bool) -> Result<Channel, String> {
    if !secure {
        return endpoint.connect().await.map_err(|e| e.to_string());
    }
    let config = tls.grpc()?;
    let connect = tower::service_fn(move |uri: Uri| {
        let config = config.clone();
        async move {
            let (tcp, host) = super::tls::dial(&uri, 443).await?;
            let stream = super::tls::secure(config, host, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    endpoint
        .connect_with_connector(connect)
        .await
        .map_err(|e| error_chain(&e))
}

/// An error with its causes: tonic's own message ("transport error") says
/// nothing of the certificate that was refused.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

async fn wait_close(link: &mut Link) {
    while let Some(out) = link.outgoing.recv().await {
        if out == Outgoing::Close {
            return;
        }
    }
}
