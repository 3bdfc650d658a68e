//! An app's push settings through the operator API (issue 18): each provider's
//! credential is parsed when it is set (a key that cannot sign is refused and
//! nothing changes), sealed before it is stored (the database holds no key in
//! the clear), never answered back, removed on its own; the app's VAPID public
//! key reaches its clients through `devices`.

use mkondo_proto::v1::reply::Result as R;
use mkondo_tests::{v1, Command, ServerOptions, TestServer, Transport};
use serde_json::{json, Value};

const SECRET: &str = "operator-secret-for-push-settings";
const APNS_P8: &str = include_str!("../../fixtures/keys/es256-1.key.pem");
const FCM_RSA: &str = include_str!("../../fixtures/keys/rs256-1.key.pem");

fn service_account() -> Value {
    json!({
        "type": "service_account",
        "project_id": "mkondo-test",
        "private_key_id": "0123456789abcdef",
        "private_key": FCM_RSA,
        "client_email": "push@mkondo-test.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
}

#[tokio::test]
async fn push_credentials_are_checked_sealed_and_never_answered() {
    let server = TestServer::start(ServerOptions::new().operator_secret(SECRET)).await;
    let app = server.app.app_id.clone();
    let op = server.rest_as(SECRET);
    let path = format!("/v1/admin/apps/{app}");

    let set = op
        .patch(
            &path,
            json!({"push": {
                "apns": {"key": APNS_P8, "key_id": "ABC123DEFG", "team_id": "TEAM123456", "topic": "com.example.chat"},
                "fcm": {"service_account": service_account()},
                "web_push": {"subject": "mailto:ops@example.com"},
                "preview": "generic",
            }}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let push = &set.body["push"];
    assert_eq!(push["apns"]["key_id"], "ABC123DEFG", "{push}");
    assert_eq!(push["apns"]["topic"], "com.example.chat");
    assert_eq!(push["fcm"]["project_id"], "mkondo-test");
    assert_eq!(push["preview"], "generic");
    let public_key = push["web_push"]["public_key"].as_str().unwrap().to_owned();
    assert_eq!(public_key.len(), 87, "65 bytes in base64url: {public_key}");
    assert!(
        public_key.starts_with('B'),
        "an uncompressed point: {public_key}"
    );
    for answer in [set.text.clone(), op.get("/v1/admin/apps").await.text] {
        assert!(
            !answer.contains("PRIVATE KEY"),
            "a key answered back: {answer}"
        );
        assert!(
            !answer.contains("private_key"),
            "a key answered back: {answer}"
        );
    }
    let stored = std::fs::read(server.database()).unwrap();
    let needle = b"BEGIN PRIVATE KEY";
    assert!(
        !stored.windows(needle.len()).any(|w| w == needle),
        "a key stored in the clear"
    );

    // The app's clients get the VAPID key to subscribe with.
    let (alice, _) = server.client(Transport::WsJson, "alice").await;
    match alice
        .request(Command::Devices(v1::DevicesRequest {}))
        .await
        .unwrap()
    {
        R::Devices(d) => assert_eq!(d.web_push_key, public_key),
        other => panic!("unexpected reply {other:?}"),
    }

    // Bad input is refused whole: nothing changes.
    let refused = [
        json!({"apns": {"key": "not a key", "key_id": "ABC123DEFG", "team_id": "TEAM123456", "topic": "com.example.chat"}}),
        json!({"apns": {"key": APNS_P8, "key_id": "ABC123DEFG", "team_id": "TEAM123456", "topic": "com example"}}),
        json!({"apns": {"key": FCM_RSA, "key_id": "ABC123DEFG", "team_id": "TEAM123456", "topic": "com.example.chat"}}),
        json!({"fcm": {"service_account": {"type": "service_account", "project_id": "x"}}}),
        json!({"fcm": {"service_account": "a string"}}),
        json!({"web_push": {"subject": "ops@example.com"}}),
        json!({"web_push": {"subject": "mailto:ops@example.com", "private_key": "short"}}),
        json!({"preview": "loud", "web_push": null}),
    ];
    for body in refused {
        op.patch(&path, json!({ "push": body }))
            .await
            .expect_error(422, "invalid_argument");
    }
    let listed = op.get("/v1/admin/apps").await.ok();
    let same = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app_id"] == app.as_str())
        .unwrap();
    assert_eq!(same["push"]["web_push"]["public_key"], public_key.as_str());
    assert_eq!(same["push"]["preview"], "generic");

    // A provider removed on its own; a VAPID key brought along is kept.
    let removed = op.patch(&path, json!({"push": {"apns": null}})).await.ok();
    assert!(removed["push"]["apns"].is_null(), "{removed}");
    assert_eq!(removed["push"]["fcm"]["project_id"], "mkondo-test");
    let brought = op
        .patch(
            &path,
            json!({"push": {"web_push": {"subject": "https://example.com/contact", "private_key": "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"}}}),
        )
        .await
        .ok();
    assert_eq!(
        brought["push"]["web_push"]["public_key"],
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
        "the public key of the key given"
    );
}

/// The CLI sets the same settings on the database, from files.
#[tokio::test]
async fn the_cli_sets_push_credentials_from_files() {
    let server = TestServer::start(ServerOptions::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let p8 = dir.path().join("AuthKey.p8");
    std::fs::write(&p8, APNS_P8).unwrap();
    let account = dir.path().join("service-account.json");
    std::fs::write(&account, service_account().to_string()).unwrap();
    let out = server
        .cli(&[
            "app",
            "update",
            "--app",
            &server.app.app_id,
            "--apns-key-file",
            p8.to_str().unwrap(),
            "--apns-key-id",
            "ABC123DEFG",
            "--apns-team-id",
            "TEAM123456",
            "--apns-topic",
            "com.example.chat",
            "--fcm-service-account-file",
            account.to_str().unwrap(),
            "--web-push-subject",
            "mailto:ops@example.com",
            "--push-preview",
            "none",
            "--json",
        ])
        .await;
    let overview: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        overview["push"]["apns"]["team_id"], "TEAM123456",
        "{overview}"
    );
    assert_eq!(
        overview["push"]["fcm"]["client_email"],
        "push@mkondo-test.iam.gserviceaccount.com"
    );
    assert_eq!(overview["push"]["preview"], "none");
    assert!(!out.contains("PRIVATE KEY"), "{out}");
}
