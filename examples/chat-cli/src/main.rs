//! A terminal chat client on the Mkondo SDK: what an application built on
//! `mkondo-sdk` looks like, in one file. It connects with a token, lists
//! conversations, opens one, sends, and shows messages, typing, presence and the
//! connection's state (reconnects included) as they happen.
//!
//! ```sh
//! TOKEN=$(mkondo token --app APP_ID --user alice)
//! cargo run -p mkondo-chat-cli -- --token "$TOKEN"
//! ```

use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use mkondo_sdk::{
    v1, Client, Config, ConnectionState, Event, HistoryQuery, NewGroup, TransportKind,
};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Wire {
    Json,
    Proto,
    Grpc,
}

/// A terminal chat client on the Mkondo SDK.
#[derive(Debug, Parser)]
struct Args {
    /// The server.
    #[arg(long, env = "MKONDO_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A user token (`mkondo token --app APP --user NAME`).
    #[arg(long, env = "MKONDO_TOKEN")]
    token: String,
    /// WebSocket with JSON or protobuf, or gRPC.
    #[arg(long, value_enum, default_value = "json")]
    transport: Wire,
}

const HELP: &str = "\
commands:
  /list                      your conversations (unread counts, last message)
  /open ID                   open a conversation: recent history, typing, presence
  /dm USER                   start (or reopen) a direct conversation
  /group NAME USER...        create a group
  /who                       presence of the people you know
  /read                      mark the open conversation read
  /quit
anything else is sent to the open conversation";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let transport = match args.transport {
        Wire::Json => TransportKind::WebSocketJson,
        Wire::Proto => TransportKind::WebSocketProtobuf,
        Wire::Grpc => TransportKind::Grpc,
    };
    let config = Config::new(&args.url, transport).with_token(args.token);
    let (client, mut events) = Client::with_channel(config)?;
    client.connect();

    // Events print as they come, in order.
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Some(line) = describe(&event) {
                println!("{line}");
            }
        }
    });

    println!("{HELP}");
    let mut open: Option<String> = None;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Err(err) = command(&client, &mut open, line).await {
            println!("! {err:#}");
        }
        if line == "/quit" {
            break;
        }
    }
    client.shutdown();
    Ok(())
}

async fn command(client: &Client, open: &mut Option<String>, line: &str) -> anyhow::Result<()> {
    let mut words = line.split_whitespace();
    match words.next().unwrap_or_default() {
        "/quit" => {}
        "/help" => println!("{HELP}"),
        "/list" => {
            let page = client.conversations(None, Some(20)).await?;
            for c in page.conversations {
                let last = c
                    .last_message
                    .map(|m| format!("{}: {}", m.sender_id, m.text))
                    .unwrap_or_default();
                println!(
                    "  {:<28} {:<20} unread {:>3}  {last}",
                    c.id,
                    title(&c.name, &c.kind),
                    c.unread_count
                );
            }
        }
        "/open" => {
            let id = words.next().context("/open ID")?;
            open_conversation(client, open, id).await?;
        }
        "/dm" => {
            let user = words.next().context("/dm USER")?;
            let c = client.start_direct(user).await?;
            open_conversation(client, open, &c.id).await?;
        }
        "/group" => {
            let name = words.next().context("/group NAME USER...")?;
            let c = client
                .create_group(NewGroup {
                    name: name.into(),
                    members: words.map(str::to_owned).collect(),
                    ..NewGroup::default()
                })
                .await?;
            open_conversation(client, open, &c.id).await?;
        }
        "/who" => {
            let known: Vec<String> = client.with_cache(|cache| {
                cache
                    .conversations()
                    .into_iter()
                    .filter_map(|c| c.peer.map(|p| p.id))
                    .collect()
            });
            let ids: Vec<&str> = known.iter().map(String::as_str).collect();
            for p in client.presence(&ids).await? {
                println!("  {:<20} {}", p.user_id, p.status);
            }
        }
        "/read" => {
            let id = open.as_deref().context("open a conversation first")?;
            let last = client
                .with_cache(|c| c.conversation(id).map(|c| c.last_seq))
                .unwrap_or(0);
            client.mark_read(id, last).await?;
        }
        word if word.starts_with('/') => bail!("unknown command {word}; /help lists them"),
        _ => {
            let id = open
                .as_deref()
                .context("open a conversation first (/list, /open ID)")?;
            if client.state() != ConnectionState::Connected {
                println!("  (offline: queued, it is sent when the connection is back)");
            }
            client.send_text(id, line).await?;
        }
    }
    Ok(())
}

async fn open_conversation(
    client: &Client,
    open: &mut Option<String>,
    id: &str,
) -> anyhow::Result<()> {
    if let Some(previous) = open.take() {
        let _ = client.unsubscribe(&previous).await;
    }
    let sub = tokio::time::timeout(Duration::from_secs(10), client.subscribe(id))
        .await
        .context("not connected")??;
    let history = client
        .history(
            id,
            HistoryQuery {
                limit: Some(20),
                ..Default::default()
            },
        )
        .await?;
    for m in history.messages {
        println!("  #{:<4} {}: {}", m.seq, m.sender_id, m.text);
    }
    for p in sub.presence {
        println!("  {} is {}", p.user_id, p.status);
    }
    *open = Some(id.to_owned());
    println!("-- in {id} (type to send)");
    Ok(())
}

fn title(name: &str, kind: &str) -> String {
    if name.is_empty() {
        kind.to_owned()
    } else {
        name.to_owned()
    }
}

/// How an event reads on the terminal.
fn describe(event: &Event) -> Option<String> {
    Some(match event {
        Event::StateChanged {
            new, code, reason, ..
        } => format!("[{new}] ({code} {reason})"),
        Event::Message(m) => format!(
            "[{}] #{} {}: {}",
            m.conversation_id, m.seq, m.sender_id, m.text
        ),
        Event::MessageUpdated { message, change } => {
            format!(
                "[{}] #{} {change}: {}",
                message.conversation_id, message.seq, message.text
            )
        }
        Event::Typing {
            conversation_id,
            user_id,
            typing: true,
        } => {
            format!("[{conversation_id}] {user_id} is typing…")
        }
        Event::Presence(v1::Presence {
            user_id, status, ..
        }) => format!("{user_id} is {status}"),
        Event::MemberJoined(j) => format!(
            "[{}] {} joined",
            j.conversation_id,
            j.member.as_ref()?.user_id
        ),
        Event::MemberLeft(l) => format!("[{}] {} left", l.conversation_id, l.user_id),
        Event::Notification(n) => format!("notification {}", n.id),
        Event::Gap {
            conversation_id,
            from_seq,
            to_seq,
        } => {
            format!("[{conversation_id}] messages {from_seq}..{to_seq} could not be recovered")
        }
        Event::Error(e) => format!("! {e}"),
        _ => return None,
    })
}
