//! The before-send hook: an app's backend sees every user message (and edit)
//! before it is stored, and answers allow, reject or replace.
//!
//! - The call is a signed `POST` (`Mkondo-Signature`, as webhooks) made through
//!   the node's outbound client, so the URL's checks (https, public addresses,
//!   no redirects, a capped answer) hold here too.
//! - It runs in the send and edit paths after the request's own checks and
//!   BEFORE the conversation's ordering lock: a slow hook delays its own
//!   message, never another conversation's (nor another sender's in this one).
//! - A retried send (a `client_id` the sender already used in the conversation)
//!   skips the hook: the store answers the message stored the first time.
//! - A replacement is checked again like any input (caps, data an object, not
//!   empty): the hook cannot store what a client could not send.
//! - No usable answer (timeout, refused address, non-2xx, unreadable body)
//!   follows the app's choice: fail-closed by default (`unavailable`, reason
//!   `hook_failed`) — a hook exists to keep content out, and letting messages
//!   through while it is down would defeat it; fail-open on request.
//! - Settings are cached per node for [`CACHE_TTL`]; a change through this
//!   node applies at once, one made on another node or with the CLI within
//!   that time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use mkondo_proto::{ErrorCode, Reason};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::apps::AppChange;
use super::Node;
use crate::error::{Error, Result};
use crate::outbound::secrets::{new_secret, SecretBox};
use crate::outbound::sign::{signature_header, SIGNATURE_HEADER};
use crate::outbound::OutboundClient;
use crate::store::hooks::HookRow;
use crate::store::messages::{check_new_message, MessageEdit};
use crate::store::HookInfo;
use crate::store::{Message, NewMessage};

/// The timeout when none is given.
pub const DEFAULT_TIMEOUT_MS: u64 = 1_000;
/// The longest and shortest timeouts accepted.
pub const MAX_TIMEOUT_MS: u64 = 10_000;
pub const MIN_TIMEOUT_MS: u64 = 10;
/// The longest reject reason passed on to the sender (characters).
pub const MAX_REASON_CHARS: usize = 500;
/// How long a node trusts the hook settings it read.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// An app's hook as the operator gives it (`PATCH /v1/admin/apps/{app}`, the CLI).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BeforeSendHookInput)]
pub struct HookInput {
    /// `https` to a public address (`http` and private addresses only with the
    /// server's `--outbound-allow-private`), at most 2048 bytes, no credentials.
    #[schema(max_length = 2048)]
    pub url: String,
    /// How long to wait for the answer, 10 to 10000 ms (default 1000).
    #[schema(minimum = 10, maximum = 10000)]
    pub timeout_ms: Option<u64>,
    /// With no usable answer: true stores the message as sent; false (the
    /// default) refuses it with `unavailable`, reason `hook_failed`.
    pub fail_open: Option<bool>,
}

/// Checks a hook's settings and makes its signing secret: the row to store
/// (the secret sealed) and the secret itself, to show once.
pub async fn prepare(
    input: HookInput,
    outbound: &OutboundClient,
    secrets: &SecretBox,
    now_ms: i64,
) -> Result<(HookRow, String)> {
    let timeout_ms = input.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(Error::invalid(format!(
            "timeout_ms must be {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}"
        )));
    }
    let url = outbound.check_url(&input.url).await?;
    let secret = new_secret();
    let row = HookRow {
        url: url.to_string(),
        secret: secrets.seal(secret.as_bytes()),
        timeout_ms: timeout_ms as i64,
        fail_open: input.fail_open.unwrap_or(false),
        updated_at: now_ms,
    };
    Ok((row, secret))
}

/// A hook ready to call: its secret opened once per cache period.
struct LiveHook {
    url: url::Url,
    secret: Vec<u8>,
    timeout: Duration,
    fail_open: bool,
}

/// The hooks this node read lately, per app (`None`: the app has none).
#[derive(Default)]
pub(super) struct HookCache(DashMap<String, (Instant, Option<Arc<LiveHook>>)>);

/// What the hook answered.
#[derive(Debug, PartialEq)]
enum Verdict {
    Allow,
    Reject(String),
    Replace {
        text: Option<String>,
        /// `Some(None)`: the data removed.
        data: Option<Option<Value>>,
    },
    /// No usable answer, and why (for the log).
    Failed(String),
}

impl Verdict {
    fn label(&self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Reject(_) => "reject",
            Verdict::Replace { .. } => "replace",
            Verdict::Failed(_) => "error",
        }
    }
}

/// The answer's body.
#[derive(Deserialize)]
struct Answer {
    action: String,
    reason: Option<String>,
    text: Option<String>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Option<Value>>,
}

/// A field given as `null` is `Some(None)`; left out, `None` (`#[serde(default)]`).
fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<Value>>, D::Error> {
    Option::<Value>::deserialize(d).map(|v| Some(v.filter(|v| !v.is_null())))
}

fn verdict(status: u16, body: &[u8]) -> Verdict {
    if !(200..300).contains(&status) {
        return Verdict::Failed(format!("answered HTTP {status}"));
    }
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(e) => return Verdict::Failed(format!("an unreadable answer: {e}")),
    };
    match answer.action.as_str() {
        "allow" => Verdict::Allow,
        "reject" => Verdict::Reject(clean_reason(answer.reason.as_deref())),
        "replace" if answer.text.is_none() && answer.data.is_none() => {
            Verdict::Failed("a replace without text or data".to_owned())
        }
        "replace" => Verdict::Replace {
            text: answer.text,
            data: answer.data,
        },
        other => Verdict::Failed(format!("an unknown action {:?}", truncate(other, 40))),
    }
}

/// The hook's reason as the sender will read it: no control characters, at
/// most [`MAX_REASON_CHARS`].
fn clean_reason(reason: Option<&str>) -> String {
    let cleaned: String = reason
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        "the app refused this message".to_owned()
    } else {
        cleaned.to_owned()
    }
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// The message as the hook sees it.
fn message_json(
    text: &str,
    data: Option<&Value>,
    kind: &str,
    client_id: Option<&str>,
    reply_to: Option<i64>,
) -> Value {
    json!({
        "text": text,
        "data": data.filter(|d| !d.is_null()).cloned().unwrap_or_else(|| json!({})),
        "kind": kind,
        "client_id": client_id,
        "reply_to": reply_to,
    })
}

fn rejected(reason: String) -> Error {
    Error::new(ErrorCode::Rejected, reason)
}

fn hook_failed() -> Error {
    Error::new(
        ErrorCode::Unavailable,
        "the app's before-send hook gave no usable answer; the message was not stored",
    )
    .with_reason(Reason::HookFailed)
}

/// A replacement that fails the input checks: refused with the check's code,
/// whatever the app's failure mode (storing the original would ignore what
/// the hook asked for).
fn bad_replacement(err: Error) -> Error {
    Error {
        message: format!("the before-send hook's replacement: {}", err.message),
        ..err
    }
}

impl Node {
    /// Runs a new message through the app's hook, if it has one: the message
    /// to store (as sent, or replaced), or the refusal.
    pub(super) async fn before_send(
        &self,
        app: &str,
        conv: &str,
        mut msg: NewMessage,
    ) -> Result<NewMessage> {
        if msg.kind == "system" {
            return Ok(msg);
        }
        let Some(hook) = self.live_hook(app).await? else {
            return Ok(msg);
        };
        // A sender who is not a member is refused by the send's transaction;
        // the hook never hears of it.
        if self
            .store
            .member(app, conv, &msg.sender_id)
            .await?
            .is_none()
        {
            return Ok(msg);
        }
        if let Some(client_id) = &msg.client_id {
            if self
                .store
                .client_id_used(app, conv, &msg.sender_id, client_id)
                .await?
            {
                return Ok(msg);
            }
        }
        let payload = json!({
            "type": "message.before_send",
            "app_id": app,
            "conversation_id": conv,
            "sender_id": msg.sender_id,
            "message": message_json(&msg.text, msg.data.as_ref(), &msg.kind, msg.client_id.as_deref(), msg.reply_to),
        });
        match self.call_hook(app, &hook, &payload).await {
            Verdict::Allow => Ok(msg),
            Verdict::Reject(reason) => Err(rejected(reason)),
            Verdict::Replace { text, data } => {
                if let Some(text) = text {
                    msg.text = text;
                }
                if let Some(data) = data {
                    msg.data = data;
                }
                check_new_message(&msg).map_err(bad_replacement)?;
                Ok(msg)
            }
            Verdict::Failed(_) if hook.fail_open => Ok(msg),
            Verdict::Failed(_) => Err(hook_failed()),
        }
    }

    /// Runs an edit through the app's hook, if it has one. The hook sees the
    /// message as the edit would leave it; a replacement becomes the edit.
    pub(super) async fn before_edit(
        &self,
        app: &str,
        current: &Message,
        edit: MessageEdit,
    ) -> Result<MessageEdit> {
        if current.kind == "system" {
            return Ok(edit);
        }
        let Some(hook) = self.live_hook(app).await? else {
            return Ok(edit);
        };
        let text = edit.text.clone().unwrap_or_else(|| current.text.clone());
        let data = edit.data.clone().unwrap_or_else(|| current.data.clone());
        let payload = json!({
            "type": "message.before_edit",
            "app_id": app,
            "conversation_id": current.conversation_id,
            "sender_id": current.sender_id,
            "seq": current.seq,
            "message": message_json(&text, Some(&data), &current.kind, current.client_id.as_deref(), current.reply_to),
        });
        match self.call_hook(app, &hook, &payload).await {
            Verdict::Allow => Ok(edit),
            Verdict::Reject(reason) => Err(rejected(reason)),
            Verdict::Replace {
                text: new_text,
                data: new_data,
            } => {
                let text = new_text.unwrap_or(text);
                let data = match new_data {
                    Some(replaced) => replaced.unwrap_or_else(|| json!({})),
                    None => data,
                };
                check_new_message(&NewMessage {
                    text: text.clone(),
                    data: Some(data.clone()),
                    ..Default::default()
                })
                .map_err(bad_replacement)?;
                Ok(MessageEdit {
                    text: Some(text),
                    data: Some(data),
                })
            }
            Verdict::Failed(_) if hook.fail_open => Ok(edit),
            Verdict::Failed(_) => Err(hook_failed()),
        }
    }

    /// Calls the hook and reads its verdict; records the latency by outcome.
    async fn call_hook(&self, app: &str, hook: &LiveHook, payload: &Value) -> Verdict {
        let started = Instant::now();
        let body = Bytes::from(payload.to_string());
        let t = chrono::Utc::now().timestamp();
        let signature = signature_header(&[&hook.secret], t, &body);
        let answer = self
            .outbound
            .post_json(
                &hook.url,
                &[(SIGNATURE_HEADER, signature)],
                body,
                hook.timeout,
            )
            .await;
        let verdict = match answer {
            Ok(response) => verdict(response.status, &response.body),
            Err(err) => Verdict::Failed(err.to_string()),
        };
        metrics::histogram!("mkondo_hook_duration_seconds", "outcome" => verdict.label())
            .record(started.elapsed().as_secs_f64());
        if let Verdict::Failed(why) = &verdict {
            tracing::warn!(
                app,
                why = why.as_str(),
                fail_open = hook.fail_open,
                "the before-send hook gave no usable answer"
            );
        }
        verdict
    }

    /// The app's hook, from this node's cache when read within [`CACHE_TTL`].
    async fn live_hook(&self, app: &str) -> Result<Option<Arc<LiveHook>>> {
        if let Some(entry) = self.hooks.0.get(app) {
            if entry.0.elapsed() < CACHE_TTL {
                return Ok(entry.1.clone());
            }
        }
        let live = match self.store.before_send_hook(app).await? {
            None => None,
            Some(row) => {
                let url = url::Url::parse(&row.url).map_err(|_| {
                    tracing::error!(app, "a stored before-send hook URL does not parse");
                    Error::internal()
                })?;
                let secret = self.secrets()?.open(&row.secret)?;
                Some(Arc::new(LiveHook {
                    url,
                    secret,
                    timeout: Duration::from_millis(
                        row.timeout_ms.clamp(1, MAX_TIMEOUT_MS as i64) as u64
                    ),
                    fail_open: row.fail_open,
                }))
            }
        };
        self.hooks
            .0
            .insert(app.to_owned(), (Instant::now(), live.clone()));
        Ok(live)
    }

    /// Forgets what this node read of an app's hook (after a change here).
    pub(super) fn hook_changed(&self, app: &str) {
        self.hooks.0.remove(app);
    }

    /// The app's hook as listed (without its secret); `not_found` when it has none.
    pub async fn before_send_hook(&self, app: &str) -> Result<HookInfo> {
        let row = self
            .store
            .before_send_hook(app)
            .await?
            .ok_or_else(|| Error::not_found("before-send hook"))?;
        Ok(HookInfo {
            url: row.url,
            timeout_ms: row.timeout_ms,
            fail_open: row.fail_open,
            secret: None,
        })
    }

    /// Sets the app's hook (the backend's twin of the operator's
    /// `update_app`): answered with its new signing secret, this once.
    pub async fn set_before_send_hook(&self, app: &str, input: HookInput) -> Result<HookInfo> {
        let hook = AppChange {
            before_send_hook: Some(Some(input)),
            ..AppChange::default()
        };
        self.update_app(app, hook)
            .await?
            .before_send_hook
            .ok_or_else(Error::internal)
    }

    /// Removes the app's hook; removing none is no error.
    pub async fn delete_before_send_hook(&self, app: &str) -> Result<()> {
        let none = AppChange {
            before_send_hook: Some(None),
            ..AppChange::default()
        };
        self.update_app(app, none).await.map(drop)
    }

    /// Checks and seals a hook for `update_app`: the row and the secret.
    pub(super) async fn prepare_hook(&self, input: HookInput) -> Result<(HookRow, String)> {
        let secrets = self.secrets()?;
        prepare(
            input,
            &self.outbound,
            secrets,
            chrono::Utc::now().timestamp_millis(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_verdicts() {
        assert_eq!(verdict(200, br#"{"action":"allow"}"#), Verdict::Allow);
        assert_eq!(
            verdict(200, br#"{"action":"reject","reason":"no \u0007spam"}"#),
            Verdict::Reject("no spam".into())
        );
        assert_eq!(
            verdict(200, br#"{"action":"reject"}"#),
            Verdict::Reject("the app refused this message".into())
        );
        assert_eq!(
            verdict(200, br#"{"action":"replace","text":"***"}"#),
            Verdict::Replace {
                text: Some("***".into()),
                data: None
            }
        );
        assert_eq!(
            verdict(200, br#"{"action":"replace","data":null}"#),
            Verdict::Replace {
                text: None,
                data: Some(None)
            }
        );
        for (status, body) in [
            (500, &br#"{"action":"allow"}"#[..]),
            (302, b""),
            (200, b"allow"),
            (200, br#"{"action":"maybe"}"#),
            (200, br#"{"action":"replace"}"#),
        ] {
            assert!(
                matches!(verdict(status, body), Verdict::Failed(_)),
                "{status} {body:?}"
            );
        }
        let long = "x".repeat(MAX_REASON_CHARS + 10);
        let body = serde_json::to_vec(&json!({"action": "reject", "reason": long})).unwrap();
        let Verdict::Reject(reason) = verdict(200, &body) else {
            panic!()
        };
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
    }
}
