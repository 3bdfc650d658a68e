//! Notifications from the customer's backend: kept for offline users and
//! delivered on their next connect, pushed live to every connected device,
//! gone for good once acknowledged, never delivered once expired.

use mkondo_tests::{
    per_transport, poll_until, v1, Client, Command, PushKind, ServerOptions, TestServer, Transport,
    QUIET, WAIT,
};
use serde_json::{json, Value};

per_transport!(
    offline_notification_arrives_on_next_connect_until_acked,
    online_notification_reaches_every_device
);

async fn ack(client: &Client, id: &str) -> Result<(), v1::Error> {
    let req = v1::AckNotificationRequest {
        notification_id: id.to_owned(),
    };
    client
        .request(Command::AckNotification(req))
        .await
        .map(drop)
}

fn payload_json(n: &v1::Notification) -> Value {
    let s = n.payload.as_ref().expect("a payload");
    mkondo_proto::convert::struct_to_json(s)
}

fn ids(list: &[v1::Notification]) -> Vec<&str> {
    list.iter().map(|n| n.id.as_str()).collect()
}

/// Sent while Alice is offline, a notification is in her next connect reply (and
/// only there: no push repeats it), on every connect until a device acknowledges
/// it, and never again after.
async fn offline_notification_arrives_on_next_connect_until_acked(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice"]).await;
    let payload = json!({"type": "new_follower", "follower": "dave"});
    let sent = api
        .post(
            "/v1/users/alice/notifications",
            json!({ "payload": payload }),
        )
        .await
        .expect(201);
    let id = sent["id"].as_str().expect("an id").to_owned();
    assert!(sent["created_at"].is_string() && sent["expires_at"].is_string());
    let second = api
        .post(
            "/v1/users/alice/notifications",
            json!({"payload": {"type": "second"}}),
        )
        .await
        .expect(201);
    let second_id = second["id"].as_str().unwrap().to_owned();

    let (phone, reply) = server.client(transport, "alice").await;
    assert_eq!(
        ids(&reply.notifications),
        [id.as_str(), second_id.as_str()],
        "pending notifications, oldest first"
    );
    assert_eq!(payload_json(&reply.notifications[0]), payload);
    phone
        .expect_no_push(
            "a notification delivered in the connect reply was pushed again",
            QUIET,
            |p| matches!(p, PushKind::Notification(_)),
        )
        .await;

    // Not acknowledged yet: the next device gets them too.
    let (laptop, reply) = server.client(transport, "alice").await;
    assert_eq!(reply.notifications.len(), 2);

    ack(&laptop, &id).await.unwrap();
    let err = ack(&phone, &id).await.expect_err("a second ack");
    assert_eq!(err.code, "not_found");
    let err = ack(&phone, "01JV5D7T2H6M0P4S8V1X3Z5B7C").await.unwrap_err();
    assert_eq!(err.code, "not_found", "an unknown id");

    let (_tablet, reply) = server.client(transport, "alice").await;
    assert_eq!(ids(&reply.notifications), [second_id.as_str()]);
    let listed = server
        .rest_as(&server.app.token("alice"))
        .get("/v1/me/notifications")
        .await
        .ok();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], second_id.as_str());
}

/// Alice is online on two devices: a notification reaches both live, and Bob
/// (connected, not addressed) gets nothing. Acknowledged over REST, it is gone
/// from the next connect.
async fn online_notification_reaches_every_device(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let (phone, _) = server.client(transport, "alice").await;
    let (laptop, _) = server.client(Transport::WsJson, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;

    let payload = json!({"type": "order_shipped", "order": "A-17"});
    let sent = api
        .post(
            "/v1/users/alice/notifications",
            json!({"payload": payload, "ttl_seconds": 3600}),
        )
        .await
        .expect(201);
    let id = sent["id"].as_str().unwrap().to_owned();
    for (who, device) in [("phone", &phone), ("laptop", &laptop)] {
        let n = device
            .expect_push(
                &format!("the notification on alice's {who}"),
                WAIT,
                |p| match p {
                    PushKind::Notification(n) => Some(n.clone()),
                    _ => None,
                },
            )
            .await;
        assert_eq!(n.id, id);
        assert_eq!(payload_json(&n), payload);
        assert!(n.expires_at.is_some());
    }
    bob.expect_no_push("alice's notification reached bob", QUIET, |p| {
        matches!(p, PushKind::Notification(_))
    })
    .await;

    let alice_rest = server.rest_as(&server.app.token("alice"));
    alice_rest
        .post(&format!("/v1/me/notifications/{id}/ack"), json!({}))
        .await
        .expect(204);
    alice_rest
        .post(&format!("/v1/me/notifications/{id}/ack"), json!({}))
        .await
        .expect_error(404, "not_found");
    let (_again, reply) = server.client(transport, "alice").await;
    assert!(reply.notifications.is_empty(), "{:?}", reply.notifications);
}

/// A notification whose ttl ran out is never delivered: not on connect, not in
/// the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_notifications_are_not_delivered() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice"]).await;
    api.post(
        "/v1/users/alice/notifications",
        json!({"payload": {"n": "short"}, "ttl_seconds": 1}),
    )
    .await
    .expect(201);
    let kept = api
        .post(
            "/v1/users/alice/notifications",
            json!({"payload": {"n": "kept"}}),
        )
        .await
        .expect(201);
    let kept_id = kept["id"].as_str().unwrap().to_owned();
    let listed = api.get("/v1/users/alice/notifications").await.ok();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    poll_until(WAIT, "the short notification to expire", || async {
        let listed = api.get("/v1/users/alice/notifications").await.ok();
        (listed["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    let (_alice, reply) = server.client(Transport::WsJson, "alice").await;
    assert_eq!(ids(&reply.notifications), [kept_id.as_str()]);
}

/// Bad input gets a clear error; only the backend sends; a user reads only its
/// own; another app's key finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_errors_scopes_and_app_isolation() {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let path = "/v1/users/alice/notifications";
    for (body, status, code) in [
        (json!({"payload": "text"}), 422, "invalid_argument"),
        (json!({}), 422, "invalid_argument"),
        (
            json!({"payload": {}, "ttl_seconds": 0}),
            422,
            "invalid_argument",
        ),
        (
            json!({"payload": {}, "ttl_seconds": 31 * 24 * 3600}),
            422,
            "invalid_argument",
        ),
        (
            json!({"payload": {"big": "x".repeat(17 * 1024)}}),
            413,
            "too_large",
        ),
    ] {
        api.post(path, body).await.expect_error(status, code);
    }
    api.post("/v1/users/nobody/notifications", json!({"payload": {}}))
        .await
        .expect_error(404, "not_found");
    let alice = server.rest_as(&server.app.token("alice"));
    alice
        .post(path, json!({"payload": {}}))
        .await
        .expect_error(403, "permission_denied");
    let sent = api
        .post(path, json!({"payload": {"a": 1}}))
        .await
        .expect(201);
    let id = sent["id"].as_str().unwrap().to_owned();
    alice
        .get("/v1/users/bob/notifications")
        .await
        .expect_error(403, "permission_denied");
    assert_eq!(
        alice.get(path).await.ok()["items"][0]["id"],
        id.as_str(),
        "a user lists its own through /v1/users/{{id}}"
    );

    let other = server.rest_as(&server.other_apps[0].api_key);
    other
        .post(path, json!({"payload": {}}))
        .await
        .expect_error(404, "not_found");
    other.get(path).await.expect_error(404, "not_found");
    other
        .post(&format!("{path}/{id}/ack"), json!({}))
        .await
        .expect_error(404, "not_found");
    // Still pending in its own app; the backend may acknowledge for the user.
    api.post(&format!("{path}/{id}/ack"), json!({}))
        .await
        .expect(204);
    assert!(api.get(path).await.ok()["items"]
        .as_array()
        .unwrap()
        .is_empty());
}
