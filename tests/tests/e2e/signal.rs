//! WebRTC signaling: a `signal` reaches only the addressed member's connected
//! devices, never a non-member, is never stored, and is refused with a clear code
//! when it cannot be relayed.

use mkondo_tests::{
    per_transport, v1, Client, Command, PushKind, ServerOptions, TestServer, Transport, QUIET, WAIT,
};

per_transport!(signal_reaches_only_the_addressed_member, signal_refusals);

async fn signal(client: &Client, conv: &str, to: &str, payload: &str) -> Result<(), v1::Error> {
    let req = v1::SignalRequest {
        conversation_id: conv.to_owned(),
        to_user_id: to.to_owned(),
        payload: payload.to_owned(),
        ring: false,
    };
    client.request(Command::Signal(req)).await.map(drop)
}

fn is_signal(p: &PushKind) -> bool {
    matches!(p, PushKind::Signal(_))
}

/// Alice signals Bob in a group of three: both of Bob's devices get it with
/// Alice as the sender; Carol (a member, not addressed), Dave (not a member) and
/// Alice herself get nothing; the conversation's history stays empty.
async fn signal_reaches_only_the_addressed_member(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol", "dave"]).await;
    let call = api.create_group("call", &["alice", "bob", "carol"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob_phone, _) = server.client(transport, "bob").await;
    let (bob_laptop, _) = server.client(Transport::WsJson, "bob").await;
    let (carol, _) = server.client(transport, "carol").await;
    let (dave, _) = server.client(transport, "dave").await;

    let offer = r#"{"type":"offer","sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"}"#;
    signal(&alice, &call, "bob", offer).await.unwrap();
    for (who, device) in [("phone", &bob_phone), ("laptop", &bob_laptop)] {
        let got = device
            .expect_push(&format!("the signal on bob's {who}"), WAIT, |p| match p {
                PushKind::Signal(s) => Some(s.clone()),
                _ => None,
            })
            .await;
        assert_eq!(got.conversation_id, call);
        assert_eq!(got.from_user_id, "alice");
        assert_eq!(got.payload, offer, "the payload is relayed byte for byte");
    }
    for (who, client) in [("carol", &carol), ("dave", &dave), ("alice", &alice)] {
        client
            .expect_no_push(&format!("the signal reached {who}"), QUIET, is_signal)
            .await;
    }

    // The answer goes back the same way.
    signal(&bob_laptop, &call, "alice", r#"{"type":"answer"}"#)
        .await
        .unwrap();
    let answer = alice
        .expect_push("bob's answer", WAIT, |p| match p {
            PushKind::Signal(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    assert_eq!(answer.from_user_id, "bob");

    // Never stored.
    assert!(alice.history_all(&call).await.unwrap().is_empty());
    let list = alice.conversations("", 10).await.unwrap().conversations;
    let c = list.iter().find(|c| c.id == call).unwrap();
    assert_eq!(c.last_seq, 0, "a signal took no seq");
}

/// Not a member, to a non-member, to oneself, an unknown conversation, too large:
/// each is refused with its code, and the connection stays usable.
async fn signal_refusals(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().max_frame_bytes(256 * 1024)).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "dave"]).await;
    let call = api.create_group("call", &["alice", "bob"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    let (dave, _) = server.client(transport, "dave").await;

    let code = |r: Result<(), v1::Error>| r.expect_err("refused").code;
    assert_eq!(
        code(signal(&dave, &call, "bob", "{}").await),
        "not_found",
        "a non-member signals a member (as if the conversation did not exist)"
    );
    assert_eq!(
        code(signal(&alice, &call, "dave", "{}").await),
        "not_found",
        "a member signals a non-member"
    );
    assert_eq!(
        code(signal(&alice, "no-such-call", "bob", "{}").await),
        "not_found"
    );
    assert_eq!(
        code(signal(&alice, &call, "alice", "{}").await),
        "invalid_argument",
        "to oneself"
    );
    assert_eq!(
        code(signal(&alice, &call, "bob", "").await),
        "invalid_argument",
        "an empty payload"
    );
    let big = "x".repeat(64 * 1024 + 1);
    assert_eq!(code(signal(&alice, &call, "bob", &big).await), "too_large");
    dave.expect_no_push("a refused signal reached dave", QUIET, is_signal)
        .await;
    bob.expect_no_push("a refused signal reached bob", QUIET, is_signal)
        .await;

    // Exactly at the limit is relayed.
    let max = "y".repeat(64 * 1024);
    signal(&alice, &call, "bob", &max).await.unwrap();
    let got = bob
        .expect_push("the 64 KiB signal", WAIT, |p| match p {
            PushKind::Signal(s) => Some(s.payload.len()),
            _ => None,
        })
        .await;
    assert_eq!(got, 64 * 1024);
}
