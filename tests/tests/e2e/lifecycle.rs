//! User lifecycle and token revocation over REST (API key): deactivate /
//! reactivate, revoke a user's or the whole app's tokens, delete a user (with
//! and without erasing their messages). Each closes exactly the affected live
//! connections within a second, with a stop-range code, and refuses the old
//! tokens afterwards; new tokens (after reactivation, or issued after the
//! revocation's second) work.

use std::collections::HashMap;

use mkondo_tests::{
    expect_alive, expect_stopped, now_secs, per_transport, seq_of, valid_after_secs, Client,
    PushKind, ServerOptions, TestServer, Transport, QUIET, REVOCATION_DEADLINE, WAIT,
};
use serde_json::json;
use tokio::time::Instant;

/// Connecting with `token` is refused with `(code, reason)` and the connection
/// then closes with `close_code`, `reconnect: false`.
async fn expect_refused(
    server: &TestServer,
    transport: Transport,
    what: &str,
    token: &str,
    (code, reason): (&str, &str),
    close_code: u32,
) {
    let client = server.open(transport).await;
    let err = client
        .connect(token, HashMap::new())
        .await
        .err()
        .unwrap_or_else(|| panic!("{what}: the token was accepted"));
    assert_eq!(
        (err.code.as_str(), err.reason.as_str()),
        (code, reason),
        "{what}: {err:?}"
    );
    let closed = client
        .wait_closed(WAIT)
        .await
        .unwrap_or_else(|| panic!("{what}: the connection stayed open"));
    let d = closed
        .disconnect
        .unwrap_or_else(|| panic!("{what}: no disconnect push"));
    assert_eq!((d.code, d.reconnect), (close_code, false), "{what}: {d:?}");
}

per_transport!(deactivation_closes_the_users_connections_and_refuses_their_tokens);

async fn deactivation_closes_the_users_connections_and_refuses_their_tokens(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let other_app = &server.other_apps[0];
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let alice_token = server.app.token("alice");
    let (alice_1, _) = server.client_with_token(transport, &alice_token).await;
    let (alice_2, _) = server.client_with_token(transport, &alice_token).await;
    let (bob, _) = server.client(transport, "bob").await;
    // The same user id in another app is another person.
    let (alice_elsewhere, _) = server
        .client_with_token(transport, &other_app.token("alice"))
        .await;

    let user = api.post("/v1/users/alice/deactivate", json!({})).await.ok();
    let since = Instant::now();
    assert_eq!(user["deactivated"], true, "{user}");
    for (what, client) in [("alice 1", &alice_1), ("alice 2", &alice_2)] {
        expect_stopped(what, client, 3501, "user_deactivated", since).await;
    }
    expect_alive("bob", &bob).await;
    expect_alive("alice of the other app", &alice_elsewhere).await;

    // Old and new tokens are refused, over real-time and REST.
    let fresh = server.app.token("alice");
    for token in [&alice_token, &fresh] {
        let refused = ("permission_denied", "user_deactivated");
        expect_refused(&server, transport, "deactivated", token, refused, 3501).await;
        let body = server
            .rest_as(token)
            .get("/v1/me")
            .await
            .expect_error(403, "permission_denied");
        assert_eq!(body["error"]["reason"], "user_deactivated", "{body}");
    }
    assert_eq!(api.get("/v1/users/alice").await.ok()["deactivated"], true);

    // Deactivating twice changes nothing; reactivation lets tokens work again
    // (those issued before the deactivation too: it is not a revocation).
    api.post("/v1/users/alice/deactivate", json!({})).await.ok();
    let user = api.post("/v1/users/alice/reactivate", json!({})).await.ok();
    assert_eq!(user["deactivated"], false, "{user}");
    server
        .client_with_token(transport, &server.app.token("alice"))
        .await;
    server.client_with_token(transport, &alice_token).await;
    server.rest_as(&alice_token).get("/v1/me").await.ok();
}

/// Only the backend may deactivate, and only users that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_calls_need_the_api_key_and_an_existing_user() {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let as_bob = server.rest_as(&server.app.token("bob"));
    for path in [
        "/v1/users/alice/deactivate",
        "/v1/users/alice/reactivate",
        "/v1/users/alice/revoke-tokens",
        "/v1/revoke-tokens",
    ] {
        as_bob
            .post(path, json!({}))
            .await
            .expect_error(403, "permission_denied");
    }
    as_bob
        .delete("/v1/users/alice")
        .await
        .expect_error(403, "permission_denied");
    for path in [
        "/v1/users/nobody/deactivate",
        "/v1/users/nobody/reactivate",
        "/v1/users/nobody/revoke-tokens",
    ] {
        api.post(path, json!({}))
            .await
            .expect_error(404, "not_found");
    }
    api.delete("/v1/users/nobody")
        .await
        .expect_error(404, "not_found");
    // Another app's key does not reach this app's users.
    let other = server.rest_as(&server.other_apps[0].api_key);
    other
        .post("/v1/users/alice/deactivate", json!({}))
        .await
        .expect_error(404, "not_found");
    other
        .delete("/v1/users/alice")
        .await
        .expect_error(404, "not_found");
    assert_eq!(api.get("/v1/users/alice").await.ok()["deactivated"], false);
    api.delete("/v1/users/alice?erase=maybe")
        .await
        .expect_error(422, "invalid_argument");
}

/// Revoking a user's tokens closes their connections holding a token issued
/// before the revocation's next second, and only those; afterwards a token is
/// refused exactly when its iat falls in the revocation's second or before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_users_tokens_refuses_exactly_the_older_ones() {
    let transport = Transport::WsProto;
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let old = server.app.token("alice");
    let (alice_1, _) = server.client_with_token(transport, &old).await;
    let (alice_grpc, _) = server
        .client_with_token(Transport::Grpc, &server.app.token("alice"))
        .await;
    // A token issued a few seconds ahead (clock skew is tolerated): newer than
    // the revocation, so its connection stays.
    let (alice_ahead, _) = server
        .client_with_token(
            transport,
            &server.app.token_issued_at("alice", now_secs() + 5),
        )
        .await;
    let (bob, _) = server.client(transport, "bob").await;

    let body = api
        .post("/v1/users/alice/revoke-tokens", json!({}))
        .await
        .ok();
    let since = Instant::now();
    let valid_after = valid_after_secs(&body);
    assert!(
        (now_secs()..=now_secs() + 1).contains(&valid_after),
        "the revocation point is the next second: {body}"
    );
    expect_stopped("alice", &alice_1, 3502, "tokens_revoked", since).await;
    expect_stopped(
        "alice over gRPC",
        &alice_grpc,
        3502,
        "tokens_revoked",
        since,
    )
    .await;
    expect_alive("alice's newer token", &alice_ahead).await;
    expect_alive("bob", &bob).await;

    // The revocation's own second is refused (a token signed then may predate
    // it); the next second is accepted.
    let same_second = server.app.token_issued_at("alice", valid_after - 1);
    for token in [&old, &same_second] {
        let refused = ("invalid_token", "revoked");
        expect_refused(&server, transport, "revoked", token, refused, 3502).await;
        let body = server
            .rest_as(token)
            .get("/v1/me")
            .await
            .expect_error(401, "invalid_token");
        assert_eq!(body["error"]["reason"], "revoked", "{body}");
    }
    let next_second = server.app.token_issued_at("alice", valid_after);
    server.client_with_token(transport, &next_second).await;
    server.rest_as(&next_second).get("/v1/me").await.ok();
    server.client(transport, "bob").await;
}

/// `POST /v1/revoke-tokens` closes every connection of the app, none of another app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_apps_tokens_closes_every_connection_of_that_app_only() {
    let transport = Transport::WsJson;
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let other_app = &server.other_apps[0];
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(Transport::Grpc, "bob").await;
    let (carol_elsewhere, _) = server
        .client_with_token(transport, &other_app.token("carol"))
        .await;

    let body = server.api().post("/v1/revoke-tokens", json!({})).await.ok();
    let since = Instant::now();
    let valid_after = valid_after_secs(&body);
    expect_stopped("alice", &alice, 3502, "tokens_revoked", since).await;
    expect_stopped("bob", &bob, 3502, "tokens_revoked", since).await;
    expect_alive("the other app's user", &carol_elsewhere).await;

    for user in ["alice", "dave"] {
        let old = server.app.token_issued_at(user, valid_after - 1);
        let refused = ("invalid_token", "revoked");
        expect_refused(&server, transport, user, &old, refused, 3502).await;
        let fresh = server.app.token_issued_at(user, valid_after);
        server.client_with_token(transport, &fresh).await;
    }
    // The API key is not a token: it still works.
    server.api().get("/v1/users").await.ok();
    server
        .client_with_token(transport, &other_app.token("carol"))
        .await;
}

/// Sets up alice, bob and carol: a group of the three, a direct conversation of
/// alice and bob, messages from alice in both and one from bob; alice reacts to
/// bob's message and bob to hers. Returns (group, direct).
async fn conversations_with_alice(server: &TestServer) -> (String, String) {
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let group = api.create_group("team", &["alice", "bob", "carol"]).await;
    let direct = api.create_direct("alice", "bob").await;
    let first = seq_of(&api.send(&group, "alice", "alice in the group", "a1").await);
    let bobs = seq_of(&api.send(&group, "bob", "bob in the group", "b1").await);
    api.send(&direct, "alice", "alice to bob", "a2").await;
    api.send(&group, "alice", "alice again", "a3").await;
    for (seq, emoji, user) in [(bobs, "👍", "alice"), (first, "🎉", "bob")] {
        let reactions = format!("/v1/conversations/{group}/messages/{seq}/reactions");
        api.post(&reactions, json!({"emoji": emoji, "user_id": user}))
            .await
            .ok();
    }
    (group, direct)
}

/// The user messages of a conversation (system messages left out), oldest first.
async fn user_messages(server: &TestServer, conv: &str) -> Vec<serde_json::Value> {
    let mut all = server.api().history_all(conv).await;
    all.retain(|m| m["kind"] == "user");
    all
}

/// Waits for `member_left` of `user` in each of `convs` (in any order).
async fn expect_left(what: &str, client: &Client, user: &str, convs: &[&str]) {
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < convs.len() {
        let left = client
            .expect_push(what, WAIT, |p| match p {
                PushKind::MemberLeft(m) => Some(m.clone()),
                _ => None,
            })
            .await;
        assert_eq!(left.user_id, user, "{what}: {left:?}");
        assert!(left.removed, "{what}: {left:?}");
        seen.push(left.conversation_id);
    }
    seen.sort();
    let mut want: Vec<String> = convs.iter().map(|c| (*c).to_owned()).collect();
    want.sort();
    assert_eq!(seen, want, "{what}");
}

/// Deleting with `?erase=true`: alice's connections close (3505), the others are
/// told she left each conversation, her messages become tombstones everywhere
/// (and her reactions go), others' messages stay, her old tokens are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_with_erase_closes_them_and_tombstones_their_messages() {
    let transport = Transport::WsJson;
    let server = TestServer::start_default().await;
    let api = server.api();
    let (group, direct) = conversations_with_alice(&server).await;
    let old = server.app.token("alice");
    let (alice_1, _) = server.client_with_token(transport, &old).await;
    let (alice_2, _) = server.client_with_token(Transport::Grpc, &old).await;
    let (bob, _) = server.client(transport, "bob").await;
    let (carol, _) = server.client(Transport::WsProto, "carol").await;

    let body = api.delete("/v1/users/alice?erase=true").await.ok();
    let since = Instant::now();
    assert_eq!(
        (
            &body["id"],
            &body["conversations"],
            &body["erased_messages"]
        ),
        (&json!("alice"), &json!(2), &json!(3)),
        "{body}"
    );
    let valid_after = valid_after_secs(&body);
    expect_stopped("alice 1", &alice_1, 3505, "user_deleted", since).await;
    expect_stopped("alice 2", &alice_2, 3505, "user_deleted", since).await;
    expect_left("bob", &bob, "alice", &[&group, &direct]).await;
    expect_left("carol", &carol, "alice", &[&group]).await;
    expect_alive("bob", &bob).await;
    expect_alive("carol", &carol).await;

    // History keeps every message: alice's as tombstones, bob's intact.
    let history = user_messages(&server, &group).await;
    assert_eq!(history.len(), 3, "{history:?}");
    for m in &history {
        if m["sender_id"] == "alice" {
            assert_eq!(m["text"], "", "erased: {m}");
            assert!(m["deleted_at"].is_string(), "tombstone: {m}");
            assert_eq!(m["reactions"], json!([]), "{m}");
        } else {
            assert_eq!(m["text"], "bob in the group", "{m}");
            assert!(m.get("deleted_at").is_none(), "{m}");
            assert_eq!(m["reactions"], json!([]), "alice's reaction is gone: {m}");
        }
    }
    let mut direct_history = bob.history_all(&direct).await.unwrap();
    direct_history.retain(|m| m.kind == "user");
    assert_eq!(direct_history.len(), 1);
    assert!(direct_history[0].text.is_empty(), "{direct_history:?}");
    assert!(direct_history[0].deleted_at.is_some(), "{direct_history:?}");

    let members = api
        .get(&format!("/v1/conversations/{group}/members"))
        .await
        .ok();
    let ids: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["user_id"].as_str())
        .collect();
    assert_eq!(ids, ["bob", "carol"]);
    api.get("/v1/users/alice")
        .await
        .expect_error(404, "not_found");
    api.delete("/v1/users/alice")
        .await
        .expect_error(404, "not_found");

    // Her old token does not bring her back (over real-time or REST), nor one
    // from the deletion's second.
    let refused = ("invalid_token", "user_deleted");
    expect_refused(&server, transport, "deleted", &old, refused, 3505).await;
    let same_second = server.app.token_issued_at("alice", valid_after - 1);
    expect_refused(
        &server,
        transport,
        "same second",
        &same_second,
        refused,
        3505,
    )
    .await;
    let body = server
        .rest_as(&old)
        .get("/v1/me")
        .await
        .expect_error(401, "invalid_token");
    assert_eq!(body["error"]["reason"], "user_deleted", "{body}");
    api.get("/v1/users/alice")
        .await
        .expect_error(404, "not_found");
}

/// Deleting without erase keeps the messages with their sender id; a token
/// issued after the deletion creates the id afresh, with nothing of the old user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_keeps_their_messages_and_the_id_can_start_again() {
    let transport = Transport::WsProto;
    let server = TestServer::start_default().await;
    let api = server.api();
    let (group, _direct) = conversations_with_alice(&server).await;
    let (bob, _) = server.client(transport, "bob").await;

    let body = api.delete("/v1/users/alice").await.ok();
    let since = Instant::now();
    assert_eq!(body["erased_messages"], 0, "{body}");
    let valid_after = valid_after_secs(&body);
    // The members are told within the second too.
    let left = bob
        .expect_push("member_left", WAIT, |p| match p {
            PushKind::MemberLeft(m) => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(left.user_id, "alice");
    assert!(since.elapsed() < REVOCATION_DEADLINE);

    let history = user_messages(&server, &group).await;
    let texts: Vec<(&str, &str)> = history
        .iter()
        .map(|m| {
            (
                m["sender_id"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        texts,
        [
            ("alice", "alice in the group"),
            ("bob", "bob in the group"),
            ("alice", "alice again"),
        ]
    );

    // A token from the deletion's second is still refused; one issued after it
    // makes alice a new user, in no conversation.
    let refused = ("invalid_token", "user_deleted");
    let stale = server.app.token_issued_at("alice", valid_after - 1);
    expect_refused(&server, transport, "stale", &stale, refused, 3505).await;
    let fresh = server.app.token_issued_at("alice", valid_after);
    let (_alice, reply) = server.client_with_token(transport, &fresh).await;
    assert!(reply.conversations.is_empty(), "{reply:?}");
    bob.expect_no_push("alice rejoining", QUIET, |p| {
        matches!(p, PushKind::MemberJoined(_))
    })
    .await;
    // The backend recreating the id does not revive the old tokens either.
    api.post("/v1/users", json!({"id": "alice"})).await.ok();
    expect_refused(
        &server,
        transport,
        "stale",
        &stale,
        ("invalid_token", "revoked"),
        3502,
    )
    .await;
}
