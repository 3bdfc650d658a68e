//! The example webhook receivers (`examples/webhook-receiver/`), each run as a
//! child process (`python3`, `node`) and sent events signed with the server's
//! own `outbound::sign::signature_header`: a valid call is accepted and printed
//! once, a repeated id is answered 200 and not printed again, a bad signature
//! and a six-minute-old timestamp are refused with 400, and a call signed with
//! two secrets (a rotation) of which only the second is the receiver's is
//! accepted.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mkondo_server::outbound::sign::{signature_header, SIGNATURE_HEADER};
use mkondo_tests::{free_port, poll_until, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const SECRET: &str = "whsec_receiver-test-secret-0123456789";

fn example(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/webhook-receiver")
        .join(path)
}

/// A running receiver: its port, and the lines it printed on stdout.
struct Receiver {
    port: u16,
    lines: mpsc::UnboundedReceiver<String>,
    _child: Child,
}

async fn start(program: &str, script: &str) -> Receiver {
    let port = free_port();
    let mut child = Command::new(program)
        .arg(example(script))
        .arg(port.to_string())
        .env("MKONDO_WEBHOOK_SECRET", SECRET)
        .env("HOST", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} {script}: {e}"));
    let (tx, lines) = mpsc::unbounded_channel();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            let _ = tx.send(line);
        }
    });
    poll_until(WAIT, "the receiver listens", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    Receiver {
        port,
        lines,
        _child: child,
    }
}

impl Receiver {
    async fn post(&self, body: &[u8], header: &str) -> u16 {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/", self.port))
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, header)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The next printed event, within `WAIT`.
    async fn printed(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.recv())
            .await
            .expect("an event printed in time")
            .expect("the receiver is running");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// Nothing more printed: every call so far was answered, and the
    /// receiver prints before it answers, so a short wait is enough.
    async fn printed_nothing(&mut self) {
        if let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_millis(300), self.lines.recv()).await
        {
            panic!("printed again: {line}");
        }
    }
}

fn event(id: &str) -> Vec<u8> {
    json!({
        "id": id,
        "type": "message.created",
        "app_id": "app1",
        "conversation_id": "general",
        "created_at": "2026-12-05T05:00:00Z",
        "data": {"message": {"seq": 1, "text": "héllo"}}
    })
    .to_string()
    .into_bytes()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn receiver_checks_what_it_is_sent(program: &str, script: &str) {
    let mut r = start(program, script).await;
    let secret = SECRET.as_bytes();

    // Valid: accepted and printed once, as sent.
    let body = event("ev_1");
    assert_eq!(
        r.post(&body, &signature_header(&[secret], now(), &body))
            .await,
        200
    );
    let printed = r.printed().await;
    assert_eq!(printed, serde_json::from_slice::<Value>(&body).unwrap());

    // The same id again (a redelivery, newly signed): 200, not processed again.
    assert_eq!(
        r.post(&body, &signature_header(&[secret], now(), &body))
            .await,
        200
    );
    r.printed_nothing().await;

    // A bad signature: another secret, or a body changed after signing.
    let other = event("ev_2");
    let wrong = signature_header(&[b"whsec_someone-else"], now(), &other);
    assert_eq!(r.post(&other, &wrong).await, 400);
    let signed_for_body = signature_header(&[secret], now(), &body);
    assert_eq!(r.post(&other, &signed_for_body).await, 400);
    assert_eq!(r.post(&other, "").await, 400);
    assert_eq!(r.post(&other, "t=abc,v1=00").await, 400);

    // Six minutes old, correctly signed: refused.
    let old = signature_header(&[secret], now() - 6 * 60, &other);
    assert_eq!(r.post(&other, &old).await, 400);
    r.printed_nothing().await;

    // A rotation: signed with the new secret (not the receiver's) and the old
    // one (the receiver's), in that order: accepted.
    let rotated = signature_header(&[b"whsec_the-new-secret", secret], now(), &other);
    assert_eq!(rotated.matches("v1=").count(), 2);
    assert_eq!(r.post(&other, &rotated).await, 200);
    assert_eq!(r.printed().await["id"], "ev_2");
    r.printed_nothing().await;
}

#[tokio::test]
async fn the_python_receiver_verifies_dedups_and_refuses_old_calls() {
    receiver_checks_what_it_is_sent("python3", "python/receiver.py").await;
}

#[tokio::test]
async fn the_node_receiver_verifies_dedups_and_refuses_old_calls() {
    receiver_checks_what_it_is_sent("node", "node/receiver.mjs").await;
}
