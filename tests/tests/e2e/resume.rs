//! Resume after a dropped connection: every missed message exactly once, in order,
//! before newer live ones; past the replay limit, "more" and history for the rest.

use std::collections::HashMap;

use mkondo_tests::{
    assert_seqs, per_transport, v1, Client, PushKind, ServerOptions, TestServer, Transport, QUIET,
    WAIT,
};

per_transport!(
    resume_delivers_exactly_the_missed,
    resume_past_the_replay_limit
);

struct Setup {
    server: TestServer,
    alice: Client,
    conv: String,
    quiet_conv: String,
}

/// Alice (WS-JSON) and Bob (on `transport`) share a group; Bob has seen seq 1
/// live, then his connection drops.
async fn setup(transport: Transport, opts: ServerOptions) -> Setup {
    let server = TestServer::start(opts.unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("resume", &["alice", "bob"]).await;
    let quiet_conv = api.create_group("quiet", &["alice", "bob"]).await;
    let (alice, _) = server.client(Transport::WsJson, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    alice
        .send_message(&quiet_conv, "only one", "q-1")
        .await
        .unwrap();
    bob.expect_message(&quiet_conv, WAIT).await;
    alice.send_message(&conv, "m1", "m-1").await.unwrap();
    let m = bob.expect_message(&conv, WAIT).await;
    assert_eq!(m.seq, 1);
    drop(bob);
    Setup {
        server,
        alice,
        conv,
        quiet_conv,
    }
}

async fn send_many(alice: &Client, conv: &str, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        let sent = alice
            .send_message(conv, &format!("m{seq}"), &format!("m-{seq}"))
            .await
            .unwrap();
        assert_eq!(sent.message.unwrap().seq, seq);
    }
}

fn recovery<'a>(reply: &'a v1::ConnectResult, conv: &str) -> Option<&'a v1::Recovery> {
    reply.recovered.iter().find(|r| r.conversation_id == conv)
}

/// 50 messages are sent while Bob is away; he reconnects with his resume positions
/// while Alice sends a new one. He gets exactly the 50, in order, then the new one,
/// and nothing twice.
async fn resume_delivers_exactly_the_missed(transport: Transport) {
    let Setup {
        server,
        alice,
        conv,
        quiet_conv,
    } = setup(transport, ServerOptions::new()).await;
    send_many(&alice, &conv, 2..=51).await;

    let bob = server.open(transport).await;
    let resume = HashMap::from([(conv.clone(), 1), (quiet_conv.clone(), 1)]);
    let token = server.app.token("bob");
    // The live message races the resume: the server must order it after the replay.
    let (reply, live) = tokio::join!(bob.connect(&token, resume), async {
        alice.send_message(&conv, "m52", "m-52").await
    });
    let reply = reply.unwrap();
    assert_eq!(live.unwrap().message.unwrap().seq, 52);

    let rec = recovery(&reply, &conv).expect("a recovery for the resumed conversation");
    assert!(!rec.more, "50 missed is within the replay limit");
    let mut delivered: Vec<v1::Message> = rec.messages.clone();

    // Then live pushes, never before the connect reply, until seq 52.
    let connect_index = bob.connect_reply_index();
    while !delivered.iter().any(|m| m.seq == 52) {
        let (index, push) = bob
            .next_push_indexed(WAIT)
            .await
            .unwrap_or_else(|| panic!("seq 52 never arrived; delivered {:?}", seqs(&delivered)));
        if let PushKind::Message(m) = push {
            if m.conversation_id == conv {
                assert!(
                    index > connect_index,
                    "message seq {} was pushed before the connect reply",
                    m.seq
                );
                delivered.push(m);
            }
        }
    }
    assert_seqs("replay then live", &seqs(&delivered), 2..=52);
    for m in &delivered {
        assert_eq!(m.text, format!("m{}", m.seq));
    }
    bob.expect_no_push(
        "a message delivered twice",
        QUIET,
        |p| matches!(p, PushKind::Message(m) if m.conversation_id == conv),
    )
    .await;

    // A conversation the client was up to date with replays nothing.
    if let Some(quiet) = recovery(&reply, &quiet_conv) {
        assert!(
            quiet.messages.is_empty(),
            "nothing was missed in {quiet_conv}"
        );
        assert!(!quiet.more);
    }

    // And live delivery goes on.
    alice.send_message(&conv, "m53", "m-53").await.unwrap();
    assert_eq!(bob.expect_message(&conv, WAIT).await.seq, 53);
}

/// 150 messages are missed with a replay limit of 100: the replay holds the first
/// 100 and says there is more; history after the replay supplies the other 50,
/// with no gap and no duplicate.
async fn resume_past_the_replay_limit(transport: Transport) {
    let Setup {
        server,
        alice,
        conv,
        quiet_conv: _,
    } = setup(transport, ServerOptions::new().replay_limit(100)).await;
    send_many(&alice, &conv, 2..=151).await;

    let bob = server.open(transport).await;
    let reply = bob
        .connect(&server.app.token("bob"), HashMap::from([(conv.clone(), 1)]))
        .await
        .unwrap();
    let rec = recovery(&reply, &conv).expect("a recovery for the resumed conversation");
    assert!(
        rec.more,
        "151 - 1 missed is over the limit of 100: more must be set"
    );
    assert_eq!(rec.last_seq, 151);
    let mut all = rec.messages.clone();
    assert_seqs("the replay", &seqs(&all), 2..=101);

    let mut after = all.last().unwrap().seq;
    loop {
        let page = bob.history(&conv, 0, after, 100).await.unwrap();
        assert!(page.messages.len() <= 100);
        all.extend(page.messages.iter().cloned());
        match page.messages.last() {
            Some(last) if page.more => after = last.seq,
            _ => break,
        }
    }
    assert_seqs("replay + history", &seqs(&all), 2..=151);

    alice.send_message(&conv, "m152", "m-152").await.unwrap();
    assert_eq!(bob.expect_message(&conv, WAIT).await.seq, 152);
}

fn seqs(messages: &[v1::Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}
