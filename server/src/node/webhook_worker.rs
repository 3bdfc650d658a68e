//! Webhook delivery: a node task that follows each active endpoint's position
//! in the event feed and POSTs every event, at least once, in order per
//! (endpoint, conversation).
//!
//! Two steps every tick (~250 ms):
//! 1. **Copy.** For each active endpoint, the events after its position
//!    (`Store::events_after`, gap-safe) are copied into per-stream pending rows
//!    in the transaction that moves the position (compare-and-set), so an
//!    event is neither lost nor queued twice, whichever node copies.
//! 2. **Deliver.** Due streams are claimed with a lease (an `UPDATE` that
//!    matches a free lease only: two nodes never deliver one stream at once);
//!    each claimed stream gets a task that POSTs its events oldest first and
//!    stops at the first failure, which schedules the stream's next attempt
//!    after backon's jittered exponential delay. Other streams of the endpoint
//!    go on. An event leaves its stream only in the transaction that logs its
//!    successful attempt, so a crash between the POST and that commit
//!    delivers it again (same event id: receivers de-duplicate).
//!
//! An endpoint failing continuously (no success on any stream) for the
//! give-up time is disabled: logged, counted, shown in the API, and its
//! position stays where it was until it is re-enabled.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Node;
use crate::error::Result;
use crate::outbound::sign;
use crate::store::events::StoredEvent;
use crate::store::now_ms;
use crate::store::webhooks::{AttemptRecord, DueStream, WebhookRow};

const TICK: Duration = Duration::from_millis(250);
/// Events read from the feed per endpoint and tick.
const COPY_BATCH: u32 = 500;
/// Streams delivered at once by one node.
const CONCURRENT_STREAMS: usize = 32;
/// Streams one node claims per tick: the rest are left to the next tick, or
/// to other nodes, so several nodes share an endpoint's conversations.
const CLAIMS_PER_TICK: usize = 8;
/// Events of a stream read at a time.
const STREAM_BATCH: u32 = 50;
/// Attempts kept per endpoint.
const ATTEMPTS_KEPT: u32 = 1_000;
/// Presence changes a node keeps for the next tick at most; past it, new
/// ones are dropped (presence webhooks are best-effort).
const PRESENCE_QUEUE: usize = 10_000;
/// Presence POSTs in flight at once on one node, all endpoints together.
const PRESENCE_IN_FLIGHT: usize = 64;
const PRESENCE_CHANGED: &str = "presence.changed";
const USER_AGENT: &str = concat!("Mkondo-Webhooks/", env!("CARGO_PKG_VERSION"));

/// The streams this node is delivering now, by (app, endpoint, stream).
type Busy = Arc<Mutex<HashSet<(String, String, String)>>>;

/// What one POST came to.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn label(&self) -> &'static str {
        match self.status {
            Some(s) if (200..300).contains(&s) => "delivered",
            Some(_) => "rejected",
            None => "error",
        }
    }
}

/// Presence changes announced on this node, waiting for the next tick: sent
/// once to the endpoints whose `event_types` name `presence.changed` (opt-in:
/// not stored, not in the feed, not retried).
pub(super) struct PresenceQueue {
    changes: Mutex<Vec<PresenceChange>>,
    /// POSTs of presence changes in flight on this node: beyond
    /// [`PRESENCE_IN_FLIGHT`], changes are dropped rather than queued.
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Default for PresenceQueue {
    fn default() -> Self {
        Self {
            changes: Mutex::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(PRESENCE_IN_FLIGHT)),
        }
    }
}

struct PresenceChange {
    app: String,
    at: i64,
    data: serde_json::Value,
}

impl Node {
    /// Queues a presence change for the presence webhooks (best-effort: a
    /// full queue drops it, a crash loses it, a failed POST is not retried).
    pub(crate) fn queue_presence_webhook(
        &self,
        app: &str,
        presence: &crate::engine::presence::UserPresence,
    ) {
        let mut queue = self
            .presence_changes
            .changes
            .lock()
            .expect("presence queue");
        if queue.len() >= PRESENCE_QUEUE {
            metrics::counter!("mkondo_webhook_presence_dropped_total").increment(1);
            return;
        }
        let at = now_ms();
        queue.push(PresenceChange {
            app: app.to_owned(),
            at,
            data: serde_json::json!({ "presence": {
                "user_id": presence.user_id,
                "status": presence.status.as_str(),
                "last_seen": crate::store::Millis(presence.last_seen.unwrap_or(at)),
            }}),
        });
    }

    /// Posts the queued presence changes to the endpoints that asked for them.
    async fn post_presence_changes(self: &Arc<Self>, tasks: &tokio_util::task::TaskTracker) {
        let changes = std::mem::take(
            &mut *self
                .presence_changes
                .changes
                .lock()
                .expect("presence queue"),
        );
        if changes.is_empty() {
            return;
        }
        let hooks = match self.store.active_webhooks().await {
            Ok(hooks) => hooks,
            Err(err) => {
                tracing::debug!(%err, "webhooks: presence changes dropped");
                return;
            }
        };
        let wanted: Vec<&WebhookRow> = hooks
            .iter()
            .filter(|h| h.event_types.iter().any(|t| t == PRESENCE_CHANGED))
            .collect();
        for change in changes {
            for hook in wanted.iter().filter(|h| h.app_id == change.app) {
                let event = StoredEvent {
                    id: format!("ev_{}", ulid::Ulid::new().to_string().to_lowercase()),
                    cursor: Default::default(),
                    app_id: change.app.clone(),
                    kind: PRESENCE_CHANGED.to_owned(),
                    conversation_id: None,
                    created_at: change.at,
                    data: change.data.clone(),
                };
                let Ok(permit) = self.presence_changes.in_flight.clone().try_acquire_owned() else {
                    metrics::counter!("mkondo_webhook_presence_dropped_total").increment(1);
                    continue;
                };
                let (node, hook) = (self.clone(), (*hook).clone());
                tasks.spawn(async move {
                    let _ = node.post_webhook_event(&hook, &event).await;
                    drop(permit);
                });
            }
        }
    }

    /// The delivery task (started by the composition root); ends on shutdown,
    /// leaving unfinished streams to their lease.
    pub async fn run_webhooks(self: Arc<Self>) {
        let owner: Arc<str> = Arc::from(format!(
            "wk_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        if let Err(err) = self.store.release_stale_webhook_leases().await {
            tracing::warn!(%err, "could not release webhook leases left by an earlier process");
        }
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_STREAMS));
        let busy: Busy = Default::default();
        let tasks = tokio_util::task::TaskTracker::new();
        let shutdown = self.shutdown_signal();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
            if let Err(err) = self.copy_webhook_events().await {
                tracing::warn!(%err, "webhooks: reading the event feed failed; retrying");
            }
            if let Err(err) = self.start_due_streams(&owner, &slots, &busy, &tasks).await {
                tracing::warn!(%err, "webhooks: finding due streams failed; retrying");
            }
            self.post_presence_changes(&tasks).await;
        }
        tasks.close();
        let _ = tokio::time::timeout(self.config.webhooks.timeout, tasks.wait()).await;
    }

    /// Step 1: every active endpoint's new events into its streams.
    async fn copy_webhook_events(&self) -> Result<()> {
        for hook in self.store.active_webhooks().await? {
            // One endpoint's failure does not hold the others back.
            if let Err(err) = self.copy_for(&hook).await {
                tracing::warn!(%err, webhook = %hook.id, "webhooks: reading the event feed failed; retrying");
            }
        }
        Ok(())
    }

    /// One endpoint's new events into its streams; its position moves past
    /// the rows of other types too.
    async fn copy_for(&self, hook: &WebhookRow) -> Result<()> {
        let from = hook.cursor();
        let types = (!hook.event_types.is_empty()).then_some(hook.event_types.as_slice());
        let (events, to) = self
            .store
            .events_scan(&hook.app_id, from, types, COPY_BATCH)
            .await?;
        if to != from {
            self.store
                .copy_webhook_events(hook, from, to, &events)
                .await?;
        }
        Ok(())
    }

    /// Step 2: claim due streams and deliver each in a task of its own.
    async fn start_due_streams(
        self: &Arc<Self>,
        owner: &Arc<str>,
        slots: &Arc<tokio::sync::Semaphore>,
        busy: &Busy,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<()> {
        let free = slots.available_permits().min(CLAIMS_PER_TICK);
        if free == 0 {
            return Ok(());
        }
        let now = now_ms();
        for stream in self.store.due_webhook_streams(now, free as u32).await? {
            let key = (
                stream.app_id.clone(),
                stream.webhook_id.clone(),
                stream.stream.clone(),
            );
            if busy.lock().expect("busy set").contains(&key) {
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            if !self
                .store
                .claim_webhook_stream(&stream, owner, now, self.lease_ms())
                .await?
            {
                continue;
            }
            busy.lock().expect("busy set").insert(key.clone());
            let node = self.clone();
            let owner = owner.clone();
            let busy = busy.clone();
            tasks.spawn(async move {
                if let Err(err) = node.deliver_stream(&stream, &owner).await {
                    tracing::warn!(%err, webhook = %stream.webhook_id, "webhooks: a stream's delivery failed; it is retried");
                    let _ = node.store.release_webhook_stream(&stream, &owner).await;
                }
                busy.lock().expect("busy set").remove(&key);
                drop(permit);
            });
        }
        Ok(())
    }

    /// A lease outlasts one POST with room to record it.
    fn lease_ms(&self) -> i64 {
        (self.config.webhooks.timeout.as_millis() as i64) * 3
    }

    /// Delivers a claimed stream's events oldest first until it is empty, an
    /// attempt fails, the lease is lost, or the node shuts down.
    async fn deliver_stream(&self, s: &DueStream, owner: &str) -> Result<()> {
        let shutdown = self.shutdown_signal();
        let Some(hook) = self.store.webhook(&s.app_id, &s.webhook_id).await? else {
            return Ok(());
        };
        if hook.disabled_at.is_some() {
            return self.store.release_webhook_stream(s, owner).await;
        }
        let mut delivered = 0u32;
        loop {
            let pending = self.store.webhook_stream_pending(s, STREAM_BATCH).await?;
            if pending.is_empty() {
                break;
            }
            for p in pending {
                if shutdown.is_cancelled() {
                    return self.store.release_webhook_stream(s, owner).await;
                }
                let Some(event) = self.store.event(&s.app_id, &p.event_id).await? else {
                    tracing::warn!(webhook = %s.webhook_id, event = %p.event_id,
                        "webhooks: an event left the feed before it was delivered");
                    self.store.drop_webhook_event(s, &p).await?;
                    continue;
                };
                let attempted_at = now_ms();
                // A secret that cannot be opened (the server key changed) is a
                // failed attempt like any other: backed off, logged, and past
                // the give-up time the endpoint is disabled.
                let outcome = match self.post_webhook_event(&hook, &event).await {
                    Ok(outcome) => outcome,
                    Err(err) => Outcome {
                        status: None,
                        error: Some(format!("not sent: {err}")),
                        duration: Duration::ZERO,
                    },
                };
                let record = AttemptRecord {
                    event_id: &event.id,
                    event_type: &event.kind,
                    attempt: p.attempts + 1,
                    attempted_at,
                    status_code: outcome.status,
                    error: outcome.error.clone(),
                    duration_ms: outcome.duration.as_millis() as i64,
                };
                if outcome.delivered() {
                    delivered += 1;
                    let lease_until = now_ms() + self.lease_ms();
                    if !self
                        .store
                        .webhook_delivered(s, &p, &record, owner, lease_until)
                        .await?
                    {
                        // Another node holds the stream now: it goes on from here.
                        return Ok(());
                    }
                    continue;
                }
                let delay = retry_delay(&self.config.webhooks, s.failures);
                let give_up = self.config.webhooks.give_up.as_millis() as i64;
                let reason = format!(
                    "failing since at least {}s ago; last attempt: {}",
                    give_up / 1000,
                    outcome.error.as_deref().unwrap_or("no 2xx answer")
                );
                let disabled = self
                    .store
                    .webhook_failed(
                        s,
                        &p,
                        &record,
                        owner,
                        attempted_at + delay.as_millis() as i64,
                        attempted_at - give_up,
                        &reason,
                    )
                    .await?;
                if disabled {
                    metrics::counter!("mkondo_webhook_endpoints_disabled_total").increment(1);
                    tracing::warn!(
                        app = %s.app_id,
                        webhook = %s.webhook_id,
                        "webhooks: an endpoint failed continuously past the give-up time and \
                         was disabled; re-enable it with PATCH /v1/webhooks/{{id}}"
                    );
                }
                self.trim_attempts(s).await;
                return Ok(());
            }
            if delivered >= ATTEMPTS_KEPT / 4 {
                self.trim_attempts(s).await;
                delivered = 0;
            }
        }
        self.trim_attempts(s).await;
        self.store.release_webhook_stream(s, owner).await
    }

    async fn trim_attempts(&self, s: &DueStream) {
        if let Err(err) = self
            .store
            .trim_webhook_attempts(&s.app_id, &s.webhook_id, ATTEMPTS_KEPT)
            .await
        {
            tracing::debug!(%err, "webhooks: trimming the attempt log failed");
        }
    }

    /// POSTs one event to an endpoint, signed with its secret (and its
    /// previous one while a rotation overlaps). `Err` only when the secrets
    /// cannot be opened (the server key changed).
    pub(crate) async fn post_webhook_event(
        &self,
        hook: &WebhookRow,
        event: &StoredEvent,
    ) -> Result<Outcome> {
        let sealer = self.secrets()?;
        let mut keys = vec![sealer.open(&hook.secret)?];
        let now = now_ms();
        if let (Some(previous), Some(until)) = (&hook.previous_secret, hook.previous_until) {
            if until > now {
                keys.push(sealer.open(previous)?);
            }
        }
        let body = serde_json::to_vec(&event.to_json()).map_err(|_| crate::Error::internal())?;
        let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let signature = sign::signature_header(&key_refs, now / 1000, &body);
        // `post_json` sets `Content-Type: application/json`.
        let headers = [
            (sign::SIGNATURE_HEADER, signature),
            ("Mkondo-Event-Id", event.id.clone()),
            ("Mkondo-Event-Type", event.kind.clone()),
            ("User-Agent", USER_AGENT.to_owned()),
        ];
        let url = url::Url::parse(&hook.url).map_err(|_| crate::Error::internal())?;
        let started = Instant::now();
        let answer = self
            .outbound()
            .post_json(&url, &headers, body.into(), self.config.webhooks.timeout)
            .await;
        let duration = started.elapsed();
        let outcome = match answer {
            Ok(response) => Outcome {
                status: Some(response.status),
                error: (!(200..300).contains(&response.status))
                    .then(|| format!("the endpoint answered {}", response.status)),
                duration,
            },
            Err(err) => Outcome {
                status: None,
                error: Some(err.to_string()),
                duration,
            },
        };
        metrics::counter!("mkondo_webhook_deliveries_total", "outcome" => outcome.label())
            .increment(1);
        metrics::histogram!("mkondo_webhook_delivery_seconds").record(duration.as_secs_f64());
        Ok(outcome)
    }
}

fn retry_delay(config: &crate::config::WebhookConfig, failures: i64) -> Duration {
    crate::outbound::retry_delay(config.retry_min, config.retry_max, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_with_jitter_up_to_the_maximum() {
        let config = crate::config::WebhookConfig {
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            ..Default::default()
        };
        let first = retry_delay(&config, 0);
        assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(200));
        let fourth = retry_delay(&config, 3);
        assert!(fourth >= Duration::from_millis(800) && fourth < Duration::from_millis(1600));
        assert!(retry_delay(&config, 50) <= Duration::from_secs(10));
        assert!(retry_delay(&config, i64::MAX) <= Duration::from_secs(10));
    }
}
