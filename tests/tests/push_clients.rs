//! The push clients against loopback providers that check what they get
//! with independent libraries (PyJWT, `cryptography`, `http_ece`; see
//! tests/push-providers/): our Rust code is never its own judge. Each test
//! starts its server as a child process, drives a client, and asserts on
//! what the server recorded.
//!
//! The loopback servers: `mkondo_tests::push_providers`.

use std::sync::Arc;
use std::time::Duration;

use mkondo_push::apns::{
    new_apns_id, Alert, ApnsClient, ApnsKey, ApnsNotification, ApnsPayload, PushType,
};
use mkondo_push::fcm::{AndroidConfig, FcmClient, FcmMessage, FcmNotification, ServiceAccount};
use mkondo_push::webpush::{Subscription, Urgency, VapidKey, WebPushClient, WebPushMessage};
use mkondo_push::{Error, Outcome};
use mkondo_tests::push_providers::{
    assert_no_errors, tls_client, LoopbackApns, Provider, APNS_BUNDLE as BUNDLE,
    APNS_KEY_ID as KEY_ID, APNS_TEAM_ID as TEAM_ID,
};
use serde_json::{json, Value};
use url::Url;

// ---------------------------------------------------------------- APNs

fn device(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

struct ApnsSetup {
    server: LoopbackApns,
    client: ApnsClient,
    ca: Vec<u8>,
    p8: String,
}

fn start_apns() -> ApnsSetup {
    let apns = LoopbackApns::start();
    let key = ApnsKey::from_p8(&apns.p8, KEY_ID, TEAM_ID).unwrap();
    let http = tls_client(&apns.ca, true);
    let client = ApnsClient::new(http, Url::parse(&apns.server.url).unwrap(), key);
    ApnsSetup {
        client,
        ca: apns.ca.clone(),
        p8: apns.p8.clone(),
        server: apns,
    }
}

fn alert(token: &str) -> ApnsNotification {
    let mut n = ApnsNotification::new(
        token,
        BUNDLE,
        PushType::Alert,
        new_apns_id(),
        ApnsPayload {
            alert: Some(Alert {
                title: "Ana".into(),
                body: "Lunch at one?".into(),
            }),
            badge: Some(4),
            sound: Some("default".into()),
            thread_id: Some("conv-1".into()),
            mutable_content: true,
            custom: [
                ("conversation".to_owned(), json!("conv-1")),
                ("seq".to_owned(), json!(17)),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        },
    );
    n.collapse_id = Some("conv-1".into());
    n.expiration = Some(1_900_000_000);
    n
}

#[tokio::test]
async fn apns_accepts_what_pyjwt_and_the_checks_accept_and_reuses_the_token() {
    let ApnsSetup { server, client, .. } = start_apns();
    let first = alert(&device(1));
    let second = alert(&device(1));
    for n in [&first, &second] {
        assert_eq!(
            client.send(n).await.unwrap(),
            Outcome::Accepted {
                id: Some(n.apns_id.clone())
            }
        );
    }
    let mut voip = ApnsNotification::new(
        device(2),
        BUNDLE,
        PushType::Voip,
        new_apns_id(),
        ApnsPayload {
            custom: [("call".to_owned(), json!("c-9"))].into_iter().collect(),
            ..Default::default()
        },
    );
    voip.expiration = Some(0);
    assert!(matches!(
        client.send(&voip).await.unwrap(),
        Outcome::Accepted { .. }
    ));
    let background = ApnsNotification::new(
        device(3),
        BUNDLE,
        PushType::Background,
        new_apns_id(),
        ApnsPayload {
            content_available: true,
            badge: None,
            ..Default::default()
        },
    );
    assert!(matches!(
        client.send(&background).await.unwrap(),
        Outcome::Accepted { .. }
    ));

    let received = server.received().await;
    assert_eq!(received.len(), 4);
    assert_no_errors(&received);
    // One provider token for all four, verified by PyJWT with kid and iss.
    let jwt = &received[0]["jwt"];
    for r in &received {
        assert_eq!(&r["jwt"], jwt, "the provider token was not reused");
        assert_eq!(r["http_version"], "2");
        assert_eq!(r["jwt_header"]["kid"], KEY_ID);
        assert_eq!(r["jwt_claims"]["iss"], TEAM_ID);
    }
    let h = &received[0]["headers"];
    assert_eq!(h["apns-topic"], BUNDLE);
    assert_eq!(h["apns-push-type"], "alert");
    assert_eq!(h["apns-priority"], "10");
    assert_eq!(h["apns-collapse-id"], "conv-1");
    assert_eq!(h["apns-expiration"], "1900000000");
    assert_eq!(h["apns-id"], first.apns_id.as_str());
    assert_eq!(received[0]["device_token"], device(1));
    assert_eq!(
        received[0]["payload"],
        json!({
            "aps": {
                "alert": {"title": "Ana", "body": "Lunch at one?"},
                "badge": 4,
                "sound": "default",
                "thread-id": "conv-1",
                "mutable-content": 1
            },
            "conversation": "conv-1",
            "seq": 17
        })
    );
    assert_eq!(received[1]["headers"]["apns-id"], second.apns_id.as_str());
    assert_eq!(
        received[2]["headers"]["apns-topic"],
        format!("{BUNDLE}.voip")
    );
    assert_eq!(received[2]["headers"]["apns-push-type"], "voip");
    assert_eq!(received[2]["headers"]["apns-expiration"], "0");
    assert_eq!(received[3]["headers"]["apns-push-type"], "background");
    assert_eq!(received[3]["headers"]["apns-priority"], "5");
    assert_eq!(
        received[3]["payload"],
        json!({"aps": {"content-available": 1}})
    );
}

#[tokio::test]
async fn apns_answers_map_to_gone_retry_rejected_and_a_token_refresh() {
    let ApnsSetup { server, client, .. } = start_apns();
    server
        .script(json!({
            device(1): [{"status": 410}],
            device(2): [{"status": 400, "reason": "BadDeviceToken"}],
            device(3): [{"status": 503, "retry_after": 2}],
            device(4): [{"status": 400, "reason": "BadCollapseId"}],
            device(5): [{"status": 403, "reason": "ExpiredProviderToken"}],
            device(6): [
                {"status": 403, "reason": "InvalidProviderToken"},
                {"status": 403, "reason": "InvalidProviderToken"}
            ],
        }))
        .await;
    assert_eq!(
        client.send(&alert(&device(1))).await.unwrap(),
        Outcome::Gone {
            reason: "Unregistered".into()
        }
    );
    assert_eq!(
        client.send(&alert(&device(2))).await.unwrap(),
        Outcome::Gone {
            reason: "BadDeviceToken".into()
        }
    );
    match client.send(&alert(&device(3))).await.unwrap() {
        Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(2))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.send(&alert(&device(4))).await.unwrap(),
        Outcome::Rejected {
            status: 400,
            reason: "BadCollapseId".into()
        }
    );
    // Expired: a new token, the same push once more, accepted.
    let refreshed = alert(&device(5));
    assert_eq!(
        client.send(&refreshed).await.unwrap(),
        Outcome::Accepted {
            id: Some(refreshed.apns_id.clone())
        }
    );
    // Refused twice: the credentials are wrong, no third try.
    match client.send(&alert(&device(6))).await {
        Err(Error::Unauthorized {
            status: 403,
            reason,
        }) => {
            assert_eq!(reason, "InvalidProviderToken")
        }
        other => panic!("{other:?}"),
    }

    let received = server.received().await;
    let tokens: Vec<&str> = received
        .iter()
        .map(|r| r["jwt"].as_str().unwrap())
        .collect();
    assert_eq!(received.len(), 8, "{received:#?}");
    // Devices 1-4 and the first try for 5 share a token; 5's retry has a new
    // one (as its refused push had the same apns-id), and 6 renews it again.
    assert!(tokens[..5].iter().all(|t| *t == tokens[0]));
    assert_ne!(tokens[5], tokens[4]);
    assert_eq!(
        received[4]["headers"]["apns-id"],
        received[5]["headers"]["apns-id"]
    );
    assert_eq!(tokens[6], tokens[5]);
    assert_ne!(tokens[7], tokens[6]);
}

#[tokio::test]
async fn apns_needs_http2_and_never_falls_back_to_http1() {
    let ApnsSetup { server, ca, p8, .. } = start_apns();
    let key = ApnsKey::from_p8(&p8, KEY_ID, TEAM_ID).unwrap();
    let http1 = ApnsClient::new(
        tls_client(&ca, false),
        Url::parse(&server.url).unwrap(),
        key,
    );
    match http1.send(&alert(&device(1))).await {
        Err(Error::Transport(e)) => {
            let text = format!("{e:?}");
            assert!(text.contains("UserUnsupportedVersion"), "{text}");
            assert!(
                !text.contains(&device(1)),
                "the URL (device token) is logged: {text}"
            );
        }
        other => panic!("a connection without h2 must fail, got {other:?}"),
    }
    assert!(server.received().await.is_empty());
}

// ----------------------------------------------------------------- FCM

fn fcm_message(token: &str) -> FcmMessage {
    FcmMessage {
        token: token.into(),
        data: [
            ("conversation".to_owned(), "conv-1".to_owned()),
            ("seq".to_owned(), "17".to_owned()),
        ]
        .into(),
        notification: Some(FcmNotification {
            title: "Ana".into(),
            body: "Lunch at one?".into(),
        }),
        android: AndroidConfig {
            collapse_key: Some("conv-1".into()),
            ttl: Some(Duration::from_secs(3600)),
            ..Default::default()
        },
        apns: Some(json!({"headers": {"apns-collapse-id": "conv-1"}})),
        webpush: None,
    }
}

fn start_fcm() -> (Provider, FcmClient, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("service-account.json");
    let server = Provider::start(
        "fcm.py",
        &["--service-account-out", file.to_str().unwrap()],
        reqwest::Client::new(),
    );
    let json = std::fs::read_to_string(&file).unwrap();
    let account = ServiceAccount::from_json(&json).unwrap();
    let client = FcmClient::new(
        reqwest::Client::new(),
        Url::parse(&server.url).unwrap(),
        account,
    );
    (server, client, json, dir)
}

#[tokio::test]
async fn fcm_fetches_one_token_for_many_sends_and_maps_answers() {
    let (server, client, json, _dir) = start_fcm();
    // The account's private key never shows in Debug.
    let key: Value = serde_json::from_str(&json).unwrap();
    let pem = key["private_key"].as_str().unwrap();
    let body_line = pem.lines().nth(3).unwrap();
    for shown in [format!("{:?}", client.account()), format!("{client:?}")] {
        assert!(
            !shown.contains(body_line) && !shown.contains("PRIVATE KEY"),
            "{shown}"
        );
    }

    server
        .script(json!({
            "tok-gone": [{"status": 404, "error_code": "UNREGISTERED"}],
            "tok-gone-400": [{"status": 400, "error_code": "UNREGISTERED"}],
            "tok-busy": [{"status": 503, "retry_after": 3, "error_code": "UNAVAILABLE"}],
            "tok-bad": [{"status": 400, "error_code": "INVALID_ARGUMENT"}],
        }))
        .await;
    // Several at once: one token request between them.
    let client = Arc::new(client);
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..4 {
        let client = client.clone();
        sends.spawn(async move { client.send(&fcm_message(&format!("tok-ok-{n}"))).await });
    }
    while let Some(outcome) = sends.join_next().await {
        match outcome.unwrap().unwrap() {
            Outcome::Accepted { id: Some(id) } => {
                assert!(id.starts_with("projects/mkondo-loopback/messages/"), "{id}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        client.send(&fcm_message("tok-gone")).await.unwrap(),
        Outcome::Gone { .. }
    ));
    assert!(matches!(
        client.send(&fcm_message("tok-gone-400")).await.unwrap(),
        Outcome::Gone { .. }
    ));
    match client.send(&fcm_message("tok-busy")).await.unwrap() {
        Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(3))),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client.send(&fcm_message("tok-bad")).await.unwrap(),
        Outcome::Rejected { status: 400, .. }
    ));

    let received = server.received().await;
    assert_no_errors(&received);
    let tokens: Vec<&Value> = received.iter().filter(|r| r["kind"] == "token").collect();
    let sent: Vec<&Value> = received.iter().filter(|r| r["kind"] == "send").collect();
    assert_eq!(
        tokens.len(),
        1,
        "one access token for every send: {received:#?}"
    );
    assert_eq!(sent.len(), 8);
    let issued = &tokens[0]["issued"];
    assert!(sent.iter().all(|s| &s["access_token"] == issued));
    // The assertion PyJWT verified.
    let claims = &tokens[0]["jwt_claims"];
    assert_eq!(claims["iss"], key["client_email"]);
    assert_eq!(claims["aud"], key["token_uri"]);
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert_eq!(tokens[0]["jwt_header"]["kid"], key["private_key_id"]);
    let message = sent
        .iter()
        .find(|s| s["message"]["token"] == "tok-ok-0")
        .unwrap();
    assert_eq!(
        message["message"],
        fcm_message("tok-ok-0").to_json().unwrap()["message"]
    );
    assert_eq!(message["message"]["android"]["ttl"], "3600s");
}

#[tokio::test]
async fn fcm_refreshes_a_refused_token_once() {
    let (server, client, _json, _dir) = start_fcm();
    assert!(matches!(
        client.send(&fcm_message("tok-1")).await.unwrap(),
        Outcome::Accepted { .. }
    ));
    // A key rotation: every token issued so far is now refused.
    server.post("/_revoke", json!({})).await;
    assert!(matches!(
        client.send(&fcm_message("tok-2")).await.unwrap(),
        Outcome::Accepted { .. }
    ));
    // The token endpoint itself busy: the push is to be retried.
    server.post("/_revoke", json!({})).await;
    server
        .script(json!({"_token": [{"status": 503, "retry_after": 5}]}))
        .await;
    match client.send(&fcm_message("tok-3")).await.unwrap() {
        Outcome::Retry { after, reason } => {
            assert_eq!(after, Some(Duration::from_secs(5)));
            assert!(reason.starts_with("token endpoint"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let received = server.received().await;
    let kinds: Vec<(&str, u64)> = received
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["answer"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("token", 200),
            ("send", 200),
            ("send", 401),
            ("token", 200),
            ("send", 200),
            ("send", 401),
            ("token", 503),
        ]
    );
}

// ------------------------------------------------------------ Web Push

const CONTACT: &str = "mailto:ops@example.com";

async fn subscribe(server: &Provider, key: &VapidKey) -> (String, Subscription) {
    let sub = server
        .post(
            "/_subscriptions",
            json!({"application_server_key": key.application_server_key()}),
        )
        .await;
    let subscription = Subscription::new(
        sub["endpoint"].as_str().unwrap(),
        sub["keys"]["p256dh"].as_str().unwrap(),
        sub["keys"]["auth"].as_str().unwrap(),
    )
    .unwrap();
    (sub["id"].as_str().unwrap().to_owned(), subscription)
}

#[tokio::test]
async fn web_push_payloads_decrypt_with_http_ece_and_vapid_verifies() {
    let server = Provider::start("webpush.py", &[], reqwest::Client::new());
    let vapid = VapidKey::generate();
    let (id, subscription) = subscribe(&server, &vapid).await;
    let client = WebPushClient::new(reqwest::Client::new(), vapid.clone(), CONTACT).unwrap();

    let payload = json!({"conversation": "conv-1", "seq": 17, "preview": "Lunch at one? ☕"});
    let message = WebPushMessage {
        payload: serde_json::to_vec(&payload).unwrap(),
        ttl: Duration::from_secs(3600),
        urgency: Urgency::High,
        topic: Some("conv-1".into()),
    };
    match client.send(&subscription, &message).await.unwrap() {
        Outcome::Accepted { id: Some(location) } => {
            assert!(location.starts_with(&server.url), "{location}")
        }
        other => panic!("{other:?}"),
    }
    // The largest payload: a body of exactly 4096 bytes, binary.
    let full: Vec<u8> = (0..mkondo_push::webpush::MAX_PLAINTEXT)
        .map(|i| (i * 7) as u8)
        .collect();
    let big = WebPushMessage {
        payload: full.clone(),
        ttl: Duration::ZERO,
        ..Default::default()
    };
    assert!(matches!(
        client.send(&subscription, &big).await.unwrap(),
        Outcome::Accepted { .. }
    ));

    let received = server.received().await;
    assert_no_errors(&received);
    assert_eq!(received.len(), 2);
    let first = &received[0];
    assert_eq!(first["subscription"], id);
    let plaintext: Value = serde_json::from_str(first["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(plaintext, payload);
    assert_eq!(first["ttl"], 3600);
    assert_eq!(first["urgency"], "high");
    assert_eq!(first["topic"], "conv-1");
    assert_eq!(first["record_size"], 4096);
    assert_eq!(first["headers"]["content-encoding"], "aes128gcm");
    assert_eq!(first["vapid"]["k"], vapid.application_server_key());
    assert_eq!(first["vapid"]["claims"]["aud"], server.url.as_str());
    assert_eq!(first["vapid"]["claims"]["sub"], CONTACT);
    assert_eq!(received[1]["body_length"], 4096);
    assert_eq!(received[1]["ttl"], 0);
    assert_eq!(
        received[1]["plaintext_b64"],
        base64_url(&full),
        "the full-size payload came back changed"
    );
}

#[tokio::test]
async fn web_push_answers_map_to_gone_retry_and_rejected() {
    let server = Provider::start("webpush.py", &[], reqwest::Client::new());
    let vapid = VapidKey::generate();
    let (id, subscription) = subscribe(&server, &vapid).await;
    let client = WebPushClient::new(reqwest::Client::new(), vapid, CONTACT).unwrap();
    let message = WebPushMessage {
        payload: b"hello".to_vec(),
        ttl: Duration::from_secs(60),
        ..Default::default()
    };
    server
        .script(json!({id.clone(): [
            {"status": 429, "retry_after": 4},
            {"status": 503},
            {"status": 410},
        ]}))
        .await;
    match client.send(&subscription, &message).await.unwrap() {
        Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(4))),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client.send(&subscription, &message).await.unwrap(),
        Outcome::Retry { after: None, .. }
    ));
    assert!(matches!(
        client.send(&subscription, &message).await.unwrap(),
        Outcome::Gone { .. }
    ));
    // An endpoint the service does not know: 404, gone. (Any P-256 point
    // will do as its p256dh.)
    let unknown = Subscription::new(
        &format!("{}/push/nobody", server.url),
        &VapidKey::generate().application_server_key(),
        "BTBZMqHH6r4Tts7J_aSIgg",
    )
    .unwrap();
    assert!(matches!(
        client.send(&unknown, &message).await.unwrap(),
        Outcome::Gone { .. }
    ));
    // A subscription made for another application server key: 403, and
    // sending again cannot help.
    let (_, foreign) = subscribe(&server, &VapidKey::generate()).await;
    assert!(matches!(
        client.send(&foreign, &message).await.unwrap(),
        Outcome::Rejected { status: 403, .. }
    ));
    let received = server.received().await;
    assert_no_errors(&received[..3]);
    assert_eq!(received.len(), 5);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
