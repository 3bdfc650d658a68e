//! The event feed over the Admin API: `StreamEvents`, the twin of `GET
//! /v1/events` as a server stream that keeps following the feed.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use mkondo_proto::convert::json_to_struct;
use mkondo_proto::v1::{Event, StreamEventsRequest};
use tonic::Status;

use super::timestamp;
use crate::error::Result;
use crate::node::events::{event_types, FeedRequest};
use crate::node::Node;
use crate::store::events::{EventCursor, StoredEvent};

pub type EventStream = Pin<Box<dyn Stream<Item = std::result::Result<Event, Status>> + Send>>;

/// How often a caught-up stream looks for new events.
const POLL: Duration = Duration::from_millis(250);
/// Events read per page while catching up.
const PAGE: u32 = 500;

/// Checks the request now (a bad cursor or type fails the call, not the
/// stream), then follows the feed from `after` until the client goes away or
/// the node shuts down.
pub(super) fn stream_events(
    node: Arc<Node>,
    app: String,
    req: StreamEventsRequest,
) -> Result<EventStream> {
    let mut after = match req.after.as_str() {
        "" => EventCursor::START,
        cursor => cursor.parse()?,
    };
    event_types(req.types.clone())?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let shutdown = node.shutdown_signal();
    tokio::spawn(async move {
        loop {
            let request = FeedRequest {
                after: Some(after.to_string()),
                types: req.types.clone(),
                limit: Some(PAGE),
            };
            let page = match node.events(&app, request).await {
                Ok(page) => page,
                Err(err) => {
                    let _ = tx.send(Err(Status::from(err))).await;
                    return;
                }
            };
            let caught_up = page.events.len() < PAGE as usize;
            after = page.next;
            for event in page.events {
                if tx.send(Ok(wire(event))).await.is_err() {
                    return;
                }
            }
            if caught_up {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

fn wire(e: StoredEvent) -> Event {
    Event {
        cursor: e.cursor.to_string(),
        data: json_to_struct(&e.data).ok(),
        created_at: timestamp(e.created_at),
        id: e.id,
        r#type: e.kind,
        app_id: e.app_id,
        conversation_id: e.conversation_id.unwrap_or_default(),
    }
}
