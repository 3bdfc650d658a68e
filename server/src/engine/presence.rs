//! Presence: per user, derived from their live connections. `online` when any
//! device is in the foreground, `away` when every device is in the background,
//! `offline` (with `last_seen`) when none is connected. The manager is a trait:
//! in memory for one node, or in Redis with per-connection TTLs for several
//! (`redis_presence.rs`).

use std::collections::HashMap;

use async_trait::async_trait;
use dashmap::DashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Online,
    Away,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Offline => "offline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    Foreground,
    Background,
}

impl AppState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "foreground" => Some(Self::Foreground),
            "background" => Some(Self::Background),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPresence {
    pub user_id: String,
    pub status: Status,
    /// Unix ms; for online users, now-ish.
    pub last_seen: Option<i64>,
}

#[async_trait]
pub trait PresenceManager: Send + Sync + 'static {
    /// Records a connection's state; returns the user's status if it changed.
    async fn set(
        &self,
        app: &str,
        user: &str,
        conn: u64,
        state: AppState,
        now: i64,
    ) -> Option<Status>;
    /// Forgets a connection; returns the user's status if it changed.
    async fn remove(&self, app: &str, user: &str, conn: u64, now: i64) -> Option<Status>;
    /// Status of each user this manager knows; unknown users are absent.
    async fn get(&self, app: &str, users: &[String]) -> Vec<UserPresence>;

    /// How often the node must call `upkeep`; `None` when it needs none.
    fn upkeep_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Keeps this node's connections present and removes those whose node
    /// stopped refreshing them (it crashed). Returns the status changes this
    /// caused, for the node to announce: each is returned to one node only.
    async fn upkeep(&self, _now: i64) -> Vec<Change> {
        Vec::new()
    }
}

/// A status change found by `upkeep` rather than reported by `set` / `remove`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub app: String,
    pub user: String,
    pub status: Status,
    /// Unix ms: when the user was last seen connected.
    pub last_seen: i64,
}

#[derive(Default)]
struct Entry {
    conns: HashMap<u64, AppState>,
    last_seen: i64,
}

impl Entry {
    fn status(&self) -> Status {
        if self.conns.is_empty() {
            Status::Offline
        } else if self.conns.values().any(|s| *s == AppState::Foreground) {
            Status::Online
        } else {
            Status::Away
        }
    }
}

#[derive(Default)]
pub struct MemoryPresence {
    users: DashMap<(String, String), Entry>,
}

#[async_trait]
impl PresenceManager for MemoryPresence {
    async fn set(
        &self,
        app: &str,
        user: &str,
        conn: u64,
        state: AppState,
        now: i64,
    ) -> Option<Status> {
        let mut entry = self
            .users
            .entry((app.to_owned(), user.to_owned()))
            .or_default();
        let before = entry.status();
        entry.conns.insert(conn, state);
        entry.last_seen = now;
        let after = entry.status();
        (before != after).then_some(after)
    }

    async fn remove(&self, app: &str, user: &str, conn: u64, now: i64) -> Option<Status> {
        let mut entry = self.users.get_mut(&(app.to_owned(), user.to_owned()))?;
        let before = entry.status();
        entry.conns.remove(&conn)?;
        entry.last_seen = now;
        let after = entry.status();
        (before != after).then_some(after)
    }

    async fn get(&self, app: &str, users: &[String]) -> Vec<UserPresence> {
        users
            .iter()
            .filter_map(|u| {
                let e = self.users.get(&(app.to_owned(), u.clone()))?;
                Some(UserPresence {
                    user_id: u.clone(),
                    status: e.status(),
                    last_seen: Some(e.last_seen),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_follows_connections() {
        let p = MemoryPresence::default();
        assert_eq!(
            p.set("a", "u", 1, AppState::Foreground, 1).await,
            Some(Status::Online)
        );
        assert_eq!(p.set("a", "u", 2, AppState::Background, 2).await, None);
        assert_eq!(
            p.set("a", "u", 1, AppState::Background, 3).await,
            Some(Status::Away)
        );
        assert_eq!(p.remove("a", "u", 1, 4).await, None);
        assert_eq!(p.remove("a", "u", 2, 5).await, Some(Status::Offline));
        let got = p.get("a", &["u".into(), "x".into()]).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, Status::Offline);
        assert_eq!(got[0].last_seen, Some(5));
        // Another app never sees it.
        assert!(p.get("b", &["u".into()]).await.is_empty());
    }
}
