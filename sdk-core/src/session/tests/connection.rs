//! States, reconnect schedule, disconnect codes, transport generations,
//! liveness, network and app-state signals, in-flight requests.

use std::time::Duration;

use mkondo_proto::{
    v1::{self, client_frame::Command, push::Push},
    DisconnectCode,
};

use super::*;
use crate::backoff::delay_for;
use crate::event::{codes, AppState, ConnectionState as S};

#[test]
fn connect_goes_connecting_then_connected_with_one_event_each() {
    let mut sim = Sim::new(config());
    sim.input(Input::Connect);
    assert_eq!(
        state_changes(&sim.events()),
        [(S::Disconnected, S::Connecting, codes::CONNECT_CALLED)]
    );
    let conn = sim.opened();
    sim.input(Input::TransportOpened { conn });
    let sent = sim.sent(conn);
    sim.frames(
        conn,
        vec![reply(sent[0].id, Reply::Connect(connect_result(None)))],
    );
    assert_eq!(
        state_changes(&sim.events()),
        [(S::Connecting, S::Connected, codes::CONNECTED)]
    );
}

#[test]
fn connect_and_disconnect_are_idempotent() {
    let mut sim = Sim::new(config());
    sim.input(Input::Disconnect);
    assert!(
        sim.take().is_empty(),
        "disconnect while disconnected does nothing"
    );
    sim.connect();
    sim.events();
    sim.input(Input::Connect);
    sim.input(Input::Connect);
    assert!(
        sim.take().is_empty(),
        "connect while connected does nothing"
    );
    sim.input(Input::Disconnect);
    let out = sim.take();
    assert!(out.iter().any(|o| matches!(o, Output::Close { .. })));
    sim.input(Input::Disconnect);
    assert!(sim.take().is_empty());
    assert_eq!(sim.s.state(), S::Disconnected);
    // Nothing retries after a disconnect().
    sim.advance(Duration::from_secs(120));
    assert_eq!(sim.count_opens(), 0);
    assert_eq!(sim.s.next_deadline(), None);
}

#[test]
fn shutdown_stops_everything_and_emits_nothing() {
    let mut sim = Sim::new(config());
    let conn = sim.connect();
    sim.events();
    let pending = sim.call(Call::Request {
        command: Command::Ping(v1::PingRequest {}),
        idempotent: true,
    });
    let queued = sim.call(Call::Send(v1::SendRequest {
        conversation_id: "c".into(),
        text: "hi".into(),
        ..Default::default()
    }));
    sim.input(Input::Shutdown);
    assert!(sim.events().is_empty(), "no event after shutdown");
    assert!(matches!(sim.done(pending), Some(Err(Error::Shutdown))));
    assert!(matches!(sim.done(queued), Some(Err(Error::Shutdown))));
    // Anything afterwards is ignored, and calls fail at once.
    sim.closed(conn, Some(1006));
    sim.input(Input::Connect);
    sim.advance(Duration::from_secs(60));
    let late = sim.call(Call::Subscribe("c".into()));
    assert!(matches!(sim.done(late), Some(Err(Error::Shutdown))));
    assert!(sim
        .take()
        .iter()
        .all(|o| !matches!(o, Output::Event(_) | Output::Open { .. })));
}

#[test]
fn reconnect_delays_follow_the_formula_and_reset_on_connect() {
    let cfg = config();
    let (min, max) = (cfg.min_delay, cfg.max_delay);
    let mut sim = Sim::new(cfg);
    sim.input(Input::Connect);
    for attempt in 0..12u32 {
        let conn = sim.opened();
        sim.closed(conn, Some(1006));
        let Phase::Backoff { until } = sim.phase() else {
            panic!("expected backoff, got {:?}", sim.phase());
        };
        let wait = until - sim.now.at;
        let low = delay_for(min, max, attempt, 0.0);
        let high = delay_for(min, max, attempt, 1.0);
        assert!(
            wait >= low && wait <= high,
            "attempt {attempt}: {wait:?} not in {low:?}..={high:?}"
        );
        assert!(wait >= min && wait <= max);
        // Not a moment early.
        sim.advance(wait - Duration::from_millis(1));
        assert_eq!(sim.count_opens(), 0, "attempt {attempt} came early");
        sim.advance(Duration::from_millis(1));
    }
    sim.open_and_handshake(connect_result(None));
    let conn = sim.s.phase().conn().unwrap();
    sim.closed(conn, Some(1006));
    let Phase::Backoff { until } = sim.phase() else {
        panic!("expected backoff");
    };
    assert!(
        until - sim.now.at <= min * 2,
        "the count resets once connected"
    );
}

#[test]
fn ten_thousand_clients_spread_their_first_retry_and_respect_the_cap() {
    let mut firsts = Vec::new();
    let mut lates = Vec::new();
    for seed in 0..10_000u64 {
        let mut sim = Sim::new(SessionConfig { seed, ..config() });
        sim.input(Input::Connect);
        let conn = sim.opened();
        sim.closed(conn, Some(DisconnectCode::Shutdown.code()));
        let Phase::Backoff { until } = sim.phase() else {
            panic!("expected backoff");
        };
        firsts.push((until - sim.now.at).as_secs_f64());
        // Drive one in ten much further, to the cap.
        if seed % 10 == 0 {
            for _ in 0..9 {
                let Phase::Backoff { until } = sim.phase() else {
                    panic!("expected backoff");
                };
                sim.advance(until - sim.now.at);
                let conn = sim.opened();
                sim.closed(conn, None);
            }
            let Phase::Backoff { until } = sim.phase() else {
                panic!("expected backoff");
            };
            lates.push((until - sim.now.at).as_secs_f64());
        }
    }
    // Attempt 0 waits U[0.5 s, 1.0 s]: no retry before min, none after 2·min,
    // and spread evenly (each 50 ms slice holds about a tenth).
    let (lo, hi) = firsts
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), &x| (l.min(x), h.max(x)));
    assert!(lo >= 0.5 && hi <= 1.0, "first retries in {lo}..{hi}");
    let mut slices = [0u32; 10];
    for x in &firsts {
        slices[(((x - 0.5) / 0.05) as usize).min(9)] += 1;
    }
    for n in slices {
        assert!((850..1150).contains(&n), "uneven first retries: {slices:?}");
    }
    // Attempt 9: min·2⁹ = 256 s is capped: U[0.5, 20] then capped at 20 s.
    let max = lates.iter().copied().fold(0.0, f64::max);
    let min = lates.iter().copied().fold(f64::MAX, f64::min);
    assert!(max <= 20.0, "cap exceeded: {max}");
    assert!(min >= 0.5, "below min: {min}");
    let spread_low = lates.iter().filter(|&&x| x < 10.0).count();
    assert!(
        spread_low > 300 && spread_low < 700,
        "late retries not spread: {spread_low} of {}",
        lates.len()
    );
}

/// Every code of docs/protocol.md's table, plus transport closes and unknown codes.
#[test]
fn disconnect_codes_follow_the_table() {
    let table: &[(u16, bool)] = &[
        (3000, true),
        (3001, true),
        (3002, true),
        (3003, true),
        (3004, true),
        (3005, true),
        (3500, false),
        (3501, false),
        (3502, false),
        (3503, false),
        (3504, false),
        (3505, false),
        (3506, false),
        // Unknown codes follow their range; other closes reconnect.
        (3333, true),
        (3999, false),
        (1000, true),
        (1001, true),
        (1006, true),
        (4000, true),
    ];
    for known in DisconnectCode::ALL {
        assert!(
            table.iter().any(|(c, _)| *c == known.code()),
            "{known:?} missing from the table test"
        );
    }
    for &(code, reconnects) in table {
        for via_push in [true, false] {
            let mut sim = Sim::new(config());
            let conn = sim.connect();
            sim.events();
            if via_push {
                sim.frames(conn, vec![disconnect(code)]);
                sim.closed(conn, Some(1000)); // the push's code wins
            } else {
                sim.closed(conn, Some(code));
            }
            let events = sim.events();
            let change = state_changes(&events);
            if reconnects {
                assert_eq!(change, [(S::Connected, S::Connecting, code)], "code {code}");
                sim.advance(Duration::from_secs(25));
                assert!(
                    sim.count_opens() + sim.fetches().len() >= 1,
                    "code {code} must retry"
                );
            } else {
                assert_eq!(
                    change,
                    [(S::Connected, S::Disconnected, code)],
                    "code {code}"
                );
                assert_eq!(sim.phase(), Phase::Stopped);
                sim.advance(Duration::from_secs(600));
                assert_eq!(sim.count_opens(), 0, "code {code} must not retry");
                assert!(sim.fetches().is_empty());
                assert!(sim.events().is_empty());
                // Until the application acts.
                sim.input(Input::Connect);
                assert_eq!(sim.count_opens(), 1);
            }
        }
    }
}

#[test]
fn callbacks_of_a_replaced_transport_are_ignored() {
    let mut sim = Sim::new(config());
    let old = sim.connect();
    sim.closed(old, Some(1006));
    let Phase::Backoff { until } = sim.phase() else {
        panic!("expected backoff");
    };
    sim.advance(until - sim.now.at);
    let new = sim.opened();
    assert_ne!(old, new);
    sim.events();
    // The old connection speaks again: nothing happens.
    sim.input(Input::TransportOpened { conn: old });
    sim.frames(
        old,
        vec![
            push(Push::Message(message("c", 1, "bob"))),
            disconnect(3500),
        ],
    );
    sim.closed(old, Some(3500));
    assert!(
        sim.take().is_empty(),
        "a replaced transport changed something"
    );
    assert!(matches!(sim.phase(), Phase::Opening { conn, .. } if conn == new));
    // The new one completes normally.
    sim.input(Input::TransportOpened { conn: new });
    let connect = sim.sent(new).remove(0);
    sim.frames(
        new,
        vec![reply(connect.id, Reply::Connect(connect_result(None)))],
    );
    assert_eq!(sim.s.state(), S::Connected);
}

#[test]
fn silence_past_ping_interval_and_grace_reconnects() {
    let mut sim = Sim::new(config());
    let conn = sim.connect();
    // A ping now and then keeps it alive (and is answered with a pong).
    for _ in 0..4 {
        sim.advance(Duration::from_secs(25));
        sim.frames(conn, vec![push(Push::Ping(v1::ServerPing {}))]);
        let pong = sim.sent(conn);
        assert!(matches!(
            pong[..],
            [v1::ClientFrame {
                id: 0,
                command: Some(Command::Pong(_))
            }]
        ));
    }
    assert_eq!(sim.s.state(), S::Connected);
    sim.events();
    sim.advance(Duration::from_millis(34_999));
    assert_eq!(sim.s.state(), S::Connected);
    sim.advance(Duration::from_millis(1));
    assert!(sim
        .take()
        .iter()
        .any(|o| matches!(o, Output::Close { conn: c } if *c == conn)));
    assert!(matches!(sim.phase(), Phase::Backoff { .. }));
}

#[test]
fn network_back_and_foreground_cut_the_wait() {
    for signal in [
        Input::NetworkAvailable(true),
        Input::AppState(AppState::Foreground),
    ] {
        let mut sim = Sim::new(SessionConfig {
            app_state: AppState::Background,
            ..config()
        });
        sim.input(Input::Connect);
        for _ in 0..8 {
            let conn = sim.opened();
            sim.closed(conn, None);
            let Phase::Backoff { until } = sim.phase() else {
                panic!("expected backoff");
            };
            sim.advance(until - sim.now.at);
        }
        let conn = sim.opened();
        sim.closed(conn, None);
        assert!(matches!(sim.phase(), Phase::Backoff { .. }));
        sim.input(Input::NetworkAvailable(false));
        sim.input(signal.clone());
        assert_eq!(sim.count_opens(), 1, "{signal:?} must reconnect at once");
        // And if that attempt fails, the schedule applies again: no tight loop.
        let conn = sim.opened();
        sim.closed(conn, None);
        let Phase::Backoff { until } = sim.phase() else {
            panic!("expected backoff");
        };
        assert!(until - sim.now.at >= Duration::from_millis(500));
    }
}

#[test]
fn background_tells_the_server() {
    let mut sim = Sim::new(config());
    let conn = sim.connect();
    sim.input(Input::AppState(AppState::Background));
    let sent = sim.sent(conn);
    assert!(
        matches!(&sent[..], [v1::ClientFrame { command: Some(Command::AppState(r)), .. }] if r.state == "background"),
        "{sent:?}"
    );
    // A reconnect carries it in `connect`.
    sim.closed(conn, None);
    let Phase::Backoff { until } = sim.phase() else {
        panic!("expected backoff");
    };
    sim.advance(until - sim.now.at);
    let conn = sim.opened();
    sim.input(Input::TransportOpened { conn });
    let connect = sim.sent(conn).remove(0);
    assert!(matches!(connect.command, Some(Command::Connect(c)) if c.app_state == "background"));
}

#[test]
fn open_and_handshake_have_a_deadline() {
    let mut sim = Sim::new(config());
    sim.input(Input::Connect);
    let conn = sim.opened();
    sim.advance(Duration::from_secs(10));
    assert!(sim
        .take()
        .iter()
        .any(|o| matches!(o, Output::Close { conn: c } if *c == conn)));
    assert!(matches!(sim.phase(), Phase::Backoff { .. }));
    let Phase::Backoff { until } = sim.phase() else {
        unreachable_phase()
    };
    sim.advance(until - sim.now.at);
    let conn = sim.opened();
    sim.input(Input::TransportOpened { conn });
    sim.advance(Duration::from_secs(10));
    assert!(
        matches!(sim.phase(), Phase::Backoff { .. }),
        "an unanswered connect times out"
    );
}

fn unreachable_phase() -> ! {
    panic!("expected backoff")
}

#[test]
fn in_flight_requests_fail_or_are_retried_and_never_outlive_the_timeout() {
    let mut sim = Sim::new(config());
    let conn = sim.connect();
    let read = sim.call(Call::Request {
        command: Command::History(v1::HistoryRequest {
            conversation_id: "c".into(),
            ..Default::default()
        }),
        idempotent: true,
    });
    let write = sim.call(Call::Request {
        command: Command::Leave(v1::LeaveRequest {
            conversation_id: "c".into(),
        }),
        idempotent: false,
    });
    assert_eq!(sim.sent(conn).len(), 2);
    sim.closed(conn, None);
    assert!(matches!(sim.done(write), Some(Err(Error::ConnectionLost))));
    assert!(sim.done(read).is_none(), "a read is retried");
    let Phase::Backoff { until } = sim.phase() else {
        panic!("expected backoff");
    };
    sim.advance(until - sim.now.at);
    let (conn, _) = sim.open_and_handshake(connect_result(None));
    let resent = sim.sent(conn);
    assert!(matches!(
        &resent[..],
        [v1::ClientFrame {
            command: Some(Command::History(_)),
            ..
        }]
    ));
    sim.frames(
        conn,
        vec![reply(
            resent[0].id,
            Reply::History(v1::HistoryResult::default()),
        )],
    );
    assert!(matches!(sim.done(read), Some(Ok(Reply::History(_)))));

    // Unanswered: fails at the timeout, not later, and a late reply is ignored.
    let slow = sim.call(Call::Request {
        command: Command::Ping(v1::PingRequest {}),
        idempotent: true,
    });
    let id = sim.sent(conn)[0].id;
    sim.advance(Duration::from_millis(9_999));
    assert!(sim.done(slow).is_none());
    sim.advance(Duration::from_millis(1));
    assert!(matches!(sim.done(slow), Some(Err(Error::Timeout(_)))));
    sim.frames(conn, vec![reply(id, Reply::Pong(v1::PongResult {}))]);
    assert!(sim.done(slow).is_none());

    // A request made while connecting waits for the connection, within its timeout.
    sim.closed(conn, None);
    let waiting = sim.call(Call::Request {
        command: Command::Ping(v1::PingRequest {}),
        idempotent: true,
    });
    sim.advance(Duration::from_secs(10));
    assert!(matches!(sim.done(waiting), Some(Err(Error::Timeout(_)))));
    // And one made while disconnected fails at once.
    sim.input(Input::Disconnect);
    let refused = sim.call(Call::Request {
        command: Command::Ping(v1::PingRequest {}),
        idempotent: true,
    });
    assert!(matches!(sim.done(refused), Some(Err(Error::NotConnected))));
}

#[test]
fn events_keep_wire_order() {
    let mut sim = Sim::new(config());
    let conn = sim.connect();
    sim.events();
    sim.frames(
        conn,
        vec![
            push(Push::Presence(v1::Presence {
                user_id: "bob".into(),
                status: "online".into(),
                ..Default::default()
            })),
            push(Push::Message(message("c", 1, "bob"))),
            push(Push::Typing(v1::TypingPush {
                conversation_id: "c".into(),
                user_id: "carol".into(),
                stop: false,
            })),
            push(Push::Message(message("c", 2, "carol"))),
        ],
    );
    let kinds: Vec<String> = sim
        .events()
        .iter()
        .map(|e| match e {
            Event::Presence(_) => "presence".to_owned(),
            Event::Message(m) => format!("message {}", m.seq),
            Event::Typing { typing, .. } => format!("typing {typing}"),
            other => format!("{other:?}"),
        })
        .collect();
    // carol's message also ends her typing indicator, right before it.
    assert_eq!(
        kinds,
        [
            "presence",
            "message 1",
            "typing true",
            "typing false",
            "message 2"
        ]
    );
}
