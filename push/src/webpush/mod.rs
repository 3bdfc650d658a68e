//! Web Push: the Generic Event Delivery protocol of RFC 8030 ("Generic Event
//! Delivery Using HTTP Push", section 5: `POST` to the subscription's
//! endpoint with `TTL`, `Urgency` and `Topic`), the payload encrypted by RFC
//! 8291 (`ece.rs`: aes128gcm, one record) and signed by RFC 8292 VAPID
//! ([`VapidKey`]).
//!
//! There is no base URL: a subscription's endpoint, which the browser got
//! from its push service, is the URL. Endpoints come from users, so the
//! caller's `reqwest::Client` is the server's outbound one, which reaches
//! public addresses only. The endpoint is itself a capability (whoever knows
//! it can push), so `Debug` shows its origin alone, and never the
//! subscription's auth secret.
//!
//! Answers (RFC 8030 sections 5, 7 and 8.4): 2xx accepted; 404 or 410 the
//! subscription is gone; 429 and 5xx worth a retry (after `Retry-After` when
//! given); any other 4xx refuses this push for good (413: too large; 401 or
//! 403: the VAPID key is not the one the subscription was made with).

mod ece;
mod vapid;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use p256::PublicKey;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, LOCATION};
use url::Url;

use crate::answer::{decode_b64url, exchange, reason_text, retry_after, unix_seconds};
use crate::{Error, Outcome, Result};

pub use ece::{MAX_PLAINTEXT, RECORD_SIZE};
pub use vapid::VapidKey;

/// The longest endpoint URL taken.
pub const MAX_ENDPOINT_LEN: usize = 2048;
/// The longest `Topic` (RFC 8030 section 5.4).
pub const MAX_TOPIC_LEN: usize = 32;
/// How long a VAPID token is made valid for (RFC 8292: at most 24 hours).
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A cached VAPID token is replaced when it has less than this left.
const TOKEN_MARGIN: Duration = Duration::from_secs(3600);
/// The most push-service origins whose token is kept (browsers use a few).
const MAX_CACHED_ORIGINS: usize = 64;

/// A browser's push subscription: `PushSubscription.toJSON()`'s `endpoint`
/// and `keys.p256dh` / `keys.auth`.
#[derive(Clone)]
pub struct Subscription {
    endpoint: Url,
    p256dh: PublicKey,
    auth: [u8; 16],
}

impl Subscription {
    /// Checks and takes a subscription: an `https` (or, for tests, `http`)
    /// endpoint of at most [`MAX_ENDPOINT_LEN`] bytes, a `p256dh` that is an
    /// uncompressed P-256 point and a 16-byte `auth`, both base64url.
    pub fn new(endpoint: &str, p256dh: &str, auth: &str) -> Result<Self> {
        if endpoint.len() > MAX_ENDPOINT_LEN {
            return Err(Error::invalid(
                "endpoint",
                format!("longer than {MAX_ENDPOINT_LEN} bytes"),
            ));
        }
        let endpoint = Url::parse(endpoint)
            .map_err(|e| Error::invalid("endpoint", format!("not a URL: {e}")))?;
        if !matches!(endpoint.scheme(), "https" | "http") || endpoint.host().is_none() {
            return Err(Error::invalid(
                "endpoint",
                "must be an https URL with a host",
            ));
        }
        if !endpoint.username().is_empty() || endpoint.password().is_some() {
            return Err(Error::invalid("endpoint", "must not carry credentials"));
        }
        let key = decode_b64url("p256dh", p256dh)?;
        if key.len() != 65 || key[0] != 4 {
            return Err(Error::invalid(
                "p256dh",
                "must be an uncompressed P-256 point (65 bytes)",
            ));
        }
        let p256dh = PublicKey::from_sec1_bytes(&key)
            .map_err(|_| Error::invalid("p256dh", "not a point on P-256"))?;
        let auth: [u8; 16] = decode_b64url("auth", auth)?
            .try_into()
            .map_err(|_| Error::invalid("auth", "must be 16 bytes"))?;
        Ok(Subscription {
            endpoint,
            p256dh,
            auth,
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("origin", &self.endpoint.origin().ascii_serialization())
            .finish_non_exhaustive()
    }
}

/// How soon the user agent should be woken for a message (RFC 8030 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Urgency {
    VeryLow,
    Low,
    #[default]
    Normal,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

/// One push to one subscription.
#[derive(Debug, Clone, Default)]
pub struct WebPushMessage {
    /// The plaintext the service worker's `push` event gets (at most
    /// [`MAX_PLAINTEXT`] bytes).
    pub payload: Vec<u8>,
    /// How long the push service keeps the message for an offline user
    /// agent (`TTL`, whole seconds; zero: deliver now or drop).
    pub ttl: Duration,
    pub urgency: Urgency,
    /// A message with the same `Topic` replaces one the push service still
    /// holds (the collapse key): at most [`MAX_TOPIC_LEN`] base64url
    /// characters.
    pub topic: Option<String>,
}

impl WebPushMessage {
    /// Checks what [`WebPushClient::send`] checks, without sending.
    pub fn validate(&self) -> Result<()> {
        if self.payload.len() > MAX_PLAINTEXT {
            return Err(Error::invalid(
                "payload",
                format!("{} bytes, more than {MAX_PLAINTEXT}", self.payload.len()),
            ));
        }
        if let Some(topic) = &self.topic {
            let base64url = topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if topic.is_empty() || topic.len() > MAX_TOPIC_LEN || !base64url {
                return Err(Error::invalid(
                    "topic",
                    format!("must be 1 to {MAX_TOPIC_LEN} base64url characters"),
                ));
            }
        }
        Ok(())
    }
}

/// Sends Web Push messages signed with one app's VAPID key.
pub struct WebPushClient {
    http: reqwest::Client,
    vapid: VapidKey,
    contact: String,
    /// Signed tokens per push-service origin, with their `exp`.
    tokens: Mutex<HashMap<String, (String, u64)>>,
}

impl WebPushClient {
    /// `contact` is the VAPID `sub`: `mailto:` or `https:`, where a push
    /// service's operator can reach the app's.
    pub fn new(http: reqwest::Client, vapid: VapidKey, contact: &str) -> Result<Self> {
        vapid::check_contact(contact)?;
        Ok(WebPushClient {
            http,
            vapid,
            contact: contact.to_owned(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn vapid(&self) -> &VapidKey {
        &self.vapid
    }

    /// Encrypts and sends one message, and says what the push service
    /// answered.
    pub async fn send(
        &self,
        subscription: &Subscription,
        message: &WebPushMessage,
    ) -> Result<Outcome> {
        message.validate()?;
        let body = ece::encrypt(&subscription.p256dh, &subscription.auth, &message.payload)?;
        let authorization = self.authorization(&subscription.endpoint, SystemTime::now())?;
        let mut request = self
            .http
            .post(subscription.endpoint.clone())
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("TTL", message.ttl.as_secs())
            .header("Urgency", message.urgency.as_str())
            .body(body);
        if let Some(topic) = &message.topic {
            request = request.header("Topic", topic);
        }
        let reply = exchange(request).await?;
        let (status, headers, body) = (reply.status, reply.headers, reply.body);
        let outcome = match status {
            200..=299 => Outcome::Accepted {
                id: headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            },
            404 | 410 => Outcome::Gone {
                reason: format!("{status} {}", reason_text(&body)).trim().to_owned(),
            },
            429 | 500..=599 => Outcome::Retry {
                after: retry_after(&headers, SystemTime::now()),
                reason: format!("{status} {}", reason_text(&body)).trim().to_owned(),
            },
            _ => Outcome::Rejected {
                status,
                reason: reason_text(&body),
            },
        };
        tracing::debug!(
            provider = "webpush",
            origin = %subscription.endpoint.origin().ascii_serialization(),
            status,
            outcome = outcome.label(),
            "push answered"
        );
        Ok(outcome)
    }

    /// The `Authorization` value for an endpoint: a token per origin, signed
    /// again when it has less than an hour left.
    fn authorization(&self, endpoint: &Url, now: SystemTime) -> Result<String> {
        let audience = endpoint.origin().ascii_serialization();
        let now = unix_seconds(now);
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, exp)) = tokens.get(&audience) {
            if *exp > now + TOKEN_MARGIN.as_secs() {
                return Ok(token.clone());
            }
        }
        let exp = now + TOKEN_LIFETIME.as_secs();
        let token = self.vapid.authorization(&audience, &self.contact, exp)?;
        if tokens.len() >= MAX_CACHED_ORIGINS {
            tokens.clear();
        }
        tokens.insert(audience, (token.clone(), exp));
        Ok(token)
    }
}

impl fmt::Debug for WebPushClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebPushClient")
            .field("vapid", &self.vapid)
            .field("contact", &self.contact)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::encode_b64url;

    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn subscriptions_are_checked() {
        let ok = Subscription::new("https://push.example.net/wpush/v2/abc", P256DH, AUTH).unwrap();
        assert_eq!(ok.endpoint().host_str(), Some("push.example.net"));
        let padded = format!("{AUTH}==");
        assert!(Subscription::new("https://push.example.net/x", P256DH, &padded).is_ok());

        let compressed = encode_b64url(&[2u8; 33]);
        let long = format!("https://push.example.net/{}", "a".repeat(MAX_ENDPOINT_LEN));
        let cases: [(&str, &str, &str, &str); 7] = [
            ("ftp://push.example.net/x", P256DH, AUTH, "endpoint"),
            ("not a url", P256DH, AUTH, "endpoint"),
            (
                "https://user:pw@push.example.net/x",
                P256DH,
                AUTH,
                "endpoint",
            ),
            (&long, P256DH, AUTH, "endpoint"),
            ("https://push.example.net/x", &compressed, AUTH, "p256dh"),
            ("https://push.example.net/x", P256DH, "AQID", "auth"),
            ("https://push.example.net/x", "!!", AUTH, "p256dh"),
        ];
        for (endpoint, key, auth, field) in cases {
            match Subscription::new(endpoint, key, auth) {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{endpoint}"),
                other => panic!("{endpoint}: {other:?}"),
            }
        }
    }

    #[test]
    fn topics_are_short_base64url() {
        let mut message = WebPushMessage {
            topic: Some("conv_01HX-abc".into()),
            ..Default::default()
        };
        assert!(message.validate().is_ok());
        for bad in ["", "has space", "a/b", &"x".repeat(33)] {
            message.topic = Some(bad.into());
            assert!(message.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_reused_per_origin_and_renewed_near_expiry() {
        let client = WebPushClient::new(
            reqwest::Client::new(),
            VapidKey::generate(),
            "mailto:ops@example.com",
        )
        .unwrap();
        let a = Url::parse("https://push.example.net/one").unwrap();
        let b = Url::parse("https://push.example.net/two").unwrap();
        let c = Url::parse("https://other.example.org/one").unwrap();
        let now = SystemTime::now();
        let first = client.authorization(&a, now).unwrap();
        assert_eq!(client.authorization(&b, now).unwrap(), first);
        assert_ne!(client.authorization(&c, now).unwrap(), first);
        let later = now + TOKEN_LIFETIME - TOKEN_MARGIN + Duration::from_secs(1);
        assert_ne!(client.authorization(&a, later).unwrap(), first);
    }

    #[test]
    fn debug_shows_neither_secret_nor_endpoint_path() {
        let sub = Subscription::new("https://push.example.net/secret-path", P256DH, AUTH).unwrap();
        let shown = format!("{sub:?}");
        assert!(shown.contains("https://push.example.net"));
        assert!(!shown.contains("secret-path"));
        assert!(!shown.contains(AUTH));
        let key = VapidKey::generate();
        let private = key.private_base64url();
        let client =
            WebPushClient::new(reqwest::Client::new(), key, "mailto:a@example.com").unwrap();
        let _ = client
            .authorization(sub.endpoint(), SystemTime::now())
            .unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains(&private));
        assert!(!shown.contains("vapid t="));
    }
}
