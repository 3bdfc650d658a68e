//! The token's life: which token to connect with, when to ask the provider, and
//! which of its answers to throw away.
//!
//! Rules: the provider is asked only when there is no usable token, when the
//! token nears its expiry (in-band refresh), or after the server rejected it as
//! expired; never twice at once (one fetch at a time, each with a deadline); an
//! answer for a connection that has gone is discarded.

use std::time::Duration;

use mkondo_proto::v1::{self, client_frame::Command};

use super::{requests::Purpose, ConnId, FetchId, Now, Phase, Session, SessionConfig};
use crate::backoff::Backoff;
use crate::error::Error;
use crate::event::{codes, Event};
use crate::rt::Instant;
use crate::TokenError;

/// What a fetch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchFor {
    Connect,
    Refresh(ConnId),
    /// Its connection or attempt is gone: the answer will be thrown away.
    Orphan,
}

#[derive(Debug)]
struct Fetch {
    id: FetchId,
    purpose: FetchFor,
    deadline: Instant,
}

pub(super) struct Tokens {
    token: Option<String>,
    /// When the server said the token expires, on the monotonic clock.
    expires: Option<Instant>,
    has_provider: bool,
    fetch: Option<Fetch>,
    next_fetch: FetchId,
    /// While connected: when to refresh in-band.
    refresh_at: Option<Instant>,
    refresh_backoff: Backoff,
    timeout: Duration,
}

/// The longest a refresh comes before the expiry.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

impl Tokens {
    pub(super) fn new(token: Option<String>, has_provider: bool, cfg: &SessionConfig) -> Self {
        Self {
            token,
            expires: None,
            has_provider,
            fetch: None,
            next_fetch: 1,
            refresh_at: None,
            refresh_backoff: Backoff::new(cfg.min_delay, cfg.max_delay),
            timeout: cfg.request_timeout,
        }
    }

    pub(super) fn has_provider(&self) -> bool {
        self.has_provider
    }

    pub(super) fn current(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A token that is not known to be expired (a second of margin for the trip).
    pub(super) fn usable(&self, now: Instant) -> bool {
        self.token.is_some()
            && self
                .expires
                .is_none_or(|at| at > now + Duration::from_secs(1))
    }

    pub(super) fn rejected_as_expired(&mut self) {
        self.token = None;
        self.expires = None;
    }

    /// The connect reply's `token_expires_at` (unix ms): schedules the refresh.
    pub(super) fn connected(&mut self, now: Now, expires_unix_ms: Option<i64>) {
        self.refresh_backoff.reset();
        self.set_expiry(now, expires_unix_ms);
    }

    fn set_expiry(&mut self, now: Now, expires_unix_ms: Option<i64>) {
        let Some(ms) = expires_unix_ms else {
            self.expires = None;
            self.refresh_at = None;
            return;
        };
        let remaining = Duration::from_millis(ms.saturating_sub(now.unix_ms).max(0) as u64);
        self.expires = Some(now.at + remaining);
        // Refresh a fifth of the lifetime before expiry, at most a minute before.
        let margin = (remaining / 5).min(MAX_REFRESH_MARGIN);
        self.refresh_at = self
            .has_provider
            .then(|| now.at + remaining.saturating_sub(margin));
    }

    pub(super) fn connection_gone(&mut self) {
        self.refresh_at = None;
        if let Some(f) = &mut self.fetch {
            if matches!(f.purpose, FetchFor::Refresh(_)) {
                f.purpose = FetchFor::Orphan;
            }
        }
    }

    pub(super) fn orphan_fetch(&mut self) {
        if let Some(f) = &mut self.fetch {
            f.purpose = FetchFor::Orphan;
        }
    }

    pub(super) fn deadline(&self, connected: bool) -> Option<Instant> {
        let fetch = self.fetch.as_ref().map(|f| f.deadline);
        let refresh = if connected && self.fetch.is_none() {
            self.refresh_at
        } else {
            None
        };
        fetch.into_iter().chain(refresh).min()
    }

    fn start(&mut self, now: Instant, purpose: FetchFor) -> FetchId {
        let id = self.next_fetch;
        self.next_fetch += 1;
        self.fetch = Some(Fetch {
            id,
            purpose,
            deadline: now + self.timeout,
        });
        id
    }
}

impl Session {
    /// Phase `Token`: asks the provider, unless a fetch is out (its answer will be
    /// thrown away, then a new one asked: never two at once).
    pub(super) fn fetch_token_for_connect(&mut self, now: Now) {
        if self.tokens.fetch.is_some() {
            return;
        }
        let fetch = self.tokens.start(now.at, FetchFor::Connect);
        self.outputs.push_back(super::Output::FetchToken { fetch });
    }

    pub(super) fn token_result(
        &mut self,
        now: Now,
        fetch: FetchId,
        result: Result<String, TokenError>,
    ) {
        let Some(f) = self.tokens.fetch.take_if(|f| f.id == fetch) else {
            tracing::debug!(fetch, "ignored a token for a fetch that is not current");
            return;
        };
        match (f.purpose, &self.phase) {
            (FetchFor::Connect, Phase::Token) => match result {
                Ok(token) => {
                    self.tokens.token = Some(token);
                    self.tokens.expires = None;
                    self.start_attempt(now);
                }
                Err(err) => self.connect_token_failed(now, err),
            },
            (FetchFor::Refresh(conn), Phase::Connected { conn: current }) if conn == *current => {
                match result {
                    Ok(token) => {
                        self.tokens.token = Some(token.clone());
                        self.control(
                            Command::Refresh(v1::RefreshRequest { token }),
                            Purpose::Refresh,
                        );
                    }
                    Err(TokenError::Unauthorized(why)) => {
                        self.go_down(now, Phase::Stopped, codes::UNAUTHORIZED, &why);
                    }
                    Err(TokenError::Failed(why)) => {
                        self.refresh_failed(now, Error::TokenProvider(why))
                    }
                }
            }
            // Its attempt or connection is gone: discard, and ask again if an
            // attempt is waiting for a token.
            _ => {
                if matches!(self.phase, Phase::Token) {
                    self.fetch_token_for_connect(now);
                }
            }
        }
    }

    fn connect_token_failed(&mut self, now: Now, err: TokenError) {
        match err {
            TokenError::Unauthorized(why) => {
                self.go_down(now, Phase::Stopped, codes::UNAUTHORIZED, &why);
            }
            TokenError::Failed(why) => {
                self.emit(Event::Error(Error::TokenProvider(why.clone())));
                self.schedule_retry(now, codes::TOKEN_PROVIDER_FAILED, &why);
            }
        }
    }

    /// A refresh that did not work: the connection stays; try again after a delay
    /// (the server's grace period after expiry leaves room).
    pub(super) fn refresh_failed(&mut self, now: Now, err: Error) {
        self.emit(Event::Error(err));
        let delay = self.tokens.refresh_backoff.next_delay(&mut self.rng);
        self.tokens.refresh_at = Some(now.at + delay);
    }

    /// The reply to an in-band `refresh`.
    pub(super) fn refresh_reply(&mut self, now: Now, result: Result<v1::RefreshResult, Error>) {
        match result {
            Ok(r) => {
                self.tokens.refresh_backoff.reset();
                let ms = r
                    .token_expires_at
                    .as_ref()
                    .map(mkondo_proto::convert::timestamp_to_millis);
                self.tokens.set_expiry(now, ms);
            }
            Err(err) => self.refresh_failed(now, err),
        }
    }

    pub(super) fn token_timers(&mut self, now: Now) {
        if let Some(f) = &self.tokens.fetch {
            if f.deadline <= now.at {
                let id = f.id;
                let why = "the token provider did not answer in time".to_owned();
                self.token_result(now, id, Err(TokenError::Failed(why)));
            }
        }
        if let Phase::Connected { conn } = self.phase {
            let due = self.tokens.refresh_at.is_some_and(|at| at <= now.at);
            if due && self.tokens.fetch.is_none() {
                self.tokens.refresh_at = None;
                let fetch = self.tokens.start(now.at, FetchFor::Refresh(conn));
                self.outputs.push_back(super::Output::FetchToken { fetch });
            }
        }
    }
}
