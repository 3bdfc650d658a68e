//! Server configuration: flags, `MKONDO_*` environment variables, or a TOML file,
//! in that order of precedence, over the defaults below.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::Args;
use serde::Deserialize;
use tokio::sync::Semaphore;

/// Every setting is optional here so a flag, the environment and the file can be told apart.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// Address to listen on (use port 0 for any free port).
    #[arg(long, env = "MKONDO_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// SQLite file path (or sqlite://path), or postgres://user:pass@host/db for
    /// several nodes sharing one PostgreSQL database.
    #[arg(long, env = "MKONDO_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// PostgreSQL: connections this node keeps open (SQLite ignores it).
    #[arg(long, env = "MKONDO_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// SQLite: `full` (default; an acknowledged message survives power loss) or
    /// `normal` (faster; survives a crash of the process, not of the machine).
    #[arg(long, env = "MKONDO_SQLITE_SYNCHRONOUS")]
    pub sqlite_synchronous: Option<String>,
    /// TOML configuration file with the same keys as these flags (snake_case).
    #[arg(long, env = "MKONDO_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "MKONDO_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Messages replayed per conversation on resume before the client must page.
    #[arg(long, env = "MKONDO_REPLAY_LIMIT")]
    pub replay_limit: Option<u32>,
    /// How long a connection may outlive its token's expiry without a refresh
    /// (at most an hour).
    #[arg(long, env = "MKONDO_TOKEN_GRACE_MS")]
    pub token_grace_ms: Option<u64>,
    #[arg(long, env = "MKONDO_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    #[arg(long, env = "MKONDO_PONG_TIMEOUT_MS")]
    pub pong_timeout_ms: Option<u64>,
    /// Largest client frame accepted (bytes); larger ones get `too_large`.
    #[arg(long, env = "MKONDO_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    #[arg(long, env = "MKONDO_RATE_PER_SECOND")]
    pub rate_per_second: Option<u32>,
    #[arg(long, env = "MKONDO_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Requests per second an app's API keys may make together (REST and the
    /// Admin gRPC API); a user token shares its user's real-time rate instead.
    #[arg(long, env = "MKONDO_API_KEY_RATE_PER_SECOND")]
    pub api_key_rate_per_second: Option<u32>,
    /// Requests an app's API keys may make at once before the rate applies.
    #[arg(long, env = "MKONDO_API_KEY_RATE_BURST")]
    pub api_key_rate_burst: Option<u32>,
    /// REST and Admin gRPC requests in progress at once; more are answered 503
    /// `unavailable` at once (health checks and real-time connections aside).
    #[arg(long, env = "MKONDO_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// How long a REST or Admin gRPC request may take, reading its body
    /// included, before it is answered 503 `unavailable` and its slot freed
    /// (100 ms to 10 min; real-time connections are not subject to it).
    #[arg(long, env = "MKONDO_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Failed authentications (bad API key, token or operator secret) a client
    /// address may make per minute; past it every authentication from that
    /// address is refused `rate_limited` until the budget refills.
    #[arg(long, env = "MKONDO_AUTH_FAILURES_PER_MINUTE")]
    pub auth_failures_per_minute: Option<u32>,
    /// Proxies (IPs or CIDRs, comma-separated) whose `X-Forwarded-For` names the
    /// client; from any other peer the header is ignored.
    #[arg(long, env = "MKONDO_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Pushes queued per connection before it is closed as a slow consumer.
    #[arg(long, env = "MKONDO_OUTBOUND_QUEUE")]
    pub outbound_queue: Option<usize>,
    /// How long one write to a connection may take before it is closed as a
    /// slow consumer (a client that sends but never reads), 100 ms to 10 min.
    #[arg(long, env = "MKONDO_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,
    #[arg(long, env = "MKONDO_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<usize>,
    /// `connect` commands handled at once; more wait their turn (a reconnect
    /// storm queues instead of overloading the database).
    #[arg(long, env = "MKONDO_MAX_CONCURRENT_CONNECTS")]
    pub max_concurrent_connects: Option<usize>,
    /// Longest token lifetime accepted (exp − iat), in seconds: 60 s to 30 days.
    #[arg(long, env = "MKONDO_MAX_TOKEN_LIFETIME_SECS")]
    pub max_token_lifetime_secs: Option<i64>,
    /// Create users on first connect from their token's claims.
    #[arg(long, env = "MKONDO_AUTO_CREATE_USERS")]
    pub auto_create_users: Option<bool>,
    /// Secret for the operator API (`/v1/admin/...`, `Authorization: Bearer
    /// <secret>`), at least 16 characters. Without it the operator API answers 404.
    /// On the command line it shows in the process list: prefer
    /// `--operator-secret-file` or the environment.
    #[arg(long, env = "MKONDO_OPERATOR_SECRET", hide_env_values = true)]
    pub operator_secret: Option<Secret>,
    /// A file holding the operator secret (a trailing newline is not part of it).
    #[arg(
        long,
        env = "MKONDO_OPERATOR_SECRET_FILE",
        conflicts_with = "operator_secret"
    )]
    pub operator_secret_file: Option<PathBuf>,
    /// Event broker and presence engine: `memory` (one node, the default),
    /// `redis://host:port[/db]` (several nodes sharing one Redis) or
    /// `rediss://host:port[/db]` (the same over TLS, the certificate verified).
    #[arg(long, env = "MKONDO_BROKER", hide_env_values = true)]
    pub broker: Option<Secret>,
    /// With a `rediss://` broker: the CA certificates (PEM) Redis's certificate
    /// must chain to, instead of the system's trust store (a private CA).
    #[arg(long, env = "MKONDO_REDIS_CA", value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,
    /// Prefix of every Redis key and channel, so several clusters share one Redis.
    #[arg(long, env = "MKONDO_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// How long a connection stays present after its node stops refreshing it
    /// (Redis engine): a crashed node's users turn offline within this.
    #[arg(long, env = "MKONDO_PRESENCE_TTL_MS")]
    pub presence_ttl_ms: Option<u64>,
    /// TLS certificate chain, PEM: the server's certificate first, then the
    /// intermediates. With --tls-key the port speaks TLS only (HTTPS, WSS,
    /// gRPC over TLS); both files are reloaded on SIGHUP and when they change.
    #[arg(long, env = "MKONDO_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, PEM.
    #[arg(long, env = "MKONDO_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Let webhooks and the before-send hook use `http` and reach loopback and
    /// private addresses (tests, and deployments whose receivers are on a
    /// private network). Off: only `https` to public addresses.
    #[arg(long, env = "MKONDO_OUTBOUND_ALLOW_PRIVATE", num_args = 0..=1, default_missing_value = "true")]
    pub outbound_allow_private: Option<bool>,
    /// Extra CA certificates (PEM) trusted for webhook, hook and push calls
    /// besides the system's: the private CA of receivers on your own network,
    /// or a test's. Read at start.
    #[arg(long, env = "MKONDO_OUTBOUND_CA", value_name = "FILE")]
    pub outbound_ca: Option<PathBuf>,
    /// The key sealing the webhook and hook signing secrets in the database:
    /// base64 of 32 random bytes (`openssl rand -base64 32`), the same on
    /// every node. Without it (nor --secrets-key-file) a SQLite server keeps
    /// its own in `<database>.secrets-key`; a PostgreSQL server refuses to
    /// create webhooks and hooks until one is set.
    #[arg(long, env = "MKONDO_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<Secret>,
    /// A file holding the secrets key (base64 of 32 bytes).
    #[arg(long, env = "MKONDO_SECRETS_KEY_FILE", conflicts_with = "secrets_key")]
    pub secrets_key_file: Option<PathBuf>,
    /// How often the TLS files' modification times are checked (tests shorten it).
    #[arg(long, env = "MKONDO_TLS_RELOAD_INTERVAL_MS", hide = true)]
    pub tls_reload_interval_ms: Option<u64>,
    /// How long the event feed keeps events (`GET /v1/events`), in hours:
    /// default 168 (7 days), at least 1. A webhook endpoint disabled for
    /// longer loses what fell out of it.
    #[arg(long, env = "MKONDO_EVENT_RETENTION_HOURS")]
    pub event_retention_hours: Option<u64>,
    /// A webhook endpoint failing continuously this long is disabled (default 24 h).
    #[arg(long, env = "MKONDO_WEBHOOK_GIVE_UP_SECS")]
    pub webhook_give_up_secs: Option<u64>,
    /// The first retry delay of a failed webhook delivery (default 1 s); later
    /// ones double, jittered, up to --webhook-retry-max-ms.
    #[arg(long, env = "MKONDO_WEBHOOK_RETRY_MIN_MS")]
    pub webhook_retry_min_ms: Option<u64>,
    /// The longest delay between two attempts of a webhook stream (default 1 h).
    #[arg(long, env = "MKONDO_WEBHOOK_RETRY_MAX_MS")]
    pub webhook_retry_max_ms: Option<u64>,
    /// How long a webhook POST may take before it counts as failed (default 10 s).
    #[arg(long, env = "MKONDO_WEBHOOK_TIMEOUT_MS")]
    pub webhook_timeout_ms: Option<u64>,
    /// APNs for production tokens (default Apple's, https://api.push.apple.com).
    #[arg(long, env = "MKONDO_APNS_URL")]
    pub apns_url: Option<String>,
    /// APNs for sandbox (development) tokens (default
    /// https://api.sandbox.push.apple.com).
    #[arg(long, env = "MKONDO_APNS_SANDBOX_URL")]
    pub apns_sandbox_url: Option<String>,
    /// The FCM HTTP v1 API (default https://fcm.googleapis.com). The OAuth2
    /// token endpoint is the service account's `token_uri`.
    #[arg(long, env = "MKONDO_FCM_URL")]
    pub fcm_url: Option<String>,
    /// Pushes of one conversation within this window collapse: the first goes
    /// at once, the later ones are held to the window's end and replace it
    /// as one push (default 3000 ms; 0 pushes every message).
    #[arg(long, env = "MKONDO_PUSH_COLLAPSE_WINDOW_MS")]
    pub push_collapse_window_ms: Option<u64>,
    /// How long one call to a push provider may take (default 10 s); a node
    /// holds a push it is sending three times as long.
    #[arg(long, env = "MKONDO_PUSH_TIMEOUT_MS")]
    pub push_timeout_ms: Option<u64>,
    /// How long a push is worth sending: retries stop and providers drop it
    /// after this (default 24 h).
    #[arg(long, env = "MKONDO_PUSH_TTL_SECS")]
    pub push_ttl_secs: Option<u64>,
    /// The first retry delay of a push the provider could not take (default
    /// 1 s; a `Retry-After` answer sets it); later ones double up to 10 min.
    #[arg(long, env = "MKONDO_PUSH_RETRY_MIN_MS", hide = true)]
    pub push_retry_min_ms: Option<u64>,
    /// Where uploaded files are kept (default: `<database>.files` beside a
    /// SQLite database, `mkondo-files` with PostgreSQL). Uploads are staged
    /// here while they arrive.
    #[arg(long, env = "MKONDO_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    /// Where ready files are kept: `file` (the default: in --files-dir) or an
    /// S3-compatible bucket, `s3://<bucket>[?endpoint=http(s)://host:port]
    /// [&region=…][&allow_http=true]` (plain http only to a loopback host
    /// unless allow_http=true; no credentials in the URL). Credentials come
    /// from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, an
    /// ECS task role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI with
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE), EKS web identity
    /// (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN, AWS_ROLE_SESSION_NAME,
    /// AWS_ENDPOINT_URL_STS), else the instance's role; other AWS_* variables
    /// (AWS_ENDPOINT, AWS_REGION, AWS_ALLOW_HTTP…) are ignored. Uploads are
    /// staged in --files-dir either way.
    #[arg(long, env = "MKONDO_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// The largest upload, in bytes, for apps that set no limit of their own
    /// (default 25 MiB).
    #[arg(long, env = "MKONDO_FILE_MAX_BYTES")]
    pub file_max_bytes: Option<u64>,
    /// What one user may upload in 24 hours, in bytes, in apps that set no
    /// quota of their own (default 1 GiB).
    #[arg(long, env = "MKONDO_FILE_USER_DAILY_BYTES")]
    pub file_user_daily_bytes: Option<u64>,
    /// How long a download link stays valid (default 3600 s).
    #[arg(long, env = "MKONDO_FILE_URL_TTL_SECS")]
    pub file_url_ttl_secs: Option<u64>,
    /// Images decoded at once (thumbnails, blurhash): each may take up to
    /// --image-max-alloc-mib (default 2).
    #[arg(long, env = "MKONDO_IMAGE_DECODES")]
    pub image_decodes: Option<u32>,
    /// The most memory one image's processing may take, in MiB (default 512:
    /// its pixels twice, so about 44 megapixels of RGB): a larger image is
    /// refused from its header, before it is decoded.
    #[arg(long, env = "MKONDO_IMAGE_MAX_ALLOC_MIB")]
    pub image_max_alloc_mib: Option<u64>,
    /// An upload never attached to a message is removed after this long
    /// (default 24 h; tests shorten it).
    #[arg(long, env = "MKONDO_UPLOAD_ORPHAN_SECS", hide = true)]
    pub upload_orphan_secs: Option<u64>,
    /// How often deleted and orphaned files are swept (default 60 s).
    #[arg(long, env = "MKONDO_FILE_SWEEP_INTERVAL_MS", hide = true)]
    pub file_sweep_interval_ms: Option<u64>,
}

/// A secret setting: never printed (`Debug` shows `<redacted>`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// The database setting: a SQLite path or a PostgreSQL URL whose password is
/// never printed (`Debug` and `Display` show `postgres://user:***@host/db`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The setting with its password, to connect with.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The setting with any password replaced by `***`: in the userinfo, and
    /// in a `password` (or `sslpassword`, …) query parameter. It errs towards
    /// hiding: everything between the user name and the last `@` goes, since a
    /// password may hold an unencoded `/`, `?`, `#` or `@`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let mut out = match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
                None if userinfo.contains(['/', '?', '#']) => format!("{scheme}://***@{host}"),
                None => self.0.clone(),
            },
            None => self.0.clone(),
        };
        let mut from = 0;
        while let Some(at) = out[from..]
            .find("password=")
            .map(|i| from + i + "password=".len())
        {
            let end = out[at..].find(['&', '#']).map_or(out.len(), |i| at + i);
            out.replace_range(at..end, "***");
            from = at + 3;
        }
        out
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The libpq environment a PostgreSQL URL falls back on.
#[derive(Debug, Clone, Copy, Default)]
pub struct PgEnv<'a> {
    /// `PGSSLMODE`.
    pub sslmode: Option<&'a str>,
    /// `PGHOST`.
    pub host: Option<&'a str>,
}

/// The warning said at start when the database is a PostgreSQL server reached
/// over the network without a verified TLS connection (`sslmode` other than
/// `verify-full`: its traffic may be read, or the server impersonated). `None`
/// for SQLite, a Unix socket, a loopback host, or `sslmode=verify-full`.
/// `env` holds `PGSSLMODE` and `PGHOST`, which the URL's `sslmode` and host
/// override. The warning names the host and the mode, nothing secret.
pub fn postgres_tls_warning(url: &str, env: PgEnv<'_>) -> Option<String> {
    let env_sslmode = env.sslmode;
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, query.split('#').next().unwrap_or_default()),
        None => (rest, ""),
    };
    // The password may hold `/` or `@`: the host follows the last `@`.
    let authority = before_query
        .rsplit_once('@')
        .map_or(before_query, |(_, host)| host);
    let mut host = authority.split('/').next().unwrap_or_default().to_owned();
    if host.is_empty() || host.starts_with(':') {
        if let Some(env_host) = env.host {
            host = format!("{env_host}{host}");
        }
    }
    let mut sslmode = env_sslmode.map(str::to_owned);
    for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        match key {
            "host" => host = value.to_owned(),
            "sslmode" | "ssl-mode" => sslmode = Some(value.to_owned()),
            _ => {}
        }
    }
    // Without a port: `[::1]:5432` → `[::1]`, `db.example:5432` → `db.example`.
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default().to_owned()
    } else {
        host.split(':').next().unwrap_or_default().to_owned()
    };
    let lower = name.to_ascii_lowercase();
    let local = lower.is_empty()
        || lower.starts_with('/')
        || lower.starts_with("%2f")
        || lower == "localhost"
        || lower.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let mode = sslmode.unwrap_or_else(|| "prefer".to_owned());
    if local || mode.eq_ignore_ascii_case("verify-full") {
        return None;
    }
    Some(format!(
        "the PostgreSQL server {name} is reached with sslmode={mode}: its traffic can be \
         read or the server impersonated on the way; use sslmode=verify-full (and \
         sslrootcert=FILE for a private CA), see docs/deploy.md"
    ))
}

/// An address range of `--trusted-proxies`: an IP, or a CIDR like `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("--trusted-proxies: {s:?} is not an IP address or CIDR");
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net = ip.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { net, prefix })
    }
}

/// The shortest operator secret accepted.
pub const MIN_OPERATOR_SECRET_LEN: usize = 16;
/// `--max-token-lifetime-secs` is clamped to this and `auth::MAX_TOKEN_LIFETIME_SECS` (30 days).
pub const MIN_TOKEN_LIFETIME_SECS: i64 = 60;
/// `--token-grace-ms` is clamped to an hour.
pub const MAX_TOKEN_GRACE_MS: u64 = 3_600_000;
/// `--write-timeout-ms` is clamped to 100 ms – 10 min.
pub const MIN_WRITE_TIMEOUT_MS: u64 = 100;
pub const MAX_WRITE_TIMEOUT_MS: u64 = 600_000;
/// `--request-timeout-ms` is clamped to 100 ms – 10 min.
pub const MIN_REQUEST_TIMEOUT_MS: u64 = 100;
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 600_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: DatabaseUrl,
    /// Pool size on PostgreSQL (see `store::StoreOptions`).
    pub database_max_connections: u32,
    pub sqlite_synchronous: crate::store::Synchronous,
    pub log_json: bool,
    pub limits: Limits,
    /// Guards the operator API; `None` turns it off.
    pub operator_secret: Option<Secret>,
    pub broker: BrokerConfig,
    /// Peers whose `X-Forwarded-For` is believed (see `node::floods`).
    pub trusted_proxies: Vec<IpRange>,
    /// Said once logging is set up (the settings are read before).
    pub warnings: Vec<String>,
    /// `--tls-cert`/`--tls-key`: the port speaks TLS only. `None`: plain HTTP.
    pub tls: Option<crate::tls::TlsConfig>,
    /// How long the event feed keeps events.
    pub event_retention: Duration,
    /// What webhooks and the before-send hook may reach.
    pub outbound: crate::outbound::OutboundPolicy,
    /// Where the key sealing their secrets comes from (`outbound::secrets::load`).
    pub secrets_key: crate::outbound::secrets::KeySource,
    pub webhooks: WebhookConfig,
    pub push: PushConfig,
    pub files: FilesConfig,
}

/// Uploads, downloads and what is derived from files (`node::files`).
#[derive(Debug, Clone)]
pub struct FilesConfig {
    /// Staging, and ready files unless `s3` is set.
    pub dir: PathBuf,
    /// `--blob-store s3://…`: the bucket of ready files.
    pub s3: Option<crate::files::s3::S3Url>,
    /// The largest upload of an app without a limit of its own.
    pub max_bytes: u64,
    /// A user's uploads in 24 hours, in apps without a quota of their own.
    pub user_daily_bytes: u64,
    /// How long a download link (and an upload grant) stays valid.
    pub url_ttl: Duration,
    pub image_decodes: u32,
    pub image_max_alloc: u64,
    pub orphan_after: Duration,
    pub sweep_interval: Duration,
}

impl FilesConfig {
    pub const DEFAULT_MAX_BYTES: u64 = 25 * 1024 * 1024;

    /// The defaults, with files kept in `dir`.
    pub fn in_dir(dir: PathBuf) -> Self {
        Self {
            dir,
            s3: None,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            user_daily_bytes: 1 << 30,
            url_ttl: Duration::from_secs(3600),
            image_decodes: 2,
            image_max_alloc: 512 * 1024 * 1024,
            orphan_after: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// How webhooks are delivered (`node::webhook_worker`).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Failing continuously this long disables an endpoint.
    pub give_up: Duration,
    /// Backoff between attempts of a failing stream: jittered exponential from
    /// `retry_min` to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// One POST's time limit.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            give_up: Duration::from_secs(24 * 3600),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How pushes are delivered (`node::push_worker`).
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub apns_url: url::Url,
    pub apns_sandbox_url: url::Url,
    pub fcm_url: url::Url,
    pub collapse_window: Duration,
    pub timeout: Duration,
    pub ttl: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        let url = |s: &str| url::Url::parse(s).expect("a valid default URL");
        Self {
            apns_url: url(mkondo_push::apns::PRODUCTION_URL),
            apns_sandbox_url: url(mkondo_push::apns::SANDBOX_URL),
            fcm_url: url(mkondo_push::fcm::FCM_URL),
            collapse_window: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            ttl: Duration::from_secs(24 * 3600),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// `<database>.files` beside a SQLite file; `mkondo-files` otherwise.
fn default_files_dir(database: &str) -> PathBuf {
    let sqlite = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .unwrap_or(database)
        .split('?')
        .next()
        .unwrap_or_default();
    if database.starts_with("postgres") || sqlite.is_empty() || sqlite == ":memory:" {
        PathBuf::from("mkondo-files")
    } else {
        PathBuf::from(format!("{sqlite}.files"))
    }
}

/// `--blob-store`: `None` for `file` (or nothing), the bucket of `s3://…`.
fn blob_store(given: Option<String>) -> anyhow::Result<Option<crate::files::s3::S3Url>> {
    match given.as_deref() {
        None | Some("file") => Ok(None),
        Some(url) if url.starts_with("s3:") => crate::files::s3::S3Url::parse(url)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--blob-store: {e}")),
        // Not quoted: a URL given here may hold a secret.
        Some(_) => anyhow::bail!(
            "--blob-store must be `file` or s3://<bucket>?endpoint=<http(s)://host:port>&region=<region>"
        ),
    }
}

/// A push provider's base URL: `http(s)` and absolute, or the default.
fn provider_url(flag: &str, given: Option<String>, default: url::Url) -> anyhow::Result<url::Url> {
    let Some(text) = given else {
        return Ok(default);
    };
    let url = url::Url::parse(&text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        anyhow::bail!("{flag}: an http(s) URL with a host, like {default}");
    }
    Ok(url)
}

/// The event feed's retention by default: 7 days.
pub const DEFAULT_EVENT_RETENTION_HOURS: u64 = 7 * 24;

/// How often the TLS files are checked for changes by default.
pub const DEFAULT_TLS_RELOAD_INTERVAL_MS: u64 = 2_000;

/// Which broker and presence engine a node runs (see `engine::redis_broker`).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `None`: in-memory, one node. `Some(url)`: Redis at this URL
    /// (`redis://`, or `rediss://` for TLS).
    pub redis_url: Option<Secret>,
    /// `--redis-ca`: the roots a `rediss://` Redis's certificate is checked
    /// against instead of the system's.
    pub redis_ca: Option<PathBuf>,
    pub prefix: String,
    pub presence_ttl: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_ca: None,
            prefix: "mkondo".to_owned(),
            presence_ttl: Duration::from_secs(30),
        }
    }
}

impl BrokerConfig {
    fn resolve(
        url: Option<Secret>,
        redis_ca: Option<PathBuf>,
        prefix: Option<String>,
        ttl_ms: Option<u64>,
    ) -> anyhow::Result<Self> {
        let d = Self::default();
        let redis_url = match url {
            None => None,
            Some(url) if url.expose() == "memory" => None,
            Some(url) if url.expose().starts_with("redis://") => Some(url),
            Some(url) if url.expose().starts_with("rediss://") => {
                // redis-rs reads `#insecure` as "skip certificate verification":
                // never offered.
                if url.expose().contains('#') {
                    anyhow::bail!(
                        "--broker: a rediss:// URL takes no #fragment (the certificate is \
                         always verified; use --redis-ca for a private CA)"
                    );
                }
                Some(url)
            }
            Some(_) => anyhow::bail!(
                "--broker must be `memory`, a redis://host:port[/db] or a \
                 rediss://host:port[/db] (TLS) URL"
            ),
        };
        let tls = redis_url
            .as_ref()
            .is_some_and(|u| u.expose().starts_with("rediss://"));
        if redis_ca.is_some() && !tls {
            anyhow::bail!("--redis-ca needs a rediss:// broker URL (Redis over TLS)");
        }
        let prefix = prefix.unwrap_or(d.prefix);
        if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            anyhow::bail!("--redis-prefix must be non-empty, without spaces");
        }
        let ttl = ttl_ms.unwrap_or(d.presence_ttl.as_millis() as u64);
        if ttl < 500 {
            anyhow::bail!("--presence-ttl-ms must be at least 500");
        }
        Ok(Self {
            redis_url,
            redis_ca,
            prefix,
            presence_ttl: Duration::from_millis(ttl),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub replay_limit: u32,
    pub token_grace: Duration,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub max_frame_bytes: usize,
    pub rate_per_second: u32,
    pub rate_burst: u32,
    pub api_key_rate_per_second: u32,
    pub api_key_rate_burst: u32,
    pub max_concurrent_requests: usize,
    /// A REST or Admin gRPC request taking longer (its body read included) is
    /// answered `unavailable` and its slot freed.
    pub request_timeout: Duration,
    pub auth_failures_per_minute: u32,
    pub outbound_queue: usize,
    /// A write to a connection taking longer closes it as a slow consumer.
    pub write_timeout: Duration,
    pub max_connections_per_user: usize,
    pub max_concurrent_connects: usize,
    pub max_token_lifetime_secs: i64,
    pub auto_create_users: bool,
    /// Time a new connection has to send `connect`.
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            replay_limit: 100,
            token_grace: Duration::from_secs(25),
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024,
            rate_per_second: 20,
            rate_burst: 50,
            api_key_rate_per_second: 200,
            api_key_rate_burst: 400,
            max_concurrent_requests: 512,
            request_timeout: Duration::from_secs(30),
            auth_failures_per_minute: 20,
            outbound_queue: 1024,
            write_timeout: Duration::from_secs(10),
            max_connections_per_user: 20,
            max_concurrent_connects: 32,
            max_token_lifetime_secs: 24 * 3600,
            auto_create_users: true,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Frames above this close the connection (3503); between `max_frame_bytes` and
    /// this, the client gets a `too_large` error and the connection lives on.
    pub fn hard_frame_bytes(&self) -> usize {
        (self.max_frame_bytes * 4).max(1024 * 1024)
    }
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                toml::from_str::<ServeArgs>(&text)
                    .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?
            }
            None => ServeArgs::default(),
        };
        let d = Limits::default();
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                self.$field
                    .clone()
                    .or(file.$field.clone())
                    .unwrap_or($default)
            };
        }
        let ms = Duration::from_millis;
        let limits = Limits {
            replay_limit: pick!(replay_limit, d.replay_limit).clamp(1, 10_000),
            token_grace: ms(
                pick!(token_grace_ms, d.token_grace.as_millis() as u64).min(MAX_TOKEN_GRACE_MS)
            ),
            ping_interval: ms(pick!(ping_interval_ms, d.ping_interval.as_millis() as u64).max(50)),
            pong_timeout: ms(pick!(pong_timeout_ms, d.pong_timeout.as_millis() as u64).max(50)),
            max_frame_bytes: pick!(max_frame_bytes, d.max_frame_bytes).max(1024),
            rate_per_second: pick!(rate_per_second, d.rate_per_second).max(1),
            rate_burst: pick!(rate_burst, d.rate_burst).max(1),
            api_key_rate_per_second: pick!(api_key_rate_per_second, d.api_key_rate_per_second)
                .max(1),
            api_key_rate_burst: pick!(api_key_rate_burst, d.api_key_rate_burst).max(1),
            max_concurrent_requests: pick!(max_concurrent_requests, d.max_concurrent_requests)
                .clamp(1, Semaphore::MAX_PERMITS),
            request_timeout: ms(
                pick!(request_timeout_ms, d.request_timeout.as_millis() as u64)
                    .clamp(MIN_REQUEST_TIMEOUT_MS, MAX_REQUEST_TIMEOUT_MS),
            ),
            auth_failures_per_minute: pick!(auth_failures_per_minute, d.auth_failures_per_minute)
                .max(1),
            outbound_queue: pick!(outbound_queue, d.outbound_queue).max(8),
            write_timeout: ms(pick!(write_timeout_ms, d.write_timeout.as_millis() as u64)
                .clamp(MIN_WRITE_TIMEOUT_MS, MAX_WRITE_TIMEOUT_MS)),
            max_connections_per_user: pick!(max_connections_per_user, d.max_connections_per_user)
                .max(1),
            max_concurrent_connects: pick!(max_concurrent_connects, d.max_concurrent_connects)
                .max(1),
            max_token_lifetime_secs: pick!(max_token_lifetime_secs, d.max_token_lifetime_secs)
                .clamp(
                    MIN_TOKEN_LIFETIME_SECS,
                    crate::auth::MAX_TOKEN_LIFETIME_SECS,
                ),
            auto_create_users: pick!(auto_create_users, d.auto_create_users),
            connect_timeout: d.connect_timeout,
        };
        let log_format = pick!(log_format, "text".to_owned());
        if log_format != "text" && log_format != "json" {
            anyhow::bail!("--log-format must be text or json");
        }
        let mut warnings = Vec::new();
        if file.operator_secret.is_some() && file.operator_secret_file.is_some() {
            anyhow::bail!(
                "give the operator secret once in the configuration file: operator_secret_file or operator_secret"
            );
        }
        let secret_file = self
            .operator_secret_file
            .clone()
            .or(file.operator_secret_file.clone());
        let operator_secret = match (&secret_file, &self.operator_secret) {
            (Some(_), Some(_)) => anyhow::bail!(
                "give the operator secret once: --operator-secret-file or --operator-secret"
            ),
            (Some(path), None) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("--operator-secret-file {}: {e}", path.display())
                })?;
                Some(Secret(text.trim_end_matches(['\r', '\n']).to_owned()))
            }
            (None, Some(secret)) => {
                // Given by the environment, clap fills the flag's field too.
                let from_env =
                    std::env::var("MKONDO_OPERATOR_SECRET").is_ok_and(|v| v == secret.expose());
                if !from_env {
                    warnings.push(
                        "the operator secret was given with --operator-secret, visible in the \
                         process list to every user of this machine: prefer \
                         --operator-secret-file or MKONDO_OPERATOR_SECRET"
                            .to_owned(),
                    );
                }
                Some(secret.clone())
            }
            (None, None) => file.operator_secret.clone(),
        };
        if let Some(secret) = &operator_secret {
            if secret.expose().trim().len() < MIN_OPERATOR_SECRET_LEN {
                anyhow::bail!(
                    "the operator secret must be at least {MIN_OPERATOR_SECRET_LEN} characters"
                );
            }
        }
        let broker = BrokerConfig::resolve(
            self.broker.clone().or(file.broker.clone()),
            self.redis_ca.clone().or(file.redis_ca.clone()),
            self.redis_prefix.clone().or(file.redis_prefix.clone()),
            self.presence_ttl_ms.or(file.presence_ttl_ms),
        )?;
        let trusted_proxies = pick!(trusted_proxies, Vec::new())
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<IpRange>().map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tls = match (
            self.tls_cert.clone().or(file.tls_cert.clone()),
            self.tls_key.clone().or(file.tls_key.clone()),
        ) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsConfig {
                cert,
                key,
                reload_interval: ms(
                    pick!(tls_reload_interval_ms, DEFAULT_TLS_RELOAD_INTERVAL_MS).max(10),
                ),
            }),
            (None, None) => None,
            (Some(_), None) => {
                anyhow::bail!("--tls-cert needs --tls-key (the certificate's private key)")
            }
            (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert (the certificate chain)"),
        };
        let database = DatabaseUrl(pick!(database, "mkondo.db".to_owned()));
        let env_sslmode = std::env::var("PGSSLMODE").ok();
        let env_host = std::env::var("PGHOST").ok();
        let env = PgEnv {
            sslmode: env_sslmode.as_deref(),
            host: env_host.as_deref(),
        };
        if let Some(warning) = postgres_tls_warning(database.expose(), env) {
            warnings.push(warning);
        }
        let wd = WebhookConfig::default();
        let retry_min = ms(pick!(webhook_retry_min_ms, wd.retry_min.as_millis() as u64).max(10));
        let webhooks = WebhookConfig {
            give_up: Duration::from_secs(pick!(webhook_give_up_secs, wd.give_up.as_secs()).max(1)),
            retry_min,
            retry_max: ms(pick!(webhook_retry_max_ms, wd.retry_max.as_millis() as u64)
                .min(wd.retry_max.as_millis() as u64))
            .max(retry_min),
            timeout: ms(pick!(webhook_timeout_ms, wd.timeout.as_millis() as u64).clamp(100, 60_000)),
        };
        if self.secrets_key.is_some() && file.secrets_key_file.is_some()
            || self.secrets_key_file.is_some() && file.secrets_key.is_some()
            || file.secrets_key.is_some() && file.secrets_key_file.is_some()
        {
            anyhow::bail!("give the secrets key once: --secrets-key-file or --secrets-key");
        }
        let secrets_key = match (
            self.secrets_key_file
                .clone()
                .or(file.secrets_key_file.clone()),
            self.secrets_key.clone().or(file.secrets_key.clone()),
        ) {
            (Some(path), _) => crate::outbound::secrets::KeySource::File(path),
            (None, Some(key)) => {
                // A bad key stops the start here, not at the first webhook.
                crate::outbound::secrets::parse_key(key.expose())
                    .map_err(|e| anyhow::anyhow!("--secrets-key: {e}"))?;
                crate::outbound::secrets::KeySource::Inline(key)
            }
            (None, None) => crate::outbound::secrets::KeySource::Unset,
        };
        let outbound = crate::outbound::OutboundPolicy {
            allow_private: pick!(outbound_allow_private, false),
            extra_ca: self.outbound_ca.clone().or(file.outbound_ca.clone()),
        };
        let pd = PushConfig::default();
        let push_retry_min = ms(pick!(push_retry_min_ms, pd.retry_min.as_millis() as u64).max(10));
        let push = PushConfig {
            apns_url: provider_url(
                "--apns-url",
                self.apns_url.clone().or(file.apns_url.clone()),
                pd.apns_url,
            )?,
            apns_sandbox_url: provider_url(
                "--apns-sandbox-url",
                self.apns_sandbox_url
                    .clone()
                    .or(file.apns_sandbox_url.clone()),
                pd.apns_sandbox_url,
            )?,
            fcm_url: provider_url(
                "--fcm-url",
                self.fcm_url.clone().or(file.fcm_url.clone()),
                pd.fcm_url,
            )?,
            collapse_window: ms(pick!(
                push_collapse_window_ms,
                pd.collapse_window.as_millis() as u64
            )
            .min(60_000)),
            timeout: ms(pick!(push_timeout_ms, pd.timeout.as_millis() as u64).clamp(100, 60_000)),
            ttl: Duration::from_secs(
                pick!(push_ttl_secs, pd.ttl.as_secs()).clamp(60, 28 * 24 * 3600),
            ),
            retry_min: push_retry_min,
            retry_max: pd.retry_max.max(push_retry_min),
        };
        let files_dir = self
            .files_dir
            .clone()
            .or(file.files_dir.clone())
            .unwrap_or_else(|| default_files_dir(database.expose()));
        let fd = FilesConfig::in_dir(files_dir);
        let files = FilesConfig {
            s3: blob_store(self.blob_store.clone().or(file.blob_store.clone()))?,
            max_bytes: pick!(file_max_bytes, fd.max_bytes).max(1),
            user_daily_bytes: pick!(file_user_daily_bytes, fd.user_daily_bytes),
            url_ttl: Duration::from_secs(
                pick!(file_url_ttl_secs, fd.url_ttl.as_secs()).clamp(1, 7 * 24 * 3600),
            ),
            image_decodes: pick!(image_decodes, fd.image_decodes).clamp(1, 64),
            image_max_alloc: pick!(image_max_alloc_mib, fd.image_max_alloc >> 20).clamp(8, 4096)
                << 20,
            orphan_after: Duration::from_secs(
                pick!(upload_orphan_secs, fd.orphan_after.as_secs()).max(1),
            ),
            sweep_interval: ms(
                pick!(file_sweep_interval_ms, fd.sweep_interval.as_millis() as u64).max(10),
            ),
            ..fd
        };
        Ok(Config {
            files,
            webhooks,
            push,
            event_retention: Duration::from_secs(
                3600 * pick!(event_retention_hours, DEFAULT_EVENT_RETENTION_HOURS)
                    .clamp(1, 24 * 3650),
            ),
            tls,
            outbound,
            secrets_key,
            broker,
            trusted_proxies,
            warnings,
            listen: pick!(listen, SocketAddr::from(([127, 0, 0, 1], 8080))),
            database,
            database_max_connections: pick!(
                database_max_connections,
                crate::store::DEFAULT_MAX_CONNECTIONS
            )
            .max(1),
            sqlite_synchronous: pick!(sqlite_synchronous, "full".to_owned()).parse()?,
            log_json: log_format == "json",
            limits,
            operator_secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database.expose(), "mkondo.db");
        assert_eq!(c.database_max_connections, 16);
        assert_eq!(c.limits.max_frame_bytes, 64 * 1024);
        assert_eq!((c.limits.rate_per_second, c.limits.rate_burst), (20, 50));
        assert_eq!(c.limits.ping_interval, Duration::from_secs(25));
        assert_eq!(c.limits.pong_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.token_grace, Duration::from_secs(25));
        assert_eq!(c.limits.max_connections_per_user, 20);
        assert_eq!(c.limits.replay_limit, 100);
        assert_eq!(c.sqlite_synchronous, crate::store::Synchronous::Full);
    }

    #[test]
    fn outbound_settings_default_to_public_https_and_a_key_of_our_own() {
        use crate::outbound::secrets::KeySource;
        let c = ServeArgs::default().resolve().unwrap();
        assert!(!c.outbound.allow_private);
        assert!(matches!(c.secrets_key, KeySource::Unset));
        let cli = Cli::parse_from(["mkondo", "--outbound-allow-private"]);
        assert!(cli.serve.resolve().unwrap().outbound.allow_private);
        let cli = Cli::parse_from(["mkondo", "--outbound-allow-private", "false"]);
        assert!(!cli.serve.resolve().unwrap().outbound.allow_private);
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let cli = Cli::parse_from(["mkondo", "--secrets-key", key]);
        let c = cli.serve.resolve().unwrap();
        assert!(matches!(c.secrets_key, KeySource::Inline(_)));
        assert!(!format!("{c:?}").contains(key), "the key is never printed");
        let cli = Cli::parse_from(["mkondo", "--secrets-key", "c2hvcnQ="]);
        assert!(cli.serve.resolve().is_err(), "not 32 bytes");
        let cli = Cli::parse_from(["mkondo", "--secrets-key-file", "/etc/mkondo/key"]);
        assert!(matches!(
            cli.serve.resolve().unwrap().secrets_key,
            KeySource::File(_)
        ));
        assert!(
            Cli::try_parse_from(["mkondo", "--secrets-key", key, "--secrets-key-file", "f"])
                .is_err()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mkondo.toml");
        std::fs::write(
            &path,
            "outbound_allow_private = true\nsecrets_key_file = \"k\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["mkondo", "--config", path.to_str().unwrap()]);
        let c = cli.serve.resolve().unwrap();
        assert!(c.outbound.allow_private);
        assert!(matches!(c.secrets_key, KeySource::File(_)));
    }

    #[test]
    fn tls_takes_a_certificate_and_its_key_together() {
        let c = ServeArgs::default().resolve().unwrap();
        assert!(c.tls.is_none(), "plain HTTP by default");
        let cli = Cli::parse_from(["mkondo", "--tls-cert", "c.pem", "--tls-key", "k.pem"]);
        let tls = cli.serve.resolve().unwrap().tls.unwrap();
        assert_eq!(
            (tls.cert.to_str(), tls.key.to_str()),
            (Some("c.pem"), Some("k.pem"))
        );
        assert_eq!(tls.reload_interval, Duration::from_secs(2));
        let cli = Cli::parse_from(["mkondo", "--tls-cert", "c.pem"]);
        let err = cli.serve.resolve().unwrap_err().to_string();
        assert!(err.contains("--tls-key"), "{err}");
        let cli = Cli::parse_from(["mkondo", "--tls-key", "k.pem"]);
        let err = cli.serve.resolve().unwrap_err().to_string();
        assert!(err.contains("--tls-cert"), "{err}");
    }

    #[test]
    fn tls_files_can_come_from_the_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mkondo.toml");
        std::fs::write(&path, "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n").unwrap();
        let cli = Cli::parse_from(["mkondo", "--config", path.to_str().unwrap()]);
        let tls = cli.serve.resolve().unwrap().tls.unwrap();
        assert_eq!(tls.key.to_str(), Some("k.pem"));
    }

    #[test]
    fn sqlite_synchronous_is_full_unless_normal_is_asked_for() {
        let cli = Cli::parse_from(["mkondo", "--sqlite-synchronous", "NORMAL"]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(c.sqlite_synchronous, crate::store::Synchronous::Normal);
        let cli = Cli::parse_from(["mkondo", "--sqlite-synchronous", "off"]);
        let err = cli.serve.resolve().unwrap_err().to_string();
        assert!(err.contains("--sqlite-synchronous"), "{err}");
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mkondo.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nreplay_limit = 7\nrate_burst = 5\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "mkondo",
            "--config",
            file.to_str().unwrap(),
            "--replay-limit",
            "42",
        ]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000", "from the file");
        assert_eq!(c.limits.replay_limit, 42, "the flag wins over the file");
        assert_eq!(c.limits.rate_burst, 5);
        assert_eq!(c.limits.rate_per_second, 20, "default");
    }

    #[test]
    fn the_broker_is_memory_unless_a_redis_url_is_given() {
        let c = ServeArgs::default().resolve().unwrap();
        assert!(c.broker.redis_url.is_none());
        assert_eq!(c.broker.prefix, "mkondo");
        assert_eq!(c.broker.presence_ttl, Duration::from_secs(30));

        let cli = Cli::parse_from([
            "mkondo",
            "--broker",
            "redis://:pw@127.0.0.1:6379/2",
            "--redis-prefix",
            "blue",
            "--presence-ttl-ms",
            "2000",
        ]);
        let c = cli.serve.resolve().unwrap();
        let url = c.broker.redis_url.clone().unwrap();
        assert_eq!(url.expose(), "redis://:pw@127.0.0.1:6379/2");
        assert!(
            !format!("{c:?}").contains("pw@"),
            "the URL may hold a password"
        );
        assert_eq!(c.broker.prefix, "blue");
        assert_eq!(c.broker.presence_ttl, Duration::from_millis(2000));

        let memory = Cli::parse_from(["mkondo", "--broker", "memory"]);
        assert!(memory.serve.resolve().unwrap().broker.redis_url.is_none());
        for bad in [
            ["--broker", "nats://x"],
            ["--redis-prefix", "two words"],
            ["--presence-ttl-ms", "10"],
        ] {
            let cli = Cli::parse_from(["mkondo", bad[0], bad[1]]);
            let err = cli.serve.resolve().unwrap_err().to_string();
            assert!(err.contains(bad[0]), "{bad:?}: {err}");
        }
    }

    #[test]
    fn files_are_local_unless_an_s3_bucket_is_given() {
        let c = ServeArgs::default().resolve().unwrap();
        assert!(c.files.s3.is_none());
        let file = Cli::parse_from(["mkondo", "--blob-store", "file"]);
        assert!(file.serve.resolve().unwrap().files.s3.is_none());
        let cli = Cli::parse_from(["mkondo", "--blob-store", "s3://files?region=eu-west-1"]);
        let s3 = cli.serve.resolve().unwrap().files.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.region.as_str()),
            ("files", "eu-west-1")
        );
        for bad in [
            "disk",
            "s3://files/prefix",
            "s3://files?endpoint=localhost",
            "https://KEY:S3CR3T@files.example",
            "s3://KEY:S3CR3T@files",
        ] {
            let cli = Cli::parse_from(["mkondo", "--blob-store", bad]);
            let err = cli.serve.resolve().unwrap_err().to_string();
            assert!(err.starts_with("--blob-store"), "{bad}: {err}");
            assert!(!err.contains("S3CR3T"), "{bad}: {err}");
        }
    }

    #[test]
    fn redis_over_tls_takes_a_rediss_url_and_an_optional_ca() {
        let cli = Cli::parse_from(["mkondo", "--broker", "rediss://:pw@redis.example:6380/1"]);
        let c = cli.serve.resolve().unwrap();
        let url = c.broker.redis_url.clone().unwrap();
        assert_eq!(url.expose(), "rediss://:pw@redis.example:6380/1");
        assert!(c.broker.redis_ca.is_none(), "the system's roots");

        let cli = Cli::parse_from([
            "mkondo",
            "--broker",
            "rediss://localhost:6380",
            "--redis-ca",
            "ca.pem",
        ]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(c.broker.redis_ca.unwrap().to_str(), Some("ca.pem"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mkondo.toml");
        std::fs::write(
            &file,
            "broker = \"rediss://localhost:6380\"\nredis_ca = \"/etc/mkondo/redis-ca.pem\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["mkondo", "--config", file.to_str().unwrap()]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(
            c.broker.redis_ca.unwrap().to_str(),
            Some("/etc/mkondo/redis-ca.pem")
        );

        for (args, expected) in [
            (
                ["--broker", "redis://localhost:6379", "--redis-ca", "ca.pem"],
                "--redis-ca needs a rediss://",
            ),
            (
                ["--broker", "memory", "--redis-ca", "ca.pem"],
                "--redis-ca needs a rediss://",
            ),
            (
                [
                    "--broker",
                    "rediss://localhost:6380/#insecure",
                    "--redis-prefix",
                    "p",
                ],
                "always verified",
            ),
            (
                ["--broker", "http://localhost:6380", "--redis-prefix", "p"],
                "rediss://host:port",
            ),
        ] {
            let cli = Cli::parse_from(std::iter::once("mkondo").chain(args));
            let err = cli.serve.resolve().unwrap_err().to_string();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn postgres_off_the_machine_without_verify_full_is_warned_about() {
        let warned = |url: &str| super::postgres_tls_warning(url, super::PgEnv::default());
        for quiet in [
            "mkondo.db",
            "sqlite://data/mkondo.db",
            "postgres://u:p@localhost/db",
            "postgres://u:p@127.0.0.1:5432/db",
            "postgres://u:p@127.0.0.2/db?sslmode=disable",
            "postgresql://u@[::1]:5432/db",
            "postgres:///db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
            "postgres://u@/db?host=/var/run/postgresql",
            "postgres://u:p@db.example:5432/db?sslmode=verify-full",
            "postgres://u:p@10.0.0.5/db?sslrootcert=/etc/ca.pem&sslmode=verify-full",
            "postgres://u:p@DB.example/db?ssl-mode=VERIFY-FULL",
        ] {
            assert_eq!(warned(quiet), None, "{quiet}");
        }
        for (loud, mode) in [
            ("postgres://u:p@db.example/db", "prefer"),
            (
                "postgres://u:p@db.example:5432/db?sslmode=require",
                "require",
            ),
            (
                "postgresql://u:p@10.0.0.5/db?sslmode=verify-ca",
                "verify-ca",
            ),
            (
                "postgres://u:p@[2001:db8::1]:5432/db?sslmode=disable",
                "disable",
            ),
            ("postgres://u@localhost/db?host=db.example", "prefer"),
            ("postgres://u:p/w@rd@db.example/db", "prefer"),
        ] {
            let warning = warned(loud).unwrap_or_else(|| panic!("no warning for {loud}"));
            assert!(warning.contains(&format!("sslmode={mode}")), "{warning}");
            assert!(warning.contains("verify-full"), "{warning}");
            assert!(
                !warning.contains("u:p") && !warning.contains("rd@"),
                "{warning}"
            );
        }
        // PGSSLMODE is the default the URL's sslmode overrides.
        let url = "postgres://u:p@db.example/db";
        let full = super::PgEnv {
            sslmode: Some("verify-full"),
            host: None,
        };
        assert_eq!(super::postgres_tls_warning(url, full), None);
        let url = "postgres://u:p@db.example/db?sslmode=require";
        assert!(super::postgres_tls_warning(url, full).is_some());
        // PGHOST is the host of a URL that names none.
        let remote = super::PgEnv {
            sslmode: None,
            host: Some("db.example"),
        };
        let warning = super::postgres_tls_warning("postgres:///db", remote).unwrap();
        assert!(warning.contains("db.example"), "{warning}");
        assert!(super::postgres_tls_warning("postgres://u@localhost/db", remote).is_none());
        let local = super::PgEnv {
            sslmode: None,
            host: Some("/var/run/postgresql"),
        };
        assert!(super::postgres_tls_warning("postgres:///db", local).is_none());
    }

    #[test]
    fn the_write_timeout_is_a_setting_clamped_to_100_ms_to_10_min() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.limits.write_timeout, Duration::from_secs(10));
        for (given, expected) in [
            ("1", Duration::from_millis(100)),
            ("2500", Duration::from_millis(2500)),
            ("99999999999", Duration::from_secs(600)),
        ] {
            let cli = Cli::parse_from(["mkondo", "--write-timeout-ms", given]);
            assert_eq!(cli.serve.resolve().unwrap().limits.write_timeout, expected);
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mkondo.toml");
        std::fs::write(&file, "write_timeout_ms = 2500\n").unwrap();
        let cli = Cli::parse_from(["mkondo", "--config", file.to_str().unwrap()]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(c.limits.write_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn the_request_timeout_is_a_setting_clamped_to_100_ms_to_10_min() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.limits.request_timeout, Duration::from_secs(30));
        for (given, expected) in [
            ("1", Duration::from_millis(100)),
            ("500", Duration::from_millis(500)),
            ("99999999999", Duration::from_secs(600)),
        ] {
            let cli = Cli::parse_from(["mkondo", "--request-timeout-ms", given]);
            let c = cli.serve.resolve().unwrap();
            assert_eq!(c.limits.request_timeout, expected, "{given}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mkondo.toml");
        std::fs::write(&file, "request_timeout_ms = 2500\n").unwrap();
        let cli = Cli::parse_from(["mkondo", "--config", file.to_str().unwrap()]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(c.limits.request_timeout, Duration::from_millis(2500));
        // The flag wins over the file, as for every setting.
        let cli = Cli::parse_from([
            "mkondo",
            "--config",
            file.to_str().unwrap(),
            "--request-timeout-ms",
            "700",
        ]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(c.limits.request_timeout, Duration::from_millis(700));
        // The environment variable names the same setting.
        let command = <Cli as clap::CommandFactory>::command();
        let env = command
            .get_arguments()
            .find(|a| a.get_id() == "request_timeout_ms")
            .and_then(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned());
        assert_eq!(env.as_deref(), Some("MKONDO_REQUEST_TIMEOUT_MS"));
    }

    #[test]
    fn token_lifetimes_are_clamped() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.limits.max_token_lifetime_secs, 24 * 3600);
        let cli = Cli::parse_from([
            "mkondo",
            "--max-token-lifetime-secs",
            "9223372036854775807",
            "--token-grace-ms",
            "18446744073709551615",
        ]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(c.limits.max_token_lifetime_secs, 30 * 86_400);
        assert_eq!(c.limits.token_grace, Duration::from_secs(3600));
        let cli = Cli::parse_from(["mkondo", "--max-token-lifetime-secs=-5"]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(c.limits.max_token_lifetime_secs, 60);
    }

    #[test]
    fn a_bad_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "no_such_setting = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("no_such_setting"), "{err}");
        let args = ServeArgs {
            log_format: Some("xml".into()),
            ..Default::default()
        };
        assert!(args.resolve().is_err());
    }

    #[test]
    fn the_operator_secret_comes_from_a_flag_or_the_file_and_is_never_printed() {
        let c = ServeArgs::default().resolve().unwrap();
        assert!(c.operator_secret.is_none(), "off by default");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mkondo.toml");
        std::fs::write(&file, "operator_secret = \"from-the-file-0123456789\"\n").unwrap();
        let cli = Cli::parse_from(["mkondo", "--config", file.to_str().unwrap()]);
        let c = cli.serve.resolve().unwrap();
        let secret = c.operator_secret.clone().unwrap();
        assert_eq!(secret.expose(), "from-the-file-0123456789");
        assert!(
            !format!("{c:?}").contains("from-the-file"),
            "Debug redacts it"
        );

        let cli = Cli::parse_from([
            "mkondo",
            "--config",
            file.to_str().unwrap(),
            "--operator-secret",
            "from-the-flag-0123456789",
        ]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(
            c.operator_secret.unwrap().expose(),
            "from-the-flag-0123456789"
        );

        let short = ServeArgs {
            operator_secret: Some("short".parse().unwrap()),
            ..Default::default()
        };
        let err = short.resolve().unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
    }

    #[test]
    fn request_limits_have_defaults_flags_and_file_keys_and_are_clamped() {
        let c = ServeArgs::default().resolve().unwrap();
        let l = &c.limits;
        assert_eq!(
            (l.api_key_rate_per_second, l.api_key_rate_burst),
            (200, 400)
        );
        assert_eq!(l.max_concurrent_requests, 512);
        assert_eq!(l.auth_failures_per_minute, 20);
        assert!(c.trusted_proxies.is_empty());

        let cli = Cli::parse_from([
            "mkondo",
            "--api-key-rate-per-second",
            "7",
            "--api-key-rate-burst",
            "9",
            "--max-concurrent-requests",
            "3",
            "--auth-failures-per-minute",
            "5",
        ]);
        let l = cli.serve.resolve().unwrap().limits;
        assert_eq!(
            (
                l.api_key_rate_per_second,
                l.api_key_rate_burst,
                l.max_concurrent_requests,
                l.auth_failures_per_minute
            ),
            (7, 9, 3, 5)
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mkondo.toml");
        std::fs::write(
            &file,
            "api_key_rate_per_second = 0\napi_key_rate_burst = 0\n\
             max_concurrent_requests = 0\nauth_failures_per_minute = 0\n\
             trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["mkondo", "--config", file.to_str().unwrap()]);
        let c = cli.serve.resolve().unwrap();
        let l = &c.limits;
        assert_eq!(
            (
                l.api_key_rate_per_second,
                l.api_key_rate_burst,
                l.max_concurrent_requests,
                l.auth_failures_per_minute
            ),
            (1, 1, 1, 1),
            "zero is clamped to one"
        );
        assert_eq!(c.trusted_proxies.len(), 2);
    }

    #[test]
    fn trusted_proxies_are_ips_or_cidrs() {
        let cli = Cli::parse_from([
            "mkondo",
            "--trusted-proxies",
            "127.0.0.1,10.0.0.0/8,fd00::/8",
        ]);
        let c = cli.serve.resolve().unwrap();
        let has = |ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            c.trusted_proxies.iter().any(|r| r.contains(ip))
        };
        assert!(has("127.0.0.1") && has("10.200.3.4") && has("fd00::2"));
        assert!(
            has("::ffff:10.1.1.1"),
            "an IPv4-mapped address is its IPv4 one"
        );
        assert!(!has("127.0.0.2") && !has("11.0.0.1") && !has("fe80::1"));
        for bad in ["nonsense", "10.0.0.0/33", "1.2.3.4/x"] {
            let cli = Cli::parse_from(["mkondo", "--trusted-proxies", bad]);
            let err = cli.serve.resolve().unwrap_err().to_string();
            assert!(err.contains("--trusted-proxies"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_database_password_is_never_printed() {
        let cli = Cli::parse_from([
            "mkondo",
            "--database",
            "postgres://mkondo:hunter2@db.example:5432/chat?sslmode=require",
        ]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(
            c.database.expose(),
            "postgres://mkondo:hunter2@db.example:5432/chat?sslmode=require"
        );
        assert_eq!(
            c.database.to_string(),
            "postgres://mkondo:***@db.example:5432/chat?sslmode=require"
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("mkondo:***@db.example"), "{debug}");
        for plain in ["mkondo.db", "sqlite://data/x.db", "postgres://u@h/db"] {
            assert_eq!(DatabaseUrl::new(plain).to_string(), plain);
        }
        for (url, shown) in [
            ("postgres://u:p/w?x#y@h/db", "postgres://u:***@h/db"),
            ("postgres://u:a@b@h:5432/db", "postgres://u:***@h:5432/db"),
            (
                "postgres://h/db?user=u&password=s3cret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "postgres://h/db?sslpassword=k3y&password=s3cret",
                "postgres://h/db?sslpassword=***&password=***",
            ),
        ] {
            let got = DatabaseUrl::new(url).to_string();
            assert_eq!(got, shown);
            assert!(!format!("{:?}", DatabaseUrl::new(url)).contains("s3cret"));
        }
    }

    #[test]
    fn the_operator_secret_comes_from_a_file_and_the_command_line_warns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-a-file-0123456789\n").unwrap();
        let cli = Cli::parse_from(["mkondo", "--operator-secret-file", path.to_str().unwrap()]);
        let c = cli.serve.resolve().unwrap();
        assert_eq!(
            c.operator_secret.unwrap().expose(),
            "from-a-file-0123456789"
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        let cli = Cli::parse_from(["mkondo", "--operator-secret", "on-the-command-line-0123"]);
        let c = cli.serve.resolve().unwrap();
        assert!(
            c.warnings.iter().any(|w| w.contains("process list")),
            "{:?}",
            c.warnings
        );
        assert!(!format!("{:?}", c.warnings).contains("on-the-command-line"));

        let missing = ServeArgs {
            operator_secret_file: Some(dir.path().join("nope")),
            ..Default::default()
        };
        let err = missing.resolve().unwrap_err().to_string();
        assert!(err.contains("--operator-secret-file"), "{err}");
    }
}
