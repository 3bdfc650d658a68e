//! The token provider's rules.

use std::time::Duration;

use mkondo_proto::v1::{self, client_frame::Command};

use super::*;
use crate::event::{codes, ConnectionState as S};
use crate::TokenError;

fn without_token() -> SessionConfig {
    SessionConfig {
        token: None,
        ..config()
    }
}

#[test]
fn the_provider_is_asked_only_when_the_token_is_missing() {
    let mut with_token = Sim::new(config());
    with_token.input(Input::Connect);
    assert!(with_token.fetches().is_empty(), "a token in hand is used");
    assert_eq!(with_token.count_opens(), 1);

    let mut sim = Sim::new(without_token());
    sim.input(Input::Connect);
    let fetches = sim.fetches();
    assert_eq!(fetches.len(), 1);
    assert_eq!(sim.count_opens(), 0, "no transport before the token");
    assert_eq!(sim.s.state(), S::Connecting);
    sim.input(Input::Token {
        fetch: fetches[0],
        result: Ok("fresh".into()),
    });
    let conn = sim.opened();
    sim.input(Input::TransportOpened { conn });
    let connect = sim.sent(conn).remove(0);
    assert!(matches!(connect.command, Some(Command::Connect(c)) if c.token == "fresh"));
}

#[test]
fn a_token_rejected_as_expired_is_replaced_then_reused_until_it_is() {
    let mut sim = Sim::new(config());
    sim.input(Input::Connect);
    let conn = sim.opened();
    sim.input(Input::TransportOpened { conn });
    let connect = sim.sent(conn).remove(0);
    sim.frames(conn, vec![error(connect.id, "token_expired", false)]);
    sim.closed(conn, Some(3001));
    let Phase::Backoff { until } = sim.phase() else {
        panic!("expected backoff, got {:?}", sim.phase());
    };
    sim.advance(until - sim.now.at);
    let fetches = sim.fetches();
    assert_eq!(fetches.len(), 1, "the expired token is not tried again");
    sim.input(Input::Token {
        fetch: fetches[0],
        result: Ok("token-2".into()),
    });
    let (conn, _) = sim.open_and_handshake(connect_result(Some(START_UNIX_MS + 3_600_000)));
    // A plain network drop reconnects with the same, still valid, token.
    sim.closed(conn, None);
    let Phase::Backoff { until } = sim.phase() else {
        panic!("expected backoff");
    };
    sim.advance(until - sim.now.at);
    assert!(sim.fetches().is_empty());
    assert_eq!(sim.count_opens(), 1);
}

#[test]
fn refresh_in_band_before_expiry() {
    let mut sim = Sim::new(config());
    let ttl = 10_000;
    let (conn, _) = sim.connect_with(connect_result(Some(START_UNIX_MS + ttl)));
    // A fifth of the lifetime before expiry: at 8 s.
    sim.advance(Duration::from_millis(7_999));
    assert!(sim.fetches().is_empty());
    sim.advance(Duration::from_millis(1));
    let fetches = sim.fetches();
    assert_eq!(fetches.len(), 1);
    // Never a second fetch while one is out, however long it takes.
    sim.advance(Duration::from_secs(5));
    assert!(sim.fetches().is_empty());
    sim.input(Input::Token {
        fetch: fetches[0],
        result: Ok("token-2".into()),
    });
    let sent = sim.sent(conn);
    assert!(
        matches!(&sent[..], [v1::ClientFrame { command: Some(Command::Refresh(r)), .. }] if r.token == "token-2")
    );
    let expires = sim.now.unix_ms + ttl;
    sim.frames(
        conn,
        vec![reply(
            sent[0].id,
            Reply::Refresh(v1::RefreshResult {
                token_expires_at: Some(mkondo_proto::convert::millis_to_timestamp(expires)),
            }),
        )],
    );
    assert_eq!(sim.s.state(), S::Connected, "no reconnect for a refresh");
    assert_eq!(sim.count_opens(), 0);
    sim.advance(Duration::from_secs(8));
    assert_eq!(
        sim.fetches().len(),
        1,
        "the next refresh is scheduled from the new expiry"
    );
}

#[test]
fn a_token_for_a_connection_that_is_gone_is_thrown_away() {
    let mut sim = Sim::new(config());
    let (conn, _) = sim.connect_with(connect_result(Some(START_UNIX_MS + 20_000)));
    sim.advance(Duration::from_secs(16));
    let fetch = sim.fetches()[0];
    sim.closed(conn, None);
    sim.input(Input::Token {
        fetch,
        result: Ok("late".into()),
    });
    assert!(sim.sent(conn).is_empty(), "no refresh on a dead connection");
    // The reconnect uses the old token (still valid for 4 s), not the late one.
    let Phase::Backoff { until } = sim.phase() else {
        panic!("expected backoff");
    };
    sim.advance(until - sim.now.at);
    let conn = sim.opened();
    sim.input(Input::TransportOpened { conn });
    let connect = sim.sent(conn).remove(0);
    assert!(matches!(connect.command, Some(Command::Connect(c)) if c.token == "token-1"));

    // A connect-time fetch abandoned by disconnect(): its answer opens nothing.
    let mut sim = Sim::new(without_token());
    sim.input(Input::Connect);
    let fetch = sim.fetches()[0];
    sim.input(Input::Disconnect);
    sim.input(Input::Token {
        fetch,
        result: Ok("late".into()),
    });
    assert_eq!(sim.count_opens(), 0);
    assert_eq!(sim.s.state(), S::Disconnected);
}

#[test]
fn an_old_fetch_still_out_delays_the_next_rather_than_doubling_it() {
    let mut sim = Sim::new(without_token());
    sim.input(Input::Connect);
    let first = sim.fetches()[0];
    sim.input(Input::Disconnect);
    sim.input(Input::Connect);
    assert!(sim.fetches().is_empty(), "never two fetches at once");
    sim.input(Input::Token {
        fetch: first,
        result: Ok("for the old attempt".into()),
    });
    let second = sim.fetches();
    assert_eq!(second.len(), 1, "asked again once the old one ended");
    assert_eq!(sim.count_opens(), 0);
    sim.input(Input::Token {
        fetch: second[0],
        result: Ok("fresh".into()),
    });
    assert_eq!(sim.count_opens(), 1);
}

#[test]
fn unauthorized_stops_for_good() {
    let mut sim = Sim::new(without_token());
    sim.input(Input::Connect);
    let fetch = sim.fetches()[0];
    sim.events();
    sim.input(Input::Token {
        fetch,
        result: Err(TokenError::Unauthorized("user banned".into())),
    });
    assert_eq!(
        state_changes(&sim.events()),
        [(S::Connecting, S::Disconnected, codes::UNAUTHORIZED)]
    );
    sim.advance(Duration::from_secs(3600));
    assert!(sim.take().is_empty(), "no attempt after unauthorized");

    // Also when it answers a refresh.
    let mut sim = Sim::new(config());
    let (conn, _) = sim.connect_with(connect_result(Some(START_UNIX_MS + 10_000)));
    sim.advance(Duration::from_secs(8));
    let fetch = sim.fetches()[0];
    sim.input(Input::Token {
        fetch,
        result: Err(TokenError::Unauthorized("signed out".into())),
    });
    assert!(sim
        .take()
        .iter()
        .any(|o| matches!(o, Output::Close { conn: c } if *c == conn)));
    assert_eq!(sim.phase(), Phase::Stopped);
    sim.advance(Duration::from_secs(3600));
    assert_eq!(sim.count_opens(), 0);
}

#[test]
fn other_provider_failures_retry_with_backoff() {
    let mut sim = Sim::new(without_token());
    sim.input(Input::Connect);
    let mut last_wait = Duration::ZERO;
    for round in 0..6 {
        let fetches = sim.fetches();
        assert_eq!(fetches.len(), 1, "round {round}");
        sim.input(Input::Token {
            fetch: fetches[0],
            result: Err(TokenError::Failed("503".into())),
        });
        assert_eq!(sim.s.state(), S::Connecting);
        let Phase::Backoff { until } = sim.phase() else {
            panic!("expected backoff");
        };
        last_wait = until - sim.now.at;
        assert!(last_wait >= Duration::from_millis(500));
        sim.advance(last_wait);
    }
    assert!(last_wait > Duration::from_secs(1), "the delays grow");
    // A provider that never answers counts as a failure at the timeout.
    let fetches = sim.fetches();
    assert_eq!(fetches.len(), 1);
    sim.advance(Duration::from_secs(10));
    assert!(matches!(sim.phase(), Phase::Backoff { .. }));
}

#[test]
fn no_token_and_no_provider_stops() {
    let mut sim = Sim::new(SessionConfig {
        token: None,
        has_token_provider: false,
        ..config()
    });
    sim.input(Input::Connect);
    assert_eq!(sim.phase(), Phase::Stopped);
    assert_eq!(
        state_changes(&sim.events()).last().copied(),
        Some((S::Connecting, S::Disconnected, codes::NO_TOKEN))
    );
}
