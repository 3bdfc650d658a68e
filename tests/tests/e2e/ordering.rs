//! Sequence numbers under concurrency, and idempotent sends.

use std::collections::HashSet;

use futures::future::join_all;
use mkondo_tests::{assert_seqs, per_transport, v1, ServerOptions, TestServer, Transport, WAIT};

/// 20 senders (on all three transports) write 10 messages each into one group at
/// the same time: the seqs are exactly 1..=200, every message is stored once, and
/// a watching member receives all 200 once each, in seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_senders_get_gapless_seqs() {
    const SENDERS: usize = 20;
    const EACH: usize = 10;
    const TOTAL: u64 = (SENDERS * EACH) as u64;
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    let users: Vec<String> = (0..SENDERS).map(|i| format!("s{i}")).collect();
    let mut members: Vec<&str> = users.iter().map(String::as_str).collect();
    members.push("watcher");
    api.create_users(&members).await;
    let conv = api.create_group("busy", &members).await;

    let (watcher, _) = server.client(Transport::WsJson, "watcher").await;
    let mut clients = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let transport = Transport::ALL[i % 3];
        clients.push((user.as_str(), server.client(transport, user).await.0));
    }

    let sends = clients.iter().map(|(user, client)| {
        let conv = conv.as_str();
        async move {
            join_all((0..EACH).map(|i| async move {
                client
                    .send_message(conv, &format!("{user} says {i}"), &format!("{user}-{i}"))
                    .await
                    .unwrap_or_else(|e| panic!("{user} send {i}: {e:?}"))
                    .message
                    .unwrap()
            }))
            .await
        }
    });
    let acked: Vec<v1::Message> = join_all(sends).await.into_iter().flatten().collect();
    assert!(acked.iter().all(|m| m.conversation_id == conv));
    let mut seqs: Vec<u64> = acked.iter().map(|m| m.seq).collect();
    seqs.sort_unstable();
    assert_seqs("acknowledged seqs", &seqs, 1..=TOTAL);
    let ids: HashSet<&str> = acked.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), acked.len(), "message ids are unique");

    // The watcher got each once, in order.
    let pushed = watcher
        .collect_messages(&conv, WAIT, |got| got.len() >= TOTAL as usize)
        .await;
    let order: Vec<u64> = pushed.iter().map(|m| m.seq).collect();
    assert_seqs("pushes to the watcher", &order, 1..=TOTAL);
    watcher
        .expect_no_push("a message pushed twice", mkondo_tests::QUIET, |p| {
            matches!(p, mkondo_tests::PushKind::Message(_))
        })
        .await;

    // The store agrees: every acknowledged message once, under its seq.
    let stored = api.history_all(&conv).await;
    let stored_seqs: Vec<u64> = stored.iter().map(mkondo_tests::seq_of).collect();
    assert_seqs("stored seqs", &stored_seqs, 1..=TOTAL);
    for m in &acked {
        let s = &stored[(m.seq - 1) as usize];
        assert_eq!(s["id"].as_str(), Some(m.id.as_str()));
        assert_eq!(s["client_id"].as_str(), Some(m.client_id.as_str()));
        assert_eq!(s["sender_id"].as_str(), Some(m.sender_id.as_str()));
    }
}

per_transport!(retried_send_returns_the_original);

/// A `send` retried with the same `client_id` returns the original message
/// (`duplicate: true`), whatever the retry's text, over the same or a new
/// connection, even when the copies race; nobody receives a second push.
async fn retried_send_returns_the_original(transport: Transport) {
    let server = TestServer::start_default().await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    let conv = alice.start_direct("bob").await.unwrap().id;

    let first = alice.send_message(&conv, "first", "c-1").await.unwrap();
    assert!(!first.duplicate);
    let original = first.message.unwrap();
    assert_eq!(original.seq, 1);

    let retry = alice.send_message(&conv, "first", "c-1").await.unwrap();
    assert!(retry.duplicate, "a retry is flagged as a duplicate");
    assert_eq!(
        retry.message.as_ref(),
        Some(&original),
        "the retry returns the original"
    );

    let changed = alice
        .send_message(&conv, "different text", "c-1")
        .await
        .unwrap();
    assert!(changed.duplicate);
    let changed = changed.message.unwrap();
    assert_eq!((changed.seq, changed.text.as_str()), (1, "first"));

    // Five copies at once: one message, one of them is the original.
    let racing = join_all((0..5).map(|_| alice.send_message(&conv, "raced", "c-2"))).await;
    let racing: Vec<v1::SendResult> = racing.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        racing.iter().filter(|r| !r.duplicate).count(),
        1,
        "exactly one racing copy is new: {racing:?}"
    );
    let raced_seqs: HashSet<u64> = racing
        .iter()
        .map(|r| r.message.as_ref().unwrap().seq)
        .collect();
    assert_eq!(raced_seqs, HashSet::from([2]));

    // From a new connection, on another transport.
    let other =
        Transport::ALL[(Transport::ALL.iter().position(|t| *t == transport).unwrap() + 1) % 3];
    let (alice2, _) = server.client(other, "alice").await;
    let again = alice2.send_message(&conv, "first", "c-1").await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.unwrap().id, original.id);

    // The idempotency key is per sender: Bob's "c-1" is a new message.
    let bobs = bob.send_message(&conv, "bob's own", "c-1").await.unwrap();
    assert!(!bobs.duplicate);
    assert_eq!(bobs.message.unwrap().seq, 3);
    let last = alice.send_message(&conv, "after", "c-3").await.unwrap();
    assert_eq!(last.message.unwrap().seq, 4);

    // Bob saw Alice's messages once each.
    let pushed = bob
        .collect_messages(&conv, WAIT, |got| got.iter().any(|m| m.seq == 4))
        .await;
    let from_alice: Vec<u64> = pushed
        .iter()
        .filter(|m| m.sender_id == "alice")
        .map(|m| m.seq)
        .collect();
    assert_eq!(from_alice, [1, 2, 4], "pushes of alice's messages to bob");

    let history = alice.history(&conv, 0, 0, 100).await.unwrap();
    let stored: Vec<(u64, &str)> = history
        .messages
        .iter()
        .map(|m| (m.seq, m.text.as_str()))
        .collect();
    assert_eq!(
        stored,
        [(1, "first"), (2, "raced"), (3, "bob's own"), (4, "after")]
    );
}
