//! Blocks: refused direct messaging (`blocked`, both ways), hidden presence and
//! typing (both ways, while a control user still sees them), and unblock
//! restoring all of it. Over real-time and REST.

use mkondo_tests::{
    per_transport, v1, Client, Command, PushKind, ServerOptions, TestServer, Transport, QUIET, WAIT,
};
use serde_json::json;

per_transport!(
    block_refuses_direct_messaging_both_ways,
    block_hides_presence_and_typing_both_ways
);

async fn block(client: &Client, user: &str) -> Result<(), v1::Error> {
    let req = v1::BlockRequest {
        user_id: user.to_owned(),
    };
    client.request(Command::Block(req)).await.map(drop)
}

async fn unblock(client: &Client, user: &str) -> Result<(), v1::Error> {
    let req = v1::BlockRequest {
        user_id: user.to_owned(),
    };
    client.request(Command::Unblock(req)).await.map(drop)
}

async fn signal(client: &Client, conv: &str, to: &str) -> Result<(), v1::Error> {
    let req = v1::SignalRequest {
        conversation_id: conv.to_owned(),
        to_user_id: to.to_owned(),
        payload: r#"{"type":"offer","sdp":"v=0"}"#.to_owned(),
        ring: false,
    };
    client.request(Command::Signal(req)).await.map(drop)
}

#[track_caller]
fn assert_blocked<T: std::fmt::Debug>(what: &str, result: Result<T, v1::Error>) {
    match result {
        Err(e) => assert_eq!(e.code, "blocked", "{what}: {e:?}"),
        Ok(v) => panic!("{what} succeeded despite the block: {v:?}"),
    }
}

/// Alice blocks Bob: neither can start or write in their direct conversation,
/// nor signal the other, over real-time or REST; their shared group still
/// carries messages. Unblocking restores direct messaging.
async fn block_refuses_direct_messaging_both_ways(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let direct = api.create_direct("alice", "bob").await;
    let group = api.create_group("team", &["alice", "bob", "carol"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;

    let err = block(&alice, "alice").await.unwrap_err();
    assert_eq!(err.code, "permission_denied", "blocking oneself");
    let err = block(&alice, "nobody").await.unwrap_err();
    assert_eq!(err.code, "not_found", "blocking an unknown user");

    block(&alice, "bob").await.unwrap();
    block(&alice, "bob").await.unwrap();

    assert_blocked("bob sends", bob.send_message(&direct, "hi", "b-1").await);
    assert_blocked(
        "alice sends",
        alice.send_message(&direct, "hi", "a-1").await,
    );
    assert_blocked("bob starts direct", bob.start_direct("alice").await);
    assert_blocked("alice starts direct", alice.start_direct("bob").await);
    assert_blocked("bob signals", signal(&bob, &direct, "alice").await);
    assert_blocked("alice signals", signal(&alice, &direct, "bob").await);

    let bob_rest = server.rest_as(&server.app.token("bob"));
    bob_rest
        .post(
            &format!("/v1/conversations/{direct}/messages"),
            json!({"text": "over rest"}),
        )
        .await
        .expect_error(403, "blocked");
    bob_rest
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["alice"]}),
        )
        .await
        .expect_error(403, "blocked");
    assert!(
        bob.history_all(&direct).await.unwrap().is_empty(),
        "nothing was written"
    );

    // The group is not direct messaging: it still flows.
    bob.send_message(&group, "in the group", "g-1")
        .await
        .unwrap();
    let m = alice.expect_message(&group, WAIT).await;
    assert_eq!(m.text, "in the group");

    // Each side's list: only Alice's block is hers.
    let alice_rest = server.rest_as(&server.app.token("alice"));
    let mine = alice_rest.get("/v1/me/blocks").await.ok();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["user_id"], "bob");
    let bobs = bob_rest.get("/v1/me/blocks").await.ok();
    assert!(bobs["items"].as_array().unwrap().is_empty());

    // Bob cannot lift Alice's block by unblocking her.
    unblock(&bob, "alice").await.unwrap();
    assert_blocked("bob sends", bob.send_message(&direct, "hi", "b-2").await);

    unblock(&alice, "bob").await.unwrap();
    bob.send_message(&direct, "back", "b-3").await.unwrap();
    let m = alice.expect_message(&direct, WAIT).await;
    assert_eq!(m.text, "back");
    alice.start_direct("bob").await.unwrap();
    signal(&alice, &direct, "bob").await.unwrap();
}

/// A presence push of `user` with `status` (earlier pushes, from before the
/// block, may still be queued).
fn presence_is(p: &PushKind, user: &str, status: &str) -> bool {
    matches!(p, PushKind::Presence(p) if p.user_id == user && p.status == status)
}

fn typing_of(p: &PushKind, conv: &str, user: &str) -> bool {
    matches!(p, PushKind::Typing(t) if t.conversation_id == conv && t.user_id == user)
}

/// Alice blocks Bob. Carol, a contact of both subscribed to their group, keeps
/// seeing both; Alice and Bob see neither the other's presence (pushes, the
/// `presence` command, the subscribe reply, a direct conversation's peer
/// presence) nor their typing. Unblock restores them.
async fn block_hides_presence_and_typing_both_ways(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let direct = api.create_direct("alice", "bob").await;
    api.create_direct("alice", "carol").await;
    api.create_direct("bob", "carol").await;
    let group = api.create_group("team", &["alice", "bob", "carol"]).await;
    let (carol, _) = server.client(transport, "carol").await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    for c in [&alice, &bob, &carol] {
        c.subscribe(&group).await.unwrap();
    }
    block(&alice, "bob").await.unwrap();

    // Asked for: left out, both ways.
    assert!(bob.presence(&["alice"]).await.unwrap().is_empty());
    assert!(alice.presence(&["bob"]).await.unwrap().is_empty());
    assert_eq!(carol.presence(&["alice", "bob"]).await.unwrap().len(), 2);
    let sub = bob.subscribe(&group).await.unwrap();
    let listed: Vec<&str> = sub.presence.iter().map(|p| p.user_id.as_str()).collect();
    assert_eq!(listed, ["carol"], "bob's subscribe reply");
    let list = bob.conversations("", 20).await.unwrap().conversations;
    let with_alice = list.iter().find(|c| c.id == direct).unwrap();
    assert!(
        with_alice.peer_presence.is_none(),
        "bob sees alice's presence in their direct conversation: {with_alice:?}"
    );
    let (bob_tablet, reply) = server.client(Transport::WsJson, "bob").await;
    let with_alice = reply.conversations.iter().find(|c| c.id == direct).unwrap();
    assert!(with_alice.peer_presence.is_none());
    bob_tablet.close().await;

    // Typing: Carol sees it, the other side of the block does not.
    alice.typing(&group, false).await.unwrap();
    carol
        .expect_push("alice typing, seen by carol", WAIT, |p| {
            typing_of(p, &group, "alice").then_some(())
        })
        .await;
    bob.expect_no_push("alice's typing reached bob", QUIET, |p| {
        typing_of(p, &group, "alice")
    })
    .await;
    bob.typing(&group, false).await.unwrap();
    carol
        .expect_push("bob typing, seen by carol", WAIT, |p| {
            typing_of(p, &group, "bob").then_some(())
        })
        .await;
    alice
        .expect_no_push("bob's typing reached alice", QUIET, |p| {
            typing_of(p, &group, "bob")
        })
        .await;

    // Presence changes: Carol sees them, the other side does not.
    alice.app_state("background").await.unwrap();
    carol
        .expect_push("alice away, seen by carol", WAIT, |p| {
            presence_is(p, "alice", "away").then_some(())
        })
        .await;
    bob.expect_no_push("alice's presence reached bob", QUIET, |p| {
        presence_is(p, "alice", "away")
    })
    .await;
    bob.app_state("background").await.unwrap();
    carol
        .expect_push("bob away, seen by carol", WAIT, |p| {
            presence_is(p, "bob", "away").then_some(())
        })
        .await;
    alice
        .expect_no_push("bob's presence reached alice", QUIET, |p| {
            presence_is(p, "bob", "away")
        })
        .await;

    // Unblock restores both.
    unblock(&alice, "bob").await.unwrap();
    alice.app_state("foreground").await.unwrap();
    bob.expect_push("alice online again, seen by bob", WAIT, |p| {
        presence_is(p, "alice", "online").then_some(())
    })
    .await;
    alice.typing(&group, false).await.unwrap();
    bob.expect_push("alice typing, seen by bob again", WAIT, |p| {
        typing_of(p, &group, "alice").then_some(())
    })
    .await;
    assert_eq!(bob.presence(&["alice"]).await.unwrap().len(), 1);
    assert_eq!(alice.presence(&["bob"]).await.unwrap().len(), 1);
}

/// The backend's block routes, REST presence with blocks, and app isolation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_and_presence_rest_routes() {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    api.create_group("team", &["alice", "bob"]).await;
    let (_bob, _) = server.client(Transport::WsJson, "bob").await;

    let blocked = api
        .post("/v1/users/alice/blocks", json!({"user_id": "bob"}))
        .await
        .expect(201);
    assert_eq!(blocked["user_id"], "bob");
    api.post("/v1/users/alice/blocks", json!({"user_id": "bob"}))
        .await
        .expect(200);
    api.post("/v1/users/alice/blocks", json!({"user_id": "alice"}))
        .await
        .expect_error(403, "permission_denied");
    api.post("/v1/users/alice/blocks", json!({"user_id": "nobody"}))
        .await
        .expect_error(404, "not_found");
    let list = api.get("/v1/users/alice/blocks").await.ok();
    assert_eq!(list["items"][0]["user_id"], "bob");
    assert!(list["items"][0]["created_at"].is_string());

    // Presence over REST: the backend sees anyone; users only whom they may.
    let all = api.get("/v1/presence?users=alice,bob,nobody").await.ok();
    let statuses: Vec<(&str, &str)> = all["presence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user_id"].as_str().unwrap(),
                p["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [("alice", "offline"), ("bob", "online")]);
    let alice = server.rest_as(&server.app.token("alice"));
    let seen = alice.get("/v1/presence?users=bob,carol").await.ok();
    assert!(
        seen["presence"].as_array().unwrap().is_empty(),
        "blocked bob and stranger carol: {seen}"
    );
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    api.get(&format!("/v1/presence?users={}", many.join(",")))
        .await
        .expect_error(422, "invalid_argument");
    api.get("/v1/presence")
        .await
        .expect_error(422, "invalid_argument");

    // Another app's key finds none of it.
    let other = server.rest_as(&server.other_apps[0].api_key);
    other
        .post("/v1/users/alice/blocks", json!({"user_id": "bob"}))
        .await
        .expect_error(404, "not_found");
    other
        .get("/v1/users/alice/blocks")
        .await
        .expect_error(404, "not_found");
    other
        .delete("/v1/users/alice/blocks/bob")
        .await
        .expect_error(404, "not_found");
    let theirs = other.get("/v1/presence?users=alice,bob").await.ok();
    assert!(theirs["presence"].as_array().unwrap().is_empty());
    // A user token may not act for someone else.
    alice
        .delete("/v1/users/bob/blocks/alice")
        .await
        .expect_error(403, "permission_denied");

    api.delete("/v1/users/alice/blocks/bob").await.expect(204);
    api.delete("/v1/users/alice/blocks/bob").await.expect(204);
    assert!(api.get("/v1/users/alice/blocks").await.ok()["items"]
        .as_array()
        .unwrap()
        .is_empty());
    let seen = alice.get("/v1/presence?users=bob").await.ok();
    assert_eq!(seen["presence"][0]["status"], "online");
}
