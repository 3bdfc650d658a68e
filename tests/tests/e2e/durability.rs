//! Crashes and shutdowns: no acknowledged message is ever lost.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::Duration,
};

use futures::{stream, StreamExt};
use mkondo_tests::{
    assert_seqs, poll_until, seq_of, v1, Client, ServerOptions, TestServer, Transport, WAIT,
};

/// Sends as fast as it can (8 commands in flight) until the connection fails,
/// recording every acknowledged message.
async fn flood(client: &Client, user: &str, conv: &str, acked: &Mutex<Vec<v1::Message>>) {
    let failed = AtomicBool::new(false);
    stream::iter(0..2000)
        .take_while(|_| futures::future::ready(!failed.load(Ordering::SeqCst)))
        .map(|i| async move {
            client
                .send_message(conv, &format!("{user} {i}"), &format!("{user}-{i}"))
                .await
        })
        .buffer_unordered(8)
        .for_each(|result| {
            match result {
                Ok(sent) => acked.lock().unwrap().push(sent.message.unwrap()),
                Err(_) => failed.store(true, Ordering::SeqCst),
            }
            futures::future::ready(())
        })
        .await;
}

struct Flood {
    server: TestServer,
    conv: String,
    senders: Vec<(String, Client)>,
    listeners: Vec<Client>,
}

/// Four senders (all transports) in one group, plus a listener per transport.
async fn setup() -> Flood {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    let senders: Vec<String> = (0..4).map(|i| format!("s{i}")).collect();
    let listeners = ["l-json", "l-proto", "l-grpc"];
    let mut members: Vec<&str> = senders.iter().map(String::as_str).collect();
    members.extend(listeners);
    api.create_users(&members).await;
    let conv = api.create_group("durable", &members).await;
    let mut sender_clients = Vec::new();
    for (i, user) in senders.into_iter().enumerate() {
        let (client, _) = server.client(Transport::ALL[i % 3], &user).await;
        sender_clients.push((user, client));
    }
    let mut listener_clients = Vec::new();
    for (user, transport) in listeners.iter().zip(Transport::ALL) {
        listener_clients.push(server.client(transport, user).await.0);
    }
    Flood {
        server,
        conv,
        senders: sender_clients,
        listeners: listener_clients,
    }
}

/// Runs the senders until `stop_after` messages are acknowledged, then `stop`
/// (kill or terminate) runs while they are still sending.
async fn flood_then<F: std::future::Future<Output = ()>>(
    flood_state: &Flood,
    acked: &Mutex<Vec<v1::Message>>,
    stop_after: usize,
    stop: impl FnOnce() -> F,
) {
    let senders = futures::future::join_all(
        flood_state
            .senders
            .iter()
            .map(|(user, client)| flood(client, user, &flood_state.conv, acked)),
    );
    let stopper = async {
        poll_until(WAIT * 3, "enough acknowledged messages", || async {
            (acked.lock().unwrap().len() >= stop_after).then_some(())
        })
        .await;
        stop().await;
    };
    tokio::join!(senders, stopper);
}

/// After a restart: the history is gap-free and holds every acknowledged message
/// unchanged.
async fn assert_all_acked_stored(server: &TestServer, conv: &str, acked: &[v1::Message]) {
    let stored = server.api().history_all(conv).await;
    let seqs: Vec<u64> = stored.iter().map(seq_of).collect();
    let last = seqs.last().copied().unwrap_or(0);
    assert_seqs("stored seqs after the restart", &seqs, 1..=last);
    let by_seq: HashMap<u64, &serde_json::Value> = stored.iter().map(|m| (seq_of(m), m)).collect();
    for m in acked {
        let s = by_seq
            .get(&m.seq)
            .unwrap_or_else(|| panic!("acknowledged message seq {} ({}) lost", m.seq, m.text));
        assert_eq!(s["id"].as_str(), Some(m.id.as_str()), "seq {}", m.seq);
        assert_eq!(s["text"].as_str(), Some(m.text.as_str()), "seq {}", m.seq);
        assert_eq!(s["client_id"].as_str(), Some(m.client_id.as_str()));
    }
    // A real-time client sees the same after the restart.
    let (client, _) = server.client(Transport::WsJson, "s0").await;
    let history = client.history_all(conv).await.unwrap();
    assert_eq!(history.len(), stored.len());
}

/// SIGKILL while four clients send as fast as they can; after a restart on the same
/// database every acknowledged message is there, under the seq it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message() {
    let mut state = setup().await;
    let acked = Mutex::new(Vec::new());
    flood_then(&state, &acked, 200, || state.server.kill()).await;
    assert!(!state.server.is_running());
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() >= 200);
    eprintln!("SIGKILL after {} acknowledged messages", acked.len());

    state.senders.clear();
    state.listeners.clear();
    state.server.restart().await;
    assert_all_acked_stored(&state.server, &state.conv, &acked).await;
}

/// SIGTERM: every connected client (each transport) is told `shutdown` (3000,
/// reconnect), the process exits cleanly, and every acknowledged message is in the
/// database after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_and_keeps_every_acknowledged_message() {
    let mut state = setup().await;
    let acked = Mutex::new(Vec::new());
    let exit = Mutex::new(None);
    flood_then(&state, &acked, 100, || async {
        *exit.lock().unwrap() = Some(state.server.terminate().await);
    })
    .await;
    let exit = exit.into_inner().unwrap().unwrap();
    assert!(
        exit.success(),
        "graceful shutdown exits with success, got {exit}"
    );
    let acked = acked.into_inner().unwrap();
    eprintln!("SIGTERM after {} acknowledged messages", acked.len());

    let everyone = state
        .listeners
        .iter()
        .chain(state.senders.iter().map(|(_, c)| c));
    for client in everyone {
        let closed = client
            .wait_closed(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{:?} client still open after shutdown", client.transport));
        let d = closed.disconnect.clone().unwrap_or_else(|| {
            panic!(
                "{:?} client got no disconnect push before the close: {closed:?}; \
                 the server's last lines:\n{}",
                client.transport,
                state.server.log_tail()
            )
        });
        assert_eq!(d.code, 3000, "shutdown code over {:?}", client.transport);
        assert!(d.reconnect, "shutdown is in the reconnect range");
        if let Some(code) = closed.close_code {
            assert_eq!(code, 3000, "the WebSocket close code matches the push");
        }
    }

    state.senders.clear();
    state.listeners.clear();
    state.server.restart().await;
    assert_all_acked_stored(&state.server, &state.conv, &acked).await;
}
