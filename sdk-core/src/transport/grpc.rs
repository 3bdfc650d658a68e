//! Native gRPC (tonic): `mkondo.v1.Realtime/Connect`, one frame per stream
//! message, over HTTP/2 (cleartext `http://` or TLS `https://`).

use mkondo_proto::v1::{realtime_client::RealtimeClient, ClientFrame};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Endpoint;

use super::{grpc_url, Link, Outgoing, Transport};
use crate::rt;

/// gRPC.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grpc;

impl Transport for Grpc {
    fn open(&self, link: Link) {
        rt::spawn(run(link));
    }
}

async fn run(mut link: Link) {
    let url = grpc_url(&link.url);
    let endpoint = match Endpoint::from_shared(url.clone()) {
        Ok(e) => e.connect_timeout(link.write_timeout),
        Err(e) => return link.reporter.closed(None, format!("bad URL {url}: {e}")),
    };
    let connected = tokio::select! {
        r = endpoint.connect() => r,
        _ = wait_close(&mut link) => return,
    };
    let channel = match connected {
        Ok(channel) => channel,
        Err(e) => return link.reporter.closed(None, e.to_string()),
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

async fn wait_close(link: &mut Link) {
    while let Some(out) = link.outgoing.recv().await {
        if out == Outgoing::Close {
            return;
        }
    }
}
