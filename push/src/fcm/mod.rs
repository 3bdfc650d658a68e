//! FCM, Firebase Cloud Messaging, through its HTTP v1 API as Google's
//! "Firebase Cloud Messaging HTTP v1 API reference" and "Send messages with
//! the FCM HTTP v1 API" describe it: `POST {base}/v1/projects/{project
//! id}/messages:send` with `{"message": …}` ([`FcmMessage`]) and an OAuth 2.0
//! access token of the app's service account ([`ServiceAccount`]) as
//! `Authorization: Bearer`.
//!
//! The access token is fetched once and shared by every push until five
//! minutes before it expires; a mutex held across the fetch makes one
//! refresh at a time, the other pushes waiting for its token.
//!
//! Answers ("FCM error codes", `google.firebase.fcm.v1.FcmError`): 200
//! accepted (the message's `name`); 404, or `UNREGISTERED` / `NOT_FOUND` as
//! `error.details[].errorCode` or `error.status`, the token is gone; 401
//! drops the cached access token, fetches another and sends once more, and a
//! second 401 is [`crate::Error::Unauthorized`]; 403 `SENDER_ID_MISMATCH`
//! refuses the push (the token belongs to another Firebase project: removing
//! it would be wrong when the app was given the wrong account), any other
//! 403 is `Unauthorized` too; 429, 5xx, `UNAVAILABLE`, `INTERNAL` and
//! `QUOTA_EXCEEDED` are worth a retry (after `Retry-After`); anything else
//! refuses the push.

mod account;
mod message;

use std::fmt;
use std::time::{Instant, SystemTime};

use reqwest::header::{HeaderMap, AUTHORIZATION};
use serde::Deserialize;
use url::Url;

use crate::answer::{exchange, reason_text, retry_after, Verdict};
use crate::{Outcome, Result};

pub use account::{ServiceAccount, DEFAULT_TOKEN_URI, SCOPE};
pub use message::{
    validate_registration_token, AndroidConfig, AndroidPriority, FcmMessage, FcmNotification,
    MAX_PAYLOAD, MAX_TOKEN_LEN, MAX_TTL,
};

/// The FCM API.
pub const FCM_URL: &str = "https://fcm.googleapis.com";

/// Sends FCM messages for one Firebase project.
pub struct FcmClient {
    http: reqwest::Client,
    base: Url,
    account: ServiceAccount,
    token: tokio::sync::Mutex<Option<account::AccessToken>>,
}

impl FcmClient {
    /// `base` is [`FCM_URL`] (or a test server); the token endpoint is the
    /// account's `token_uri`.
    pub fn new(http: reqwest::Client, base: Url, account: ServiceAccount) -> Self {
        FcmClient {
            http,
            base,
            account,
            token: tokio::sync::Mutex::new(None),
        }
    }

    pub fn account(&self) -> &ServiceAccount {
        &self.account
    }

    /// Sends one message and says what FCM answered.
    pub async fn send(&self, message: &FcmMessage) -> Result<Outcome> {
        let body = message.to_json()?;
        let token = match self.access_token(None).await? {
            Ok(token) => token,
            Err(busy) => return Ok(busy),
        };
        let verdict = match self.post(&body, &token).await? {
            Verdict::Unauthorized {
                status: 401,
                reason,
            } => {
                tracing::info!(provider = "fcm", %reason, "access token refused; fetching another");
                let token = match self.access_token(Some(&token)).await? {
                    Ok(token) => token,
                    Err(busy) => return Ok(busy),
                };
                self.post(&body, &token).await?
            }
            verdict => verdict,
        };
        verdict.into_result()
    }

    /// The access token to use: the cached one unless it is near expiry or
    /// is `refused`, else a new one. `Err(outcome)`: the token endpoint is
    /// busy, and the push is to be retried.
    async fn access_token(&self, refused: Option<&str>) -> Result<Result<String, Outcome>> {
        let mut cached = self.token.lock().await;
        if let Some(current) = cached.as_ref() {
            let was_refused = refused == Some(current.token.as_str());
            if !was_refused && Instant::now() < current.refresh_at {
                return Ok(Ok(current.token.clone()));
            }
        }
        *cached = None;
        match account::fetch(&self.http, &self.account).await? {
            account::Fetched::Token(token) => {
                let value = token.token.clone();
                *cached = Some(token);
                Ok(Ok(value))
            }
            account::Fetched::Busy(outcome) => Ok(Err(outcome)),
        }
    }

    async fn post(&self, body: &serde_json::Value, token: &str) -> Result<Verdict> {
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.base.as_str().trim_end_matches('/'),
            self.account.project_id()
        );
        let request = self
            .http
            .post(url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .json(body);
        let reply = exchange(request).await?;
        let verdict = verdict(reply.status, &reply.headers, &reply.body, SystemTime::now());
        tracing::debug!(
            provider = "fcm",
            status = reply.status,
            outcome = verdict.label(),
            "push answered"
        );
        Ok(verdict)
    }
}

impl fmt::Debug for FcmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmClient")
            .field("base", &self.base.as_str())
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Sent {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorStatus,
}

#[derive(Deserialize, Default)]
struct ErrorStatus {
    status: Option<String>,
    message: Option<String>,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
}

/// Reads FCM's answer to a send.
fn verdict(status: u16, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Verdict {
    if status == 200 {
        let id = serde_json::from_slice::<Sent>(body)
            .ok()
            .and_then(|s| s.name);
        return Verdict::Done(Outcome::Accepted { id });
    }
    let error = serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_default()
        .error;
    // The FCM code where there is one (`UNREGISTERED`), else the canonical
    // status (`NOT_FOUND`).
    let code = error
        .details
        .iter()
        .find_map(|d| d.error_code.clone())
        .or(error.status.clone())
        .unwrap_or_default();
    let is = |name: &str| code == name || error.status.as_deref() == Some(name);
    let reason = match &error.message {
        Some(message) => reason_text(format!("{code}: {message}").as_bytes()),
        None if !code.is_empty() => code.clone(),
        None => reason_text(body),
    };
    if status == 404 || is("UNREGISTERED") || is("NOT_FOUND") {
        Verdict::Done(Outcome::Gone { reason })
    } else if status == 401 {
        Verdict::Unauthorized { status, reason }
    } else if status == 403 && is("SENDER_ID_MISMATCH") {
        Verdict::Done(Outcome::Rejected { status, reason })
    } else if status == 403 {
        Verdict::Unauthorized { status, reason }
    } else if status == 429
        || (500..=599).contains(&status)
        || is("UNAVAILABLE")
        || is("INTERNAL")
        || is("QUOTA_EXCEEDED")
    {
        Verdict::Done(Outcome::Retry {
            after: retry_after(headers, now),
            reason,
        })
    } else {
        Verdict::Done(Outcome::Rejected { status, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    fn fcm_error(code: u16, status: &str, error_code: Option<&str>) -> Vec<u8> {
        let details = match error_code {
            Some(c) => serde_json::json!([{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": c
            }]),
            None => serde_json::json!([]),
        };
        serde_json::to_vec(&serde_json::json!({"error": {
            "code": code, "message": "m", "status": status, "details": details
        }}))
        .unwrap()
    }

    #[test]
    fn answers_map_to_outcomes() {
        let now = SystemTime::now();
        let none = HeaderMap::new();
        let ok = verdict(200, &none, br#"{"name":"projects/p/messages/1"}"#, now);
        assert_eq!(
            ok,
            Verdict::Done(Outcome::Accepted {
                id: Some("projects/p/messages/1".into())
            })
        );
        let gone = [
            (404, fcm_error(404, "NOT_FOUND", Some("UNREGISTERED"))),
            (
                400,
                fcm_error(400, "INVALID_ARGUMENT", Some("UNREGISTERED")),
            ),
            (404, b"not json".to_vec()),
        ];
        for (status, body) in gone {
            match verdict(status, &none, &body, now) {
                Verdict::Done(Outcome::Gone { .. }) => {}
                other => panic!("{status}: {other:?}"),
            }
        }
        match verdict(
            404,
            &none,
            &fcm_error(404, "NOT_FOUND", Some("UNREGISTERED")),
            now,
        ) {
            Verdict::Done(Outcome::Gone { reason }) => assert_eq!(reason, "UNREGISTERED: m"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            verdict(401, &none, &fcm_error(401, "UNAUTHENTICATED", None), now),
            Verdict::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            verdict(403, &none, &fcm_error(403, "PERMISSION_DENIED", None), now),
            Verdict::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            verdict(
                403,
                &none,
                &fcm_error(403, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH")),
                now
            ),
            Verdict::Done(Outcome::Rejected { status: 403, .. })
        ));
        let mut later = HeaderMap::new();
        later.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        for (status, body) in [
            (
                429,
                fcm_error(429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED")),
            ),
            (503, fcm_error(503, "UNAVAILABLE", Some("UNAVAILABLE"))),
            (500, fcm_error(500, "INTERNAL", Some("INTERNAL"))),
        ] {
            match verdict(status, &later, &body, now) {
                Verdict::Done(Outcome::Retry { after, .. }) => {
                    assert_eq!(after, Some(Duration::from_secs(30)))
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        assert!(matches!(
            verdict(
                400,
                &none,
                &fcm_error(400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT")),
                now
            ),
            Verdict::Done(Outcome::Rejected { status: 400, .. })
        ));
    }
}
