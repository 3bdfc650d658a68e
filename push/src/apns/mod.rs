//! APNs, Apple Push Notification service, over HTTP/2 with token-based
//! authentication, as Apple's "Sending notification requests to APNs",
//! "Establishing a token-based connection to APNs" and "Handling
//! notification responses from APNs" describe it.
//!
//! A push is `POST {base}/3/device/{device token}` with the provider token
//! ([`ApnsKey`], reused for 50 minutes) as `authorization: bearer <jwt>`, the
//! `apns-*` headers of an [`ApnsNotification`] and its JSON payload. APNs
//! speaks HTTP/2 only: the caller's `reqwest::Client` must offer ALPN `h2`
//! (with a preconfigured rustls config, `alpn_protocols = [b"h2"]`); the
//! request asks for HTTP/2, so a connection that did not negotiate it fails
//! rather than speaking HTTP/1.1 to Apple.
//!
//! Answers: 200 accepted (with the `apns-id`); 410, or 400 `BadDeviceToken`
//! or `DeviceTokenNotForTopic`, the device is gone; 403
//! `ExpiredProviderToken` or `InvalidProviderToken` makes a new token and
//! sends once more, and any 403 left is [`crate::Error::Unauthorized`]
//! (every 403 reason is about the app's key, not the push); 429 and 5xx are
//! worth a retry (after `Retry-After` if APNs sent one); anything else
//! refuses this push with APNs's `reason`.

mod notification;
mod token;

use std::fmt;
use std::time::{Instant, SystemTime};

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use url::Url;

use crate::answer::{exchange, reason_text, retry_after, Verdict};
use crate::{Outcome, Result};

pub use notification::{
    new_apns_id, validate_bundle_id, validate_device_token, Alert, ApnsNotification, ApnsPayload,
    Priority, PushType, MAX_COLLAPSE_ID, MAX_PAYLOAD, MAX_VOIP_PAYLOAD,
};
pub use token::{ApnsKey, TOKEN_REFRESH};

/// APNs production: apps from the App Store and TestFlight.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// APNs sandbox: development builds.
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";

/// Sends pushes for one app key (one team; any of its bundle ids).
pub struct ApnsClient {
    http: reqwest::Client,
    base: Url,
    key: ApnsKey,
    tokens: token::TokenCache,
}

#[derive(Deserialize)]
struct ErrorBody {
    reason: Option<String>,
}

impl ApnsClient {
    /// `base` is [`PRODUCTION_URL`] or [`SANDBOX_URL`] (or a test server).
    pub fn new(http: reqwest::Client, base: Url, key: ApnsKey) -> Self {
        ApnsClient {
            http,
            base,
            key,
            tokens: token::TokenCache::default(),
        }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn key(&self) -> &ApnsKey {
        &self.key
    }

    /// Sends one push and says what APNs answered.
    pub async fn send(&self, notification: &ApnsNotification) -> Result<Outcome> {
        let payload = notification.validate()?;
        let token = self
            .tokens
            .get(&self.key, Instant::now(), SystemTime::now())?;
        let verdict = match self.post(notification, &payload, &token).await? {
            Verdict::Unauthorized { reason, .. }
                if reason == "ExpiredProviderToken" || reason == "InvalidProviderToken" =>
            {
                tracing::info!(
                    provider = "apns",
                    key_id = %self.key.key_id(),
                    %reason,
                    "provider token refused; signing a new one"
                );
                self.tokens.invalidate(&token);
                let token = self
                    .tokens
                    .get(&self.key, Instant::now(), SystemTime::now())?;
                self.post(notification, &payload, &token).await?
            }
            verdict => verdict,
        };
        verdict.into_result()
    }

    async fn post(&self, n: &ApnsNotification, payload: &[u8], token: &str) -> Result<Verdict> {
        let url = format!(
            "{}/3/device/{}",
            self.base.as_str().trim_end_matches('/'),
            n.device_token
        );
        let mut request = self
            .http
            .post(url)
            .version(reqwest::Version::HTTP_2)
            .header(AUTHORIZATION, format!("bearer {token}"))
            .header("apns-topic", n.topic())
            .header("apns-push-type", n.push_type.as_str())
            .header("apns-priority", u16::from(n.priority().as_u8()))
            .header("apns-id", &n.apns_id)
            .header(CONTENT_TYPE, "application/json")
            .body(payload.to_vec());
        if let Some(expiration) = n.expiration {
            request = request.header("apns-expiration", expiration);
        }
        if let Some(collapse) = &n.collapse_id {
            request = request.header("apns-collapse-id", collapse);
        }
        let reply = exchange(request).await?;
        let verdict = verdict(
            reply.status,
            &reply.headers,
            &reply.body,
            &n.apns_id,
            SystemTime::now(),
        );
        tracing::debug!(
            provider = "apns",
            apns_id = %n.apns_id,
            status = reply.status,
            outcome = verdict.label(),
            "push answered"
        );
        Ok(verdict)
    }
}

/// Reads APNs's answer to a push ("Handling notification responses from
/// APNs": the status, `apns-id`, and a JSON body with a `reason`).
fn verdict(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    apns_id: &str,
    now: SystemTime,
) -> Verdict {
    let reason = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.reason)
        .map(|r| reason_text(r.as_bytes()))
        .unwrap_or_else(|| reason_text(body));
    match status {
        200 => Verdict::Done(Outcome::Accepted {
            id: Some(
                headers
                    .get("apns-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(apns_id)
                    .to_owned(),
            ),
        }),
        410 => Verdict::Done(Outcome::Gone { reason }),
        400 if reason == "BadDeviceToken" || reason == "DeviceTokenNotForTopic" => {
            Verdict::Done(Outcome::Gone { reason })
        }
        403 => Verdict::Unauthorized { status, reason },
        429 | 500..=599 => Verdict::Done(Outcome::Retry {
            after: retry_after(headers, now),
            reason: format!("{status} {reason}").trim().to_owned(),
        }),
        _ => Verdict::Done(Outcome::Rejected { status, reason }),
    }
}

impl fmt::Debug for ApnsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsClient")
            .field("base", &self.base.as_str())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    const ID: &str = "0a1b2c3d-0000-4000-8000-000000000001";

    fn reason(r: &str) -> Vec<u8> {
        format!(r#"{{"reason":"{r}"}}"#).into_bytes()
    }

    #[test]
    fn answers_map_to_outcomes() {
        let now = SystemTime::now();
        let none = HeaderMap::new();
        let mut echoed = HeaderMap::new();
        echoed.insert("apns-id", HeaderValue::from_static(ID));
        assert_eq!(
            verdict(200, &echoed, b"", ID, now),
            Verdict::Done(Outcome::Accepted {
                id: Some(ID.into())
            })
        );
        let gone = [
            (410, reason("Unregistered")),
            (400, reason("BadDeviceToken")),
            (400, reason("DeviceTokenNotForTopic")),
        ];
        for (status, body) in gone {
            assert!(
                matches!(
                    verdict(status, &none, &body, ID, now),
                    Verdict::Done(Outcome::Gone { .. })
                ),
                "{status}"
            );
        }
        assert_eq!(
            verdict(403, &none, &reason("ExpiredProviderToken"), ID, now),
            Verdict::Unauthorized {
                status: 403,
                reason: "ExpiredProviderToken".into()
            }
        );
        let mut later = HeaderMap::new();
        later.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        for status in [429, 500, 503] {
            match verdict(status, &later, &reason("ServiceUnavailable"), ID, now) {
                Verdict::Done(Outcome::Retry { after, .. }) => {
                    assert_eq!(after, Some(Duration::from_secs(2)))
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        assert_eq!(
            verdict(413, &none, &reason("PayloadTooLarge"), ID, now),
            Verdict::Done(Outcome::Rejected {
                status: 413,
                reason: "PayloadTooLarge".into()
            })
        );
        assert_eq!(
            verdict(400, &none, &reason("BadCollapseId"), ID, now),
            Verdict::Done(Outcome::Rejected {
                status: 400,
                reason: "BadCollapseId".into()
            })
        );
    }
}
