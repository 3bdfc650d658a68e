//! The hub indexes this node's live sessions by user and by subscribed
//! conversation, and delivers events to them.
//!
//! Delivery never waits and never writes a socket: it collects the target
//! session ids under short, sharded (DashMap) locks, then `try_send`s to each
//! session's bounded queue under its shard's read lock (no handle is cloned per
//! delivery). A full queue means the client reads too slowly: that session is
//! told to close with `slow_consumer` rather than letting memory grow.
//!
//! Revocations (a disconnect event) select sessions by user, by app, by the key
//! that signed their current token and by when that token was issued; each
//! session's token stamp is kept up to date on refresh. Every disconnect event
//! bumps a counter first, so a session that was authenticating while one ran can
//! tell and check its token again once it is reachable (see `revocations`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use mkondo_proto::DisconnectCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::broker::{Event, Payload};
use super::outbound::Outbound;

pub type SessionId = u64;

/// What the hub holds of a session: its queue and a way to close it.
#[derive(Clone)]
pub struct SessionHandle {
    pub id: SessionId,
    pub app: Arc<str>,
    pub user: Arc<str>,
    /// The session's current token (changes on refresh).
    pub token: TokenStamp,
    pub queue: mpsc::Sender<Arc<Outbound>>,
    pub close: Closer,
}

/// What a revocation needs to know of the token a session holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStamp {
    /// The signing key's id (the token header's `kid`).
    pub kid: Arc<str>,
    /// The token's `iat` in milliseconds (0 when it has none).
    pub issued_at_ms: i64,
}

impl Default for TokenStamp {
    fn default() -> Self {
        Self {
            kid: Arc::from(""),
            issued_at_ms: 0,
        }
    }
}

/// Asks a session to close with a code; the first code wins.
#[derive(Clone, Default)]
pub struct Closer {
    token: CancellationToken,
    code: Arc<std::sync::OnceLock<DisconnectCode>>,
}

impl Closer {
    pub fn close(&self, code: DisconnectCode) {
        let _ = self.code.set(code);
        self.token.cancel();
    }
    pub fn code(&self) -> Option<DisconnectCode> {
        self.code.get().copied()
    }
    /// Whether `close` was called; an atomic load, cheap enough for every write.
    pub fn is_closed(&self) -> bool {
        // `close` sets the code before it cancels.
        self.code.get().is_some()
    }
    pub async fn closed(&self) {
        self.token.cancelled().await;
    }
    /// `closed` as a future that owns what it waits on, so a session can keep
    /// one pinned for its whole life instead of making one on every turn.
    pub fn closed_owned(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }
}

/// The `by_user` index's key, `(app, user)`. It can be looked up by a pair of
/// borrowed strings (`&(app, user) as &dyn AppUser`), since both hash and
/// compare as the same pair of `str`s.
#[derive(PartialEq, Eq, Hash)]
struct UserKey(Arc<str>, Arc<str>);

trait AppUser {
    fn pair(&self) -> (&str, &str);
}

impl AppUser for UserKey {
    fn pair(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

impl AppUser for (&str, &str) {
    fn pair(&self) -> (&str, &str) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn AppUser + 'a> for UserKey {
    fn borrow(&self) -> &(dyn AppUser + 'a) {
        self
    }
}

impl std::hash::Hash for dyn AppUser + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `UserKey`'s derived hash: its fields in order, each as a `str`.
        let (app, user) = self.pair();
        app.hash(state);
        user.hash(state);
    }
}

impl PartialEq for dyn AppUser + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.pair() == other.pair()
    }
}

impl Eq for dyn AppUser + '_ {}

#[derive(Default)]
pub struct Hub {
    /// By the server's own ids, looked up once per delivery: hashed with
    /// foldhash rather than SipHash. The indexes keyed by names that tenants
    /// choose keep std's SipHash.
    sessions: DashMap<SessionId, SessionHandle, foldhash::fast::RandomState>,
    by_user: DashMap<UserKey, HashSet<SessionId>>,
    by_app: DashMap<Arc<str>, HashSet<SessionId>>,
    subscribers: DashMap<(Arc<str>, String), HashSet<SessionId>>,
    /// Disconnect events delivered so far.
    revocations: AtomicU64,
}

impl Hub {
    pub fn add(&self, handle: SessionHandle) {
        self.by_user
            .entry(UserKey(handle.app.clone(), handle.user.clone()))
            .or_default()
            .insert(handle.id);
        self.by_app
            .entry(handle.app.clone())
            .or_default()
            .insert(handle.id);
        self.sessions.insert(handle.id, handle);
    }

    /// Records the token a session now holds (after an in-band refresh).
    pub fn set_token(&self, id: SessionId, token: TokenStamp) {
        if let Some(mut handle) = self.sessions.get_mut(&id) {
            handle.token = token;
        }
    }

    /// How many disconnect events this hub has delivered. A session reads it
    /// before checking a token and again once the hub can reach it: a change
    /// means a revocation may have run in between, unseen, so it checks again.
    pub fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::SeqCst)
    }

    pub fn remove(&self, id: SessionId, subscriptions: impl IntoIterator<Item = String>) {
        let Some((_, handle)) = self.sessions.remove(&id) else {
            return;
        };
        let key: &dyn AppUser = &(&*handle.app, &*handle.user);
        self.by_user.remove_if_mut(key, |_, set| {
            set.remove(&id);
            set.is_empty()
        });
        self.by_app.remove_if_mut(&handle.app, |_, set| {
            set.remove(&id);
            set.is_empty()
        });
        for conv in subscriptions {
            self.unsubscribe(&handle.app, &conv, id);
        }
    }

    pub fn subscribe(&self, app: &Arc<str>, conv: &str, id: SessionId) {
        self.subscribers
            .entry((app.clone(), conv.to_owned()))
            .or_default()
            .insert(id);
    }

    pub fn unsubscribe(&self, app: &Arc<str>, conv: &str, id: SessionId) {
        self.subscribers
            .remove_if_mut(&(app.clone(), conv.to_owned()), |_, set| {
                set.remove(&id);
                set.is_empty()
            });
    }

    pub fn user_session_count(&self, app: &str, user: &str) -> usize {
        self.by_user
            .get(&(app, user) as &dyn AppUser)
            .map_or(0, |s| s.len())
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Closes every session (shutdown).
    pub fn close_all(&self, code: DisconnectCode) {
        for s in self.sessions.iter() {
            s.close.close(code);
        }
    }

    /// Delivers an event to this node's matching sessions. Returns how many got it.
    pub fn deliver(&self, event: &Event) -> usize {
        if matches!(event.payload, Payload::Disconnect(_)) {
            // Before selecting: a session joining concurrently either is selected
            // or sees the new count (see `revocations`).
            self.revocations.fetch_add(1, Ordering::SeqCst);
        }
        let target = &event.target;
        let app: Arc<str> = Arc::from(event.app.as_str());
        // Most events select from one index (a conversation's subscribers, a
        // user's devices): duplicates are only possible across several.
        let mut ids: Vec<SessionId> = Vec::new();
        let mut sources = 0;
        if target.whole_app {
            if let Some(set) = self.by_app.get(&app) {
                ids.extend(set.iter().copied());
                sources += 1;
            }
        }
        for user in &target.users {
            // Looked up by borrowed strings: no key is built per recipient.
            if let Some(set) = self.by_user.get(&(&*app, user.as_str()) as &dyn AppUser) {
                ids.extend(set.iter().copied());
                sources += 1;
            }
        }
        for conv in &target.subscribers_of {
            if let Some(set) = self.subscribers.get(&(app.clone(), conv.clone())) {
                ids.extend(set.iter().copied());
                sources += 1;
            }
        }
        if sources > 1 {
            ids.sort_unstable();
            ids.dedup();
        }
        let selected = |h: &SessionHandle| {
            !target.except_users.iter().any(|u| **u == *h.user)
                && target.kid.as_deref().is_none_or(|k| *h.token.kid == *k)
                && target
                    .issued_before_ms
                    .is_none_or(|t| h.token.issued_at_ms < t)
        };
        let mut delivered = 0;
        let mut unsubscribed = Vec::new();
        for id in ids {
            // Under the shard's read lock: `try_send` and `close` never wait.
            let Some(handle) = self.sessions.get(&id) else {
                continue;
            };
            if !selected(&handle) {
                continue;
            }
            delivered += 1;
            match &event.payload {
                Payload::Push(out) => {
                    if let Err(mpsc::error::TrySendError::Full(_)) =
                        handle.queue.try_send(out.clone())
                    {
                        tracing::info!(session = handle.id, user = %handle.user, "slow consumer: closing");
                        handle.close.close(DisconnectCode::SlowConsumer);
                    }
                }
                Payload::Disconnect(code) => handle.close.close(*code),
                // The subscribers index is another map: changed once the
                // session's shard is released.
                Payload::Unsubscribe(_) => unsubscribed.push((handle.app.clone(), id)),
            }
        }
        if let Payload::Unsubscribe(conv) = &event.payload {
            for (app, id) in unsubscribed {
                self.unsubscribe(&app, conv, id);
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::broker::Target;
    use mkondo_proto::v1;

    fn session(
        hub: &Hub,
        id: SessionId,
        app: &str,
        user: &str,
        cap: usize,
    ) -> (mpsc::Receiver<Arc<Outbound>>, Closer) {
        session_with_token(hub, id, app, user, cap, "k1", 0)
    }

    fn session_with_token(
        hub: &Hub,
        id: SessionId,
        app: &str,
        user: &str,
        cap: usize,
        kid: &str,
        issued_at_ms: i64,
    ) -> (mpsc::Receiver<Arc<Outbound>>, Closer) {
        let (tx, rx) = mpsc::channel(cap);
        let close = Closer::default();
        hub.add(SessionHandle {
            id,
            app: Arc::from(app),
            user: Arc::from(user),
            token: TokenStamp {
                kid: Arc::from(kid),
                issued_at_ms,
            },
            queue: tx,
            close: close.clone(),
        });
        (rx, close)
    }

    fn disconnect(app: &str, target: Target, code: DisconnectCode) -> Event {
        Event {
            app: app.into(),
            target,
            payload: Payload::Disconnect(code),
        }
    }

    fn event(app: &str, target: Target) -> Event {
        Event {
            app: app.into(),
            target,
            payload: Payload::Push(Outbound::push(v1::push::Push::Ping(v1::ServerPing {}))),
        }
    }

    #[test]
    fn an_unsubscribe_ends_the_target_users_subscriptions_only() {
        let hub = Hub::default();
        let app: Arc<str> = Arc::from("app1");
        let (mut bob1, _) = session(&hub, 1, "app1", "bob", 8);
        let (mut bob2, _) = session(&hub, 2, "app1", "bob", 8);
        let (mut carol, _) = session(&hub, 3, "app1", "carol", 8);
        for id in [1, 2, 3] {
            hub.subscribe(&app, "room", id);
        }
        hub.subscribe(&app, "other", 1);
        let removed = Event {
            app: "app1".into(),
            target: Target {
                users: vec!["bob".into()],
                ..Default::default()
            },
            payload: Payload::Unsubscribe("room".into()),
        };
        assert_eq!(hub.deliver(&removed), 2);
        let room = Target {
            subscribers_of: vec!["room".into()],
            ..Default::default()
        };
        assert_eq!(hub.deliver(&event("app1", room)), 1, "carol only");
        assert!(carol.try_recv().is_ok());
        assert!(bob1.try_recv().is_err() && bob2.try_recv().is_err());
        let other = Target {
            subscribers_of: vec!["other".into()],
            ..Default::default()
        };
        assert_eq!(
            hub.deliver(&event("app1", other)),
            1,
            "bob's other one stays"
        );

        let deleted = Event {
            app: "app1".into(),
            target: Target {
                subscribers_of: vec!["room".into()],
                ..Default::default()
            },
            payload: Payload::Unsubscribe("room".into()),
        };
        hub.deliver(&deleted);
        assert!(
            !hub.subscribers
                .contains_key(&(app.clone(), "room".to_owned())),
            "nothing left of the room"
        );
    }

    #[test]
    fn delivers_by_user_and_subscription_within_one_app() {
        let hub = Hub::default();
        let (mut a1, _) = session(&hub, 1, "app1", "alice", 8);
        let (mut a2, _) = session(&hub, 2, "app1", "alice", 8);
        let (mut b, _) = session(&hub, 3, "app1", "bob", 8);
        let (mut other_app, _) = session(&hub, 4, "app2", "alice", 8);
        hub.subscribe(&Arc::from("app1"), "room", 3);

        let to_alice = Target {
            users: vec!["alice".into()],
            ..Default::default()
        };
        assert_eq!(hub.deliver(&event("app1", to_alice)), 2);
        assert!(a1.try_recv().is_ok() && a2.try_recv().is_ok());
        assert!(b.try_recv().is_err() && other_app.try_recv().is_err());

        let room = Target {
            subscribers_of: vec!["room".into()],
            except_users: vec!["bob".into()],
            ..Default::default()
        };
        assert_eq!(
            hub.deliver(&event("app1", room)),
            0,
            "the actor is excluded"
        );
        let room = Target {
            subscribers_of: vec!["room".into()],
            ..Default::default()
        };
        assert_eq!(hub.deliver(&event("app1", room)), 1);
        assert!(b.try_recv().is_ok());

        hub.remove(3, ["room".to_owned()]);
        let room = Target {
            subscribers_of: vec!["room".into()],
            ..Default::default()
        };
        assert_eq!(hub.deliver(&event("app1", room)), 0);
        assert_eq!(hub.user_session_count("app1", "alice"), 2);
        assert_eq!(hub.user_session_count("app2", "alice"), 1);
    }

    #[test]
    fn a_full_queue_closes_the_session_as_slow_consumer() {
        let hub = Hub::default();
        let (_rx, close) = session(&hub, 1, "app", "u", 2);
        let to_u = || {
            event(
                "app",
                Target {
                    users: vec!["u".into()],
                    ..Default::default()
                },
            )
        };
        hub.deliver(&to_u());
        hub.deliver(&to_u());
        assert_eq!(close.code(), None);
        hub.deliver(&to_u());
        assert_eq!(close.code(), Some(DisconnectCode::SlowConsumer));
    }

    #[test]
    fn revocations_select_by_user_app_kid_and_issue_time() {
        let hub = Hub::default();
        let (_, alice_old) = session_with_token(&hub, 1, "app1", "alice", 8, "k1", 1_000);
        let (_, alice_new) = session_with_token(&hub, 2, "app1", "alice", 8, "k1", 5_000);
        let (_, bob_k2) = session_with_token(&hub, 3, "app1", "bob", 8, "k2", 1_000);
        let (_, carol_k1) = session_with_token(&hub, 4, "app1", "carol", 8, "k1", 1_000);
        let (_, other_app) = session_with_token(&hub, 5, "app2", "alice", 8, "k1", 1_000);
        let before = hub.revocations();

        // Alice's tokens issued before 2 s: only her older session closes.
        let alice = Target {
            users: vec!["alice".into()],
            issued_before_ms: Some(2_000),
            ..Default::default()
        };
        let code = DisconnectCode::TokensRevoked;
        assert_eq!(hub.deliver(&disconnect("app1", alice, code)), 1);
        assert_eq!(alice_old.code(), Some(code));
        assert_eq!(alice_new.code(), None);
        assert_eq!(hub.revocations(), before + 1);

        // Key k2 removed: every session of the app signed with it, nobody else.
        let k2 = Target {
            whole_app: true,
            kid: Some("k2".into()),
            ..Default::default()
        };
        assert_eq!(hub.deliver(&disconnect("app1", k2, code)), 1);
        assert_eq!(bob_k2.code(), Some(code));
        assert_eq!(carol_k1.code(), None);

        // The whole app: every session of app1, none of app2.
        let all = Target {
            whole_app: true,
            ..Default::default()
        };
        assert_eq!(
            hub.deliver(&disconnect("app1", all, DisconnectCode::UserDeleted)),
            4
        );
        assert_eq!(carol_k1.code(), Some(DisconnectCode::UserDeleted));
        assert_eq!(alice_new.code(), Some(DisconnectCode::UserDeleted));
        assert_eq!(alice_old.code(), Some(code), "the first code wins");
        assert_eq!(other_app.code(), None);
    }

    #[test]
    fn a_refreshed_token_moves_the_session_to_its_new_key() {
        let hub = Hub::default();
        let (_, close) = session_with_token(&hub, 1, "app", "u", 8, "old", 1_000);
        hub.set_token(
            1,
            TokenStamp {
                kid: Arc::from("new"),
                issued_at_ms: 9_000,
            },
        );
        let old_key = Target {
            whole_app: true,
            kid: Some("old".into()),
            ..Default::default()
        };
        let code = DisconnectCode::TokensRevoked;
        assert_eq!(hub.deliver(&disconnect("app", old_key, code)), 0);
        let stale = Target {
            whole_app: true,
            issued_before_ms: Some(5_000),
            ..Default::default()
        };
        assert_eq!(hub.deliver(&disconnect("app", stale, code)), 0);
        assert_eq!(close.code(), None);
        let new_key = Target {
            whole_app: true,
            kid: Some("new".into()),
            ..Default::default()
        };
        assert_eq!(hub.deliver(&disconnect("app", new_key, code)), 1);
        assert_eq!(close.code(), Some(code));
    }

    #[test]
    fn a_removed_session_leaves_the_app_index() {
        let hub = Hub::default();
        let _keep = session(&hub, 1, "app", "u", 8);
        hub.remove(1, Vec::new());
        let all = Target {
            whole_app: true,
            ..Default::default()
        };
        assert_eq!(
            hub.deliver(&disconnect("app", all, DisconnectCode::TokensRevoked)),
            0
        );
        assert!(hub.by_app.is_empty());
        assert!(hub.by_user.is_empty(), "removed by its borrowed key");
        // Pushes are not revocations.
        assert_eq!(hub.revocations(), 1);
        hub.deliver(&event("app", Target::default()));
        assert_eq!(hub.revocations(), 1);
    }
}
