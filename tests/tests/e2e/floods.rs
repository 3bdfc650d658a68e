//! Floods on the request APIs: the command rate per principal on REST and the
//! Admin gRPC API (a user token shares its user's real-time budget, an API key
//! has its own), the cap on requests in progress, and failed authentication
//! limited per client address (REST, operator API, Admin gRPC, real-time
//! connect), with `X-Forwarded-For` believed only from trusted proxies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use mkondo_proto::v1::GetUserRequest;
use mkondo_tests::{per_transport, ServerOptions, TestServer, Transport, WAIT};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::admin_common::{admin, admin_as, error_code};

/// A well-formed API key that no server knows.
const UNKNOWN_API_KEY: &str = "mk_main_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// A response with its headers.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// A 429 `rate_limited` in the standard error format, with `Retry-After`.
    #[track_caller]
    fn assert_rate_limited(&self) {
        assert_eq!(self.status, 429, "{}", self.body);
        assert_eq!(self.code(), "rate_limited", "{}", self.body);
        assert!(
            self.body["error"]["request_id"].is_string(),
            "{}",
            self.body
        );
        let secs = self.retry_after.expect("429 without Retry-After");
        assert!((1..=60).contains(&secs), "Retry-After: {secs}");
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

async fn call(
    http: &reqwest::Client,
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    bearer: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut req = http
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(bearer);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = resp.text().await.unwrap_or_default();
    Answer {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn get(http: &reqwest::Client, addr: SocketAddr, path: &str, bearer: &str) -> Answer {
    call(http, addr, reqwest::Method::GET, path, bearer, &[], None).await
}

/// 300 messages posted at once with one user token, against the real-time limit
/// of 20/s with a burst of 50: the burst passes, the rest get 429 `rate_limited`
/// with `Retry-After`, and nothing past the budget is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_token_is_held_to_the_real_time_rate_on_rest() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("flood", &["alice", "bob"]).await;
    let token = server.app.token("alice");
    let http = http();
    let path = format!("/v1/conversations/{conv}/messages");
    let started = Instant::now();
    let answers = join_all((0..300).map(|i| {
        call(
            &http,
            server.addr,
            reqwest::Method::POST,
            &path,
            &token,
            &[],
            Some(json!({ "text": format!("m{i}"), "client_id": format!("c{i}") })),
        )
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers
        .iter()
        .filter(|a| a.status == 201 || a.status == 200)
        .count();
    let limited: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(ok + limited.len(), 300, "only 2xx and 429 expected");
    assert!(
        !limited.is_empty(),
        "300 messages in {elapsed:.2} s were all accepted"
    );
    for a in &limited {
        a.assert_rate_limited();
    }
    let allowed = 50.0 + 20.0 * elapsed + 5.0;
    assert!(
        ok >= 40 && (ok as f64) <= allowed,
        "{ok} of 300 accepted in {elapsed:.2} s with a burst of 50 at 20/s"
    );
    let stored = api.history_all(&conv).await.len();
    assert_eq!(stored, ok, "what was refused was not stored");
}

/// A user's REST requests and real-time commands draw from one budget: once REST
/// has spent it, the user's live connection is refused too (and the other way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_real_time_share_a_users_budget() {
    let server = TestServer::start(ServerOptions::new().rate(1, 10)).await;
    let (alice, _) = server.client(Transport::WsJson, "alice").await;
    let token = server.app.token("alice");
    let http = http();
    let mut refused = false;
    for _ in 0..30 {
        if get(&http, server.addr, "/v1/me/conversations", &token)
            .await
            .status
            == 429
        {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "30 REST requests against a burst of 10 were all served"
    );
    let err = alice.ping().await.expect_err("the budget is spent");
    assert_eq!(err.code, "rate_limited", "{err:?}");
    assert!(err.retry_after_ms > 0, "{err:?}");

    // Bob spends his budget on his connection; then REST refuses him.
    let (bob, _) = server.client(Transport::WsJson, "bob").await;
    let results = join_all((0..30).map(|_| bob.ping())).await;
    assert!(
        results.iter().any(|r| r.is_err()),
        "30 pings on a burst of 10"
    );
    get(
        &http,
        server.addr,
        "/v1/me/conversations",
        &server.app.token("bob"),
    )
    .await
    .assert_rate_limited();
    // Carol, another user, is untouched.
    let carol = get(
        &http,
        server.addr,
        "/v1/me/conversations",
        &server.app.token("carol"),
    )
    .await;
    assert_eq!(carol.status, 200, "{}", carol.body);
}

/// An API key has its own limit, larger by default (300 requests at once pass),
/// and set by `--api-key-rate-per-second` / `--api-key-rate-burst`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_has_its_own_larger_limit() {
    let server = TestServer::start_default().await;
    let http = http();
    let key = server.app.api_key.clone();
    let answers = join_all((0..300).map(|_| get(&http, server.addr, "/v1/users", &key))).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(ok, 300, "the default API-key burst serves 300 at once");

    let server = TestServer::start(
        ServerOptions::new()
            .flag("--api-key-rate-per-second", 5)
            .flag("--api-key-rate-burst", 10),
    )
    .await;
    let key = server.app.api_key.clone();
    let started = Instant::now();
    let answers = join_all((0..60).map(|_| get(&http, server.addr, "/v1/users", &key))).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert!(
        ok >= 10 && (ok as f64) <= 10.0 + 5.0 * elapsed + 2.0,
        "{ok} of 60 in {elapsed:.2} s with a burst of 10 at 5/s"
    );
    for a in answers.iter().filter(|a| a.status != 200) {
        a.assert_rate_limited();
    }
    // A user token of the same app is not charged for the key's requests.
    let user = get(
        &http,
        server.addr,
        "/v1/me/conversations",
        &server.app.token("alice"),
    )
    .await;
    assert_eq!(user.status, 200, "{}", user.body);
    // And the key works again after the wait it was told.
    let wait = answers
        .iter()
        .filter_map(|a| a.retry_after)
        .max()
        .unwrap_or(1);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(get(&http, server.addr, "/v1/users", &key).await.status, 200);
}

/// The Admin gRPC API shares the API key's budget with REST and refuses past it
/// with `RESOURCE_EXHAUSTED`, the code in `ErrorInfo`/`mkondo-error-code` and the
/// wait in `RetryInfo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_grpc_is_rate_limited_per_api_key() {
    let server = TestServer::start(
        ServerOptions::new()
            .flag("--api-key-rate-per-second", 5)
            .flag("--api-key-rate-burst", 10),
    )
    .await;
    server.api().create_users(&["alice"]).await;
    let admin = admin(&server).await;
    let results = join_all((0..40).map(|_| {
        let mut admin = admin.clone();
        async move { admin.get_user(GetUserRequest { id: "alice".into() }).await }
    }))
    .await;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        !refused.is_empty(),
        "40 calls against a burst of 10 all served"
    );
    assert!(refused.len() < 40, "the burst was served");
    for status in refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(error_code(status), "rate_limited");
        let retry = status.get_details_retry_info().expect("RetryInfo");
        assert!(
            retry.retry_delay.is_some_and(|d| d > Duration::ZERO),
            "{retry:?}"
        );
    }
}

/// A raw request that sends its headers and part of its body, then waits: a
/// request in progress for as long as the connection is held.
async fn hold_a_request(addr: SocketAddr, key: &str) -> tokio::net::TcpStream {
    partial_request(addr, key, 100).await
}

/// A raw `POST /v1/users` announcing `content_length` bytes of body and sending
/// only its first few.
async fn partial_request(
    addr: SocketAddr,
    key: &str,
    content_length: usize,
) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/users HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {content_length}\r\n\r\n{{\"id\":"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// With `--max-concurrent-requests 2` and two requests in progress, a third is
/// answered at once with 503 `unavailable` and `Retry-After` (REST and gRPC), and
/// served again once they end; health checks are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_cap_get_503() {
    let server = TestServer::start(ServerOptions::new().flag("--max-concurrent-requests", 2)).await;
    let key = server.app.api_key.clone();
    let http = http();
    let held = vec![
        hold_a_request(server.addr, &key).await,
        hold_a_request(server.addr, &key).await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let answer = get(&http, server.addr, "/v1/users", &key).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once, not queued"
    );
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.code(), "unavailable", "{}", answer.body);
    assert!(answer.retry_after.is_some_and(|s| s >= 1), "Retry-After");
    let mut grpc = admin(&server).await;
    let status = grpc
        .get_user(GetUserRequest { id: "alice".into() })
        .await
        .expect_err("over the cap");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_code(&status), "unavailable");
    let health = http
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status().as_u16(),
        200,
        "health checks are not refused"
    );

    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&http, server.addr, "/v1/users", &key).await.status, 200);
}

fn auth_limit(n: u32) -> ServerOptions {
    ServerOptions::new().flag("--auth-failures-per-minute", n)
}

/// Bad API keys and bad tokens from one address: `n` are answered 401, then 429
/// `rate_limited` — for any credential from that address, good ones too.
/// Successful authentications do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_limited_per_address_on_rest() {
    let server = TestServer::start(auth_limit(4)).await;
    let http = http();
    let key = server.app.api_key.clone();
    for _ in 0..20 {
        assert_eq!(get(&http, server.addr, "/v1/users", &key).await.status, 200);
    }
    for bad in [
        UNKNOWN_API_KEY,
        "not.a.jwt",
        UNKNOWN_API_KEY,
        "still.not.ajwt",
    ] {
        let a = get(&http, server.addr, "/v1/users", bad).await;
        assert_eq!(a.status, 401, "{}", a.body);
    }
    get(&http, server.addr, "/v1/users", UNKNOWN_API_KEY)
        .await
        .assert_rate_limited();
    get(&http, server.addr, "/v1/me/conversations", "not.a.jwt")
        .await
        .assert_rate_limited();
    get(&http, server.addr, "/v1/users", &key)
        .await
        .assert_rate_limited();
}

/// Wrong operator secrets count too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_operator_secrets_are_limited_per_address() {
    let secret = "operator-secret-0123456789";
    let server = TestServer::start(auth_limit(3).flag("--operator-secret", secret)).await;
    let http = http();
    assert_eq!(
        get(&http, server.addr, "/v1/admin/apps", secret)
            .await
            .status,
        200
    );
    for _ in 0..3 {
        let a = get(
            &http,
            server.addr,
            "/v1/admin/apps",
            "wrong-secret-0123456789",
        )
        .await;
        assert_eq!(a.status, 401, "{}", a.body);
    }
    get(
        &http,
        server.addr,
        "/v1/admin/apps",
        "wrong-secret-0123456789",
    )
    .await
    .assert_rate_limited();
}

/// On the Admin gRPC API: `RESOURCE_EXHAUSTED` once the address is over its
/// failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_limited_per_address_on_admin_grpc() {
    let server = TestServer::start(auth_limit(3)).await;
    let mut bad = admin_as(&server, Some(UNKNOWN_API_KEY)).await;
    for _ in 0..3 {
        let status = bad
            .get_user(GetUserRequest { id: "alice".into() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let status = bad
        .get_user(GetUserRequest { id: "alice".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_code(&status), "rate_limited");
    assert!(status.get_details_retry_info().is_some(), "RetryInfo");
}

per_transport!(
    failed_connects_are_limited_per_address,
    bad_refresh_tokens_count_like_bad_connects
);

/// An in-band `refresh` with a bad token is a guess too: a session cannot be
/// used to try tokens beyond the address's failure budget.
async fn bad_refresh_tokens_count_like_bad_connects(transport: Transport) {
    let server = TestServer::start(auth_limit(3)).await;
    let (client, _) = server.client(transport, "alice").await;
    for _ in 0..3 {
        let err = client.refresh("not.a.jwt").await.unwrap_err();
        assert_eq!(err.code, "invalid_token", "{err:?}");
    }
    let err = client.refresh("not.a.jwt").await.unwrap_err();
    assert_eq!(err.code, "rate_limited", "{err:?}");
    let other = server.open(transport).await;
    let err = other
        .connect(&server.app.token("bob"), HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.code, "rate_limited", "{err:?}");
}

/// A real-time `connect` with a bad token counts; past the limit a connect (even
/// with a good token) is refused `rate_limited` and closed with `server_error`
/// (3005, reconnect later), the refusal code of a temporary error.
async fn failed_connects_are_limited_per_address(transport: Transport) {
    let server = TestServer::start(auth_limit(3)).await;
    for _ in 0..3 {
        let client = server.open(transport).await;
        let err = client
            .connect("not.a.jwt", HashMap::new())
            .await
            .unwrap_err();
        assert_eq!(err.code, "invalid_token", "{err:?}");
    }
    let client = server.open(transport).await;
    let err = client
        .connect(&server.app.token("alice"), HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.code, "rate_limited", "{err:?}");
    assert!(err.retry_after_ms > 0, "{err:?}");
    let closed = client.wait_closed(WAIT).await.expect("closed");
    assert_eq!(closed.code(), Some(3005), "{closed:?}");
}

/// `X-Forwarded-For` is ignored from a peer that is not a trusted proxy: a spoofed
/// address per request does not evade the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_forwarded_for_does_not_evade_the_limit() {
    let server = TestServer::start(auth_limit(3)).await;
    let http = http();
    for i in 0..3 {
        let xff = format!("203.0.113.{i}");
        let a = call(
            &http,
            server.addr,
            reqwest::Method::GET,
            "/v1/users",
            UNKNOWN_API_KEY,
            &[("x-forwarded-for", &xff)],
            None,
        )
        .await;
        assert_eq!(a.status, 401, "{}", a.body);
    }
    call(
        &http,
        server.addr,
        reqwest::Method::GET,
        "/v1/users",
        UNKNOWN_API_KEY,
        &[("x-forwarded-for", "203.0.113.99")],
        None,
    )
    .await
    .assert_rate_limited();
}

/// Behind a trusted proxy (`--trusted-proxies 127.0.0.1`), the client address is
/// the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy: two
/// clients are limited separately.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_trusted_proxy_are_limited_separately() {
    let server =
        TestServer::start(auth_limit(3).flag("--trusted-proxies", "127.0.0.1,10.0.0.0/8")).await;
    let http = http();
    let addr = server.addr;
    let as_client = |xff: &'static str| {
        let http = http.clone();
        async move {
            call(
                &http,
                addr,
                reqwest::Method::GET,
                "/v1/users",
                UNKNOWN_API_KEY,
                &[("x-forwarded-for", xff)],
                None,
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(as_client("198.51.100.7, 10.1.2.3").await.status, 401);
    }
    as_client("203.0.113.50, 198.51.100.7")
        .await
        .assert_rate_limited();
    let other = as_client("198.51.100.8").await;
    assert_eq!(
        other.status, 401,
        "another client is not limited: {}",
        other.body
    );
}

/// Guesses sent at once do not slip past the budget while it is being spent:
/// once an address has failed, each authentication in progress holds one unit
/// of its budget until it succeeds (given back) or fails (kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_do_not_exceed_the_failure_budget() {
    let server = TestServer::start(auth_limit(5)).await;
    let http = http();
    assert_eq!(
        get(&http, server.addr, "/v1/users", UNKNOWN_API_KEY)
            .await
            .status,
        401
    );
    let answers =
        join_all((0..40).map(|_| get(&http, server.addr, "/v1/users", UNKNOWN_API_KEY))).await;
    let unauthorized = answers.iter().filter(|a| a.status == 401).count();
    assert!(
        unauthorized <= 4,
        "{unauthorized} of 40 guesses at once were checked"
    );
    for a in answers.iter().filter(|a| a.status != 401) {
        a.assert_rate_limited();
    }
    // A good key from an address that never failed is not held back, even many at once.
    let other = TestServer::start(auth_limit(5)).await;
    let answers =
        join_all((0..40).map(|_| get(&http, other.addr, "/v1/users", &other.app.api_key))).await;
    assert!(
        answers.iter().all(|a| a.status == 200),
        "good keys at once are served"
    );
}

/// Only what a guesser produces counts against an address: a token that is
/// correctly signed but expired or revoked is no guess. Clients behind one
/// carrier NAT reconnecting with expired tokens (or after a mass revocation)
/// do not lock out everyone at that address; wrongly signed tokens still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validly_signed_but_refused_tokens_are_not_guesses() {
    let server = TestServer::start(auth_limit(5)).await;
    let http = http();
    let addr = server.addr;
    let key = server.app.api_key.clone();
    server.api().create_users(&["bob"]).await;
    let now = mkondo_tests::now_secs();

    let mut claims = server.app.claims("alice");
    claims.iat = Some(now - 3600);
    claims.exp = Some(now - 120);
    let expired = server.app.sign(&claims);
    for _ in 0..30 {
        let a = get(&http, addr, "/v1/me/conversations", &expired).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert_eq!(a.code(), "token_expired", "{}", a.body);
    }
    for _ in 0..10 {
        let client = server.open(Transport::WsJson).await;
        let err = client.connect(&expired, HashMap::new()).await.unwrap_err();
        assert_eq!(err.code, "token_expired", "{err:?}");
    }

    let mut claims = server.app.claims("bob");
    claims.iat = Some(now - 60);
    let revoked = server.app.sign(&claims);
    let r = call(
        &http,
        addr,
        reqwest::Method::POST,
        "/v1/users/bob/revoke-tokens",
        &key,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..10 {
        let a = get(&http, addr, "/v1/me/conversations", &revoked).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert_eq!(a.code(), "invalid_token", "{}", a.body);
    }

    // The address is not locked out: an API key, a user token and a real-time
    // connect from it are served.
    assert_eq!(get(&http, addr, "/v1/users", &key).await.status, 200);
    let token = server.app.token("carol");
    let a = get(&http, addr, "/v1/me/conversations", &token).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (_dave, _) = server.client(Transport::WsJson, "dave").await;

    // Wrongly signed tokens are guesses: 5 are checked, then 429.
    let forged = server.app.sign_with(
        jsonwebtoken::Algorithm::HS256,
        Some(&server.app.kid),
        b"not-the-apps-secret-0123456789abcdef",
        &server.app.claims("alice"),
    );
    let mut unauthorized = 0;
    for _ in 0..30 {
        let a = get(&http, addr, "/v1/me/conversations", &forged).await;
        if a.status == 401 {
            assert_eq!(a.code(), "invalid_token", "{}", a.body);
            unauthorized += 1;
        } else {
            a.assert_rate_limited();
        }
    }
    assert_eq!(unauthorized, 5, "the budget of 5 failures, then 429");
    get(&http, addr, "/v1/users", &key)
        .await
        .assert_rate_limited();
}

/// A raw request that announces a body of 100,000 bytes, sends a little of it
/// and stalls.
async fn stall_a_request(addr: SocketAddr, key: &str) -> tokio::net::TcpStream {
    partial_request(addr, key, 100_000).await
}

/// Requests that stall cannot hold the slots of requests in progress forever:
/// past `--request-timeout-ms` (its body still unread) a request is answered
/// 503 `unavailable` and its slot is freed. Real-time connections are not
/// subject to the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_times_out_and_frees_its_slot() {
    let server = TestServer::start(
        ServerOptions::new()
            .flag("--max-concurrent-requests", 2)
            // Long enough that a loaded machine (the suite runs its tests side
            // by side on two cores, each request then taking seconds) still
            // sees the slots held: at 1 s, and in full runs at 3 s and 5 s, a
            // probe came too late to find them taken.
            .flag("--request-timeout-ms", 10_000),
    )
    .await;
    let addr = server.addr;
    let key = server.app.api_key.clone();
    let http = http();
    let (ws, _) = server.client(Transport::WsJson, "alice").await;
    let (grpc, _) = server.client(Transport::Grpc, "bob").await;
    let connected = Instant::now();

    let started = Instant::now();
    let mut held = vec![
        stall_a_request(addr, &key).await,
        stall_a_request(addr, &key).await,
    ];
    // Until the stalled requests are in, a request may still be served.
    let refused = mkondo_tests::poll_until(
        Duration::from_secs(10),
        "a request refused while the stalled ones hold the slots",
        || async {
            let a = get(&http, addr, "/v1/users", &key).await;
            (a.status == 503).then_some(a)
        },
    )
    .await;
    assert_eq!(refused.code(), "unavailable", "{}", refused.body);

    mkondo_tests::poll_until(
        Duration::from_secs(25),
        "a request served once the stalled ones time out",
        || async { (get(&http, addr, "/v1/users", &key).await.status == 200).then_some(()) },
    )
    .await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(22),
        "served again after {waited:?} with a timeout of 10 s"
    );

    // Each stalled request was answered 503 `unavailable` in the standard format.
    for tcp in &mut held {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(WAIT, async {
            let mut buf = [0u8; 4096];
            loop {
                match tokio::io::AsyncReadExt::read(tcp, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
                if answer.windows(4).any(|w| w == b"}}\r\n") || answer.ends_with(b"}}") {
                    break;
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the stalled request was answered");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.contains("\"code\":\"unavailable\""), "{text}");
    }

    // Live connections outlast the request timeout.
    let alive = Duration::from_millis(10_200).saturating_sub(connected.elapsed());
    tokio::time::sleep(alive).await;
    ws.ping()
        .await
        .expect("a WebSocket session is not timed out");
    grpc.ping().await.expect("a gRPC stream is not timed out");
}

/// A send that outlives `--request-timeout-ms` is answered 503, but its work is
/// not cut off halfway: once the database lets it commit, the message is
/// stored and pushed to the live recipient, and the client's retry with the
/// same `client_id` gets the original (200), not a second message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_send_still_commits_and_publishes() {
    use sqlx::{Connection as _, Executor as _};
    let server = TestServer::start(ServerOptions::new().flag("--request-timeout-ms", 300)).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let group = api.create_group("slow", &["alice", "bob"]).await;
    let (bob, _) = server.client(Transport::WsJson, "bob").await;
    bob.subscribe(&group).await.unwrap();

    // Another process holds SQLite's write lock: the send waits for it.
    let url = format!("sqlite://{}", server.database().display());
    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    blocker.execute("BEGIN IMMEDIATE").await.unwrap();
    let http = http();
    let path = format!("/v1/conversations/{group}/messages");
    let body = json!({"sender_id": "alice", "text": "slow disk", "client_id": "c-slow"});
    let key = server.app.api_key.clone();
    let a = call(
        &http,
        server.addr,
        reqwest::Method::POST,
        &path,
        &key,
        &[],
        Some(body.clone()),
    )
    .await;
    assert_eq!((a.status, a.code()), (503, "unavailable"), "{}", a.body);
    blocker.execute("ROLLBACK").await.unwrap();
    drop(blocker);

    let m = bob.expect_message(&group, WAIT).await;
    assert_eq!(m.text, "slow disk");
    let again = call(
        &http,
        server.addr,
        reqwest::Method::POST,
        &path,
        &key,
        &[],
        Some(body),
    )
    .await;
    assert_eq!(
        again.status, 200,
        "the original, not a second message: {}",
        again.body
    );
    assert_eq!(again.body["seq"].as_u64(), Some(m.seq));
}
