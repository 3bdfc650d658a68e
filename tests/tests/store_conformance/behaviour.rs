//! What one writer sees, the same on both engines: pages in bytewise id order,
//! unread counts and read positions, hidden conversations, blocks, notification
//! expiry, apps that never see each other's rows, and per-app settings and
//! new signing keys.

use std::collections::HashSet;

use mkondo_proto::ErrorCode;
use mkondo_server::store::messages::HistoryQuery;
use mkondo_server::store::users::UserPatch;
use mkondo_server::store::{AppSettingsChange, NewGroup, Role};
use serde_json::json;

use super::{all_history, new_app, new_group, new_users, send, text, Db};

pub async fn lists_page_completely_in_bytewise_order(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "main").await;
    // Case, digits and punctuation: a locale-aware collation orders these
    // differently; the store orders bytewise on both engines.
    let ids = [
        "Zed", "alice", "bob", "a-b", "a_b", "a.b", "ab", "B", "_x", "@y", "1", "9z", "a:b", "A",
    ];
    new_users(&store, &app, &ids).await;
    let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();

    let mut users = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_users(&app, None, cursor.as_deref(), 4)
            .await
            .unwrap();
        users.extend(page.items.into_iter().map(|u| u.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(users, want, "users by id, every one once");

    let group = new_group(&store, &app, None, &ids).await;
    let mut members = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .members(&app, &group, cursor.as_deref(), 3)
            .await
            .unwrap();
        members.extend(page.items.into_iter().map(|m| m.user_id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(members, want, "members by id");

    for other in &ids[1..] {
        store.block(&app, ids[0], other).await.unwrap();
    }
    let mut blocked = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .blocks_of(&app, ids[0], cursor.as_deref(), 5)
            .await
            .unwrap();
        blocked.extend(page.items.into_iter().map(|b| b.user_id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let want_blocked: Vec<String> = want.iter().filter(|u| *u != ids[0]).cloned().collect();
    assert_eq!(blocked, want_blocked, "blocks by id");

    // History: backward from the newest, forward from the start.
    let conv = new_group(&store, &app, None, &["alice", "bob"]).await;
    for i in 1..=25 {
        send(&store, &app, &conv, "alice", &format!("m{i}")).await;
    }
    let mut backward = Vec::new();
    let mut q = HistoryQuery {
        limit: 10,
        ..Default::default()
    };
    loop {
        let page = store.history_page(&app, &conv, &q, 0).await.unwrap();
        backward.push(page.items.iter().map(|m| m.seq).collect::<Vec<_>>());
        let Some(cursor) = page.next_cursor else {
            break;
        };
        q = HistoryQuery {
            cursor: Some(cursor),
            limit: 10,
            ..Default::default()
        };
    }
    assert_eq!(
        backward,
        vec![
            (16..=25).collect::<Vec<i64>>(),
            (6..=15).collect(),
            (1..=5).collect()
        ],
        "pages of the newest first, each ascending"
    );
    let forward: Vec<i64> = all_history(&store, &app, &conv)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(forward, (1..=25).collect::<Vec<_>>());

    // Conversations: latest activity first, ties by id, each once.
    let mut groups = Vec::new();
    for _ in 0..5 {
        groups.push(new_group(&store, &app, Some("carol"), &[]).await);
    }
    for g in groups.iter().rev() {
        send(&store, &app, g, "carol", "hi").await;
    }
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .user_conversations(&app, "carol", cursor.as_deref(), 2)
            .await
            .unwrap();
        listed.extend(page.items.into_iter().map(|c| (c.last_activity_at.0, c.id)));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let mut want_listed = listed.clone();
    want_listed.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed.len(), groups.len());
    assert_eq!(
        listed, want_listed,
        "latest activity first, then id descending"
    );

    // Notifications: oldest (smallest id) first.
    let mut ids = Vec::new();
    for i in 0..5 {
        let n = store
            .insert_notification(&app, "alice", &json!({ "n": i }), 60_000)
            .await
            .unwrap();
        ids.push(n.id);
    }
    ids.sort();
    let mut pending = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .pending_notifications(&app, "alice", cursor.as_deref(), 2)
            .await
            .unwrap();
        pending.extend(page.items.into_iter().map(|n| n.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pending, ids);
}

pub async fn unread_counts_follow_read_positions(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "main").await;
    let conv = new_group(&store, &app, Some("alice"), &["bob", "carol"]).await;
    for i in 1..=5 {
        send(&store, &app, &conv, "alice", &format!("m{i}")).await;
    }
    let viewer = |user: &'static str| {
        let (store, app, conv) = (store.clone(), app.clone(), conv.clone());
        async move {
            store
                .get_conversation(&app, &conv, Some(user))
                .await
                .unwrap()
                .unwrap()
                .viewer
                .expect("a member")
        }
    };
    assert_eq!(
        viewer("alice").await.unread_count,
        0,
        "sending reads up to it"
    );
    assert_eq!(viewer("alice").await.last_read_seq, 5);
    assert_eq!(viewer("bob").await.unread_count, 5);

    assert_eq!(
        store.mark_read(&app, &conv, "bob", 3).await.unwrap(),
        (3, 2)
    );
    assert_eq!(
        store.mark_read(&app, &conv, "bob", 1).await.unwrap(),
        (3, 2),
        "never backwards"
    );
    assert_eq!(
        store.mark_read(&app, &conv, "bob", 99).await.unwrap(),
        (5, 0),
        "never past the end"
    );
    let bob = viewer("bob").await;
    assert_eq!((bob.last_read_seq, bob.unread_count), (5, 0));

    let seq = send(&store, &app, &conv, "bob", "reply").await;
    assert_eq!(viewer("bob").await.last_read_seq, seq);
    assert_eq!(viewer("carol").await.unread_count, 6);
    let listed = store
        .user_conversations(&app, "carol", None, 10)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].viewer.as_ref().unwrap().unread_count, 6);

    let added = store
        .add_members(&app, &conv, &["dave".to_owned()], Role::Member)
        .await
        .unwrap();
    assert_eq!(
        added[0].last_read_seq, seq,
        "a new member starts with nothing unread"
    );
    assert_eq!(viewer("dave").await.unread_count, 0);
    let err = store.mark_read(&app, "nope", "bob", 1).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

pub async fn a_hidden_conversation_returns_with_the_next_message(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "main").await;
    let conv = new_group(&store, &app, None, &["alice", "bob"]).await;
    for i in 1..=3 {
        send(&store, &app, &conv, "alice", &format!("m{i}")).await;
    }
    assert!(store.hide_conversation(&app, &conv, "bob").await.unwrap());
    assert!(
        !store.hide_conversation(&app, &conv, "eve").await.unwrap(),
        "only a member can hide it"
    );
    let listed = store
        .user_conversations(&app, "bob", None, 10)
        .await
        .unwrap();
    assert!(listed.items.is_empty(), "hidden from bob's list");
    let alice_list = store
        .user_conversations(&app, "alice", None, 10)
        .await
        .unwrap();
    assert_eq!(alice_list.items.len(), 1, "alice still sees it");
    let bob = store
        .get_conversation(&app, &conv, Some("bob"))
        .await
        .unwrap()
        .unwrap()
        .viewer
        .unwrap();
    assert!(bob.hidden);
    assert_eq!((bob.cleared_seq, bob.unread_count), (3, 0));
    let (cleared, _) = store
        .history(&app, &conv, None, None, 50, bob.cleared_seq)
        .await
        .unwrap();
    assert!(
        cleared.is_empty(),
        "history before the hide is cleared for bob"
    );

    let seq = send(&store, &app, &conv, "alice", "again").await;
    let listed = store
        .user_conversations(&app, "bob", None, 10)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1, "back with a new message");
    let bob = listed.items[0].viewer.as_ref().unwrap();
    assert!(!bob.hidden);
    assert_eq!(bob.unread_count, 1);
    let (after, _) = store
        .history(&app, &conv, None, None, 50, bob.cleared_seq)
        .await
        .unwrap();
    assert_eq!(after.iter().map(|m| m.seq).collect::<Vec<_>>(), [seq]);
}

/// Who shares a conversation with whom, and the directory: per app, active
/// users only, never across a block, `%` and `_` matched as themselves.
pub async fn peers_and_the_directory_stay_in_their_app(db: Db) {
    let store = db.open().await;
    let a = new_app(&store, "a").await;
    let b = new_app(&store, "b").await;
    new_users(&store, &a, &["alice", "bob", "carol", "dave", "a_b", "axb"]).await;
    new_users(&store, &b, &["alice", "bob"]).await;
    let named = |name: &str| UserPatch {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    store.update_user(&a, "bob", &named("Bobby")).await.unwrap();
    store
        .update_user(&a, "dave", &named("100% Dave"))
        .await
        .unwrap();
    new_group(&store, &a, Some("alice"), &["bob"]).await;
    new_group(&store, &b, Some("alice"), &["bob"]).await;

    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut peers = store
        .peers_among(&a, "alice", &ids(&["bob", "carol", "nobody"]))
        .await
        .unwrap();
    peers.sort();
    assert_eq!(peers, ["bob"]);
    assert!(store
        .peers_among(&a, "carol", &ids(&["alice", "bob"]))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .peers_among(&a, "alice", &[])
        .await
        .unwrap()
        .is_empty());

    let search = |q: &'static str| {
        let (store, a) = (&store, &a);
        async move {
            let found = store.search_directory(a, "alice", q, 10).await.unwrap();
            found.into_iter().map(|u| u.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(search("BOB").await, ["bob"], "by name, any case");
    assert_eq!(
        search("a").await,
        ["a_b", "axb", "carol", "dave"],
        "never oneself"
    );
    assert_eq!(search("a_b").await, ["a_b"], "_ is itself");
    assert_eq!(search("0%").await, ["dave"], "% is itself");
    store.block(&a, "carol", "alice").await.unwrap();
    store.set_deactivated(&a, "dave", true).await.unwrap();
    assert_eq!(search("a").await, ["a_b", "axb"]);
    let capped = store.search_directory(&a, "alice", "a", 1).await.unwrap();
    assert_eq!(capped.len(), 1);
    // App b's bob is not app a's.
    let other = store.search_directory(&b, "alice", "b", 10).await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].name, "", "app b's bob has no name");
}

pub async fn blocks_stand_in_either_direction(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "main").await;
    new_users(&store, &app, &["alice", "bob", "carol"]).await;
    let (direct, _) = store
        .direct_conversation(&app, "alice", "bob")
        .await
        .unwrap();
    assert!(store.block(&app, "alice", "bob").await.unwrap());
    assert!(
        !store.block(&app, "alice", "bob").await.unwrap(),
        "already blocked"
    );
    assert!(store.blocked_between(&app, "bob", "alice").await.unwrap());
    assert!(store.blocked_between(&app, "alice", "bob").await.unwrap());
    assert!(!store.blocked_between(&app, "alice", "carol").await.unwrap());
    assert!(store.direct_blocked(&app, &direct.id, "bob").await.unwrap());
    assert_eq!(store.block_peers(&app, "bob").await.unwrap(), ["alice"]);
    let page = store.blocks_of(&app, "alice", None, 10).await.unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|b| b.user_id.as_str())
            .collect::<Vec<_>>(),
        ["bob"]
    );
    assert!(store
        .blocks_of(&app, "bob", None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store.unblock(&app, "alice", "bob").await.unwrap());
    assert!(!store.unblock(&app, "alice", "bob").await.unwrap());
    assert!(!store.blocked_between(&app, "bob", "alice").await.unwrap());
    assert!(!store.direct_blocked(&app, &direct.id, "bob").await.unwrap());
}

pub async fn expired_notifications_are_never_returned_and_get_purged(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "main").await;
    new_users(&store, &app, &["alice"]).await;
    let live = store
        .insert_notification(&app, "alice", &json!({ "kind": "live" }), 60_000)
        .await
        .unwrap();
    // A TTL of 0 expires at the instant it is written.
    let expired = store
        .insert_notification(&app, "alice", &json!({ "kind": "expired" }), 0)
        .await
        .unwrap();
    let pending = store
        .pending_notifications(&app, "alice", None, 10)
        .await
        .unwrap();
    assert_eq!(
        pending
            .items
            .iter()
            .map(|n| n.id.as_str())
            .collect::<Vec<_>>(),
        [live.id.as_str()]
    );
    assert_eq!(pending.items[0].payload, json!({ "kind": "live" }));
    assert!(
        !store
            .ack_notification(&app, "alice", &expired.id)
            .await
            .unwrap(),
        "an expired one cannot be acknowledged"
    );

    let raw = db.raw().await;
    let rows = |id: String| {
        let raw = raw.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM notifications WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&raw)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        rows(expired.id.clone()).await,
        1,
        "still stored until a purge"
    );
    store
        .insert_notification(&app, "alice", &json!({ "kind": "next" }), 60_000)
        .await
        .unwrap();
    assert_eq!(
        rows(expired.id.clone()).await,
        0,
        "purged by the next write"
    );

    assert!(store
        .ack_notification(&app, "alice", &live.id)
        .await
        .unwrap());
    assert!(!store
        .ack_notification(&app, "alice", &live.id)
        .await
        .unwrap());
    let left = store
        .pending_notifications(&app, "alice", None, 10)
        .await
        .unwrap();
    assert_eq!(left.items.len(), 1, "only the next one");
}

pub async fn apps_never_see_each_other(db: Db) {
    let store = db.open().await;
    let a = new_app(&store, "a").await;
    let b = new_app(&store, "b").await;
    for (app, name) in [(&a, "Alice of A"), (&b, "Alice of B")] {
        let patch = UserPatch {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        store.upsert_user(app, "alice", &patch).await.unwrap();
        new_users(&store, app, &["bob"]).await;
        store
            .create_group(
                app,
                NewGroup {
                    id: Some("general".to_owned()),
                    creator: Some("alice".to_owned()),
                    members: vec!["bob".to_owned()],
                    ..Default::default()
                },
            )
            .await
            .expect("the same conversation id in each app");
    }
    send(&store, &a, "general", "alice", "in A").await;
    send(&store, &a, "general", "alice", "in A again").await;
    send(&store, &b, "general", "alice", "in B").await;
    let in_b = all_history(&store, &b, "general").await;
    assert_eq!(
        in_b,
        [(1, "in B".to_owned())],
        "B's history holds only B's message"
    );
    assert_eq!(
        store.get_user(&b, "alice").await.unwrap().unwrap().name,
        "Alice of B"
    );

    let (direct_a, _) = store.direct_conversation(&a, "alice", "bob").await.unwrap();
    let (direct_b, created) = store.direct_conversation(&b, "alice", "bob").await.unwrap();
    assert!(created, "A's direct conversation is not B's");
    assert_ne!(direct_a.id, direct_b.id);
    assert!(store
        .get_conversation(&b, &direct_a.id, None)
        .await
        .unwrap()
        .is_none());
    let err = store
        .send_message(&b, &direct_a.id, &text("alice", "cross"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);

    store.block(&a, "alice", "bob").await.unwrap();
    assert!(!store.blocked_between(&b, "alice", "bob").await.unwrap());
    store
        .insert_notification(&a, "alice", &json!({}), 60_000)
        .await
        .unwrap();
    assert!(store
        .pending_notifications(&b, "alice", None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    let listed_b = store
        .user_conversations(&b, "alice", None, 10)
        .await
        .unwrap();
    let ids: HashSet<String> = listed_b.items.into_iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        HashSet::from(["general".to_owned(), direct_b.id.clone()])
    );
    let users_b = store.list_users(&b, None, None, 10).await.unwrap();
    assert_eq!(users_b.items.len(), 2);
}

/// An app's own `auto_create_users` and `allowed_origins` are stored per app
/// (on and empty by default), and a new HS256 secret shorter than 32 bytes is
/// refused before anything is written.
pub async fn app_settings_and_new_keys_are_per_app(db: Db) {
    let store = db.open().await;
    let a = new_app(&store, "a").await;
    let b = new_app(&store, "b").await;
    assert!(store.get_app(&a).await.unwrap().unwrap().auto_create_users);
    assert!(store.set_auto_create_users(&a, false).await.unwrap());
    assert!(!store.get_app(&a).await.unwrap().unwrap().auto_create_users);
    assert!(store.get_app(&b).await.unwrap().unwrap().auto_create_users);
    let overview = store.app_overview(&a).await.unwrap().unwrap();
    assert!(!overview.auto_create_users);
    assert_eq!(overview.signing_keys.len(), 1);
    assert!(!store.set_auto_create_users("nope", false).await.unwrap());
    assert!(store.app_overview("nope").await.unwrap().is_none());

    use mkondo_server::auth::KeyAlg;
    let short = store
        .add_signing_key(&a, KeyAlg::Hs256, Some("s".repeat(31)))
        .await
        .unwrap_err();
    assert_eq!(short.code, ErrorCode::InvalidArgument, "{short:?}");
    assert_eq!(store.signing_keys(&a).await.unwrap().len(), 1);
    let key = store
        .add_signing_key(&a, KeyAlg::Hs256, Some("s".repeat(32)))
        .await
        .unwrap();
    assert_eq!(key.alg, "HS256");
    assert_eq!(store.signing_keys(&a).await.unwrap().len(), 2);

    // Allowed origins: empty by default, per app, changed with the other
    // settings in one transaction, read alone and together.
    assert_eq!(store.allowed_origins(&a).await.unwrap(), Some(vec![]));
    assert_eq!(
        store.all_allowed_origins().await.unwrap(),
        Vec::<String>::new()
    );
    let origins = ["https://a.example".to_owned(), "*".to_owned()];
    assert!(store
        .update_app_settings(
            &a,
            &AppSettingsChange {
                auto_create_users: Some(true),
                allowed_origins: Some(&origins),
                ..Default::default()
            }
        )
        .await
        .unwrap());
    let app = store.get_app(&a).await.unwrap().unwrap();
    assert!(app.auto_create_users);
    assert_eq!(app.allowed_origins, origins);
    assert_eq!(
        store
            .app_overview(&a)
            .await
            .unwrap()
            .unwrap()
            .allowed_origins,
        origins
    );
    assert_eq!(store.allowed_origins(&b).await.unwrap(), Some(vec![]));
    assert_eq!(store.all_allowed_origins().await.unwrap(), origins);
    assert!(store
        .update_app_settings(
            &a,
            &AppSettingsChange {
                auto_create_users: Some(false),
                ..Default::default()
            }
        )
        .await
        .unwrap());
    assert_eq!(store.allowed_origins(&a).await.unwrap().unwrap(), origins);
    assert!(!store
        .update_app_settings(
            "nope",
            &AppSettingsChange {
                allowed_origins: Some(&origins),
                ..Default::default()
            }
        )
        .await
        .unwrap());
    assert_eq!(store.allowed_origins("nope").await.unwrap(), None);

    // The before-send hook: none by default, set, replaced whole and removed
    // per app with the other settings; listed without its (sealed) secret.
    assert!(store.before_send_hook(&a).await.unwrap().is_none());
    let hook = mkondo_server::store::hooks::HookRow {
        url: "https://hooks.example/a".to_owned(),
        secret: "v1:sealed".to_owned(),
        timeout_ms: 1_000,
        fail_open: false,
        updated_at: 1,
    };
    assert!(store
        .update_app_settings(
            &a,
            &AppSettingsChange {
                before_send_hook: Some(Some(&hook)),
                ..Default::default()
            }
        )
        .await
        .unwrap());
    assert_eq!(
        store.before_send_hook(&a).await.unwrap(),
        Some(hook.clone())
    );
    assert!(store.before_send_hook(&b).await.unwrap().is_none());
    let shown = store.app_overview(&a).await.unwrap().unwrap();
    let shown = shown.before_send_hook.unwrap();
    assert_eq!(
        (shown.url.as_str(), shown.timeout_ms, shown.fail_open),
        (hook.url.as_str(), 1_000, false)
    );
    assert!(shown.secret.is_none());
    let open = mkondo_server::store::hooks::HookRow {
        url: "https://hooks.example/b".to_owned(),
        secret: "v1:other".to_owned(),
        timeout_ms: 250,
        fail_open: true,
        updated_at: 2,
    };
    assert!(store
        .update_app_settings(
            &a,
            &AppSettingsChange {
                before_send_hook: Some(Some(&open)),
                ..Default::default()
            }
        )
        .await
        .unwrap());
    assert_eq!(store.before_send_hook(&a).await.unwrap(), Some(open));
    assert!(store
        .update_app_settings(
            &a,
            &AppSettingsChange {
                before_send_hook: Some(None),
                ..Default::default()
            }
        )
        .await
        .unwrap());
    assert!(store.before_send_hook(&a).await.unwrap().is_none());
    assert!(!store
        .update_app_settings(
            "nope",
            &AppSettingsChange {
                before_send_hook: Some(Some(&hook)),
                ..Default::default()
            }
        )
        .await
        .unwrap());
}
