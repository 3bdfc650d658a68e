//! A client process with an offline store, for the tests that kill it
//! (`tests/tests/e2e/sdk_offline.rs`). Arguments, in order:
//! `URL TOKEN USER STORE CONVERSATION SEND PREFIX [EDIT_SEQ]`. It opens the
//! store, connects, with `EDIT_SEQ` first edits that message to `"edited
//! offline"`, reacts 👍 to it and marks the conversation read up to the
//! message after it, then writes `SEND` messages `"PREFIX i"` (without
//! waiting for any of them),
//! and prints one line per event the test reads:
//! `restored N` (the outbox it found), `sent CLIENT_ID SEQ` (a message of an
//! earlier run, acknowledged now), `acked SEQ` (one of its own),
//! `drained` once its outbox is empty, then it exits; it never exits while
//! messages wait (the test kills it).

use std::{sync::Arc, time::Duration};

use mkondo_sdk::store::{sqlite::SqliteStore, Store, StoreKey};
use mkondo_sdk::{Client, Config, Event, TransportKind};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, token, user, path, conversation, send, prefix, edit) = match &args[..] {
        [u, t, us, p, c, s, pr] => (u, t, us, p, c, s, pr, None),
        [u, t, us, p, c, s, pr, e] => (u, t, us, p, c, s, pr, Some(e)),
        _ => panic!("usage: URL TOKEN USER STORE CONVERSATION SEND PREFIX [EDIT_SEQ]"),
    };
    let send: usize = send.parse().expect("SEND: a number");
    let store = Arc::new(SqliteStore::open(path).expect("the store opens"));
    let key = StoreKey {
        url: url.clone(),
        user_id: user.clone(),
    };
    let restored = store
        .load(&key)
        .await
        .expect("the store loads")
        .outbox
        .len();
    println!("restored {restored}");
    let config = Config::new(url.clone(), TransportKind::WebSocketJson)
        .with_token(token.clone())
        .with_reconnect_delays(Duration::from_millis(50), Duration::from_millis(300))
        .with_store(store.clone(), user.clone());
    let listener = Arc::new(|event: Event| {
        if let Event::Sent { client_id, result } = event {
            match result {
                Ok(m) => println!("sent {client_id} {}", m.seq),
                Err(e) => println!("failed {client_id} {e}"),
            }
        }
    });
    let client = Client::open(config, listener)
        .await
        .expect("the client opens");
    client.connect();
    let mut pending = Vec::new();
    if let Some(seq) = edit {
        let seq: u64 = seq.parse().expect("EDIT_SEQ: a number");
        pending.push(tokio::spawn(client.edit_message(
            conversation,
            seq,
            "edited offline",
            None,
        )));
        pending.push(tokio::spawn(client.react(conversation, seq, "👍", true)));
        let read = client.mark_read(conversation, seq + 1);
        tokio::spawn(async move { read.await.expect("read acknowledged") });
    }
    for i in 0..send {
        pending.push(tokio::spawn(
            client.send_text(conversation, &format!("{prefix} {i}")),
        ));
    }
    for call in pending {
        let m = call.await.expect("the call's task").expect("acknowledged");
        println!("acked {}", m.seq);
    }
    loop {
        let left = store
            .load(&key)
            .await
            .expect("the store loads")
            .outbox
            .len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("drained");
    client.shutdown();
}
