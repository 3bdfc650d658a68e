//! The SDK against the real server over each native transport: every call of
//! SPEC §4 does what it says, and pushes arrive as events.

use std::time::Duration;

use crate::sdk_common::{client, connected, kind};
use mkondo_sdk::{
    Config, ConnectionState, Error, ErrorCode, Event, HistoryQuery, NewGroup, NewMessage,
    SubscriptionState,
};
use mkondo_tests::{per_transport, ServerOptions, TestServer, Transport};

per_transport!(chat_and_calls, message_changes_and_social_calls);

fn config(server: &TestServer, transport: Transport, user: &str) -> Config {
    Config::new(format!("http://{}", server.addr), kind(transport))
        .with_token(server.app.token(user))
}

async fn chat_and_calls(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    server.api().create_users(&["alice", "bob", "carol"]).await;
    let (alice, alice_events) = client(config(&server, transport, "alice"));
    let (bob, bob_events) = client(config(&server, transport, "bob"));
    connected(&alice).await;
    connected(&bob).await;
    assert_eq!(alice.user().unwrap().id, "alice");

    // A direct conversation; Bob opens it on screen.
    let direct = alice.start_direct("bob").await.unwrap();
    assert_eq!(direct.kind, "direct");
    assert_eq!(bob.start_direct("alice").await.unwrap().id, direct.id);
    let sub = bob.subscribe(&direct.id).await.unwrap();
    assert_eq!(sub.conversation.unwrap().id, direct.id);
    assert_eq!(
        bob.subscription_state(&direct.id),
        SubscriptionState::Subscribed
    );

    // Typing shows up as an event and in the cache.
    let from = bob_events.len();
    alice.typing(&direct.id).await.unwrap();
    bob_events
        .wait_for("alice typing", from, |e| match e {
            Event::Typing {
                user_id,
                typing: true,
                ..
            } if user_id == "alice" => Some(()),
            _ => None,
        })
        .await;
    assert_eq!(bob.typing_users(&direct.id), ["alice"]);

    // A message: the call resolves with the stored message; Bob gets it once,
    // and sending ends the typing indicator.
    let from = bob_events.len();
    let sent = alice.send_text(&direct.id, "hello bob").await.unwrap();
    assert_eq!((sent.seq, sent.sender_id.as_str()), (1, "alice"));
    let got = bob_events
        .wait_for("alice's message", from, |e| match e {
            Event::Message(m) if m.text == "hello bob" => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(got.id, sent.id);
    bob_events
        .wait_for("typing stopped", from, |e| match e {
            Event::Typing {
                user_id,
                typing: false,
                ..
            } if user_id == "alice" => Some(()),
            _ => None,
        })
        .await;
    let reply = bob
        .send_message(NewMessage {
            data: Some(serde_json::json!({"kind": "reply"})),
            reply_to: Some(sent.seq),
            ..NewMessage::text(&direct.id, "hi alice")
        })
        .await
        .unwrap();
    assert_eq!((reply.seq, reply.reply_to), (2, 1));

    // The cache: unread counts and last message without a round trip.
    mkondo_tests::poll_until(mkondo_tests::WAIT, "alice's unread count", || {
        let found = alice
            .cached_conversations()
            .into_iter()
            .find(|c| c.id == direct.id && c.unread_count == 1);
        async move { found }
    })
    .await;
    let read = alice.mark_read(&direct.id, 2).await.unwrap();
    assert_eq!((read.last_read_seq, read.unread_count), (2, 0));
    mkondo_tests::poll_until(mkondo_tests::WAIT, "unread count 0", || {
        let found = alice
            .cached_conversations()
            .into_iter()
            .find(|c| c.id == direct.id && c.unread_count == 0);
        async move { found }
    })
    .await;

    // History, conversations, presence.
    let page = alice
        .history(
            &direct.id,
            HistoryQuery {
                before: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [1]);
    let list = alice.conversations(None, Some(10)).await.unwrap();
    assert!(list.conversations.iter().any(|c| c.id == direct.id));
    let presence = alice.presence(&["bob"]).await.unwrap();
    assert_eq!(presence[0].status, "online");

    // A group: create, add, remove, leave, with the pushes each makes.
    let group = alice
        .create_group(NewGroup {
            name: "launch".into(),
            members: vec!["bob".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(group.role, "owner");
    let from = bob_events.len();
    let grown = alice.add_members(&group.id, &["carol"]).await.unwrap();
    assert_eq!(grown.member_count, 3);
    bob_events
        .wait_for("carol joined", from, |e| match e {
            Event::MemberJoined(j) if j.member.as_ref().is_some_and(|m| m.user_id == "carol") => {
                Some(())
            }
            _ => None,
        })
        .await;
    alice.remove_member(&group.id, "carol").await.unwrap();
    let from = alice_events.len();
    bob.leave(&group.id).await.unwrap();
    alice_events
        .wait_for("bob left", from, |e| match e {
            Event::MemberLeft(l) if l.user_id == "bob" => Some(()),
            _ => None,
        })
        .await;
    mkondo_tests::poll_until(mkondo_tests::WAIT, "the group gone from bob's list", || {
        let gone = !bob.cached_conversations().iter().any(|c| c.id == group.id);
        async move { gone.then_some(()) }
    })
    .await;

    // Errors are typed.
    let err = alice
        .send_text("no-such-conversation", "x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Server { .. }), "{err:?}");
    assert!(
        matches!(
            err.code(),
            ErrorCode::NotFound | ErrorCode::PermissionDenied
        ),
        "{err:?}"
    );
    alice.ping().await.unwrap();

    // Unsubscribe, then disconnect: one event each way.
    bob.unsubscribe(&direct.id).await.unwrap();
    assert_eq!(
        bob.subscription_state(&direct.id),
        SubscriptionState::Unsubscribed
    );
    bob.disconnect();
    bob.wait_for_state(ConnectionState::Disconnected)
        .await
        .unwrap();
    let from = alice_events.len();
    alice.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(alice_events.len(), from, "no event after shutdown");
    assert!(matches!(alice.ping().await, Err(Error::Shutdown)));
}

async fn message_changes_and_social_calls(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    server.api().create_users(&["alice", "bob"]).await;
    let (alice, _) = client(config(&server, transport, "alice"));
    let (bob, bob_events) = client(config(&server, transport, "bob"));
    connected(&alice).await;
    connected(&bob).await;
    let direct = alice.start_direct("bob").await.unwrap();
    bob.subscribe(&direct.id).await.unwrap();
    let sent = alice.send_text(&direct.id, "first").await.unwrap();

    let from = bob_events.len();
    let edited = alice
        .edit_message(&direct.id, sent.seq, "first, edited", None)
        .await
        .unwrap();
    assert_eq!(edited.text, "first, edited");
    assert!(edited.edited_at.is_some());
    let reacted = bob.react(&direct.id, sent.seq, "👍", true).await.unwrap();
    assert_eq!(reacted.reactions[0].user_ids, ["bob"]);
    let unreacted = bob.react(&direct.id, sent.seq, "👍", false).await.unwrap();
    assert!(unreacted.reactions.is_empty());
    let deleted = alice.delete_message(&direct.id, sent.seq).await.unwrap();
    assert!(deleted.deleted_at.is_some());
    let changes = mkondo_tests::poll_until(mkondo_tests::WAIT, "the three kinds of change", || {
        let changes: Vec<String> = bob_events
            .snapshot()
            .into_iter()
            .skip(from)
            .filter_map(|e| match e {
                Event::MessageUpdated { change, .. } => Some(change),
                _ => None,
            })
            .collect();
        async move { (changes.len() >= 4).then_some(changes) }
    })
    .await;
    assert_eq!(changes, ["edited", "reactions", "reactions", "deleted"]);

    // A signal reaches the other member live.
    let from = bob_events.len();
    alice
        .send_signal(&direct.id, "bob", r#"{"type":"offer"}"#)
        .await
        .unwrap();
    bob_events
        .wait_for("the signal", from, |e| match e {
            Event::Signal(s) if s.from_user_id == "alice" => Some(()),
            _ => None,
        })
        .await;

    // Hide (delete chat): history is gone for Alice only.
    alice.send_text(&direct.id, "second").await.unwrap();
    alice.hide(&direct.id).await.unwrap();
    let mine = alice
        .history(&direct.id, HistoryQuery::default())
        .await
        .unwrap();
    assert!(mine.messages.is_empty(), "{:?}", mine.messages);
    let theirs = bob
        .history(&direct.id, HistoryQuery::default())
        .await
        .unwrap();
    assert_eq!(theirs.messages.len(), 2);

    // Block: Bob can no longer write to Alice; unblock restores it.
    alice.block("bob").await.unwrap();
    let err = bob.send_text(&direct.id, "hello?").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Blocked, "{err:?}");
    alice.unblock("bob").await.unwrap();
    bob.send_text(&direct.id, "hello again").await.unwrap();

    // Notifications from the backend arrive as events and can be acknowledged.
    let from = bob_events.len();
    let resp = server
        .api()
        .post(
            "/v1/users/bob/notifications",
            serde_json::json!({"payload": {"type": "ping"}}),
        )
        .await;
    assert!(resp.status < 300, "notification refused: {}", resp.status);
    let id = bob_events
        .wait_for("the notification", from, |e| match e {
            Event::Notification(n) => Some(n.id.clone()),
            _ => None,
        })
        .await;
    bob.ack_notification(&id).await.unwrap();
}
