//! What the server process costs, read from `/proc/<pid>`: resident memory and
//! CPU time. The load generator runs on the same cores, so only the server's own
//! accounting says what the server used.

use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ; 100 on Linux
/// everywhere this runs, and not readable without libc).
const TICKS_PER_SEC: f64 = 100.0;

/// `VmRSS` of the process in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS").unwrap_or(0)
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// User + system CPU time of the process so far.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name may hold spaces; the fields after its ')' do not.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SEC)
}

/// CPU use of a process over a window, in percent of one core.
pub struct CpuWindow {
    pid: u32,
    cpu: Duration,
    at: Instant,
}

impl CpuWindow {
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            cpu: cpu_time(pid),
            at: Instant::now(),
        }
    }

    /// CPU time the process used since `start`.
    pub fn used(&self) -> Duration {
        cpu_time(self.pid).saturating_sub(self.cpu)
    }

    /// Percent of one core since `start` (200 = both cores of this machine).
    pub fn percent(&self) -> f64 {
        let used = cpu_time(self.pid).saturating_sub(self.cpu).as_secs_f64();
        let wall = self.at.elapsed().as_secs_f64().max(1e-3);
        100.0 * used / wall
    }
}

/// Samples CPU use every `every` until stopped; keeps the highest window.
pub struct CpuPeak {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<f64>,
}

impl CpuPeak {
    pub fn start(pid: u32, every: Duration) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            loop {
                let window = CpuWindow::start(pid);
                tokio::select! {
                    _ = tokio::time::sleep(every) => peak = peak.max(window.percent()),
                    _ = stopped.changed() => return peak,
                }
            }
        });
        Self { stop, task }
    }

    /// The highest CPU use of any window, in percent of one core.
    pub async fn finish(self) -> f64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(0.0)
    }
}
