//! Tokens end to end: a short-lived token kept fresh in-band for 30 s on one
//! connection; a provider answering "unauthorized" stops the client with no
//! further connection attempts (counted at a proxy); other failures are retried.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::sdk_common::{client, connected, kind, state_changes};
use mkondo_sdk::{codes, Config, ConnectionState, TokenError};
use mkondo_tests::{Proxy, ServerOptions, TestServer, Transport};

/// The three transports side by side (one 30 s wait, not three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_refreshed_in_band() {
    futures::future::join_all(Transport::ALL.map(short_lived_token_is_refreshed_in_band)).await;
}

/// TTL of the tokens the provider mints.
const TTL_SECS: i64 = 3;

async fn short_lived_token_is_refreshed_in_band(transport: Transport) {
    // A grace of 1 s: a missed refresh would close the connection within ~4 s.
    let server = TestServer::start(ServerOptions::new().token_grace_ms(1000)).await;
    server.api().create_users(&["bob"]).await;
    let proxy = Proxy::start(server.addr).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (app, counter) = (server.app.clone(), calls.clone());
    let config = Config::new(proxy.url(), kind(transport)).with_token_provider(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let token = app.token_ttl("alice", TTL_SECS);
        async move { Ok::<_, TokenError>(token) }
    });
    let (alice, events) = client(config);
    connected(&alice).await;
    let from = events.len();
    tokio::time::sleep(Duration::from_secs(30)).await;

    let changes = state_changes(&events.snapshot()[from..]);
    assert!(
        changes.is_empty(),
        "{transport:?}: the connection did not stay up: {changes:?}"
    );
    assert_eq!(alice.state(), ConnectionState::Connected);
    assert_eq!(
        proxy.attempts(),
        1,
        "refreshes happen in-band, without reconnecting"
    );
    let n = calls.load(Ordering::SeqCst);
    assert!(
        n >= 10,
        "only {n} tokens fetched in 30 s with a {TTL_SECS} s lifetime"
    );
    // Still a working session.
    let direct = alice.start_direct("bob").await.unwrap();
    alice.send_text(&direct.id, "still here").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_stops_without_further_attempts() {
    let server = TestServer::start_default().await;
    let proxy = Proxy::start(server.addr).await;

    // Unauthorized from the start: not a single connection.
    let config = Config::new(proxy.url(), kind(Transport::WsJson)).with_token_provider(|| async {
        Err::<String, _>(TokenError::Unauthorized("signed out".into()))
    });
    let (refused, events) = client(config);
    refused.connect();
    events
        .wait_for("disconnected for good", 0, |e| match e {
            mkondo_sdk::Event::StateChanged {
                new: ConnectionState::Disconnected,
                code,
                ..
            } => Some(*code),
            _ => None,
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(proxy.attempts(), 0);
    assert_eq!(refused.state(), ConnectionState::Disconnected);

    // Unauthorized when the token is refreshed: the connection closes and
    // nothing tries again.
    let calls = Arc::new(AtomicUsize::new(0));
    let (app, counter) = (server.app.clone(), calls.clone());
    let config =
        Config::new(proxy.url(), kind(Transport::WsProto)).with_token_provider(move || {
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            let token = app.token_ttl("alice", 2);
            async move {
                if first {
                    Ok(token)
                } else {
                    Err(TokenError::Unauthorized("the user signed out".into()))
                }
            }
        });
    let (alice, events) = client(config);
    connected(&alice).await;
    let code = events
        .wait_for("stopped at the refresh", 0, |e| match e {
            mkondo_sdk::Event::StateChanged {
                new: ConnectionState::Disconnected,
                code,
                ..
            } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, codes::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(proxy.attempts(), 1, "no attempt after unauthorized");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the provider is not asked again"
    );
    assert_eq!(alice.state(), ConnectionState::Disconnected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_are_retried_with_backoff() {
    let server = TestServer::start_default().await;
    let proxy = Proxy::start(server.addr).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (app, counter) = (server.app.clone(), calls.clone());
    let config = Config::new(proxy.url(), kind(Transport::Grpc))
        .with_reconnect_delays(Duration::from_millis(50), Duration::from_millis(200))
        .with_token_provider(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let token = app.token("alice");
            async move {
                if n < 3 {
                    Err(TokenError::Failed(format!("backend down ({n})")))
                } else {
                    Ok(token)
                }
            }
        });
    let (alice, _) = client(config);
    connected(&alice).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(proxy.attempts(), 1, "no connection without a token");
}
