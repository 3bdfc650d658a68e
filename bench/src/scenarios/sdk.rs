//! The client side: what receiving costs an app. `clients` real SDK clients
//! (`mkondo-sdk`, every event through its listener, as in an app) share this
//! process and one group; the backend posts messages into the group at a fixed
//! rate, so each reaches every client. Measured: this process's CPU time per
//! 1,000 messages received — what a phone's battery pays per message, with the
//! core's decoding, ordering, cache and events included. The publisher's few
//! REST calls are the only other work of the process meanwhile.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use mkondo_sdk::{Client, Config, ConnectionState, Event, TransportKind};
use serde_json::json;

use crate::mk::Wire;
use crate::procstat::CpuWindow;
use crate::results::Sdk;

use super::{any_port, Ctx};

/// What every client's listener counts.
#[derive(Default)]
struct Seen {
    connected: AtomicUsize,
    received: AtomicUsize,
}

pub async fn run(ctx: &Ctx, wire: Wire) -> anyhow::Result<Sdk> {
    let app = ctx.mkondo.create_app().await?;
    let server = ctx.mkondo.start(any_port()).await?;
    let addr = server.addr;
    let n = ctx.sizes.sdk_clients;
    let user = |i: usize| format!("sdk-{i}");
    let rest = ctx.mkondo.rest(addr, &app);
    let members: Vec<String> = (0..n).map(user).collect();
    let group = rest
        .conversation(json!({"kind": "group", "name": "sdk", "members": members}))
        .await?;
    let kind = match wire {
        Wire::WsJson => TransportKind::WebSocketJson,
        Wire::WsProto => TransportKind::WebSocketProtobuf,
        Wire::Grpc => TransportKind::Grpc,
    };
    let seen = Arc::new(Seen::default());
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let config = Config::new(format!("ws://{addr}/v1/realtime"), kind)
            .with_token(app.token(&user(i), &[]));
        let seen = seen.clone();
        let client = Client::new(config, move |event| match event {
            Event::StateChanged {
                new: ConnectionState::Connected,
                ..
            } => {
                seen.connected.fetch_add(1, Relaxed);
            }
            Event::Message(_) => {
                seen.received.fetch_add(1, Relaxed);
            }
            _ => {}
        })?;
        client.connect();
        clients.push(client);
        // Not all at once: the cost to measure is receiving, not connecting.
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.connected.load(Relaxed) < n {
        if Instant::now() > deadline {
            anyhow::bail!(
                "{} of {n} SDK clients connected",
                seen.connected.load(Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Settle: the connect replies and presence of the last clients processed.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let rate = ctx.sizes.sdk_rate;
    let messages = (rate * ctx.sizes.sdk_time.as_secs_f64()).round() as usize;
    let before = seen.received.load(Relaxed);
    let cpu = CpuWindow::start(std::process::id());
    let started = Instant::now();
    let path = format!("/conversations/{group}/messages");
    for m in 0..messages {
        let due = started + Duration::from_secs_f64(m as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        rest.post(
            &path,
            json!({"kind": "system", "text": format!("sdk {m}: {}", "x".repeat(ctx.sizes.message_bytes))}),
        )
        .await?;
    }
    let expected = before + messages * n;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.received.load(Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let used = cpu.used();
    let secs = started.elapsed().as_secs_f64();
    let received = seen.received.load(Relaxed) - before;
    for client in &clients {
        client.disconnect();
    }
    drop(clients);
    server.stop().await?;
    Ok(Sdk {
        target: wire.name().into(),
        clients: n,
        messages,
        received,
        secs,
        process_cpu_percent: 100.0 * used.as_secs_f64() / secs.max(1e-3),
        cpu_ms_per_1000: if received > 0 {
            used.as_secs_f64() * 1000.0 * 1000.0 / received as f64
        } else {
            0.0
        },
    })
}
