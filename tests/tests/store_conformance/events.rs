//! The event outbox: every change records its event in its own transaction,
//! a refused change records none, the feed never skips an event however
//! writers interleave, erasure takes a user's events, retention purges.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mkondo_server::store::events::{EventCursor, StoredEvent};
use mkondo_server::store::messages::MessageEdit;
use mkondo_server::store::system_messages::{ChangeBy, ConversationPatch, Owners};
use mkondo_server::store::users::UserPatch;
use mkondo_server::store::{Role, Store};
use serde_json::json;
use tokio::task::JoinSet;

use super::{new_app, new_group, new_users, notice, send, text, Db};

/// The feed once it holds at least `n` events. On PostgreSQL a committed
/// event is served once every older transaction of the whole cluster has
/// ended (the gap-safe horizon), so with other tests running it may lag a
/// moment behind the commit.
async fn feed_until(store: &Store, app: &str, n: usize) -> Vec<StoredEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let events = feed(store, app).await;
        if events.len() >= n || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every retained event of `app` served now, paged through the feed 5 at a time.
async fn feed(store: &Store, app: &str) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = Vec::new();
    let mut after = EventCursor::START;
    loop {
        let page = store.events_after(app, after, None, 5).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        after = last.cursor;
        out.extend(page);
    }
}

fn types(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

pub async fn every_change_records_its_event_and_a_refused_one_none(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "events").await;
    new_users(&store, &app, &["ann", "bob"]).await;
    store
        .update_user(
            &app,
            "bob",
            &UserPatch {
                name: Some("Bob".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let group = new_group(&store, &app, Some("ann"), &["bob"]).await;
    let (direct, _) = store.direct_conversation(&app, "ann", "bob").await.unwrap();
    let sent = store
        .send_message(&app, &group, &text("ann", "hello"))
        .await
        .unwrap()
        .message;
    store
        .edit_message(
            &app,
            &group,
            sent.seq,
            &MessageEdit {
                text: Some("hello!".into()),
                data: None,
            },
        )
        .await
        .unwrap();
    store
        .add_reaction(&app, &group, sent.seq, "👍", "bob")
        .await
        .unwrap();
    store
        .remove_reaction(&app, &group, sent.seq, "👍", "bob")
        .await
        .unwrap();
    store
        .mark_read(&app, &group, "bob", sent.seq)
        .await
        .unwrap();
    new_users(&store, &app, &["cat"]).await;
    store
        .add_members_noticed(
            &app,
            &group,
            &[("cat".into(), notice("cat joined"))],
            Role::Member,
            None,
        )
        .await
        .unwrap();
    let backend = ChangeBy {
        member: None,
        owners: Owners::MayLeaveNone,
    };
    store
        .set_role_noticed(
            &app,
            &group,
            "cat",
            Role::Admin,
            notice("cat is admin"),
            backend,
        )
        .await
        .unwrap();
    store
        .remove_member_noticed(&app, &group, "cat", notice("cat left"), backend)
        .await
        .unwrap();
    store
        .update_conversation_noticed(
            &app,
            &group,
            ConversationPatch {
                name: Some("Renamed"),
                ..Default::default()
            },
            notice("renamed"),
            None,
        )
        .await
        .unwrap();
    store
        .hide_conversation(&app, &direct.id, "ann")
        .await
        .unwrap();
    let n = store
        .insert_notification(&app, "bob", &json!({ "kind": "ping" }), 60_000)
        .await
        .unwrap();
    store.ack_notification(&app, "bob", &n.id).await.unwrap();
    store.block(&app, "ann", "bob").await.unwrap();
    store.unblock(&app, "ann", "bob").await.unwrap();
    store.set_deactivated(&app, "cat", true).await.unwrap();
    store.set_deactivated(&app, "cat", false).await.unwrap();
    store.delete_message(&app, &group, sent.seq).await.unwrap();
    store.delete_conversation(&app, &direct.id).await.unwrap();
    store.delete_user(&app, "cat", false, 0).await.unwrap();

    let before = feed_until(&store, &app, 29).await;
    // Refused or empty changes record nothing.
    assert!(store
        .send_message(&app, &group, &text("cat", "not a member"))
        .await
        .is_err());
    assert!(store
        .send_message(&app, "nope", &text("ann", "no such"))
        .await
        .is_err());
    assert!(store
        .edit_message(
            &app,
            &group,
            sent.seq,
            &MessageEdit {
                text: Some("deleted already".into()),
                data: None,
            }
        )
        .await
        .is_err());
    assert!(store
        .add_reaction(&app, &group, sent.seq, "👍", "bob")
        .await
        .is_err());
    store.unblock(&app, "bob", "ann").await.unwrap(); // no block: no event
    store.mark_read(&app, &group, "bob", 1).await.unwrap(); // backwards: no move
    assert!(store
        .add_members_noticed(
            &app,
            "nope",
            &[("bob".into(), notice("x"))],
            Role::Member,
            None
        )
        .await
        .is_err());
    let after = feed(&store, &app).await;
    assert_eq!(
        types(&after),
        types(&before),
        "nothing recorded for what did not happen"
    );

    assert_eq!(
        types(&before),
        [
            "user.created",
            "user.created",
            "user.updated",
            "conversation.created",
            "conversation.created",
            "message.created",
            "message.edited",
            "message.reacted",
            "message.reacted",
            "read.moved",
            "user.created",
            "member.added",
            "message.created",
            "member.role_changed",
            "message.created",
            "member.removed",
            "message.created",
            "conversation.updated",
            "message.created",
            "conversation.hidden",
            "notification.sent",
            "notification.acknowledged",
            "user.blocked",
            "user.unblocked",
            "user.deactivated",
            "user.reactivated",
            "message.deleted",
            "conversation.deleted",
            "user.deleted",
        ]
    );
    // Ids are unique, cursors strictly increase, the entity is the REST shape.
    let ids: HashSet<&str> = before.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), before.len());
    assert!(before.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let created = &before[5];
    assert_eq!(created.conversation_id.as_deref(), Some(group.as_str()));
    assert_eq!(created.data["message"]["seq"], sent.seq);
    assert_eq!(created.data["message"]["id"], sent.id.as_str());
    // The message was deleted later: its events carry the tombstone now.
    assert_eq!(created.data["message"]["text"], "");
    assert_eq!(before[6].data["message"]["text"], "");
    assert!(before[6].data["message"]["deleted_at"].is_string());
    assert_eq!(
        before[7].data["reaction"],
        json!({"emoji": "👍", "user_id": "bob", "action": "added"})
    );
    assert_eq!(
        before[7].data["message"]["reactions"],
        json!([]),
        "the tombstone's"
    );
    assert_eq!(before[8].data["reaction"]["action"], "removed");
    assert_eq!(before[9].data["last_read_seq"], sent.seq);
    assert_eq!(before[13].data["member"]["role"], "admin");
    assert_eq!(before[17].data["conversation"]["name"], "Renamed");
    assert_eq!(before[2].data["user"]["name"], "Bob");
    assert!(before[26].data["message"]["deleted_at"].is_string());
    // One event by id; the types filter.
    assert_eq!(
        store.event(&app, &created.id).await.unwrap().as_ref(),
        Some(created)
    );
    let only = store
        .events_after(
            &app,
            EventCursor::START,
            Some(&["member.added".to_owned()]),
            100,
        )
        .await
        .unwrap();
    assert_eq!(types(&only), ["member.added"]);
    // Another app sees none of it.
    let other = new_app(&store, "other").await;
    assert!(feed(&store, &other).await.is_empty());
    assert_eq!(store.event(&other, &created.id).await.unwrap(), None);
}

pub async fn the_feed_never_skips_an_event_under_concurrent_writers(db: Db) {
    let nodes = db.nodes().await;
    let app = new_app(&nodes[0], "gaps").await;
    let senders: Vec<String> = (0..12).map(|i| format!("w{i:02}")).collect();
    let ids: Vec<&str> = senders.iter().map(String::as_str).collect();
    new_users(&nodes[0], &app, &ids).await;
    let mut groups = Vec::new();
    for _ in 0..4 {
        groups.push(new_group(&nodes[0], &app, None, &ids).await);
    }
    // A reader tails the feed while the writers run, as a webhook deliverer
    // would: whatever it served must never be followed by an earlier event.
    // It stops once it has as many as the feed finally holds (`target`).
    let target = Arc::new(AtomicUsize::new(usize::MAX));
    let reader = {
        let store = nodes[nodes.len() - 1].clone();
        let app = app.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = EventCursor::START;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen.len() < target.load(Ordering::SeqCst) && std::time::Instant::now() < deadline
            {
                let page = store.events_after(&app, after, None, 37).await.unwrap();
                match page.last() {
                    Some(last) => after = last.cursor,
                    None => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                }
                seen.extend(page.into_iter().map(|e| e.id));
            }
            seen
        })
    };
    let mut writers = JoinSet::new();
    for (i, sender) in senders.iter().enumerate() {
        let store = nodes[i % nodes.len()].clone();
        let (app, sender, groups) = (app.clone(), sender.clone(), groups.clone());
        writers.spawn(async move {
            for k in 0..30 {
                let group = &groups[(i + k) % groups.len()];
                let seq = send(&store, &app, group, &sender, &format!("{sender}-{k}")).await;
                if k % 3 == 0 {
                    let other = format!("w{:02}", (i + 1) % 12);
                    store.mark_read(&app, group, &other, seq).await.unwrap();
                }
            }
        });
    }
    while let Some(w) = writers.join_next().await {
        w.unwrap();
    }
    // Users, groups, messages, and the read positions that moved.
    let mut all = feed_until(&nodes[0], &app, 12 + 4 + 12 * 30).await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let again = feed(&nodes[0], &app).await;
        if again.len() == all.len() {
            break;
        }
        all = again;
    }
    target.store(all.len(), Ordering::SeqCst);
    let tailed = reader.await.unwrap();
    assert!(all.iter().any(|e| e.kind == "read.moved"));
    let all_ids: Vec<String> = all.iter().map(|e| e.id.clone()).collect();
    let messages = all.iter().filter(|e| e.kind == "message.created").count();
    assert_eq!(messages, 12 * 30, "one event per message");
    assert_eq!(
        tailed, all_ids,
        "the tailing reader saw every event, in feed order"
    );
    // Per conversation, the feed is in commit order: seqs only go up.
    let mut last: HashMap<String, i64> = HashMap::new();
    for e in &all {
        if e.kind == "message.created" {
            let conv = e.conversation_id.clone().unwrap();
            let seq = e.data["message"]["seq"].as_i64().unwrap();
            let prev = last.insert(conv.clone(), seq).unwrap_or(0);
            assert_eq!(seq, prev + 1, "{conv}: seq {seq} after {prev}");
        }
    }
}

pub async fn erasing_a_user_takes_their_events(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "erase").await;
    new_users(&store, &app, &["ann", "bob"]).await;
    let group = new_group(&store, &app, None, &["ann", "bob"]).await;
    let ann_seq = send(&store, &app, &group, "ann", "ann's secret").await;
    let bob_seq = send(&store, &app, &group, "bob", "bob's words").await;
    store
        .add_reaction(&app, &group, ann_seq, "🔥", "bob")
        .await
        .unwrap();
    store
        .add_reaction(&app, &group, bob_seq, "👍", "ann")
        .await
        .unwrap();
    store.delete_user(&app, "ann", true, 0).await.unwrap();

    // Left: bob created, the group, bob's message, ann removed, ann deleted.
    let left = feed_until(&store, &app, 5).await;
    assert_eq!(
        types(&left),
        [
            "user.created",
            "conversation.created",
            "message.created",
            "member.removed",
            "user.deleted"
        ]
    );
    let text = serde_json::to_string(&left.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
    assert!(
        !text.contains("ann's secret"),
        "no event carries her message"
    );
    assert!(text.contains("bob's words"));
    // Bob's reaction to her message carried it: gone; hers to his: gone.
    assert!(left.iter().all(|e| e.kind != "message.reacted"));
    let deleted = left.last().unwrap();
    assert_eq!(deleted.kind, "user.deleted");
    assert_eq!(deleted.data, json!({ "user_id": "ann", "erased": true }));
}

pub async fn retention_purges_the_oldest_events(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "retention").await;
    new_users(&store, &app, &["ann", "bob"]).await;
    let first = feed_until(&store, &app, 2).await;
    assert_eq!(first.len(), 2);
    let cut = first[1].created_at + 1;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    new_users(&store, &app, &["cat"]).await;
    assert_eq!(feed_until(&store, &app, 3).await.len(), 3);
    assert_eq!(store.purge_events(0, 100).await.unwrap(), 0);
    assert_eq!(
        store.purge_events(cut, 1).await.unwrap(),
        1,
        "at most the limit"
    );
    assert_eq!(store.purge_events(cut, 100).await.unwrap(), 1);
    let left = feed(&store, &app).await;
    assert_eq!(types(&left), ["user.created"]);
    assert_eq!(left[0].data["user"]["id"], "cat");
    // Everything purged, then a new event: a reader at the old end gets it.
    let end = left[0].cursor;
    let tomorrow = mkondo_server::store::now_ms() + 86_400_000;
    assert_eq!(store.purge_events(tomorrow, 100).await.unwrap(), 1);
    new_users(&store, &app, &["dan"]).await;
    let mut after = Vec::new();
    for _ in 0..500 {
        after = store.events_after(&app, end, None, 100).await.unwrap();
        if !after.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(types(&after), ["user.created"]);
    assert!(after[0].cursor > end);
}

pub async fn deleting_a_message_or_conversation_redacts_its_events(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "redact").await;
    new_users(&store, &app, &["ann", "bob"]).await;
    let group = new_group(&store, &app, None, &["ann", "bob"]).await;
    let seq = send(&store, &app, &group, "ann", "first secret").await;
    store
        .edit_message(
            &app,
            &group,
            seq,
            &MessageEdit {
                text: Some("second secret".into()),
                data: Some(json!({"also": "secret data"})),
            },
        )
        .await
        .unwrap();
    store
        .add_reaction(&app, &group, seq, "🔥", "bob")
        .await
        .unwrap();
    let kept = send(&store, &app, &group, "bob", "kept words").await;
    store.delete_message(&app, &group, seq).await.unwrap();
    let events = feed_until(&store, &app, 8).await;
    let text = serde_json::to_string(&events.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
    for secret in ["first secret", "second secret", "secret data"] {
        assert!(!text.contains(secret), "{secret} is still in the outbox");
    }
    assert!(text.contains("kept words"));
    // The events stay, with the tombstone.
    let created = events
        .iter()
        .find(|e| e.kind == "message.created" && e.data["message"]["seq"] == seq)
        .unwrap();
    assert!(created.data["message"]["deleted_at"].is_string());
    assert_eq!(created.data["message"]["text"], "");
    // A deleted conversation takes its messages' text out of the outbox.
    store.delete_conversation(&app, &group).await.unwrap();
    let events = feed_until(&store, &app, 9).await;
    assert_eq!(events.len(), 9);
    let text = serde_json::to_string(&events.iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("kept words"));
    assert_eq!(events.last().unwrap().kind, "conversation.deleted");
    let _ = kept;
}
