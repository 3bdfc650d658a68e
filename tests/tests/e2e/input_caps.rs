//! Input caps and the answers that must not leak: every list a request carries
//! is capped (counting duplicates) and de-duplicated before any query, so a
//! refused request changes nothing.

use mkondo_proto::v1::CreateConversationRequest;
use mkondo_tests::{per_transport, ServerOptions, TestServer, Transport};
use serde_json::json;

use crate::admin_common::{admin, error_code};

per_transport!(realtime_lists_are_capped_before_any_query_and_collapsed,);

/// The most members one request may name (duplicates counted).
const MAX_MEMBERS: usize = 1000;

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

/// A backend create naming 100,000 copies of one new id, or 1,001 new ids, is
/// refused before any user is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_over_the_member_cap_is_refused_before_any_user_is_created() {
    let server = TestServer::start(ServerOptions::new()).await;
    let api = server.api();

    // 100,000 copies of a short id: within the 1 MiB body limit.
    let dup = vec!["d1"; 100_000];
    api.post(
        "/v1/conversations",
        json!({"kind": "group", "name": "dups", "members": dup}),
    )
    .await
    .expect_error(422, "invalid_argument");
    api.get("/v1/users/d1").await.expect_error(404, "not_found");

    let many = ids("new-", MAX_MEMBERS + 1);
    api.post(
        "/v1/conversations",
        json!({"kind": "group", "name": "many", "members": many}),
    )
    .await
    .expect_error(422, "invalid_argument");
    for id in [&many[0], &many[MAX_MEMBERS / 2], &many[MAX_MEMBERS]] {
        api.get(&format!("/v1/users/{id}"))
            .await
            .expect_error(404, "not_found");
    }

    // Adding members: the same cap, nobody created.
    api.create_users(&["alice"]).await;
    let conv = api.create_group("g", &["alice"]).await;
    api.post(
        &format!("/v1/conversations/{conv}/members"),
        json!({"user_ids": ids("add-", MAX_MEMBERS + 1)}),
    )
    .await
    .expect_error(422, "invalid_argument");
    api.get("/v1/users/add-0000")
        .await
        .expect_error(404, "not_found");

    // The Admin gRPC twin.
    let mut grpc = admin(&server).await;
    let status = grpc
        .create_conversation(CreateConversationRequest {
            kind: "group".into(),
            members: ids("grpc-", MAX_MEMBERS + 1),
            name: Some("grpc".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&status), "invalid_argument", "{status:?}");
    api.get("/v1/users/grpc-0000")
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        api.get("/v1/users?limit=100").await.ok()["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only alice exists"
    );
}

/// Duplicates within the cap are collapsed silently: each member once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_members_within_the_cap_are_collapsed() {
    let server = TestServer::start(ServerOptions::new()).await;
    let api = server.api();
    let conv = api
        .post(
            "/v1/conversations",
            json!({"kind": "group", "name": "g", "members": ["ann", "ann", "ben", "ann"]}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.post(
        &format!("/v1/conversations/{conv}/members"),
        json!({"user_ids": ["cat", "cat", "ben"]}),
    )
    .await
    .ok();
    let members = api
        .get(&format!("/v1/conversations/{conv}/members"))
        .await
        .ok();
    let mut names: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["ann", "ben", "cat"]);

    // A token's groups: capped at 100 when minted.
    let groups: Vec<String> = ids("grp-", 101);
    api.post("/v1/tokens", json!({"user_id": "ann", "groups": groups}))
        .await
        .expect_error(422, "invalid_argument");
}

/// Over the real-time protocol: a group named with 1,001 ids is refused as too
/// many (not as an unknown user found one query at a time), and duplicates in
/// presence and member lists are answered once.
async fn realtime_lists_are_capped_before_any_query_and_collapsed(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let (alice, _) = server.client(transport, "alice").await;

    let many = ids("ghost-", MAX_MEMBERS + 1);
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let err = alice.create_group("big", &many).await.unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");
    let err = alice.presence(&["bob"; 101]).await.unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");

    let conv = alice
        .create_group("g", &["bob", "bob", "alice"])
        .await
        .unwrap();
    alice
        .add_members(&conv.id, &["carol", "carol"])
        .await
        .unwrap();
    let presence = alice.presence(&["bob", "bob", "carol"]).await.unwrap();
    let mut seen: Vec<&str> = presence.iter().map(|p| p.user_id.as_str()).collect();
    seen.sort();
    assert_eq!(seen, ["bob", "carol"], "{presence:?}");
}
