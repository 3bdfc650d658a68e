//! Counting a server's instructions with callgrind, for a cost that can be
//! compared across days: CPU time here swings by 2–3× with the machine, an
//! instruction count barely moves (this machine has no hardware counters, so
//! `perf stat -e instructions` is not an option).
//!
//! The server runs under `valgrind --tool=callgrind --instr-atstart=no`: not
//! instrumented while it starts and while clients connect (about 4× slower
//! than native instead of about 50×), then `callgrind_control` turns
//! instrumentation on, zeroes the counters, and dumps them once the measured
//! work is over. The dump holds every thread's instructions (tokio's workers,
//! the blocking pool, SQLite's worker) in user space; the kernel's work (the
//! `send()`s themselves) is not counted.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use tokio::process::Command;

/// The callgrind output of one server run (`out`, and `out.N` per dump).
#[derive(Debug, Clone)]
pub struct Run {
    pub out: PathBuf,
}

/// Why callgrind cannot run here, if it cannot: valgrind or callgrind_control
/// missing.
pub async fn unavailable() -> Option<String> {
    for tool in ["valgrind", "callgrind_control"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (Debian: apt-get install valgrind)"
            ));
        }
    }
    None
}

impl Run {
    pub fn new(out: PathBuf) -> Run {
        for (_, stale) in dumps(&out) {
            let _ = std::fs::remove_file(stale);
        }
        let _ = std::fs::remove_file(&out);
        Run { out }
    }

    /// `bin` under callgrind, not instrumented until [`Run::start`]; arguments
    /// follow as for `bin` itself.
    pub fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new("valgrind");
        cmd.args(["--tool=callgrind", "--instr-atstart=no"])
            .arg(format!("--callgrind-out-file={}", self.out.display()))
            .arg(bin);
        cmd
    }

    /// Instruments and counts from now on, from zero.
    pub async fn start(&self, pid: u32) -> anyhow::Result<()> {
        control(pid, &["--instr=on"]).await?;
        control(pid, &["--zero"]).await
    }

    /// The instructions (Ir) counted since [`Run::start`]; instrumentation is
    /// off again afterwards, so the server stops quickly.
    pub async fn finish(&self, pid: u32) -> anyhow::Result<u64> {
        let before = dumps(&self.out).len();
        control(pid, &["--dump"]).await?;
        let _ = control(pid, &["--instr=off"]).await;
        let dumped = dumps(&self.out);
        if dumped.len() <= before {
            bail!("callgrind wrote no dump next to {}", self.out.display());
        }
        let (_, newest) = dumped
            .iter()
            .max_by_key(|(n, _)| *n)
            .expect("at least one dump");
        let text = std::fs::read_to_string(newest)
            .with_context(|| format!("reading {}", newest.display()))?;
        totals(&text).ok_or_else(|| anyhow!("no `totals:` line in {}", newest.display()))
    }
}

/// Runs `callgrind_control <args> <pid>`, which answers `OK` when the
/// command reached the server.
async fn control(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .await
        .context("running callgrind_control")?;
    let said = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !said.contains("OK") {
        bail!(
            "callgrind_control {} {pid}: {} {}",
            args.join(" "),
            said.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The dumps written so far, `out.1`, `out.2` …, with their numbers.
fn dumps(out: &Path) -> Vec<(u32, PathBuf)> {
    let (Some(dir), Some(name)) = (out.parent(), out.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix(&prefix)?
                .parse::<u32>()
                .ok()?;
            Some((n, e.path()))
        })
        .collect()
}

/// The `totals:` line of a callgrind dump (its only event is Ir).
fn totals(dump: &str) -> Option<u64> {
    dump.lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_totals_line() {
        let dump = "version: 1\nevents: Ir\nsummary: 77330631\ntotals: 77330631\n";
        assert_eq!(totals(dump), Some(77_330_631));
        assert_eq!(totals("events: Ir\n"), None);
    }
}
