//! Chat end to end over each transport: a direct conversation, a group of three that
//! sees one order, the connect reply's contents, and the `groups` claim.

use std::collections::{HashMap, HashSet};

use futures::future::join_all;
use mkondo_tests::{per_transport, v1, PushKind, ServerOptions, TestServer, Transport, WAIT};

per_transport!(two_users_chat, group_of_three_sees_one_order);

/// Alice and Bob start a direct conversation and exchange messages live.
async fn two_users_chat(transport: Transport) {
    let server = TestServer::start_default().await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;

    let conv = alice.start_direct("bob").await.unwrap();
    assert_eq!(conv.kind, "direct");
    // Starting it again, from either side, gives the same conversation.
    assert_eq!(alice.start_direct("bob").await.unwrap().id, conv.id);
    assert_eq!(bob.start_direct("alice").await.unwrap().id, conv.id);

    let sent = alice
        .send_message(&conv.id, "hello bob", "a-1")
        .await
        .unwrap();
    assert!(!sent.duplicate);
    let first = sent.message.expect("send result carries the message");
    assert_eq!(first.seq, 1, "a new conversation starts at seq 1");
    assert_eq!(first.sender_id, "alice");
    assert_eq!(first.text, "hello bob");
    assert_eq!(first.client_id, "a-1");
    assert_eq!(first.conversation_id, conv.id);
    assert!(!first.id.is_empty(), "messages get a server id");
    assert!(first.created_at.is_some(), "messages carry created_at");

    let got = bob.expect_message(&conv.id, WAIT).await;
    assert_eq!(got.id, first.id);
    assert_eq!(got.seq, 1);
    assert_eq!(got.text, "hello bob");
    assert_eq!(got.sender_id, "alice");

    let reply = bob
        .send_message(&conv.id, "hi alice", "b-1")
        .await
        .unwrap()
        .message
        .unwrap();
    assert_eq!(reply.seq, 2);
    let got = alice
        .expect_push("bob's reply", WAIT, |p| match p {
            PushKind::Message(m) if m.sender_id == "bob" => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!((got.seq, got.text.as_str()), (2, "hi alice"));

    // Both see the same history.
    for client in [&alice, &bob] {
        let history = client.history(&conv.id, 0, 0, 50).await.unwrap();
        let seen: Vec<(u64, &str, &str)> = history
            .messages
            .iter()
            .map(|m| (m.seq, m.sender_id.as_str(), m.text.as_str()))
            .collect();
        assert_eq!(
            seen,
            [(1, "alice", "hello bob"), (2, "bob", "hi alice")],
            "history over {transport:?}"
        );
        assert!(!history.more);
    }
}

async fn group_of_three_sees_one_order(transport: Transport) {
    three_members_see_one_order([transport; 3]).await;
}

/// The three members of a group, each on its own transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_three_on_mixed_transports_sees_one_order() {
    three_members_see_one_order([Transport::WsJson, Transport::WsProto, Transport::Grpc]).await;
}

/// Three members send 10 messages each, all at once; every member receives every
/// other member's messages in ascending seq order, and all see the same history.
async fn three_members_see_one_order(transports: [Transport; 3]) {
    const EACH: usize = 10;
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let users = ["alice", "bob", "carol"];
    let mut clients = Vec::new();
    for (user, transport) in users.iter().zip(transports) {
        clients.push(server.client(transport, user).await.0);
    }
    let conv = clients[0]
        .create_group("trio", &["bob", "carol"])
        .await
        .unwrap();
    assert_eq!(conv.kind, "group");
    assert_eq!(conv.name, "trio");
    // The new members learn about the group (their conversation list is live):
    // a member_joined or a conversation_updated push.
    for client in &clients[1..] {
        client
            .expect_push("the new group in the members' lists", WAIT, |p| match p {
                PushKind::MemberJoined(j) if j.conversation_id == conv.id => Some(()),
                PushKind::ConversationUpdated(v1::ConversationUpdated {
                    conversation: Some(c),
                }) if c.id == conv.id => Some(()),
                _ => None,
            })
            .await;
    }

    let sends = clients.iter().zip(users).map(|(client, user)| {
        let conv = conv.id.clone();
        async move {
            let all = (0..EACH).map(|i| {
                let conv = conv.clone();
                async move {
                    client
                        .send_message(&conv, &format!("{user} #{i}"), &format!("{user}-{i}"))
                        .await
                        .unwrap()
                        .message
                        .unwrap()
                }
            });
            join_all(all).await
        }
    });
    let sent: Vec<v1::Message> = join_all(sends).await.into_iter().flatten().collect();
    let mut seqs: Vec<u64> = sent.iter().map(|m| m.seq).collect();
    seqs.sort_unstable();
    mkondo_tests::assert_seqs("acknowledged seqs", &seqs, 1..=(3 * EACH) as u64);

    let by_seq: HashMap<u64, &v1::Message> = sent.iter().map(|m| (m.seq, m)).collect();
    let mut histories = Vec::new();
    for (client, user) in clients.iter().zip(users) {
        // Every message of the two others, as pushes, in ascending seq order (the
        // client's own messages may be echoed too; they must then fit the order).
        let pushes = client
            .collect_messages(&conv.id, WAIT, |got| {
                got.iter().filter(|m| m.sender_id != user).count() >= 2 * EACH
            })
            .await;
        let order: Vec<u64> = pushes.iter().map(|m| m.seq).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{user} over {:?} received messages out of order or twice: {order:?}",
            client.transport
        );
        for m in &pushes {
            let original = by_seq[&m.seq];
            assert_eq!(
                (&m.id, &m.text, &m.sender_id),
                (&original.id, &original.text, &original.sender_id),
                "push for seq {} differs from the acknowledged message",
                m.seq
            );
        }
        let history = client.history_all(&conv.id).await.unwrap();
        let seen: Vec<(u64, String)> = history.iter().map(|m| (m.seq, m.id.clone())).collect();
        histories.push(seen);
    }
    assert_eq!(histories[0].len(), 3 * EACH);
    assert_eq!(
        histories[0], histories[1],
        "alice and bob see different histories"
    );
    assert_eq!(
        histories[0], histories[2],
        "alice and carol see different histories"
    );
}

/// The connect reply: the user's profile, the latest 10 conversations (latest
/// activity first) each with its unread count and last message, the direct peer's
/// presence, the token's expiry and the server's limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reply_has_latest_conversations() {
    let server = TestServer::start_default().await;
    let api = server.api();
    let others: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    let mut all_users: Vec<&str> = others.iter().map(String::as_str).collect();
    all_users.extend(["alice", "bob"]);
    api.create_users(&all_users).await;

    // 12 groups, activity in order g0 (oldest) .. g11; g_i has (i % 3) + 1 unread messages.
    let mut groups = Vec::new();
    for (i, other) in others.iter().enumerate() {
        let conv = api.create_group(&format!("g{i}"), &["alice", other]).await;
        for k in 0..=(i % 3) {
            api.send(&conv, other, &format!("g{i} #{k}"), &format!("g{i}-{k}"))
                .await;
        }
        groups.push(conv);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The most recent activity: Bob writes to Alice directly.
    let direct = api.create_direct("alice", "bob").await;
    api.send(&direct, "bob", "psst", "d-1").await;

    let (_bob, _) = server.client(Transport::WsJson, "bob").await;
    let claims = server.app.claims("alice");
    let token = server.app.sign(&claims);
    let (alice, reply) = server.client_with_token(Transport::WsJson, &token).await;

    assert_eq!(reply.user.as_ref().map(|u| u.id.as_str()), Some("alice"));
    let ids: Vec<&str> = reply.conversations.iter().map(|c| c.id.as_str()).collect();
    let mut want = vec![direct.as_str()];
    want.extend(groups.iter().rev().take(9).map(String::as_str));
    assert_eq!(
        ids, want,
        "the 10 latest conversations, latest activity first"
    );

    let d = &reply.conversations[0];
    assert_eq!(d.kind, "direct");
    assert_eq!(d.unread_count, 1);
    assert_eq!(
        d.last_message.as_ref().map(|m| m.text.as_str()),
        Some("psst")
    );
    assert_eq!(d.peer.as_ref().map(|u| u.id.as_str()), Some("bob"));
    let peer_presence = d.peer_presence.as_ref().expect("direct peer's presence");
    assert_eq!(peer_presence.user_id, "bob");
    assert_eq!(peer_presence.status, "online", "bob is connected");

    for c in &reply.conversations[1..] {
        let i: usize = c.name[1..].parse().unwrap();
        let count = (i % 3) as u64 + 1;
        assert_eq!(c.kind, "group");
        assert_eq!(c.unread_count, count, "unread count of {}", c.name);
        assert_eq!(c.last_seq, count);
        let last = c.last_message.as_ref().expect("last message");
        assert_eq!(last.text, format!("g{i} #{}", count - 1));
    }

    assert_eq!(
        reply.token_expires_at.as_ref().map(|t| t.seconds),
        claims.exp,
        "the reply tells when the token expires"
    );
    let limits = reply.limits.expect("limits in the connect reply");
    assert_eq!(limits.max_frame_bytes, 65536);
    assert_eq!(limits.replay_limit, 100);
    assert_eq!(limits.rate_per_second, 20);
    assert_eq!(limits.rate_burst, 50);
    assert_eq!(limits.ping_interval_ms, 25_000);
    assert!(!reply.session_id.is_empty());

    // Fewer on request.
    let small = server.open(Transport::WsProto).await;
    let reply = small
        .connect_with(v1::ConnectRequest {
            token: server.app.token("alice"),
            conversations_limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reply.conversations.len(), 3);

    // The whole list pages with `conversations`, no duplicate, nothing missing.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let page = alice.conversations(&cursor, 5).await.unwrap();
        assert!(page.conversations.len() <= 5);
        seen.extend(page.conversations.into_iter().map(|c| c.id));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 13, "conversations pages: {seen:?}");
    assert_eq!(unique.len(), 13, "a conversation appeared twice: {seen:?}");
}

/// A token's `groups` claim makes the user a member of those conversations on
/// connect: they are in the connect reply and their messages arrive live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_claim_joins_on_connect() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["owner"]).await;
    let team = api.create_group_with_id("team", "Team", &["owner"]).await;
    let news = api.create_group_with_id("news", "News", &["owner"]).await;

    // Minted by the CLI, as the README shows.
    let token = server.cli_token("dana", Some(600), &["team", "news"]).await;
    let (dana, reply) = server.client_with_token(Transport::WsProto, &token).await;
    let ids: HashSet<&str> = reply.conversations.iter().map(|c| c.id.as_str()).collect();
    assert!(
        ids.contains("team") && ids.contains("news"),
        "the connect reply lists the claimed groups: {ids:?}"
    );

    let members = api
        .get(&format!("/v1/conversations/{team}/members"))
        .await
        .ok();
    let member_ids: Vec<&str> = members["items"]
        .as_array()
        .expect("members items")
        .iter()
        .filter_map(|m| m["user_id"].as_str())
        .collect();
    assert!(
        member_ids.contains(&"dana"),
        "members of team: {member_ids:?}"
    );

    api.send(&news, "owner", "welcome", "w-1").await;
    let m = dana.expect_message(&news, WAIT).await;
    assert_eq!(m.text, "welcome");

    // The same through a token minted by the test, as a customer's backend would.
    let mut claims = server.app.claims("erin");
    claims.groups = Some(vec!["team".into()]);
    let (erin, reply) = server
        .client_with_token(Transport::Grpc, &server.app.sign(&claims))
        .await;
    assert!(reply.conversations.iter().any(|c| c.id == "team"));
    erin.send_message("team", "hi team", "e-1").await.unwrap();
    // Erin's arrival is told first, as a system message.
    let joined = dana.expect_message("team", WAIT).await;
    assert_eq!(
        (joined.kind.as_str(), joined.text.as_str()),
        ("system", "erin joined")
    );
    let m = dana.expect_message("team", WAIT).await;
    assert_eq!((m.sender_id.as_str(), m.text.as_str()), ("erin", "hi team"));
}

/// Without a subprotocol the WebSocket speaks JSON (the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_defaults_to_json() {
    let server = TestServer::start_default().await;
    let client = mkondo_tests::Client::open_with(
        server.addr,
        Transport::WsJson,
        mkondo_tests::ClientOptions {
            auto_pong: true,
            subprotocol: None,
        },
    )
    .await;
    let reply = client
        .connect(&server.app.token("alice"), HashMap::new())
        .await
        .unwrap();
    assert_eq!(reply.user.unwrap().id, "alice");
    client.ping().await.unwrap();
}
