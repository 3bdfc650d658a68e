//! The SDK against the real server over each native transport: every call of
//! SPEC §4 does what it says, and pushes arrive as events.

use std::time::Duration;

use crate::sdk_common::{client, connected, kind};
use mkondo_sdk::{
    Config, ConnectionState, Error, ErrorCode, Event, HistoryQuery, NewGroup, NewMessage,
    PushCredential, SubscriptionState,
};
use mkondo_tests::{per_transport, ServerOptions, TestServer, Transport};

per_transport!(
    chat_and_calls,
    message_changes_and_social_calls,
    push_devices_mute_and_sign_out
);

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

/// The push surface through the SDK: a device registered (re-registering a
/// rotated credential keeps one device per credential), listed, a conversation
/// muted (the other client sees `muted` in its cache), "do not disturb" set and
/// cleared, and sign-out removing what this client registered (checked over
/// REST) and shutting the client down.
async fn push_devices_mute_and_sign_out(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let group = api.create_group("team", &["alice", "bob"]).await;
    let (phone, _) = client(config(&server, transport, "alice"));
    let (laptop, _) = client(config(&server, transport, "alice"));
    connected(&phone).await;
    connected(&laptop).await;

    let fcm = PushCredential::Fcm {
        token: "fcm-token-1".into(),
    };
    let device = phone.register_device(&fcm).await.unwrap();
    assert!(device.id.starts_with("dev_"));
    assert_eq!(
        (device.provider.as_str(), device.token.as_str()),
        ("fcm", "fcm-token-1")
    );
    let apns = PushCredential::Apns {
        token: "0f".repeat(32),
        topic: Some("com.example.chat".into()),
        sandbox: true,
    };
    phone.register_device(&apns).await.unwrap();
    let again = phone.register_device(&fcm).await.unwrap();
    assert_eq!(again.id, device.id);
    let listed = laptop.devices().await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].id, device.id, "most recently registered first");
    let err = phone
        .register_device(&PushCredential::WebPush {
            endpoint: "https://127.0.0.1/push".into(),
            p256dh: "x".into(),
            auth: "y".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Server {
                code: ErrorCode::InvalidArgument,
                ..
            }
        ),
        "{err:?}"
    );

    let muted = phone.mute(&group, true).await.unwrap();
    assert!(muted.muted);
    mkondo_tests::poll_until(mkondo_tests::WAIT, "muted in the laptop's cache", || {
        let seen = laptop
            .cached_conversations()
            .iter()
            .any(|c| c.id == group && c.muted);
        async move { seen.then_some(()) }
    })
    .await;

    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 3_600_000;
    assert_eq!(
        phone.set_do_not_disturb(Some(until)).await.unwrap(),
        Some(until)
    );
    assert_eq!(phone.set_do_not_disturb(None).await.unwrap(), None);

    // A device registered by the laptop is the laptop's to sign out.
    laptop
        .register_device(&PushCredential::Fcm {
            token: "fcm-laptop".into(),
        })
        .await
        .unwrap();
    phone.sign_out().await.unwrap();
    let left = api.get("/v1/users/alice/devices").await.ok();
    let tokens: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["fcm-laptop"], "{left}");
    let err = phone.ping().await.unwrap_err();
    assert!(matches!(err, Error::Shutdown), "{err:?}");
}
