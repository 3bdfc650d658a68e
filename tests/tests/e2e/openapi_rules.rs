//! The REST input rules that changed so the OpenAPI document could state them
//! (docs/rest.md, "What the document cannot say"), each held against the real
//! server: the fuzzer of `tests/openapi-fuzz` reaches these cases only by
//! chance, or not at all (it sends ASCII, in a fixed order).

use mkondo_tests::{seq_of, TestServer};
use reqwest::Method;
use serde_json::json;

/// A refusal that depends on stored state, not on the request's shape, is not
/// `invalid_argument`: the document calls such a request valid.
#[tokio::test]
async fn refusals_that_depend_on_state_are_permission_denied() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;

    // Blocking (or unblocking) oneself: the path and the body name the same user.
    api.post("/v1/users/alice/blocks", json!({"user_id": "alice"}))
        .await
        .expect_error(403, "permission_denied");
    api.delete("/v1/users/alice/blocks/alice")
        .await
        .expect_error(403, "permission_denied");
    let alice = server.rest_as(&server.app.token("alice"));
    alice
        .post("/v1/me/blocks", json!({"user_id": "alice"}))
        .await
        .expect_error(403, "permission_denied");

    // A direct conversation has its two members and no roles.
    let direct = api.create_direct("alice", "bob").await;
    api.post(
        &format!("/v1/conversations/{direct}/members"),
        json!({"user_ids": ["carol"]}),
    )
    .await
    .expect_error(403, "permission_denied");
    api.patch(
        &format!("/v1/conversations/{direct}/members/bob"),
        json!({"role": "admin"}),
    )
    .await
    .expect_error(403, "permission_denied");
    alice
        .delete(&format!("/v1/conversations/{direct}/members/alice"))
        .await
        .expect_error(403, "permission_denied");
}

/// An edit gives a non-empty text or a non-empty data object, so no edit can
/// leave a message empty, whatever the message held.
#[tokio::test]
async fn an_edit_needs_a_non_empty_text_or_data() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice"]).await;
    let conv = api.create_group("team", &["alice"]).await;
    let sent = api
        .post(
            &format!("/v1/conversations/{conv}/messages"),
            json!({"sender_id": "alice", "text": "caption", "data": {"image": "a.png"}}),
        )
        .await
        .expect(201);
    let path = format!("/v1/conversations/{conv}/messages/{}", seq_of(&sent));

    for empty in [
        json!({}),
        json!({"text": ""}),
        json!({"data": {}}),
        json!({"text": "", "data": {}}),
        json!({"text": null, "data": null}),
    ] {
        api.patch(&path, empty.clone())
            .await
            .expect_error(422, "invalid_argument");
    }
    // The caption goes when the same edit gives the data.
    let edited = api
        .patch(&path, json!({"text": "", "data": {"image": "a.png"}}))
        .await
        .expect(200);
    assert_eq!(edited["text"], "");
    assert_eq!(edited["data"], json!({"image": "a.png"}));
    let edited = api.patch(&path, json!({"text": "new"})).await.expect(200);
    assert_eq!(edited["text"], "new");
}

/// `?users=` is 1 to 100 user ids separated by commas, exactly as written:
/// no spaces, no empty entries; duplicates are answered once.
#[tokio::test]
async fn presence_takes_one_to_a_hundred_exact_ids() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;

    let page = api
        .get("/v1/presence?users=alice,bob,alice")
        .await
        .expect(200);
    let ids: Vec<&str> = page["presence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["user_id"].as_str())
        .collect();
    assert_eq!(ids, ["alice", "bob"]);

    for bad in [
        "",
        "alice,",
        ",alice",
        "alice,,bob",
        "alice,%20bob",
        "al%20ice",
    ] {
        api.get(&format!("/v1/presence?users={bad}"))
            .await
            .expect_error(422, "invalid_argument");
    }
    let hundred = vec!["alice"; 100].join(",");
    api.get(&format!("/v1/presence?users={hundred}"))
        .await
        .expect(200);
    let too_many = vec!["alice"; 101].join(",");
    api.get(&format!("/v1/presence?users={too_many}"))
        .await
        .expect_error(422, "invalid_argument");
}

/// Bodies are JSON objects (serde alone would read a struct from an array of
/// its fields); integers are JSON Schema's, so `3600.0` is one.
#[tokio::test]
async fn bodies_are_objects_and_integers_may_have_a_zero_fraction() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;

    let array = api
        .request(
            Method::POST,
            "/v1/users/alice/blocks",
            Some(br#"["bob"]"#.to_vec()),
        )
        .await;
    array.expect_error(422, "invalid_argument");
    let users_array = api
        .request(Method::POST, "/v1/users", Some(br#"["carol"]"#.to_vec()))
        .await;
    users_array.expect_error(422, "invalid_argument");

    let minted = api
        .post(
            "/v1/tokens",
            json!({"user_id": "alice", "ttl_seconds": 3600.0}),
        )
        .await
        .expect(200);
    assert!(minted["token"].as_str().is_some_and(|t| !t.is_empty()));
    api.post(
        "/v1/tokens",
        json!({"user_id": "alice", "ttl_seconds": 3600.5}),
    )
    .await
    .expect_error(422, "invalid_argument");
    api.post(
        "/v1/users/alice/notifications",
        json!({"payload": {"kind": "ping"}, "ttl_seconds": 60.0}),
    )
    .await
    .expect(201);
}

/// A direct conversation's name, icon and data are checked whether or not the
/// pair has a conversation already (they were ignored, unchecked, before).
#[tokio::test]
async fn a_direct_conversations_fields_are_checked_when_it_exists() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    api.create_direct("alice", "bob").await;
    api.post(
        "/v1/conversations",
        json!({"kind": "direct", "members": ["alice", "bob"], "data": "not an object"}),
    )
    .await
    .expect_error(422, "invalid_argument");
    api.post(
        "/v1/conversations",
        json!({"kind": "direct", "members": ["alice", "bob"], "id": "chosen"}),
    )
    .await
    .expect_error(422, "invalid_argument");
}
