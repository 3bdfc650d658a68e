//! Processes around a multi-node cluster: a private Redis server (so a test can
//! restart it under running nodes) and real nginx in front of the nodes, with the
//! configuration shipped in `deploy/nginx.conf`.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

use crate::{poll_until, tls::TestCa, WAIT};

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
    tls: Option<RedisTls>,
}

/// A Redis speaking TLS only: its certificate files, and a client trusting its CA.
struct RedisTls {
    dir: TempDir,
    client: Arc<rustls::ClientConfig>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let mut redis = RedisServer {
            port: free_port(),
            child: None,
            tls: None,
        };
        redis.spawn().await;
        redis
    }

    /// A Redis speaking TLS only (`--port 0 --tls-port PORT`), with a
    /// certificate for `localhost` and `127.0.0.1` from `ca`; clients are not
    /// asked for certificates.
    pub async fn start_tls(ca: &TestCa) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("mkondo-redis-tls-")
            .tempdir()
            .expect("tempdir");
        ca.server_cert(&["localhost", "127.0.0.1"], 1)
            .write(dir.path());
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
        let mut redis = RedisServer {
            port: free_port(),
            child: None,
            tls: Some(RedisTls {
                dir,
                client: ca.client_config(&[]),
            }),
        };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://localhost:PORT` over TLS.
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(_) => format!("rediss://localhost:{}", self.port),
        }
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new(require("redis-server"));
        command.args(["--bind", "127.0.0.1"]);
        match &self.tls {
            None => {
                command.args(["--port", &port]);
            }
            Some(tls) => {
                let file = |name: &str| tls.dir.path().join(name);
                command
                    .args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(file("server.crt"))
                    .arg("--tls-key-file")
                    .arg(file("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(file("ca.crt"))
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        let child = command
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let port = self.port;
        let tls = self.tls.as_ref().map(|t| t.client.clone());
        poll_until(WAIT, "redis-server to answer PING", || {
            let tls = tls.clone();
            async move {
                match tls {
                    None => ping(port).await,
                    Some(client) => ping_tls(port, client).await,
                }
                .then_some(())
            }
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
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    answers_ping(stream).await
}

async fn ping_tls(port: u16, client: Arc<rustls::ClientConfig>) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(stream) = crate::tls::connect_tls(addr, client, "localhost").await else {
        return false;
    };
    answers_ping(stream).await
}

async fn answers_ping(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
) -> bool {
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
