//! The push queue (store/push_queue.rs) under racing nodes: the feed is
//! copied into jobs once however many nodes try (compare-and-set on the app's
//! position), one job per message, never one per recipient; a stream's lease
//! and each send's lease go to exactly one claimant; the badge is each user's
//! total unread.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mkondo_server::store::devices::NewDevice;
use mkondo_server::store::events::EventCursor;
use mkondo_server::store::push_queue::{NewJob, Send};
use mkondo_server::store::{now_ms, Store};
use sqlx::Row;
use tokio::task::JoinSet;

use super::{new_app, new_group, new_users, send, Db};

/// One node's copy step, as the worker runs it.
async fn copy_once(store: &Store) -> usize {
    let types = vec!["message.created".to_owned()];
    let mut copied = 0;
    for app in store.push_apps().await.unwrap() {
        let from = app.cursor();
        let (events, to) = store
            .events_scan(&app.app_id, from, Some(&types), 3)
            .await
            .unwrap();
        let jobs: Vec<NewJob> = events
            .iter()
            .map(|e| NewJob {
                stream: e.conversation_id.clone().unwrap(),
                event_id: e.id.clone(),
                seq: e.data["message"]["seq"].as_i64().unwrap(),
                created_at: e.created_at,
            })
            .collect();
        if to != from
            && store
                .copy_push_jobs(&app.app_id, from, to, &jobs)
                .await
                .unwrap()
        {
            copied += jobs.len();
        }
    }
    copied
}

/// A queued push for a device registered now for `user{n}`.
async fn a_send(store: &Store, app: &str, n: usize) -> Send {
    let token = format!("{n:064x}");
    let user = format!("user{n}");
    let device = store
        .register_device(
            app,
            &user,
            &NewDevice {
                provider: "apns".into(),
                token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    Send {
        app_id: app.to_owned(),
        id: format!("00000000-0000-4000-8000-{n:012}"),
        device_id: device.id,
        user_id: user,
        conversation_id: "c".into(),
        message_id: "m".into(),
        author_id: "ann".into(),
        provider: "apns".into(),
        token,
        p256dh: String::new(),
        auth: String::new(),
        topic: String::new(),
        sandbox: false,
        collapse_id: "collapse".into(),
        payload: "{}".into(),
        created_at: now_ms(),
        expires_at: now_ms() + 3_600_000,
        attempts: 0,
        lease_owner: None,
    }
}

pub async fn push_jobs_are_copied_once_and_leases_go_to_one_node(db: Db) {
    let nodes: Arc<Vec<Store>> = Arc::new(db.nodes().await);
    let store = &nodes[0];
    let app = new_app(store, "push").await;
    new_users(store, &app, &["ann", "bob", "cat"]).await;
    let g1 = new_group(store, &app, None, &["ann", "bob", "cat"]).await;
    send(store, &app, &g1, "ann", "before push was set up").await;
    // Push set up now: the worker starts after that message (on PostgreSQL
    // the feed shows it once every older transaction ended, other tests' on
    // the same server included).
    let types = vec!["message.created".to_owned()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let head = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message never showed"
        );
        let (seen, _) = store
            .events_scan(&app, EventCursor::START, Some(&types), 10)
            .await
            .unwrap();
        if let Some(e) = seen.last() {
            break e.cursor;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    sqlx::query(
        "INSERT INTO push_settings (app_id, updated_at, cursor_xact, cursor_pos) \
         VALUES ($1, 0, $2, $3)",
    )
    .bind(&app)
    .bind(head.xact)
    .bind(head.pos)
    .execute(&db.raw().await)
    .await
    .unwrap();
    let g2 = new_group(store, &app, None, &["ann", "bob"]).await;
    let mut g1_last = 0;
    for i in 0..6 {
        let conv = if i % 2 == 0 { &g1 } else { &g2 };
        let seq = send(store, &app, conv, "ann", &format!("m{i}")).await;
        if conv == &g1 {
            g1_last = seq;
        }
    }

    let total = Arc::new(AtomicUsize::new(0));
    let mut copiers = JoinSet::new();
    for i in 0..nodes.len() * 3 {
        let nodes = nodes.clone();
        let total = total.clone();
        copiers.spawn(async move {
            let store = &nodes[i % nodes.len()];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            // Until all six are copied (by anyone), then a few more rounds
            // that must copy nothing.
            let mut after = 0;
            while after < 5 && tokio::time::Instant::now() < deadline {
                total.fetch_add(copy_once(store).await, Ordering::SeqCst);
                if total.load(Ordering::SeqCst) >= 6 {
                    after += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    while let Some(done) = copiers.join_next().await {
        done.unwrap();
    }
    let copied = total.load(Ordering::SeqCst);
    assert_eq!(copied, 6, "each message copied once, the earlier one never");
    let raw = db.raw().await;
    let jobs = sqlx::query("SELECT stream FROM push_jobs WHERE app_id = $1")
        .bind(&app)
        .fetch_all(&raw)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 6, "one job per message, not per recipient");
    let streams: HashSet<String> = jobs.iter().map(|r| r.get("stream")).collect();
    assert_eq!(streams, HashSet::from([g1.clone(), g2.clone()]));
    let newest = store.newest_push_job(&app, &g1).await.unwrap().unwrap();
    assert_eq!(
        newest.seq, g1_last,
        "a stream's newest job is its last message"
    );

    // Each due stream's lease goes to one claimant.
    let now = now_ms();
    let start = Arc::new(tokio::sync::Barrier::new(nodes.len() * 4));
    let mut claims = JoinSet::new();
    for i in 0..nodes.len() * 4 {
        let (nodes, start) = (nodes.clone(), start.clone());
        claims.spawn(async move {
            let store = &nodes[i % nodes.len()];
            start.wait().await;
            let got = store
                .claim_push_streams(&format!("owner-{i}"), now, now + 30_000, 1)
                .await
                .unwrap();
            assert!(got.len() <= 1, "a claim took {} of 1", got.len());
            got
        });
    }
    let mut claimed = Vec::new();
    while let Some(got) = claims.join_next().await {
        claimed.extend(got.unwrap());
    }
    let mut names: Vec<&str> = claimed.iter().map(|s| s.stream.as_str()).collect();
    names.sort();
    let mut expected = vec![g1.as_str(), g2.as_str()];
    expected.sort();
    assert_eq!(names, expected, "one lease per stream");
    assert!(store
        .claim_push_streams("late", now, now + 30_000, 10)
        .await
        .unwrap()
        .is_empty());

    // A fan-out that covered g1's jobs up to `newest` while another came:
    // the stream stays due (after the window), the new job kept.
    let s1 = claimed.iter().find(|s| s.stream == g1).unwrap();
    let late = send(store, &app, &g1, "ann", "late").await;
    // On PostgreSQL the feed shows it once every transaction older than it
    // ended, other tests' on the same server included.
    let mut copied = 0;
    for _ in 0..200 {
        copied += copy_once(store).await;
        if copied > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(copied, 1);
    assert!(store
        .finish_push_fan_out(s1, Some(&newest), &[], now, 3_000)
        .await
        .unwrap()
        .is_some());
    let next_at: i64 =
        sqlx::query_scalar("SELECT next_at FROM push_streams WHERE app_id = $1 AND stream = $2")
            .bind(&app)
            .bind(&g1)
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!(next_at, now + 3_000, "due again when the window ends");
    let left = store.newest_push_job(&app, &g1).await.unwrap().unwrap();
    assert_eq!(left.seq, late);
    // The claim is spent: finishing it again changes nothing.
    assert!(store
        .finish_push_fan_out(s1, None, &[], now, 3_000)
        .await
        .unwrap()
        .is_none());

    // 60 sends claimed by racing nodes: each by exactly one.
    let mut sends = Vec::new();
    for n in 0..61 {
        sends.push(a_send(store, &app, n).await);
    }
    store.queue_push_sends(&sends).await.unwrap();
    // The 61st's phone signs in as someone else before it is sent: never
    // claimed.
    store
        .register_device(
            &app,
            "someone-else",
            &NewDevice {
                provider: "apns".into(),
                token: sends[60].token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Everyone asks for all of them at the same moment.
    let start = Arc::new(tokio::sync::Barrier::new(nodes.len() * 4));
    let mut claimers = JoinSet::new();
    for i in 0..nodes.len() * 4 {
        let (nodes, start) = (nodes.clone(), start.clone());
        claimers.spawn(async move {
            let store = &nodes[i % nodes.len()];
            let mut mine = Vec::new();
            start.wait().await;
            for _ in 0..12 {
                let now = now_ms();
                let got = store
                    .claim_push_sends(&format!("sender-{i}"), now, now + 60_000, 7)
                    .await
                    .unwrap();
                assert!(got.len() <= 7, "a claim took {} of 7", got.len());
                mine.extend(got.into_iter().map(|s| s.id));
            }
            mine
        });
    }
    let mut claimed = Vec::new();
    while let Some(mine) = claimers.join_next().await {
        claimed.extend(mine.unwrap());
    }
    let distinct: HashSet<&String> = claimed.iter().collect();
    assert_eq!(claimed.len(), 60, "every send claimed once: {claimed:?}");
    assert_eq!(distinct.len(), 60);
    assert!(!distinct.contains(&sends[60].id), "a moved device's push");
}

pub async fn the_badge_is_each_users_total_unread(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "badge").await;
    new_users(&store, &app, &["ann", "bob", "cat"]).await;
    let g1 = new_group(&store, &app, None, &["ann", "bob", "cat"]).await;
    let g2 = new_group(&store, &app, None, &["ann", "bob"]).await;
    let mut last = 0;
    for i in 0..3 {
        last = send(&store, &app, &g1, "ann", &format!("g1 {i}")).await;
    }
    send(&store, &app, &g2, "ann", "g2").await;
    store.mark_read(&app, &g1, "cat", last).await.unwrap();
    // Muted still counts.
    store.set_muted(&app, &g2, "bob", true).await.unwrap();
    let users = vec!["bob".to_owned(), "cat".to_owned(), "nobody".to_owned()];
    let totals = store.total_unread(&app, &users).await.unwrap();
    let bob_expected = store
        .user_conversations(&app, "bob", None, 10)
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.viewer.as_ref().unwrap().unread_count)
        .sum::<i64>();
    assert_eq!(totals["bob"], bob_expected, "the sum of the list's counts");
    assert!(totals["bob"] >= 4, "{totals:?}");
    assert_eq!(totals["cat"], 0, "read up to the last");
    assert!(!totals.contains_key("nobody"));
}
