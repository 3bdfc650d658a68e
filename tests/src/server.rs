//! The server under test: the real server binary ([`mkondo_bin`]), a real SQLite file — or a
//! PostgreSQL database: [`ServerOptions::database`], or every server of a test run
//! with `MKONDO_TEST_STORE=postgres` (each on a fresh database, see `services`).

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::{now_secs, v1, Client, Rest, Transport, WAIT};

/// Flags for `mkondo serve`, plus what to set up before it starts.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    flags: Vec<(String, String)>,
    envs: Vec<(String, String)>,
    extra_apps: usize,
    asymmetric_keys: bool,
    database: Option<String>,
}

impl ServerOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Any `mkondo serve` flag, e.g. `.flag("--replay-limit", 100)`.
    pub fn flag(mut self, name: &str, value: impl ToString) -> Self {
        self.flags.retain(|(n, _)| n != name);
        self.flags.push((name.to_owned(), value.to_string()));
        self
    }

    /// An environment variable of the server process, e.g. `MKONDO_LOG`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.envs.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn replay_limit(self, n: u32) -> Self {
        self.flag("--replay-limit", n)
    }
    pub fn token_grace_ms(self, ms: u64) -> Self {
        self.flag("--token-grace-ms", ms)
    }
    pub fn ping_interval_ms(self, ms: u64) -> Self {
        self.flag("--ping-interval-ms", ms)
    }
    pub fn pong_timeout_ms(self, ms: u64) -> Self {
        self.flag("--pong-timeout-ms", ms)
    }
    pub fn max_frame_bytes(self, n: usize) -> Self {
        self.flag("--max-frame-bytes", n)
    }
    pub fn rate(self, per_second: u32, burst: u32) -> Self {
        self.flag("--rate-per-second", per_second)
            .flag("--rate-burst", burst)
    }
    /// A command rate no test that is not about rate limits will reach.
    pub fn unlimited_rate(self) -> Self {
        self.rate(100_000, 100_000)
    }
    pub fn outbound_queue(self, frames: usize) -> Self {
        self.flag("--outbound-queue", frames)
    }
    pub fn max_connections_per_user(self, n: usize) -> Self {
        self.flag("--max-connections-per-user", n)
    }
    pub fn max_token_lifetime_secs(self, secs: i64) -> Self {
        self.flag("--max-token-lifetime-secs", secs)
    }
    /// Lets webhooks and the before-send hook call `http` URLs on loopback (the
    /// tests' receivers); without it the server refuses them, as in production.
    pub fn outbound_allow_private(self) -> Self {
        self.flag("--outbound-allow-private", true)
    }
    /// Serves from this database (a `postgres://…` URL or a SQLite path) instead of a
    /// new SQLite file; the apps are created in it with the CLI as usual.
    pub fn database(mut self, url: impl Into<String>) -> Self {
        self.database = Some(url.into());
        self
    }
    /// Creates `n` more apps (with the CLI, before the server starts): `server.other_apps`.
    pub fn extra_apps(mut self, n: usize) -> Self {
        self.extra_apps = n;
        self
    }
    /// Registers the RS256, ES256 and EdDSA test public keys on the main app
    /// (with `mkondo app add-key`, before the server starts): `server.app.keys`.
    pub fn asymmetric_keys(mut self) -> Self {
        self.asymmetric_keys = true;
        self
    }
}

/// A tenant's credentials, as `mkondo app create --json` printed them.
#[derive(Debug, Clone)]
pub struct App {
    pub app_id: String,
    pub name: String,
    /// The HS256 signing key.
    pub kid: String,
    pub secret: String,
    pub api_key: String,
    /// Asymmetric keys registered with `app add-key` ([`ServerOptions::asymmetric_keys`]).
    pub keys: Vec<AsymmetricKey>,
}

/// A public key registered on an app, with its private half (which only the
/// customer's backend would hold) and an unrelated private key of the same kind.
#[derive(Debug, Clone)]
pub struct AsymmetricKey {
    pub alg: Algorithm,
    pub kid: String,
    pub private_pem: &'static [u8],
    pub public_pem: &'static [u8],
    /// Another key of the same algorithm, not registered: signs "bad signature" tokens.
    pub other_private_pem: &'static [u8],
}

impl AsymmetricKey {
    pub fn encoding_key(&self, pem: &[u8]) -> EncodingKey {
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).unwrap(),
            other => panic!("no test key for {other:?}"),
        }
    }

    /// A token signed with this key (`kid` set), valid for an hour.
    pub fn token(&self, app: &App, user: &str) -> String {
        let header = header(self.alg, Some(&self.kid));
        jsonwebtoken::encode(
            &header,
            &app.claims(user),
            &self.encoding_key(self.private_pem),
        )
        .unwrap()
    }
}

/// A test key pair on disk, and an unregistered private key of the same kind.
struct TestKey {
    alg: Algorithm,
    name: &'static str,
    private_pem: &'static [u8],
    public_pem: &'static [u8],
    other_private_pem: &'static [u8],
}

const TEST_KEYS: [TestKey; 3] = [
    TestKey {
        alg: Algorithm::RS256,
        name: "RS256",
        private_pem: include_bytes!("../fixtures/keys/rs256-1.key.pem"),
        public_pem: include_bytes!("../fixtures/keys/rs256-1.pub.pem"),
        other_private_pem: include_bytes!("../fixtures/keys/rs256-2.key.pem"),
    },
    TestKey {
        alg: Algorithm::ES256,
        name: "ES256",
        private_pem: include_bytes!("../fixtures/keys/es256-1.key.pem"),
        public_pem: include_bytes!("../fixtures/keys/es256-1.pub.pem"),
        other_private_pem: include_bytes!("../fixtures/keys/es256-2.key.pem"),
    },
    TestKey {
        alg: Algorithm::EdDSA,
        name: "EdDSA",
        private_pem: include_bytes!("../fixtures/keys/eddsa-1.key.pem"),
        public_pem: include_bytes!("../fixtures/keys/eddsa-1.pub.pem"),
        other_private_pem: include_bytes!("../fixtures/keys/eddsa-2.key.pem"),
    },
];

/// JWT claims. Every field is optional so that tests can leave any of them out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Claims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header
}

impl App {
    /// Claims for `user` in this app: issued now, valid for an hour.
    pub fn claims(&self, user: &str) -> Claims {
        let now = now_secs();
        Claims {
            sub: Some(user.to_owned()),
            app: Some(self.app_id.clone()),
            iat: Some(now),
            exp: Some(now + 3600),
            ..Claims::default()
        }
    }

    /// A valid HS256 token for `user`, as the customer's backend would sign it.
    pub fn token(&self, user: &str) -> String {
        self.sign(&self.claims(user))
    }

    /// A valid token for `user` that expires in `ttl_secs`.
    pub fn token_ttl(&self, user: &str, ttl_secs: i64) -> String {
        let mut claims = self.claims(user);
        claims.exp = Some(claims.iat.unwrap() + ttl_secs);
        self.sign(&claims)
    }

    /// Signs `claims` with the app's HS256 key and its `kid`.
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_with(
            Algorithm::HS256,
            Some(&self.kid),
            self.secret.as_bytes(),
            claims,
        )
    }

    /// Signs `claims` with an HMAC algorithm, any `kid` and any secret.
    pub fn sign_with(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        secret: &[u8],
        claims: &Claims,
    ) -> String {
        jsonwebtoken::encode(&header(alg, kid), claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    /// An unsigned token: header `{"alg":"none"}` and an empty signature.
    pub fn unsigned(&self, claims: &Claims) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": self.kid});
        format!(
            "{}.{}.",
            b64.encode(serde_json::to_vec(&header).unwrap()),
            b64.encode(serde_json::to_vec(claims).unwrap())
        )
    }

    pub fn key(&self, alg: Algorithm) -> &AsymmetricKey {
        self.keys
            .iter()
            .find(|k| k.alg == alg)
            .unwrap_or_else(|| panic!("no {alg:?} key: start the server with .asymmetric_keys()"))
    }
}

struct Running {
    child: Child,
    pid: u32,
}

/// Lines the server wrote to stderr lately, for failure messages.
type LogTail = Arc<Mutex<VecDeque<String>>>;

/// The `mkondo` binary serving on `127.0.0.1:<port>` with its own SQLite file.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The app created before the server started.
    pub app: App,
    /// Apps from [`ServerOptions::extra_apps`].
    pub other_apps: Vec<App>,
    opts: ServerOptions,
    /// The SQLite path or the PostgreSQL URL.
    db: String,
    running: Mutex<Option<Running>>,
    log: LogTail,
    // Last: removed after the child is killed.
    dir: TempDir,
}

/// The server binary the tests start: `$MKONDO_BIN` when set, else this
/// package's `mkondo-e2e-server` (the `mkondo` program under another name), whose
/// path Cargo gives the tests it runs (`CARGO_BIN_EXE_mkondo-e2e-server`), or,
/// for a test executable run by hand, the one beside it in the target directory
/// (`target/<profile>/deps/<test>` → `target/<profile>/mkondo-e2e-server`).
pub fn mkondo_bin() -> PathBuf {
    const NAME: &str = "mkondo-e2e-server";
    for var in ["MKONDO_BIN", "CARGO_BIN_EXE_mkondo-e2e-server"] {
        if let Some(bin) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return PathBuf::from(bin);
        }
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("test executable has a directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("deps has a parent");
    }
    let bin = dir.join(format!("{NAME}{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        panic!(
            "the server binary {} does not exist: run the tests with cargo test -p \
             mkondo-tests (it builds it), or point MKONDO_BIN at a mkondo binary",
            bin.display()
        );
    }
    bin
}

/// `MKONDO_TEST_STORE=postgres`: servers without [`ServerOptions::database`] get a
/// fresh PostgreSQL database instead of a SQLite file (the second pass of
/// `./scripts/test.sh` runs a slice of the suite so).
fn postgres_by_default() -> bool {
    match std::env::var("MKONDO_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("MKONDO_TEST_STORE must be sqlite or postgres, not {other:?}"),
    }
}

fn log_enabled() -> bool {
    std::env::var_os("MKONDO_TEST_LOG").is_some()
}

async fn cli(args: &[&str]) -> String {
    let out = Command::new(mkondo_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run mkondo");
    assert!(
        out.status.success(),
        "mkondo {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("CLI output is UTF-8")
}

fn parse_json(what: &str, out: &str) -> serde_json::Value {
    // Take the JSON object even if a log line slipped onto stdout.
    let start = out.find('{').unwrap_or(0);
    let end = out.rfind('}').map_or(out.len(), |i| i + 1);
    serde_json::from_str(&out[start..end])
        .unwrap_or_else(|e| panic!("{what} printed no JSON object ({e}): {out}"))
}

fn str_field(v: &serde_json::Value, path: &[&str]) -> String {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("missing string {} in {v}", path.join(".")))
        .to_owned()
}

impl TestServer {
    /// Creates a temporary directory and database, an app (and whatever `opts` asks
    /// for) with the CLI, then starts `mkondo serve --listen 127.0.0.1:0`.
    pub async fn start(opts: ServerOptions) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("mkondo-test-")
            .tempdir()
            .expect("tempdir");
        let db = match &opts.database {
            Some(url) => url.clone(),
            None if postgres_by_default() => crate::fresh_postgres().await,
            None => dir.path().join("mkondo.db").to_str().unwrap().to_owned(),
        };
        let mut app = create_app_in(&db, "main").await;
        if opts.asymmetric_keys {
            for key in TEST_KEYS {
                let path = dir.path().join(format!("{}.pub.pem", key.name));
                std::fs::write(&path, key.public_pem).unwrap();
                let kid = add_key_in(&db, &app.app_id, key.name, &path).await;
                app.keys.push(AsymmetricKey {
                    alg: key.alg,
                    kid,
                    private_pem: key.private_pem,
                    public_pem: key.public_pem,
                    other_private_pem: key.other_private_pem,
                });
            }
        }
        let mut other_apps = Vec::new();
        for i in 0..opts.extra_apps {
            other_apps.push(create_app_in(&db, &format!("other-{i}")).await);
        }
        let log = LogTail::default();
        let (running, addr) = spawn_serve(&db, &opts, &log).await;
        TestServer {
            addr,
            app,
            other_apps,
            opts,
            db,
            running: Mutex::new(Some(running)),
            log,
            dir,
        }
    }

    /// Another node serving the same database and apps (with the same options): a
    /// second process, as a multi-node deployment runs it. Useful with PostgreSQL
    /// (and a shared broker); two processes on one SQLite file work too.
    pub async fn join(&self) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("mkondo-test-")
            .tempdir()
            .expect("tempdir");
        let log = LogTail::default();
        let (running, addr) = spawn_serve(&self.db, &self.opts, &log).await;
        TestServer {
            addr,
            app: self.app.clone(),
            other_apps: self.other_apps.clone(),
            opts: self.opts.clone(),
            db: self.db.clone(),
            running: Mutex::new(Some(running)),
            log,
            dir,
        }
    }

    /// `TestServer::start(ServerOptions::default())`.
    pub async fn start_default() -> TestServer {
        Self::start(ServerOptions::default()).await
    }

    /// The SQLite file (for PostgreSQL: the URL, as a path, which the CLI's
    /// `--database` takes too).
    pub fn database(&self) -> &Path {
        Path::new(&self.db)
    }

    /// Where the server keeps uploaded files (`--files-dir` as `spawn_serve`
    /// gives it, or its default beside a SQLite database).
    pub fn files_dir(&self) -> std::path::PathBuf {
        if let Some((_, dir)) = self.opts.flags.iter().find(|(n, _)| n == "--files-dir") {
            return dir.into();
        }
        match files_dir_of(&self.db) {
            Some(dir) => dir,
            None => format!("{}.files", self.db).into(),
        }
    }

    /// Whether the server's store holds the ready file `name` (`upl_…`, or
    /// `upl_….thumb`) of `app`: under [`Self::files_dir`], or in its bucket.
    pub async fn stored(&self, app: &str, name: &str) -> bool {
        if !uses_s3(&self.opts) {
            return self.files_dir().join("blobs").join(app).join(name).exists();
        }
        let store = crate::s3::s3().store(&crate::s3::bucket_of(&self.db));
        let key = object_store::path::Path::from_iter([app, name]);
        match store.head(&key).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("looking for {key} in the test bucket: {e}"),
        }
    }

    /// What `--database` was given: the SQLite path or the PostgreSQL URL.
    pub fn database_url(&self) -> &str {
        &self.db
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.running
            .lock()
            .unwrap()
            .as_ref()
            .expect("server not running")
            .pid
    }

    /// Whether the server process is still alive.
    pub fn is_running(&self) -> bool {
        let mut guard = self.running.lock().unwrap();
        match guard.as_mut() {
            None => false,
            Some(r) => matches!(r.child.try_wait(), Ok(None)),
        }
    }

    /// Panics (with the server's last log lines) unless the server is alive.
    #[track_caller]
    pub fn assert_running(&self) {
        if !self.is_running() {
            panic!(
                "the server process died; last stderr lines:\n{}",
                self.log_tail()
            );
        }
    }

    /// The last lines the server wrote to stderr.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Resident memory of the server process in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Anonymous resident memory (the heap: what queued data would occupy) in KiB,
    /// `RssAnon` in `/proc/<pid>/status`, or `VmRSS` where the kernel lacks it.
    /// Unlike `VmRSS` it leaves out file pages such as a memory-mapped database.
    pub fn heap_kib(&self) -> u64 {
        let pid = self.pid();
        proc_status_kib(pid, "RssAnon").unwrap_or_else(|| rss_kib(pid))
    }

    /// SIGKILL: the process dies at once, as in a crash.
    pub async fn kill(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(mut r) = running {
            r.child.start_kill().expect("SIGKILL");
            let _ = tokio::time::timeout(WAIT, r.child.wait()).await;
        }
    }

    /// SIGTERM, then waits (up to 20 s) for the process to exit.
    pub async fn terminate(&self) -> ExitStatus {
        let running = self.running.lock().unwrap().take();
        let mut r = running.expect("server not running");
        let status = Command::new("kill")
            .args(["-TERM", &r.pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", r.pid);
        match tokio::time::timeout(Duration::from_secs(20), r.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => {
                let _ = r.child.start_kill();
                panic!(
                    "the server did not exit within 20 s of SIGTERM; last stderr lines:\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// Starts the server again on the same database (a new port: `self.addr` changes).
    /// Kills the old process first if it is still running.
    pub async fn restart(&mut self) {
        self.kill().await;
        let (running, addr) = spawn_serve(&self.db, &self.opts, &self.log).await;
        self.addr = addr;
        *self.running.lock().unwrap() = Some(running);
    }

    /// Creates another app with the CLI, on the live database.
    pub async fn create_app(&self, name: &str) -> App {
        create_app_in(&self.db, name).await
    }

    /// A token minted by `mkondo token` (the CLI), not by the test.
    pub async fn cli_token(&self, user: &str, ttl_secs: Option<u64>, groups: &[&str]) -> String {
        let db = self.db.clone();
        let ttl = ttl_secs.map(|t| t.to_string());
        let groups = groups.join(",");
        let mut args = vec![
            "token",
            "--app",
            &self.app.app_id,
            "--user",
            user,
            "--database",
            &db,
        ];
        if let Some(ttl) = &ttl {
            args.extend(["--ttl", ttl]);
        }
        if !groups.is_empty() {
            args.extend(["--groups", &groups]);
        }
        let out = cli(&args).await;
        let token = out.trim().to_owned();
        assert_eq!(
            token.split('.').count(),
            3,
            "mkondo token printed something other than a JWT: {out:?}"
        );
        token
    }

    /// `ws://ADDR/v1/realtime`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// A client over `transport`, not yet connected.
    pub async fn open(&self, transport: Transport) -> Client {
        Client::open(self.addr, transport).await
    }

    /// A client of the main app, connected as `user` (panics if refused).
    pub async fn client(&self, transport: Transport, user: &str) -> (Client, v1::ConnectResult) {
        self.client_with_token(transport, &self.app.token(user))
            .await
    }

    /// A client connected with `token` (panics if refused).
    pub async fn client_with_token(
        &self,
        transport: Transport,
        token: &str,
    ) -> (Client, v1::ConnectResult) {
        let client = self.open(transport).await;
        let result = client
            .connect(token, HashMap::new())
            .await
            .unwrap_or_else(|e| panic!("connect refused: {e:?}"));
        (client, result)
    }

    /// REST with the main app's API key.
    pub fn api(&self) -> Rest {
        Rest::new(self.addr, Some(&self.app.api_key))
    }

    /// REST with any bearer credential (API key or user token).
    pub fn rest_as(&self, bearer: &str) -> Rest {
        Rest::new(self.addr, Some(bearer))
    }

    /// REST without credentials.
    pub fn rest_anon(&self) -> Rest {
        Rest::new(self.addr, None)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.running.lock() {
            if let Some(mut r) = guard.take() {
                let _ = r.child.start_kill();
            }
        }
    }
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `RssAnon`, ...); `None` when the
/// process is gone or the kernel does not report it.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS").unwrap_or_else(|| panic!("no VmRSS for process {pid}"))
}

async fn create_app_in(db: &str, name: &str) -> App {
    let out = cli(&["app", "create", "--name", name, "--json", "--database", db]).await;
    let v = parse_json("mkondo app create --json", &out);
    App {
        app_id: str_field(&v, &["app_id"]),
        name: str_field(&v, &["name"]),
        kid: str_field(&v, &["signing_key", "kid"]),
        secret: str_field(&v, &["signing_key", "secret"]),
        api_key: str_field(&v, &["api_key"]),
        keys: Vec::new(),
    }
}

async fn add_key_in(db: &str, app_id: &str, alg: &str, public_pem: &Path) -> String {
    let out = cli(&[
        "app",
        "add-key",
        "--app",
        app_id,
        "--alg",
        alg,
        "--public-key",
        public_pem.to_str().unwrap(),
        "--database",
        db,
        "--json",
    ])
    .await;
    let v = parse_json("mkondo app add-key --json", &out);
    str_field(&v, &["kid"])
}

/// The secrets key of test servers on PostgreSQL: base64 of 32 bytes.
pub const TEST_SECRETS_KEY: &str = "bWtvbmRvLXRlc3RzLXNlY3JldHMta2V5LTMyLWJ5dGU=";

/// Whether a server keeps its ready files in the test S3 server: with
/// `MKONDO_TEST_BLOBS=s3`, unless its flags name a store.
fn uses_s3(opts: &ServerOptions) -> bool {
    crate::s3::s3_by_default() && !opts.flags.iter().any(|(n, _)| n == "--blob-store")
}

/// The files directory the nodes of a PostgreSQL database share in tests
/// (`None` on SQLite: the server's default beside the database file).
fn files_dir_of(db: &str) -> Option<std::path::PathBuf> {
    db.starts_with("postgres").then(|| {
        let name = db
            .rsplit('/')
            .next()
            .unwrap_or("db")
            .replace(['?', '&', '='], "_");
        std::env::temp_dir().join(format!("mkondo-test-files-{name}"))
    })
}

async fn spawn_serve(db: &str, opts: &ServerOptions, log: &LogTail) -> (Running, SocketAddr) {
    let mut cmd = Command::new(mkondo_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database", db]);
    for (name, value) in &opts.flags {
        cmd.args([name, value]);
    }
    // Nodes on PostgreSQL share a secrets key (webhook secrets are sealed with
    // it); on SQLite the server makes its own beside the database.
    let keyed = opts
        .flags
        .iter()
        .any(|(n, _)| n.starts_with("--secrets-key"));
    if db.starts_with("postgres") && !keyed {
        cmd.env("MKONDO_SECRETS_KEY", TEST_SECRETS_KEY);
    }
    // Files: beside a SQLite database by default; the nodes of one PostgreSQL
    // database share a directory named after it (as they would share a volume).
    let files = opts.flags.iter().any(|(n, _)| n == "--files-dir");
    if let (Some(dir), false) = (files_dir_of(db), files) {
        cmd.arg("--files-dir").arg(dir);
    }
    // MKONDO_TEST_BLOBS=s3: ready files in the bucket of this database.
    if uses_s3(opts) {
        let bucket = crate::s3::bucket_of(db);
        let s3 = tokio::task::spawn_blocking(move || {
            let s3 = crate::s3::s3();
            s3.bucket(&bucket);
            s3
        })
        .await
        .unwrap();
        cmd.arg("--blob-store")
            .arg(s3.url(&crate::s3::bucket_of(db)));
        cmd.envs(s3.env());
    }
    cmd.envs(opts.envs.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn mkondo serve");
    let pid = child.id().expect("child pid");

    // stderr: kept (the last lines) for failure messages, echoed with MKONDO_TEST_LOG.
    let stderr = child.stderr.take().unwrap();
    let tail = log.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if log_enabled() {
                eprintln!("[mkondo {pid}] {line}");
            }
            let mut tail = tail.lock().unwrap();
            if tail.len() >= 200 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });

    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if log_enabled() {
                eprintln!("[mkondo {pid} stdout] {line}");
            }
            if let Some(rest) = line.trim().strip_prefix("mkondo listening on ") {
                let addr: SocketAddr = rest
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("bad listening line {line:?}: {e}"));
                return Some(addr);
            }
        }
        None
    })
    .await;
    let addr = match found {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            let status = child.wait().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let tail = log.lock().unwrap().iter().cloned().collect::<Vec<_>>();
            panic!(
                "mkondo serve exited ({status:?}) without printing 'mkondo listening on ADDR'; stderr:\n{}",
                tail.join("\n")
            );
        }
        Err(_) => {
            let _ = child.start_kill();
            let tail = log.lock().unwrap().iter().cloned().collect::<Vec<_>>();
            panic!(
                "mkondo serve printed no 'mkondo listening on ADDR' within 60 s; stderr:\n{}",
                tail.join("\n")
            );
        }
    };
    // Keep draining stdout so that the pipe never fills.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if log_enabled() {
                eprintln!("[mkondo {pid} stdout] {line}");
            }
        }
    });
    (Running { child, pid }, addr)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    use super::*;

    fn app() -> App {
        App {
            app_id: "app_1".into(),
            name: "main".into(),
            kid: "k1".into(),
            secret: "s3cret".into(),
            api_key: "mk_x".into(),
            keys: TEST_KEYS
                .iter()
                .enumerate()
                .map(|(i, k)| AsymmetricKey {
                    alg: k.alg,
                    kid: format!("kid-{i}"),
                    private_pem: k.private_pem,
                    public_pem: k.public_pem,
                    other_private_pem: k.other_private_pem,
                })
                .collect(),
        }
    }

    #[test]
    fn hs256_tokens_verify_with_the_secret() {
        let app = app();
        let token = app.token("alice");
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let data = decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"s3cret"),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.claims["app"], "app_1");
        assert!(data.claims.get("groups").is_none());
    }

    #[test]
    fn unsigned_tokens_have_alg_none_and_no_signature() {
        let app = app();
        let token = app.unsigned(&app.claims("alice"));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[2].is_empty());
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "none");
    }

    #[test]
    fn fixture_keys_sign_verifiable_tokens() {
        let app = app();
        for key in &app.keys {
            let token = key.token(&app, "bob");
            let decoding = match key.alg {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(key.public_pem),
                Algorithm::ES256 => DecodingKey::from_ec_pem(key.public_pem),
                _ => DecodingKey::from_ed_pem(key.public_pem),
            }
            .unwrap();
            let validation = Validation::new(key.alg);
            decode::<serde_json::Value>(&token, &decoding, &validation)
                .unwrap_or_else(|e| panic!("{:?}: {e}", key.alg));
            // The other key's signature does not verify.
            let mut header = Header::new(key.alg);
            header.kid = Some(key.kid.clone());
            let forged = jsonwebtoken::encode(
                &header,
                &app.claims("bob"),
                &key.encoding_key(key.other_private_pem),
            )
            .unwrap();
            assert!(decode::<serde_json::Value>(&forged, &decoding, &validation).is_err());
        }
    }
}
