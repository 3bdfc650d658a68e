//! The server speaking TLS (`--tls-cert`/`--tls-key`) on its one port: HTTPS,
//! WebSocket over `wss://` and gRPC over TLS with certificates from a test CA;
//! plaintext, untrusted and misnamed connections refused; the certificate
//! reloaded without a restart when its files change or on SIGHUP, while open
//! connections carry on.

use std::path::Path;
use std::time::Duration;

use mkondo_tests::tls::{connect_tls, peer_certificate, ServerCert, TestCa};
use mkondo_tests::{Client, ServerOptions, TestServer, Transport, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A server with `cert` as its certificate (files in a directory of their own,
/// returned so that a test can replace them), checking them every `reload_ms`.
async fn tls_server(cert: &ServerCert, reload_ms: u64) -> (TestServer, tempfile::TempDir) {
    tls_server_with(cert, reload_ms, ServerOptions::new()).await
}

async fn tls_server_with(
    cert: &ServerCert,
    reload_ms: u64,
    opts: ServerOptions,
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = cert.write(dir.path());
    let server = TestServer::start(
        opts.flag("--tls-cert", cert_path.display())
            .flag("--tls-key", key_path.display())
            .flag("--tls-reload-interval-ms", reload_ms),
    )
    .await;
    (server, dir)
}

/// `GET path` over HTTP/1.1 on `stream`; the whole answer.
async fn http_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_health_check_with_the_test_ca() {
    let ca = TestCa::new("mkondo test CA");
    let (server, _dir) = tls_server(&ca.server_cert(&NAMES, 1), 2_000).await;
    for name in NAMES {
        let mut tls = connect_tls(server.addr, ca.client_config(&["http/1.1"]), name)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake as {name}: {e}"));
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let answer = http_get(&mut tls, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
    }
    // A client that asks for HTTP/2 gets it (gRPC needs it).
    let h2 = connect_tls(
        server.addr,
        ca.client_config(&["h2", "http/1.1"]),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

/// Two users chat over TLS on each transport: `wss://` with JSON and with
/// protobuf, and gRPC over TLS (HTTP/2 by ALPN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_tls_on_every_transport() {
    let ca = TestCa::new("mkondo test CA");
    let (server, _dir) = tls_server(&ca.server_cert(&NAMES, 1), 2_000).await;
    for transport in Transport::ALL {
        let (a, b) = (format!("alice-{transport:?}"), format!("bob-{transport:?}"));
        let alice = connected(&server, &ca, transport, &a).await;
        let bob = connected(&server, &ca, transport, &b).await;
        let conv = alice.start_direct(&b).await.unwrap();
        let text = format!("hello over TLS ({transport:?})");
        alice.send_message(&conv.id, &text, "c-1").await.unwrap();
        let got = bob.expect_message(&conv.id, WAIT).await;
        assert_eq!(got.text, text);
        assert_eq!(got.sender_id, a);
    }
}

async fn connected(server: &TestServer, ca: &TestCa, transport: Transport, user: &str) -> Client {
    let client = Client::open_tls(server.addr, transport, ca.client_config(&[])).await;
    client
        .connect(&server.app.token(user), Default::default())
        .await
        .unwrap_or_else(|e| panic!("{transport:?}: connect refused: {e:?}"));
    client
}

/// The Admin gRPC service and reflection answer over TLS too: reflection
/// lists Admin, and an Admin call with an API key is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reflection_over_tls() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let ca = TestCa::new("mkondo test CA");
    let (server, _dir) = tls_server(&ca.server_cert(&NAMES, 1), 2_000).await;
    let channel = mkondo_tests::tls::grpc_channel(server.addr, ca.client_config(&[]))
        .await
        .expect("gRPC over TLS");
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection over TLS")
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == "mkondo.v1.Admin"), "{names:?}");

    // A real Admin call with the app's API key, on the same TLS port: the user
    // it creates is there over REST.
    let channel = mkondo_tests::tls::grpc_channel(server.addr, ca.client_config(&[]))
        .await
        .expect("gRPC over TLS");
    let bearer = crate::admin_common::Bearer(Some(server.app.api_key.clone()));
    let mut admin = mkondo_proto::v1::admin_client::AdminClient::with_interceptor(channel, bearer);
    let made = admin
        .create_user(mkondo_proto::v1::CreateUserRequest {
            id: "tls-dave".into(),
            ..Default::default()
        })
        .await
        .expect("Admin CreateUser over TLS")
        .into_inner();
    assert!(made.created);
    assert_eq!(made.user.map(|u| u.id).as_deref(), Some("tls-dave"));
}

/// Plain HTTP to the TLS port gets no HTTP answer: the handshake fails and the
/// connection closes. Clients that do not trust the CA, or that expect another
/// name than the certificate's, refuse the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_untrusted_and_misnamed_connections_fail() {
    let ca = TestCa::new("mkondo test CA");
    let (server, _dir) = tls_server(&ca.server_cert(&NAMES, 1), 2_000).await;

    let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let answer = tokio::time::timeout(WAIT, http_get(&mut plain, "/healthz"))
        .await
        .expect("the server closes a plaintext connection");
    assert!(
        !answer.contains("HTTP/1.1"),
        "plaintext was answered: {answer}"
    );

    let other = TestCa::new("another CA");
    let err = connect_tls(server.addr, other.client_config(&[]), "localhost")
        .await
        .expect_err("a client trusting another CA refuses the server");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    let err = connect_tls(server.addr, ca.client_config(&[]), "chat.example.com")
        .await
        .expect_err("a certificate for other names is refused");
    assert!(err.to_string().contains("not valid for name"), "{err}");

    // The server is none the worse for it.
    let mut tls = connect_tls(server.addr, ca.client_config(&[]), "localhost")
        .await
        .unwrap();
    assert!(http_get(&mut tls, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    server.assert_running();
}

/// Polls until a new connection is shown `want` (both CAs trusted).
async fn wait_for_certificate(server: &TestServer, roots: &[&TestCa], want: &ServerCert) {
    let roots: Vec<_> = roots.iter().map(|ca| ca.cert.clone()).collect();
    let config = mkondo_tests::tls::client_config(&roots, &[]);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if peer_certificate(server.addr, config.clone()).await == want.der {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still shows its old certificate; log:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An open connection keeps working across a reload: a message from a client
/// connected with the new certificate reaches it.
async fn still_chatting(server: &TestServer, old: &Client, new_ca: &TestCa, round: &str) {
    let new = connected(server, new_ca, Transport::WsJson, "bob").await;
    let conv = new.start_direct("alice").await.unwrap();
    new.send_message(&conv.id, round, round).await.unwrap();
    let got = old.expect_message(&conv.id, WAIT).await;
    assert_eq!(got.text, round);
}

fn replace(dir: &Path, cert: &ServerCert) {
    cert.write(dir);
}

/// New files (a new CA, a new serial) are picked up by new connections; an
/// open `wss://` connection carries on. A broken pair (a key of another
/// certificate) is refused and the certificate in use stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reloads_when_its_files_change() {
    let first_ca = TestCa::new("first CA");
    let second_ca = TestCa::new("second CA");
    let first = first_ca.server_cert(&NAMES, 1);
    let (server, dir) = tls_server(&first, 100).await;
    let alice = connected(&server, &first_ca, Transport::WsJson, "alice").await;

    // A key that does not match the certificate: logged, the old one stays.
    let stray = second_ca.server_cert(&NAMES, 7);
    std::fs::write(dir.path().join("server.key"), &stray.key_pem).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !server.log_tail().contains("not reloaded") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload error logged:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        peer_certificate(server.addr, first_ca.client_config(&[])).await,
        first.der
    );

    let second = second_ca.server_cert(&NAMES, 2);
    replace(dir.path(), &second);
    wait_for_certificate(&server, &[&first_ca, &second_ca], &second).await;
    still_chatting(&server, &alice, &second_ca, "after a file change").await;
    server.assert_running();
}

/// With a long check interval, nothing changes until SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reloads_on_sighup() {
    let first_ca = TestCa::new("first CA");
    let second_ca = TestCa::new("second CA");
    let first = first_ca.server_cert(&NAMES, 1);
    let (server, dir) = tls_server(&first, 3_600_000).await;
    let alice = connected(&server, &first_ca, Transport::WsJson, "alice").await;

    let second = second_ca.server_cert(&NAMES, 2);
    replace(dir.path(), &second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let both =
        mkondo_tests::tls::client_config(&[first_ca.cert.clone(), second_ca.cert.clone()], &[]);
    assert_eq!(
        peer_certificate(server.addr, both).await,
        first.der,
        "no reload before SIGHUP with a long check interval"
    );

    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_certificate(&server, &[&first_ca, &second_ca], &second).await;
    still_chatting(&server, &alice, &second_ca, "after SIGHUP").await;
    server.assert_running();
}

/// SIGTERM over TLS drains as on plain HTTP: clients are told to reconnect
/// (`shutdown`) and the server exits with success soon, even with a client that
/// connected and never began its handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_tls_connections() {
    let ca = TestCa::new("mkondo test CA");
    let (server, _dir) = tls_server(&ca.server_cert(&NAMES, 1), 2_000).await;
    let ws = connected(&server, &ca, Transport::WsJson, "alice").await;
    let grpc = connected(&server, &ca, Transport::Grpc, "bob").await;
    let _silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown waited for the silent client ({:?})",
        started.elapsed()
    );
    for client in [&ws, &grpc] {
        let closed = client.wait_closed(WAIT).await.expect("closed");
        let disconnect = closed.disconnect.as_ref();
        assert_eq!(
            disconnect.map(|d| (d.reason.as_str(), d.reconnect)),
            Some(("shutdown", true)),
            "{:?}: {closed:?}",
            client.transport
        );
    }
}

/// The client's address reaches the handlers over TLS as over plain TCP: failed
/// authentications are counted per address, so after the limit even a good
/// token from that address is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_limited_per_address_over_tls() {
    let ca = TestCa::new("mkondo test CA");
    let limit = ServerOptions::new().flag("--auth-failures-per-minute", 3);
    let (server, _dir) = tls_server_with(&ca.server_cert(&NAMES, 1), 2_000, limit).await;
    for _ in 0..3 {
        let client = Client::open_tls(server.addr, Transport::WsJson, ca.client_config(&[])).await;
        let err = client
            .connect("not.a.jwt", Default::default())
            .await
            .unwrap_err();
        assert_eq!(err.code, "invalid_token", "{err:?}");
    }
    let client = Client::open_tls(server.addr, Transport::WsJson, ca.client_config(&[])).await;
    let err = client
        .connect(&server.app.token("alice"), Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, "rate_limited", "{err:?}");
}
