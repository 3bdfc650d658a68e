//! Clients for the three push providers a chat server needs to wake a
//! device whose app is not running: Apple's APNs ([`apns`]), Google's FCM
//! HTTP v1 API ([`fcm`]) and the Web Push protocol ([`webpush`]).
//!
//! The crate knows nothing of the node, the database or the outbox. A caller
//! hands each client a `reqwest::Client` (the server builds it with its own
//! resolver and rustls config; for APNs the config must offer ALPN `h2`) and
//! the provider's base URL (the real service by default, a loopback server in
//! tests), then sends one push at a time and gets back an [`Outcome`]: what
//! the provider said about that push. Whether and when to try again is the
//! caller's decision (its backoff, its queue); the crate only reports, and
//! retries on its own in one case: a credential the provider called expired
//! is renewed once and the push sent again.
//!
//! Secrets (private keys, provider tokens, access tokens, Web Push auth
//! secrets) never appear in `Debug` output or in logs.

mod answer;
pub mod apns;
mod error;
pub mod fcm;
mod outcome;
pub mod webpush;

pub use error::{Error, Result};
pub use outcome::Outcome;
