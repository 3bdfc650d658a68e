//! The loopback push providers (tests/push-providers/): APNs, FCM and a Web
//! Push service in Python, checking what they receive with independent
//! libraries (PyJWT, `cryptography`, `http_ece`), each a child process that
//! records every request and answers as scripted.
//!
//! The servers run in a Python venv: `MKONDO_PUSH_PYTHON` names its python,
//! else tests/venv.sh makes it (from PyPI) and says where.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use crate::venv::root;

/// The venv's python: `MKONDO_PUSH_PYTHON`, or what tests/venv.sh prints.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| crate::venv::python("push-providers", "MKONDO_PUSH_PYTHON"))
}

/// A loopback provider: a child process, killed on drop.
pub struct Provider {
    child: Child,
    pub url: String,
    /// The client of the control endpoints (for APNs, one trusting its CA).
    pub control: reqwest::Client,
}

impl Provider {
    pub fn start(script: &str, args: &[&str], control: reqwest::Client) -> Provider {
        let mut child = Command::new(python())
            .arg(root().join("tests/push-providers").join(script))
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // Held open: the server stops when it closes (this process died).
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {script}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let first: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("{script} printed {line:?} instead of its address"));
        Provider {
            child,
            url: first["url"].as_str().unwrap().to_owned(),
            control,
        }
    }

    pub async fn received(&self) -> Vec<Value> {
        let answer = self
            .control
            .get(format!("{}/_received", self.url))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
        answer.json().await.unwrap()
    }

    /// Queues answers (see tests/push-providers/common.py).
    pub async fn script(&self, script: Value) {
        self.post("/_script", script).await;
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let answer = self
            .control
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.json().await.unwrap_or(Value::Null)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every request the server logged passed its checks.
pub fn assert_no_errors(received: &[Value]) {
    for r in received {
        assert_eq!(r["errors"], json!([]), "the server refused: {r:#}");
    }
}

/// A client as the server builds one for APNs: its own rustls config
/// (ring, the workspace's provider), the loopback CA as the only root, ALPN
/// `h2` alone.
// ring's provider is deprecated for want of post-quantum key exchange; it
// is the workspace's choice (ARCHITECTURE.md, "Choices").
#[allow(deprecated)]
pub fn tls_client(ca_pem: &[u8], alpn_h2: bool) -> reqwest::Client {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    if alpn_h2 {
        config.alpn_protocols = vec![b"h2".to_vec()];
    }
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The key id, team id and bundle id the loopback APNs is started with.
pub const APNS_KEY_ID: &str = "ABC123DEFG";
pub const APNS_TEAM_ID: &str = "DEF123GHIJ";
pub const APNS_BUNDLE: &str = "com.example.chat";

/// The loopback APNs and what it made at start: the app's `.p8` key and the
/// CA its TLS certificate chains to (also in `ca_file`, for a server's
/// `--outbound-ca`), in a directory kept as long as this lives.
pub struct LoopbackApns {
    /// Its control client trusts the CA and speaks HTTP/2, as APNs needs.
    pub server: Provider,
    pub p8: String,
    pub ca: Vec<u8>,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopbackApns {
    pub fn start() -> LoopbackApns {
        let dir = tempfile::tempdir().unwrap();
        let p8 = dir.path().join("AuthKey.p8");
        let ca_file = dir.path().join("ca.pem");
        let args = [
            "--p8-out",
            p8.to_str().unwrap(),
            "--ca-out",
            ca_file.to_str().unwrap(),
            "--key-id",
            APNS_KEY_ID,
            "--team-id",
            APNS_TEAM_ID,
            "--bundle-id",
            APNS_BUNDLE,
        ];
        // The files exist once it printed its address; the control client,
        // which trusts the CA, comes after.
        let mut server = Provider::start("apns.py", &args, reqwest::Client::new());
        let ca = std::fs::read(&ca_file).unwrap();
        server.control = tls_client(&ca, true);
        LoopbackApns {
            server,
            p8: std::fs::read_to_string(&p8).unwrap(),
            ca,
            ca_file,
            _dir: dir,
        }
    }
}

impl std::ops::Deref for LoopbackApns {
    type Target = Provider;
    fn deref(&self) -> &Provider {
        &self.server
    }
}
