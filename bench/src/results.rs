//! What a run measured, written to `results.json` (for plots and for comparing
//! runs) and summarised as Markdown tables with the ratio to socket.io from the
//! same run (`results.md`, pasted into BENCHMARKS.md).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// (percentile, milliseconds) points of a latency distribution, for plots.
pub fn distribution(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(2)
        .map(|v| {
            (
                v.quantile_iterated_to(),
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    pub target: String,
    pub connections: usize,
    pub failed: usize,
    pub connect_secs: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub kib_per_connection: f64,
    pub first_error: Option<String>,
}

/// One publishing rate of the fan-out scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Messages published per second.
    pub rate: f64,
    /// What every member receiving every message would be, per second.
    pub offered_per_sec: f64,
    pub delivered_per_sec: f64,
    pub latency: Latency,
    pub send_errors: u64,
    pub first_send_error: Option<String>,
    pub closed_connections: usize,
    pub server_cpu_percent: f64,
    /// Server CPU time per 1,000 deliveries in this step, in milliseconds
    /// (the last deliveries drained included): the cost, whatever the speed.
    pub cpu_ms_per_1000: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fanout {
    pub target: String,
    pub members: usize,
    pub steps: Vec<Step>,
    /// The most deliveries per second of any step.
    pub saturation_per_sec: f64,
    /// A run at half the saturation rate, for its latency.
    pub half: Option<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Direct {
    pub target: String,
    pub users: usize,
    pub rate: f64,
    pub secs: f64,
    pub sent: u64,
    pub delivered: u64,
    pub send_errors: u64,
    pub first_send_error: Option<String>,
    pub latency: Latency,
    pub server_cpu_percent: f64,
    /// Server CPU time per 1,000 delivered messages, in milliseconds.
    pub cpu_ms_per_1000: f64,
    pub distribution: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storage {
    pub target: String,
    pub senders: usize,
    pub secs: f64,
    pub stored: u64,
    pub per_sec: f64,
    pub rate_limited: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    pub latency: Latency,
    pub server_cpu_percent: f64,
}

/// Events delivered to one webhook receiver, from a backlog.
#[derive(Debug, Clone, Serialize)]
pub struct Webhooks {
    pub conversations: usize,
    pub events: u64,
    pub delivered: u64,
    pub bad_signatures: u64,
    pub secs: f64,
    pub per_sec: f64,
    pub server_cpu_percent: f64,
}

/// One way of sending the same pushes to the loopback APNs: through the
/// server (fan-out, the durable queue, per-send bookkeeping) or straight
/// from mkondo-push's client in the generator (the floor).
#[derive(Debug, Clone, Serialize)]
pub struct PushPath {
    /// Distinct pushes (`apns-id`s) the provider accepted, and the distinct
    /// device tokens they went to.
    pub pushes: u64,
    pub devices: u64,
    /// Pushes accepted again under an id already accepted.
    pub duplicates: u64,
    /// Requests the provider refused (a bad token, header or payload).
    pub refused: u64,
    pub first_refusal: Option<String>,
    /// From the start (the send's REST answer; the direct client's first
    /// call) to the first and to the last push accepted.
    pub first_ms: f64,
    pub last_ms: f64,
    /// Pushes per second from the first push to the last, and from the start.
    pub per_sec: f64,
    pub per_sec_from_start: f64,
    /// Mean payload of an accepted push.
    pub payload_bytes: f64,
    /// TLS connections opened to the provider.
    pub connections: u64,
    /// The server process's CPU, start to last push (the server path only).
    pub server_cpu_percent: Option<f64>,
    /// The generator's CPU meanwhile: the loopback provider, and the client
    /// on the direct path.
    pub bench_cpu_percent: f64,
}

/// Uploads at once through the server: throughput and the server's memory.
#[derive(Debug, Clone, Serialize)]
pub struct Files {
    pub run: String,
    pub uploads: usize,
    pub bytes_each: usize,
    /// From the first PATCH to the last answer.
    pub secs: f64,
    pub mib_per_sec: f64,
    pub idle_rss_mib: f64,
    /// The server's peak resident memory during the run, above `idle_rss_mib`.
    pub peak_above_idle_mib: f64,
    /// Images: decodes at once, and the memory budget of one (MiB).
    pub image_decodes: Option<(u32, u64)>,
    pub failed: usize,
    pub first_error: Option<String>,
}

/// One message to a group whose members are all offline, each with one
/// APNs device: the server's pushes beside the direct client's.
#[derive(Debug, Clone, Serialize)]
pub struct Push {
    pub members: usize,
    /// The send's own REST round trip (the clock starts at its answer).
    pub send_ms: f64,
    pub server: PushPath,
    pub direct: PushPath,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    pub target: String,
    pub clients: usize,
    pub initial_connect_secs: f64,
    /// From the restarted server listening to every client connected again
    /// (NaN: not all within the wait).
    pub reconnected_secs: f64,
    /// … and to every client holding the message sent while it was away.
    pub resumed_secs: f64,
    /// How long the scenario waits for each of those.
    pub wait_secs: f64,
    pub reconnected: usize,
    pub resumed: usize,
    pub peak_cpu_percent: f64,
    /// Clients that gave up (a terminal disconnect): the server refused them.
    pub gave_up: usize,
    /// Codes of the state changes to `connecting` and (giving up) to
    /// `disconnected` after the restart, with counts.
    pub codes: Vec<(u16, u64)>,
}

/// The client side: SDK clients in one process receiving a group's messages.
#[derive(Debug, Clone, Serialize)]
pub struct Sdk {
    pub target: String,
    pub clients: usize,
    /// Messages posted into the group.
    pub messages: usize,
    /// Messages the clients' listeners got (each message once per client).
    pub received: usize,
    pub secs: f64,
    /// The generator process's CPU use meanwhile (1 core = 100%).
    pub process_cpu_percent: f64,
    /// The process's CPU time per 1,000 messages received, in milliseconds.
    pub cpu_ms_per_1000: f64,
}

/// Instructions the server executed per delivery, counted by callgrind over a
/// short fixed fan-out (`scenarios/callgrind.rs`).
#[derive(Debug, Clone, Serialize)]
pub struct Instructions {
    pub target: String,
    pub members: usize,
    /// Messages counted, and their publishing rate.
    pub messages: u64,
    pub rate: f64,
    /// Deliveries the messages make (each reaches every other member).
    pub expected: u64,
    pub deliveries: u64,
    /// From the first counted message to the end of counting.
    pub secs: f64,
    pub send_errors: u64,
    pub first_send_error: Option<String>,
    /// Instructions (callgrind's Ir) of every server thread, user space only.
    pub instructions: u64,
    pub per_delivery: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub date: String,
    pub command: String,
    pub machine: String,
    /// This disk's commit latency, p50 and p99 in ms: a 4 KiB write and
    /// `fdatasync` (what a durable SQLite send waits for).
    pub disk_commit: Option<(f64, f64)>,
    pub smoke: bool,
    pub note: String,
    pub idle: Vec<Idle>,
    pub fanout: Vec<Fanout>,
    pub direct: Vec<Direct>,
    pub storage: Vec<Storage>,
    pub webhooks: Vec<Webhooks>,
    pub push: Vec<Push>,
    pub files: Vec<Files>,
    pub storm: Vec<Storm>,
    pub sdk: Vec<Sdk>,
    pub callgrind: Vec<Instructions>,
    /// What was left out of the run, and why (not a failure).
    pub skipped: Vec<String>,
    pub problems: Vec<String>,
}

fn ratio(ours: f64, theirs: Option<f64>) -> String {
    match theirs {
        Some(t) if t > 0.0 && ours > 0.0 => format!("{:.2}×", ours / t),
        _ => "–".into(),
    }
}

impl Results {
    /// Fan-out's cost: server CPU per 1,000 deliveries at the fixed rates every
    /// server reached unsaturated (the first three steps), beside socket.io's
    /// at the same rate and as a multiple of the bare baseline's. Unlike
    /// saturation, this does not swing with how the load generator shares the
    /// cores.
    fn fanout_cost(&self, md: &mut String) {
        let rates: Vec<f64> = self
            .fanout
            .iter()
            .flat_map(|r| r.steps.iter().map(|s| s.rate))
            .fold(Vec::new(), |mut rates, rate| {
                if !rates.contains(&rate) {
                    rates.push(rate);
                }
                rates
            })
            .into_iter()
            .take(3)
            .collect();
        let cost = |target: &str, rate: f64| {
            self.fanout
                .iter()
                .find(|r| r.target == target)?
                .steps
                .iter()
                .find(|s| s.rate == rate)
                .map(|s| s.cpu_ms_per_1000)
        };
        let baseline = self.fanout.iter().any(|r| r.target == "baseline");
        md.push_str("| fan-out cost: server CPU per 1,000 deliveries |");
        for rate in &rates {
            let _ = write!(md, " at {rate:.0} msg/s | vs socket.io |");
            if baseline {
                md.push_str(" × baseline |");
            }
        }
        md.push_str("\n| --- |");
        for _ in &rates {
            md.push_str(if baseline {
                " --- | --- | --- |"
            } else {
                " --- | --- |"
            });
        }
        md.push('\n');
        for r in &self.fanout {
            let _ = write!(md, "| {} |", r.target);
            for &rate in &rates {
                match cost(&r.target, rate) {
                    Some(ms) => {
                        let sio = cost("socket.io", rate);
                        let _ = write!(
                            md,
                            " {ms:.1} ms | {} |",
                            ratio(sio.unwrap_or(0.0), Some(ms))
                        );
                        if baseline {
                            let _ = write!(md, " {} |", ratio(ms, cost("baseline", rate)));
                        }
                    }
                    None if baseline => md.push_str(" – | – | – |"),
                    None => md.push_str(" – | – |"),
                }
            }
            md.push('\n');
        }
        if baseline {
            md.push_str(
                "\nvs socket.io: socket.io's cost ÷ this one (above 1: cheaper than socket.io); \
                 × baseline: this cost ÷ the bare baseline's (the floor of the stack: 1.00×).\n",
            );
        }
        md.push('\n');
    }

    /// Instructions per delivery under callgrind, as a multiple of the
    /// baseline's: the cost figure that compares across days.
    fn instructions(&self, md: &mut String) {
        let base = self
            .callgrind
            .iter()
            .find(|r| r.target == "baseline")
            .map(|r| r.per_delivery);
        let Some(first) = self.callgrind.first() else {
            return;
        };
        let _ = writeln!(
            md,
            "| instructions per delivery (callgrind; {} members, {} messages at {:.0}/s) | deliveries | instructions (Ir) | per delivery | × baseline |\n| --- | --- | --- | --- | --- |",
            first.members, first.messages, first.rate
        );
        for r in &self.callgrind {
            let _ = writeln!(
                md,
                "| {} | {} of {} | {} | {:.0} | {} |",
                r.target,
                r.deliveries,
                r.expected,
                r.instructions,
                r.per_delivery,
                ratio(r.per_delivery, base)
            );
        }
        md.push('\n');
    }

    /// Push delivery: the server path beside the direct client, and the
    /// share of the floor's rate the server reaches.
    fn push_table(&self, md: &mut String) {
        for r in &self.push {
            let _ = writeln!(
                md,
                "| push: {} offline members, one APNs device each | pushes accepted (devices) | duplicates | start→first | start→last | pushes/s first→last | pushes/s start→last | payload | connections | server CPU | generator CPU |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
                r.members
            );
            for (name, p) in [
                ("server (start: the send's answer)", &r.server),
                ("direct mkondo-push client, 256 in flight", &r.direct),
            ] {
                let _ = writeln!(
                    md,
                    "| {name} | {} ({}) | {} | {:.0} ms | {:.0} ms | {:.0} | {:.0} | {:.0} B | {} | {} | {:.0}% |",
                    p.pushes,
                    p.devices,
                    p.duplicates,
                    p.first_ms,
                    p.last_ms,
                    p.per_sec,
                    p.per_sec_from_start,
                    p.payload_bytes,
                    p.connections,
                    p.server_cpu_percent
                        .map_or("–".into(), |c| format!("{c:.0}%")),
                    p.bench_cpu_percent
                );
            }
            let _ = writeln!(
                md,
                "\nThe send's REST answer took {:.1} ms; server ÷ direct pushes/s (start→last): {}{}.\n",
                r.send_ms,
                ratio(r.server.per_sec_from_start, Some(r.direct.per_sec_from_start)),
                r.server
                    .first_refusal
                    .as_ref()
                    .or(r.direct.first_refusal.as_ref())
                    .map_or(String::new(), |why| format!("; first refusal: {why}"))
            );
        }
    }

    /// The Markdown summary. Ratios are "how many times better than socket.io":
    /// theirs / ours for costs (memory, latency), ours / theirs for throughput.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Run {} on {}{}.\nCommand: `{}`\n",
            self.date,
            self.machine,
            if self.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.note)
            },
            self.command
        );
        if let Some((p50, p99)) = self.disk_commit {
            let _ = writeln!(
                md,
                "This disk's commit: a 4 KiB write and `fdatasync`, p50 {p50:.2} ms / p99 {p99:.2} ms.\n"
            );
        }
        if !self.idle.is_empty() {
            let sio = self
                .idle
                .iter()
                .find(|r| r.target == "socket.io")
                .map(|r| r.kib_per_connection);
            md.push_str("| idle | connections | connect time | server RSS per connection | vs socket.io |\n| --- | --- | --- | --- | --- |\n");
            for r in &self.idle {
                let _ = writeln!(
                    md,
                    "| {} | {} ({} failed) | {:.1} s | {:.1} KiB | {} |",
                    r.target,
                    r.connections,
                    r.failed,
                    r.connect_secs,
                    r.kib_per_connection,
                    ratio(sio.unwrap_or(0.0), Some(r.kib_per_connection))
                );
            }
            md.push('\n');
        }
        if !self.fanout.is_empty() {
            let sio = self
                .fanout
                .iter()
                .find(|r| r.target == "socket.io")
                .map(|r| r.saturation_per_sec);
            md.push_str("| fan-out | members | deliveries/s at saturation | vs socket.io | at half that rate: p50 / p99 / p999 |\n| --- | --- | --- | --- | --- |\n");
            for r in &self.fanout {
                let half = r.half.as_ref().map_or("–".into(), |h| {
                    format!(
                        "{:.1} / {:.1} / {:.1} ms ({:.0} msg/s)",
                        h.latency.p50_ms, h.latency.p99_ms, h.latency.p999_ms, h.rate
                    )
                });
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {} | {} |",
                    r.target,
                    r.members,
                    r.saturation_per_sec,
                    ratio(r.saturation_per_sec, sio),
                    half
                );
            }
            md.push('\n');
        }
        if !self.fanout.is_empty() {
            self.fanout_cost(&mut md);
        }
        if !self.direct.is_empty() {
            let sio = self
                .direct
                .iter()
                .find(|r| r.target == "socket.io")
                .map(|r| r.latency.p99_ms);
            let sio_cost = self
                .direct
                .iter()
                .find(|r| r.target == "socket.io")
                .map(|r| r.cpu_ms_per_1000);
            md.push_str("| direct | users | msg/s | p50 | p99 | p99 vs socket.io | server CPU (1 core = 100%) | CPU per 1,000 messages | vs socket.io |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
            for r in &self.direct {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.0}% | {:.0} ms | {} |",
                    r.target,
                    r.users,
                    r.rate,
                    r.latency.p50_ms,
                    r.latency.p99_ms,
                    ratio(sio.unwrap_or(0.0), Some(r.latency.p99_ms)),
                    r.server_cpu_percent,
                    r.cpu_ms_per_1000,
                    ratio(sio_cost.unwrap_or(0.0), Some(r.cpu_ms_per_1000)),
                );
            }
            md.push('\n');
        }
        if !self.storage.is_empty() {
            md.push_str("| storage | senders | persisted messages/s | send→ack p50 / p99 | rate-limited | server CPU |\n| --- | --- | --- | --- | --- | --- |\n");
            for r in &self.storage {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {:.1} / {:.1} ms | {} | {:.0}% |",
                    r.target,
                    r.senders,
                    r.per_sec,
                    r.latency.p50_ms,
                    r.latency.p99_ms,
                    r.rate_limited,
                    r.server_cpu_percent
                );
            }
            md.push('\n');
        }
        if !self.webhooks.is_empty() {
            md.push_str("| webhooks | conversations | events delivered | events/s to one receiver | bad signatures | server CPU |\n| --- | --- | --- | --- | --- | --- |\n");
            for r in &self.webhooks {
                let _ = writeln!(
                    md,
                    "| one receiver | {} | {} of {} in {:.1} s | {:.0} | {} | {:.0}% |",
                    r.conversations,
                    r.delivered,
                    r.events,
                    r.secs,
                    r.per_sec,
                    r.bad_signatures,
                    r.server_cpu_percent
                );
            }
            md.push('\n');
        }
        if !self.push.is_empty() {
            self.push_table(&mut md);
        }
        if !self.files.is_empty() {
            md.push_str("| files: uploads at once through the server | uploads × size | MiB/s | time | server RSS idle | peak above idle | image decodes | failed |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
            for r in &self.files {
                let _ = writeln!(
                    md,
                    "| {} | {} × {:.1} MiB | {:.0} | {:.1} s | {:.1} MiB | {:.1} MiB | {} | {}{} |",
                    r.run,
                    r.uploads,
                    r.bytes_each as f64 / (1024.0 * 1024.0),
                    r.mib_per_sec,
                    r.secs,
                    r.idle_rss_mib,
                    r.peak_above_idle_mib,
                    r.image_decodes.map_or("–".into(), |(n, mib)| format!(
                        "{n} at a time, ≤ {mib} MiB each"
                    )),
                    r.failed,
                    r.first_error
                        .as_ref()
                        .map_or(String::new(), |e| format!(" (first: {e})"))
                );
            }
            md.push('\n');
        }
        if !self.storm.is_empty() {
            md.push_str("| reconnect storm | clients | all reconnected | all resumed | peak server CPU | gave up |\n| --- | --- | --- | --- | --- | --- |\n");
            for r in &self.storm {
                let secs = |s: f64, count: usize| {
                    if s.is_finite() {
                        format!("{s:.1} s ({count})")
                    } else {
                        format!("not within {:.0} s ({count} of {})", r.wait_secs, r.clients)
                    }
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {:.0}% | {} |",
                    r.target,
                    r.clients,
                    secs(r.reconnected_secs, r.reconnected),
                    secs(r.resumed_secs, r.resumed),
                    r.peak_cpu_percent,
                    r.gave_up
                );
            }
            md.push('\n');
        }
        if !self.sdk.is_empty() {
            md.push_str("| SDK, receiving | clients in one process | messages × clients | received | process CPU | CPU per 1,000 received |\n| --- | --- | --- | --- | --- | --- |\n");
            for r in &self.sdk {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} × {} | {} | {:.0}% | {:.1} ms |",
                    r.target,
                    r.clients,
                    r.messages,
                    r.clients,
                    r.received,
                    r.process_cpu_percent,
                    r.cpu_ms_per_1000
                );
            }
            md.push('\n');
        }
        if !self.callgrind.is_empty() {
            self.instructions(&mut md);
        }
        for s in &self.skipped {
            let _ = writeln!(md, "- left out: {s}");
        }
        for p in &self.problems {
            let _ = writeln!(md, "- problem: {p}");
        }
        md
    }
}
