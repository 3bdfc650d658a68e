//! Idle: how much server memory an authenticated connection that does nothing
//! costs. Connections are opened, authenticated, then held; the server's
//! resident memory before and after, divided by the connections held.

use std::{sync::Arc, time::Duration, time::Instant};

use crate::client::{open_all, Target};
use crate::procstat::rss_kib;
use crate::recorder::Recorder;
use crate::results::Idle;

use super::Ctx;

pub async fn run(ctx: &Ctx, target: Target) -> anyhow::Result<Idle> {
    let (server, app) = ctx.start(target).await?;
    let n = ctx.sizes.idle_connections;
    // Let the process finish starting (migrations, thread stacks) first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = rss_kib(server.pid);
    let started = Instant::now();
    let (conns, first_error) = open_all(
        target,
        server.addr,
        ctx.sources,
        n,
        |i| app.token(&format!("idle-{i}"), &[]),
        Arc::new(Recorder::default()),
        &format!("idle {}: connect", target.name()),
    )
    .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let held = conns.iter().flatten().count();
    // Allocations made while connecting settle (freed buffers, queued replies).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_kib = rss_kib(server.pid);
    drop(conns);
    server.stop().await?;
    Ok(Idle {
        target: target.name().into(),
        connections: held,
        failed: n - held,
        connect_secs,
        rss_before_kib,
        rss_after_kib,
        kib_per_connection: rss_after_kib.saturating_sub(rss_before_kib) as f64
            / held.max(1) as f64,
        first_error,
    })
}
