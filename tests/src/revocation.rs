//! What the lifecycle and operator tests share: the operator secret option, the
//! CLI on a running server's database, tokens with a chosen `iat` or key, a live
//! connection closed by a revocation (with the stop-range code, in time), and the
//! revocation point a REST answer gives.

use std::process::Stdio;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokio::process::Command;
use tokio::time::Instant;

use crate::{mkondo_bin, v1, App, Client, ServerOptions, TestServer, WAIT};

impl ServerOptions {
    /// Turns the operator API (`/v1/admin`) on with this secret.
    pub fn operator_secret(self, secret: &str) -> Self {
        self.flag("--operator-secret", secret)
    }
}

impl TestServer {
    /// Runs `mkondo ARGS --database <this server's database>` (e.g. `["app",
    /// "rotate-key", "--app", id]`); panics unless it succeeds. Returns stdout.
    pub async fn cli(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.cli_result(args).await;
        assert!(
            ok,
            "mkondo {} failed:\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" ")
        );
        stdout
    }

    /// Like [`TestServer::cli`] without asserting success: (success, stdout, stderr).
    pub async fn cli_result(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(mkondo_bin())
            .args(args)
            .arg("--database")
            .arg(self.database())
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run mkondo");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl App {
    /// A valid token for `user` issued at `iat` (seconds), valid for an hour from then.
    pub fn token_issued_at(&self, user: &str, iat: i64) -> String {
        let mut claims = self.claims(user);
        claims.iat = Some(iat);
        claims.exp = Some(iat + 3600);
        self.sign(&claims)
    }

    /// A valid token for `user` signed with another HS256 key of this app.
    pub fn token_with_key(&self, user: &str, kid: &str, secret: &str) -> String {
        self.sign_with(
            Algorithm::HS256,
            Some(kid),
            secret.as_bytes(),
            &self.claims(user),
        )
    }
}

/// How soon after the call that revoked it a live connection must be closed.
pub const REVOCATION_DEADLINE: Duration = Duration::from_secs(1);

/// Waits for `client`'s connection to end and asserts how: a `disconnect` push
/// with `code` and `reason` and `reconnect: false`, arriving less than
/// [`REVOCATION_DEADLINE`] after `since` (when the revoking call returned).
pub async fn expect_stopped(
    what: &str,
    client: &Client,
    code: u32,
    reason: &str,
    since: Instant,
) -> v1::Disconnect {
    let closed = client
        .wait_closed(WAIT)
        .await
        .unwrap_or_else(|| panic!("{what}: the connection stayed open"));
    let elapsed = since.elapsed();
    let d = closed
        .disconnect
        .clone()
        .unwrap_or_else(|| panic!("{what}: closed without a disconnect push: {closed:?}"));
    assert_eq!(
        (d.code, d.reason.as_str(), d.reconnect),
        (code, reason, false),
        "{what}: {closed:?}"
    );
    assert!(
        elapsed < REVOCATION_DEADLINE,
        "{what}: closed {elapsed:?} after the revocation returned"
    );
    d
}

/// Asserts that `client` is still connected and served (a ping is answered).
pub async fn expect_alive(what: &str, client: &Client) {
    assert!(!client.is_closed(), "{what}: the connection was closed");
    client
        .ping()
        .await
        .unwrap_or_else(|e| panic!("{what}: ping failed: {e:?}"));
}

/// The `tokens_valid_after` of a revocation's answer, in whole seconds: a token
/// with this `iat` is accepted, one with `iat` a second earlier is refused.
#[track_caller]
pub fn valid_after_secs(body: &Value) -> i64 {
    let field = &body["tokens_valid_after"];
    let ts: pbjson_types::Timestamp = serde_json::from_value(field.clone())
        .unwrap_or_else(|e| panic!("tokens_valid_after is not an RFC 3339 time ({e}): {body}"));
    assert_eq!(
        ts.nanos, 0,
        "the revocation point is a whole second: {body}"
    );
    ts.seconds
}
