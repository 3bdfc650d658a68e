//! The `mkondo` command line: run the server, manage apps and keys, mint tokens.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::{self, KeyAlg};
use crate::config::ServeArgs;
use crate::store::Store;

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
        #[arg(long, env = "MKONDO_DATABASE", default_value = "mkondo.db")]
        database: String,
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
        #[arg(long, env = "MKONDO_DATABASE", default_value = "mkondo.db")]
        database: String,
    },
    /// List apps.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long, env = "MKONDO_DATABASE", default_value = "mkondo.db")]
        database: String,
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
        #[arg(long, env = "MKONDO_DATABASE", default_value = "mkondo.db")]
        database: String,
    },
    /// Create another API key for an app (shown once).
    ApiKey {
        #[arg(long)]
        app: String,
        #[arg(long, env = "MKONDO_DATABASE", default_value = "mkondo.db")]
        database: String,
    },
}

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
            let apps = store.list_apps().await?;
            if json {
                print_json(&apps)?;
            } else {
                for app in apps {
                    println!("{}\t{}", app.app_id, app.name);
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
        AppCommand::ApiKey { app, database } => {
            let store = Store::open(&database).await?;
            println!("{}", store.create_api_key(&app).await?);
            store.close().await;
        }
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
