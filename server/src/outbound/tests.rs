use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;

use super::*;

#[test]
fn every_non_public_range_is_refused() {
    for ip in [
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.255",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "198.18.0.1",
        "::",
        "::1",
        "fe80::1",
        "febf::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:192.168.0.1",
        "::ffff:0.0.0.0",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "::127.0.0.1",
        "192.88.99.1",
        "2001::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "64:ff9b:1::a00:1",
        "::ffff:0:7f00:1",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(is_refused(ip), "{ip} must be refused");
    }
    for ip in [
        "1.1.1.1",
        "8.8.8.8",
        "172.15.255.255",
        "172.32.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "169.253.0.1",
        "192.169.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(!is_refused(ip), "{ip} is public");
    }
}

fn client(allow_private: bool) -> OutboundClient {
    crate::tls::install_provider();
    OutboundClient::new(OutboundPolicy {
        allow_private,
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn urls_must_be_https_to_public_addresses_unless_allowed() {
    let strict = client(false);
    for url in [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:127.0.0.1]/",
        "https://0x7f.1/",
        "https://2130706433/",
        "https://localhost/hook",
        "https://user:pass@example.com/",
        "ftp://example.com/",
        "not a url",
        "https:///nohost",
    ] {
        let err = strict.check_url(url).await.unwrap_err();
        assert_eq!(err.code, mkondo_proto::ErrorCode::InvalidArgument, "{url}");
    }
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    assert!(strict.check_url(&long).await.is_err());
    let open = client(true);
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "https://[::1]:9/",
        "http://10.1.2.3/",
    ] {
        open.check_url(url).await.unwrap();
    }
    assert!(open.check_url("ftp://127.0.0.1/").await.is_err());
}

/// A receiver on loopback: `/redirect` answers 302 to `/target` (which counts
/// its calls), `/big/{n}` answers n bytes, `/slow` answers after 2 s.
async fn receiver() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new()
        .route(
            "/redirect",
            post(|| async { (http::StatusCode::FOUND, [("location", "/target")], "") }),
        )
        .route(
            "/target",
            post(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "reached" }
            }),
        )
        .route(
            "/big/{n}",
            post(|axum::extract::Path(n): axum::extract::Path<usize>| async move { "x".repeat(n) }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

fn url(addr: SocketAddr, host: &str, path: &str) -> url::Url {
    format!("http://{host}:{}{path}", addr.port())
        .parse()
        .unwrap()
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn redirects_are_not_followed() {
    let (addr, hits) = receiver().await;
    let open = client(true);
    let response = open
        .post_json(
            &url(addr, "127.0.0.1", "/redirect"),
            &[],
            "{}".into(),
            SECOND,
        )
        .await
        .unwrap();
    assert_eq!(response.status, 302);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
    let response = open
        .post_json(&url(addr, "127.0.0.1", "/target"), &[], "{}".into(), SECOND)
        .await
        .unwrap();
    assert_eq!(
        (response.status, &response.body[..]),
        (200, &b"reached"[..])
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn responses_are_capped() {
    let (addr, _) = receiver().await;
    let open = client(true);
    let at_cap = format!("/big/{MAX_RESPONSE_BYTES}");
    let response = open
        .post_json(&url(addr, "127.0.0.1", &at_cap), &[], "{}".into(), SECOND)
        .await
        .unwrap();
    assert_eq!(response.body.len(), MAX_RESPONSE_BYTES);
    let over = format!("/big/{}", MAX_RESPONSE_BYTES + 1);
    let err = open
        .post_json(&url(addr, "127.0.0.1", &over), &[], "{}".into(), SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::TooLarge), "{err:?}");
}

#[tokio::test]
async fn a_slow_endpoint_times_out() {
    let (addr, _) = receiver().await;
    let open = client(true);
    let started = std::time::Instant::now();
    let err = open
        .post_json(
            &url(addr, "127.0.0.1", "/slow"),
            &[],
            "{}".into(),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn errors_do_not_carry_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url: url::Url = format!("http://127.0.0.1:{port}/hook?token=s3cret")
        .parse()
        .unwrap();
    let err = client(true)
        .post_json(&url, &[], "{}".into(), SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Connect(_)), "{err:?}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[tokio::test]
async fn loopback_is_refused_at_the_call_too() {
    let (addr, hits) = receiver().await;
    let strict = client(false);
    // An IP literal never reaches the resolver: checked before the request.
    let literal: url::Url = format!("https://127.0.0.1:{}/target", addr.port())
        .parse()
        .unwrap();
    let err = strict
        .post_json(&literal, &[], "{}".into(), SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Refused(_)), "{err:?}");
    // A name resolving to loopback only: the resolver leaves nothing to connect to.
    let named: url::Url = format!("https://localhost:{}/target", addr.port())
        .parse()
        .unwrap();
    let err = strict
        .post_json(&named, &[], "{}".into(), SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Refused(_)), "{err:?}");
    // http, even to a name, needs the setting.
    let err = strict
        .post_json(&url(addr, "localhost", "/target"), &[], "{}".into(), SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Refused(_)), "{err:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // With the setting, the name reaches the receiver.
    let response = client(true)
        .post_json(&url(addr, "localhost", "/target"), &[], "{}".into(), SECOND)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
}
