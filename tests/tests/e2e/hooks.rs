//! The before-send hook against a real receiver: an HTTP server on loopback (axum)
//! that checks every call's `Mkondo-Signature` with the secret the operator API
//! answered, records what it verified, and answers by the message's text:
//! `reject…` → reject, `replace…` → replace, `oversize…` → a replacement over
//! the text cap, `slow…` → answers after 3 s, anything else → allow. A call
//! whose signature does not verify is answered 401 and counted apart, so every
//! test also proves the calls were signed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use mkondo_sdk::{Config, Error, ErrorCode, Event, TransportKind};
use mkondo_server::outbound::sign::{verify, SIGNATURE_HEADER};
use mkondo_tests::{ServerOptions, TestServer};
use serde_json::{json, Value};

use crate::sdk_common::{client, connected};

const SECRET: &str = "operator-secret-for-hook-tests-01";
/// The secrets key given on PostgreSQL, where the server makes none itself
/// (on SQLite the server keeps its own beside the database, which the CLI reads).
const SECRETS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn on_postgres() -> bool {
    std::env::var("MKONDO_TEST_STORE").as_deref() == Ok("postgres")
}

/// The operator API on, and the secrets key where the server needs one given.
fn options() -> ServerOptions {
    let opts = ServerOptions::new().operator_secret(SECRET);
    if on_postgres() {
        opts.flag("--secrets-key", SECRETS_KEY)
    } else {
        opts
    }
}

#[derive(Default)]
struct Seen {
    /// The bodies of the calls whose signature verified, in order.
    verified: Vec<Value>,
    /// Calls whose signature did not verify.
    unsigned: usize,
}

/// The receiver: its address, what it saw, and the secret it checks with
/// (set once the operator API answered it).
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    secret: Arc<Mutex<Option<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let secret = Arc::new(Mutex::new(None));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver { addr, seen, secret };
        let app = Router::new()
            .route("/hook", post(answer))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn verified(&self) -> Vec<Value> {
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.unsigned, 0, "a call without a valid signature");
        seen.verified.clone()
    }
}

async fn answer(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> (StatusCode, String) {
    let secret = r.secret.lock().unwrap().clone().unwrap_or_default();
    let header = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if !verify(header, secret.as_bytes(), &body, now, 300) {
        r.seen.lock().unwrap().unsigned += 1;
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    let call: Value = serde_json::from_slice(&body).unwrap();
    r.seen.lock().unwrap().verified.push(call.clone());
    let text = call["message"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let verdict = if text.starts_with("reject") {
        json!({"action": "reject", "reason": "no rejects here"})
    } else if text.starts_with("replace") {
        json!({"action": "replace", "text": "[replaced]", "data": {"moderated": true}})
    } else if text.starts_with("oversize") {
        json!({"action": "replace", "text": "x".repeat(17 * 1024)})
    } else if text.starts_with("slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
        json!({"action": "allow"})
    } else {
        json!({"action": "allow"})
    };
    (StatusCode::OK, verdict.to_string())
}

/// A server that may call loopback, a receiver, the main app's hook set to it,
/// and a group of alice and bob.
async fn hooked(settings: Value) -> (TestServer, Receiver, String) {
    let server = TestServer::start(options().outbound_allow_private().unlimited_rate()).await;
    let receiver = Receiver::start().await;
    set_hook(&server, &receiver, settings).await;
    server.api().create_users(&["alice", "bob"]).await;
    let conv = server.api().create_group("hooked", &["alice", "bob"]).await;
    (server, receiver, conv)
}

/// Sets the hook (the receiver's URL plus `settings`); the receiver learns the
/// secret from the answer, which shows it this once.
async fn set_hook(server: &TestServer, receiver: &Receiver, settings: Value) -> Value {
    let mut hook = json!({"url": receiver.url()});
    hook.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    let app = server
        .rest_as(SECRET)
        .patch(
            &format!("/v1/admin/apps/{}", server.app.app_id),
            json!({"before_send_hook": hook}),
        )
        .await
        .ok();
    let secret = app["before_send_hook"]["secret"]
        .as_str()
        .expect("the secret, shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    *receiver.secret.lock().unwrap() = Some(secret);
    app
}

fn sdk_config(server: &TestServer, user: &str) -> Config {
    Config::new(
        format!("http://{}", server.addr),
        TransportKind::WebSocketJson,
    )
    .with_token(server.app.token(user))
}

#[tokio::test]
async fn the_hook_allows_rejects_and_replaces_what_the_sdk_sends() {
    let (server, receiver, conv) = hooked(json!({})).await;
    let (alice, _) = client(sdk_config(&server, "alice"));
    let (bob, bob_events) = client(sdk_config(&server, "bob"));
    connected(&alice).await;
    connected(&bob).await;
    bob.subscribe(&conv).await.unwrap();

    // Allowed: stored as sent; the hook saw the message as the protocol says.
    let sent = alice.send_text(&conv, "hello").await.unwrap();
    assert_eq!(sent.text, "hello");
    let calls = receiver.verified();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call["type"], "message.before_send");
    assert_eq!(call["app_id"], server.app.app_id.as_str());
    assert_eq!(call["conversation_id"], conv.as_str());
    assert_eq!(call["sender_id"], "alice");
    assert_eq!(call["message"]["text"], "hello");
    assert_eq!(call["message"]["kind"], "user");
    assert_eq!(call["message"]["client_id"], sent.client_id.as_str());
    assert!(call.get("seq").is_none(), "only edits carry a seq");

    // Rejected: the SDK sees the code and the hook's reason; nothing stored.
    match alice.send_text(&conv, "reject me").await {
        Err(Error::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::Rejected);
            assert_eq!(message, "no rejects here");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }

    // Replaced: what is stored and delivered is the hook's version.
    let from = bob_events.len();
    let replaced = alice.send_text(&conv, "replace this").await.unwrap();
    assert_eq!(replaced.text, "[replaced]");
    let got = bob_events
        .wait_for("the replaced message", from, |e| match e {
            Event::Message(m) if m.seq == replaced.seq => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(got.text, "[replaced]");
    let history = server.api().history_all(&conv).await;
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello", "[replaced]"]);
    assert_eq!(history[1]["data"], json!({"moderated": true}));

    // A replacement is checked like any input: over the text cap, refused.
    match alice.send_text(&conv, "oversize please").await {
        Err(Error::Server { code, message, .. }) => {
            assert_eq!(code, ErrorCode::TooLarge);
            assert!(message.contains("replacement"), "{message}");
        }
        other => panic!("expected too_large, got {other:?}"),
    }
    assert_eq!(server.api().history_all(&conv).await.len(), 2);
    assert_eq!(receiver.verified().len(), 4);

    // The latency is a metric, by outcome.
    let metrics = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for outcome in ["allow", "reject", "replace"] {
        let line = format!("mkondo_hook_duration_seconds_count{{outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn a_retried_send_does_not_call_the_hook_again() {
    let (server, receiver, conv) = hooked(json!({})).await;
    let api = server.api();
    let first = api.send(&conv, "alice", "replace me", "retry-1").await;
    let again = api.send(&conv, "alice", "replace me", "retry-1").await;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(
        again["text"], "[replaced]",
        "the stored message, as replaced"
    );
    assert_eq!(
        receiver.verified().len(),
        1,
        "the hook was called for the retry"
    );
    // Another client_id is another message: called again.
    api.send(&conv, "alice", "hi", "retry-2").await;
    assert_eq!(receiver.verified().len(), 2);
    // A sender who is not a member never reaches the hook.
    api.create_users(&["carol"]).await;
    api.post(
        &format!("/v1/conversations/{conv}/messages"),
        json!({"sender_id": "carol", "text": "let me in"}),
    )
    .await
    .expect_error(403, "permission_denied");
    assert_eq!(receiver.verified().len(), 2);
}

#[tokio::test]
async fn an_edit_goes_through_the_hook() {
    let (server, receiver, conv) = hooked(json!({})).await;
    let (alice, _) = client(sdk_config(&server, "alice"));
    connected(&alice).await;
    let sent = alice.send_text(&conv, "first").await.unwrap();

    match alice
        .edit_message(&conv, sent.seq, "reject this edit", None)
        .await
    {
        Err(Error::Server { code, message, .. }) => {
            assert_eq!(
                (code, message.as_str()),
                (ErrorCode::Rejected, "no rejects here")
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let edited = alice
        .edit_message(&conv, sent.seq, "replace my edit", None)
        .await
        .unwrap();
    assert_eq!(edited.text, "[replaced]");
    let edited = alice
        .edit_message(&conv, sent.seq, "second", None)
        .await
        .unwrap();
    assert_eq!(edited.text, "second");

    let calls = receiver.verified();
    assert_eq!(calls.len(), 4);
    let edit = &calls[3];
    assert_eq!(edit["type"], "message.before_edit");
    assert_eq!(edit["seq"], sent.seq);
    assert_eq!(edit["sender_id"], "alice");
    assert_eq!(edit["message"]["text"], "second");
}

#[tokio::test]
async fn a_hook_that_does_not_answer_in_time_fails_closed_or_open() {
    let (server, receiver, conv) = hooked(json!({"timeout_ms": 300})).await;
    let api = server.api();
    // Fail-closed, the default: refused, typed, and nothing stored.
    let started = Instant::now();
    let refused = api
        .post(
            &format!("/v1/conversations/{conv}/messages"),
            json!({"sender_id": "alice", "text": "slow one"}),
        )
        .await
        .expect_error(503, "unavailable");
    assert_eq!(refused["error"]["reason"], "hook_failed");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(api.history_all(&conv).await.is_empty());

    // Fail-open: stored as sent.
    set_hook(
        &server,
        &receiver,
        json!({"timeout_ms": 300, "fail_open": true}),
    )
    .await;
    let stored = api.send(&conv, "alice", "slow two", "open-1").await;
    assert_eq!(stored["text"], "slow two");
    assert_eq!(api.history_all(&conv).await.len(), 1);

    // A hook that cannot be reached at all fails the same way (closed here).
    let gone = format!("http://127.0.0.1:{}/hook", mkondo_tests::free_port());
    let app = server
        .rest_as(SECRET)
        .patch(
            &format!("/v1/admin/apps/{}", server.app.app_id),
            json!({"before_send_hook": {"url": gone, "timeout_ms": 300}}),
        )
        .await
        .ok();
    assert_eq!(app["before_send_hook"]["fail_open"], false);
    api.post(
        &format!("/v1/conversations/{conv}/messages"),
        json!({"sender_id": "alice", "text": "anyone?"}),
    )
    .await
    .expect_error(503, "unavailable");

    // Removed: messages are stored without a call.
    let app = server
        .rest_as(SECRET)
        .patch(
            &format!("/v1/admin/apps/{}", server.app.app_id),
            json!({"before_send_hook": null}),
        )
        .await
        .ok();
    assert!(app.get("before_send_hook").is_none(), "{app}");
    let before = receiver.verified().len();
    api.send(&conv, "alice", "reject? no hook now", "none-1")
        .await;
    assert_eq!(receiver.verified().len(), before);
}

#[tokio::test]
async fn hook_urls_must_be_public_https_without_the_operator_setting() {
    let server = TestServer::start(options()).await;
    let path = format!("/v1/admin/apps/{}", server.app.app_id);
    let receiver = Receiver::start().await;
    for url in [
        receiver.url(),
        format!("https://127.0.0.1:{}/hook", receiver.addr.port()),
        format!("https://localhost:{}/hook", receiver.addr.port()),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "https://10.0.0.1/hook".to_owned(),
        "https://[::1]/hook".to_owned(),
        "https://[::ffff:127.0.0.1]/hook".to_owned(),
    ] {
        let body = server
            .rest_as(SECRET)
            .patch(&path, json!({"before_send_hook": {"url": url}}))
            .await
            .expect_error(422, "invalid_argument");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("url:"),
            "{url}: {body}"
        );
    }
    for bad in [
        json!({"url": "https://example.com/hook", "timeout_ms": 10_001}),
        json!({"url": "https://example.com/hook", "timeout_ms": 0}),
        json!({"url": "https://example.com/hook", "retries": 3}),
    ] {
        server
            .rest_as(SECRET)
            .patch(&path, json!({"before_send_hook": bad}))
            .await
            .expect_error(422, "invalid_argument");
    }
    let listed = server.rest_as(SECRET).get("/v1/admin/apps").await.ok();
    assert!(
        listed.to_string().find("before_send_hook").is_none(),
        "{listed}"
    );

    // The CLI refuses the same URL, and takes it with the setting.
    let url = receiver.url();
    let mut args = vec![
        "app",
        "update",
        "--app",
        &server.app.app_id,
        "--before-send-hook",
        &url,
    ];
    if on_postgres() {
        args.extend(["--secrets-key", SECRETS_KEY]);
    }
    let (ok, _, stderr) = server.cli_result(&args).await;
    assert!(!ok && stderr.contains("outbound-allow-private"), "{stderr}");
    args.extend(["--hook-timeout-ms", "500", "--outbound-allow-private"]);
    let out = server.cli(&args).await;
    let secret_line = out
        .lines()
        .find(|l| l.starts_with("hook signing secret (shown once): whsec_"))
        .unwrap_or_else(|| panic!("no secret printed: {out}"));
    let secret = secret_line.rsplit(' ').next().unwrap();
    // Listed without its secret, neither by the API nor the CLI.
    let listed = server.rest_as(SECRET).get("/v1/admin/apps").await.ok();
    assert_eq!(
        listed["items"][0]["before_send_hook"]["url"],
        receiver.url()
    );
    assert_eq!(listed["items"][0]["before_send_hook"]["timeout_ms"], 500);
    assert!(!listed.to_string().contains(secret));
    let listed = server.cli(&["app", "list", "--json"]).await;
    assert!(!listed.contains(secret));
    // The secret is stored sealed: the database file never holds it in the clear.
    if on_postgres() {
        return;
    }
    let db = std::fs::read(server.database()).unwrap();
    let wal = std::fs::read(server.database().with_extension("db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in the database in the clear"
        );
    }
}

#[tokio::test]
async fn the_backend_manages_its_hook_over_rest_and_grpc_alike() {
    use crate::admin_common::admin;
    use mkondo_proto::v1::SetBeforeSendHookRequest;
    use pbjson_types::Empty;
    use reqwest::Method;
    use tonic::Code;

    let server = TestServer::start(options().outbound_allow_private().unlimited_rate()).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let mut grpc = admin(&server).await;
    let put = |body: Value| {
        let api = server.api();
        async move {
            api.request(
                Method::PUT,
                "/v1/before-send-hook",
                Some(body.to_string().into_bytes()),
            )
            .await
        }
    };

    // None yet, on both.
    api.get("/v1/before-send-hook")
        .await
        .expect_error(404, "not_found");
    let none = grpc.get_before_send_hook(Empty {}).await.unwrap_err();
    assert_eq!(none.code(), Code::NotFound);

    // Set over REST: the secret once; listed alike on both without it.
    let set = put(json!({"url": receiver.url(), "timeout_ms": 700}))
        .await
        .ok();
    let first_secret = set["secret"].as_str().unwrap().to_owned();
    assert!(first_secret.starts_with("whsec_"));
    let got = api.get("/v1/before-send-hook").await.ok();
    assert_eq!(
        got,
        json!({"url": receiver.url(), "timeout_ms": 700, "fail_open": false})
    );
    let twin = grpc
        .get_before_send_hook(Empty {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            twin.url.as_str(),
            twin.timeout_ms,
            twin.fail_open,
            twin.secret.as_str()
        ),
        (receiver.url().as_str(), 700, false, "")
    );

    // Set over gRPC: replaced whole, a new secret, which the next call is signed with.
    let again = grpc
        .set_before_send_hook(SetBeforeSendHookRequest {
            url: receiver.url(),
            timeout_ms: None,
            fail_open: Some(true),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.secret.starts_with("whsec_") && again.secret != first_secret);
    assert_eq!((again.timeout_ms, again.fail_open), (1000, true));
    *receiver.secret.lock().unwrap() = Some(again.secret.clone());
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("managed", &["alice", "bob"]).await;
    let refused = api
        .post(
            &format!("/v1/conversations/{conv}/messages"),
            json!({"sender_id": "alice", "text": "reject via the API key"}),
        )
        .await
        .expect_error(403, "rejected");
    assert_eq!(refused["error"]["message"], "no rejects here");
    assert_eq!(receiver.verified().len(), 1, "signed with the new secret");

    // The same refusals on both: a bad URL, a user token.
    put(json!({"url": "ftp://example.com/hook"}))
        .await
        .expect_error(422, "invalid_argument");
    let bad = grpc
        .set_before_send_hook(SetBeforeSendHookRequest {
            url: "ftp://example.com/hook".into(),
            timeout_ms: None,
            fail_open: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    server
        .rest_as(&server.app.token("alice"))
        .get("/v1/before-send-hook")
        .await
        .expect_error(403, "permission_denied");

    // Removed over gRPC: gone for REST; removing again is no error.
    grpc.delete_before_send_hook(Empty {}).await.unwrap();
    api.get("/v1/before-send-hook")
        .await
        .expect_error(404, "not_found");
    api.delete("/v1/before-send-hook").await.expect(204);
    api.send(&conv, "alice", "reject? there is no hook", "m-2")
        .await;
    assert_eq!(receiver.verified().len(), 1);
}
