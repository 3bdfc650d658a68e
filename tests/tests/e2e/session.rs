//! Session lifetime: in-band token refresh, expiry after the grace period, server
//! pings and dead connections, connections per user.

use std::{collections::HashMap, time::Duration};

use mkondo_tests::{
    now_millis, per_transport, poll_until, Client, ClientOptions, ServerOptions, TestServer,
    Transport, WAIT,
};

const GRACE_MS: u64 = 1000;

/// Sleeps until the wall clock reads `at_ms` (Unix milliseconds).
async fn sleep_until_ms(at_ms: i64) {
    let left = at_ms - now_millis();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

per_transport!(
    refresh_in_band_keeps_the_connection,
    unrefreshed_token_closes_after_the_grace_period,
    dead_connections_are_closed_live_ones_kept,
    connections_per_user_are_limited,
    a_connection_that_never_connects_is_closed_after_the_connect_timeout,
);

/// A 2 s token refreshed in-band before it expires: the same connection keeps
/// working well past the old expiry plus the grace period.
async fn refresh_in_band_keeps_the_connection(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().token_grace_ms(GRACE_MS)).await;
    let app = &server.app;
    let short = app.token_ttl("alice", 2);
    let (client, reply) = server.client_with_token(transport, &short).await;
    let old_exp = reply.token_expires_at.expect("token_expires_at").seconds;

    let mut claims = app.claims("alice");
    claims.exp = Some(claims.iat.unwrap() + 600);
    let refreshed = client.refresh(&app.sign(&claims)).await.unwrap();
    assert_eq!(
        refreshed.token_expires_at.map(|t| t.seconds),
        claims.exp,
        "the refresh reply tells the new expiry"
    );

    sleep_until_ms(old_exp * 1000 + GRACE_MS as i64 + 1500).await;
    assert!(
        !client.is_closed(),
        "closed despite the refresh: {:?}",
        client.wait_closed(Duration::ZERO).await
    );
    client.ping().await.unwrap();

    // A refresh with a bad token is refused.
    let forged = app.sign_with(
        jsonwebtoken::Algorithm::HS256,
        Some(&app.kid),
        b"wrong secret",
        &app.claims("alice"),
    );
    let err = client.refresh(&forged).await.unwrap_err();
    assert_eq!(err.code, "invalid_token", "{err:?}");
}

/// A 2 s token never refreshed: still served during the grace period, then closed
/// with `token_expired` (3001, reconnect) — not before expiry + grace.
async fn unrefreshed_token_closes_after_the_grace_period(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().token_grace_ms(GRACE_MS)).await;
    let token = server.app.token_ttl("alice", 2);
    let (client, reply) = server.client_with_token(transport, &token).await;
    let exp_ms = reply.token_expires_at.expect("token_expires_at").seconds * 1000;

    // Expired, but within the grace period: still served.
    sleep_until_ms(exp_ms + 200).await;
    client.ping().await.unwrap();

    let closed = client
        .wait_closed(Duration::from_secs(15))
        .await
        .expect("the connection outlived its token's expiry + grace");
    let closed_at = now_millis();
    assert!(
        closed_at >= exp_ms + GRACE_MS as i64 - 300,
        "closed {} ms before expiry + grace",
        exp_ms + GRACE_MS as i64 - closed_at
    );
    let d = closed
        .disconnect
        .clone()
        .unwrap_or_else(|| panic!("no disconnect push: {closed:?}"));
    assert_eq!((d.code, d.reconnect), (3001, true), "{d:?}");
    if let Some(code) = closed.close_code {
        assert_eq!(code, 3001);
    }
}

/// With pings every 300 ms and a 300 ms pong timeout, a client that never answers
/// is closed with `no_pong` (3003, reconnect) while one that answers stays.
async fn dead_connections_are_closed_live_ones_kept(transport: Transport) {
    let server = TestServer::start(
        ServerOptions::new()
            .ping_interval_ms(300)
            .pong_timeout_ms(300),
    )
    .await;
    let (alive, _) = server.client(transport, "alice").await;
    let opts = ClientOptions {
        auto_pong: false,
        ..ClientOptions::for_transport(transport)
    };
    let silent = Client::open_with(server.addr, transport, opts).await;
    silent
        .connect(&server.app.token("bob"), HashMap::new())
        .await
        .unwrap();
    let started = std::time::Instant::now();

    let closed = silent
        .wait_closed(WAIT)
        .await
        .expect("a client that never answers pings was not closed");
    assert!(silent.pings_received() >= 1, "the server never pinged");
    let d = closed
        .disconnect
        .clone()
        .unwrap_or_else(|| panic!("no disconnect push: {closed:?}"));
    assert_eq!((d.code, d.reconnect), (3003, true), "{d:?}");
    if let Some(code) = closed.close_code {
        assert_eq!(code, 3003);
    }

    // The answering client lives on well past several ping periods.
    let elapsed = started.elapsed();
    if elapsed < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_secs(2) - elapsed).await;
    }
    assert!(
        !alive.is_closed(),
        "{:?}",
        alive.wait_closed(Duration::ZERO).await
    );
    assert!(
        alive.pings_received() >= 3,
        "pings: {}",
        alive.pings_received()
    );
    alive.ping().await.unwrap();
}

/// A connection that never sends `connect` is closed with `bad_protocol`
/// (3503) once the connect timeout (10 s) passes, not before.
async fn a_connection_that_never_connects_is_closed_after_the_connect_timeout(
    transport: Transport,
) {
    let server = TestServer::start(ServerOptions::new()).await;
    let opened = std::time::Instant::now();
    let client = Client::open_with(
        server.addr,
        transport,
        ClientOptions::for_transport(transport),
    )
    .await;
    let closed = client
        .wait_closed(Duration::from_secs(20))
        .await
        .expect("a connection without connect was kept past the connect timeout");
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= Duration::from_millis(9_500),
        "closed after {elapsed:?}"
    );
    let d = closed
        .disconnect
        .clone()
        .unwrap_or_else(|| panic!("no disconnect push: {closed:?}"));
    assert_eq!(d.code, 3503, "{d:?}");
    if let Some(code) = closed.close_code {
        assert_eq!(code, 3503);
    }
}

/// With at most 2 connections per user, a third is refused with
/// `connection_limit` (3504, stop); the first two keep working, other users are not
/// affected, and a slot frees up when one disconnects.
async fn connections_per_user_are_limited(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().max_connections_per_user(2)).await;
    let (first, _) = server.client(transport, "alice").await;
    let (second, _) = server.client(transport, "alice").await;

    let third = server.open(transport).await;
    let _ = third
        .connect(&server.app.token("alice"), HashMap::new())
        .await;
    let closed = third
        .wait_closed(WAIT)
        .await
        .expect("a third connection of the same user stayed open");
    assert_eq!(closed.code(), Some(3504), "{closed:?}");
    if let Some(d) = &closed.disconnect {
        assert!(!d.reconnect);
    }

    first.ping().await.unwrap();
    second.ping().await.unwrap();
    server.client(transport, "bob").await;

    drop(first);
    poll_until(WAIT, "a free slot after a disconnect", || async {
        let client = server.open(transport).await;
        let ok = client
            .connect(&server.app.token("alice"), HashMap::new())
            .await
            .is_ok()
            && client.ping().await.is_ok();
        ok.then_some(client)
    })
    .await;
}
