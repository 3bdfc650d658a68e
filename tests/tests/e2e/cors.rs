//! Browser origins: an app's `allowed_origins` (set through the operator API
//! and the CLI), CORS on the REST API, and the WebSocket upgrade's `Origin`
//! checked at `connect`. A browser is simulated by sending what it sends:
//! `Origin` on requests and upgrades, `OPTIONS` preflights with
//! `Access-Control-Request-Method`.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use mkondo_proto::codec::{self, Encoding};
use mkondo_proto::v1::{self, server_frame::Body};
use mkondo_tests::{mkondo_bin, poll_until, App, ServerOptions, TestServer, WAIT};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "operator-secret-for-cors-tests-01";
const A: &str = "https://a.example";
const B: &str = "https://b.example:8443";
const UNKNOWN: &str = "https://evil.example";

/// A server whose main app allows `A` and whose other app allows `B`.
async fn two_apps() -> (TestServer, App, App) {
    let server =
        TestServer::start(ServerOptions::new().operator_secret(SECRET).extra_apps(1)).await;
    let (a, b) = (server.app.clone(), server.other_apps[0].clone());
    set_origins(&server, &a.app_id, &[A]).await;
    set_origins(&server, &b.app_id, &[B]).await;
    (server, a, b)
}

async fn set_origins(server: &TestServer, app: &str, origins: &[&str]) -> Value {
    server
        .rest_as(SECRET)
        .patch(
            &format!("/v1/admin/apps/{app}"),
            json!({ "allowed_origins": origins }),
        )
        .await
        .ok()
}

/// What a browser gets back: status, headers, JSON body (Null when none).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn acao(&self) -> Option<&str> {
        self.header("access-control-allow-origin")
    }

    #[track_caller]
    fn refused_for_origin(&self) {
        assert_eq!(self.status, 403, "{}", self.body);
        assert_eq!(
            self.body["error"]["code"], "permission_denied",
            "{}",
            self.body
        );
        assert_eq!(
            self.body["error"]["reason"], "origin_not_allowed",
            "{}",
            self.body
        );
        assert_eq!(self.acao(), None, "no CORS header for a refused origin");
    }
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    origin: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut req = reqwest::Client::new().request(method, format!("http://{addr}{path}"));
    if let Some(bearer) = bearer {
        req = req.bearer_auth(bearer);
    }
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    let resp = req.timeout(WAIT).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn get(addr: SocketAddr, path: &str, bearer: Option<&str>, origin: Option<&str>) -> Answer {
    send(addr, Method::GET, path, bearer, origin, &[]).await
}

async fn preflight(addr: SocketAddr, path: &str, origin: &str) -> Answer {
    let extra = [
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "authorization"),
    ];
    send(addr, Method::OPTIONS, path, None, Some(origin), &extra).await
}

fn own_origin(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

/// A WebSocket upgrade with `origin` (as a browser sends it; native clients
/// send none), then `connect`: the reply, and the close code when refused.
async fn ws_connect(
    addr: SocketAddr,
    origin: Option<&str>,
    token: &str,
) -> (Result<v1::ConnectResult, v1::Error>, Option<u16>) {
    let mut request = format!("ws://{addr}/v1/realtime")
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade itself is never refused for an origin");
    let connect = json!({"id": 1, "connect": {"token": token}}).to_string();
    ws.send(Message::Text(connect.into())).await.unwrap();
    let mut reply = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, ws.next()).await {
        match msg {
            Ok(Message::Text(text)) => {
                let frames: Vec<v1::ServerFrame> =
                    codec::decode_batch(Encoding::Json, text.as_bytes()).unwrap();
                for frame in frames {
                    match frame.body {
                        Some(Body::Reply(v1::Reply {
                            result: Some(v1::reply::Result::Connect(ok)),
                        })) if frame.id == 1 => reply = Some(Ok(ok)),
                        Some(Body::Error(err)) if frame.id == 1 => reply = Some(Err(err)),
                        _ => {}
                    }
                }
                if matches!(reply, Some(Ok(_))) {
                    return (reply.unwrap(), None);
                }
            }
            Ok(Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code));
                return (reply.expect("a reply before the close"), code);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (reply.expect("a reply to connect"), None)
}

#[track_caller]
fn assert_refused_connect(
    what: &str,
    outcome: &(Result<v1::ConnectResult, v1::Error>, Option<u16>),
) {
    let (reply, close) = outcome;
    let err = reply.as_ref().expect_err(what);
    assert_eq!(
        (err.code.as_str(), err.reason.as_str()),
        ("permission_denied", "origin_not_allowed"),
        "{what}: {err:?}"
    );
    assert_eq!(*close, Some(3506), "{what}: closed with origin_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_from_every_apps_origins() {
    let (server, _, _) = two_apps().await;
    for origin in [A, B] {
        let r = preflight(server.addr, "/v1/me", origin).await;
        assert_eq!(r.status, 204, "{origin}: {}", r.body);
        assert_eq!(r.acao(), Some(origin), "the origin echoed, never *");
        let headers = r.header("access-control-allow-headers").unwrap();
        assert!(
            headers.contains("authorization") && headers.contains("content-type"),
            "{headers}"
        );
        let methods = r.header("access-control-allow-methods").unwrap();
        for m in ["GET", "POST", "PATCH", "DELETE"] {
            assert!(methods.contains(m), "{methods}");
        }
        assert_eq!(r.header("access-control-max-age"), Some("600"));
        assert!(r.header("vary").unwrap().contains("origin"));
        assert_eq!(r.header("access-control-allow-credentials"), None);
    }
    // A browser sends the origin as it is; an entry matches it normalised.
    let r = preflight(server.addr, "/v1/conversations", "https://b.example:8443").await;
    assert_eq!(r.acao(), Some(B));

    for origin in [
        UNKNOWN,
        "https://a.example:8443",
        "http://a.example",
        "null",
    ] {
        preflight(server.addr, "/v1/me", origin)
            .await
            .refused_for_origin();
    }
    // Not for browsers, whatever the apps list.
    for path in ["/v1/admin/apps", "/dev/token"] {
        preflight(server.addr, path, A).await.refused_for_origin();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_checked_against_its_callers_own_app() {
    let (server, a, b) = two_apps().await;
    server.api().create_users(&["alice"]).await;
    let alice = a.token("alice");

    let r = get(server.addr, "/v1/me", Some(&alice), Some(A)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], "alice");
    assert_eq!(r.acao(), Some(A));
    assert!(r.header("vary").unwrap().contains("origin"));
    assert!(r
        .header("access-control-expose-headers")
        .unwrap()
        .contains("retry-after"));

    // B is allowed by the other app only: refused, and before any work (the
    // token's unknown user is not created).
    get(server.addr, "/v1/me", Some(&alice), Some(B))
        .await
        .refused_for_origin();
    get(server.addr, "/v1/me", Some(&a.token("carol")), Some(B))
        .await
        .refused_for_origin();
    server
        .api()
        .get("/v1/users/carol")
        .await
        .expect_error(404, "not_found");
    get(server.addr, "/v1/me", Some(&alice), Some(UNKNOWN))
        .await
        .refused_for_origin();
    // A write is refused too, and nothing is written.
    let r = send(
        server.addr,
        Method::PATCH,
        "/v1/me",
        Some(&alice),
        Some(UNKNOWN),
        &[("content-type", "application/json")],
    )
    .await;
    r.refused_for_origin();
    // The other app's token from its own origin passes.
    let r = get(server.addr, "/v1/me", Some(&b.token("bob")), Some(B)).await;
    assert_eq!((r.status, r.acao()), (200, Some(B)), "{}", r.body);

    // API keys follow their app's list as well.
    let r = get(server.addr, "/v1/users", Some(&a.api_key), Some(A)).await;
    assert_eq!((r.status, r.acao()), (200, Some(A)), "{}", r.body);
    get(server.addr, "/v1/users", Some(&a.api_key), Some(B))
        .await
        .refused_for_origin();

    // No Origin: a backend, curl, a native app: unaffected, no CORS headers.
    let r = get(server.addr, "/v1/me", Some(&alice), None).await;
    assert_eq!((r.status, r.acao()), (200, None), "{}", r.body);

    // A refusal before the caller is known stays readable by a listed origin
    // (the page can tell an expired token), not by others.
    let r = get(server.addr, "/v1/me", Some("not-a-token"), Some(A)).await;
    assert_eq!((r.status, r.acao()), (401, Some(A)), "{}", r.body);
    let r = get(server.addr, "/v1/me", Some("not-a-token"), Some(UNKNOWN)).await;
    assert_eq!((r.status, r.acao()), (401, None), "{}", r.body);
}

/// The default: an app that lists nothing allows only the server's own
/// origin; `*` allows any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_list_allows_only_the_servers_own_origin_and_star_any() {
    let server = TestServer::start(ServerOptions::new().operator_secret(SECRET)).await;
    let app = server.app.clone();
    let listed = server.rest_as(SECRET).get("/v1/admin/apps").await.ok();
    assert_eq!(listed["items"][0]["allowed_origins"], json!([]), "{listed}");
    let token = app.token("alice");
    let own = own_origin(&server);

    get(server.addr, "/v1/me", Some(&token), Some(UNKNOWN))
        .await
        .refused_for_origin();
    preflight(server.addr, "/v1/me", UNKNOWN)
        .await
        .refused_for_origin();
    assert_refused_connect(
        "a foreign page, empty list",
        &ws_connect(server.addr, Some(UNKNOWN), &token).await,
    );
    let r = get(server.addr, "/v1/me", Some(&token), Some(&own)).await;
    assert_eq!(r.status, 200, "the server's own page: {}", r.body);
    let (reply, _) = ws_connect(server.addr, Some(&own), &token).await;
    reply.expect("the server's own page connects");
    // `localhost` names the same server by another host: another origin.
    let other_host = format!("http://localhost:{}", server.addr.port());
    get(server.addr, "/v1/me", Some(&token), Some(&other_host))
        .await
        .refused_for_origin();

    let body = set_origins(&server, &app.app_id, &["*"]).await;
    assert_eq!(body["allowed_origins"], json!(["*"]));
    for origin in [UNKNOWN, "http://localhost:3000", "null"] {
        let r = get(server.addr, "/v1/me", Some(&token), Some(origin)).await;
        assert_eq!((r.status, r.acao()), (200, Some(origin)), "{}", r.body);
        let r = preflight(server.addr, "/v1/me", origin).await;
        assert_eq!((r.status, r.acao()), (204, Some(origin)));
        let (reply, _) = ws_connect(server.addr, Some(origin), &token).await;
        reply.unwrap_or_else(|e| panic!("{origin} connects with *: {e:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_connect_checks_the_upgrades_origin() {
    let (server, a, b) = two_apps().await;
    let (reply, _) = ws_connect(server.addr, Some(A), &a.token("alice")).await;
    assert_eq!(reply.expect("A's page connects").user.unwrap().id, "alice");
    let (reply, _) = ws_connect(server.addr, None, &a.token("alice")).await;
    reply.expect("a native client sends no Origin and connects");
    let (reply, _) = ws_connect(server.addr, Some(B), &b.token("bob")).await;
    reply.expect("B's page connects with B's token");

    assert_refused_connect(
        "another app's origin",
        &ws_connect(server.addr, Some(B), &a.token("dave")).await,
    );
    assert_refused_connect(
        "an unknown origin",
        &ws_connect(server.addr, Some(UNKNOWN), &a.token("dave")).await,
    );
    // Refused before the user was created.
    server
        .api()
        .get("/v1/users/dave")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_are_validated_normalised_and_replaced_whole() {
    let server = TestServer::start(ServerOptions::new().operator_secret(SECRET)).await;
    let op = server.rest_as(SECRET);
    let path = format!("/v1/admin/apps/{}", server.app.app_id);
    let body = op
        .patch(
            &path,
            json!({"allowed_origins": [
                "HTTPS://A.Example:443", "https://a.example", "http://localhost:5173",
                "http://127.0.0.1:80", "https://bücher.example"
            ]}),
        )
        .await
        .ok();
    let normalised = json!([
        "https://a.example",
        "http://localhost:5173",
        "http://127.0.0.1",
        "https://xn--bcher-kva.example"
    ]);
    assert_eq!(body["allowed_origins"], normalised, "{body}");
    assert_eq!(body["auto_create_users"], true);
    let listed = op.get("/v1/admin/apps").await.ok();
    assert_eq!(listed["items"][0]["allowed_origins"], normalised);

    // One bad entry refuses the whole change, the other field included.
    for bad in [
        "https://a.example/",
        "https://a.example/app",
        "https://a.example?x",
        "https://a.example#x",
        "https://user@a.example",
        "ftp://a.example",
        "a.example",
        "null",
        "https://*.a.example",
        "https://a.example:99999",
        "",
    ] {
        let r = op
            .patch(
                &path,
                json!({"auto_create_users": false, "allowed_origins": ["https://ok.example", bad]}),
            )
            .await;
        assert_eq!(r.status, 422, "{bad:?}: {}", r.text);
        assert_eq!(r.body["error"]["code"], "invalid_argument");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("allowed_origins"),
            "{}",
            r.text
        );
    }
    let too_many: Vec<String> = (0..101).map(|i| format!("https://o{i}.example")).collect();
    op.patch(&path, json!({ "allowed_origins": too_many }))
        .await
        .expect_error(422, "invalid_argument");
    let long = format!("https://{}.example", "a".repeat(300));
    op.patch(&path, json!({ "allowed_origins": [long] }))
        .await
        .expect_error(422, "invalid_argument");
    let unchanged = op.get("/v1/admin/apps").await.ok();
    assert_eq!(unchanged["items"][0]["allowed_origins"], normalised);
    assert_eq!(unchanged["items"][0]["auto_create_users"], true);

    // Replaced whole; `[]` clears; leaving it out keeps it.
    let body = op
        .patch(&path, json!({"allowed_origins": ["https://c.example"]}))
        .await
        .ok();
    assert_eq!(body["allowed_origins"], json!(["https://c.example"]));
    let body = op
        .patch(&path, json!({"auto_create_users": false}))
        .await
        .ok();
    assert_eq!(body["allowed_origins"], json!(["https://c.example"]));
    let body = op.patch(&path, json!({"allowed_origins": []})).await.ok();
    assert_eq!(body["allowed_origins"], json!([]));
    op.patch("/v1/admin/apps/nope", json!({"allowed_origins": []}))
        .await
        .expect_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_allowed_origins_for_running_servers() {
    let server = TestServer::start(ServerOptions::new()).await;
    let token = server.app.token("alice");
    let origin = "https://cli.example";
    get(server.addr, "/v1/me", Some(&token), Some(origin))
        .await
        .refused_for_origin();

    let update = |args: &[&str]| {
        let mut all = vec![
            "app",
            "update",
            "--app",
            &server.app.app_id,
            "--database",
            server.database_url(),
        ];
        all.extend_from_slice(args);
        tokio::process::Command::new(mkondo_bin())
            .args(all.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .output()
    };
    let out = update(&[
        "--allowed-origin",
        "HTTPS://CLI.example:443",
        "--allowed-origin",
        "http://localhost:5173",
        "--json",
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed["allowed_origins"],
        json!([origin, "http://localhost:5173"]),
        "{printed}"
    );
    // A request and a connect read the app's list: at once.
    let r = get(server.addr, "/v1/me", Some(&token), Some(origin)).await;
    assert_eq!((r.status, r.acao()), (200, Some(origin)), "{}", r.body);
    ws_connect(server.addr, Some(origin), &token)
        .await
        .0
        .expect("the CLI's origin connects");
    // A preflight reads the union, cached a few seconds.
    poll_until(WAIT, "the preflight allows the CLI's origin", || async {
        (preflight(server.addr, "/v1/me", origin).await.status == 204).then_some(())
    })
    .await;

    let out = update(&["--allowed-origin", "https://cli.example/path"])
        .await
        .unwrap();
    assert!(!out.status.success(), "a path is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no path"), "{err}");

    let out = update(&["--clear-allowed-origins"]).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    get(server.addr, "/v1/me", Some(&token), Some(origin))
        .await
        .refused_for_origin();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_api_is_not_opened_to_browsers() {
    let (server, _, _) = two_apps().await;
    for origin in [A, UNKNOWN] {
        get(server.addr, "/v1/admin/apps", Some(SECRET), Some(origin))
            .await
            .refused_for_origin();
    }
    let r = get(server.addr, "/v1/admin/apps", Some(SECRET), None).await;
    assert_eq!((r.status, r.acao()), (200, None));
    let own = own_origin(&server);
    let r = get(server.addr, "/v1/admin/apps", Some(SECRET), Some(&own)).await;
    assert_eq!((r.status, r.acao()), (200, None), "{}", r.body);
    // Health and metrics carry no CORS headers either.
    let r = get(server.addr, "/healthz", None, Some(A)).await;
    assert_eq!((r.status, r.acao()), (200, None));
}

/// Behind a trusted proxy terminating TLS, the server's own origin is
/// `https://` + its host: the proxy's `X-Forwarded-Proto` says so. From a peer
/// that is not a trusted proxy the header is ignored, so it cannot make a
/// foreign page look like the server's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_own_origin_takes_its_forwarded_scheme() {
    let behind =
        TestServer::start(ServerOptions::new().flag("--trusted-proxies", "127.0.0.1")).await;
    let direct = TestServer::start(ServerOptions::new()).await;
    let via_tls = [("x-forwarded-proto", "https")];
    for (server, trusted) in [(&behind, true), (&direct, false)] {
        let token = server.app.token("alice");
        let https_own = format!("https://{}", server.addr);
        let r = send(
            server.addr,
            Method::GET,
            "/v1/me",
            Some(&token),
            Some(&https_own),
            &via_tls,
        )
        .await;
        if trusted {
            assert_eq!(r.status, 200, "the proxy's https page: {}", r.body);
            assert_eq!(r.acao(), Some(https_own.as_str()));
            // The proxy said https: the same host over http is not the page.
            let http_own = own_origin(server);
            send(
                server.addr,
                Method::GET,
                "/v1/me",
                Some(&token),
                Some(&http_own),
                &via_tls,
            )
            .await
            .refused_for_origin();
        } else {
            r.refused_for_origin();
        }
        // Garbage in the header is no scheme: the server's own (http) decides.
        let r = send(
            server.addr,
            Method::GET,
            "/v1/me",
            Some(&token),
            Some(&own_origin(server)),
            &[("x-forwarded-proto", "gopher")],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

/// A page uploads with tus and downloads with ranges: its preflights allow
/// their headers, and the answers let it read the upload's offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_may_upload_with_tus_and_read_the_offset() {
    let (server, a, _) = two_apps().await;
    let extra = [
        ("access-control-request-method", "PATCH"),
        (
            "access-control-request-headers",
            "tus-resumable, upload-offset, content-type",
        ),
    ];
    let path = format!("/v1/uploads/{}/upl_00000000000000000000000000", a.app_id);
    let r = send(server.addr, Method::OPTIONS, &path, None, Some(A), &extra).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.acao(), Some(A));
    let allowed = r.header("access-control-allow-headers").unwrap();
    for h in ["tus-resumable", "upload-offset", "content-type", "range"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("HEAD"));

    // A real upload's answer carries the origin and exposes the offset.
    server.api().create_users(&["alice"]).await;
    let conv = server.api().create_group("up", &["alice"]).await;
    let up = server
        .rest_as(&a.token("alice"))
        .post(
            &format!("/v1/conversations/{conv}/uploads"),
            json!({"name": "a.txt", "size": 2, "content_type": "text/plain"}),
        )
        .await
        .expect(201);
    let link = up["url"].as_str().unwrap();
    let resp = mkondo_tests::tus_patch(server.addr, link, 0, b"hi", Some(A)).await;
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], A);
    assert!(h["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("upload-offset"));
}
