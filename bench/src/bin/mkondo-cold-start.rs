//! Cold start from the offline store: how long a client takes from nothing to
//! its first cached conversation list, with `--conversations` conversations and
//! `--messages` recent messages of each in the SQLite store (1,000 × 50 =
//! 50,000 by default), before any network (the server URL answers nothing).
//!
//! The floor beside it, in the same run and on the same file: reading every
//! row's bytes with rusqlite and nothing else (no decoding, no cache). The
//! difference is the SDK's own work: decoding the protobuf rows, building the
//! cache, and sorting the list.
//!
//!   cargo run --release -p mkondo-bench --bin mkondo-cold-start
//!   … -- --conversations 10 --messages 5 --runs 2     (smoke)

use std::{sync::Arc, time::Instant};

use clap::Parser;
use mkondo_proto::convert::millis_to_timestamp;
use mkondo_proto::v1;
use mkondo_sdk::store::{sqlite::SqliteStore, Change, Store, StoreKey};
use mkondo_sdk::{Client, Config, Event, TransportKind};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    conversations: usize,
    /// Recent messages kept per conversation.
    #[arg(long, default_value_t = 50)]
    messages: usize,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

const URL: &str = "http://127.0.0.1:9";
const USER: &str = "alice";

fn message(conv: &str, seq: u64) -> v1::Message {
    v1::Message {
        id: format!("{conv}-{seq}"),
        conversation_id: conv.to_owned(),
        seq,
        sender_id: if seq.is_multiple_of(2) { "bob" } else { USER }.to_owned(),
        kind: "user".into(),
        text: format!("message {seq} of {conv}: a line of chat of ordinary length"),
        created_at: Some(millis_to_timestamp(1_750_000_000_000 + seq as i64 * 1000)),
        ..Default::default()
    }
}

async fn fill(store: &SqliteStore, conversations: usize, messages: usize) {
    let key = StoreKey {
        url: URL.into(),
        user_id: USER.into(),
    };
    store.load(&key).await.expect("the store loads");
    let mut changes = vec![Change::User(v1::User {
        id: USER.into(),
        name: "Alice".into(),
        ..Default::default()
    })];
    for c in 0..conversations {
        let id = format!("c{c:05}");
        let last = messages as u64;
        for seq in 1..=last {
            changes.push(Change::Message(message(&id, seq)));
        }
        changes.push(Change::Conversation(v1::Conversation {
            id: id.clone(),
            kind: "group".into(),
            name: format!("Group {c}"),
            last_seq: last,
            last_message: Some(message(&id, last)),
            unread_count: 3,
            last_read_seq: last.saturating_sub(3),
            member_count: 12,
            ..Default::default()
        }));
        changes.push(Change::Position {
            conversation_id: id,
            seq: last,
        });
        if changes.len() > 5000 {
            store.apply(std::mem::take(&mut changes)).await.unwrap();
        }
    }
    store.apply(changes).await.unwrap();
}

/// Open → first cached conversation list, through the SDK.
async fn sdk_cold_start(path: &std::path::Path) -> (f64, usize, usize) {
    let started = Instant::now();
    let store = SqliteStore::open(path).expect("the store opens");
    let config = Config::new(URL, TransportKind::WebSocketJson)
        .with_token("unused")
        .with_store(Arc::new(store), USER);
    let client = Client::open(config, Arc::new(|_: Event| {}))
        .await
        .expect("the client opens");
    let list = client.cached_conversations();
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let first = list.first().map(|c| client.cached_messages(&c.id).len());
    client.shutdown();
    (elapsed, list.len(), first.unwrap_or(0))
}

/// Every row's bytes read, nothing decoded.
fn floor(path: &std::path::Path) -> (f64, usize) {
    let started = Instant::now();
    let db = rusqlite::Connection::open(path).unwrap();
    let mut bytes = 0;
    for table in ["conversations", "messages"] {
        let mut stmt = db.prepare(&format!("SELECT body FROM {table}")).unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            bytes += row.get_ref(0).unwrap().as_blob().unwrap().len();
        }
    }
    (started.elapsed().as_secs_f64() * 1000.0, bytes)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let filled = Instant::now();
    let store = SqliteStore::open_keeping(&path, args.messages).unwrap();
    fill(&store, args.conversations, args.messages).await;
    drop(store);
    let size = std::fs::metadata(&path).unwrap().len()
        + std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
    println!(
        "store: {} conversations × {} messages, {:.1} MiB, written in {:.0} ms",
        args.conversations,
        args.messages,
        size as f64 / (1024.0 * 1024.0),
        filled.elapsed().as_secs_f64() * 1000.0
    );
    let (mut sdk, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let (ms, listed, first) = sdk_cold_start(&path).await;
        assert_eq!(listed, args.conversations, "every conversation listed");
        assert_eq!(first, args.messages, "the first conversation's messages");
        sdk.push(ms);
        let (ms, bytes) = floor(&path);
        assert!(bytes > 0);
        raw.push(ms);
    }
    let (s, f) = (median(sdk), median(raw));
    println!("| path | median of {} runs |", args.runs);
    println!("|---|---|");
    println!("| SDK: open the store → first cached conversation list | {s:.1} ms |");
    println!("| floor: read every row's bytes (rusqlite, no decoding) | {f:.1} ms |");
    println!("| SDK ÷ floor | {:.1}× |", s / f);
}
