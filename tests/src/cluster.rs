//! Processes around a multi-node cluster: a private Redis server (so a test can
//! restart it under running nodes) and real nginx in front of the nodes, with the
//! configuration shipped in `deploy/nginx.conf`.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

use crate::{poll_until, WAIT};

/// A free loopback port (the OS picks it; released before the caller binds it).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn require(binary: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        for candidate in [
            Path::new(dir).join(binary),
            Path::new("/usr/sbin").join(binary),
        ] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "`{binary}` is not installed: run ./scripts/test.sh (it installs it), or \
         `apt-get install redis-server nginx-light`"
    )
}

/// `redis-server` on a loopback port, without persistence; killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let mut redis = RedisServer {
            port: free_port(),
            child: None,
        };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new(require("redis-server"))
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let port = self.port;
        poll_until(WAIT, "redis-server to answer PING", || async move {
            ping(port).await.then_some(())
        })
        .await;
    }

    /// SIGKILL: Redis is gone, as in a crash; its port refuses connections.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(WAIT, child.wait()).await;
        }
    }

    /// Starts Redis again on the same port (empty: it keeps nothing).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }
}

async fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
    )
}

/// nginx with `deploy/nginx.conf`, its upstreams pointed at `nodes`; stopped on drop.
pub struct Nginx {
    /// REST and WebSocket (the file's port 8080).
    pub http: SocketAddr,
    /// gRPC over HTTP/2 (the file's port 8081).
    pub grpc: SocketAddr,
    child: Child,
    _dir: TempDir,
}

impl Nginx {
    pub async fn start(nodes: &[SocketAddr]) -> Nginx {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx.conf");
        let conf = std::fs::read_to_string(&shipped).expect("read deploy/nginx.conf");
        let dir = tempfile::Builder::new()
            .prefix("mkondo-nginx-")
            .tempdir()
            .expect("tempdir");
        let (http, grpc) = (free_port(), free_port());
        let conf = rewrite(&conf, nodes, http, grpc, dir.path());
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let child = Command::new(require("nginx"))
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx {
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            grpc: SocketAddr::from(([127, 0, 0, 1], grpc)),
            child,
            _dir: dir,
        };
        for addr in [nginx.http, nginx.grpc] {
            poll_until(WAIT, "nginx to listen", || async move {
                TcpStream::connect(addr).await.ok().map(|_| ())
            })
            .await;
        }
        nginx
    }
}

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: the master then stops its workers (a killed master
    /// would leave them running).
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
}

/// The shipped file with test values: upstream servers, listening ports and the
/// files nginx writes (pid, temporary bodies) moved into `dir`. Panics if a marker
/// the rewrite relies on is gone, so the test keeps testing the shipped file.
fn rewrite(conf: &str, nodes: &[SocketAddr], http: u16, grpc: u16, dir: &Path) -> String {
    let dir = dir.display().to_string();
    let mut out = Vec::new();
    let (mut upstreams, mut ports) = (0, 0);
    for line in conf.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        if line.contains("# mkondo-node") {
            // One upstream block: the first node line becomes one line per node.
            if line.contains("mkondo1:") {
                upstreams += 1;
                for node in nodes {
                    out.push(format!(
                        "{indent}server {node} max_fails=1 fail_timeout=2s;"
                    ));
                }
            }
            continue;
        }
        if line.contains("# mkondo-http-port") {
            ports += 1;
            out.push(format!("{indent}listen 127.0.0.1:{http};"));
            continue;
        }
        if line.contains("# mkondo-grpc-port") {
            ports += 1;
            out.push(format!("{indent}listen 127.0.0.1:{grpc} http2;"));
            continue;
        }
        out.push(line.replace("/tmp/mkondo-nginx", &format!("{dir}/nginx")));
    }
    assert_eq!(
        (upstreams, ports),
        (2, 2),
        "deploy/nginx.conf lost its test markers"
    );
    out.join("\n")
}
