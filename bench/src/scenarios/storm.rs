//! Reconnect storm: `clients` real SDK clients (`mkondo-sdk`, with their own
//! full-jitter backoff, token handling and resume) connected to one server,
//! which is then restarted on the same address. Measured: how long until every
//! client is connected again and holds the message that was posted into its
//! group as the server came back (so it has resumed, not merely reconnected),
//! the server's peak CPU meanwhile, and whether any client was refused.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use mkondo_sdk::{Client, Config, ConnectionState, Event, TransportKind};
use serde_json::json;

use crate::client::progress;
use crate::mk::Wire;
use crate::procstat::CpuPeak;
use crate::results::Storm;
use crate::servers::Rest;

use super::{any_port, Ctx};

const GROUP_SIZE: usize = 100;
const FIRST_WAVE: usize = 500;
const WAIT: Duration = Duration::from_secs(45);

/// What the clients' listeners saw, shared by all of them.
#[derive(Default)]
struct Seen {
    /// Per client: the phase (1 first connect, 2 after the restart) in which
    /// it last became connected, and in which it got the phase's message.
    connected_in: Vec<AtomicU8>,
    got_message_in: Vec<AtomicU8>,
    phase: AtomicU8,
    connected: [AtomicUsize; 3],
    messages: [AtomicUsize; 3],
    gave_up: AtomicUsize,
    codes: Mutex<BTreeMap<u16, u64>>,
    duplicates: AtomicU64,
}

impl Seen {
    fn on_event(&self, i: usize, event: Event) {
        let phase = self.phase.load(Relaxed);
        match event {
            Event::StateChanged { new, code, .. } => match new {
                ConnectionState::Connected => {
                    if self.connected_in[i].swap(phase, Relaxed) != phase {
                        self.connected[phase as usize].fetch_add(1, Relaxed);
                    }
                }
                ConnectionState::Connecting => {
                    *self.codes.lock().expect("codes").entry(code).or_default() += 1;
                }
                ConnectionState::Disconnected => {
                    self.gave_up.fetch_add(1, Relaxed);
                    *self.codes.lock().expect("codes").entry(code).or_default() += 1;
                }
            },
            Event::Message(m) if m.text.starts_with(&format!("storm-{phase}:")) => {
                if self.got_message_in[i].swap(phase, Relaxed) != phase {
                    self.messages[phase as usize].fetch_add(1, Relaxed);
                } else {
                    self.duplicates.fetch_add(1, Relaxed);
                }
            }
            _ => {}
        }
    }
}

pub async fn run(ctx: &Ctx, wire: Wire) -> anyhow::Result<Storm> {
    let app = ctx.mkondo.create_app().await?;
    let server = ctx.mkondo.start(any_port()).await?;
    let addr = server.addr;
    let n = ctx.sizes.storm_clients;
    let group_size = GROUP_SIZE.min(n.max(2) / 2);
    let groups = n.div_ceil(group_size);
    let user = |i: usize| format!("storm-{i}");
    let rest = ctx.mkondo.rest(addr, &app);
    let mut group_ids = Vec::with_capacity(groups);
    for g in 0..groups {
        let members: Vec<String> = (g * group_size..((g + 1) * group_size).min(n))
            .map(user)
            .collect();
        group_ids.push(
            rest.conversation(
                json!({"kind": "group", "name": format!("storm {g}"), "members": members}),
            )
            .await?,
        );
    }

    let seen = Arc::new(Seen {
        connected_in: (0..n).map(|_| AtomicU8::new(0)).collect(),
        got_message_in: (0..n).map(|_| AtomicU8::new(0)).collect(),
        ..Default::default()
    });
    seen.phase.store(1, Relaxed);
    let kind = match wire {
        Wire::WsJson => TransportKind::WebSocketJson,
        Wire::WsProto => TransportKind::WebSocketProtobuf,
        Wire::Grpc => TransportKind::Grpc,
    };
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let config = Config::new(format!("ws://{addr}/v1/realtime"), kind)
            .with_token(app.token(&user(i), &[]));
        let seen = seen.clone();
        clients.push(Client::new(config, move |event| seen.on_event(i, event))?);
    }
    // The first connections are made in waves: the storm to measure is the
    // one after the restart, not this set-up.
    let started = Instant::now();
    for (i, c) in clients.iter().enumerate() {
        c.connect();
        if (i + 1) % FIRST_WAVE == 0 {
            wait_for(&seen.connected[1], i + 1, "storm: first connect").await;
        }
    }
    let ok = wait_for(&seen.connected[1], n, "storm: first connect").await;
    let initial_connect_secs = started.elapsed().as_secs_f64();
    if !ok {
        shutdown(clients, server).await?;
        anyhow::bail!(
            "only {} of {n} clients connected at first (codes: {:?})",
            seen.connected[1].load(Relaxed),
            seen.codes.lock().expect("codes")
        );
    }
    // A first message in every group gives each client a position to resume from.
    post_all(&rest, &group_ids, group_size, 1).await?;
    wait_for(&seen.messages[1], n, "storm: first message").await;

    // The restart. Phase 2 counts reconnections and the message posted now.
    seen.phase.store(2, Relaxed);
    seen.codes.lock().expect("codes").clear();
    server.stop().await?;
    let server = ctx.mkondo.start(addr).await?;
    let up = Instant::now();
    let peak = CpuPeak::start(server.pid, Duration::from_millis(250));
    post_all(&rest, &group_ids, group_size, 2).await?;
    let reconnected_ok = wait_for(&seen.connected[2], n, "storm: reconnect").await;
    let reconnected_secs = up.elapsed().as_secs_f64();
    // Past the reconnect deadline, what has resumed by then is the figure.
    let resumed_ok = reconnected_ok && wait_for(&seen.messages[2], n, "storm: resume").await;
    let resumed_secs = if resumed_ok {
        up.elapsed().as_secs_f64()
    } else {
        f64::NAN
    };
    let peak_cpu_percent = peak.finish().await;
    let codes = seen
        .codes
        .lock()
        .expect("codes")
        .iter()
        .map(|(c, n)| (*c, *n))
        .collect();
    let result = Storm {
        target: format!("{} (sdk-core)", wire.name()),
        clients: n,
        initial_connect_secs,
        reconnected_secs: if reconnected_ok {
            reconnected_secs
        } else {
            f64::NAN
        },
        resumed_secs,
        wait_secs: WAIT.as_secs_f64(),
        reconnected: seen.connected[2].load(Relaxed),
        resumed: seen.messages[2].load(Relaxed),
        peak_cpu_percent,
        gave_up: seen.gave_up.load(Relaxed),
        codes,
    };
    shutdown(clients, server).await?;
    Ok(result)
}

/// Posts message `phase` into every group as its first member, through REST
/// (the customer's backend), a few at a time.
async fn post_all(
    rest: &Rest,
    groups: &[String],
    group_size: usize,
    phase: u8,
) -> anyhow::Result<()> {
    let posted: Vec<anyhow::Result<serde_json::Value>> = futures::stream::iter(
        groups.iter().enumerate(),
    )
    .map(|(g, id)| async move {
        rest.post(
            &format!("/conversations/{id}/messages"),
            json!({"sender_id": format!("storm-{}", g * group_size), "text": format!("storm-{phase}: {g}")}),
        )
        .await
    })
    .buffer_unordered(8)
    .collect()
    .await;
    posted.into_iter().try_for_each(|r| r.map(drop))
}

/// Waits (with a progress bar, up to [`WAIT`]) until `counter` reaches `n`;
/// false if it did not.
async fn wait_for(counter: &AtomicUsize, n: usize, what: &str) -> bool {
    let bar = progress(n as u64, what);
    let deadline = Instant::now() + WAIT;
    let mut done = false;
    while Instant::now() < deadline {
        let now = counter.load(Relaxed);
        bar.set_position(now as u64);
        if now >= n {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
    done
}

async fn shutdown(clients: Vec<Client>, server: crate::servers::Process) -> anyhow::Result<()> {
    for c in &clients {
        c.shutdown();
    }
    drop(clients);
    server.stop().await
}
