//! The SDK under faults: 20 clients (all three native transports) send 2,000
//! messages across 5 conversations through a proxy that drops, stalls or
//! half-opens a random connection about every 200 ms, while the server is
//! restarted twice (once gracefully, once with SIGKILL). Every client must end
//! with every message of its conversations exactly once, in seq order, and every
//! message sent must be acknowledged exactly once (and stored once).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use crate::sdk_common::{client, connected, kind, Recorder};
use futures::future::join_all;
use mkondo_sdk::{Client, Config, Event, NewMessage, TokenError};
use mkondo_tests::{
    assert_seqs, json_u64, seq_of, Fault, Proxy, ServerOptions, TestServer, Transport,
};

const CLIENTS: usize = 20;
const CONVERSATIONS: usize = 5;
const PER_CLIENT: usize = 100;

/// A tiny deterministic generator for the faults (SplitMix64).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

fn conversations_of(i: usize) -> [usize; 2] {
    [i % CONVERSATIONS, (i + 2) % CONVERSATIONS]
}

async fn last_seq(server: &TestServer, conv: &str) -> u64 {
    let body = server
        .api()
        .get(&format!("/v1/conversations/{conv}"))
        .await
        .ok();
    json_u64(&body["last_seq"]).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_through_drops_stalls_and_two_restarts() {
    // Short pings: a stalled or half-open connection is noticed in seconds.
    let opts = ServerOptions::new()
        .ping_interval_ms(2000)
        .pong_timeout_ms(2000);
    let mut server = TestServer::start(opts).await;
    let proxy = Proxy::start(server.addr).await;
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("u{i:02}")).collect();
    let api = server.api();
    api.create_users(&users.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let mut convs = Vec::new();
    for c in 0..CONVERSATIONS {
        let members: Vec<&str> = (0..CLIENTS)
            .filter(|i| conversations_of(*i).contains(&c))
            .map(|i| users[i].as_str())
            .collect();
        convs.push(api.create_group(&format!("room {c}"), &members).await);
    }
    let mut baseline = HashMap::new();
    for conv in &convs {
        baseline.insert(conv.clone(), last_seq(&server, conv).await);
    }

    // Clients, round-robin over the transports, tokens from a provider.
    let mut clients: Vec<(Client, Recorder)> = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let app = server.app.clone();
        let user_id = user.clone();
        let config = Config::new(proxy.url(), kind(Transport::ALL[i % 3]))
            .with_reconnect_delays(Duration::from_millis(100), Duration::from_secs(2))
            .with_token_provider(move || {
                let token = app.token(&user_id);
                async move { Ok::<_, TokenError>(token) }
            });
        let (c, r) = client(config);
        connected(&c).await;
        clients.push((c, r));
    }

    // Senders: 100 messages each, one every ~50 ms, over both conversations.
    let clients = Arc::new(clients);
    let mut senders = Vec::new();
    for i in 0..CLIENTS {
        let clients = clients.clone();
        let convs = convs.clone();
        let user = users[i].clone();
        senders.push(tokio::spawn(async move {
            let c = &clients[i].0;
            let mut calls = Vec::new();
            for k in 0..PER_CLIENT {
                let conv = convs[conversations_of(i)[k % 2]].clone();
                let text = format!("{user}-{k}");
                calls.push((
                    conv.clone(),
                    text.clone(),
                    c.send_message(NewMessage::text(conv, text)),
                ));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut acked = Vec::new();
            for (conv, text, call) in calls {
                let result = tokio::time::timeout(Duration::from_secs(120), call)
                    .await
                    .unwrap_or_else(|_| panic!("{text} was never acknowledged"));
                let message = result.unwrap_or_else(|e| panic!("{text} failed: {e}"));
                assert_eq!(
                    (message.conversation_id.as_str(), message.text.as_str()),
                    (conv.as_str(), text.as_str())
                );
                acked.push((conv, text, message.seq, message.client_id));
            }
            acked
        }));
    }

    // Faults until the senders are done.
    let mut dice = Dice(0x5EED);
    let started = tokio::time::Instant::now();
    let (mut graceful_done, mut kill_done) = (false, false);
    let mut faults = HashMap::<&str, usize>::new();
    while senders.iter().any(|s| !s.is_finished()) {
        tokio::time::sleep(Duration::from_millis(150 + dice.below(100))).await;
        let fault = match dice.below(10) {
            0 => Fault::Stall,
            1 => Fault::HalfOpen,
            _ => Fault::Drop,
        };
        if proxy.fault_one(dice.below(1000) as usize, fault) {
            *faults.entry(format!("{fault:?}").leak()).or_default() += 1;
        }
        let elapsed = started.elapsed();
        if !graceful_done && elapsed > Duration::from_secs(2) {
            graceful_done = true;
            assert!(
                server.terminate().await.success(),
                "graceful shutdown failed"
            );
            server.restart().await;
            proxy.set_upstream(server.addr);
        }
        if !kill_done && elapsed > Duration::from_secs(4) {
            kill_done = true;
            server.restart().await; // SIGKILL, then start again
            proxy.set_upstream(server.addr);
        }
    }
    assert!(
        graceful_done && kill_done,
        "the run ended before both restarts"
    );
    let acked: Vec<(String, String, u64, String)> = join_all(senders)
        .await
        .into_iter()
        .flat_map(|r| r.expect("sender task"))
        .collect();
    assert_eq!(acked.len(), CLIENTS * PER_CLIENT);
    proxy.resume();

    // The store holds each message once, with the seq its sender was told.
    let mut last = HashMap::new();
    for conv in &convs {
        let stored = server.api().history_all(conv).await;
        let users_msgs: Vec<_> = stored.iter().filter(|m| m["kind"] == "user").collect();
        let ids: HashSet<&str> = users_msgs
            .iter()
            .filter_map(|m| m["client_id"].as_str())
            .collect();
        assert_eq!(
            ids.len(),
            users_msgs.len(),
            "a client_id stored twice in {conv}"
        );
        assert_eq!(
            users_msgs.len(),
            CLIENTS * PER_CLIENT / CONVERSATIONS,
            "messages stored in {conv}"
        );
        let by_client_id: HashMap<&str, u64> = users_msgs
            .iter()
            .map(|m| (m["client_id"].as_str().unwrap(), seq_of(m)))
            .collect();
        for (c, text, seq, client_id) in acked.iter().filter(|a| a.0 == *conv) {
            assert_eq!(
                by_client_id.get(client_id.as_str()),
                Some(seq),
                "{text} in {c}: ack and store disagree"
            );
        }
        last.insert(conv.clone(), stored.last().map(seq_of).unwrap_or(0));
    }
    let sent_texts: HashMap<&str, HashSet<&str>> = acked.iter().fold(HashMap::new(), |mut m, a| {
        m.entry(a.0.as_str()).or_default().insert(a.1.as_str());
        m
    });

    // Every client saw every message of its conversations once, in order, no gap.
    for (i, (c, recorder)) in clients.iter().enumerate() {
        for conv in conversations_of(i).map(|k| &convs[k]) {
            let want = last[conv];
            mkondo_tests::poll_until(
                Duration::from_secs(60),
                &format!("client {i} to reach seq {want} of {conv}"),
                || {
                    let reached = recorder
                        .snapshot()
                        .iter()
                        .filter_map(|e| match e {
                            Event::Message(m) if m.conversation_id == *conv => Some(m.seq),
                            _ => None,
                        })
                        .max()
                        .unwrap_or(0)
                        >= want;
                    async move { reached.then_some(()) }
                },
            )
            .await;
            let events = recorder.snapshot();
            let gaps: Vec<_> = events
                .iter()
                .filter(|e| matches!(e, Event::Gap { .. }))
                .collect();
            assert!(gaps.is_empty(), "client {i}: {gaps:?}");
            let messages: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Message(m) if m.conversation_id == *conv => Some(m),
                    _ => None,
                })
                .collect();
            let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
            assert_seqs(
                &format!("client {i} in {conv}"),
                &seqs,
                baseline[conv] + 1..=want,
            );
            let texts: HashSet<&str> = messages
                .iter()
                .filter(|m| m.kind == "user")
                .map(|m| m.text.as_str())
                .collect();
            assert_eq!(texts, sent_texts[conv.as_str()], "client {i} in {conv}");
        }
        c.shutdown();
    }
    eprintln!(
        "faults injected: {faults:?}; connection attempts: {}",
        proxy.attempts()
    );
    assert!(
        faults.values().sum::<usize>() >= 20,
        "too few faults: {faults:?}"
    );
}
