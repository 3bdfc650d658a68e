//! The body of the `mkondo` binary, in the library so that the end-to-end tests'
//! own thin binary (`mkondo-e2e-server` in `tests/`) runs exactly the same
//! program, and Cargo hands those tests its path (`CARGO_BIN_EXE_…`).

use clap::Parser;

use crate::cli::{self, Cli, Command};
use crate::config::ServeArgs;
use crate::server;

/// Parses the command line and runs it; exits with status 1 on an error.
#[tokio::main]
pub async fn main() {
    // ring is the one rustls provider of the workspace (ARCHITECTURE.md).
    crate::tls::install_provider();
    let cli = Cli::parse();
    if let Err(err) = run(cli).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args, false).await,
        Command::Dev(args) => serve(args, true).await,
        Command::App { command } => cli::run_app_command(command).await,
        Command::Webhook { command } => cli::webhook::run(command).await,
        Command::Token {
            app,
            user,
            ttl,
            groups,
            name,
            database,
        } => {
            println!(
                "{}",
                cli::mint_token(&app, &user, ttl, &groups, name.as_deref(), &database).await?
            );
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs, dev: bool) -> anyhow::Result<()> {
    let config = args.resolve()?;
    init_tracing(config.log_json);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let listen = config.listen;
    // A bad certificate or key stops the start here, before anything listens.
    let tls = config.tls.clone().map(crate::tls::Tls::load).transpose()?;
    let node = server::build_node(config).await?;
    if dev {
        server::dev_setup(&node).await?;
    }
    // Revocations made with the CLI (which writes the database directly) close
    // live sessions too.
    tokio::spawn(node.clone().watch_revocations());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to learn the port.
    println!("mkondo listening on {addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    tracing::info!(%addr, tls = tls.is_some(), "listening");
    // The web demo and its token endpoint exist only under `mkondo dev`.
    let extra = dev.then(|| crate::dev::router(node.clone()));
    if dev {
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("web demo: {scheme}://{addr}/ and {scheme}://{addr}/index2.html");
    }
    server::serve(node, listener, extra, tls).await
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MKONDO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
