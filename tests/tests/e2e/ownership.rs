//! Who owns a conversation's id and who may keep watching it (issue: the holes
//! an attacker finds). A user cannot take a group id the backend will name in
//! `groups` claims; a `groups` claim never joins people to a group a user made;
//! removal, leaving and deletion end subscriptions at once; a send racing a
//! removal never reaches the removed member.

use std::collections::HashMap;

use mkondo_tests::{per_transport, v1, Client, PushKind, TestServer, Transport, QUIET, WAIT};
use serde_json::json;

per_transport!(
    a_session_cannot_choose_a_group_id,
    removal_ends_typing_and_presence_subscriptions,
    leaving_ends_the_subscriptions_of_every_device,
    deletion_ends_every_subscription
);

/// The attack: a user token creates `launch-team` before the backend does, and
/// waits for the backend's `groups` claims to bring its users in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_token_cannot_squat_a_group_id_the_backend_will_name() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["mallory", "alice"]).await;
    let mallory = server.rest_as(&server.app.token("mallory"));

    let refused = mallory
        .post(
            "/v1/conversations",
            json!({"kind": "group", "id": "launch-team", "name": "launch", "members": []}),
        )
        .await
        .expect_error(403, "permission_denied");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("backend")),
        "{refused}"
    );
    api.get("/v1/conversations/launch-team")
        .await
        .expect_error(404, "not_found");

    // Without an id, the user's group gets one the server made.
    let own = mallory
        .post(
            "/v1/conversations",
            json!({"kind": "group", "name": "mine", "members": []}),
        )
        .await
        .expect(201);
    assert_ne!(own["id"], "launch-team");

    // The backend's claim creates `launch-team`; Mallory is not in it.
    let mut claims = server.app.claims("alice");
    claims.groups = Some(vec!["launch-team".into()]);
    let (alice, _) = server
        .client_with_token(Transport::WsJson, &server.app.sign(&claims))
        .await;
    let members = api.get("/v1/conversations/launch-team/members").await.ok();
    let ids: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice"]);
    alice.subscribe("launch-team").await.unwrap();

    // The backend itself may still choose ids.
    api.create_group_with_id("chosen", "chosen", &["alice"])
        .await;
}

/// A group a user created (before ids were the backend's, or with a server-made
/// id the backend happens to name) is never joined through a `groups` claim;
/// groups the backend or a claim created are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_claim_joins_only_groups_the_backend_or_a_claim_created() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["mallory", "alice", "bob"]).await;
    let mallory = server.rest_as(&server.app.token("mallory"));
    let squatted = mallory
        .post(
            "/v1/conversations",
            json!({"kind": "group", "name": "trap", "members": []}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let backends = api.create_group("backend", &[]).await;

    let mut claims = server.app.claims("alice");
    claims.groups = Some(vec![squatted.clone(), backends.clone(), "by-claim".into()]);
    let (alice, _) = server
        .client_with_token(Transport::WsJson, &server.app.sign(&claims))
        .await;
    let mut claims = server.app.claims("bob");
    claims.groups = Some(vec!["by-claim".into()]);
    let (_bob, _) = server
        .client_with_token(Transport::WsJson, &server.app.sign(&claims))
        .await;

    let member_ids = |conv: String| {
        let api = server.api();
        async move {
            let page = api
                .get(&format!("/v1/conversations/{conv}/members"))
                .await
                .ok();
            let mut ids: Vec<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["user_id"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(member_ids(squatted.clone()).await, ["mallory"]);
    assert_eq!(member_ids(backends).await, ["alice"]);
    assert_eq!(member_ids("by-claim".into()).await, ["alice", "bob"]);

    // Alice cannot read the user's group either: she is not in it.
    let err = alice.subscribe(&squatted).await.unwrap_err();
    assert!(
        err.code == "not_found" || err.code == "permission_denied",
        "{err:?}"
    );
}

async fn a_session_cannot_choose_a_group_id(transport: Transport) {
    let server = TestServer::start_default().await;
    server.api().create_users(&["mallory"]).await;
    let (mallory, _) = server.client(transport, "mallory").await;
    let req = v1::CreateGroupRequest {
        id: "launch-team".into(),
        name: "launch".into(),
        ..Default::default()
    };
    let err = mallory
        .request(v1::client_frame::Command::CreateGroup(req))
        .await
        .unwrap_err();
    assert_eq!(err.code, "permission_denied", "{err:?}");
    server
        .api()
        .get("/v1/conversations/launch-team")
        .await
        .expect_error(404, "not_found");
    let own = mallory.create_group("mine", &[]).await.unwrap();
    assert_ne!(own.id, "launch-team");
}

fn is_typing(p: &PushKind, conv: &str) -> bool {
    matches!(p, PushKind::Typing(t) if t.conversation_id == conv)
}

fn is_presence_of(p: &PushKind, user: &str) -> bool {
    matches!(p, PushKind::Presence(p) if p.user_id == user)
}

/// Typing from `typist` reaches `watcher` (subscribed) — the baseline that
/// makes the "nothing after removal" checks below mean something.
async fn typing_reaches(typist: &Client, watcher: &Client, conv: &str) {
    typist.typing(conv, false).await.unwrap();
    watcher
        .expect_push("typing while subscribed", WAIT, |p| {
            is_typing(p, conv).then_some(())
        })
        .await;
    typist.typing(conv, true).await.unwrap();
    watcher
        .expect_push("typing stopped", WAIT, |p| is_typing(p, conv).then_some(()))
        .await;
}

/// Bob, removed by the backend, stops seeing the group's typing and its members'
/// presence at once, though his connection stays up.
async fn removal_ends_typing_and_presence_subscriptions(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let conv = api.create_group("team", &["alice", "bob", "carol"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    bob.subscribe(&conv).await.unwrap();
    typing_reaches(&alice, &bob, &conv).await;

    api.delete(&format!("/v1/conversations/{conv}/members/bob"))
        .await
        .expect(204);
    bob.expect_push("bob is told he was removed", WAIT, |p| match p {
        PushKind::MemberLeft(m) if m.conversation_id == conv && m.user_id == "bob" => Some(()),
        _ => None,
    })
    .await;

    alice.typing(&conv, false).await.unwrap();
    // Carol comes online: a presence change of a member of the group.
    let (carol, _) = server.client(transport, "carol").await;
    bob.expect_no_push("typing or presence reached a removed member", QUIET, |p| {
        is_typing(p, &conv) || is_presence_of(p, "carol")
    })
    .await;
    drop(carol);
    // And subscribing again is refused.
    assert!(bob.subscribe(&conv).await.is_err());
}

/// Alice leaves over REST while two of her devices are subscribed: both stop
/// receiving the group's typing.
async fn leaving_ends_the_subscriptions_of_every_device(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("team", &["alice", "bob"]).await;
    let (bob, _) = server.client(transport, "bob").await;
    let (phone, _) = server.client(transport, "alice").await;
    let (laptop, _) = server.client(transport, "alice").await;
    for device in [&phone, &laptop] {
        device.subscribe(&conv).await.unwrap();
        typing_reaches(&bob, device, &conv).await;
    }

    server
        .rest_as(&server.app.token("alice"))
        .delete(&format!("/v1/conversations/{conv}/members/alice"))
        .await
        .expect(204);
    for device in [&phone, &laptop] {
        device
            .expect_push("alice's device is told she left", WAIT, |p| match p {
                PushKind::MemberLeft(m) if m.conversation_id == conv => Some(()),
                _ => None,
            })
            .await;
    }
    bob.typing(&conv, false).await.unwrap();
    for device in [&phone, &laptop] {
        device
            .expect_no_push("typing after leaving", QUIET, |p| is_typing(p, &conv))
            .await;
    }
}

/// A deleted group's subscribers, the backend's doing, hear nothing more of it,
/// even when a group of the same id is made again.
async fn deletion_ends_every_subscription(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api
        .create_group_with_id("room", "room", &["alice", "bob"])
        .await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    bob.subscribe(&conv).await.unwrap();
    typing_reaches(&alice, &bob, &conv).await;

    api.delete(&format!("/v1/conversations/{conv}"))
        .await
        .expect(204);
    bob.expect_push("bob is told the group is gone", WAIT, |p| match p {
        PushKind::MemberLeft(m) if m.conversation_id == conv => Some(()),
        _ => None,
    })
    .await;
    // The id again, without Bob: Alice's typing there is not his to see.
    api.create_group_with_id("room", "room again", &["alice"])
        .await;
    alice.typing(&conv, false).await.unwrap();
    bob.expect_no_push("typing in a deleted group's id", QUIET, |p| {
        is_typing(p, &conv)
    })
    .await;
}

/// Sends race a removal: Bob gets every message written before the notice of
/// his removal and none after it (the recipients are read with the commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_racing_a_removal_never_reaches_the_removed_member() {
    let server = TestServer::start(mkondo_tests::ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let mut raced = 0;
    for round in 0..4 {
        let conv = api
            .create_group(&format!("race-{round}"), &["alice", "bob"])
            .await;
        let (bob, _) = server.client(Transport::WsProto, "bob").await;
        let alice = server.rest_as(&server.app.token("alice"));
        let sends: Vec<_> = (0..40)
            .map(|i| {
                let alice = alice.clone();
                let path = format!("/v1/conversations/{conv}/messages");
                tokio::spawn(async move {
                    alice
                        .post(
                            &path,
                            json!({"text": format!("m{i}"), "client_id": format!("c{i}")}),
                        )
                        .await
                })
            })
            .collect();
        api.delete(&format!("/v1/conversations/{conv}/members/bob"))
            .await
            .expect(204);
        for s in sends {
            s.await.unwrap().expect(201);
        }
        let history = api.history_all(&conv).await;
        let removed_at = history
            .iter()
            .find(|m| m["kind"] == "system" && m["data"]["event"] == "member_removed")
            .and_then(|m| m["seq"].as_u64())
            .expect("the removal's notice");
        let mut seen: HashMap<u64, String> = HashMap::new();
        while let Some(p) = bob.next_push(QUIET).await {
            if let PushKind::Message(m) = p {
                if m.conversation_id == conv {
                    seen.insert(m.seq, m.text);
                }
            }
        }
        raced += history
            .iter()
            .filter(|m| m["seq"].as_u64().is_some_and(|s| s > removed_at))
            .count();
        let late: Vec<_> = seen.keys().filter(|s| **s > removed_at).collect();
        assert!(
            late.is_empty(),
            "round {round}: bob got seqs {late:?} after his removal at {removed_at}"
        );
        let before: Vec<u64> = history
            .iter()
            .filter_map(|m| m["seq"].as_u64())
            .filter(|s| *s < removed_at)
            .collect();
        for seq in before {
            assert!(
                seen.contains_key(&seq),
                "round {round}: bob missed seq {seq}, sent while he was a member"
            );
        }
    }
    assert!(
        raced > 0,
        "no send landed after a removal in any round: the race was not run"
    );
}

/// A non-member sending `subscribe` for a group over and over, while its
/// members type, never receives a typing push: membership is checked before
/// the session joins the hub, not after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscribe_never_lets_a_push_through() {
    let server = TestServer::start(mkondo_tests::ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "eve"]).await;
    let conv = api.create_group("team", &["alice", "bob"]).await;
    let (alice, _) = server.client(Transport::WsProto, "alice").await;
    let (eve, _) = server.client(Transport::WsProto, "eve").await;
    let typed = {
        let conv = conv.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                alice.typing(&conv, i % 2 == 1).await.unwrap();
            }
            alice
        })
    };
    for id in 0..400 {
        eve.send_frame(v1::ClientFrame {
            id: 10_000 + id,
            command: Some(v1::client_frame::Command::Subscribe(v1::SubscribeRequest {
                conversation_id: conv.clone(),
            })),
        });
        if id % 20 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let _alice = typed.await.unwrap();
    eve.expect_no_push("typing reached a non-member", QUIET, |p| {
        is_typing(p, &conv)
    })
    .await;
}

/// A backend create that is refused (its id taken, a field too long) creates
/// none of the users it names: they are made in the group's own transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_backend_create_leaves_no_user_behind() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_group_with_id("taken", "taken", &[]).await;
    api.post(
        "/v1/conversations",
        json!({"kind": "group", "id": "taken", "name": "again", "members": ["new-1", "new-2"]}),
    )
    .await
    .expect_error(409, "already_exists");
    api.post(
        "/v1/conversations",
        json!({"kind": "group", "name": "n".repeat(300), "members": ["new-3"]}),
    )
    .await
    .expect(422);
    for user in ["new-1", "new-2", "new-3"] {
        api.get(&format!("/v1/users/{user}"))
            .await
            .expect_error(404, "not_found");
    }
    // Accepted, it creates them.
    api.post(
        "/v1/conversations",
        json!({"kind": "group", "name": "fine", "members": ["new-1"]}),
    )
    .await
    .expect(201);
    api.get("/v1/users/new-1").await.expect(200);
}
