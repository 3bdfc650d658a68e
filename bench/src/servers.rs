//! The servers under test, as separate processes: the release `mkondo` binary
//! with its real SQLite file, the socket.io peer under Node, and the bare
//! `mkondo-baseline`. Being separate processes, each has its own open-file
//! limit (20,000 here, see `scripts/bench.sh`), and `/proc/<pid>` tells what
//! each one alone costs.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::callgrind;
use crate::token::App;

/// A running server process.
pub struct Process {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
}

impl Process {
    /// SIGTERM (a graceful shutdown: Mkondo tells clients to reconnect), then
    /// waits up to 20 s, then SIGKILL.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            self.child.start_kill()?;
            self.child.wait().await?;
        }
        Ok(())
    }
}

/// Starts `cmd` with stderr into `log` and waits (up to 60 s) for the line
/// `<prefix> HOST:PORT` on stdout; stdout is drained afterwards.
async fn spawn_listening(mut cmd: Command, prefix: &str, log: &Path) -> anyhow::Result<Process> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting the server")?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the server exited at once"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                return rest.trim().parse::<SocketAddr>().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| anyhow!("the server printed no '{prefix} ADDR' (see its log)"))?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Process { child, pid, addr })
}

/// Mkondo's binary, its database and the app created for the run.
pub struct Mkondo {
    bin: PathBuf,
    /// A SQLite path or a `postgres://` URL.
    db: std::ffi::OsString,
    log: PathBuf,
}

impl Mkondo {
    /// A fresh SQLite database in `dir` (created by the first `app create`),
    /// or the PostgreSQL database at `postgres` (its rows accumulate from run to
    /// run; each scenario run makes its own app).
    pub fn new(bin: &Path, dir: &Path, postgres: Option<&str>) -> Mkondo {
        let db = match postgres {
            Some(url) => url.into(),
            None => {
                let db = dir.join("mkondo-bench.db");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
                }
                db.into_os_string()
            }
        };
        Mkondo {
            bin: bin.to_owned(),
            db,
            log: dir.join("mkondo-server.log"),
        }
    }

    /// A new app (tenant) in the database, with `mkondo app create --json`.
    /// Every scenario run gets its own, so none sees another's users and
    /// conversations.
    pub async fn create_app(&self) -> anyhow::Result<App> {
        let out = Command::new(&self.bin)
            .args(["app", "create", "--name", "bench", "--json", "--database"])
            .arg(&self.db)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "mkondo app create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let start = text.find('{').unwrap_or(0);
        let v: serde_json::Value =
            serde_json::from_str(&text[start..]).context("mkondo app create --json output")?;
        let field = |path: &[&str]| -> anyhow::Result<String> {
            let mut cur = &v;
            for key in path {
                cur = &cur[*key];
            }
            cur.as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("no {} in {v}", path.join(".")))
        };
        Ok(App {
            app_id: field(&["app_id"])?,
            kid: field(&["signing_key", "kid"])?,
            secret: field(&["signing_key", "secret"])?,
            api_key: field(&["api_key"])?,
        })
    }

    /// `mkondo serve` on `listen` (port 0: any free port) with default limits,
    /// except the API key's rate: the scenarios' set-up (thousands of users
    /// and conversations through REST) is not what is measured.
    pub async fn start(&self, listen: SocketAddr) -> anyhow::Result<Process> {
        self.start_as(listen, None, &[]).await
    }

    /// [`Mkondo::start`], under callgrind when `callgrind` is given, with
    /// `flags` added.
    pub async fn start_as(
        &self,
        listen: SocketAddr,
        callgrind: Option<&callgrind::Run>,
        flags: &[&str],
    ) -> anyhow::Result<Process> {
        let mut cmd = match callgrind {
            Some(run) => run.command(&self.bin),
            None => Command::new(&self.bin),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--database")
            .arg(&self.db)
            .args(["--api-key-rate-per-second", "1000000"])
            .args(["--api-key-rate-burst", "1000000"])
            .args(flags);
        if let Some(tls) = crate::tls::get() {
            cmd.arg("--tls-cert").arg(&tls.cert);
            cmd.arg("--tls-key").arg(&tls.key);
        }
        cmd.env("MKONDO_LOG", "warn");
        spawn_listening(cmd, "mkondo listening on ", &self.log).await
    }

    /// The REST API with `app`'s API key.
    pub fn rest(&self, server: SocketAddr, app: &App) -> Rest {
        Rest {
            base: format!("http://{server}/v1"),
            key: app.api_key.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// The operator API (`/v1/admin/...`) of a server started with
    /// `--operator-secret secret`.
    pub fn operator(&self, server: SocketAddr, secret: &str) -> Rest {
        Rest {
            base: format!("http://{server}/v1"),
            key: secret.to_owned(),
            http: reqwest::Client::new(),
        }
    }
}

/// The socket.io peer (`bench/peers/socketio/server.js`).
pub struct SocketIo {
    dir: PathBuf,
    log: PathBuf,
}

impl SocketIo {
    pub fn new(peer_dir: &Path, work_dir: &Path) -> SocketIo {
        SocketIo {
            dir: peer_dir.to_owned(),
            log: work_dir.join("socketio-peer.log"),
        }
    }

    /// Starts the peer on a free port; it verifies tokens signed for `app`.
    pub async fn start(&self, app: &App) -> anyhow::Result<Process> {
        if !self.dir.join("node_modules/socket.io").exists() {
            bail!(
                "{} has no node_modules: run `npm ci` there (scripts/bench.sh does)",
                self.dir.display()
            );
        }
        let mut cmd = Command::new("node");
        cmd.arg("server.js")
            .current_dir(&self.dir)
            .env("MKONDO_BENCH_SECRET", &app.secret)
            .env("MKONDO_BENCH_APP", &app.app_id)
            .env("PORT", "0");
        spawn_listening(cmd, "socketio listening on ", &self.log).await
    }
}

/// `mkondo-baseline`, built beside the load generator.
pub struct Baseline {
    bin: PathBuf,
    log: PathBuf,
}

impl Baseline {
    pub fn new(bin: &Path, work_dir: &Path) -> Baseline {
        Baseline {
            bin: bin.to_owned(),
            log: work_dir.join("baseline.log"),
        }
    }

    /// Starts the baseline on a free port, under callgrind when `callgrind`
    /// is given.
    pub async fn start(&self, callgrind: Option<&callgrind::Run>) -> anyhow::Result<Process> {
        if !self.bin.exists() {
            bail!(
                "{} is missing: `cargo build -p mkondo-bench` builds it (or pass \
                 --baseline-bin, or --no-baseline)",
                self.bin.display()
            );
        }
        let mut cmd = match callgrind {
            Some(run) => run.command(&self.bin),
            None => Command::new(&self.bin),
        };
        cmd.args(["--listen", "127.0.0.1:0"]);
        spawn_listening(cmd, "baseline listening on ", &self.log).await
    }
}

/// The backend's view: REST with an API key, for setting up conversations.
#[derive(Clone)]
pub struct Rest {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Rest {
    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let value: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {path}: {status} {value}");
        }
        Ok(value)
    }

    pub async fn patch(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .patch(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let value: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("PATCH {path}: {status} {value}");
        }
        Ok(value)
    }

    /// Creates a conversation and returns its id.
    pub async fn conversation(&self, body: serde_json::Value) -> anyhow::Result<String> {
        let v = self.post("/conversations", body).await?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no id in {v}"))
    }
}
