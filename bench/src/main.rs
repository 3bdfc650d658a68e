//! `mkondo-bench`: the load generator behind BENCHMARKS.md.
//!
//! We claim Mkondo is faster than what its users would otherwise pick; this
//! makes that a measured fact on a given machine and makes regressions
//! visible. One tool drives both servers with the same workload, sockets and
//! measuring code: Mkondo over its three transports (WebSocket JSON, WebSocket
//! protobuf, gRPC, with the real schema and codec) and the socket.io peer in
//! `bench/peers/socketio` through a hand-written socket.io v4 client, and the
//! cost floor beside both: `mkondo-baseline`, a bare WebSocket broadcast
//! server built from this crate, driven with Mkondo's own JSON client. It
//! starts each server itself as a separate process (the release `mkondo`
//! binary with its real SQLite file; Node for the peer) so it can restart them
//! and read their memory and CPU from `/proc`, or run them under callgrind to
//! count their instructions. Push delivery is measured against a loopback
//! APNs in this process (`apns_sink.rs`), with mkondo-push's own client
//! sending straight to it as the floor.
//!
//! Every run is bounded: sizes are fixed per mode, every wait has a deadline,
//! and the whole suite has one (15 minutes; 2 in `--smoke`). `--smoke` runs
//! every scenario but callgrind at tiny sizes and fails when one breaks, so CI
//! keeps the tool working; the full run writes `results.json`, `results.md`
//! and the SVG figures into `--out`.

mod apns_sink;
mod callgrind;
mod client;
mod mk;
mod net;
mod plot;
mod procstat;
mod recorder;
mod results;
mod scenarios;
mod servers;
mod sio;
mod tls;
mod token;

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Parser;

use client::Target;
use mk::Wire;
use results::Results;
use scenarios::{Ctx, Sizes};

#[derive(Debug, Parser)]
#[command(name = "mkondo-bench", about = "Benchmarks Mkondo against socket.io")]
struct Args {
    /// Tiny sizes: the whole suite in seconds, failing if any scenario breaks (CI).
    #[arg(long)]
    smoke: bool,
    /// Scenarios to run, of idle, fanout, direct, storage, webhooks, push, storm,
    /// sdk, callgrind (default: all; callgrind never with --smoke).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Mkondo transports to measure, of ws-json, ws-proto, grpc.
    #[arg(long, value_delimiter = ',', default_value = "ws-json,ws-proto,grpc")]
    transports: Vec<String>,
    /// Transports the reconnect storm runs with (sdk-core clients).
    #[arg(long, value_delimiter = ',', default_value = "ws-json")]
    storm_transports: Vec<String>,
    /// Leave socket.io out.
    #[arg(long)]
    no_socketio: bool,
    /// Leave the bare baseline out (it is left out with --tls: it speaks
    /// plaintext only).
    #[arg(long)]
    no_baseline: bool,
    /// The `mkondo-baseline` binary (default: the one beside this program,
    /// which the same `cargo build -p mkondo-bench` made).
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// The `mkondo` binary (a release build).
    #[arg(long, default_value = "target/release/mkondo")]
    mkondo_bin: PathBuf,
    /// Mkondo's database: a `postgres://` URL measures PostgreSQL (default: a
    /// fresh SQLite file in the run's directory).
    #[arg(long)]
    database: Option<String>,
    /// The socket.io peer's directory (with node_modules installed).
    #[arg(long, default_value = "bench/peers/socketio")]
    peer_dir: PathBuf,
    /// Where results.json, results.md and the figures go (default:
    /// bench/results, or a temporary directory with --smoke).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Loopback source addresses to spread connections over (127.0.0.1 …).
    #[arg(long, default_value_t = 4)]
    source_addrs: u8,
    /// Connections held by the idle scenario (overrides the mode's size).
    #[arg(long)]
    idle_connections: Option<usize>,
    /// SDK clients in the reconnect storm (overrides the mode's size).
    #[arg(long)]
    storm_clients: Option<usize>,
    /// Mkondo over TLS: the server gets a test certificate and every Mkondo
    /// connection speaks TLS (socket.io stays plaintext).
    #[arg(long)]
    tls: bool,
    /// Said next to the figures (e.g. "taken while other builds ran").
    #[arg(long, default_value = "")]
    note: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut sizes = if args.smoke {
        Sizes::smoke()
    } else {
        Sizes::full()
    };
    if let Some(n) = args.idle_connections {
        sizes.idle_connections = n;
    }
    if let Some(n) = args.storm_clients {
        sizes.storm_clients = n;
    }
    let out = args.out.clone().unwrap_or_else(|| {
        if args.smoke {
            std::env::temp_dir().join("mkondo-bench-smoke")
        } else {
            PathBuf::from("bench/results")
        }
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let work = std::env::temp_dir().join(format!("mkondo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    let wires = args
        .transports
        .iter()
        .map(|t| Wire::parse(t).ok_or_else(|| anyhow::anyhow!("unknown transport {t}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let storm_wires = args
        .storm_transports
        .iter()
        .map(|t| Wire::parse(t).ok_or_else(|| anyhow::anyhow!("unknown transport {t}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut targets: Vec<Target> = wires.iter().map(|&w| Target::Mkondo(w)).collect();
    if !args.no_socketio {
        targets.push(Target::SocketIo);
    }
    let mut skipped = Vec::new();
    let baseline = !args.no_baseline && !args.tls;
    if baseline {
        targets.push(Target::Baseline);
    } else if args.tls && !args.no_baseline {
        skipped.push("the baseline: it speaks plaintext only, and this run is --tls".to_owned());
    }
    let wants = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    // Instructions of the Mkondo transports and the baseline; socket.io's
    // count would depend on its JIT (see scenarios/callgrind.rs).
    let mut callgrind_targets: Vec<Target> = Vec::new();
    if wants("callgrind") {
        if args.smoke {
            skipped.push("callgrind: not in --smoke (valgrind slows the servers ~50×)".to_owned());
        } else if let Some(why) = callgrind::unavailable().await {
            eprintln!("callgrind: skipped: {why}");
            skipped.push(format!("callgrind: {why}"));
        } else {
            callgrind_targets = wires.iter().map(|&w| Target::Mkondo(w)).collect();
            if baseline {
                callgrind_targets.push(Target::Baseline);
            }
            if !args.no_socketio {
                skipped.push(
                    "socket.io under callgrind: its JIT makes the count depend on how warm it is"
                        .to_owned(),
                );
            }
        }
    }

    if args.tls {
        tls::enable(&work.join("tls"))?;
    }
    let baseline_bin = match &args.baseline_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("mkondo-baseline"),
    };
    let ctx = Ctx {
        mkondo: servers::Mkondo::new(&args.mkondo_bin, &work, args.database.as_deref()),
        socketio: servers::SocketIo::new(&args.peer_dir, &work),
        baseline: servers::Baseline::new(&baseline_bin, &work),
        sources: net::Sources::new(args.source_addrs),
        sizes,
        work: work.clone(),
    };
    let mut results = Results {
        date: date(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        disk_commit: disk_commit(&work),
        smoke: args.smoke,
        note: args.note.clone(),
        skipped,
        ..Default::default()
    };

    let limit = Duration::from_secs(if args.smoke { 120 } else { 900 });
    let suite = async {
        if wants("idle") {
            for &t in &targets {
                step(
                    &mut results,
                    "idle",
                    t.name(),
                    bounded(scenarios::idle::run(&ctx, t)).await,
                    |r, x| r.idle.push(x),
                );
            }
        }
        if wants("fanout") {
            for &t in &targets {
                let r = bounded(scenarios::fanout::run(&ctx, t)).await;
                step(&mut results, "fan-out", t.name(), r, |r, x| {
                    r.fanout.push(x)
                });
            }
        }
        if wants("direct") {
            for &t in &targets {
                let r = bounded(scenarios::direct::run(&ctx, t)).await;
                step(&mut results, "direct", t.name(), r, |r, x| r.direct.push(x));
            }
        }
        if wants("storage") {
            for &w in &wires {
                let r = bounded(scenarios::storage::run(&ctx, Target::Mkondo(w))).await;
                step(&mut results, "storage", w.name(), r, |r, x| {
                    r.storage.push(x)
                });
            }
        }
        if wants("webhooks") {
            let r = bounded(scenarios::webhooks::run(&ctx)).await;
            step(&mut results, "webhooks", "mkondo", r, |r, x| {
                r.webhooks.push(x)
            });
        }
        if wants("push") {
            let r = bounded(scenarios::push::run(&ctx)).await;
            step(&mut results, "push", "mkondo", r, |r, x| r.push.push(x));
        }
        if wants("files") {
            let r = bounded(scenarios::files::run(&ctx)).await;
            step(&mut results, "files", "mkondo", r, |r, x| r.files.extend(x));
        }
        if wants("storm") {
            for &w in &storm_wires {
                let r = bounded(scenarios::storm::run(&ctx, w)).await;
                step(&mut results, "storm", w.name(), r, |r, x| r.storm.push(x));
            }
        }
        if wants("sdk") {
            for &w in &wires {
                let r = bounded(scenarios::sdk::run(&ctx, w)).await;
                step(&mut results, "sdk", w.name(), r, |r, x| r.sdk.push(x));
            }
        }
        for &t in &callgrind_targets {
            let r = bounded(scenarios::callgrind::run(&ctx, t, &work)).await;
            step(&mut results, "callgrind", t.name(), r, |r, x| {
                r.callgrind.push(x)
            });
        }
    };
    // On SIGINT / SIGTERM the suite future is dropped, which kills the server
    // processes it started (their handles kill on drop): none is left behind.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stopped: Option<String> = tokio::select! {
        done = tokio::time::timeout(limit, suite) => done
            .is_err()
            .then(|| format!("the suite passed its {limit:?} limit and was stopped")),
        _ = tokio::signal::ctrl_c() => Some("interrupted".into()),
        _ = terminate.recv() => Some("terminated".into()),
    };
    results.problems.extend(stopped);
    check(&mut results);

    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let md = results.markdown();
    std::fs::write(out.join("results.md"), &md)?;
    let figures = plot::all(&results, &out)?;
    println!("{md}");
    println!(
        "results and figures ({}) in {}",
        figures.join(", "),
        out.display()
    );
    // Callgrind's profiles stay beside the results, for `callgrind_annotate`
    // (ignored by git: they are large and of one machine).
    for entry in std::fs::read_dir(&work)?.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("callgrind-") {
            let _ = std::fs::rename(entry.path(), out.join(name));
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    if results.problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} problem(s): see above", results.problems.len())
    }
}

/// The longest one scenario may take (each is ≤ 60 s of load plus set-up).
const SCENARIO_LIMIT: Duration = Duration::from_secs(150);

/// Runs one scenario within [`SCENARIO_LIMIT`]; its server is killed if it
/// overruns (the process handle kills on drop).
async fn bounded<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(SCENARIO_LIMIT, f)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("did not finish within {SCENARIO_LIMIT:?}")))
}

/// Prints a scenario's outcome as it finishes; keeps the result or the failure.
fn step<T: std::fmt::Debug>(
    results: &mut Results,
    scenario: &str,
    target: &str,
    outcome: anyhow::Result<T>,
    keep: impl FnOnce(&mut Results, T),
) {
    match outcome {
        Ok(x) => {
            eprintln!("{scenario} {target}: done");
            keep(results, x);
        }
        Err(e) => {
            eprintln!("{scenario} {target}: FAILED: {e:#}");
            results.problems.push(format!("{scenario} {target}: {e:#}"));
        }
    }
}

/// What a working run must show whatever the machine: every connection held,
/// messages delivered, nothing refused. The smoke run fails on any of these.
fn check(results: &mut Results) {
    let mut problems = Vec::new();
    for r in &results.idle {
        if r.failed > 0 {
            problems.push(format!(
                "idle {}: {} connections failed: {}",
                r.target,
                r.failed,
                r.first_error.clone().unwrap_or_default()
            ));
        }
    }
    for r in &results.fanout {
        if r.saturation_per_sec <= 0.0 {
            problems.push(format!("fan-out {}: nothing delivered", r.target));
        }
    }
    for r in &results.direct {
        if r.delivered == 0 || r.send_errors > 0 {
            problems.push(format!(
                "direct {}: {} delivered, {} send errors (first: {})",
                r.target,
                r.delivered,
                r.send_errors,
                r.first_send_error.clone().unwrap_or_default()
            ));
        }
    }
    for r in &results.files {
        if r.failed > 0 {
            problems.push(format!(
                "files {}: {} uploads failed (first: {})",
                r.run,
                r.failed,
                r.first_error.clone().unwrap_or_default()
            ));
        }
    }
    for r in &results.sdk {
        if r.received < r.messages * r.clients {
            problems.push(format!(
                "sdk {}: {} of {} messages received",
                r.target,
                r.received,
                r.messages * r.clients
            ));
        }
    }
    for r in &results.storage {
        if r.stored == 0 || r.failed > 0 {
            problems.push(format!(
                "storage {}: {} stored, {} failed (first: {})",
                r.target,
                r.stored,
                r.failed,
                r.first_error.clone().unwrap_or_default()
            ));
        }
    }
    for r in &results.callgrind {
        if r.deliveries < r.expected || r.send_errors > 0 {
            problems.push(format!(
                "callgrind {}: {} of {} delivered, {} send errors (first: {})",
                r.target,
                r.deliveries,
                r.expected,
                r.send_errors,
                r.first_send_error.clone().unwrap_or_default()
            ));
        }
    }
    for r in &results.push {
        for (path, p) in [("through the server", &r.server), ("direct", &r.direct)] {
            if p.pushes < r.members as u64 || p.duplicates > 0 || p.refused > 0 {
                problems.push(format!(
                    "push {path}: {} of {} pushes accepted, {} duplicates, {} refused (first: {})",
                    p.pushes,
                    r.members,
                    p.duplicates,
                    p.refused,
                    p.first_refusal.clone().unwrap_or_default()
                ));
            }
        }
    }
    for r in &results.storm {
        if r.resumed < r.clients || r.gave_up > 0 {
            problems.push(format!(
                "storm {}: {} of {} resumed, {} gave up",
                r.target, r.resumed, r.clients, r.gave_up
            ));
        }
    }
    results.problems.extend(problems);
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Cores and memory of this machine, from /proc.
/// What a durable commit waits for on this disk: a 4 KiB write and
/// `fdatasync` of it, 300 times, in the directory the SQLite file is in.
/// Returns (p50, p99) in milliseconds, or None if the directory cannot be
/// written.
fn disk_commit(dir: &std::path::Path) -> Option<(f64, f64)> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-probe");
    let file = std::fs::File::create(&path).ok()?;
    let block = [7u8; 4096];
    let mut took = Vec::with_capacity(300);
    for i in 0..300u64 {
        file.write_all_at(&block, (i % 64) * 4096).ok()?;
        let start = std::time::Instant::now();
        file.sync_data().ok()?;
        took.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let _ = std::fs::remove_file(&path);
    took.sort_by(f64::total_cmp);
    Some((took[150], took[297]))
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0 / 1024.0)
        })
        .unwrap_or(0.0);
    format!("{cores} cores, {mem_gib:.0} GiB")
}
