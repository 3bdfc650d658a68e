//! Deleting a conversation: who may, what members' devices are told, and that
//! nothing of it remains readable.

use mkondo_tests::{PushKind, ServerOptions, TestServer, Transport, WAIT};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_or_backend_deletes_and_members_are_told() {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    // Alice creates the group with her token: she is its owner.
    let alice_rest = server.rest_as(&server.app.token("alice"));
    let group = alice_rest
        .post(
            "/v1/conversations",
            json!({"kind": "group", "name": "doomed", "members": ["bob", "carol"]}),
        )
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.send(&group, "bob", "soon gone", "m-1").await;
    api.patch(
        &format!("/v1/conversations/{group}/members/carol"),
        json!({"role": "admin"}),
    )
    .await
    .ok();

    // A member, and even an admin, may not delete it.
    for user in ["bob", "carol"] {
        server
            .rest_as(&server.app.token(user))
            .delete(&format!("/v1/conversations/{group}"))
            .await
            .expect_error(403, "permission_denied");
    }
    // Another app's key does not even find it.
    server
        .rest_as(&server.other_apps[0].api_key)
        .delete(&format!("/v1/conversations/{group}"))
        .await
        .expect_error(404, "not_found");

    let (bob, _) = server.client(Transport::WsJson, "bob").await;
    let resp = alice_rest
        .delete(&format!("/v1/conversations/{group}"))
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text);
    let left = bob
        .expect_push("the deletion reaches bob", WAIT, |p| match p {
            PushKind::MemberLeft(m) if m.conversation_id == group => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!((left.user_id.as_str(), left.removed), ("bob", true));

    api.get(&format!("/v1/conversations/{group}"))
        .await
        .expect_error(404, "not_found");
    api.get(&format!("/v1/conversations/{group}/messages"))
        .await
        .expect_error(404, "not_found");
    let bobs = api.get("/v1/users/bob/conversations").await.ok();
    assert!(
        bobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != group.as_str()),
        "{bobs}"
    );
    let err = bob.history(&group, 0, 0, 10).await.unwrap_err();
    assert_eq!(err.code, "not_found");
    // Deleting again: nothing there.
    api.delete(&format!("/v1/conversations/{group}"))
        .await
        .expect_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_conversation_is_hidden_by_members_deleted_by_the_backend() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let direct = api.create_direct("alice", "bob").await;
    server
        .rest_as(&server.app.token("alice"))
        .delete(&format!("/v1/conversations/{direct}"))
        .await
        .expect_error(422, "invalid_argument");
    assert_eq!(
        api.delete(&format!("/v1/conversations/{direct}"))
            .await
            .status,
        204
    );
    // Starting it again makes a new, empty one.
    let again = api.create_direct("alice", "bob").await;
    assert_ne!(again, direct);
    let history = api
        .get(&format!("/v1/conversations/{again}/messages"))
        .await
        .ok();
    assert!(history["items"].as_array().unwrap().is_empty());
}
