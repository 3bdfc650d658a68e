//! The browser's offline store (IndexedDB) as the client core uses it, in
//! headless Chromium only (Node has no IndexedDB): what it keeps and for whom,
//! the outbox handed from tab to tab by Web Locks, a database of a newer SDK
//! refused, and the cold start to the first cached conversation list (printed
//! with `--nocapture`; sizes from MKONDO_BENCH_CONVERSATIONS / _MESSAGES at
//! compile time). `web/tests/wasm.sh` runs it. Two store instances in one page
//! stand for two tabs: Web Locks and BroadcastChannel treat them the same way.
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use idb::{Factory, TransactionMode};
use mkondo_sdk::store::indexeddb::IndexedDbStore;
use mkondo_sdk::store::{Change, Pending, Store, StoreKey};
use mkondo_sdk::v1::{self, client_frame::Command};
use mkondo_sdk::{Client, Config, Event, TransportKind};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const URL: &str = "http://127.0.0.1:9";

fn key(user: &str) -> StoreKey {
    StoreKey {
        url: URL.into(),
        user_id: user.into(),
    }
}

/// A database of its own per test.
fn database(test: &str) -> String {
    format!("mkondo-test-{test}-{}", js_sys::Date::now())
}

fn message(conv: &str, seq: u64) -> v1::Message {
    v1::Message {
        id: format!("{conv}-{seq}"),
        conversation_id: conv.into(),
        seq,
        sender_id: "bob".into(),
        kind: "user".into(),
        text: format!("message {seq} of {conv}: a line of chat of ordinary length"),
        ..Default::default()
    }
}

fn send(key: &str, text: &str) -> Pending {
    Pending {
        key: key.into(),
        command: Command::Send(v1::SendRequest {
            conversation_id: "c1".into(),
            client_id: key.into(),
            text: text.into(),
            ..Default::default()
        }),
    }
}

fn keys(pending: &[Pending]) -> Vec<&str> {
    pending.iter().map(|p| p.key.as_str()).collect()
}

async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// `Some` if `fut` resolves within `ms`.
async fn within<T>(ms: u32, fut: impl std::future::Future<Output = T>) -> Option<T> {
    match futures::future::select(Box::pin(fut), Box::pin(sleep(ms))).await {
        futures::future::Either::Left((out, _)) => Some(out),
        futures::future::Either::Right(_) => None,
    }
}

/// What a store opened alone gets to send: its snapshot's outbox, or — when
/// the store closed just before is still letting its locks go (a slow
/// machine) — the same entries handed over as soon as it has.
async fn sendable(store: &IndexedDbStore, restored: Vec<Pending>) -> Vec<Pending> {
    if store.is_outbox_holder() {
        return restored;
    }
    assert!(
        restored.is_empty(),
        "a tab without the lock restores no outbox"
    );
    within(5000, store.adopt())
        .await
        .expect("the outbox lock comes once the closed store lets go")
        .unwrap()
}

/// Drops a store (a tab closing) and lets the browser release its locks, as
/// it does before a reloaded page runs.
async fn close(store: IndexedDbStore) {
    drop(store);
    sleep(50).await;
}

#[wasm_bindgen_test]
async fn a_store_keeps_what_it_was_given_for_its_key_only() {
    let name = database("keys");
    let store = IndexedDbStore::keeping(&name, 50);
    assert!(store.load(&key("alice")).await.unwrap().is_empty());
    let mut changes = vec![
        Change::User(v1::User {
            id: "alice".into(),
            name: "Alice".into(),
            ..Default::default()
        }),
        Change::Conversation(v1::Conversation {
            id: "c1".into(),
            unread_count: 2,
            ..Default::default()
        }),
        Change::Conversation(v1::Conversation {
            id: "c2".into(),
            ..Default::default()
        }),
    ];
    changes.extend((1..=60).map(|seq| Change::Message(message("c1", seq))));
    changes.push(Change::Message(message("c2", 1)));
    changes.push(Change::OutboxAdd(send("k1", "one")));
    changes.push(Change::OutboxAdd(send("k2", "two")));
    changes.push(Change::OutboxAdd(send("k3", "three")));
    changes.push(Change::OutboxRemove("k2".into()));
    changes.push(Change::Position {
        conversation_id: "c1".into(),
        seq: 60,
    });
    // A position never moves back.
    changes.push(Change::Position {
        conversation_id: "c1".into(),
        seq: 10,
    });
    store.apply(changes).await.unwrap();
    store
        .apply(vec![Change::RemoveConversation("c2".into())])
        .await
        .unwrap();
    close(store).await;

    // Reopened (a reload): everything, the newest 50 messages, the outbox in order.
    let store = IndexedDbStore::keeping(&name, 50);
    let snapshot = store.load(&key("alice")).await.unwrap();
    assert_eq!(snapshot.user.unwrap().name, "Alice");
    let ids: Vec<_> = snapshot
        .conversations
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["c1"]);
    assert_eq!(snapshot.conversations[0].unread_count, 2);
    let seqs: Vec<u64> = snapshot.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (11..=60).collect::<Vec<_>>());
    assert!(snapshot.messages.iter().all(|m| m.conversation_id == "c1"));
    let outbox = sendable(&store, snapshot.outbox).await;
    assert_eq!(keys(&outbox), ["k1", "k3"]);
    assert_eq!(outbox[1], send("k3", "three"));
    assert_eq!(snapshot.positions, [("c1".to_owned(), 60)]);
    close(store).await;

    // Another user's store is never read, and is gone.
    let store = IndexedDbStore::keeping(&name, 50);
    assert!(store.load(&key("mallory")).await.unwrap().is_empty());
    close(store).await;
    let store = IndexedDbStore::keeping(&name, 50);
    assert!(store.load(&key("alice")).await.unwrap().is_empty());

    // A wipe (sign-out) leaves nothing.
    store
        .apply(vec![Change::OutboxAdd(send("k4", "four")), Change::Wipe])
        .await
        .unwrap();
    close(store).await;
    let store = IndexedDbStore::keeping(&name, 50);
    assert!(store.load(&key("alice")).await.unwrap().is_empty());
}

#[wasm_bindgen_test]
async fn the_outbox_is_sent_by_one_tab_at_a_time() {
    let name = database("tabs");
    // Tab A holds the outbox; tab B opens beside it.
    let a = IndexedDbStore::new(&name);
    a.load(&key("alice")).await.unwrap();
    assert!(a.is_outbox_holder());
    a.apply(vec![Change::OutboxAdd(send("a1", "from a"))])
        .await
        .unwrap();
    let b = IndexedDbStore::new(&name);
    let snapshot = b.load(&key("alice")).await.unwrap();
    assert!(!b.is_outbox_holder());
    // B does not send A's entry: A is alive and sends its own.
    assert!(snapshot.outbox.is_empty());
    b.apply(vec![Change::OutboxAdd(send("b1", "from b"))])
        .await
        .unwrap();
    // A takes nothing over while B lives.
    assert!(within(500, a.adopt()).await.is_none());

    // B's tab closes: A takes its entry over, once.
    drop(b);
    let taken = within(5000, a.adopt())
        .await
        .expect("A takes B's entry over");
    assert_eq!(keys(&taken.unwrap()), ["b1"]);
    assert!(within(300, a.adopt()).await.is_none());

    // A tab X writes and closes; a tab Y opening then leaves X's entry to A,
    // the holder, rather than sending it too.
    let x = IndexedDbStore::new(&name);
    x.load(&key("alice")).await.unwrap();
    x.apply(vec![Change::OutboxAdd(send("x1", "from x"))])
        .await
        .unwrap();
    close(x).await;
    let y = IndexedDbStore::new(&name);
    assert!(y.load(&key("alice")).await.unwrap().outbox.is_empty());
    let taken = within(5000, a.adopt())
        .await
        .expect("A takes X's entry over");
    assert_eq!(keys(&taken.unwrap()), ["x1"]);
    close(y).await;

    // A tab C opens, waits for the outbox, and gets it when A closes: then it
    // sends every entry (A's own and those A took over), in order.
    let c = IndexedDbStore::new(&name);
    assert!(c.load(&key("alice")).await.unwrap().outbox.is_empty());
    assert!(!c.is_outbox_holder());
    close(a).await;
    let taken = within(5000, c.adopt())
        .await
        .expect("C takes the outbox over");
    assert!(c.is_outbox_holder());
    assert_eq!(keys(&taken.unwrap()), ["a1", "b1", "x1"]);

    // A reloaded tab D (C still open) finds nothing to send: C has it all.
    let d = IndexedDbStore::new(&name);
    assert!(d.load(&key("alice")).await.unwrap().outbox.is_empty());
    close(d).await;
    close(c).await;
    // The next tab alone sends them.
    let e = IndexedDbStore::new(&name);
    let snapshot = e.load(&key("alice")).await.unwrap();
    assert_eq!(
        keys(&sendable(&e, snapshot.outbox).await),
        ["a1", "b1", "x1"]
    );
}

#[wasm_bindgen_test]
async fn a_database_of_a_newer_sdk_is_refused_not_misread() {
    let name = database("newer");
    let db = Factory::new()
        .unwrap()
        .open(&name, Some(99))
        .unwrap()
        .await
        .unwrap();
    db.close();
    let store = IndexedDbStore::new(&name);
    let err = store.load(&key("alice")).await.unwrap_err();
    assert!(err.0.contains("cannot be opened"), "{err}");

    // A client given it opens without it, and says why.
    let errors = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = errors.clone();
    #[allow(clippy::arc_with_non_send_sync)]
    let config = Config::new(URL, TransportKind::WebSocketJson)
        .with_token("unused")
        .with_store(Arc::new(IndexedDbStore::new(&name)), "alice");
    #[allow(clippy::arc_with_non_send_sync)]
    let client = Client::open(
        config,
        Arc::new(move |event: Event| {
            if let Event::Error(e) = event {
                seen.borrow_mut().push(e);
            }
        }),
    )
    .await
    .unwrap();
    assert!(client.cached_conversations().is_empty());
    assert!(
        matches!(&errors.borrow()[..], [mkondo_sdk::Error::Store(m)] if m.contains("cannot be opened")),
        "{:?}",
        errors.borrow()
    );
    client.shutdown();
    // Left as it was: still the newer SDK's.
    let db = Factory::new()
        .unwrap()
        .open(&name, None)
        .unwrap()
        .await
        .unwrap();
    assert_eq!(db.version().unwrap(), 99);
    db.close();
}

#[wasm_bindgen_test]
async fn a_newer_sdk_in_another_tab_is_not_blocked() {
    let name = database("upgrade");
    let store = IndexedDbStore::new(&name);
    store.load(&key("alice")).await.unwrap();
    // Another tab's newer SDK upgrades the database: this one's connection
    // closes instead of blocking it.
    let upgraded = within(3000, async {
        Factory::new().unwrap().open(&name, Some(2)).unwrap().await
    })
    .await
    .expect("the upgrade is not blocked");
    upgraded.unwrap().close();
    // This (older) store then refuses the newer database rather than misread it.
    let err = store
        .apply(vec![Change::Position {
            conversation_id: "c1".into(),
            seq: 1,
        }])
        .await
        .unwrap_err();
    assert!(err.0.contains("cannot be opened"), "{err}");
}

const CONVERSATIONS: usize = match option_env!("MKONDO_BENCH_CONVERSATIONS") {
    Some(n) => parse(n),
    None => 100,
};
const MESSAGES: usize = match option_env!("MKONDO_BENCH_MESSAGES") {
    Some(n) => parse(n),
    None => 50,
};

const fn parse(s: &str) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < s.len() {
        n = n * 10 + (s.as_bytes()[i] - b'0') as usize;
        i += 1;
    }
    n
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Every record's bytes read (`getAll`), nothing decoded: the floor.
async fn floor(name: &str) -> (f64, usize) {
    let started = js_sys::Date::now();
    let db = Factory::new()
        .unwrap()
        .open(name, None)
        .unwrap()
        .await
        .unwrap();
    let tx = db
        .transaction(&["conversations", "messages"], TransactionMode::ReadOnly)
        .unwrap();
    let mut records = 0;
    for store in ["conversations", "messages"] {
        let all = tx
            .object_store(store)
            .unwrap()
            .get_all(None, None)
            .unwrap()
            .await
            .unwrap();
        records += all.len();
    }
    let elapsed = js_sys::Date::now() - started;
    db.close();
    (elapsed, records)
}

#[wasm_bindgen_test]
async fn cold_start_to_the_first_cached_list() {
    let name = database("cold");
    let store = IndexedDbStore::keeping(&name, MESSAGES);
    store.load(&key("alice")).await.unwrap();
    let filled = js_sys::Date::now();
    for c in 0..CONVERSATIONS {
        let id = format!("c{c:05}");
        let last = MESSAGES as u64;
        let mut changes: Vec<Change> = (1..=last)
            .map(|seq| Change::Message(message(&id, seq)))
            .collect();
        changes.push(Change::Conversation(v1::Conversation {
            id: id.clone(),
            kind: "group".into(),
            name: format!("Group {c}"),
            last_seq: last,
            last_message: Some(message(&id, last)),
            unread_count: 3,
            member_count: 12,
            ..Default::default()
        }));
        changes.push(Change::Position {
            conversation_id: id,
            seq: last,
        });
        store.apply(changes).await.unwrap();
    }
    let fill_ms = js_sys::Date::now() - filled;
    close(store).await;

    let (mut sdk, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = js_sys::Date::now();
        #[allow(clippy::arc_with_non_send_sync)]
        let store = Arc::new(IndexedDbStore::keeping(&name, MESSAGES));
        let config = Config::new(URL, TransportKind::WebSocketJson)
            .with_token("unused")
            .with_store(store, "alice");
        #[allow(clippy::arc_with_non_send_sync)]
        let client = Client::open(config, Arc::new(|_: Event| {})).await.unwrap();
        let list = client.cached_conversations();
        sdk.push(js_sys::Date::now() - started);
        assert_eq!(list.len(), CONVERSATIONS);
        assert_eq!(client.cached_messages(&list[0].id).len(), MESSAGES);
        client.shutdown();
        let (ms, records) = floor(&name).await;
        assert_eq!(records, CONVERSATIONS * (MESSAGES + 1));
        raw.push(ms);
    }
    let (s, f) = (median(sdk), median(raw));
    console_log!(
        "cold start, Chromium IndexedDB: {CONVERSATIONS} conversations, {} messages (filled in {fill_ms:.0} ms)",
        CONVERSATIONS * MESSAGES
    );
    console_log!("| SDK: open the store → first cached conversation list | {s:.1} ms |");
    console_log!("| floor: getAll of every record, no decoding | {f:.1} ms |");
    console_log!("| SDK ÷ floor | {:.1}× |", s / f);
}
