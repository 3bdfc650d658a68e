//! Direct: `users` connected people in pairs, each pair in its own 1:1
//! conversation, exchanging `rate` messages per second in total (every user
//! writes now and then). Mkondo stores each message in SQLite before it is
//! delivered; the socket.io peer keeps it in memory, the baseline not at all.
//!
//! Everyone connects first and the conversations are opened afterwards: a
//! Mkondo connect lists the user's recent conversations with a query that
//! walks every conversation of the app (BENCHMARKS.md, "direct"), so 10,000
//! connects into an app that already holds 5,000 conversations take minutes,
//! which would measure that query rather than the message path.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_json::json;

use crate::client::{open_all, progress, Conn, Target};
use crate::procstat::CpuWindow;
use crate::recorder::Recorder;
use crate::results::{distribution, Direct, Latency};

use super::{drain, join_baseline_rooms, send_counted, Ctx, SendStats};

pub async fn run(ctx: &Ctx, target: Target) -> anyhow::Result<Direct> {
    let (server, app) = ctx.start(target).await?;
    let set_up = Instant::now();
    let n = ctx.sizes.direct_users & !1;
    let pairs = n / 2;
    let user = |i: usize| format!("direct-{i}");

    let recorder = Arc::new(Recorder::default());
    let (conns, first_error) = open_all(
        target,
        server.addr,
        ctx.sources,
        n,
        |i| app.token(&user(i), &[]),
        recorder.clone(),
        &format!("direct {}: connect", target.name()),
    )
    .await;
    let conns: Vec<Conn> = conns.into_iter().flatten().collect();
    let mut conversations: Vec<String> = Vec::with_capacity(pairs);
    eprintln!(
        "direct {}: {} users connected after {:.1} s",
        target.name(),
        conns.len(),
        set_up.elapsed().as_secs_f64()
    );
    if conns.len() < n {
        server.stop().await?;
        anyhow::bail!(
            "{} of {n} users connected: {}",
            conns.len(),
            first_error.unwrap_or_default()
        );
    }

    // Mkondo: the backend opens the 1:1 conversations once everyone is online
    // (see the module doc for why not before).
    if let Target::Mkondo(_) = target {
        let rest = ctx.mkondo.rest(server.addr, &app);
        let bar = progress(pairs as u64, "direct: create conversations");
        let created: Vec<anyhow::Result<String>> = futures::stream::iter(0..pairs)
            .map(|p| {
                let rest = rest.clone();
                let bar = bar.clone();
                let members = [user(2 * p), user(2 * p + 1)];
                async move {
                    let id = rest
                        .conversation(json!({"kind": "direct", "members": members}))
                        .await;
                    bar.inc(1);
                    id
                }
            })
            .buffered(16)
            .collect()
            .await;
        bar.finish_and_clear();
        conversations = created.into_iter().collect::<anyhow::Result<_>>()?;
        eprintln!(
            "direct {}: {pairs} conversations created in {:.1} s",
            target.name(),
            set_up.elapsed().as_secs_f64()
        );
    }

    // socket.io: one of each pair starts the 1:1 room, as the notes' clients do.
    if let Target::SocketIo = target {
        let bar = progress(pairs as u64, "direct: start 1:1 rooms");
        let started: Vec<anyhow::Result<String>> = futures::stream::iter(0..pairs)
            .map(|p| {
                let conn = &conns[2 * p];
                let peer = user(2 * p + 1);
                let bar = bar.clone();
                async move {
                    let Conn::Sio(sio) = conn else {
                        anyhow::bail!("not a socket.io connection")
                    };
                    let ack = sio.request("start_direct", json!(peer)).await?;
                    bar.inc(1);
                    ack["id"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow::anyhow!("start_direct answered {ack}"))
                }
            })
            .buffered(64)
            .collect()
            .await;
        bar.finish_and_clear();
        conversations = started.into_iter().collect::<anyhow::Result<_>>()?;
    }

    // The baseline: both of a pair subscribe to the pair's room.
    if let Target::Baseline = target {
        conversations = (0..pairs).map(|p| format!("direct-{p}")).collect();
        let joins = conns
            .iter()
            .enumerate()
            .map(|(i, c)| (c, conversations[i / 2].clone()))
            .collect();
        join_baseline_rooms(joins, "direct: join 1:1 rooms").await?;
    }

    let rate = ctx.sizes.direct_rate;
    let duration = ctx.sizes.direct_time;
    let stats = Arc::new(SendStats::default());
    recorder.take_latency();
    let cpu = CpuWindow::start(server.pid);
    let started = Instant::now();
    let bar = progress(
        (rate * duration.as_secs_f64()) as u64,
        &format!("direct {}: send", target.name()),
    );
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    while started.elapsed() < duration {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            // Consecutive messages go to different pairs; each user writes
            // every n / rate seconds.
            let u = sent as usize % n;
            send_counted(
                &conns[u],
                u,
                &conversations[u / 2],
                ctx.sizes.message_bytes,
                &stats,
            );
            sent += 1;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let server_cpu_percent = cpu.percent();
    drain(
        &recorder,
        Duration::from_millis(300),
        Duration::from_secs(3),
    )
    .await;
    // The drained deliveries' work included.
    let cpu_ms = cpu.used().as_secs_f64() * 1000.0;
    let secs = started.elapsed().as_secs_f64();
    let hist = recorder.take_latency();
    drop(conns);
    server.stop().await?;
    let delivered = recorder.deliveries();
    Ok(Direct {
        target: target.name().into(),
        users: n,
        rate,
        secs,
        sent,
        delivered,
        cpu_ms_per_1000: if delivered > 0 {
            cpu_ms * 1000.0 / delivered as f64
        } else {
            0.0
        },
        send_errors: stats.failed.load(Ordering::Relaxed),
        first_send_error: stats.first_error(),
        latency: Latency::of(&hist),
        server_cpu_percent,
        distribution: distribution(&hist),
    })
}
