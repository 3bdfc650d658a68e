//! Push: one message to a group of `push_members` members, all offline and
//! each with one APNs device, and the clock from the send's REST answer to
//! the last push the loopback APNs ([`crate::apns_sink`]) accepted. Nobody
//! connects, so every member is pushed; the server's worker copies the
//! message from the event outbox into a job, fans it out into one
//! `push_sends` row per device, and sends them, 256 in flight, removing each
//! row once APNs answered.
//!
//! The floor beside it, in the same run and against the same sink: the same
//! number of pushes to the same tokens, with a payload of the same shape,
//! sent by mkondo-push's `ApnsClient` straight from this process, 256 in
//! flight on one HTTP/2 connection (what the server's sender uses, without
//! the queue). The difference between the two rates is the server's own work:
//! fan-out, durable queue rows, and bookkeeping per send.
//!
//! The app's push settings are set after the group and devices exist: the
//! worker starts at the head of the app's feed then, so the members' "joined"
//! system messages are not read, and the message sent is the only job.

use std::time::{Duration, Instant};

use futures::StreamExt;
use mkondo_push::apns::{
    new_apns_id, Alert, ApnsClient, ApnsKey, ApnsNotification, ApnsPayload, PushType,
};
use mkondo_push::Outcome;
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::apns_sink::{ApnsApp, ApnsSink, Tally};
use crate::procstat::CpuWindow;
use crate::results::{Push, PushPath};
use crate::servers::{Process, Rest};
use crate::token::App;

use super::Ctx;

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const TOPIC: &str = "com.example.chat";
const OPERATOR_SECRET: &str = "operator-secret-of-the-push-bench";
const SENDER: &str = "push-sender";
const GROUP_NAME: &str = "push";
/// The API's cap on user ids in one request.
const PER_REQUEST: usize = 1000;
/// Device registrations in flight during set-up.
const PARALLEL_REGISTRATIONS: usize = 32;
/// The server's sender keeps this many pushes in flight; so does the floor.
const IN_FLIGHT: usize = 256;
/// After the last push, how long duplicates (a push sent twice) may still
/// arrive and be counted.
const SETTLE: Duration = Duration::from_millis(500);

/// The message sent and the members' tokens: the floor sends the same
/// pushes.
struct Sent {
    conversation: String,
    message: Value,
    tokens: Vec<String>,
    app_id: String,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Push> {
    let n = ctx.sizes.push_members;
    let apns = ApnsApp::generate(KEY_ID, TEAM_ID, TOPIC)?;
    let sink = ApnsSink::start(&apns, &ctx.work).await?;
    let app = ctx.mkondo.create_app().await?;
    let ca = sink.ca_file.to_string_lossy().into_owned();
    let server = ctx
        .mkondo
        .start_as(
            super::any_port(),
            None,
            &[
                "--outbound-allow-private",
                "--outbound-ca",
                &ca,
                "--apns-url",
                &sink.url,
                "--apns-sandbox-url",
                &sink.url,
                "--operator-secret",
                OPERATOR_SECRET,
            ],
        )
        .await?;
    let measured = through_server(ctx, &server, &app, &apns, &sink).await;
    // The floor runs alone: the server must not share the cores with it.
    server.stop().await?;
    let (send_ms, server_path, sent) = measured?;
    // Far less than the server path may take (it sends in well under a
    // second), so the scenario stays within its bound when both are stuck.
    let direct = direct(&apns, &sink, &sent, ctx.sizes.push_wait / 2).await?;
    Ok(Push {
        members: n,
        send_ms,
        server: server_path,
        direct,
    })
}

/// Set-up, then one send and the wait for its pushes.
async fn through_server(
    ctx: &Ctx,
    server: &Process,
    app: &App,
    apns: &ApnsApp,
    sink: &ApnsSink,
) -> anyhow::Result<(f64, PushPath, Sent)> {
    let n = ctx.sizes.push_members;
    let rest = ctx.mkondo.rest(server.addr, app);
    let users: Vec<String> = (0..n).map(|i| format!("push-{i}")).collect();
    let conversation = group(&rest, &users).await?;
    let tokens = register_devices(&rest, &users).await?;
    ctx.mkondo
        .operator(server.addr, OPERATOR_SECRET)
        .patch(
            &format!("/admin/apps/{}", app.app_id),
            json!({"push": {"apns": {"key": apns.p8, "key_id": apns.key_id,
                                     "team_id": apns.team_id, "topic": apns.topic}}}),
        )
        .await?;

    let server_cpu = CpuWindow::start(server.pid);
    let bench_cpu = CpuWindow::start(std::process::id());
    let before = Instant::now();
    let message = rest
        .post(
            &format!("/conversations/{conversation}/messages"),
            json!({"sender_id": SENDER,
                   "text": crate::recorder::message_text(0, ctx.sizes.message_bytes)}),
        )
        .await?;
    let answered = Instant::now();
    wait(
        sink,
        n as u64,
        ctx.sizes.push_wait,
        "push: through the server",
    )
    .await;
    let cpu = (server_cpu.percent(), bench_cpu.percent());
    tokio::time::sleep(SETTLE).await;
    let mut path = path_of(&sink.take(), answered, cpu.1);
    path.server_cpu_percent = Some(cpu.0);
    let send_ms = answered.duration_since(before).as_secs_f64() * 1e3;
    let sent = Sent {
        conversation,
        message,
        tokens,
        app_id: app.app_id.clone(),
    };
    Ok((send_ms, path, sent))
}

/// The group: the sender, then every member, [`PER_REQUEST`] at a time (the
/// backend's requests create the users).
async fn group(rest: &Rest, users: &[String]) -> anyhow::Result<String> {
    let conversation = rest
        .conversation(json!({"kind": "group", "name": GROUP_NAME, "members": [SENDER]}))
        .await?;
    let bar = crate::client::progress(users.len() as u64, "push: members");
    for chunk in users.chunks(PER_REQUEST) {
        rest.post(
            &format!("/conversations/{conversation}/members"),
            json!({"user_ids": chunk}),
        )
        .await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(conversation)
}

/// One APNs device per member, over REST as an app's backend would; the
/// tokens, in member order.
async fn register_devices(rest: &Rest, users: &[String]) -> anyhow::Result<Vec<String>> {
    // 64 hex digits, as iOS hands them out; distinct per member.
    let tokens: Vec<String> = users
        .iter()
        .map(|u| format!("{:x}", sha2::Sha256::digest(format!("device of {u}"))))
        .collect();
    let bar = crate::client::progress(users.len() as u64, "push: devices");
    futures::stream::iter(users.iter().zip(&tokens))
        .map(|(user, token)| {
            let bar = &bar;
            async move {
                let made = rest
                    .post(
                        &format!("/users/{user}/devices"),
                        json!({"provider": "apns", "token": token}),
                    )
                    .await;
                bar.inc(1);
                made
            }
        })
        .buffer_unordered(PARALLEL_REGISTRATIONS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    bar.finish_and_clear();
    Ok(tokens)
}

/// The floor: the same pushes from mkondo-push's client in this process.
async fn direct(
    apns: &ApnsApp,
    sink: &ApnsSink,
    sent: &Sent,
    wait_max: Duration,
) -> anyhow::Result<PushPath> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(
        sink.ca_pem.as_bytes(),
    )?)?;
    let mut tls =
        rustls::ClientConfig::builder_with_provider(mkondo_sdk::transport::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    // As the server's push client: HTTP/2 by ALPN.
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()?;
    let client = ApnsClient::new(
        http,
        reqwest::Url::parse(&sink.url)?,
        ApnsKey::from_p8(&apns.p8, &apns.key_id, &apns.team_id)?,
    );
    // One push first, not counted: 256 requests on a cold client would each
    // open a TLS connection (the pool learns that a connection speaks HTTP/2
    // only once its handshake is done), and the floor is the client's steady
    // state on one connection. The server path starts cold: what its first
    // claim costs is part of the server's figure (see `connections`).
    if let Some(token) = sent.tokens.first() {
        client.send(&notification(sent, token)).await?;
    }
    let warm = sink.take();

    let bench_cpu = CpuWindow::start(std::process::id());
    let started = Instant::now();
    let sends = futures::stream::iter(&sent.tokens)
        .map(|token| {
            let client = &client;
            // Built per push, as the server's sender builds each from its row.
            async move { client.send(&notification(sent, token)).await }
        })
        .buffer_unordered(IN_FLIGHT);
    let outcomes = tokio::time::timeout(wait_max, sends.collect::<Vec<_>>())
        .await
        .unwrap_or_default();
    let cpu = bench_cpu.percent();
    let mut tally = sink.take();
    tally.connections += warm.connections;
    // A push the client could not send (no answer) shows as a refusal, so
    // a broken floor fails the run like a broken server path.
    for outcome in outcomes {
        match outcome {
            Ok(Outcome::Accepted { .. }) => {}
            Ok(other) => note_failure(&mut tally, format!("{other:?}")),
            Err(e) => note_failure(&mut tally, e.to_string()),
        }
    }
    Ok(path_of(&tally, started, cpu))
}

fn note_failure(tally: &mut Tally, why: String) {
    if tally.first_refusal.is_none() {
        tally.first_refusal = Some(why);
    }
    tally.refused += 1;
}

/// A push like the server's for this message (preview `full`, a group):
/// the group's name as title, "sender: text" as body, badge, sound, thread,
/// the ids the app opens the conversation with, expiration and collapse id.
fn notification(sent: &Sent, token: &str) -> ApnsNotification {
    let m = &sent.message;
    let mut custom = serde_json::Map::new();
    custom.insert(
        "mkondo".into(),
        json!({"type": "message", "app_id": sent.app_id,
               "conversation_id": sent.conversation, "seq": m["seq"],
               "message_id": m["id"], "sender_id": SENDER, "sender_name": ""}),
    );
    let payload = ApnsPayload {
        alert: Some(Alert {
            title: GROUP_NAME.to_owned(),
            body: format!("{SENDER}: {}", m["text"].as_str().unwrap_or_default()),
        }),
        badge: Some(1),
        sound: Some("default".into()),
        thread_id: Some(sent.conversation.clone()),
        mutable_content: true,
        content_available: false,
        custom,
    };
    let mut n = ApnsNotification::new(token, TOPIC, PushType::Alert, new_apns_id(), payload);
    n.expiration = Some(unix_now() + 24 * 3600);
    // The server's collapse id is 32 base64url characters.
    n.collapse_id = Some(format!("{:x}", sha2::Sha256::digest(&sent.conversation))[..32].into());
    n
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Waits until the sink accepted `n` distinct pushes, or `max` passed.
async fn wait(sink: &ApnsSink, n: u64, max: Duration, what: &str) {
    let deadline = Instant::now() + max;
    let bar = crate::client::progress(n, what);
    while sink.distinct() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        bar.set_position(sink.distinct());
    }
    bar.finish_and_clear();
}

/// A phase's figures, its times counted from `start`.
fn path_of(t: &Tally, start: Instant, bench_cpu_percent: f64) -> PushPath {
    // Signed: a push could in principle be accepted before the send's
    // answer reached this process.
    let since = |at: Option<Instant>| {
        at.map_or(f64::NAN, |at| {
            if at >= start {
                at.duration_since(start).as_secs_f64()
            } else {
                -start.duration_since(at).as_secs_f64()
            }
        })
    };
    let (first, last) = (since(t.first), since(t.last_new));
    let pushes = t.ids.len() as u64;
    PushPath {
        pushes,
        devices: t.tokens.len() as u64,
        duplicates: t.duplicates(),
        refused: t.refused,
        first_refusal: t.first_refusal.clone(),
        first_ms: first * 1e3,
        last_ms: last * 1e3,
        per_sec: pushes as f64 / (last - first).max(1e-3),
        per_sec_from_start: pushes as f64 / last.max(1e-3),
        payload_bytes: t.mean_payload(),
        connections: t.connections,
        server_cpu_percent: None,
        bench_cpu_percent,
    }
}
