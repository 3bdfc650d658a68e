//! The Rust SDK over TLS, on every transport: the real server started with
//! `--tls-cert/--tls-key` (a test CA and certificates made here with rcgen), SDK
//! clients given only that CA's PEM. A certificate for another host and one
//! from a CA the client does not trust are refused with a clear reason.

use mkondo_sdk::{Config, ConnectionState, Event};
use mkondo_tests::{per_transport, ServerOptions, TestServer, Transport, WAIT};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::sdk_common::{client, connected, kind};

per_transport!(
    sdk_clients_chat_over_tls_given_only_the_ca,
    a_certificate_for_another_host_is_refused,
    a_certificate_from_an_unknown_ca_is_refused
);

/// A CA: its PEM and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A TLS server whose certificate `ca` signed for `names`.
async fn tls_server(ca: &Ca, names: &[&str]) -> (TestServer, tempfile::TempDir) {
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let server = TestServer::start(
        ServerOptions::new()
            .flag("--tls-cert", cert_path.display())
            .flag("--tls-key", key_path.display()),
    )
    .await;
    (server, dir)
}

fn https(server: &TestServer, host: &str) -> String {
    format!("https://{host}:{}", server.addr.port())
}

async fn sdk_clients_chat_over_tls_given_only_the_ca(transport: Transport) {
    let ca = ca("Mkondo test CA");
    let (server, _dir) = tls_server(&ca, &["localhost", "127.0.0.1"]).await;
    let mut clients = Vec::new();
    // Bob's URL spells the scheme in capitals: still TLS (URLs compare
    // schemes ignoring case), never the token in the clear.
    for (user, url) in [
        ("alice", https(&server, "localhost")),
        ("bob", https(&server, "127.0.0.1").replace("https", "HTTPS")),
    ] {
        let config = Config::new(url, kind(transport))
            .with_token(server.app.token(user))
            .with_extra_ca_pem(ca.pem.clone());
        let (c, events) = client(config);
        connected(&c).await;
        clients.push((c, events));
    }
    let (alice, _) = &clients[0];
    let (_, bob_events) = &clients[1];
    let direct = alice.start_direct("bob").await.unwrap();
    alice.send_text(&direct.id, "over TLS").await.unwrap();
    let got = bob_events
        .wait_for("bob gets the message over TLS", 0, |e| match e {
            Event::Message(m) if m.conversation_id == direct.id => Some(m.text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(got, "over TLS");
}

/// Connects with `config` and returns the reason of the first failed attempt
/// (an `Error::ConnectFailed` event; the state stays `connecting`).
async fn refused(config: Config) -> String {
    let (c, events) = client(config);
    c.connect();
    let reason = events
        .wait_for_within("a failed connection attempt", 0, WAIT, |e| match e {
            Event::Error(mkondo_sdk::Error::ConnectFailed(reason)) => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_ne!(c.state(), ConnectionState::Connected);
    c.disconnect();
    reason
}

async fn a_certificate_for_another_host_is_refused(transport: Transport) {
    let ca = ca("Mkondo test CA");
    let (server, _dir) = tls_server(&ca, &["chat.example.com"]).await;
    let config = Config::new(https(&server, "localhost"), kind(transport))
        .with_token(server.app.token("alice"))
        .with_extra_ca_pem(ca.pem.clone());
    let reason = refused(config).await;
    assert!(
        reason.contains("invalid peer certificate") && reason.contains("not valid for name"),
        "{reason}"
    );
}

async fn a_certificate_from_an_unknown_ca_is_refused(transport: Transport) {
    let ca_of_server = ca("Mkondo test CA");
    let (server, _dir) = tls_server(&ca_of_server, &["localhost"]).await;
    // No extra CA: the platform's store does not know the test CA.
    let config = Config::new(https(&server, "localhost"), kind(transport))
        .with_token(server.app.token("alice"));
    let reason = refused(config).await;
    assert!(
        reason.contains("certificate") && reason.contains("UnknownIssuer"),
        "{reason}"
    );
    // Another CA given: still not the server's.
    let other = ca("Another CA");
    let config = Config::new(https(&server, "localhost"), kind(transport))
        .with_token(server.app.token("alice"))
        .with_extra_ca_pem(other.pem);
    let reason = refused(config).await;
    assert!(reason.contains("UnknownIssuer"), "{reason}");
}

/// A server URL with a scheme other than https, wss, http or ws is refused
/// when the client is made, whatever its case: nothing is sent anywhere.
#[tokio::test]
async fn a_url_of_another_scheme_is_refused_up_front() {
    for url in ["ftp://chat.example", "httpx://chat.example", "FILE://x"] {
        let config = Config::new(url, mkondo_sdk::TransportKind::Grpc).with_token("t");
        match mkondo_sdk::Client::new(config, |_| {}) {
            Err(mkondo_sdk::Error::Config(why)) => assert!(why.contains("scheme"), "{url}: {why}"),
            Err(other) => panic!("{url}: {other:?}"),
            Ok(_) => panic!("{url}: a client was made"),
        }
    }
    let config =
        Config::new("HTTPS://chat.example", mkondo_sdk::TransportKind::Grpc).with_token("t");
    assert!(
        mkondo_sdk::Client::new(config, |_| {}).is_ok(),
        "upper case is the same scheme"
    );
}
