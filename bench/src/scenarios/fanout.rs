//! Fan-out: one group of `members` connected members; messages are published
//! into it at increasing rates until the server saturates. Each message reaches
//! every other member, so the work is deliveries per second.
//!
//! Publishers are members too (the chat workload: people write in the group),
//! each kept at ≤ 10 messages/s so that Mkondo's default per-connection rate
//! limit (20/s) never throttles the run. A step is saturated when fewer than
//! 90% of the offered deliveries arrive, p99 passes a second, a send fails, or
//! the server closes a slow consumer; the suite stops at the first such step,
//! then measures latency again at half the best throughput.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::client::{open_all, Conn, Target};
use crate::procstat::CpuWindow;
use crate::recorder::Recorder;
use crate::results::{Fanout, Latency, Step};
use crate::servers::Process;
use crate::token::App;

use super::{drain, join_baseline_rooms, send_counted, Ctx, SendStats};

const PER_PUBLISHER: f64 = 10.0;

pub async fn run(ctx: &Ctx, target: Target) -> anyhow::Result<Fanout> {
    let (server, app) = ctx.start(target).await?;
    let n = ctx.sizes.fanout_members;
    let recorder = Arc::new(Recorder::default());
    let (conversation, conns) = match group(ctx, target, &server, &app, n, &recorder).await {
        Ok(group) => group,
        Err(e) => {
            server.stop().await?;
            return Err(e);
        }
    };

    let everyone: Vec<(usize, &Conn)> = conns.iter().map(|(i, c)| (*i, c)).collect();
    let mut steps = Vec::new();
    for &rate in &ctx.sizes.fanout_rates {
        let step = step(ctx, &everyone, &conversation, &recorder, rate, server.pid).await;
        let saturated = step.delivered_per_sec < 0.9 * step.offered_per_sec
            || step.latency.p99_ms > 1000.0
            || step.send_errors > 0
            || step.closed_connections > 0;
        steps.push(step);
        if saturated {
            break;
        }
    }
    let best = steps
        .iter()
        .map(|s| s.delivered_per_sec)
        .fold(0.0, f64::max);
    // A saturated server may still hold a backlog (socket.io queues without
    // bound): let it empty before measuring again.
    drain(&recorder, Duration::from_secs(1), Duration::from_secs(15)).await;
    // Half the saturation throughput, as a publishing rate.
    let half_rate = (best / 2.0 / (n - 1) as f64).max(1.0);
    // Members the server closed as slow consumers at saturation are left out.
    let alive: Vec<(usize, &Conn)> = conns
        .iter()
        .filter(|(_, c)| c.is_alive())
        .map(|(i, c)| (*i, c))
        .collect();
    let half = if alive.len() > 1 {
        Some(step(ctx, &alive, &conversation, &recorder, half_rate, server.pid).await)
    } else {
        None
    };
    drop(conns);
    server.stop().await?;
    Ok(Fanout {
        target: target.name().into(),
        members: n,
        steps,
        saturation_per_sec: best,
        half,
    })
}

/// One group of `n` members (`fan-<i>`), each connected and in the group;
/// returns the conversation and the connections (with their member index).
pub async fn group(
    ctx: &Ctx,
    target: Target,
    server: &Process,
    app: &App,
    n: usize,
    recorder: &Arc<Recorder>,
) -> anyhow::Result<(String, Vec<(usize, Conn)>)> {
    let users: Vec<String> = (0..n).map(|i| format!("fan-{i}")).collect();
    // Mkondo: the backend creates the group (as a customer's backend would);
    // socket.io: the token's groups claim puts each socket in the room; the
    // baseline: each member subscribes once connected.
    let (conversation, groups) = match target {
        Target::Mkondo(_) => {
            let rest = ctx.mkondo.rest(server.addr, app);
            let id = rest
                .conversation(json!({"kind": "group", "name": "fan-out", "members": users}))
                .await?;
            (id, Vec::new())
        }
        Target::SocketIo => ("fan-out".to_owned(), vec!["fan-out".to_owned()]),
        // As long as Mkondo's conversation ids (`c` and a ULID), so that the
        // pushes are the same size.
        Target::Baseline => (format!("{:0<27}", "fan-out-"), Vec::new()),
    };
    let (conns, first_error) = open_all(
        target,
        server.addr,
        ctx.sources,
        n,
        |i| app.token(&users[i], &groups),
        recorder.clone(),
        &format!("fan-out {}: connect", target.name()),
    )
    .await;
    let conns: Vec<(usize, Conn)> = conns
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c?)))
        .collect();
    if conns.len() < n {
        anyhow::bail!(
            "{} of {n} members connected: {}",
            conns.len(),
            first_error.unwrap_or_default()
        );
    }
    if target == Target::Baseline {
        let joins = conns
            .iter()
            .map(|(_, c)| (c, conversation.clone()))
            .collect();
        join_baseline_rooms(joins, "fan-out baseline: join").await?;
    }
    Ok((conversation, conns))
}

/// Publishes at `rate` messages/s for the step's time, waits for the last
/// deliveries, and reports what arrived.
async fn step(
    ctx: &Ctx,
    conns: &[(usize, &Conn)],
    conversation: &str,
    recorder: &Recorder,
    rate: f64,
    pid: u32,
) -> Step {
    let publishers = ((rate / PER_PUBLISHER).ceil() as usize).clamp(1, conns.len());
    let receivers = (conns.len() - 1) as f64;
    let stats = Arc::new(SendStats::default());
    recorder.take_latency();
    let before = recorder.deliveries();
    let cpu = CpuWindow::start(pid);
    let started = Instant::now();
    let started_nanos = crate::recorder::now_nanos();
    let duration = ctx.sizes.fanout_step;
    let bar = crate::client::progress(
        (rate * duration.as_secs_f64()) as u64,
        &format!("fan-out {rate:.0} msg/s"),
    );
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    while started.elapsed() < duration {
        tick.tick().await;
        // Every message due by now, so the rate holds whatever the timer's grain.
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let (index, conn) = conns[sent as usize % publishers];
            send_counted(conn, index, conversation, ctx.sizes.message_bytes, &stats);
            sent += 1;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    drain(recorder, Duration::from_millis(300), Duration::from_secs(3)).await;
    // Sending time, or until the last delivery if the server fell behind.
    let working = recorder.last_delivery_nanos().saturating_sub(started_nanos) as f64 / 1e9;
    let elapsed = working.max(duration.as_secs_f64());
    let delivered = recorder.deliveries() - before;
    let cpu_ms = cpu.used().as_secs_f64() * 1000.0;
    Step {
        rate,
        offered_per_sec: rate * receivers,
        delivered_per_sec: delivered as f64 / elapsed,
        latency: Latency::of(&recorder.take_latency()),
        send_errors: stats.failed.load(Ordering::Relaxed),
        first_send_error: stats.first_error(),
        closed_connections: conns.iter().filter(|(_, c)| !c.is_alive()).count(),
        server_cpu_percent: cpu.percent(),
        cpu_ms_per_1000: if delivered > 0 {
            cpu_ms * 1000.0 / delivered as f64
        } else {
            0.0
        },
    }
}
