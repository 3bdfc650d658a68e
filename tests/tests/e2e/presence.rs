//! Presence (online → away → offline, and who may see it) and typing (subscribers only).

use mkondo_tests::{
    now_millis, per_transport, v1, Client, PushKind, TestServer, Transport, QUIET, WAIT,
};

per_transport!(
    presence_online_away_offline,
    typing_reaches_subscribers_only
);

/// The next presence push about `user`, skipping repeats of `prev` (a repeated
/// status is harmless); any other status is returned for the caller to check.
async fn next_status(client: &Client, who: &str, user: &str, prev: &str) -> v1::Presence {
    client
        .expect_push(
            &format!("{who}: a presence change of {user} (after {prev})"),
            WAIT,
            |p| match p {
                PushKind::Presence(p) if p.user_id == user && p.status != prev => Some(p.clone()),
                _ => None,
            },
        )
        .await
}

async fn status_of(client: &Client, user: &str) -> String {
    let list = client.presence(&[user]).await.unwrap();
    list.into_iter()
        .find(|p| p.user_id == user)
        .map(|p| p.status)
        .unwrap_or_else(|| panic!("no presence for {user}"))
}

/// Alice goes online (two devices), away when both are in the background, then
/// offline with `last_seen`. Bob (a direct contact) and Carol (subscribed to a group
/// Alice is in) see each step; Dave, in the same large group but not subscribed,
/// sees none of it.
async fn presence_online_away_offline(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    let crowd: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let mut big_members = vec!["alice", "carol", "dave"];
    big_members.extend(crowd.iter().map(String::as_str));
    let mut users = big_members.clone();
    users.push("bob");
    api.create_users(&users).await;
    api.create_direct("alice", "bob").await;
    let big = api.create_group("big", &big_members).await;

    let (bob, _) = server.client(transport, "bob").await;
    let (carol, _) = server.client(transport, "carol").await;
    let (dave, _) = server.client(transport, "dave").await;
    let sub = carol.subscribe(&big).await.unwrap();
    let alice_at_subscribe = sub
        .presence
        .iter()
        .find(|p| p.user_id == "alice")
        .expect("the subscribe reply lists the members' presence");
    assert_eq!(alice_at_subscribe.status, "offline");

    // Online.
    let (phone, _) = server.client(transport, "alice").await;
    for (who, client) in [("bob", &bob), ("carol", &carol)] {
        let p = next_status(client, who, "alice", "offline").await;
        assert_eq!(p.status, "online", "{who} sees alice online");
    }
    let (laptop, _) = server.client(transport, "alice").await;

    // One device in the background: still online.
    phone.app_state("background").await.unwrap();
    assert_eq!(status_of(&bob, "alice").await, "online");

    // Every device in the background: away.
    laptop.app_state("background").await.unwrap();
    for (who, client) in [("bob", &bob), ("carol", &carol)] {
        let p = next_status(client, who, "alice", "online").await;
        assert_eq!(p.status, "away", "{who} sees alice away");
    }
    assert_eq!(status_of(&bob, "alice").await, "away");

    // Disconnected: offline, with when she was last seen.
    let before = now_millis();
    drop(phone);
    drop(laptop);
    for (who, client) in [("bob", &bob), ("carol", &carol)] {
        let p = next_status(client, who, "alice", "away").await;
        assert_eq!(p.status, "offline", "{who} sees alice offline");
        let last_seen = p
            .last_seen
            .as_ref()
            .expect("offline presence has last_seen");
        let ms = last_seen.seconds * 1000 + i64::from(last_seen.nanos) / 1_000_000;
        assert!(
            ms >= before - 2000 && ms <= now_millis() + 2000,
            "last_seen {ms} is not around the disconnect ({before})"
        );
    }
    let queried = bob.presence(&["alice"]).await.unwrap();
    assert_eq!(queried[0].status, "offline");
    assert!(queried[0].last_seen.is_some());

    // Dave shares only the large group, unsubscribed: he saw nothing of it.
    dave.expect_no_push(
        "presence of alice reached an unsubscribed member",
        QUIET,
        |p| matches!(p, PushKind::Presence(p) if p.user_id == "alice"),
    )
    .await;
}

fn is_typing(p: &PushKind, conv: &str) -> bool {
    matches!(p, PushKind::Typing(t) if t.conversation_id == conv)
}

/// Typing reaches the conversation's subscribers and never its other members.
async fn typing_reaches_subscribers_only(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol", "dave"]).await;
    let conv = api.create_group("typing", &["alice", "bob", "carol"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    let (carol, _) = server.client(transport, "carol").await;
    let (dave, _) = server.client(transport, "dave").await;

    bob.subscribe(&conv).await.unwrap();
    alice.typing(&conv, false).await.unwrap();
    let t = bob
        .expect_push("alice typing", WAIT, |p| match p {
            PushKind::Typing(t) if t.conversation_id == conv => Some(t.clone()),
            _ => None,
        })
        .await;
    assert_eq!((t.user_id.as_str(), t.stop), ("alice", false));
    alice.typing(&conv, true).await.unwrap();
    let t = bob
        .expect_push("alice stopped typing", WAIT, |p| match p {
            PushKind::Typing(t) if t.conversation_id == conv => Some(t.clone()),
            _ => None,
        })
        .await;
    assert_eq!((t.user_id.as_str(), t.stop), ("alice", true));

    // Carol is a member but not subscribed: the message reaches her, the typing
    // sent before it did not.
    alice.send_message(&conv, "typed", "t-1").await.unwrap();
    loop {
        match carol.next_push(WAIT).await {
            Some(PushKind::Message(m)) if m.conversation_id == conv => break,
            Some(p) if is_typing(&p, &conv) => panic!("typing reached a non-subscriber: {p:?}"),
            Some(_) => {}
            None => panic!("carol never got the message"),
        }
    }
    carol
        .expect_no_push("typing reached a non-subscriber", QUIET, |p| {
            is_typing(p, &conv)
        })
        .await;

    // Subscriptions move: Bob leaves, Carol joins.
    bob.unsubscribe(&conv).await.unwrap();
    carol.subscribe(&conv).await.unwrap();
    alice.typing(&conv, false).await.unwrap();
    let t = carol
        .expect_push(
            "alice typing, now that carol subscribed",
            WAIT,
            |p| match p {
                PushKind::Typing(t) if t.conversation_id == conv => Some(t.clone()),
                _ => None,
            },
        )
        .await;
    assert_eq!(t.user_id, "alice");
    bob.expect_no_push("typing after unsubscribe", QUIET, |p| is_typing(p, &conv))
        .await;

    // A non-member cannot subscribe (so cannot watch typing).
    let err = dave.subscribe(&conv).await.unwrap_err();
    assert!(
        err.code == "not_found" || err.code == "permission_denied",
        "subscribe by a non-member: {err:?}"
    );
    alice.typing(&conv, false).await.unwrap();
    dave.expect_no_push("typing reached a non-member", QUIET, |p| {
        is_typing(p, &conv)
    })
    .await;
}
