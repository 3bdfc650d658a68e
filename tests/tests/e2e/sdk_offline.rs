//! The SDK with its offline store (SQLite) against the real server, behind a
//! proxy whose address stays while the server is killed and restarted (the
//! store belongs to one server URL): a cold start with the server down shows
//! the cached list and messages, messages written offline survive SIGKILLs of
//! the client process and land exactly once, in order; a store is its user's
//! only; sign-out wipes it.

use std::{process::Stdio, sync::Arc, time::Duration};

use crate::sdk_common::{client, connected};
use mkondo_sdk::store::{sqlite::SqliteStore, Store, StoreKey};
use mkondo_sdk::{Client, Config, ConnectionState, Error, Event, TransportKind};
use mkondo_tests::{poll_until, Proxy, Rest, ServerOptions, TestServer, WAIT};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn store_config(url: &str, token: String, store: &Arc<SqliteStore>, user: &str) -> Config {
    Config::new(url, TransportKind::WebSocketJson)
        .with_token(token)
        .with_reconnect_delays(Duration::from_millis(50), Duration::from_millis(300))
        .with_store(store.clone(), user)
}

fn texts(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .filter(|m| m["kind"] == "user")
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Reopens the store file and reads it as `user` of `url`.
async fn stored(path: &std::path::Path, url: &str, user: &str) -> mkondo_sdk::store::Snapshot {
    let key = StoreKey {
        url: url.into(),
        user_id: user.into(),
    };
    SqliteStore::open(path).unwrap().load(&key).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_shows_the_cache_before_the_network_and_resumes_once() {
    let mut server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let group = api.create_group("team", &["alice", "bob"]).await;
    let proxy = Proxy::start(server.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.db");
    let token = server.app.token("alice");

    // A first run: connected, three messages arrive and are kept.
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let (first, events) = client(store_config(&proxy.url(), token.clone(), &store, "alice"));
    connected(&first).await;
    for i in 1..=3 {
        api.send(&group, "bob", &format!("hello {i}"), &format!("h-{i}"))
            .await;
    }
    events
        .wait_for("the third message", 0, |e| match e {
            Event::Message(m) if m.text == "hello 3" => Some(()),
            _ => None,
        })
        .await;
    first.shutdown();
    drop(first);
    drop(store);

    // The server goes away; the app starts again with no network.
    server.kill().await;
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let cold = Client::open(
        store_config(&proxy.url(), token, &store, "alice"),
        Arc::new(move |e: Event| sink.lock().unwrap().push(e)),
    )
    .await
    .unwrap();
    let list = cold.cached_conversations();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].id, group);
    assert_eq!(list[0].unread_count, 3);
    assert_eq!(list[0].last_message.as_ref().unwrap().text, "hello 3");
    let cached: Vec<String> = cold
        .cached_messages(&group)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(cached, ["hello 1", "hello 2", "hello 3"]);
    assert_eq!(cold.user().unwrap().id, "alice");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::ConversationUpdated(c) if c.id == group)),
        "the cached state is told as events"
    );
    cold.connect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cold.state(), ConnectionState::Connecting, "no server yet");
    assert_eq!(cold.cached_messages(&group).len(), 3);

    // The server is back: what came meanwhile arrives once, nothing before it again.
    server.restart().await;
    proxy.set_upstream(server.addr);
    server
        .api()
        .send(&group, "bob", "while you were away", "h-4")
        .await;
    cold.wait_for_state(ConnectionState::Connected)
        .await
        .unwrap();
    poll_until(WAIT, "the new message", || {
        let got = cold
            .cached_messages(&group)
            .iter()
            .any(|m| m.text == "while you were away");
        async move { got.then_some(()) }
    })
    .await;
    let delivered: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        delivered,
        ["while you were away"],
        "resumed from the stored position"
    );
    cold.shutdown();
}

/// Runs the client process; resolves with it and the receiver of its lines.
fn spawn_client(
    url: &str,
    token: &str,
    path: &std::path::Path,
    conversation: &str,
    send: usize,
    prefix: &str,
    edit: Option<u64>,
) -> (Child, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut args = vec![
        url.to_owned(),
        token.to_owned(),
        "alice".to_owned(),
        path.to_str().unwrap().to_owned(),
        conversation.to_owned(),
        send.to_string(),
        prefix.to_owned(),
    ];
    args.extend(edit.map(|seq| seq.to_string()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_mkondo-offline-client"))
        .args(&args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the client process starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

async fn next_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, what: &str) -> String {
    tokio::time::timeout(WAIT * 2, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no line: {what}"))
        .unwrap_or_else(|| panic!("the client process ended before: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_written_offline_survive_sigkill_and_land_once_in_order() {
    let mut server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let group = api.create_group("team", &["alice", "bob"]).await;
    let proxy = Proxy::start(server.addr).await;
    let url = proxy.url();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.db");
    let token = server.app.token("alice");
    let mine = mkondo_tests::seq_of(&api.send(&group, "alice", "mine", "m-1").await);
    api.send(&group, "bob", "unread", "b-1").await;

    // 1. No server: three messages written, one edited, a reaction and a read
    //    position; all durable; then the process is killed.
    server.kill().await;
    let (mut offline, mut lines) =
        spawn_client(&url, &token, &path, &group, 3, "offline", Some(mine));
    assert_eq!(next_line(&mut lines, "restored").await, "restored 0");
    poll_until(WAIT, "six changes in the store", || {
        let path = path.clone();
        let url = url.clone();
        async move { (stored(&path, &url, "alice").await.outbox.len() == 6).then_some(()) }
    })
    .await;
    offline.kill().await.unwrap();

    // 2. The server is back; a new process sends what the store kept, then
    //    twenty more, and is killed while they are on their way.
    server.restart().await;
    proxy.set_upstream(server.addr);
    let api = server.api();
    let (mut online, mut lines) = spawn_client(&url, &token, &path, &group, 20, "online", None);
    assert_eq!(next_line(&mut lines, "restored").await, "restored 6");
    poll_until(WAIT, "some of them stored by the server", || {
        let api = api.clone();
        let group = group.clone();
        async move { (texts(&api.history_all(&group).await).len() >= 8).then_some(()) }
    })
    .await;
    online.kill().await.unwrap();

    // 3. Once more: the rest goes, each message once, in the order written.
    let (mut last, mut lines) = spawn_client(&url, &token, &path, &group, 0, "none", None);
    let restored = next_line(&mut lines, "restored").await;
    let mut sent = 0;
    loop {
        let line = next_line(&mut lines, "drained").await;
        if line == "drained" {
            break;
        }
        assert!(line.starts_with("sent "), "{line}");
        sent += 1;
    }
    let left: usize = restored.trim_start_matches("restored ").parse().unwrap();
    assert!(
        sent <= left,
        "each restored change reported once ({sent} of {left})"
    );
    last.wait().await.unwrap();
    let history = api.history_all(&group).await;
    let mut want: Vec<String> = vec!["edited offline".into(), "unread".into()];
    want.extend((0..3).map(|i| format!("offline {i}")));
    want.extend((0..20).map(|i| format!("online {i}")));
    assert_eq!(texts(&history), want);
    let edited = history
        .iter()
        .find(|m| mkondo_tests::seq_of(m) == mine)
        .unwrap();
    let reactions = edited["reactions"].as_array().unwrap();
    assert_eq!(reactions.len(), 1, "{edited}");
    assert_eq!(reactions[0]["emoji"], "👍");
    assert_eq!(reactions[0]["user_ids"], serde_json::json!(["alice"]));
    // The read position made offline (up to bob's message) moved once.
    let feed = api.get("/v1/events?types=read.moved&limit=100").await.ok();
    let reads: Vec<&Value> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "read.moved" && e["data"]["user_id"] == "alice")
        .filter(|e| e["data"]["last_read_seq"] == mine + 1)
        .collect();
    assert_eq!(reads.len(), 1, "{feed}");
    assert!(stored(&path, &url, "alice").await.outbox.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_is_its_users_only_and_sign_out_wipes_it() {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api: Rest = server.api();
    api.create_users(&["alice", "bob"]).await;
    let group = api.create_group("secret plans", &["alice"]).await;
    let url = format!("http://{}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");

    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let (alice, _) = client(store_config(
        &url,
        server.app.token("alice"),
        &store,
        "alice",
    ));
    connected(&alice).await;
    alice.shutdown();
    assert_eq!(stored(&path, &url, "alice").await.conversations.len(), 1);

    // The same file opened for bob: alice's cache is never read.
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let bob = Client::open(
        store_config(&url, server.app.token("bob"), &store, "bob"),
        Arc::new(|_: Event| {}),
    )
    .await
    .unwrap();
    assert!(bob.cached_conversations().is_empty());
    bob.shutdown();

    // A store configured for alice, with bob's token: nothing of the store is
    // used once the connection says who it is.
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let (alice_again, _) = client(store_config(
        &url,
        server.app.token("alice"),
        &store,
        "alice",
    ));
    connected(&alice_again).await;
    alice_again.shutdown();
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mixed = Client::open(
        store_config(&url, server.app.token("bob"), &store, "alice"),
        Arc::new(move |e: Event| sink.lock().unwrap().push(e)),
    )
    .await
    .unwrap();
    mixed.connect();
    mixed
        .wait_for_state(ConnectionState::Connected)
        .await
        .unwrap();
    poll_until(WAIT, "the refusal to use the store", || {
        let refused =
            seen.lock().unwrap().iter().any(
                |e| matches!(e, Event::Error(Error::Config(m)) if m.contains("offline store")),
            );
        async move { refused.then_some(()) }
    })
    .await;
    assert!(
        mixed.cached_conversation(&group).is_none(),
        "alice's group gone from the cache"
    );
    mixed.shutdown();
    assert_eq!(
        stored(&path, &url, "alice").await.conversations.len(),
        1,
        "and the store was not written as bob"
    );

    // Sign-out wipes it.
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let (leaving, _) = client(store_config(
        &url,
        server.app.token("alice"),
        &store,
        "alice",
    ));
    connected(&leaving).await;
    leaving.sign_out().await.unwrap();
    assert!(stored(&path, &url, "alice").await.is_empty());
}
