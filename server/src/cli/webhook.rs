//! `mkondo webhook …`: an app's webhook endpoints from the command line. The
//! commands take the server's own settings (`--database`, the secrets key, the
//! outbound policy, a configuration file) and run the node's operations on a
//! node of their own with no listener and no background task, so the CLI
//! checks exactly what REST and the Admin API check. A running server picks the
//! changes up at its next tick (it reads endpoints from the database).

use clap::Subcommand;

use super::print_json;
use crate::config::ServeArgs;
use crate::node::requests::PageRequest;
use crate::node::webhooks::{WebhookChanges, WebhookInput, WebhookWithSecret};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Create an endpoint: prints it with its signing secret (shown once).
    Create {
        #[arg(long)]
        app: String,
        #[arg(long)]
        url: String,
        /// An event type to deliver (repeat it); none: every type.
        #[arg(long = "event-type", value_name = "TYPE")]
        event_types: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// List the app's endpoints (never their secrets).
    List {
        #[arg(long)]
        app: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// Change an endpoint; what is not given stays as it is.
    Update {
        #[arg(long)]
        app: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        url: Option<String>,
        /// Replace the event types (repeat it).
        #[arg(long = "event-type", value_name = "TYPE")]
        event_types: Vec<String>,
        /// Deliver every event type.
        #[arg(long, conflicts_with = "event_types")]
        all_event_types: bool,
        #[arg(long)]
        description: Option<String>,
        /// Re-enable a disabled endpoint: delivery resumes where it stopped.
        #[arg(long)]
        enable: bool,
        /// Disable the endpoint: nothing is delivered until it is re-enabled.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// Delete an endpoint, what it still owed and its attempt log.
    Delete {
        #[arg(long)]
        app: String,
        #[arg(long)]
        id: String,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// A new signing secret (shown once); the previous one signs too for 24 hours.
    RotateSecret {
        #[arg(long)]
        app: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// The endpoint's latest delivery attempts, newest first.
    Attempts {
        #[arg(long)]
        app: String,
        #[arg(long)]
        id: String,
        /// 1 to 100.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// Queue one event of the feed for the endpoint again.
    Redeliver {
        #[arg(long)]
        app: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        event_id: String,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// POST a `webhook.test` event to the endpoint now and print what it answered.
    Test {
        #[arg(long)]
        app: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: ServeArgs,
    },
}

fn print_created(created: &WebhookWithSecret, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(created);
    }
    println!("id:     {}", created.webhook.id);
    println!("url:    {}", created.webhook.url);
    println!("secret: {}  (shown once; keep it safe)", created.secret);
    Ok(())
}

pub async fn run(command: WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Create {
            app,
            url,
            event_types,
            description,
            json,
            settings,
        } => {
            let node = crate::server::tool_node(settings.resolve()?).await?;
            let input = WebhookInput {
                url,
                event_types,
                description,
            };
            let created = node.create_webhook(&app, input).await;
            node.finish_shutdown().await;
            print_created(&created?, json)?;
        }
        WebhookCommand::List {
            app,
            json,
            settings,
        } => {
            let node = crate::server::tool_node(settings.resolve()?).await?;
            node.require_app(&app).await?;
            let mut all = Vec::new();
            let mut page = PageRequest::new(None, Some(100));
            loop {
                let found = node.list_webhooks(&app, &page).await?;
                all.extend(found.items);
                match found.next_cursor {
                    Some(next) => page = PageRequest::new(Some(next), Some(100)),
                    None => break,
                }
            }
            node.finish_shutdown().await;
            if json {
                print_json(&all)?;
            } else {
                for w in all {
                    let types = if w.event_types.is_empty() {
                        "all".to_owned()
                    } else {
                        w.event_types.join(",")
                    };
                    let status = serde_json::to_value(w.status)?;
                    println!(
                        "{}\t{}\t{}\ttypes: {types}",
                        w.id,
                        status.as_str().unwrap_or_default(),
                        w.url
                    );
                }
            }
        }
        WebhookCommand::Update {
            app,
            id,
            url,
            event_types,
            all_event_types,
            description,
            enable,
            disable,
            json,
            settings,
        } => {
            let event_types = match (all_event_types, event_types.is_empty()) {
                (true, _) => Some(Vec::new()),
                (false, true) => None,
                (false, false) => Some(event_types),
            };
            let changes = WebhookChanges {
                url,
                event_types,
                description,
                enabled: match (enable, disable) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            let node = crate::server::tool_node(settings.resolve()?).await?;
            let updated = node.update_webhook(&app, &id, changes).await;
            node.finish_shutdown().await;
            let updated = updated?;
            if json {
                print_json(&updated)?;
            } else {
                println!("updated webhook {}", updated.id);
            }
        }
        WebhookCommand::Delete { app, id, settings } => {
            let node = crate::server::tool_node(settings.resolve()?).await?;
            let deleted = node.delete_webhook(&app, &id).await;
            node.finish_shutdown().await;
            deleted?;
            println!("deleted webhook {id}");
        }
        WebhookCommand::RotateSecret {
            app,
            id,
            json,
            settings,
        } => {
            let node = crate::server::tool_node(settings.resolve()?).await?;
            let rotated = node.rotate_webhook_secret(&app, &id).await;
            node.finish_shutdown().await;
            print_created(&rotated?, json)?;
        }
        WebhookCommand::Attempts {
            app,
            id,
            limit,
            json,
            settings,
        } => {
            let node = crate::server::tool_node(settings.resolve()?).await?;
            let found = node
                .webhook_attempts(&app, &id, &PageRequest::new(None, Some(limit)))
                .await;
            node.finish_shutdown().await;
            let found = found?;
            if json {
                print_json(&found.items)?;
            } else {
                for a in found.items {
                    let what = match (a.status_code, &a.error) {
                        (Some(code), _) => code.to_string(),
                        (None, Some(error)) => error.clone(),
                        (None, None) => String::new(),
                    };
                    println!(
                        "{}\t{}\t#{}\t{}\t{} ms\t{what}",
                        serde_json::to_value(a.attempted_at)?
                            .as_str()
                            .unwrap_or_default(),
                        a.event_id,
                        a.attempt,
                        a.event_type,
                        a.duration_ms
                    );
                }
            }
        }
        WebhookCommand::Redeliver {
            app,
            id,
            event_id,
            settings,
        } => {
            let node = crate::server::tool_node(settings.resolve()?).await?;
            let queued = node.redeliver_webhook_event(&app, &id, &event_id).await;
            node.finish_shutdown().await;
            queued?;
            println!("queued {event_id} for {id}; a running server delivers it");
        }
        WebhookCommand::Test {
            app,
            id,
            json,
            settings,
        } => {
            let node = crate::server::tool_node(settings.resolve()?).await?;
            let tested = node.test_webhook(&app, &id).await;
            node.finish_shutdown().await;
            let tested = tested?;
            if json {
                print_json(&tested)?;
            } else if tested.delivered {
                println!(
                    "delivered {} ({} in {} ms)",
                    tested.event_id,
                    tested.status_code.unwrap_or_default(),
                    tested.duration_ms
                );
            } else {
                anyhow::bail!(
                    "not delivered: {}",
                    tested.error.unwrap_or_else(|| "no answer".to_owned())
                );
            }
        }
    }
    Ok(())
}
