//! Floods: how much one principal, one client address and everyone together
//! may ask of this node.
//!
//! - A user's commands — real-time frames on any of its connections and REST
//!   requests with its token — draw from one token bucket per (app, user):
//!   `rate_per_second`, bursts of `rate_burst`.
//! - An app's API keys (REST and the Admin gRPC API) draw from one bucket per
//!   app (`api_key_rate_per_second`, `api_key_rate_burst`); the operator secret
//!   from one of its own with the same rate.
//! - Failed authentications a guesser would produce (an unknown API key, a
//!   wrong operator secret, a token that is malformed, names no key or fails
//!   its signature — on REST, the Admin API or a real-time `connect`; not a
//!   correctly signed token refused as expired or revoked, see
//!   [`is_auth_failure`]) drain a bucket per client address — an
//!   IPv6 address by its /64 — of `auth_failures_per_minute`; while it is empty
//!   every authentication from that address is refused `rate_limited`, a right
//!   guess included.
//! - Requests in progress (REST and Admin gRPC) are capped by
//!   `max_concurrent_requests`; past it, `unavailable` at once. Each one has
//!   `request_timeout` to be answered, its body read included, before it is
//!   answered `unavailable` and its slot freed (the middleware in `server.rs`).
//!
//! All of it is per node: N nodes allow N times the rate.
//!
//! A bucket that has refilled is the same as no bucket, so full ones are swept
//! once the map has doubled since the last sweep: the maps hold only the keys
//! active in the last `burst / rate` seconds, plus a bounded slack.

use std::future::Future;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use mkondo_proto::{ErrorCode, Reason};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::origins::BrowserOrigin;
use super::Node;
use crate::auth::TokenClaims;
use crate::config::{Config, IpRange};
use crate::error::{Error, Result};

/// The fewest keys a map holds before it is swept.
const SWEEP_AT_LEAST: usize = 1024;
/// What an overloaded node tells a client to wait (ms).
const OVERLOADED_RETRY_MS: u32 = 1000;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
        }
    }
}

impl Bucket {
    pub fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.at = now;
    }

    /// How long until a token is there (ms, at least 1).
    fn wait_ms(&self, rate: Rate) -> u32 {
        let ms = ((1.0 - self.tokens) / rate.per_second * 1000.0).ceil();
        ms.clamp(1.0, f64::from(u32::MAX)) as u32
    }

    /// Takes one token, or says how long until one is there (ms).
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), u32> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_ms(rate))
        }
    }

    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let mut b = self.clone();
        b.refill(rate, now);
        b.tokens >= rate.burst
    }
}

/// Token buckets by key, swept of full ones (see the module doc).
pub struct KeyedBuckets<K: Hash + Eq> {
    rate: Rate,
    map: DashMap<K, Bucket>,
    sweep_at: AtomicUsize,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            map: DashMap::new(),
            sweep_at: AtomicUsize::new(SWEEP_AT_LEAST),
        }
    }

    pub fn take(&self, key: &K, now: Instant) -> Result<(), u32> {
        let result = self.with(key, now, |b, rate| b.take(rate, now));
        self.maybe_sweep(now);
        result
    }

    /// Takes a token if `key` has a bucket that is still draining: `Ok(true)`;
    /// `Ok(false)` when it has none, and nothing is taken or made. A bucket that
    /// has refilled is the same as none: it is dropped here, not left to hold
    /// units until a sweep.
    pub fn take_if_present(&self, key: &K, now: Instant) -> Result<bool, u32> {
        let rate = self.rate;
        if self
            .map
            .remove_if(key, |_, b| b.is_full(rate, now))
            .is_some()
        {
            return Ok(false);
        }
        match self.map.get_mut(key) {
            Some(mut b) => b.take(self.rate, now).map(|()| true),
            None => Ok(false),
        }
    }

    /// Gives back a token taken by `take_if_present`.
    pub fn refund(&self, key: &K, now: Instant) {
        if let Some(mut b) = self.map.get_mut(key) {
            b.refill(self.rate, now);
            b.tokens = (b.tokens + 1.0).min(self.rate.burst);
        }
    }

    fn with<T>(&self, key: &K, now: Instant, f: impl FnOnce(&mut Bucket, Rate) -> T) -> T {
        if let Some(mut b) = self.map.get_mut(key) {
            return f(&mut b, self.rate);
        }
        let mut entry = self
            .map
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(self.rate, now));
        f(&mut entry, self.rate)
    }

    fn maybe_sweep(&self, now: Instant) {
        let at = self.sweep_at.load(Ordering::Relaxed);
        if self.map.len() < at {
            return;
        }
        let rate = self.rate;
        self.map.retain(|_, b| !b.is_full(rate, now));
        let next = (self.map.len() * 2).max(SWEEP_AT_LEAST);
        self.sweep_at.store(next, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Whom an API-key or operator request is charged to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Backend {
    App(String),
    Operator,
}

/// The node's flood limits (see the module doc).
pub(crate) struct Floods {
    users: KeyedBuckets<(String, String)>,
    backends: KeyedBuckets<Backend>,
    failures: KeyedBuckets<IpAddr>,
    requests: Arc<Semaphore>,
    trusted_proxies: Vec<IpRange>,
}

impl Floods {
    pub(crate) fn new(config: &Config) -> Self {
        let l = &config.limits;
        Self {
            users: KeyedBuckets::new(Rate::new(f64::from(l.rate_per_second), l.rate_burst)),
            backends: KeyedBuckets::new(Rate::new(
                f64::from(l.api_key_rate_per_second),
                l.api_key_rate_burst,
            )),
            failures: KeyedBuckets::new(Rate::new(
                f64::from(l.auth_failures_per_minute) / 60.0,
                l.auth_failures_per_minute,
            )),
            requests: Arc::new(Semaphore::new(l.max_concurrent_requests)),
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }
}

impl Floods {
    /// The key of an address's failure budget: an IPv4 address itself (an
    /// IPv4-mapped IPv6 address as its IPv4 address), an IPv6 address its /64 —
    /// the smallest block one subscriber is given, so holding one does not give
    /// 2^64 budgets.
    fn failure_key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
            v4 => v4,
        }
    }

    /// Holds a unit of the address's failure budget while an authentication is
    /// in progress, if the address failed lately (see [`Node::guard_auth`]).
    fn hold_for_auth(&self, ip: IpAddr, now: Instant) -> Result<bool, u32> {
        self.failures.take_if_present(&Self::failure_key(ip), now)
    }

    /// Counts a failed authentication from the address.
    fn count_failure(&self, ip: IpAddr, now: Instant) {
        let _ = self.failures.take(&Self::failure_key(ip), now);
    }

    /// Gives back a unit held by [`Floods::hold_for_auth`].
    fn release_hold(&self, ip: IpAddr, now: Instant) {
        self.failures.refund(&Self::failure_key(ip), now);
    }
}

/// The address a request comes from, as far as this node can tell (see
/// [`Node::client_addr`]); `None` when the transport did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

/// An authentication failure a guesser would produce: counted per address.
/// Only a credential that could not be checked as genuine counts — a token
/// that is malformed, names no key or fails its signature, an unknown API key,
/// a wrong operator secret. A refusal that needs a correctly signed token
/// (expired, not yet valid, revoked, a deleted or unknown user, a claim
/// refused after the signature checked out) is no guess: counting it would let
/// clients behind one address reconnecting with stale tokens lock out everyone
/// there. Nor is an unusable stored key (the server's fault), nor a request
/// without credentials.
fn is_auth_failure(err: &Error) -> bool {
    matches!(
        err.code,
        ErrorCode::Unauthenticated | ErrorCode::InvalidToken | ErrorCode::TokenExpired
    ) && matches!(
        err.reason,
        Reason::Malformed
            | Reason::AlgNone
            | Reason::MissingKid
            | Reason::UnknownKid
            | Reason::AlgMismatch
            | Reason::BadSignature
            | Reason::InvalidApiKey
            | Reason::InvalidOperatorSecret
    )
}

impl Node {
    /// The client's address: the TCP peer, or — when the peer is a trusted proxy
    /// (`--trusted-proxies`) — the rightmost `X-Forwarded-For` entry that is not
    /// itself a trusted proxy. From any other peer the header is ignored.
    pub fn client_addr(&self, peer: Option<SocketAddr>, forwarded_for: &[&str]) -> ClientAddr {
        let Some(peer) = peer.map(|p| p.ip().to_canonical()) else {
            return ClientAddr(None);
        };
        let trusted = |ip: &IpAddr| self.is_trusted_proxy(*ip);
        if !trusted(&peer) {
            return ClientAddr(Some(peer));
        }
        let hops = forwarded_for
            .iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
                // Garbage in the chain: trust nothing to its left.
                break;
            };
            if !trusted(&ip) {
                return ClientAddr(Some(ip));
            }
        }
        ClientAddr(Some(peer))
    }

    /// Whether `ip` is one of `--trusted-proxies`, whose forwarded headers
    /// are believed.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.floods.trusted_proxies.iter().any(|r| r.contains(ip))
    }

    /// Runs an authentication for a client address: refused at once while the
    /// address is over its failures, and counted when it fails as a guess would.
    /// An address that failed lately (its bucket has not refilled) holds a unit
    /// of its budget for each authentication in progress, given back on success:
    /// guesses sent at once cannot outrun the budget. One that never failed, or
    /// whose bucket has refilled since, holds nothing, so a backend's many
    /// requests at once are not held back.
    pub async fn guard_auth<T>(
        &self,
        from: ClientAddr,
        auth: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let Some(ip) = from.0 else {
            return auth.await;
        };
        let floods = &self.floods;
        let held = floods
            .hold_for_auth(ip, Instant::now())
            .map_err(too_many_failures)?;
        let result = auth.await;
        let failed = matches!(&result, Err(err) if is_auth_failure(err));
        match (failed, held) {
            (true, false) => floods.count_failure(ip, Instant::now()),
            (false, true) => floods.release_hold(ip, Instant::now()),
            _ => {}
        }
        result
    }

    /// An API-key request: the key's app, once the key is checked (guarded per
    /// address) and the app's budget has room.
    /// A browser's origin is checked against the key's app after that, before
    /// the request does anything.
    pub async fn api_key_request(
        &self,
        key: &str,
        from: ClientAddr,
        origin: Option<&BrowserOrigin>,
    ) -> Result<String> {
        let app = self.guard_auth(from, self.app_for_api_key(key)).await?;
        self.charge_backend(Backend::App(app.clone()))?;
        self.check_origin(&app, origin).await?;
        Ok(app)
    }

    /// A user-token request: its claims, once the token is checked (guarded per
    /// address) and the user's budget — shared with its live connections — has room.
    /// A browser's origin is checked once the token names the app.
    pub async fn user_request(
        &self,
        token: &str,
        from: ClientAddr,
        origin: Option<&BrowserOrigin>,
    ) -> Result<TokenClaims> {
        let claims = self
            .guard_auth(from, self.authenticate_user_request(token, origin))
            .await?;
        self.user_command(&claims.app_id, &claims.user_id)
            .map_err(Error::rate_limited)?;
        Ok(claims)
    }

    /// An operator request: `not_found` while the operator API is off (nothing
    /// counted), then the secret checked (guarded per address) and charged.
    pub async fn operator_request(&self, given: &str, from: ClientAddr) -> Result<()> {
        self.require_operator_api()?;
        self.guard_auth(from, async { self.check_operator_secret(given) })
            .await?;
        self.charge_backend(Backend::Operator)
    }

    /// One command of a user (a real-time frame or a REST request), or how long
    /// to wait for one (ms).
    pub fn user_command(&self, app: &str, user: &str) -> std::result::Result<(), u32> {
        self.floods
            .users
            .take(&(app.to_owned(), user.to_owned()), Instant::now())
    }

    fn charge_backend(&self, who: Backend) -> Result<()> {
        self.floods
            .backends
            .take(&who, Instant::now())
            .map_err(Error::rate_limited)
    }

    /// A slot for one request in progress (`max_concurrent_requests`), held until
    /// its answer is ready; `unavailable` with a retry hint when none is free.
    pub fn request_slot(&self) -> Result<OwnedSemaphorePermit> {
        self.floods
            .requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                let mut err = Error::new(
                    ErrorCode::Unavailable,
                    "the server is at its limit of requests in progress, retry",
                );
                err.retry_after_ms = OVERLOADED_RETRY_MS;
                err
            })
    }
}

fn too_many_failures(wait_ms: u32) -> Error {
    let mut err = Error::rate_limited(wait_ms);
    err.message = "too many failed authentications from this address".to_owned();
    err
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_burst_then_limits() {
        let rate = Rate::new(20.0, 50);
        let now = Instant::now();
        let mut b = Bucket::full(rate, now);
        for _ in 0..50 {
            assert!(b.take(rate, now).is_ok());
        }
        let wait = b.take(rate, now).unwrap_err();
        assert!(wait > 0 && wait <= 50, "retry after {wait} ms");
        assert!(b.take(rate, now + Duration::from_millis(60)).is_ok());
    }

    #[test]
    fn keyed_buckets_are_separate_and_swept_when_full() {
        let buckets = KeyedBuckets::new(Rate::new(1.0, 2));
        let now = Instant::now();
        assert!(buckets.take(&1, now).is_ok());
        assert!(buckets.take(&1, now).is_ok());
        assert!(buckets.take(&1, now).is_err());
        assert!(buckets.take(&2, now).is_ok(), "another key has its own");
        assert_eq!(
            buckets.take_if_present(&3, now),
            Ok(false),
            "no bucket, none made"
        );
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets.take_if_present(&2, now), Ok(true));
        assert!(buckets.take_if_present(&2, now).is_err(), "spent");
        buckets.refund(&2, now);
        assert_eq!(buckets.take_if_present(&2, now), Ok(true), "given back");

        // Thousands of one-off keys: idle (refilled) ones are swept, so the map
        // stays bounded; a key still draining survives the sweep.
        let later = now + Duration::from_secs(10);
        for k in 10..10_000 {
            let _ = buckets.take(&k, later + Duration::from_secs(k as u64 * 3));
        }
        assert!(
            buckets.len() <= 2 * SWEEP_AT_LEAST,
            "{} keys",
            buckets.len()
        );
    }

    /// A bucket that has refilled holds nothing: an address that failed once,
    /// long ago, is not held to its burst of authentications in progress, and
    /// the full bucket is dropped at once rather than at the next sweep.
    #[test]
    fn a_refilled_bucket_is_as_no_bucket() {
        let buckets = KeyedBuckets::new(Rate::new(1.0, 2));
        let now = Instant::now();
        assert!(buckets.take(&1, now).is_ok());
        assert_eq!(buckets.take_if_present(&1, now), Ok(true), "draining: held");
        buckets.refund(&1, now);
        let later = now + Duration::from_secs(3600);
        for _ in 0..10 {
            assert_eq!(
                buckets.take_if_present(&1, later),
                Ok(false),
                "refilled long ago: nothing held, however many at once"
            );
        }
        assert_eq!(buckets.len(), 0, "the full bucket is dropped");
        // Refilled only partly: still held.
        assert!(buckets.take(&2, later).is_ok());
        assert!(buckets.take(&2, later).is_ok());
        let soon = later + Duration::from_millis(1500);
        assert_eq!(buckets.take_if_present(&2, soon), Ok(true));
    }

    /// What counts as a guess: every reason the auth code gives, sorted.
    #[test]
    fn only_a_guessers_failures_count() {
        use crate::auth::TokenError;
        let token = |e: TokenError| Error::from(e);
        for guess in [
            token(TokenError::Malformed),
            token(TokenError::AlgNone),
            token(TokenError::MissingKid),
            token(TokenError::UnknownKid),
            token(TokenError::AlgMismatch),
            token(TokenError::BadSignature),
            Error::unauthenticated("x").with_reason(Reason::InvalidApiKey),
            Error::unauthenticated("x").with_reason(Reason::InvalidOperatorSecret),
        ] {
            assert!(is_auth_failure(&guess), "{guess:?} is a guess");
        }
        for signed in [
            token(TokenError::Expired),
            token(TokenError::NotYetValid),
            token(TokenError::MissingSub),
            token(TokenError::InvalidSub),
            token(TokenError::MissingApp),
            token(TokenError::WrongApp),
            token(TokenError::MissingExp),
            token(TokenError::LifetimeTooLong),
            token(TokenError::KeyUnusable),
            Error::new(ErrorCode::InvalidToken, "x").with_reason(Reason::Revoked),
            Error::new(ErrorCode::InvalidToken, "x").with_reason(Reason::UserDeleted),
            Error::unauthenticated("x").with_reason(Reason::UnknownUser),
            Error::denied("x").with_reason(Reason::UserDeactivated),
            Error::unauthenticated("x").with_reason(Reason::MissingCredentials),
            Error::new(ErrorCode::NotFound, "x").with_reason(Reason::OperatorApiOff),
            Error::new(ErrorCode::Unavailable, "x"),
        ] {
            assert!(!is_auth_failure(&signed), "{signed:?} is no guess");
        }
    }

    fn floods_with_failures_per_minute(n: u32) -> Floods {
        let args = crate::config::ServeArgs {
            auth_failures_per_minute: Some(n),
            ..Default::default()
        };
        Floods::new(&args.resolve().unwrap())
    }

    /// IPv6 addresses share a failure budget per /64 (one subscriber's
    /// allocation); IPv4 addresses have one each, an IPv4-mapped IPv6 address
    /// counting as its IPv4 address.
    #[test]
    fn the_failure_budget_is_per_ipv4_address_and_per_ipv6_64() {
        let floods = floods_with_failures_per_minute(2);
        let now = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        floods.count_failure(ip("2001:db8:1:2::1"), now);
        floods.count_failure(ip("2001:db8:1:2:ffff:ffff:ffff:fffe"), now);
        assert!(
            floods
                .hold_for_auth(ip("2001:db8:1:2:abcd::7"), now)
                .is_err(),
            "another address of the same /64 is over the shared budget"
        );
        assert_eq!(
            floods.hold_for_auth(ip("2001:db8:1:3::1"), now),
            Ok(false),
            "another /64 has its own"
        );

        floods.count_failure(ip("192.0.2.1"), now);
        floods.count_failure(ip("192.0.2.1"), now);
        assert!(floods.hold_for_auth(ip("192.0.2.1"), now).is_err());
        assert!(
            floods.hold_for_auth(ip("::ffff:192.0.2.1"), now).is_err(),
            "an IPv4-mapped address is its IPv4 address"
        );
        assert_eq!(
            floods.hold_for_auth(ip("192.0.2.2"), now),
            Ok(false),
            "the next IPv4 address has its own"
        );
    }
}
