//! 10,000 random interleavings of connect / disconnect / transport events /
//! token answers / replies / time, checking after every step that the client is
//! never `connecting` without a live transport or an armed timer, that state
//! events chain, that nothing reconnects by itself after a terminal stop, and
//! that nothing at all happens after shutdown.

use std::time::Duration;

use mkondo_proto::v1::client_frame::Command;

use super::*;
use crate::backoff::Rng;
use crate::event::AppState;
use crate::TokenError;

/// What the fake environment knows.
#[derive(Default)]
struct World {
    conns: Vec<ConnId>,
    fetches: Vec<FetchId>,
    /// Handshake id per connection.
    connects: Vec<(ConnId, u32)>,
    shut: bool,
    /// The last announced state, from events.
    state: Option<ConnectionState>,
    /// Stopped by a terminal code: a `connecting` now needs a `connect()` first.
    stopped: bool,
}

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.below(items.len() as u64) as usize])
}

fn step(sim: &mut Sim, world: &mut World, rng: &mut Rng) -> Input {
    let current = sim.s.phase().conn();
    let any_conn = pick(rng, &world.conns).or(current).unwrap_or(1);
    let conn = if rng.below(4) == 0 {
        any_conn
    } else {
        current.unwrap_or(any_conn)
    };
    match rng.below(16) {
        0 | 1 => Input::Connect,
        2 => Input::Disconnect,
        3 if rng.below(20) == 0 => Input::Shutdown,
        4 | 5 => Input::TransportOpened { conn },
        6 => Input::TransportClosed {
            conn,
            code: pick(
                rng,
                &[
                    None,
                    Some(1006),
                    Some(3000),
                    Some(3001),
                    Some(3003),
                    Some(3500),
                    Some(3504),
                ],
            )
            .flatten(),
            reason: "random".into(),
        },
        7 | 8 => {
            let id = world
                .connects
                .iter()
                .rev()
                .find(|(c, _)| *c == conn)
                .map_or(0, |(_, id)| *id);
            let frame = match rng.below(6) {
                0 => error(id, "token_expired", false),
                1 => error(id, "invalid_token", false),
                2 => error(id, "unavailable", true),
                _ => reply(
                    id,
                    Reply::Connect(connect_result(Some(
                        sim.now.unix_ms + rng.below(60_000) as i64,
                    ))),
                ),
            };
            Input::Frames {
                conn,
                frames: vec![frame],
            }
        }
        9 => Input::Frames {
            conn,
            frames: vec![disconnect(
                pick(rng, &[3000u16, 3001, 3002, 3500, 3502]).unwrap_or(3000),
            )],
        },
        10 | 11 => {
            let fetch = pick(rng, &world.fetches).unwrap_or(1);
            let result = match rng.below(5) {
                0 => Err(TokenError::Unauthorized("no".into())),
                1 => Err(TokenError::Failed("flaky".into())),
                _ => Ok(format!("token-{}", rng.below(1000))),
            };
            Input::Token { fetch, result }
        }
        12 => Input::NetworkAvailable(rng.below(2) == 0),
        13 => Input::AppState(if rng.below(2) == 0 {
            AppState::Foreground
        } else {
            AppState::Background
        }),
        _ => Input::Tick,
    }
}

fn check(sim: &mut Sim, world: &mut World, input: &Input, run: u64, n: usize) {
    let outputs = sim.take();
    let phase = sim.s.phase().clone();
    let ctx = || format!("run {run} step {n} after {input:?}, phase {phase:?}");
    for output in outputs {
        match output {
            Output::Open { conn } => world.conns.push(conn),
            Output::FetchToken { fetch } => world.fetches.push(fetch),
            Output::Send { conn, frames } => {
                for f in frames {
                    if matches!(f.command, Some(Command::Connect(_))) {
                        world.connects.push((conn, f.id));
                    }
                }
            }
            Output::Event(Event::StateChanged { old, new, .. }) => {
                assert!(!world.shut, "event after shutdown: {}", ctx());
                assert_ne!(old, new, "{}", ctx());
                if let Some(state) = world.state {
                    assert_eq!(old, state, "state events must chain: {}", ctx());
                }
                if new == ConnectionState::Connecting && world.stopped {
                    assert_eq!(
                        *input,
                        Input::Connect,
                        "connecting after a terminal stop without connect(): {}",
                        ctx()
                    );
                }
                world.state = Some(new);
            }
            Output::Event(_) => assert!(!world.shut, "event after shutdown: {}", ctx()),
            // No store in these runs: nothing to persist.
            Output::Persist(changes) => panic!("persisted without a store: {changes:?}"),
            Output::Close { .. } | Output::Done { .. } => {}
        }
    }
    if *input == Input::Shutdown {
        world.shut = true;
    }
    if world.shut {
        assert_eq!(phase, Phase::Shut, "{}", ctx());
        return;
    }
    world.stopped = match phase {
        Phase::Stopped => true,
        Phase::Idle => false,
        _ => world.stopped && *input != Input::Connect,
    };
    assert_eq!(
        sim.s.state(),
        phase.state(),
        "announced state and phase disagree: {}",
        ctx()
    );
    if phase.state() == ConnectionState::Connecting {
        let armed = sim.s.next_deadline().is_some();
        let alive = phase.conn().is_some() || matches!(phase, Phase::Backoff { .. } | Phase::Token);
        assert!(
            armed && alive,
            "connecting with nothing to wait for: {}",
            ctx()
        );
        if let Phase::Backoff { until } = phase {
            assert!(
                until > sim.now.at,
                "a backoff already due was not fired: {}",
                ctx()
            );
        }
    }
    if let Phase::Connected { .. } = phase {
        assert!(
            sim.s.next_deadline().is_some(),
            "connected without liveness timer: {}",
            ctx()
        );
    }
}

#[test]
fn ten_thousand_random_interleavings_keep_the_invariants() {
    for run in 0..10_000u64 {
        let mut rng = Rng::new(run.wrapping_mul(0x9E37_79B9) ^ 0xABCD);
        let cfg = SessionConfig {
            token: (rng.below(2) == 0).then(|| "token-0".into()),
            seed: run,
            ..config()
        };
        let mut sim = Sim::new(cfg);
        let mut world = World {
            state: Some(ConnectionState::Disconnected),
            ..World::default()
        };
        for n in 0..60 {
            let input = step(&mut sim, &mut world, &mut rng);
            if input == Input::Tick {
                // Time passes: up to the next deadline, or a random stretch.
                let d = match (rng.below(2), sim.s.next_deadline()) {
                    (0, Some(at)) => at.saturating_duration_since(sim.now.at),
                    _ => Duration::from_millis(rng.below(40_000)),
                };
                sim.advance(d);
                check(&mut sim, &mut world, &Input::Tick, run, n);
            } else {
                sim.input(input.clone());
                check(&mut sim, &mut world, &input, run, n);
            }
            if world.shut {
                break;
            }
        }
    }
}
