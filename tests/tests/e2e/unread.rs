//! Server-authoritative unread counts, and reads synced across a user's devices.

use mkondo_tests::{json_u64, per_transport, PushKind, TestServer, Transport, WAIT};

per_transport!(unread_counts_follow_sends_and_reads);

/// Unread counts after sends and reads, seen by the `read` reply, the conversation
/// list, a new connection and REST; a read on one of Bob's devices is pushed to
/// his other device (and, as a receipt, to Alice).
async fn unread_counts_follow_sends_and_reads(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("reads", &["alice", "bob"]).await;

    let (alice, _) = server.client(transport, "alice").await;
    let (phone, _) = server.client(transport, "bob").await;
    let (laptop, _) = server.client(Transport::WsJson, "bob").await;

    for i in 1..=5 {
        alice
            .send_message(&conv, &format!("m{i}"), &format!("m-{i}"))
            .await
            .unwrap();
    }
    // Both of Bob's devices receive the messages.
    for device in [&phone, &laptop] {
        device
            .collect_messages(&conv, WAIT, |got| got.len() >= 5)
            .await;
    }

    let unread_of = |list: &[mkondo_tests::v1::Conversation]| {
        list.iter()
            .find(|c| c.id == conv)
            .map(|c| c.unread_count)
            .expect("the conversation is listed")
    };
    assert_eq!(
        unread_of(&phone.conversations("", 20).await.unwrap().conversations),
        5
    );
    // Sending moves the sender's own read position.
    assert_eq!(
        unread_of(&alice.conversations("", 20).await.unwrap().conversations),
        0
    );
    let bob_rest = api.get("/v1/users/bob/conversations").await.ok();
    let item = bob_rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == conv.as_str())
        .expect("bob's conversation over REST");
    assert_eq!(json_u64(&item["unread_count"]), Some(5));

    // Bob reads up to 3 on his phone.
    let read = phone.read(&conv, 3).await.unwrap();
    assert_eq!((read.last_read_seq, read.unread_count), (3, 2));
    let push = laptop
        .expect_push("the read pushed to bob's other device", WAIT, |p| match p {
            PushKind::Read(r) if r.conversation_id == conv && r.user_id == "bob" => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!((push.last_read_seq, push.unread_count), (3, 2));
    let receipt = alice
        .expect_push("bob's read receipt", WAIT, |p| match p {
            PushKind::Read(r) if r.conversation_id == conv && r.user_id == "bob" => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(receipt.last_read_seq, 3);
    assert_eq!(
        unread_of(&laptop.conversations("", 20).await.unwrap().conversations),
        2
    );

    // Two more messages: 4 unread.
    alice.send_message(&conv, "m6", "m-6").await.unwrap();
    alice.send_message(&conv, "m7", "m-7").await.unwrap();
    laptop
        .collect_messages(&conv, WAIT, |got| got.iter().any(|m| m.seq == 7))
        .await;
    assert_eq!(
        unread_of(&laptop.conversations("", 20).await.unwrap().conversations),
        4
    );

    // A new connection starts from the stored count.
    let (tablet, reply) = server.client(Transport::WsProto, "bob").await;
    assert_eq!(unread_of(&reply.conversations), 4);

    // Reading everything on the laptop clears it everywhere.
    let read = laptop.read(&conv, 7).await.unwrap();
    assert_eq!((read.last_read_seq, read.unread_count), (7, 0));
    for device in [&phone, &tablet] {
        let push = device
            .expect_push(
                "the read pushed to bob's other devices",
                WAIT,
                |p| match p {
                    PushKind::Read(r)
                        if r.conversation_id == conv
                            && r.user_id == "bob"
                            && r.last_read_seq == 7 =>
                    {
                        Some(r.clone())
                    }
                    _ => None,
                },
            )
            .await;
        assert_eq!((push.last_read_seq, push.unread_count), (7, 0));
    }
    let bob_rest = api.get("/v1/users/bob/conversations").await.ok();
    let item = bob_rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == conv.as_str())
        .unwrap();
    assert_eq!(json_u64(&item["unread_count"]), Some(0));
}
