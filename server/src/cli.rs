//! The `mkondo` command line: run the server, manage apps and keys, mint tokens.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use mkondo_proto::DisconnectCode;

use crate::auth::{self, KeyAlg};
use crate::config::ServeArgs;
use crate::node::lifecycle::revocation_point;
use crate::node::origins;
use crate::store::{self, Announce, AppSettingsChange, Store};

mod run;
mod webhook;
pub use run::main;
pub use webhook::WebhookCommand;

/// `--database` of the commands that work on the database directly.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArg {
    /// SQLite file path, or postgres://user:pass@host/db.
    #[arg(
        long = "database",
        value_name = "DATABASE",
        env = "MKONDO_DATABASE",
        hide_env_values = true,
        default_value = "mkondo.db"
    )]
    pub url: String,
}

impl std::ops::Deref for DatabaseArg {
    type Target = str;

    fn deref(&self) -> &str {
        &self.url
    }
}

/// The before-send hook settings of `mkondo app update` (docs/hooks.md).
#[derive(Debug, Clone, Args)]
pub struct HookArgs {
    /// Set the app's before-send hook: the URL called with every user message
    /// and edit before it is stored. A new signing secret is printed once.
    #[arg(long, value_name = "URL")]
    pub before_send_hook: Option<String>,
    /// How long the server waits for the hook's answer (10 to 10000 ms, default 1000).
    #[arg(long, value_name = "MS", requires = "before_send_hook")]
    pub hook_timeout_ms: Option<u64>,
    /// With no usable answer in time, store the message anyway (true) or
    /// refuse it (false, the default).
    #[arg(long, value_name = "BOOL", requires = "before_send_hook")]
    pub hook_fail_open: Option<bool>,
    /// Remove the app's before-send hook.
    #[arg(long, conflicts_with = "before_send_hook")]
    pub clear_before_send_hook: bool,
    /// The servers' secrets key (base64 of 32 bytes), which seals the hook's
    /// secret; on SQLite without it, the key file beside the database.
    #[arg(long, env = "MKONDO_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<crate::config::Secret>,
    #[arg(long, env = "MKONDO_SECRETS_KEY_FILE", conflicts_with = "secrets_key")]
    pub secrets_key_file: Option<PathBuf>,
    /// Allow an `http` URL or a private address, as the servers'
    /// --outbound-allow-private does.
    #[arg(long, env = "MKONDO_OUTBOUND_ALLOW_PRIVATE", num_args = 0..=1, default_missing_value = "true")]
    pub outbound_allow_private: Option<bool>,
}

/// The push settings of `mkondo app update` (docs/push.md). Keys are sealed
/// with the secrets key the hook flags name.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// APNs token auth: the `.p8` key file from the Apple developer account
    /// (with --apns-key-id, --apns-team-id and --apns-topic).
    #[arg(long, value_name = "FILE", requires_all = ["apns_key_id", "apns_team_id", "apns_topic"])]
    pub apns_key_file: Option<PathBuf>,
    #[arg(long, value_name = "ID", requires = "apns_key_file")]
    pub apns_key_id: Option<String>,
    #[arg(long, value_name = "ID", requires = "apns_key_file")]
    pub apns_team_id: Option<String>,
    /// The app's bundle id (`apns-topic` when a device names none).
    #[arg(long, value_name = "BUNDLE_ID", requires = "apns_key_file")]
    pub apns_topic: Option<String>,
    /// Remove the app's APNs credentials.
    #[arg(long, conflicts_with = "apns_key_file")]
    pub clear_apns: bool,
    /// FCM HTTP v1: the service account's JSON key file.
    #[arg(long, value_name = "FILE")]
    pub fcm_service_account_file: Option<PathBuf>,
    /// Remove the app's FCM credentials.
    #[arg(long, conflicts_with = "fcm_service_account_file")]
    pub clear_fcm: bool,
    /// Web Push (VAPID): the contact push services may reach (`mailto:…` or
    /// `https://…`). A key pair is made unless --web-push-private-key-file
    /// names one (the 32-byte P-256 scalar, base64url).
    #[arg(long, value_name = "SUBJECT")]
    pub web_push_subject: Option<String>,
    #[arg(long, value_name = "FILE", requires = "web_push_subject")]
    pub web_push_private_key_file: Option<PathBuf>,
    /// Remove the app's Web Push key (browsers' subscriptions stop working).
    #[arg(long, conflicts_with = "web_push_subject")]
    pub clear_web_push: bool,
    /// What a message push shows: full (its text), generic ("New message") or
    /// none (no alert text).
    #[arg(long, value_name = "MODE", value_parser = ["full", "generic", "none"])]
    pub push_preview: Option<String>,
}

impl PushArgs {
    /// The change, as the operator API takes it; `None` when nothing is given.
    fn input(self) -> anyhow::Result<Option<crate::node::push_settings::PushInput>> {
        use crate::node::push_settings::{ApnsInput, FcmInput, PushInput, WebPushInput};
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
        };
        let apns = match (self.clear_apns, &self.apns_key_file) {
            (true, _) => Some(None),
            (false, Some(path)) => Some(Some(ApnsInput {
                key: read(path)?,
                key_id: self.apns_key_id.unwrap_or_default(),
                team_id: self.apns_team_id.unwrap_or_default(),
                topic: self.apns_topic.unwrap_or_default(),
            })),
            (false, None) => None,
        };
        let fcm = match (self.clear_fcm, &self.fcm_service_account_file) {
            (true, _) => Some(None),
            (false, Some(path)) => Some(Some(FcmInput {
                service_account: serde_json::from_str(&read(path)?)
                    .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", path.display()))?,
            })),
            (false, None) => None,
        };
        let web_push = match (self.clear_web_push, self.web_push_subject) {
            (true, _) => Some(None),
            (false, Some(subject)) => Some(Some(WebPushInput {
                subject,
                private_key: match &self.web_push_private_key_file {
                    Some(path) => Some(read(path)?.trim().to_owned()),
                    None => None,
                },
            })),
            (false, None) => None,
        };
        if apns.is_none() && fcm.is_none() && web_push.is_none() && self.push_preview.is_none() {
            return Ok(None);
        }
        Ok(Some(PushInput {
            apns,
            fcm,
            web_push,
            preview: self.push_preview,
        }))
    }
}

impl HookArgs {
    /// The servers' secrets key, as these flags (or, on SQLite, the key file
    /// beside the database) give it.
    fn sealer(&self, database: &str) -> anyhow::Result<crate::outbound::secrets::SecretBox> {
        use crate::outbound::secrets;
        let source = match (&self.secrets_key_file, &self.secrets_key) {
            (Some(path), _) => secrets::KeySource::File(path.clone()),
            (None, Some(key)) => secrets::KeySource::Inline(key.clone()),
            (None, None) => secrets::KeySource::Unset,
        };
        secrets::load(&source, database)?.ok_or_else(|| {
            anyhow::anyhow!(
                "a PostgreSQL database needs the servers' secrets key: give --secrets-key \
                 or --secrets-key-file (MKONDO_SECRETS_KEY)"
            )
        })
    }

    /// The hook to write: `Some(None)` removes it, `Some(Some((row, secret)))`
    /// sets it, checked and sealed as the operator API does.
    async fn resolve(
        self,
        database: &str,
    ) -> anyhow::Result<Option<Option<(store::hooks::HookRow, String)>>> {
        use crate::outbound::{OutboundClient, OutboundPolicy};
        if self.clear_before_send_hook {
            return Ok(Some(None));
        }
        let Some(url) = self.before_send_hook.clone() else {
            return Ok(None);
        };
        let sealer = self.sealer(database)?;
        crate::tls::install_provider();
        let outbound = OutboundClient::new(OutboundPolicy {
            allow_private: self.outbound_allow_private.unwrap_or(false),
            // Checking a URL makes no call: no CA is needed.
            extra_ca: None,
        })?;
        let input = crate::node::hooks::HookInput {
            url,
            timeout_ms: self.hook_timeout_ms,
            fail_open: self.hook_fail_open,
        };
        let now = chrono::Utc::now().timestamp_millis();
        Ok(Some(Some(
            crate::node::hooks::prepare(input, &outbound, &sealer, now).await?,
        )))
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "mkondo",
    version,
    about = "Self-hosted chat: real-time server, REST API and tools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the server for development: a `demo` app is created on first start.
    Dev(ServeArgs),
    /// Manage apps (tenants) and their keys.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Manage an app's webhook endpoints (docs/webhooks.md).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Mint a user token signed with the app's newest HS256 key (development and tests).
    Token {
        #[arg(long)]
        app: String,
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// Conversation ids the user joins on connect.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        database: DatabaseArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an app: prints its id, a signing key and an API key (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// Choose the app id (default: generated).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// List apps.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Change an app's settings; what is not given stays as it is.
    Update {
        #[arg(long)]
        app: String,
        /// Replace the browser origins the app's web frontends may call from
        /// (repeat it: `--allowed-origin https://chat.example --allowed-origin
        /// http://localhost:5173`), or `*` for any (development).
        #[arg(long = "allowed-origin", value_name = "ORIGIN")]
        allowed_origins: Vec<String>,
        /// Empty the allowed origins: only the server's own origin is allowed.
        #[arg(long, conflicts_with = "allowed_origins")]
        clear_allowed_origins: bool,
        /// Whether a valid token for an unknown user creates that user.
        #[arg(long, value_name = "BOOL")]
        auto_create_users: Option<bool>,
        /// Whether the app's users may search its user directory.
        #[arg(long, value_name = "BOOL")]
        user_directory: Option<bool>,
        #[command(flatten)]
        hook: HookArgs,
        #[command(flatten)]
        push: PushArgs,
        #[command(flatten)]
        files: FileArgs,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Add a signing key: a new HS256 secret, or a public key for RS256 / ES256 / EdDSA.
    AddKey {
        #[arg(long)]
        app: String,
        #[arg(long, default_value = "HS256")]
        alg: String,
        /// PEM file with the public key (asymmetric algorithms).
        #[arg(long)]
        public_key: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Rotate: add a new HS256 signing key (its secret printed once). Tokens
    /// signed with the older keys keep working until those are removed.
    RotateKey {
        #[arg(long)]
        app: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Remove a signing key (not the app's last): tokens with its kid are refused.
    RemoveKey {
        #[arg(long)]
        app: String,
        #[arg(long)]
        kid: String,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Create or revoke API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Refuse every token of the app issued up to now (iat in this second or before).
    RevokeTokens {
        #[arg(long)]
        app: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create another API key for an app (shown once).
    Create {
        #[arg(long)]
        app: String,
        /// Print `{"api_key", "prefix"}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Revoke an API key by its prefix (as `app list` shows it).
    Revoke {
        #[arg(long)]
        app: String,
        #[arg(long)]
        prefix: String,
        #[command(flatten)]
        database: DatabaseArg,
    },
}

/// Said after a change that a running server applies to live sessions by
/// polling (node/lifecycle.rs), not at once.
const LIVE_NOTE: &str = "a running server closes the live connections this affects within a second";

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

pub async fn run_app_command(command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::Create {
            name,
            id,
            json,
            database,
        } => {
            let store = Store::open(&database).await?;
            let creds = store.create_app(&name, id.as_deref()).await?;
            if json {
                print_json(&creds)?;
            } else {
                println!("app_id:      {}", creds.app_id);
                println!("signing kid: {}", creds.signing_key.kid);
                println!(
                    "secret:      {}",
                    creds.signing_key.secret.as_deref().unwrap_or("")
                );
                println!("api key:     {}  (shown once; keep it safe)", creds.api_key);
            }
            store.close().await;
        }
        AppCommand::List { json, database } => {
            let store = Store::open(&database).await?;
            let apps = store.app_overviews().await?;
            if json {
                print_json(&apps)?;
            } else {
                for app in apps {
                    let kids: Vec<&str> = app.signing_keys.iter().map(|k| k.kid.as_str()).collect();
                    let api_keys: Vec<&str> = app
                        .api_keys
                        .iter()
                        .filter(|k| k.revoked_at.is_none())
                        .map(|k| k.prefix.as_str())
                        .collect();
                    println!(
                        "{}\t{}\tkeys: {}\tapi keys: {}\torigins: {}",
                        app.app_id,
                        app.name,
                        kids.join(","),
                        api_keys.join(","),
                        app.allowed_origins.join(",")
                    );
                }
            }
            store.close().await;
        }
        AppCommand::Update {
            app,
            allowed_origins,
            clear_allowed_origins,
            auto_create_users,
            user_directory,
            hook,
            push,
            files,
            json,
            database,
        } => {
            let files = files.input();
            let origins = match (clear_allowed_origins, allowed_origins.is_empty()) {
                (true, _) => Some(Vec::new()),
                (false, true) => None,
                // Checked and normalised as the operator API does, before the
                // database is opened.
                (false, false) => Some(origins::allow_list(allowed_origins)?),
            };
            let push = push.input()?;
            // Sealing needs the secrets key only when a credential is set.
            let sets_credentials = push.as_ref().is_some_and(|p| {
                matches!(p.apns, Some(Some(_)))
                    || matches!(p.fcm, Some(Some(_)))
                    || matches!(p.web_push, Some(Some(_)))
            });
            let push_sealer = if sets_credentials {
                Some(hook.sealer(&database)?)
            } else {
                None
            };
            let hook = hook.resolve(&database).await?;
            if origins.is_none()
                && auto_create_users.is_none()
                && user_directory.is_none()
                && hook.is_none()
                && push.is_none()
                && files.is_none()
            {
                anyhow::bail!(
                    "nothing to change: give --allowed-origin, --clear-allowed-origins, \
                     --auto-create-users, --user-directory, --before-send-hook, --clear-before-send-hook or a \
                     push setting (--apns-key-file, --fcm-service-account-file, \
                     --web-push-subject, --push-preview, --clear-…) or a file limit \
                     (--file-max-bytes, --file-types, --file-user-daily-bytes, --file-app-total-bytes)"
                );
            }
            let store = Store::open(&database).await?;
            let push = match push {
                Some(input) => Some(crate::node::push_settings::prepare(
                    store.push_settings(&app).await?,
                    input,
                    push_sealer.as_ref(),
                    chrono::Utc::now().timestamp_millis(),
                )?),
                None => None,
            };
            let files = match files {
                Some(input) => {
                    let current = store
                        .file_limits(&app)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("app {app} not found"))?;
                    Some(crate::node::files::merge_limits(current, input)?)
                }
                None => None,
            };
            let row = hook.as_ref().map(|h| h.as_ref().map(|(row, _)| row));
            let hook_changed = hook.is_some();
            if !store
                .update_app_settings(
                    &app,
                    &AppSettingsChange {
                        auto_create_users,
                        user_directory,
                        allowed_origins: origins.as_deref(),
                        before_send_hook: row,
                        push: push.as_ref(),
                        files: files.as_ref(),
                    },
                )
                .await?
            {
                anyhow::bail!("app {app} not found");
            }
            let mut overview = store
                .app_overview(&app)
                .await?
                .ok_or_else(|| anyhow::anyhow!("app {app} not found"))?;
            // The new hook's signing secret, shown this once.
            if let (Some(Some((_, secret))), Some(shown)) =
                (hook, overview.before_send_hook.as_mut())
            {
                shown.secret = Some(secret);
            }
            if json {
                print_json(&overview)?;
            } else {
                println!(
                    "{app}: allowed origins: {}; auto_create_users: {}; user_directory: {}",
                    if overview.allowed_origins.is_empty() {
                        "none (only the server's own)".to_owned()
                    } else {
                        overview.allowed_origins.join(", ")
                    },
                    overview.auto_create_users,
                    overview.user_directory
                );
                if origins.is_some() {
                    println!("running servers apply it to preflights within {} s, to requests and connects at once", origins::UNION_TTL.as_secs());
                }
                match &overview.before_send_hook {
                    Some(h) => {
                        println!(
                            "before-send hook: {} (timeout {} ms, fail {})",
                            h.url,
                            h.timeout_ms,
                            if h.fail_open { "open" } else { "closed" }
                        );
                        if let Some(secret) = &h.secret {
                            println!("hook signing secret (shown once): {secret}");
                        }
                    }
                    None => println!("before-send hook: none"),
                }
                if let Some(p) = &overview.push {
                    let apns = p.apns.as_ref().map_or("not set".to_owned(), |a| {
                        format!("key {} of team {}, topic {}", a.key_id, a.team_id, a.topic)
                    });
                    let fcm = p.fcm.as_ref().map_or("not set".to_owned(), |f| {
                        format!("project {} ({})", f.project_id, f.client_email)
                    });
                    let web = p.web_push.as_ref().map_or("not set".to_owned(), |w| {
                        format!("public key {} ({})", w.public_key, w.subject)
                    });
                    println!(
                        "push: APNs {apns}; FCM {fcm}; Web Push {web}; preview {}",
                        p.preview
                    );
                }
                if hook_changed {
                    println!(
                        "running servers apply the hook change within {} s",
                        crate::node::hooks::CACHE_TTL.as_secs()
                    );
                }
            }
            store.close().await;
        }
        AppCommand::AddKey {
            app,
            alg,
            public_key,
            json,
            database,
        } => {
            let alg = KeyAlg::parse(&alg)
                .ok_or_else(|| anyhow::anyhow!("--alg must be HS256, RS256, ES256 or EdDSA"))?;
            let material = match public_key {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                ),
                None => None,
            };
            let store = Store::open(&database).await?;
            let key = store.add_signing_key(&app, alg, material).await?;
            if json {
                print_json(&key)?;
            } else {
                println!("kid: {}  alg: {}", key.kid, key.alg);
                if let Some(secret) = &key.secret {
                    println!("secret: {secret}");
                }
            }
            store.close().await;
        }
        AppCommand::RotateKey {
            app,
            json,
            database,
        } => {
            let store = Store::open(&database).await?;
            let key = store.add_signing_key(&app, KeyAlg::Hs256, None).await?;
            if json {
                print_json(&key)?;
            } else {
                println!("kid:    {}", key.kid);
                println!(
                    "secret: {}  (shown once; older keys keep working until removed)",
                    key.secret.as_deref().unwrap_or("")
                );
            }
            store.close().await;
        }
        AppCommand::RemoveKey { app, kid, database } => {
            let store = Store::open(&database).await?;
            require_app(&store, &app).await?;
            let revoked = Announce::WithCode(DisconnectCode::TokensRevoked.code());
            store.remove_signing_key(&app, &kid, revoked).await?;
            println!("removed signing key {kid}; {LIVE_NOTE}");
            store.close().await;
        }
        AppCommand::ApiKey { command } => run_api_key_command(command).await?,
        AppCommand::RevokeTokens {
            app,
            json,
            database,
        } => {
            let store = Store::open(&database).await?;
            let point = revocation_point(store::now_ms());
            let revoked = Announce::WithCode(DisconnectCode::TokensRevoked.code());
            if !store.revoke_app_tokens(&app, point, revoked).await? {
                anyhow::bail!("app {app} not found");
            }
            let at = chrono::DateTime::from_timestamp_millis(point).unwrap_or_default();
            if json {
                print_json(&serde_json::json!({ "tokens_valid_after": at.to_rfc3339() }))?;
            } else {
                println!(
                    "tokens of {app} issued before {} are refused; {LIVE_NOTE}",
                    at.to_rfc3339()
                );
            }
            store.close().await;
        }
    }
    Ok(())
}

async fn run_api_key_command(command: ApiKeyCommand) -> anyhow::Result<()> {
    match command {
        ApiKeyCommand::Create {
            app,
            json,
            database,
        } => {
            let store = Store::open(&database).await?;
            let created = store.create_api_key_named(&app).await?;
            if json {
                print_json(&created)?;
            } else {
                println!("api key: {}  (shown once; keep it safe)", created.api_key);
                println!("prefix:  {}", created.prefix);
            }
            store.close().await;
        }
        ApiKeyCommand::Revoke {
            app,
            prefix,
            database,
        } => {
            let store = Store::open(&database).await?;
            require_app(&store, &app).await?;
            if !store.revoke_api_key(&app, &prefix).await? {
                anyhow::bail!("no active API key of app {app} has the prefix {prefix}");
            }
            println!("revoked API key {prefix}");
            store.close().await;
        }
    }
    Ok(())
}

async fn require_app(store: &Store, app: &str) -> anyhow::Result<()> {
    if store.get_app(app).await?.is_none() {
        anyhow::bail!("app {app} not found");
    }
    Ok(())
}

pub async fn mint_token(
    app: &str,
    user: &str,
    ttl: i64,
    groups: &[String],
    name: Option<&str>,
    database: &str,
) -> anyhow::Result<String> {
    let store = Store::open(database).await?;
    let key = store
        .minting_key(app)
        .await?
        .ok_or_else(|| anyhow::anyhow!("app {app} not found or has no HS256 key"))?;
    store.close().await;
    if !auth::valid_user_id(user) {
        anyhow::bail!("invalid user id {user:?}");
    }
    Ok(auth::mint_hs256(
        &key,
        user,
        ttl,
        groups,
        name,
        chrono::Utc::now().timestamp(),
    )?)
}

/// `mkondo app update`'s file limits (docs/files.md); the operator API's
/// `files` also takes `null` to go back to a default.
#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// The largest file the app takes, in bytes (1 to 5 GiB).
    #[arg(long, value_name = "BYTES")]
    file_max_bytes: Option<i64>,
    /// The types the app takes, separated by commas (`image/*,application/pdf`).
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    file_types: Option<Vec<String>>,
    /// Bytes one user may upload in 24 hours.
    #[arg(long, value_name = "BYTES")]
    file_user_daily_bytes: Option<i64>,
    /// Bytes the app may keep stored in all.
    #[arg(long, value_name = "BYTES")]
    file_app_total_bytes: Option<i64>,
}

impl FileArgs {
    fn input(self) -> Option<crate::node::files::FilesInput> {
        let input = crate::node::files::FilesInput {
            max_bytes: self.file_max_bytes.map(Some),
            types: self.file_types.map(Some),
            user_daily_bytes: self.file_user_daily_bytes.map(Some),
            app_total_bytes: self.file_app_total_bytes.map(Some),
        };
        let any = input.max_bytes.is_some()
            || input.types.is_some()
            || input.user_daily_bytes.is_some()
            || input.app_total_bytes.is_some();
        any.then_some(input)
    }
}
