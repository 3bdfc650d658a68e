//! Instructions per delivery: a short, fixed fan-out (one group of
//! [`MEMBERS`], [`MESSAGES`] messages at [`RATE`] per second) with the server
//! under callgrind, counting only while the messages are sent and delivered.
//! The count is the figure that compares across days (see `callgrind.rs`);
//! CPU time per delivery from the fan-out scenario is the one that includes
//! the kernel.
//!
//! The rate is low on purpose: callgrind runs the server about 50× slower
//! on one core, and at this rate every push still goes out alone (one write
//! per push, as in the fan-out's unsaturated steps) rather than in the
//! batches a backlog would allow. [`WARM_UP`] messages go first, uncounted,
//! so lazily built state (prepared statements, buffers, caches) is not
//! charged to the measured ones.
//!
//! socket.io is not measured: Node's JIT compiles while it runs, so its
//! instruction count would depend on how warm the JIT is rather than on the
//! work.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use crate::callgrind;
use crate::client::{Conn, Target};
use crate::recorder::Recorder;
use crate::results::Instructions;

use super::{any_port, fanout, send_counted, Ctx, SendStats};

/// Members of the group (each message makes `MEMBERS - 1` deliveries).
const MEMBERS: usize = 100;
/// Messages counted.
const MESSAGES: u64 = 50;
/// Messages per second.
const RATE: f64 = 5.0;
/// Messages sent before counting starts.
const WARM_UP: u64 = 5;
/// How long the counted messages may take to be delivered, beyond their
/// sending time: generous, for a server slowed ~50×.
const DELIVERY_WAIT: Duration = Duration::from_secs(60);
/// After the last delivery and answer, before the count is read.
const SETTLE: Duration = Duration::from_millis(500);

pub async fn run(
    ctx: &Ctx,
    target: Target,
    work: &std::path::Path,
) -> anyhow::Result<Instructions> {
    let run = callgrind::Run::new(work.join(format!("callgrind-{}.out", target.name())));
    let app = ctx.mkondo.create_app().await?;
    let server = match target {
        Target::Mkondo(_) => ctx.mkondo.start_as(any_port(), Some(&run), &[]).await?,
        Target::Baseline => ctx.baseline.start(Some(&run)).await?,
        Target::SocketIo => anyhow::bail!("socket.io is not measured under callgrind"),
    };
    let recorder = Arc::new(Recorder::default());
    let outcome = async {
        let (conversation, conns) =
            fanout::group(ctx, target, &server, &app, MEMBERS, &recorder).await?;
        let stats = Arc::new(SendStats::default());
        let receivers = (MEMBERS - 1) as u64;

        let answered = |n: u64| {
            let stats = stats.clone();
            move || stats.stored.load(Ordering::Relaxed) + stats.failed.load(Ordering::Relaxed) >= n
        };

        publish(ctx, &conns, &conversation, WARM_UP, &stats).await;
        let warm = WARM_UP * receivers;
        wait_for(|| recorder.deliveries() >= warm, DELIVERY_WAIT).await;
        wait_for(answered(WARM_UP), DELIVERY_WAIT).await;

        run.start(server.pid).await?;
        let before = recorder.deliveries();
        let started = Instant::now();
        publish(ctx, &conns, &conversation, MESSAGES, &stats).await;
        let all = before + MESSAGES * receivers;
        wait_for(|| recorder.deliveries() >= all, DELIVERY_WAIT).await;
        wait_for(answered(WARM_UP + MESSAGES), DELIVERY_WAIT).await;
        // The sender's echo and the last writes may still be on their way.
        tokio::time::sleep(SETTLE).await;
        let instructions = run.finish(server.pid).await?;
        let deliveries = recorder.deliveries() - before;
        let secs = started.elapsed().as_secs_f64();
        Ok::<_, anyhow::Error>(Instructions {
            target: target.name().into(),
            members: MEMBERS,
            messages: MESSAGES,
            rate: RATE,
            expected: MESSAGES * receivers,
            deliveries,
            secs,
            send_errors: stats.failed.load(Ordering::Relaxed),
            first_send_error: stats.first_error(),
            instructions,
            per_delivery: if deliveries > 0 {
                instructions as f64 / deliveries as f64
            } else {
                0.0
            },
        })
    }
    .await;
    server.stop().await?;
    outcome
}

/// Sends `count` messages into the group at [`RATE`], round-robin over as
/// many members as keep each at ≤ 10 messages/s (as the fan-out does, well
/// within Mkondo's per-connection rate limit).
async fn publish(
    ctx: &Ctx,
    conns: &[(usize, Conn)],
    conversation: &str,
    count: u64,
    stats: &Arc<SendStats>,
) {
    let publishers = ((RATE / 10.0).ceil() as usize).clamp(1, conns.len());
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0u64;
    while sent < count {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * RATE) as u64 + 1).min(count);
        while sent < due {
            let (index, conn) = &conns[sent as usize % publishers];
            send_counted(conn, *index, conversation, ctx.sizes.message_bytes, stats);
            sent += 1;
        }
    }
}

/// Waits until `done()`, or `max` passed.
async fn wait_for(done: impl Fn() -> bool, max: Duration) {
    let deadline = Instant::now() + max;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
