//! Running the server: health, readiness, Prometheus metrics, the OpenAPI
//! document, JSON logs, and `mkondo dev` with its demo app.

use std::collections::HashMap;
use std::process::Stdio;

use mkondo_tests::{mkondo_bin, ServerOptions, TestServer, Transport, WAIT};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let server = TestServer::start_default().await;
    let anon = server.rest_anon();
    assert_eq!(anon.get("/healthz").await.status, 200);
    assert_eq!(anon.get("/readyz").await.status, 200);

    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("metrics", &["alice", "bob"]).await;
    let (alice, _) = server.client(Transport::WsJson, "alice").await;
    let (bob, _) = server.client(Transport::WsProto, "bob").await;
    alice.send_message(&conv, "counted", "m-1").await.unwrap();
    bob.expect_message(&conv, WAIT).await;

    let metrics = anon.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let value = |name: &str| -> f64 {
        metrics
            .text
            .lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{}", metrics.text))
    };
    assert_eq!(value("mkondo_connections"), 2.0, "two live connections");
    assert!(value("mkondo_messages_total") >= 1.0);
    assert!(
        value("mkondo_frames_in_total") >= 3.0,
        "two connects and a send"
    );
    assert!(
        value("mkondo_frames_out_total") >= 4.0,
        "replies and pushes"
    );
    assert!(
        value("mkondo_fanout_seconds_count") >= 1.0,
        "fan-out latency histogram"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_core_endpoints() {
    let server = TestServer::start_default().await;
    let doc = server.rest_anon().get("/v1/openapi.json").await.ok();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/users",
        "/v1/users/{id}",
        "/v1/users/{id}/conversations",
        "/v1/users/{id}/messages",
        "/v1/conversations",
        "/v1/conversations/{id}",
        "/v1/conversations/{id}/members",
        "/v1/conversations/{id}/messages",
        "/v1/tokens",
        "/v1/me/conversations",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let server = TestServer::start(ServerOptions::new().flag("--log-format", "json")).await;
    assert_eq!(server.rest_anon().get("/healthz").await.status, 200);
    let tail = server.log_tail();
    let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the server logged nothing");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}

/// `mkondo dev` creates the `demo` app on first start, and `mkondo token --app demo`
/// mints a token that connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_creates_the_demo_app() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dev.db");
    let db = db.to_str().unwrap();
    let (mut child, addr, printed) = start_dev(db, "127.0.0.1:0").await;
    assert!(printed.contains("app_id=demo"), "{printed}");
    assert!(printed.contains("mkondo token --app demo"), "{printed}");

    let out = tokio::process::Command::new(mkondo_bin())
        .args([
            "token",
            "--app",
            "demo",
            "--user",
            "alice",
            "--database",
            db,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    // The demo app allows pages of any origin (development: the web SDK's
    // browser tests serve theirs on ports of their own), but `/dev` stays
    // closed to other origins' pages; the demo's own page passes.
    let http = reqwest::Client::new();
    let elsewhere = "http://localhost:9";
    let me = http
        .get(format!("http://{addr}/v1/me"))
        .bearer_auth(&token)
        .header("origin", elsewhere)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.headers()["access-control-allow-origin"], elsewhere);
    let dev_token = |origin: String| {
        http.post(format!("http://{addr}/dev/token"))
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(r#"{"user":"bob"}"#)
            .send()
    };
    let foreign = dev_token(elsewhere.to_owned()).await.unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(!foreign
        .headers()
        .contains_key("access-control-allow-origin"));
    assert_eq!(
        dev_token(format!("http://{addr}")).await.unwrap().status(),
        200
    );

    let client = mkondo_tests::Client::open(addr, Transport::WsJson).await;
    let reply = client
        .connect(&token, HashMap::new())
        .await
        .expect("the demo token connects");
    assert_eq!(reply.user.unwrap().id, "alice");
    child.kill().await.unwrap();
}

/// `mkondo dev` on `listen`: the child, its address and what it printed before
/// listening.
async fn start_dev(
    db: &str,
    listen: &str,
) -> (tokio::process::Child, std::net::SocketAddr, String) {
    let mut child = tokio::process::Command::new(mkondo_bin())
        .args(["dev", "--listen", listen, "--database", db])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("mkondo listening on ") {
                return addr.parse::<std::net::SocketAddr>().unwrap();
            }
            printed.push(line);
        }
        panic!("mkondo dev exited before listening");
    })
    .await
    .expect("mkondo dev did not start");
    // Keep reading: a closed pipe would fail the server's next line.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr, printed.join("\n"))
}

/// `mkondo dev` prints the demo API key when it creates the demo app, and on
/// later starts reuses the app without minting (or printing) another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mints_the_demo_api_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dev.db");
    let db = db.to_str().unwrap();
    let (mut first, _, printed) = start_dev(db, "127.0.0.1:0").await;
    assert!(
        printed.contains("mk_demo_"),
        "the first start prints the key: {printed}"
    );
    first.kill().await.unwrap();
    let (mut second, _, printed) = start_dev(db, "127.0.0.1:0").await;
    assert!(
        !printed.contains("mk_"),
        "a later start prints no key: {printed}"
    );
    second.kill().await.unwrap();

    let out = tokio::process::Command::new(mkondo_bin())
        .args(["app", "list", "--json", "--database", db])
        .output()
        .await
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let demo = list
        .as_array()
        .or_else(|| list["items"].as_array())
        .and_then(|apps| apps.iter().find(|a| a["app_id"] == "demo"))
        .unwrap_or_else(|| panic!("no demo app: {list}"))
        .clone();
    assert_eq!(
        demo["api_keys"].as_array().map(Vec::len),
        Some(1),
        "one API key after two starts: {demo}"
    );
}

/// This machine's address on its outward interface (no packet is sent), if it
/// has one that is not loopback.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("198.51.100.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// `/dev/*` answers loopback peers only: the same `mkondo dev` listening on every
/// interface mints a demo token over 127.0.0.1, and answers 404 (as a route that
/// does not exist) to a request arriving on the machine's outward address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_routes_answer_loopback_peers_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dev.db");
    let (mut child, addr, _) = start_dev(db.to_str().unwrap(), "0.0.0.0:0").await;
    let http = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let token = |host: std::net::IpAddr, forwarded: Option<&'static str>| {
        let http = http.clone();
        async move {
            let mut request = http
                .post(format!(
                    "http://{}/dev/token",
                    std::net::SocketAddr::new(host, addr.port())
                ))
                .json(&serde_json::json!({ "user": "alice" }));
            if let Some(client) = forwarded {
                request = request.header("x-forwarded-for", client);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    let loopback = [127, 0, 0, 1].into();
    assert_eq!(token(loopback, None).await, 200, "loopback is served");
    // Through a proxy on this machine, a remote client is a loopback peer.
    assert_eq!(
        token(loopback, Some("203.0.113.9")).await,
        404,
        "a forwarded request is not local"
    );
    match non_loopback_ip() {
        Some(ip) => assert_eq!(token(ip, None).await, 404, "{ip} is not loopback"),
        None => eprintln!("this machine has no non-loopback address to try"),
    }
    child.kill().await.unwrap();
}

/// A PostgreSQL URL's password never reaches the log or the output: not when
/// the database cannot be reached and the server says which one, and not in what
/// `mkondo dev` prints once it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_is_never_printed() {
    let password = "pw-that-must-not-leak-4711";
    // The test PostgreSQL trusts local connections: any password is accepted.
    let url = mkondo_tests::fresh_postgres().await.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{password}@"),
        1,
    );
    assert!(url.contains(password), "{url}");
    let (mut child, _, printed) = start_dev(&url, "127.0.0.1:0").await;
    assert!(
        !printed.contains(password),
        "mkondo dev printed the password: {printed}"
    );
    assert!(printed.contains("postgres:***@"), "{printed}");
    child.kill().await.unwrap();

    let url = format!("postgres://mkondo:{password}@127.0.0.1:1/mkondo");
    for command in ["serve", "dev"] {
        let out = tokio::process::Command::new(mkondo_bin())
            .args([command, "--listen", "127.0.0.1:0", "--database", &url])
            .env("MKONDO_LOG", "debug")
            .output()
            .await
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "no database there: {all}");
        assert!(
            !all.contains(password),
            "{command} printed the password: {all}"
        );
        assert!(all.contains("127.0.0.1"), "the error says where: {all}");
    }
}
