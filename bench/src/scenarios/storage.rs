//! Storage: how many messages per second go through Mkondo's real write path
//! (real-time `send` → the executor → one SQLite transaction → the reply) when
//! many senders write at once. Each sender writes into its own group, so the
//! number is about persisting, not fan-out; each keeps one message in flight
//! and obeys `rate_limited` answers like a well-behaved client. The per-user
//! rate (20 messages/s by default) is raised to 1,000/s for this scenario: it
//! measures the write path, and 20,000 messages/s from 1,000 senders is
//! already that default's exact rate per sender.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::future::join_all;

use crate::client::{open_all, Conn, Outcome, Target};
use crate::procstat::CpuWindow;
use crate::recorder::{message_text, new_histogram, Recorder};
use crate::results::{Latency, Storage};

use super::Ctx;

pub async fn run(ctx: &Ctx, target: Target) -> anyhow::Result<Storage> {
    let app = ctx.mkondo.create_app().await?;
    let server = ctx
        .mkondo
        .start_as(
            super::any_port(),
            None,
            &["--rate-per-second", "1000", "--rate-burst", "1000"],
        )
        .await?;
    let n = ctx.sizes.storage_senders;
    let group = |i: usize| format!("store-{i}");
    // The groups claim creates each sender's group on its first connect.
    let (conns, first_error) = open_all(
        target,
        server.addr,
        ctx.sources,
        n,
        |i| app.token(&format!("store-{i}"), &[group(i)]),
        Arc::new(Recorder::default()),
        &format!("storage {}: connect", target.name()),
    )
    .await;
    let conns: Vec<Conn> = conns.into_iter().flatten().collect();
    if conns.len() < n {
        server.stop().await?;
        anyhow::bail!(
            "{} of {n} senders connected: {}",
            conns.len(),
            first_error.unwrap_or_default()
        );
    }

    let stored = AtomicU64::new(0);
    let limited = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let latency = Mutex::new(new_histogram());
    let first_error = Mutex::new(None::<String>);
    let duration = ctx.sizes.storage_time;
    let bar = crate::client::progress(duration.as_secs(), "storage: send");
    let cpu = CpuWindow::start(server.pid);
    let started = Instant::now();
    let ticker = async {
        while started.elapsed() < duration {
            tokio::time::sleep(Duration::from_secs(1)).await;
            bar.inc(1);
        }
    };
    let senders = conns.iter().enumerate().map(|(i, conn)| {
        let (stored, limited, failed, latency, first_error, group) =
            (&stored, &limited, &failed, &latency, &first_error, group(i));
        async move {
            while started.elapsed() < duration {
                let sent_at = Instant::now();
                let Ok(ack) = conn.send_text(&group, message_text(i, ctx.sizes.message_bytes))
                else {
                    failed.fetch_add(1, Relaxed);
                    return;
                };
                match ack.outcome().await {
                    Outcome::Stored => {
                        stored.fetch_add(1, Relaxed);
                        let us = sent_at.elapsed().as_micros() as u64;
                        latency
                            .lock()
                            .expect("latency lock")
                            .saturating_record(us.max(1));
                    }
                    Outcome::RateLimited(wait) => {
                        limited.fetch_add(1, Relaxed);
                        tokio::time::sleep(wait).await;
                    }
                    Outcome::Failed(why) => {
                        failed.fetch_add(1, Relaxed);
                        first_error.lock().expect("first_error").get_or_insert(why);
                        return;
                    }
                }
            }
        }
    });
    tokio::join!(join_all(senders), ticker);
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let server_cpu_percent = cpu.percent();
    drop(conns);
    server.stop().await?;
    let stored = stored.load(Relaxed);
    let latency = Latency::of(&latency.lock().expect("latency lock"));
    Ok(Storage {
        target: target.name().into(),
        senders: n,
        secs,
        stored,
        per_sec: stored as f64 / secs,
        rate_limited: limited.load(Relaxed),
        failed: failed.load(Relaxed),
        first_error: first_error.into_inner().expect("first_error"),
        latency,
        server_cpu_percent,
    })
}
