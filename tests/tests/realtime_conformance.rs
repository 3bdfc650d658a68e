//! Conformance of the real-time engines: every broker (memory; Redis on the
//! publishing node; Redis on another node) and every presence manager (memory;
//! Redis) passes the same tests, written once and instantiated per engine by
//! `broker_suite!` and `presence_suite!`. Events are delivered through a real
//! `Hub` to session queues and closers, as sessions see them.
//!
//! What only a shared engine can do (entries of two nodes with the same session
//! id, a crashed node's entries expiring, Redis restarting under two nodes) is
//! tested for Redis alone, at the end.
//!
//! Redis is this test process's (`mkondo_tests::redis_url`, started on first
//! use); each test uses its own key prefix and deletes its keys. The restart
//! test runs its own `redis-server`. Without Redis installed, the Redis tests
//! are listed as ignored, with the reason.

use std::sync::Arc;
use std::time::Duration;

use mkondo_proto::v1::{self, push::Push};
use mkondo_proto::DisconnectCode;
use mkondo_server::engine::broker::{Broker, Event, MemoryBroker, Payload, Target};
use mkondo_server::engine::hub::{Closer, Hub, SessionHandle, TokenStamp};
use mkondo_server::engine::outbound::Outbound;
use mkondo_server::engine::presence::{AppState, Change, MemoryPresence, PresenceManager, Status};
use mkondo_server::engine::redis_broker::{self, RedisBroker};
use mkondo_server::engine::redis_presence::RedisPresence;
use mkondo_tests::redis_url;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Anything that should happen soon; generous for a loaded machine.
const WAIT: Duration = Duration::from_secs(10);

fn unique_prefix() -> String {
    format!(
        "mkondo-test-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

/// Deletes every key under `prefix` when dropped.
struct Keys {
    url: String,
    prefix: String,
}

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

// ----- brokers

/// A publishing node and the hub of the node whose sessions receive.
struct Brokers {
    publisher: Arc<dyn Broker>,
    hub: Arc<Hub>,
    _stop: Option<(CancellationToken, Keys)>,
}

async fn memory_broker() -> Brokers {
    let hub = Arc::new(Hub::default());
    Brokers {
        publisher: Arc::new(MemoryBroker::new(hub.clone())),
        hub,
        _stop: None,
    }
}

async fn redis_node(
    url: &str,
    prefix: &str,
    stop: &CancellationToken,
) -> (Arc<RedisBroker>, Arc<Hub>) {
    let hub = Arc::new(Hub::default());
    let node_id: Arc<str> = Arc::from(ulid::Ulid::new().to_string());
    let conn = redis_broker::connection(url, None).unwrap();
    let broker = RedisBroker::start(conn, prefix, node_id, hub.clone(), stop.child_token())
        .await
        .expect("subscribe to Redis");
    (broker, hub)
}

/// Redis, the receiving sessions on the publishing node.
async fn redis_same_node() -> Brokers {
    let (url, prefix, stop) = (redis_url(), unique_prefix(), CancellationToken::new());
    let (broker, hub) = redis_node(&url, &prefix, &stop).await;
    Brokers {
        publisher: broker,
        hub,
        _stop: Some((stop, Keys { url, prefix })),
    }
}

/// Redis, the receiving sessions on another node.
async fn redis_other_node() -> Brokers {
    let (url, prefix, stop) = (redis_url(), unique_prefix(), CancellationToken::new());
    let (publisher, _) = redis_node(&url, &prefix, &stop).await;
    let (_, hub) = redis_node(&url, &prefix, &stop).await;
    Brokers {
        publisher,
        hub,
        _stop: Some((stop, Keys { url, prefix })),
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self._stop {
            stop.cancel();
        }
    }
}

struct Sess {
    rx: mpsc::Receiver<Arc<Outbound>>,
    close: Closer,
    user: String,
}

fn session(hub: &Hub, id: u64, app: &str, user: &str, kid: &str, iat_ms: i64) -> Sess {
    let (tx, rx) = mpsc::channel(4096);
    let close = Closer::default();
    hub.add(SessionHandle {
        id,
        app: Arc::from(app),
        user: Arc::from(user),
        token: TokenStamp {
            kid: Arc::from(kid),
            issued_at_ms: iat_ms,
        },
        queue: tx,
        close: close.clone(),
    });
    Sess {
        rx,
        close,
        user: user.to_owned(),
    }
}

fn message(conv: &str, seq: u64) -> Push {
    Push::Message(v1::Message {
        conversation_id: conv.into(),
        seq,
        text: format!("m{seq}"),
        ..Default::default()
    })
}

fn marker(n: u64) -> Push {
    message("marker", n)
}

fn to_users(users: &[&str]) -> Target {
    Target {
        users: users.iter().map(|u| u.to_string()).collect(),
        ..Default::default()
    }
}

async fn push(b: &Brokers, app: &str, target: Target, push: Push) {
    let event = Event {
        app: app.into(),
        target,
        payload: Payload::Push(Outbound::push(push)),
    };
    b.publisher.publish(event).await.expect("publish");
}

async fn disconnect(b: &Brokers, app: &str, target: Target, code: DisconnectCode) {
    let event = Event {
        app: app.into(),
        target,
        payload: Payload::Disconnect(code),
    };
    b.publisher.publish(event).await.expect("publish");
}

async fn next(s: &mut Sess) -> v1::push::Push {
    let out = tokio::time::timeout(WAIT, s.rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{}: no push within {WAIT:?}", s.user))
        .expect("queue open");
    match &out.frame.body {
        Some(v1::server_frame::Body::Push(v1::Push { push: Some(p) })) => p.clone(),
        other => panic!("not a push: {other:?}"),
    }
}

/// Publishes a marker to the sessions' user (in `app`) and expects it to be
/// the next push of each: anything published before it and meant for them
/// would have arrived first, so nothing else was.
async fn expect_nothing_before_marker(b: &Brokers, app: &str, sessions: &mut [&mut Sess], n: u64) {
    let user = sessions[0].user.clone();
    push(b, app, to_users(&[&user]), marker(n)).await;
    for s in sessions {
        match next(s).await {
            Push::Message(m) if m.conversation_id == "marker" && m.seq == n => {}
            other => panic!("{}: expected only the marker, got {other:?}", s.user),
        }
    }
}

async fn expect_message(s: &mut Sess, conv: &str, seq: u64) {
    match next(s).await {
        Push::Message(m) if m.conversation_id == conv && m.seq == seq => {}
        other => panic!("{}: expected {conv}#{seq}, got {other:?}", s.user),
    }
}

async fn expect_closed(s: &Sess, code: DisconnectCode) {
    tokio::time::timeout(WAIT, s.close.closed())
        .await
        .unwrap_or_else(|_| panic!("{} not closed within {WAIT:?}", s.user));
    assert_eq!(s.close.code(), Some(code), "{}", s.user);
}

/// Events one task publishes one after another arrive in that order.
async fn publication_order_is_kept(b: Brokers) {
    let mut s = session(&b.hub, 1, "app1", "alice", "k1", 0);
    for seq in 1..=300 {
        push(&b, "app1", to_users(&["alice"]), message("c1", seq)).await;
    }
    for seq in 1..=300 {
        expect_message(&mut s, "c1", seq).await;
    }
}

/// Users, subscribers and the whole app select sessions; `except_users` removes
/// some; nothing reaches another app.
async fn targets_select_sessions(b: Brokers) {
    let hub = &b.hub;
    let mut alice1 = session(hub, 1, "app1", "alice", "k1", 0);
    let mut alice2 = session(hub, 2, "app1", "alice", "k1", 0);
    let mut bob = session(hub, 3, "app1", "bob", "k1", 0);
    let mut carol = session(hub, 4, "app1", "carol", "k1", 0);
    let mut other_app = session(hub, 5, "app2", "alice", "k1", 0);
    hub.subscribe(&Arc::from("app1"), "room", 3);
    hub.subscribe(&Arc::from("app1"), "room", 4);

    // Every device of the user, nobody else.
    push(&b, "app1", to_users(&["alice"]), message("d", 1)).await;
    expect_message(&mut alice1, "d", 1).await;
    expect_message(&mut alice2, "d", 1).await;

    // Subscribers, less the excluded user.
    let room = Target {
        subscribers_of: vec!["room".into()],
        except_users: vec!["bob".into()],
        ..Default::default()
    };
    push(&b, "app1", room, message("room", 1)).await;
    expect_message(&mut carol, "room", 1).await;

    // The whole app.
    let all = Target {
        whole_app: true,
        ..Default::default()
    };
    push(&b, "app1", all, message("all", 1)).await;
    for s in [&mut alice1, &mut alice2, &mut bob, &mut carol] {
        expect_message(s, "all", 1).await;
    }

    // Users and subscribers together: each session once.
    let both = Target {
        users: vec!["carol".into()],
        subscribers_of: vec!["room".into()],
        ..Default::default()
    };
    push(&b, "app1", both, message("both", 1)).await;
    expect_message(&mut bob, "both", 1).await;
    expect_message(&mut carol, "both", 1).await;

    expect_nothing_before_marker(&b, "app1", &mut [&mut alice1, &mut alice2], 1).await;
    expect_nothing_before_marker(&b, "app1", &mut [&mut bob], 2).await;
    expect_nothing_before_marker(&b, "app1", &mut [&mut carol], 3).await;
    expect_nothing_before_marker(&b, "app2", &mut [&mut other_app], 4).await;
}

/// Disconnects close the sessions their target and filters select, with their code.
async fn disconnects_close_selected_sessions(b: Brokers) {
    let hub = &b.hub;
    let mut old = session(hub, 1, "app1", "alice", "k1", 1_000);
    let mut new = session(hub, 2, "app1", "alice", "k1", 5_000);
    let mut k2 = session(hub, 3, "app1", "bob", "k2", 1_000);
    let mut other_app = session(hub, 4, "app2", "alice", "k2", 1_000);
    let revocations = hub.revocations();

    let stale = Target {
        users: vec!["alice".into()],
        issued_before_ms: Some(2_000),
        ..Default::default()
    };
    disconnect(&b, "app1", stale, DisconnectCode::TokensRevoked).await;
    expect_closed(&old, DisconnectCode::TokensRevoked).await;

    let key = Target {
        whole_app: true,
        kid: Some("k2".into()),
        ..Default::default()
    };
    disconnect(&b, "app1", key, DisconnectCode::UserDeactivated).await;
    expect_closed(&k2, DisconnectCode::UserDeactivated).await;

    expect_nothing_before_marker(&b, "app1", &mut [&mut new], 1).await;
    expect_nothing_before_marker(&b, "app2", &mut [&mut other_app], 2).await;
    assert_eq!(new.close.code(), None, "a newer token is left alone");
    assert_eq!(other_app.close.code(), None, "another app is left alone");
    assert_eq!(
        hub.revocations(),
        revocations + 2,
        "each disconnect counted"
    );
    // Markers went to closed sessions too; that is fine, they are closing.
    let _ = old.rx.try_recv();
    let _ = k2.rx.try_recv();
}

/// One module of tests per engine: each scenario run against `$fixture`.
macro_rules! conformance {
    ($(#[$attr:meta])* $engine:ident, $fixture:ident, [$($scenario:ident),* $(,)?]) => {
        mod $engine {
            use super::*;
            conformance!(@each [$(#[$attr])*] $fixture, [$($scenario),*]);
        }
    };
    // The attributes (e.g. the `ignore` of the Redis suites) go on every test.
    (@each $attrs:tt $fixture:ident, [$($scenario:ident),*]) => {
        $(conformance!(@one $attrs $fixture, $scenario);)*
    };
    (@one [$($attrs:tt)*] $fixture:ident, $scenario:ident) => {
        #[tokio::test]
        $($attrs)*
        async fn $scenario() {
            super::$scenario($fixture().await).await;
        }
    };
}

macro_rules! broker_suite {
    ($(#[$attr:meta])* $engine:ident, $fixture:ident $(,)?) => {
        conformance!(
            $(#[$attr])*
            $engine,
            $fixture,
            [
                publication_order_is_kept,
                targets_select_sessions,
                disconnects_close_selected_sessions,
            ]
        );
    };
}

broker_suite!(memory_broker_on_its_node, memory_broker);
broker_suite!(
    #[cfg_attr(
        not(has_services),
        ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
    )]
    redis_broker_on_the_publishing_node,
    redis_same_node,
);
broker_suite!(
    #[cfg_attr(
        not(has_services),
        ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
    )]
    redis_broker_on_another_node,
    redis_other_node,
);

// ----- presence

/// Two nodes' presence managers (the same one twice in memory: one node).
struct Presences {
    a: Arc<dyn PresenceManager>,
    b: Arc<dyn PresenceManager>,
    _keys: Option<Keys>,
}

async fn memory_presence() -> Presences {
    let p: Arc<dyn PresenceManager> = Arc::new(MemoryPresence::default());
    Presences {
        a: p.clone(),
        b: p,
        _keys: None,
    }
}

fn redis_presence_node(url: &str, prefix: &str, ttl_ms: u64) -> Arc<RedisPresence> {
    let (_, conn) = redis_broker::connection(url, None).unwrap();
    let node_id: Arc<str> = Arc::from(ulid::Ulid::new().to_string());
    RedisPresence::new(conn, prefix, node_id, Duration::from_millis(ttl_ms))
}

async fn redis_presence() -> Presences {
    let (url, prefix) = (redis_url(), unique_prefix());
    Presences {
        a: redis_presence_node(&url, &prefix, 30_000),
        b: redis_presence_node(&url, &prefix, 30_000),
        _keys: Some(Keys { url, prefix }),
    }
}

/// online while any device is in the foreground, away when all are in the
/// background, offline when none is left; each change reported once.
async fn status_follows_connections(p: Presences) {
    let (a, b) = (&p.a, &p.b);
    let on = AppState::Foreground;
    let bg = AppState::Background;
    assert_eq!(a.set("app1", "u", 1, on, 100).await, Some(Status::Online));
    assert_eq!(b.set("app1", "u", 2, bg, 200).await, None);
    assert_eq!(a.set("app1", "u", 1, on, 250).await, None, "no change");
    assert_eq!(a.set("app1", "u", 1, bg, 300).await, Some(Status::Away));
    assert_eq!(b.set("app1", "u", 2, on, 350).await, Some(Status::Online));
    assert_eq!(b.remove("app1", "u", 2, 400).await, Some(Status::Away));
    assert_eq!(a.remove("app1", "u", 1, 500).await, Some(Status::Offline));
    assert_eq!(a.remove("app1", "u", 1, 600).await, None, "already gone");

    let got = b.get("app1", &["u".into(), "nobody".into()]).await;
    assert_eq!(got.len(), 1, "unknown users are absent: {got:?}");
    assert_eq!(got[0].status, Status::Offline);
    assert_eq!(got[0].last_seen, Some(500));
    assert!(a.get("app2", &["u".into()]).await.is_empty(), "another app");
}

/// The same user id in two apps are two users.
async fn apps_are_isolated(p: Presences) {
    let on = AppState::Foreground;
    assert_eq!(p.a.set("app1", "u", 1, on, 1).await, Some(Status::Online));
    assert_eq!(p.b.set("app2", "u", 2, on, 1).await, Some(Status::Online));
    assert_eq!(p.a.remove("app1", "u", 1, 2).await, Some(Status::Offline));
    let app2 = p.a.get("app2", &["u".into()]).await;
    assert_eq!(app2[0].status, Status::Online);
    // Key names keep `a:b` + `c` apart from `a` + `b:c`.
    assert_eq!(p.a.set("x:y", "z", 3, on, 1).await, Some(Status::Online));
    assert!(p.b.get("x", &["y:z".into()]).await.is_empty());
}

/// Concurrent connects and disconnects of one user on two nodes: exactly one
/// sees the user come online, exactly one sees them go offline.
async fn concurrent_changes_are_reported_once(p: Presences) {
    let mut tasks = Vec::new();
    for conn in 0..20u64 {
        let node = if conn % 2 == 0 {
            p.a.clone()
        } else {
            p.b.clone()
        };
        tasks.push(tokio::spawn(async move {
            node.set("app1", "crowd", conn, AppState::Foreground, 10)
                .await
        }));
    }
    let mut online = 0;
    for t in tasks {
        online += usize::from(t.await.unwrap() == Some(Status::Online));
    }
    assert_eq!(online, 1, "online reported once");

    let mut tasks = Vec::new();
    for conn in 0..20u64 {
        let node = if conn % 2 == 0 {
            p.a.clone()
        } else {
            p.b.clone()
        };
        tasks.push(tokio::spawn(async move {
            node.remove("app1", "crowd", conn, 20).await
        }));
    }
    let mut offline = 0;
    for t in tasks {
        offline += usize::from(t.await.unwrap() == Some(Status::Offline));
    }
    assert_eq!(offline, 1, "offline reported once");
}

macro_rules! presence_suite {
    ($(#[$attr:meta])* $engine:ident, $fixture:ident $(,)?) => {
        conformance!(
            $(#[$attr])*
            $engine,
            $fixture,
            [
                status_follows_connections,
                apps_are_isolated,
                concurrent_changes_are_reported_once,
            ]
        );
    };
}

presence_suite!(memory_presence_on_one_node, memory_presence);
presence_suite!(
    #[cfg_attr(
        not(has_services),
        ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
    )]
    redis_presence_on_two_nodes,
    redis_presence,
);

// ----- what only the shared engine does

/// Session ids are unique per process only: the same id on two nodes is two
/// connections.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn redis_presence_keeps_equal_session_ids_of_two_nodes_apart() {
    let p = redis_presence().await;
    let on = AppState::Foreground;
    assert_eq!(p.a.set("app1", "u", 7, on, 1).await, Some(Status::Online));
    assert_eq!(p.b.set("app1", "u", 7, on, 2).await, None);
    assert_eq!(
        p.a.remove("app1", "u", 7, 3).await,
        None,
        "node b's is left"
    );
    assert_eq!(p.b.remove("app1", "u", 7, 4).await, Some(Status::Offline));
}

/// A crashed node's connection expires after the TTL; of the nodes sweeping,
/// exactly one reports the user offline, with the last time the dead node
/// refreshed it; another app's user is not touched.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn redis_presence_expires_a_crashed_nodes_connections_once() {
    let (url, prefix) = (redis_url(), unique_prefix());
    let _keys = Keys {
        url: url.clone(),
        prefix: prefix.clone(),
    };
    let ttl = 1_000;
    let crashed = redis_presence_node(&url, &prefix, ttl);
    let b = redis_presence_node(&url, &prefix, ttl);
    let c = redis_presence_node(&url, &prefix, ttl);
    let t0 = mkondo_server::store::now_ms();
    let on = AppState::Foreground;
    assert_eq!(
        crashed.set("app1", "u", 1, on, t0).await,
        Some(Status::Online)
    );
    assert_eq!(b.set("app2", "u", 1, on, t0).await, Some(Status::Online));
    // Node b refreshes its own entries on its first upkeep; the crashed node
    // never again.
    assert!(b.upkeep(t0 + 500).await.is_empty(), "nothing expired yet");
    assert_eq!(c.get("app1", &["u".into()]).await[0].status, Status::Online);

    let after = t0 + ttl as i64 + 1;
    let (from_b, from_c) = tokio::join!(b.upkeep(after), c.upkeep(after));
    let all: Vec<Change> = from_b.into_iter().chain(from_c).collect();
    assert_eq!(
        all,
        vec![Change {
            app: "app1".into(),
            user: "u".into(),
            status: Status::Offline,
            last_seen: t0,
        }],
        "one offline change, for app1 only"
    );
    let now = c.get("app1", &["u".into()]).await;
    assert_eq!(
        (now[0].status, now[0].last_seen),
        (Status::Offline, Some(t0))
    );
    assert_eq!(c.get("app2", &["u".into()]).await[0].status, Status::Online);
    assert!(c.upkeep(after + 10).await.is_empty(), "reported once");
}

/// A node that keeps refreshing keeps its users present past the TTL; one that
/// was too slow finds its entry swept and puts it back (reporting online again).
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn redis_presence_refresh_keeps_users_present() {
    let (url, prefix) = (redis_url(), unique_prefix());
    let _keys = Keys {
        url: url.clone(),
        prefix: prefix.clone(),
    };
    let ttl = 1_000;
    let a = redis_presence_node(&url, &prefix, ttl);
    let b = redis_presence_node(&url, &prefix, ttl);
    let t0 = mkondo_server::store::now_ms();
    a.set("app1", "u", 1, AppState::Background, t0).await;
    assert!(a.upkeep(t0 + 900).await.is_empty(), "refreshed");
    assert!(b.upkeep(t0 + 1_500).await.is_empty(), "still alive");
    assert_eq!(b.get("app1", &["u".into()]).await[0].status, Status::Away);

    // a misses its refreshes: swept offline, then a puts it back.
    let late = t0 + 900 + 1_001;
    assert_eq!(b.upkeep(late).await.len(), 1);
    let back = a.upkeep(late + 400).await;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!((back[0].status, &*back[0].user), (Status::Away, "u"));
    assert_eq!(b.get("app1", &["u".into()]).await[0].status, Status::Away);
}

/// Two prefixes sharing one Redis are two clusters.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn redis_prefixes_separate_clusters() {
    let url = redis_url();
    let stop = CancellationToken::new();
    let (p1, p2) = (unique_prefix(), unique_prefix());
    let (broker1, _) = redis_node(&url, &p1, &stop).await;
    let (broker2, _) = redis_node(&url, &p2, &stop).await;
    let (_, hub1) = redis_node(&url, &p1, &stop).await;
    let mut s = session(&hub1, 1, "app1", "alice", "k1", 0);
    let b2 = Brokers {
        publisher: broker2,
        hub: hub1.clone(),
        _stop: None,
    };
    push(
        &b2,
        "app1",
        to_users(&["alice"]),
        message("other-cluster", 1),
    )
    .await;
    let b1 = Brokers {
        publisher: broker1,
        hub: hub1,
        _stop: None,
    };
    expect_nothing_before_marker(&b1, "app1", &mut [&mut s], 1).await;
    stop.cancel();
}

/// A private `redis-server` child (so it can be restarted), killed on drop.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut r = OwnRedis { port, child: None };
        r.spawn();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run ./scripts/test.sh or apt-get install redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Redis restarts under two nodes: publishing fails `unavailable` (in bounded
/// time) while it is down; both nodes resubscribe by themselves, close their
/// sessions with 3004 so clients resume, and carry events again.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn nodes_reconnect_by_themselves_when_redis_restarts() {
    let mut redis = OwnRedis::start();
    let url = redis.url();
    let stop = CancellationToken::new();
    let prefix = unique_prefix();
    let (a, hub_a) = redis_node(&url, &prefix, &stop).await;
    let (b, hub_b) = redis_node(&url, &prefix, &stop).await;
    let presence = redis_presence_node(&url, &prefix, 30_000);
    let mut on_b = session(&hub_b, 1, "app1", "bob", "k1", 0);
    let mut on_a = session(&hub_a, 1, "app1", "alice", "k1", 0);
    let from_a = Brokers {
        publisher: a.clone(),
        hub: hub_b.clone(),
        _stop: None,
    };
    push(&from_a, "app1", to_users(&["bob"]), message("c", 1)).await;
    expect_message(&mut on_b, "c", 1).await;

    redis.kill();
    let started = std::time::Instant::now();
    let event = Event {
        app: "app1".into(),
        target: to_users(&["alice", "bob"]),
        payload: Payload::Push(Outbound::push(message("c", 2))),
    };
    let err = a.publish(event).await.expect_err("Redis is down");
    assert_eq!(err.code, mkondo_proto::ErrorCode::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(5), "bounded wait");
    // The publishing node's own sessions still got it.
    expect_message(&mut on_a, "c", 2).await;
    wait_for(|| !b.is_subscribed(), "node b to notice Redis is gone").await;
    assert_eq!(on_b.close.code(), None, "sessions stay while Redis is down");

    redis.spawn();
    wait_for(
        || a.is_subscribed() && b.is_subscribed(),
        "both nodes to resubscribe",
    )
    .await;
    expect_closed(&on_b, DisconnectCode::InsufficientState).await;
    expect_closed(&on_a, DisconnectCode::InsufficientState).await;

    // Sessions that reconnect get events again, and presence works.
    let mut again = session(&hub_b, 2, "app1", "bob", "k1", 0);
    push(&from_a, "app1", to_users(&["bob"]), message("c", 3)).await;
    expect_message(&mut again, "c", 3).await;
    let on = AppState::Foreground;
    assert_eq!(
        presence.set("app1", "bob", 2, on, 1).await,
        Some(Status::Online)
    );
    stop.cancel();
}

async fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
