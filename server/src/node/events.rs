//! The event feed: what the customer's backend reads to learn every change
//! (`GET /v1/events`, Admin `StreamEvents`), from the outbox the store writes
//! with each change (store/events.rs). A backend keeps the last cursor it
//! processed and asks again from it: after downtime it catches up by itself,
//! within the retention (`--event-retention-hours`), which a node task enforces.

use std::sync::Arc;
use std::time::Duration;

use super::requests::distinct;
use super::Node;
use crate::error::{Error, Result};
use crate::store::{
    self,
    events::{EventCursor, StoredEvent, EVENT_TYPES},
};

/// Events per feed page: 100 unless asked, at most 1,000.
pub const DEFAULT_EVENT_PAGE: u32 = 100;
pub const MAX_EVENT_PAGE: u32 = 1_000;
/// Type filters name at most this many types (duplicates counted).
pub const MAX_EVENT_TYPES: usize = 64;
/// How often the retention task runs, and how many events one delete takes.
const RETENTION_EVERY: Duration = Duration::from_secs(300);
const PURGE_BATCH: u32 = 5_000;

/// A feed request as an interface gives it.
#[derive(Debug, Clone, Default)]
pub struct FeedRequest {
    /// The cursor of the last event processed; absent or empty: from the oldest retained.
    pub after: Option<String>,
    /// Only these types; empty: all.
    pub types: Vec<String>,
    pub limit: Option<u32>,
}

/// One page of the feed and where to ask next: the last event's cursor, or
/// the request's own when nothing new was served.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub events: Vec<StoredEvent>,
    pub next: EventCursor,
}

/// Checks a list of event types: known names, de-duplicated, capped. None for
/// an empty list (every type).
pub fn event_types(types: Vec<String>) -> Result<Option<Vec<String>>> {
    let types = distinct(types, MAX_EVENT_TYPES, "types")?;
    if let Some(unknown) = types.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(Error::invalid(format!("unknown event type {shown:?}")));
    }
    Ok((!types.is_empty()).then_some(types))
}

impl Node {
    /// One page of `app`'s feed (the backend only: the adapters require an API key).
    pub async fn events(&self, app: &str, request: FeedRequest) -> Result<FeedPage> {
        let after = match request.after.as_deref() {
            None | Some("") => EventCursor::START,
            Some(cursor) => cursor.parse()?,
        };
        let limit = match request.limit {
            None => DEFAULT_EVENT_PAGE,
            Some(n) if (1..=MAX_EVENT_PAGE).contains(&n) => n,
            Some(_) => {
                return Err(Error::invalid(format!(
                    "limit must be 1 to {MAX_EVENT_PAGE}"
                )))
            }
        };
        let types = event_types(request.types)?;
        let (events, next) = self
            .store
            .events_scan(app, after, types.as_deref(), limit)
            .await?;
        Ok(FeedPage { events, next })
    }

    /// Deletes events older than the retention, now and every few minutes,
    /// until shutdown. Every node runs it; the deletes are idempotent.
    pub async fn run_event_retention(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RETENTION_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let before = store::now_ms() - self.config.event_retention.as_millis() as i64;
            loop {
                match self.store.purge_events(before, PURGE_BATCH).await {
                    Ok(n) if n == u64::from(PURGE_BATCH) => continue,
                    Ok(n) => {
                        if n > 0 {
                            tracing::debug!(purged = n, "events past the retention deleted");
                        }
                        break;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "deleting events past the retention failed");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_filters_are_known_capped_and_deduplicated() {
        assert_eq!(event_types(vec![]).unwrap(), None);
        assert_eq!(
            event_types(vec!["member.added".into(), "member.added".into()]).unwrap(),
            Some(vec!["member.added".to_owned()])
        );
        assert!(event_types(vec!["member.exploded".into()]).is_err());
        assert!(event_types(vec!["message.created".into(); MAX_EVENT_TYPES + 1]).is_err());
    }
}
