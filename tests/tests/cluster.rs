//! Several real server processes sharing one PostgreSQL database and one Redis
//! server: users on different nodes chat, type, read and see each other's
//! presence; a client moves to another node and recovers exactly what it missed;
//! 20 senders on three nodes get gap-free seqs; a SIGKILLed node's users turn
//! offline elsewhere within the presence TTL; a revocation on one node closes
//! connections on all; Redis restarts under the nodes; nginx with the shipped
//! `deploy/nginx.conf` in front of them; both services over verified TLS.
//!
//! Needs the PostgreSQL, `redis-server` and `nginx` binaries: this process starts
//! one PostgreSQL (`mkondo_tests::fresh_postgres`), each test its own Redis (so it
//! can restart it). Without them the tests are listed as ignored, with the reason.

#[path = "e2e/sdk_common.rs"]
mod sdk_common;

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use mkondo_sdk::{Config, ConnectionState, Event};
use mkondo_tests::{
    expect_stopped, fresh_postgres, fresh_postgres_tls, mkondo_bin, tls::TestCa, v1, Client, Nginx,
    Proxy, PushKind, RedisServer, ServerOptions, TestServer, Transport, WAIT,
};
use sdk_common::{client, connected, kind};
use tokio::time::Instant;

/// How long a connection's presence entry lives without its node refreshing it.
const PRESENCE_TTL: Duration = Duration::from_secs(2);

struct Cluster {
    nodes: Vec<TestServer>,
    redis: RedisServer,
}

/// `n` nodes on a fresh PostgreSQL database and a private Redis.
async fn cluster(n: usize) -> Cluster {
    let redis = RedisServer::start().await;
    let db = fresh_postgres().await;
    let opts = ServerOptions::new()
        .unlimited_rate()
        .database(&db)
        .flag("--broker", redis.url())
        .flag("--presence-ttl-ms", PRESENCE_TTL.as_millis());
    let first = TestServer::start(opts).await;
    let mut nodes = vec![first];
    for _ in 1..n {
        let node = nodes[0].join().await;
        nodes.push(node);
    }
    Cluster { nodes, redis }
}

async fn next_presence(client: &Client, who: &str, user: &str, status: &str) -> v1::Presence {
    client
        .expect_push(&format!("{who}: {user} {status}"), WAIT, |p| match p {
            PushKind::Presence(p) if p.user_id == user && p.status == status => Some(p.clone()),
            _ => None,
        })
        .await
}

/// Alice (WS-JSON, node 0), Bob (gRPC, node 1) and Carol (WS-protobuf, node 2):
/// presence, a message, typing and a read receipt all cross nodes live.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn users_on_different_nodes_chat_live() {
    let c = cluster(3).await;
    let api = c.nodes[1].api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let direct = api.create_direct("alice", "bob").await;
    let group = c.nodes[2]
        .api()
        .create_group("trio", &["alice", "bob", "carol"])
        .await;

    let (bob, _) = c.nodes[1].client(Transport::Grpc, "bob").await;
    let (alice, _) = c.nodes[0].client(Transport::WsJson, "alice").await;
    next_presence(&bob, "bob", "alice", "online").await;
    let seen = bob.presence(&["alice", "carol"]).await.unwrap();
    let status = |u: &str| {
        seen.iter()
            .find(|p| p.user_id == u)
            .map(|p| p.status.clone())
    };
    assert_eq!(status("alice").as_deref(), Some("online"));
    let (carol, _) = c.nodes[2].client(Transport::WsProto, "carol").await;

    // A message from node 0 reaches nodes 1 and 2, once each.
    bob.subscribe(&group).await.unwrap();
    carol.subscribe(&group).await.unwrap();
    let sent = alice
        .send_message(&group, "hello all", "a-1")
        .await
        .unwrap();
    let seq = sent.message.unwrap().seq;
    for (who, client) in [("bob", &bob), ("carol", &carol)] {
        let m = client.expect_message(&group, WAIT).await;
        assert_eq!((m.seq, m.text.as_str()), (seq, "hello all"), "{who}");
    }

    // Typing from node 1 shows on node 2 (subscribed).
    bob.typing(&group, false).await.unwrap();
    carol
        .expect_push("carol: bob typing", WAIT, |p| match p {
            PushKind::Typing(t) if t.user_id == "bob" && !t.stop => Some(()),
            _ => None,
        })
        .await;

    // A read on node 1 is a receipt on node 0.
    alice.send_message(&direct, "psst", "a-2").await.unwrap();
    let m = bob.expect_message(&direct, WAIT).await;
    bob.read(&direct, m.seq).await.unwrap();
    alice
        .expect_push("alice: bob's read receipt", WAIT, |p| match p {
            PushKind::Read(r) if r.user_id == "bob" && r.last_read_seq == m.seq => Some(()),
            _ => None,
        })
        .await;

    // Alice leaves node 0: Bob on node 1 sees her offline with a last-seen time.
    alice.close().await;
    let gone = next_presence(&bob, "bob", "alice", "offline").await;
    assert!(
        gone.last_seen.is_some(),
        "offline carries last_seen: {gone:?}"
    );
}

/// Two nodes reach PostgreSQL and Redis over TLS only, each verifying the
/// server's certificate against a test CA (`sslmode=verify-full&sslrootcert=…`,
/// `rediss://localhost:PORT` with `--redis-ca`): a message and typing cross
/// nodes. A node given another CA, for either service, refuses to start and
/// says why.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn nodes_reach_postgres_and_redis_over_verified_tls() {
    let redis_ca = TestCa::new("mkondo test Redis CA");
    let redis = RedisServer::start_tls(&redis_ca).await;
    assert!(
        redis.url().starts_with("rediss://localhost:"),
        "{}",
        redis.url()
    );
    let (db, pg_ca_pem) = fresh_postgres_tls().await;
    assert!(db.contains("sslmode=verify-full"), "{db}");
    let dir = tempfile::tempdir().unwrap();
    let redis_ca_file = dir.path().join("redis-ca.pem");
    std::fs::write(&redis_ca_file, redis_ca.cert_pem()).unwrap();
    let opts = ServerOptions::new()
        .unlimited_rate()
        .database(&db)
        .flag("--broker", redis.url())
        .flag("--redis-ca", redis_ca_file.display())
        .flag("--presence-ttl-ms", PRESENCE_TTL.as_millis());
    let first = TestServer::start(opts).await;
    let second = first.join().await;
    let api = first.api();
    api.create_users(&["alice", "bob"]).await;
    let group = api.create_group("pair", &["alice", "bob"]).await;
    let (alice, _) = first.client(Transport::WsJson, "alice").await;
    let (bob, _) = second.client(Transport::Grpc, "bob").await;
    bob.subscribe(&group).await.unwrap();
    alice.subscribe(&group).await.unwrap();
    let sent = alice.send_message(&group, "over tls", "t-1").await.unwrap();
    let m = bob.expect_message(&group, WAIT).await;
    assert_eq!(
        (m.seq, m.text.as_str()),
        (sent.message.unwrap().seq, "over tls")
    );
    bob.typing(&group, false).await.unwrap();
    alice
        .expect_push("alice: bob typing", WAIT, |p| match p {
            PushKind::Typing(t) if t.user_id == "bob" && !t.stop => Some(()),
            _ => None,
        })
        .await;
    // Local, verified: no warning about the database's TLS.
    assert!(
        !first.log_tail().contains("sslmode="),
        "{}",
        first.log_tail()
    );

    // Another CA: the certificate does not chain to it, the start fails.
    let other = TestCa::new("mkondo test other CA");
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_file, other.cert_pem()).unwrap();
    assert_ne!(other.cert_pem(), pg_ca_pem);
    let right_ca = db
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("sslrootcert="))
        .expect("the URL names its CA")
        .to_owned();
    let wrong_db = db.replace(&right_ca, other_file.to_str().unwrap());
    let redis_ca_s = redis_ca_file.to_str().unwrap().to_owned();
    let other_s = other_file.to_str().unwrap().to_owned();
    for (what, database, ca, expected) in [
        ("PostgreSQL", &wrong_db, &redis_ca_s, "opening the database"),
        ("Redis", &db, &other_s, "cannot subscribe to Redis"),
    ] {
        let run = tokio::process::Command::new(mkondo_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .args(["--broker", &redis.url(), "--redis-ca", ca])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(40), run)
            .await
            .unwrap_or_else(|_| panic!("{what}: a node with the wrong CA kept running"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening"),
            "{what}"
        );
        assert!(stderr.contains(expected), "{what}: {stderr}");
        assert!(
            stderr.to_lowercase().contains("certificate") || stderr.contains("UnknownIssuer"),
            "{what}: the reason is the certificate: {stderr}"
        );
    }
}

/// Bob, subscribed on node 1, is removed through node 0: the unsubscribe
/// crosses the broker, so typing and presence from the group stop reaching him
/// at once; a send racing the removal through node 0 never reaches him after it.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn a_removal_on_one_node_ends_subscriptions_on_every_node() {
    let c = cluster(2).await;
    let api = c.nodes[0].api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let group = api.create_group("trio", &["alice", "bob", "carol"]).await;
    let (alice, _) = c.nodes[0].client(Transport::WsJson, "alice").await;
    let (bob, _) = c.nodes[1].client(Transport::Grpc, "bob").await;
    bob.subscribe(&group).await.unwrap();
    let typing = |p: &PushKind| matches!(p, PushKind::Typing(t) if t.conversation_id == group);
    alice.typing(&group, false).await.unwrap();
    bob.expect_push("bob: alice typing across nodes", WAIT, |p| {
        typing(p).then_some(())
    })
    .await;

    api.delete(&format!("/v1/conversations/{group}/members/bob"))
        .await
        .expect(204);
    bob.expect_push("bob: told he was removed", WAIT, |p| match p {
        PushKind::MemberLeft(m) if m.user_id == "bob" => Some(()),
        _ => None,
    })
    .await;
    alice.typing(&group, true).await.unwrap();
    alice.typing(&group, false).await.unwrap();
    let (carol, _) = c.nodes[0].client(Transport::WsProto, "carol").await;
    alice.send_message(&group, "after", "a-1").await.unwrap();
    bob.expect_no_push(
        "bob: the group's typing, presence or messages after his removal",
        Duration::from_millis(800),
        |p| {
            typing(p)
                || matches!(p, PushKind::Presence(p) if p.user_id == "carol")
                || matches!(p, PushKind::Message(m) if m.conversation_id == group)
        },
    )
    .await;
    drop(carol);
}

/// Bob's SDK client (through a proxy, so the address it dials can move) is on
/// node 1; node 1 dies; messages keep coming on node 0; the proxy now leads to
/// node 2. Bob's client reconnects there by itself and has every message exactly
/// once, in order — then live ones again.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn a_client_moves_to_another_node_and_recovers_exactly_once() {
    let c = cluster(3).await;
    let api = c.nodes[0].api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("move", &["alice", "bob"]).await;
    let (alice, _) = c.nodes[0].client(Transport::WsJson, "alice").await;

    let proxy = Proxy::start(c.nodes[1].addr).await;
    let config = Config::new(proxy.url(), kind(Transport::WsProto))
        .with_token(c.nodes[0].app.token("bob"))
        .with_reconnect_delays(Duration::from_millis(50), Duration::from_millis(500));
    let (bob, events) = client(config);
    connected(&bob).await;
    bob.subscribe(&conv).await.unwrap();

    for i in 1..=10 {
        send_seq(&alice, &conv, i).await;
    }
    events
        .wait_for("bob has m10 live", 0, |e| match e {
            Event::Message(m) if m.seq == 10 => Some(()),
            _ => None,
        })
        .await;

    c.nodes[1].kill().await;
    for i in 11..=40 {
        send_seq(&alice, &conv, i).await;
    }
    proxy.set_upstream(c.nodes[2].addr);
    events
        .wait_for("bob has recovered m40", 0, |e| match e {
            Event::Message(m) if m.seq == 40 => Some(()),
            _ => None,
        })
        .await;
    for i in 41..=45 {
        send_seq(&alice, &conv, i).await;
    }
    events
        .wait_for("bob has m45 live on node 2", 0, |e| match e {
            Event::Message(m) if m.seq == 45 => Some(()),
            _ => None,
        })
        .await;
    let seqs: Vec<u64> = events
        .snapshot()
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) if m.conversation_id == conv => Some(m.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (1..=45).collect::<Vec<_>>(), "exactly once, in order");
    assert_eq!(bob.state(), ConnectionState::Connected);
    bob.shutdown();
}

/// 20 senders spread over three nodes write into one conversation at once; some
/// sends are retried on another node with the same client id, some at the same
/// moment on two nodes. Every seq from 1 to N exists once; a retry gets the
/// original message back.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn twenty_senders_on_three_nodes_get_gap_free_seqs() {
    const SENDERS: usize = 20;
    const EACH: usize = 10;
    let c = cluster(3).await;
    let users: Vec<String> = (0..SENDERS).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let api = c.nodes[0].api();
    api.create_users(&refs).await;
    let conv = api.create_group("race", &refs).await;

    // A member who only watches, on node 1: the live stream it gets must be every
    // seq once and in order, although the senders' nodes publish independently
    // (a push that overtakes another is preceded by a fill from the store).
    c.nodes[0].api().create_users(&["watcher"]).await;
    let members = c.nodes[0]
        .api()
        .post(
            &format!("/v1/conversations/{conv}/members"),
            serde_json::json!({"user_ids": ["watcher"]}),
        )
        .await;
    assert!(members.status < 300, "{members:?}");
    let (watcher, _) = c.nodes[1].client(Transport::WsProto, "watcher").await;
    // Adding the watcher wrote a "joined" system message: the stream starts after it.
    let history = c.nodes[0].api().history_all(&conv).await;
    let joined = history.last().map_or(0, mkondo_tests::seq_of);

    let mut clients = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let transport = Transport::ALL[i % 3];
        clients.push(c.nodes[i % 3].client(transport, user).await.0);
    }
    let tasks = clients.iter().enumerate().map(|(i, client)| {
        let conv = conv.clone();
        async move {
            let mut got = Vec::new();
            for k in 0..EACH {
                let sent = client
                    .send_message(&conv, &format!("u{i} #{k}"), &format!("u{i}-{k}"))
                    .await
                    .unwrap();
                got.push(sent.message.unwrap());
            }
            got
        }
    });
    let originals: Vec<Vec<v1::Message>> = futures::future::join_all(tasks).await;

    // Retries: the same client id on another node answers the original.
    for (i, user) in users.iter().enumerate().step_by(4) {
        let node = &c.nodes[(i + 1) % 3];
        let (retry, _) = node.client(Transport::WsJson, user).await;
        let again = retry
            .send_message(&conv, "ignored: a retry", &format!("u{i}-3"))
            .await
            .unwrap()
            .message
            .unwrap();
        assert_eq!(
            (again.seq, &again.id),
            (originals[i][3].seq, &originals[i][3].id)
        );
    }
    // The same new client id at the same moment on two nodes: one message.
    let (a, _) = c.nodes[0].client(Transport::WsJson, "u0").await;
    let (b, _) = c.nodes[2].client(Transport::Grpc, "u0").await;
    let (ra, rb) = tokio::join!(
        a.send_message(&conv, "twin", "u0-twin"),
        b.send_message(&conv, "twin", "u0-twin")
    );
    let (ma, mb) = (ra.unwrap().message.unwrap(), rb.unwrap().message.unwrap());
    assert_eq!(
        (ma.seq, &ma.id),
        (mb.seq, &mb.id),
        "one message for one client id"
    );

    let total = (SENDERS * EACH + 1) as u64 + joined;
    let live = watcher
        .collect_messages(&conv, WAIT, |got| {
            got.last().is_some_and(|m| m.seq == total)
        })
        .await;
    let live: Vec<u64> = live.iter().map(|m| m.seq).collect();
    assert_eq!(
        live,
        (joined + 1..=total).collect::<Vec<_>>(),
        "the live stream"
    );
    let history = c.nodes[1].api().history_all(&conv).await;
    let seqs: Vec<u64> = history.iter().map(mkondo_tests::seq_of).collect();
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    let acked: BTreeSet<u64> = originals.iter().flatten().map(|m| m.seq).collect();
    assert_eq!(acked.len(), SENDERS * EACH, "every ack a distinct seq");
}

/// Node 0 is SIGKILLed with Alice's SDK client on it and messages in flight. Bob,
/// on node 1, sees her offline within the presence TTL (the dead node cannot say
/// so itself); her client reconnects to node 2, and every message she sent —
/// acknowledged before the crash or queued during it — is stored exactly once.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn a_killed_nodes_users_go_offline_and_lose_nothing() {
    let c = cluster(3).await;
    let api = c.nodes[1].api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_direct("alice", "bob").await;
    let (bob, _) = c.nodes[1].client(Transport::WsJson, "bob").await;

    let proxy = Proxy::start(c.nodes[0].addr).await;
    let config = Config::new(proxy.url(), kind(Transport::WsJson))
        .with_token(c.nodes[0].app.token("alice"))
        .with_reconnect_delays(Duration::from_millis(100), Duration::from_millis(500));
    let (alice, _events) = client(config);
    connected(&alice).await;
    next_presence(&bob, "bob", "alice", "online").await;
    for i in 1..=10 {
        alice
            .send_text(&conv, &format!("before {i}"))
            .await
            .unwrap();
    }

    c.nodes[0].kill().await;
    let killed = Instant::now();
    // Sent while her node is dead: they wait in the outbox.
    let during: Vec<_> = (1..=5)
        .map(|i| {
            let alice = alice.clone();
            let conv = conv.clone();
            tokio::spawn(async move { alice.send_text(&conv, &format!("during {i}")).await })
        })
        .collect();
    next_presence(&bob, "bob", "alice", "offline").await;
    let noticed = killed.elapsed();
    assert!(
        noticed < PRESENCE_TTL * 2 + Duration::from_secs(1),
        "alice shown offline {noticed:?} after her node died (TTL {PRESENCE_TTL:?})"
    );

    proxy.set_upstream(c.nodes[2].addr);
    for task in during {
        task.await.unwrap().unwrap();
    }
    next_presence(&bob, "bob", "alice", "online").await;
    let texts: Vec<String> = c.nodes[2]
        .api()
        .history_all(&conv)
        .await
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), 15, "{texts:?}");
    for i in 1..=10 {
        assert_eq!(texts[i - 1], format!("before {i}"));
    }
    let during: BTreeSet<&str> = texts[10..].iter().map(String::as_str).collect();
    assert_eq!(
        during,
        (1..=5)
            .map(|i| format!("during {i}"))
            .collect::<BTreeSet<_>>()
            .iter()
            .map(String::as_str)
            .collect()
    );
    alice.shutdown();
}

/// Alice is connected to all three nodes. Deactivating her through node 1 closes
/// every connection (3501) within a second; after reactivation, revoking her tokens
/// through node 2 does the same (3502).
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn a_revocation_on_one_node_closes_connections_on_every_node() {
    let c = cluster(3).await;
    c.nodes[0].api().create_users(&["alice"]).await;
    let on_every_node = || async {
        let mut clients = Vec::new();
        for (i, node) in c.nodes.iter().enumerate() {
            clients.push(node.client(Transport::ALL[i], "alice").await.0);
        }
        clients
    };

    let clients = on_every_node().await;
    let resp = c.nodes[1]
        .api()
        .post("/v1/users/alice/deactivate", serde_json::json!({}))
        .await;
    assert!(resp.status < 300, "{resp:?}");
    let since = Instant::now();
    for (i, client) in clients.iter().enumerate() {
        expect_stopped(
            &format!("node {i}"),
            client,
            3501,
            "user_deactivated",
            since,
        )
        .await;
    }

    let resp = c.nodes[1]
        .api()
        .post("/v1/users/alice/reactivate", serde_json::json!({}))
        .await;
    assert!(resp.status < 300, "{resp:?}");
    // A token issued in the next second is past the revocation point.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let clients = on_every_node().await;
    let resp = c.nodes[2]
        .api()
        .post("/v1/users/alice/revoke-tokens", serde_json::json!({}))
        .await;
    assert!(resp.status < 300, "{resp:?}");
    let since = Instant::now();
    for (i, client) in clients.iter().enumerate() {
        expect_stopped(&format!("node {i}"), client, 3502, "tokens_revoked", since).await;
    }
}

/// Redis dies under two nodes and comes back empty. Messages sent meanwhile are
/// acknowledged (they are in PostgreSQL); the nodes reconnect to Redis by
/// themselves, Bob's SDK client recovers every missed message exactly once through
/// resume, and live delivery across nodes works again.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn nodes_survive_a_redis_restart_and_clients_recover() {
    let mut c = cluster(2).await;
    let api = c.nodes[0].api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("outage", &["alice", "bob"]).await;
    // Both sides are SDK clients: when Redis is back, each node makes its clients
    // resume (a reconnect code), and the SDK does so by itself.
    let sdk = |node: usize, transport: Transport, user: &str| {
        Config::new(format!("http://{}", c.nodes[node].addr), kind(transport))
            .with_token(c.nodes[0].app.token(user))
            .with_reconnect_delays(Duration::from_millis(100), Duration::from_millis(1000))
    };
    let (alice, _) = client(sdk(0, Transport::WsJson, "alice"));
    connected(&alice).await;
    let (bob, events) = client(sdk(1, Transport::Grpc, "bob"));
    connected(&bob).await;
    bob.subscribe(&conv).await.unwrap();

    for i in 1..=5 {
        sdk_send(&alice, &conv, i).await;
    }
    events
        .wait_for("m5 live", 0, |e| {
            matches!(e, Event::Message(m) if m.seq == 5).then_some(())
        })
        .await;

    c.redis.kill().await;
    for i in 6..=15 {
        sdk_send(&alice, &conv, i).await;
    }
    c.redis.restart().await;
    events
        .wait_for_within("m15 recovered", 0, Duration::from_secs(20), |e| {
            matches!(e, Event::Message(m) if m.seq == 15).then_some(())
        })
        .await;
    // Live again across nodes once both are back on Redis.
    let mut live = false;
    let mut last = 15;
    for _ in 0..50 {
        last += 1;
        sdk_send(&alice, &conv, last).await;
        let got = tokio::time::timeout(Duration::from_millis(400), async {
            events
                .wait_for("live", 0, |e| {
                    matches!(e, Event::Message(m) if m.seq == last).then_some(())
                })
                .await
        })
        .await;
        if got.is_ok() {
            live = true;
            break;
        }
    }
    assert!(
        live,
        "live delivery across nodes never came back after the Redis restart"
    );
    events
        .wait_for("every message", 0, |e| {
            matches!(e, Event::Message(m) if m.seq == last).then_some(())
        })
        .await;
    let seqs: Vec<u64> = events
        .snapshot()
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "exactly once, in order"
    );
    bob.shutdown();
    alice.shutdown();
}

/// Sends `m{seq}` through the SDK and asserts it was acknowledged with that seq.
async fn sdk_send(alice: &mkondo_sdk::Client, conv: &str, seq: u64) {
    let sent = alice.send_text(conv, &format!("m{seq}")).await;
    assert_eq!(sent.unwrap().seq, seq, "m{seq} acknowledged");
}

/// Sends `m{seq}` and asserts it was acknowledged with that seq.
async fn send_seq(alice: &Client, conv: &str, seq: u64) {
    let sent = alice
        .send_message(conv, &format!("m{seq}"), &format!("m-{seq}"))
        .await;
    assert_eq!(
        sent.unwrap().message.unwrap().seq,
        seq,
        "m{seq} acknowledged"
    );
}

/// Real nginx with `deploy/nginx.conf` in front of two nodes: a WebSocket client
/// and a gRPC client chat through it, and REST goes through it too.
#[tokio::test]
#[cfg_attr(
    not(has_nginx),
    ignore = "PostgreSQL/Redis/nginx not installed: apt-get install postgresql redis-server nginx-light"
)]
async fn nginx_with_the_shipped_configuration_carries_every_transport() {
    let c = cluster(2).await;
    let nginx = Nginx::start(&[c.nodes[0].addr, c.nodes[1].addr]).await;
    let api = mkondo_tests::Rest::new(nginx.http, Some(&c.nodes[0].app.api_key));
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_direct("alice", "bob").await;

    let token = |u: &str| c.nodes[0].app.token(u);
    let alice = Client::open(nginx.http, Transport::WsJson).await;
    alice
        .connect(&token("alice"), HashMap::new())
        .await
        .unwrap();
    let bob = Client::open(nginx.grpc, Transport::Grpc).await;
    bob.connect(&token("bob"), HashMap::new()).await.unwrap();
    let alice_phone = Client::open(nginx.http, Transport::WsProto).await;
    alice_phone
        .connect(&token("alice"), HashMap::new())
        .await
        .unwrap();

    alice
        .send_message(&conv, "through nginx", "n-1")
        .await
        .unwrap();
    let m = bob.expect_message(&conv, WAIT).await;
    assert_eq!(m.text, "through nginx");
    bob.send_message(&conv, "and back", "n-2").await.unwrap();
    // Both of Alice's devices (WS-JSON and WS-protobuf through nginx) see both
    // messages, in order: her own comes back as a push too.
    for device in [&alice, &alice_phone] {
        let texts = [
            device.expect_message(&conv, WAIT).await.text,
            device.expect_message(&conv, WAIT).await.text,
        ];
        assert_eq!(texts, ["through nginx", "and back"]);
    }
    let history = api.history_all(&conv).await;
    assert_eq!(history.len(), 2);
}

/// Rate limits are per node: on two nodes sharing PostgreSQL and Redis, one user
/// token spends its REST budget on the first node, then gets the whole budget
/// again on the second, which refuses past it in turn.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn the_rest_rate_limit_is_per_node() {
    let redis = RedisServer::start().await;
    let db = fresh_postgres().await;
    let opts = ServerOptions::new()
        .rate(1, 5)
        .database(&db)
        .flag("--broker", redis.url());
    let first = TestServer::start(opts).await;
    let second = first.join().await;
    let token = first.app.token("alice");
    for node in [&first, &second] {
        let rest = node.rest_as(&token);
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(rest.get("/v1/me/conversations").await.status);
        }
        let served = statuses.iter().take_while(|s| **s == 200).count();
        assert!(
            (5..=7).contains(&served),
            "{}: a burst of 5 at 1/s: {statuses:?}",
            node.addr
        );
        assert!(statuses.contains(&429), "{}: {statuses:?}", node.addr);
    }
    drop(redis);
}

/// Two nodes deliver one endpoint's events from one PostgreSQL database: every
/// event once per conversation stream, in seq order, never two requests of one
/// conversation in progress at once (the receiver checks), and both nodes
/// delivered some.
#[tokio::test]
#[cfg_attr(
    not(has_services),
    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
)]
async fn two_nodes_share_webhook_delivery_without_racing_a_stream() {
    use mkondo_tests::webhook_receiver::{Answer, Receiver};
    let redis = RedisServer::start().await;
    let db = fresh_postgres().await;
    let opts = ServerOptions::new()
        .unlimited_rate()
        .database(&db)
        .flag("--broker", redis.url())
        .outbound_allow_private()
        .flag("--webhook-retry-min-ms", 100)
        .flag("--webhook-retry-max-ms", 500);
    let first = TestServer::start(opts).await;
    let second = first.join().await;
    let api = first.api();
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Slow(Duration::from_millis(20)));
    let created = api
        .post(
            "/v1/webhooks",
            serde_json::json!({"url": receiver.url, "event_types": ["message.created"]}),
        )
        .await
        .expect(201);
    receiver.set_secrets(&[created["secret"].as_str().unwrap()]);
    api.create_users(&["alice", "bob"]).await;
    let mut convs = Vec::new();
    for i in 0..16 {
        convs.push(api.create_group(&format!("g{i}"), &["alice", "bob"]).await);
    }
    const PER_CONV: usize = 8;
    for round in 0..PER_CONV {
        for (i, conv) in convs.iter().enumerate() {
            let node = if i % 2 == 0 { &first } else { &second };
            node.api()
                .send(
                    conv,
                    "alice",
                    &format!("r{round}"),
                    &format!("c-{i}-{round}"),
                )
                .await;
        }
    }
    let total = convs.len() * PER_CONV;
    let got = receiver
        .wait_until(WAIT * 3, "every message delivered", |d| {
            d.iter()
                .filter(|d| d.accepted())
                .map(|d| &d.id)
                .collect::<BTreeSet<_>>()
                .len()
                == total
        })
        .await;
    receiver.assert_all_valid();
    assert_eq!(
        receiver.overlaps(),
        Vec::<String>::new(),
        "no stream delivered twice at once"
    );
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut seen = BTreeSet::new();
    for d in got.iter().filter(|d| d.accepted()) {
        assert!(seen.insert(d.id.clone()), "{} delivered twice", d.id);
        let conv = d.conversation.clone().unwrap();
        let seq = d.body["data"]["message"]["seq"].as_u64().unwrap();
        if let Some(before) = last.insert(conv.clone(), seq) {
            assert!(seq > before, "{conv}: seq {seq} after {before}");
        }
    }
    let delivered = |node: &TestServer| {
        let node = node.rest_anon();
        async move {
            let text = node.get("/metrics").await.text;
            text.lines()
                .filter(|l| {
                    l.starts_with("mkondo_webhook_deliveries_total{") && l.contains("delivered")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    let (a, b) = (delivered(&first).await, delivered(&second).await);
    assert_eq!(a + b, total as f64, "each event once");
    assert!(a > 0.0 && b > 0.0, "both nodes delivered: {a} and {b}");
    drop(redis);
}
