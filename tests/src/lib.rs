//! The end-to-end test harness: the real server binary on `127.0.0.1:0` with a
//! real SQLite file in a temporary directory (or a PostgreSQL database, see
//! `services`), driven over real sockets.
//!
//! - [`TestServer`] starts `mkondo serve` (after creating an app with the CLI),
//!   mints user tokens the way a customer's backend would, and can be killed
//!   (SIGKILL), terminated (SIGTERM) and restarted on the same database.
//! - [`Client`] speaks the real-time protocol over any [`Transport`] (WebSocket
//!   with JSON, WebSocket with protobuf, gRPC): replies are routed by id, pushes are
//!   queued, server pings are answered automatically.
//! - [`RawWs`] is a bare WebSocket for what a well-behaved client never does
//!   (garbage frames, never reading).
//! - [`Rest`] calls the REST API with an API key or a user token.
//! - [`Proxy`] sits between SDK clients and the server to drop, stall or
//!   half-open their connections and count connection attempts.
//!
//! Scenarios are written once as `async fn scenario(transport: Transport)` and
//! instantiated for each transport with [`per_transport!`].

mod change_commands;
mod client;
mod cluster;
mod commands;
mod proxy;
pub mod push_providers;
mod raw;
mod rest;
mod revocation;
pub mod s3;
mod server;
mod services;
pub mod tls;
pub mod venv;
pub mod webhook_receiver;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use client::{Client, ClientOptions, Closed, RawMessage, Transport, CONNECTION_CLOSED};
pub use cluster::{free_port, Nginx, RedisServer};
pub use mkondo_proto::v1;
pub use mkondo_proto::v1::{
    client_frame::Command, push::Push as PushKind, reply::Result as ReplyResult, server_frame::Body,
};
pub use proxy::{Fault, Proxy};
pub use raw::{RawEvent, RawWs};
pub use rest::{json_u64, seq_of, tus_patch, urlencode, Resp, Rest};
pub use revocation::{expect_alive, expect_stopped, valid_after_secs, REVOCATION_DEADLINE};
pub use server::{
    mkondo_bin, proc_status_kib, App, AsymmetricKey, Claims, ServerOptions, TestServer,
    TEST_SECRETS_KEY,
};
pub use services::{fresh_postgres, fresh_postgres_tls, redis_url};

/// The wait used for anything that should happen "soon": generous, so that a slow
/// machine does not fail a test, while a broken behaviour still fails it.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a negative check ("this push never arrives") listens.
pub const QUIET: Duration = Duration::from_millis(500);

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs() as i64
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_millis() as i64
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout`
/// with `what` in the message.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `seqs` is exactly `range` in ascending order (no gap, no duplicate,
/// no reordering), with a message naming the first difference.
#[track_caller]
pub fn assert_seqs(what: &str, seqs: &[u64], range: std::ops::RangeInclusive<u64>) {
    let want: Vec<u64> = range.collect();
    if seqs != want.as_slice() {
        let first_diff = seqs
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(seqs.len().min(want.len()));
        panic!(
            "{what}: expected seqs {:?}..={:?} ({} of them), got {} seqs; first difference at index {first_diff}: got {:?}, want {:?}\n got: {seqs:?}",
            want.first(),
            want.last(),
            want.len(),
            seqs.len(),
            seqs.get(first_diff),
            want.get(first_diff),
        );
    }
}

/// Instantiates `async fn scenario(transport: Transport)` once per transport:
/// `per_transport!(chat)` gives the tests `chat::ws_json`, `chat::ws_proto` and
/// `chat::grpc`, each with its own server.
#[macro_export]
macro_rules! per_transport {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ws_json() {
                super::$scenario($crate::Transport::WsJson).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ws_proto() {
                super::$scenario($crate::Transport::WsProto).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn grpc() {
                super::$scenario($crate::Transport::Grpc).await
            }
        }
    )*};
}
