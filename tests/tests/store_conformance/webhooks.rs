//! Webhook delivery state (store/webhooks.rs) under racing nodes: copies from
//! the feed happen once however many nodes try (compare-and-set on the
//! endpoint's position), a stream's lease goes to exactly one claimant, a
//! failed attempt past the give-up time disables the endpoint once, and a
//! re-enabled endpoint's streams are due at once.

use std::collections::HashSet;
use std::sync::Arc;

use mkondo_server::store::events::EventCursor;
use mkondo_server::store::webhooks::{AttemptRecord, NewWebhook, WebhookPatch};
use mkondo_server::store::Store;
use sqlx::Row;
use tokio::task::JoinSet;

use super::{new_app, new_group, new_users, send, Db};

async fn new_webhook(store: &Store, app: &str) -> String {
    let id = format!("wh_{}", ulid::Ulid::new().to_string().to_lowercase());
    let new = NewWebhook {
        id: id.clone(),
        url: "https://hooks.example/in".into(),
        event_types: vec!["message.created".into()],
        description: String::new(),
        sealed_secret: "v1:sealed".into(),
        start: store.events_head(app).await.unwrap(),
    };
    store.create_webhook(app, &new, 20).await.unwrap();
    id
}

/// Waits until the feed shows `count` events of `kind` (at most 10 s).
async fn until_in_feed(store: &Store, app: &str, kind: &str, count: usize) {
    for _ in 0..400 {
        let events = store
            .events_after(app, EventCursor::START, None, 1000)
            .await
            .unwrap();
        if events.iter().filter(|e| e.kind == kind).count() >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("fewer than {count} {kind} events in the feed");
}

/// One node's copy step, as the worker runs it.
async fn copy_once(store: &Store) -> usize {
    let mut copied = 0;
    for hook in store.active_webhooks().await.unwrap() {
        let from = hook.cursor();
        let types = (!hook.event_types.is_empty()).then_some(hook.event_types.as_slice());
        let events = store
            .events_after(&hook.app_id, from, types, 3)
            .await
            .unwrap();
        if store
            .copy_webhook_events(
                &hook,
                from,
                events.last().map_or(from, |e| e.cursor),
                &events,
            )
            .await
            .unwrap()
        {
            copied += events.len();
        }
    }
    copied
}

pub async fn webhook_events_are_copied_and_streams_leased_exactly_once(db: Db) {
    let nodes: Arc<Vec<Store>> = Arc::new(db.nodes().await);
    let store = &nodes[0];
    let app = new_app(store, "hooks").await;
    new_users(store, &app, &["ann", "bob"]).await;
    let g1 = new_group(store, &app, None, &["ann", "bob"]).await;
    send(store, &app, &g1, "ann", "before the endpoint").await;
    // An endpoint starts at the feed's head, which on PostgreSQL stays behind
    // any transaction still in flight in the cluster (other tests'): nothing
    // committed after the endpoint can be missed, and an event committed just
    // before it may be included. The event is awaited in the feed first.
    until_in_feed(store, &app, "message.created", 1).await;
    let hook = new_webhook(store, &app).await;
    let g2 = new_group(store, &app, None, &["ann", "bob"]).await;
    for i in 0..6 {
        let conv = if i % 2 == 0 { &g1 } else { &g2 };
        send(store, &app, conv, "ann", &format!("m{i}")).await;
    }
    // In the feed, for the same reason, before the copiers count.
    until_in_feed(store, &app, "message.created", 7).await;

    // Every node copies at once, again and again, until the feed is drained.
    let mut copiers = JoinSet::new();
    for i in 0..nodes.len() * 3 {
        let nodes = nodes.clone();
        copiers.spawn(async move {
            let store = &nodes[i % nodes.len()];
            let mut copied = 0;
            for _ in 0..40 {
                copied += copy_once(store).await;
                tokio::task::yield_now().await;
            }
            copied
        });
    }
    let mut copied = 0;
    while let Some(n) = copiers.join_next().await {
        copied += n.unwrap();
    }
    assert_eq!(
        copied, 6,
        "each event copied once, the one before the endpoint never"
    );
    let raw = db.raw().await;
    let pending = sqlx::query("SELECT stream, event_id FROM webhook_pending WHERE webhook_id = $1")
        .bind(&hook)
        .fetch_all(&raw)
        .await
        .unwrap();
    assert_eq!(pending.len(), 6);
    let streams: HashSet<String> = pending.iter().map(|r| r.get("stream")).collect();
    assert_eq!(streams, HashSet::from([g1.clone(), g2.clone()]));

    // Every node's claimants race for every due stream: one lease each.
    let now = mkondo_server::store::now_ms();
    let due = store.due_webhook_streams(now, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    let mut claims = JoinSet::new();
    for i in 0..nodes.len() * 4 {
        let nodes = nodes.clone();
        let due = due.clone();
        claims.spawn(async move {
            let store = &nodes[i % nodes.len()];
            let mut won = Vec::new();
            for s in &due {
                if store
                    .claim_webhook_stream(s, &format!("owner-{i}"), now, 30_000)
                    .await
                    .unwrap()
                {
                    won.push((s.stream.clone(), i));
                }
            }
            won
        });
    }
    let mut winners = Vec::new();
    while let Some(won) = claims.join_next().await {
        winners.extend(won.unwrap());
    }
    assert_eq!(winners.len(), 2, "one lease per stream: {winners:?}");
    assert!(
        store.due_webhook_streams(now, 10).await.unwrap().is_empty(),
        "leased"
    );

    // The first stream's owner fails past the give-up time: disabled once.
    let (stream, owner) = &winners[0];
    let s = due.iter().find(|s| &s.stream == stream).unwrap();
    let first = &store.webhook_stream_pending(s, 10).await.unwrap()[0];
    let attempt = AttemptRecord {
        event_id: &first.event_id,
        event_type: "message.created",
        attempt: 1,
        attempted_at: now,
        status_code: Some(500),
        error: Some("the endpoint answered 500".into()),
        duration_ms: 3,
    };
    let owner = format!("owner-{owner}");
    let disabled = store
        .webhook_failed(s, first, &attempt, &owner, now + 100, now + 1, "gave up")
        .await
        .unwrap();
    assert!(disabled);
    let row = store.webhook(&app, &hook).await.unwrap().unwrap();
    assert_eq!(row.disabled_reason.as_deref(), Some("gave up"));
    assert!(store
        .active_webhooks()
        .await
        .unwrap()
        .iter()
        .all(|w| w.id != hook));
    assert_eq!(
        copy_once(store).await,
        0,
        "a disabled endpoint copies nothing"
    );

    // Re-enabled: its streams are due at once (the failed one too).
    let patch = WebhookPatch {
        enabled: Some(true),
        ..Default::default()
    };
    store.update_webhook(&app, &hook, &patch).await.unwrap();
    let row = store.webhook(&app, &hook).await.unwrap().unwrap();
    assert!(row.disabled_at.is_none() && row.failing_since.is_none());
    let later = now + 40_000;
    let due_again = store.due_webhook_streams(later, 10).await.unwrap();
    assert_eq!(due_again.len(), 2, "both due once the other lease expired");
    assert!(row.cursor() > EventCursor::START, "the position moved");
    let attempts = store.webhook_attempts(&app, &hook, None, 10).await.unwrap();
    assert_eq!(attempts.items.len(), 1);
    assert_eq!(attempts.items[0].status_code, Some(500));
}
