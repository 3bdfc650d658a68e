//! The eight scenarios of the suite. Each one starts its own server process (so
//! memory and CPU figures belong to that scenario alone), is bounded in
//! connections, messages and time, and returns what it measured.

pub mod callgrind;
pub mod direct;
pub mod fanout;
pub mod files;
pub mod idle;
pub mod push;
pub mod sdk;
pub mod storage;
pub mod storm;
pub mod webhooks;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use futures::StreamExt;

use crate::client::{progress, Conn, Outcome, Target};
use crate::net::Sources;
use crate::recorder::Recorder;
use crate::servers::{Baseline, Mkondo, Process, SocketIo};
use crate::token::App;

/// How big each scenario is: the sizes, or tiny ones for CI.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub idle_connections: usize,
    pub fanout_members: usize,
    /// Publishing rates tried in turn (messages per second) until saturation.
    pub fanout_rates: Vec<f64>,
    pub fanout_step: Duration,
    pub direct_users: usize,
    pub direct_rate: f64,
    pub direct_time: Duration,
    pub storage_senders: usize,
    pub storage_time: Duration,
    pub storm_clients: usize,
    /// SDK clients receiving in this process (the client-side cost).
    pub sdk_clients: usize,
    pub sdk_rate: f64,
    pub sdk_time: Duration,
    /// Text bytes of a benchmark message.
    pub message_bytes: usize,
    /// Webhooks: the backlog's events, spread over this many conversations,
    /// and how long delivery may take.
    pub webhook_events: usize,
    pub webhook_conversations: usize,
    pub webhook_wait: Duration,
    /// Push: the group's offline members (one APNs device each), and how
    /// long their pushes may take.
    pub push_members: usize,
    pub push_wait: Duration,
    /// Files: uploads at once, and the bytes of each.
    pub files_uploads: usize,
    pub files_bytes: usize,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            // 20,000 asked for; the open-file limit caps it (see scripts/bench.sh).
            idle_connections: 19_900,
            fanout_members: 1000,
            fanout_rates: vec![25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0],
            fanout_step: Duration::from_secs(3),
            direct_users: 10_000,
            direct_rate: 1000.0,
            direct_time: Duration::from_secs(20),
            storage_senders: 1000,
            storage_time: Duration::from_secs(10),
            storm_clients: 10_000,
            sdk_clients: 1000,
            sdk_rate: 20.0,
            sdk_time: Duration::from_secs(10),
            message_bytes: 100,
            webhook_events: 20_000,
            webhook_conversations: 50,
            webhook_wait: Duration::from_secs(180),
            push_members: 10_000,
            push_wait: Duration::from_secs(60),
            files_uploads: 100,
            files_bytes: 10 << 20,
        }
    }

    pub fn smoke() -> Sizes {
        Sizes {
            idle_connections: 40,
            fanout_members: 20,
            fanout_rates: vec![5.0, 10.0],
            fanout_step: Duration::from_millis(700),
            direct_users: 20,
            direct_rate: 20.0,
            direct_time: Duration::from_secs(1),
            storage_senders: 4,
            storage_time: Duration::from_secs(1),
            storm_clients: 20,
            sdk_clients: 10,
            sdk_rate: 10.0,
            sdk_time: Duration::from_secs(1),
            message_bytes: 100,
            webhook_events: 40,
            webhook_conversations: 4,
            webhook_wait: Duration::from_secs(60),
            push_members: 50,
            push_wait: Duration::from_secs(20),
            files_uploads: 4,
            files_bytes: 256 << 10,
        }
    }
}

/// What every scenario needs.
pub struct Ctx {
    pub mkondo: Mkondo,
    pub socketio: SocketIo,
    pub baseline: Baseline,
    pub sources: Sources,
    pub sizes: Sizes,
    /// The run's scratch directory (removed at the end).
    pub work: PathBuf,
}

impl Ctx {
    /// A new app, then the server `target` runs against on any free port.
    /// (The baseline checks no token, but the generator signs them all the
    /// same: its own work stays alike for every target.)
    pub async fn start(&self, target: Target) -> anyhow::Result<(Process, App)> {
        let app = self.mkondo.create_app().await?;
        let server = match target {
            Target::Mkondo(_) => self.mkondo.start(any_port()).await?,
            Target::SocketIo => self.socketio.start(&app).await?,
            Target::Baseline => self.baseline.start(None).await?,
        };
        Ok((server, app))
    }
}

pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Counts of what happened to sends whose answers are awaited in the background.
#[derive(Default)]
pub struct SendStats {
    pub stored: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    /// Why the first failed send failed.
    pub first_error: std::sync::Mutex<Option<String>>,
}

impl SendStats {
    fn fail(&self, why: String) {
        self.failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.first_error
            .lock()
            .expect("first_error lock")
            .get_or_insert(why);
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().expect("first_error lock").clone()
    }
}

/// Sends a benchmark message from connection `sender` without waiting; its
/// answer is counted into `stats` when it comes.
pub fn send_counted(
    conn: &Conn,
    sender: usize,
    conversation: &str,
    bytes: usize,
    stats: &Arc<SendStats>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let text = crate::recorder::message_text(sender, bytes);
    match conn.send_text(conversation, text) {
        Ok(ack) => {
            let stats = stats.clone();
            tokio::spawn(async move {
                match ack.outcome().await {
                    Outcome::Stored => {
                        stats.stored.fetch_add(1, Relaxed);
                    }
                    Outcome::RateLimited(_) => stats.fail("rate_limited".into()),
                    Outcome::Failed(why) => stats.fail(why),
                }
            });
        }
        Err(e) => stats.fail(e.to_string()),
    }
}

/// Baseline only: puts each connection in its room (many joins in flight, as
/// connections are opened).
pub async fn join_baseline_rooms(joins: Vec<(&Conn, String)>, what: &str) -> anyhow::Result<()> {
    let bar = progress(joins.len() as u64, what);
    let joined: Vec<anyhow::Result<()>> = futures::stream::iter(joins)
        .map(|(conn, room)| {
            let bar = bar.clone();
            async move {
                let joined = conn.join_baseline_room(&room).await;
                bar.inc(1);
                joined
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    bar.finish_and_clear();
    joined.into_iter().collect()
}

/// Waits until no delivery arrived for `quiet` (or `max` passed): what was
/// sent has arrived, or never will.
pub async fn drain(recorder: &Recorder, quiet: Duration, max: Duration) {
    let deadline = tokio::time::Instant::now() + max;
    let mut last = recorder.deliveries();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(quiet).await;
        let now = recorder.deliveries();
        if now == last {
            return;
        }
        last = now;
    }
}
