//! The hub indexes this node's live sessions by user and by subscribed
//! conversation, and delivers events to them.
//!
//! Delivery never holds an index lock while writing: it collects the target
//! sessions' queue handles under short, sharded (DashMap) locks, then `try_send`s to
//! each bounded queue. A full queue means the client reads too slowly: that session is
//! told to close with `slow_consumer` rather than letting memory grow.

use std::collections::HashSet;
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
    pub queue: mpsc::Sender<Arc<Outbound>>,
    pub close: Closer,
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
    pub async fn closed(&self) {
        self.token.cancelled().await;
    }
}

#[derive(Default)]
pub struct Hub {
    sessions: DashMap<SessionId, SessionHandle>,
    by_user: DashMap<(Arc<str>, Arc<str>), HashSet<SessionId>>,
    subscribers: DashMap<(Arc<str>, String), HashSet<SessionId>>,
}

impl Hub {
    pub fn add(&self, handle: SessionHandle) {
        self.by_user
            .entry((handle.app.clone(), handle.user.clone()))
            .or_default()
            .insert(handle.id);
        self.sessions.insert(handle.id, handle);
    }

    pub fn remove(&self, id: SessionId, subscriptions: impl IntoIterator<Item = String>) {
        let Some((_, handle)) = self.sessions.remove(&id) else {
            return;
        };
        let key = (handle.app.clone(), handle.user.clone());
        self.by_user.remove_if_mut(&key, |_, set| {
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
            .get(&(Arc::from(app), Arc::from(user)))
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
        let app: Arc<str> = Arc::from(event.app.as_str());
        let mut ids: HashSet<SessionId> = HashSet::new();
        for user in &event.target.users {
            if let Some(set) = self.by_user.get(&(app.clone(), Arc::from(user.as_str()))) {
                ids.extend(set.iter().copied());
            }
        }
        for conv in &event.target.subscribers_of {
            if let Some(set) = self.subscribers.get(&(app.clone(), conv.clone())) {
                ids.extend(set.iter().copied());
            }
        }
        let targets: Vec<SessionHandle> = ids
            .into_iter()
            .filter_map(|id| self.sessions.get(&id).map(|h| h.clone()))
            .filter(|h| !event.target.except_users.iter().any(|u| **u == *h.user))
            .collect();
        let delivered = targets.len();
        for handle in targets {
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
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::broker::Target;
    use mkondo_proto::v1;

    fn session(
        hub: &Hub,
        id: SessionId,
        app: &str,
        user: &str,
        cap: usize,
    ) -> (mpsc::Receiver<Arc<Outbound>>, Closer) {
        let (tx, rx) = mpsc::channel(cap);
        let close = Closer::default();
        hub.add(SessionHandle {
            id,
            app: Arc::from(app),
            user: Arc::from(user),
            queue: tx,
            close: close.clone(),
        });
        (rx, close)
    }

    fn event(app: &str, target: Target) -> Event {
        Event {
            app: app.into(),
            target,
            payload: Payload::Push(Outbound::push(v1::push::Push::Ping(v1::ServerPing {}))),
        }
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
}
