//! Limits and bad input: frame size, command rate, malformed frames, slow consumers.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::{future::join_all, stream, StreamExt};
use mkondo_tests::{
    per_transport, proc_status_kib, v1, Body, PushKind, RawEvent, RawMessage, RawWs, ServerOptions,
    TestServer, Transport, WAIT,
};

per_transport!(
    oversized_frame_gets_too_large,
    command_flood_gets_rate_limited,
    frame_without_command_is_an_error,
);

/// A frame over `--max-frame-bytes` (but with a text within the 16 KiB text limit)
/// gets `too_large` on its own id; the connection lives on and nothing was stored.
async fn oversized_frame_gets_too_large(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().max_frame_bytes(4096)).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("big", &["alice", "bob"]).await;
    let (alice, reply) = server.client(transport, "alice").await;
    assert_eq!(reply.limits.unwrap().max_frame_bytes, 4096);

    let err = alice
        .send_message(&conv, &"x".repeat(8000), "big-1")
        .await
        .unwrap_err();
    assert_eq!(err.code, "too_large", "{err:?}");

    alice.ping().await.unwrap();
    let sent = alice.send_message(&conv, "small", "s-1").await.unwrap();
    assert_eq!(
        sent.message.unwrap().seq,
        1,
        "the oversized message was not stored"
    );
}

/// 200 commands at once against a limit of 20/s with a burst of 50: the burst
/// passes, the rest get `rate_limited` with a retry-after, and the connection
/// survives and works again after waiting.
async fn command_flood_gets_rate_limited(transport: Transport) {
    let server = TestServer::start_default().await;
    let (alice, _) = server.client(transport, "alice").await;
    let started = Instant::now();
    let results = join_all((0..200).map(|_| alice.ping())).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let errors: Vec<&v1::Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(!errors.is_empty(), "200 commands at once were all served");
    for e in &errors {
        assert_eq!(e.code, "rate_limited", "{e:?}");
        assert!(
            e.retry_after_ms > 0,
            "rate_limited without retry_after_ms: {e:?}"
        );
        assert!(e.temporary, "rate_limited is temporary: {e:?}");
    }
    let allowed = 50.0 + 20.0 * elapsed + 5.0;
    assert!(
        ok >= 40 && (ok as f64) <= allowed,
        "{ok} of 200 served in {elapsed:.2} s with a burst of 50 at 20/s"
    );

    let wait = errors.iter().map(|e| e.retry_after_ms).max().unwrap();
    assert!(wait <= 60_000, "retry_after_ms {wait} is absurd");
    tokio::time::sleep(Duration::from_millis(u64::from(wait) + 100)).await;
    assert!(!alice.is_closed());
    alice.ping().await.unwrap();
}

/// A frame with an id but no command gets `invalid_argument` on that id.
async fn frame_without_command_is_an_error(transport: Transport) {
    let server = TestServer::start_default().await;
    let (alice, _) = server.client(transport, "alice").await;
    let id = alice.next_id();
    let err = alice
        .send_frame_expect(v1::ClientFrame { id, command: None })
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");
    alice.ping().await.unwrap();
}

/// Malformed frames of every kind, before and after `connect`, on both WebSocket
/// encodings: each gets an error frame or a disconnect — never silence, never a
/// crash — and the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_an_error_never_a_crash() {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let ping = v1::ClientFrame {
        id: 5,
        command: Some(mkondo_tests::Command::Ping(v1::PingRequest {})),
    };
    let ping_proto = mkondo_proto::codec::encode(mkondo_proto::Encoding::Protobuf, &ping)
        .unwrap()
        .to_vec();
    let mut truncated = mkondo_proto::codec::encode(
        mkondo_proto::Encoding::Protobuf,
        &v1::ClientFrame {
            id: 6,
            command: Some(mkondo_tests::Command::Send(v1::SendRequest {
                conversation_id: "c".into(),
                text: "y".repeat(200),
                ..Default::default()
            })),
        },
    )
    .unwrap()
    .to_vec();
    truncated.truncate(40);
    use RawMessage::{Binary, Text};
    let text = |s: &str| Text(s.to_owned());
    let cases: Vec<(&str, Transport, bool, RawMessage)> = vec![
        ("garbage text", Transport::WsJson, true, text("hello there")),
        (
            "invalid JSON",
            Transport::WsJson,
            true,
            text(r#"{"id":3,"send":"#),
        ),
        (
            "wrong JSON types",
            Transport::WsJson,
            true,
            text(r#"{"id":"x","send":5}"#),
        ),
        (
            "unknown command",
            Transport::WsJson,
            true,
            text(r#"{"id":4,"frobnicate":{}}"#),
        ),
        ("JSON array", Transport::WsJson, true, text("[1,2,3]")),
        (
            "id out of range",
            Transport::WsJson,
            true,
            text(r#"{"id":99999999999,"ping":{}}"#),
        ),
        ("empty text", Transport::WsJson, true, text("")),
        (
            "binary garbage on JSON",
            Transport::WsJson,
            true,
            Binary(vec![0xff, 0x00, 0x13, 0x37]),
        ),
        (
            "one bad line in a batch",
            Transport::WsJson,
            true,
            text("{\"id\":7,\"ping\":{}}\n{oops"),
        ),
        (
            "binary garbage",
            Transport::WsProto,
            true,
            Binary(vec![0xff; 32]),
        ),
        (
            "truncated protobuf",
            Transport::WsProto,
            true,
            Binary(truncated),
        ),
        (
            "command before connect (JSON)",
            Transport::WsJson,
            false,
            text(r#"{"id":5,"ping":{}}"#),
        ),
        (
            "command before connect (protobuf)",
            Transport::WsProto,
            false,
            Binary(ping_proto),
        ),
        (
            "garbage before connect",
            Transport::WsJson,
            false,
            text("GET / HTTP/1.1"),
        ),
    ];

    for (name, transport, connect_first, msg) in cases {
        let client = server.open(transport).await;
        if connect_first {
            client
                .connect(&server.app.token("alice"), Default::default())
                .await
                .unwrap();
        }
        client.send_raw(msg);
        let answered = tokio::select! {
            frame = client.next_unrouted(WAIT) => frame.map(Ok),
            closed = client.wait_closed(WAIT) => closed.map(Err),
        };
        match answered {
            Some(Ok(frame)) => match frame.body {
                Some(Body::Error(e)) => {
                    assert!(!e.code.is_empty(), "{name}: an error without a code");
                    // The connection survives an error reply, unless the server
                    // chose to close it right after.
                    if !connect_first {
                        continue;
                    }
                    match client.ping().await {
                        Ok(()) => {}
                        Err(e) if e.code == mkondo_tests::CONNECTION_CLOSED => {}
                        Err(e) => panic!("{name}: ping after the error failed: {e:?}"),
                    }
                }
                other => panic!("{name}: answered with a non-error {other:?}"),
            },
            Some(Err(closed)) => {
                if let Some(code) = closed.code() {
                    assert!(
                        (3000..5000).contains(&code)
                            || code == 1002
                            || code == 1003
                            || code == 1007
                            || code == 1008,
                        "{name}: closed with an odd code {closed:?}"
                    );
                }
            }
            None => panic!("{name}: no error and no disconnect within {WAIT:?}"),
        }
        server.assert_running();
    }

    // A raw TCP peer that is not a WebSocket at all.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let _ = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await;
    }

    server.assert_running();
    let (client, _) = server.client(Transport::WsJson, "survivor").await;
    client.ping().await.unwrap();
}

/// A client that sends `connect` and never reads again, while the backend floods a
/// conversation it is in with large messages (far more than the server could hold
/// for it): the server closes it as a slow consumer and its memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected_and_memory_stays_bounded() {
    const DESTINED: u64 = 320 * 1024 * 1024;
    const GROWTH_LIMIT_KIB: u64 = 150 * 1024;
    let server = TestServer::start(
        ServerOptions::new()
            .outbound_queue(64)
            .unlimited_rate()
            // Only the slow-consumer rule may close it, not a missed pong.
            .ping_interval_ms(600_000),
    )
    .await;
    let api = server.api();
    api.create_users(&["slow", "flooder"]).await;
    let conv = api.create_group("flood", &["slow", "flooder"]).await;
    let path = format!("/v1/conversations/{conv}/messages");

    let mut slow = RawWs::open_with_buffer(server.addr, Some("mkondo.v1.json"), Some(8192)).await;
    let reply = slow.connect(&server.app.token("slow")).await;
    assert!(
        matches!(reply.body, Some(Body::Reply(_))),
        "slow client's connect: {reply:?}"
    );
    // From here on, `slow` is not read until the flood is over.

    // As much per message as the server accepts: a full text plus padding in `data`.
    let text = "t".repeat(16 * 1024);
    let body = |client_id: &str, pad: usize| -> Vec<u8> {
        let data = if pad > 0 {
            format!(r#","data":{{"pad":"{}"}}"#, "p".repeat(pad))
        } else {
            String::new()
        };
        format!(r#"{{"sender_id":"flooder","text":"{text}","client_id":"{client_id}"{data}}}"#)
            .into_bytes()
    };
    let mut pad = 30 * 1024;
    let size = loop {
        match api
            .post_bytes_status(&path, body(&format!("probe-{pad}"), pad))
            .await
        {
            201 => break text.len() + pad,
            413 | 422 if pad > 0 => pad = if pad > 4096 { pad / 2 } else { 0 },
            status => panic!("probe message: status {status}"),
        }
    };
    let count = DESTINED.div_ceil(size as u64);

    let baseline = server.heap_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        let pid = server.pid();
        tokio::spawn(async move {
            loop {
                let kib = proc_status_kib(pid, "RssAnon").or_else(|| proc_status_kib(pid, "VmRSS"));
                if let Some(kib) = kib {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let flood = stream::iter(0..count)
        .map(|i| {
            let (api, path, body) = (&api, &path, &body);
            async move {
                loop {
                    match api
                        .post_bytes_status(path, body(&format!("f-{i}"), pad))
                        .await
                    {
                        201 => return,
                        429 => tokio::time::sleep(Duration::from_millis(50)).await,
                        status => panic!("flood message {i}: status {status}"),
                    }
                }
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>();
    tokio::time::timeout(Duration::from_secs(900), flood)
        .await
        .expect("the flood took more than 15 minutes");
    tokio::time::sleep(Duration::from_millis(300)).await;
    sampler.abort();
    server.assert_running();
    let growth = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    assert!(
        growth < GROWTH_LIMIT_KIB,
        "server memory grew by {} MiB while {} MiB of pushes were destined to a client that never reads",
        growth / 1024,
        (count * size as u64) / (1024 * 1024)
    );

    // Now the slow client reads: some messages, then the end of its connection.
    let (frames, end) = slow.drain(Duration::from_secs(30)).await;
    let end = end.expect("the slow client's connection is still open: it was never cut off");
    let pushes: Vec<&v1::Push> = frames
        .iter()
        .filter_map(|f| match &f.body {
            Some(Body::Push(p)) => Some(p),
            _ => None,
        })
        .collect();
    let messages = pushes
        .iter()
        .filter(|p| matches!(p.push, Some(PushKind::Message(_))))
        .count() as u64;
    assert!(
        messages < count,
        "the slow client received all {count} messages: it was never cut off"
    );
    eprintln!(
        "slow consumer: {count} messages of {size} bytes flooded; server heap grew {growth} KiB; \
         the slow client read {messages} messages, then {end:?}"
    );
    let disconnect = pushes.iter().find_map(|p| match &p.push {
        Some(PushKind::Disconnect(d)) => Some(d.clone()),
        _ => None,
    });
    if let Some(d) = &disconnect {
        assert_eq!((d.code, d.reconnect), (3002, true), "{d:?}");
    }
    if let RawEvent::Close(Some(code), _) = &end {
        assert_eq!(*code, 3002, "close code of a slow consumer");
    }

    // The server serves on: the same user reconnects and gets new messages live.
    let (fresh, _) = server.client(Transport::WsJson, "slow").await;
    api.send(&conv, "flooder", "still here", "after-flood")
        .await;
    let m = fresh.expect_message(&conv, WAIT).await;
    assert_eq!(m.text, "still here");
}

/// With one `connect` allowed at a time, forty clients connecting at once all
/// get in: the others wait their turn instead of being refused. Clients that
/// hang up while they wait are dropped and leave no connection behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_beyond_the_concurrency_limit_wait_their_turn() {
    let server = TestServer::start(ServerOptions::new().flag("--max-concurrent-connects", 1)).await;
    let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    let impatient = join_all((0..20).map(|i| {
        let token = server.app.token(&format!("gone{i}"));
        let addr = server.addr;
        async move {
            let mut ws = RawWs::open(addr, None).await;
            ws.send_text(&format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#))
                .await;
            // Dropped at once: the TCP connection closes with the connect unanswered.
        }
    }));
    let patient = join_all(users.iter().enumerate().map(|(i, user)| {
        let transport = [Transport::WsJson, Transport::WsProto, Transport::Grpc][i % 3];
        server.client(transport, user)
    }));
    let (clients, _) = tokio::join!(patient, impatient);
    for ((client, reply), user) in clients.iter().zip(&users) {
        assert_eq!(reply.user.as_ref().unwrap().id, *user);
        client.ping().await.unwrap();
    }

    let anon = server.rest_anon();
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let text = anon.get("/metrics").await.text;
    assert!(
        metric(&text, "mkondo_connects_queued_total") >= 1.0,
        "sixty connects at once with one allowed: some must have queued\n{text}"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let text = anon.get("/metrics").await.text;
        let live = metric(&text, "mkondo_connections");
        if live == 40.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{live} connections live, expected the 40 that stayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
