//! The Admin gRPC twins of `/v1/webhooks`: the same endpoints as REST shows
//! them, a secret only on creation and rotation, deliveries signed with it,
//! the attempt log, test and redelivery, and another app's key refused.

use mkondo_proto::v1::{
    CreateWebhookRequest, PageRequest, RedeliverWebhookEventRequest, UpdateWebhookRequest,
    WebhookIdRequest, WebhookPageRequest,
};
use mkondo_tests::webhook_receiver::{Delivery, Receiver};
use mkondo_tests::{ServerOptions, TestServer, WAIT};
use serde_json::json;

use crate::admin_common::{admin, admin_as, error_code, ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_over_grpc_match_rest_and_deliver() {
    let server =
        TestServer::start(ServerOptions::new().outbound_allow_private().extra_apps(1)).await;
    let api = server.api();
    let mut grpc = admin(&server).await;
    let receiver = Receiver::start().await;

    // Bad input is refused as REST refuses it.
    let refused = grpc
        .create_webhook(CreateWebhookRequest {
            url: receiver.url.clone(),
            event_types: vec!["no.such".into()],
            description: None,
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), "invalid_argument");

    let created = ok(
        "CreateWebhook",
        grpc.create_webhook(CreateWebhookRequest {
            url: receiver.url.clone(),
            event_types: vec!["message.created".into()],
            description: Some("over gRPC".into()),
        })
        .await,
    );
    assert!(created.secret.starts_with("whsec_"));
    receiver.set_secrets(&[&created.secret]);
    let hook = created.webhook.unwrap();
    assert_eq!(hook.status, "active");

    // The same endpoint through REST; no secret in any read.
    let rest = api.get(&format!("/v1/webhooks/{}", hook.id)).await.ok();
    assert_eq!(rest["url"], hook.url.as_str());
    assert_eq!(rest["description"], "over gRPC");
    assert_eq!(rest["event_types"], json!(["message.created"]));
    let got = ok(
        "GetWebhook",
        grpc.get_webhook(WebhookIdRequest {
            id: hook.id.clone(),
        })
        .await,
    );
    assert_eq!(got, hook);
    let listed = ok(
        "ListWebhooks",
        grpc.list_webhooks(PageRequest {
            limit: 0,
            cursor: String::new(),
        })
        .await,
    );
    assert_eq!(listed.items, vec![hook.clone()]);

    // Deliveries are signed with the secret gRPC answered.
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("grpc", &["alice", "bob"]).await;
    api.send(&conv, "alice", "hello", "g-1").await;
    let first = receiver
        .wait_until(WAIT, "a delivery", |d| d.iter().any(Delivery::accepted))
        .await[0]
        .clone();
    receiver.assert_all_valid();

    // The attempt is recorded once the receiver's answer is in: after the
    // receiver saw the POST.
    let attempts = mkondo_tests::poll_until(WAIT, "the attempt recorded", || {
        let mut grpc = grpc.clone();
        let id = hook.id.clone();
        async move {
            let page = ok(
                "ListWebhookAttempts",
                grpc.list_webhook_attempts(WebhookPageRequest {
                    id,
                    limit: 10,
                    cursor: String::new(),
                })
                .await,
            );
            (!page.items.is_empty()).then_some(page)
        }
    })
    .await;
    assert_eq!(attempts.items[0].event_id, first.id);
    assert_eq!(attempts.items[0].status_code, Some(200));

    ok(
        "RedeliverWebhookEvent",
        grpc.redeliver_webhook_event(RedeliverWebhookEventRequest {
            id: hook.id.clone(),
            event_id: first.id.clone(),
        })
        .await,
    );
    receiver
        .wait_until(WAIT, "the redelivery", |d| {
            d.iter().filter(|d| d.id == first.id).count() == 2
        })
        .await;

    let tested = ok(
        "TestWebhook",
        grpc.test_webhook(WebhookIdRequest {
            id: hook.id.clone(),
        })
        .await,
    );
    assert!(tested.delivered, "{tested:?}");
    assert_eq!(tested.status_code, Some(200));

    // Rotation: a new secret; both sign meanwhile.
    let rotated = ok(
        "RotateWebhookSecret",
        grpc.rotate_webhook_secret(WebhookIdRequest {
            id: hook.id.clone(),
        })
        .await,
    );
    assert_ne!(rotated.secret, created.secret);

    let updated = ok(
        "UpdateWebhook",
        grpc.update_webhook(UpdateWebhookRequest {
            id: hook.id.clone(),
            replace_event_types: true,
            event_types: vec![],
            description: Some("all types".into()),
            ..Default::default()
        })
        .await,
    );
    assert!(updated.event_types.is_empty());
    assert_eq!(updated.description, "all types");
    let disabled = ok(
        "UpdateWebhook disable",
        grpc.update_webhook(UpdateWebhookRequest {
            id: hook.id.clone(),
            disable: true,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(
        (disabled.status.as_str(), disabled.disabled_reason.as_str()),
        ("disabled", "disabled by the app")
    );
    let both = grpc
        .update_webhook(UpdateWebhookRequest {
            id: hook.id.clone(),
            enable: true,
            disable: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&both), "invalid_argument");

    // Another app's key sees none of it.
    let mut other = admin_as(&server, Some(&server.other_apps[0].api_key)).await;
    let hidden = other
        .get_webhook(WebhookIdRequest {
            id: hook.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&hidden), "not_found");
    let hidden = other
        .delete_webhook(WebhookIdRequest {
            id: hook.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&hidden), "not_found");

    ok(
        "DeleteWebhook",
        grpc.delete_webhook(WebhookIdRequest {
            id: hook.id.clone(),
        })
        .await,
    );
    api.get(&format!("/v1/webhooks/{}", hook.id))
        .await
        .expect_error(404, "not_found");
}
