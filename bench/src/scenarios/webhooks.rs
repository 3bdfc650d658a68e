//! Webhooks: how many events per second Mkondo delivers to one receiver. A
//! backlog of message events is made first with the endpoint disabled (REST
//! sends into `webhook_conversations` groups), then the endpoint is enabled
//! and the clock runs until the receiver on loopback has every one: it checks
//! each request's `Mkondo-Signature` (HMAC-SHA256) as a real receiver must,
//! and answers 200. Events of one conversation go out one after another
//! (their order is the contract); conversations go out side by side.

use std::net::SocketAddr;
use std::sync::{
    atomic::{AtomicU64, Ordering::Relaxed},
    Arc,
};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::procstat::CpuWindow;
use crate::results::Webhooks;

use super::Ctx;

#[derive(Default)]
struct Received {
    messages: AtomicU64,
    bad_signatures: AtomicU64,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Webhooks> {
    let app = ctx.mkondo.create_app().await?;
    let server = ctx
        .mkondo
        .start_as(super::any_port(), None, &["--outbound-allow-private"])
        .await?;
    let rest = ctx.mkondo.rest(server.addr, &app);
    let received = Arc::new(Received::default());
    let secret = Arc::new(std::sync::OnceLock::<String>::new());
    let receiver = receiver(received.clone(), secret.clone()).await?;

    let convs = ctx.sizes.webhook_conversations;
    let per_conv = ctx.sizes.webhook_events / convs;
    let total = (per_conv * convs) as u64;
    let endpoint = rest
        .post(
            "/webhooks",
            json!({"url": format!("http://{receiver}/hook"), "event_types": ["message.created"]}),
        )
        .await?;
    let id = endpoint["webhook"]["id"]
        .as_str()
        .or_else(|| endpoint["id"].as_str())
        .ok_or_else(|| anyhow::anyhow!("no webhook id in {endpoint}"))?
        .to_owned();
    let key = endpoint["secret"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no secret in {endpoint}"))?;
    let _ = secret.set(key.to_owned());
    rest.patch(&format!("/webhooks/{id}"), json!({"enabled": false}))
        .await?;

    // The backlog: `per_conv` messages in each conversation, sent over REST.
    let users: Vec<String> = (0..convs).map(|i| format!("hook-{i}")).collect();
    for u in &users {
        rest.post("/users", json!({"id": u})).await?;
    }
    let mut groups = Vec::new();
    for u in &users {
        groups.push(
            rest.conversation(json!({"kind": "group", "members": [u]}))
                .await?,
        );
    }
    let bar = crate::client::progress(total, "webhooks: backlog");
    futures::stream::iter(
        groups
            .iter()
            .zip(&users)
            .flat_map(|(g, u)| (0..per_conv).map(move |k| (g.clone(), u.clone(), k))),
    )
    .map(|(g, u, k)| {
        let rest = &rest;
        let bar = &bar;
        async move {
            let r = rest
                .post(
                    &format!("/conversations/{g}/messages"),
                    json!({"sender_id": u, "text": format!("event {k}")}),
                )
                .await;
            bar.inc(1);
            r
        }
    })
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;
    bar.finish_and_clear();

    // Delivery, timed from the endpoint's enabling to the last event received.
    let cpu = CpuWindow::start(server.pid);
    let started = Instant::now();
    rest.patch(&format!("/webhooks/{id}"), json!({"enabled": true}))
        .await?;
    let deadline = started + ctx.sizes.webhook_wait;
    let bar = crate::client::progress(total, "webhooks: delivery");
    while received.messages.load(Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        bar.set_position(received.messages.load(Relaxed));
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let server_cpu_percent = cpu.percent();
    server.stop().await?;
    let delivered = received.messages.load(Relaxed);
    Ok(Webhooks {
        conversations: convs,
        events: total,
        delivered,
        bad_signatures: received.bad_signatures.load(Relaxed),
        secs,
        per_sec: delivered as f64 / secs,
        server_cpu_percent,
    })
}

/// A receiver on loopback that verifies every signature and counts events.
async fn receiver(
    received: Arc<Received>,
    secret: Arc<std::sync::OnceLock<String>>,
) -> anyhow::Result<SocketAddr> {
    let handler = move |headers: HeaderMap, body: Bytes| {
        let received = received.clone();
        let secret = secret.clone();
        async move {
            let signed = headers
                .get("mkondo-signature")
                .and_then(|v| v.to_str().ok())
                .zip(secret.get())
                .is_some_and(|(header, secret)| verify(header, secret.as_bytes(), &body));
            if !signed {
                received.bad_signatures.fetch_add(1, Relaxed);
                return StatusCode::BAD_REQUEST;
            }
            received.messages.fetch_add(1, Relaxed);
            StatusCode::OK
        }
    };
    let router = axum::Router::new().route("/hook", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

/// `t=<unix>,v1=<hex>[,v1=<hex>]`: any v1 the secret produces for "<t>.<body>".
fn verify(header: &str, secret: &[u8], body: &[u8]) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    sigs.iter().any(|sig| {
        let Ok(want) = hex_decode(sig) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&want).is_ok()
    })
}

fn hex_decode(s: &str) -> Result<Vec<u8>, ()> {
    if !s.len().is_multiple_of(2) {
        return Err(());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| ()))
        .collect()
}
