//! Who is typing where, on this node: entries expire `ttl_ms` after their last
//! `typing` (a client that stops without saying so), and `sweep` drops them, so
//! the map holds only conversations where someone typed within the last
//! interval, however many conversations ever saw a typing indicator.

use dashmap::DashMap;

/// Typing users per `(app, conversation)`, with when each last typed (unix ms).
pub struct TypingMap {
    map: DashMap<(String, String), Vec<(String, i64)>>,
    ttl_ms: i64,
}

impl TypingMap {
    pub fn new(ttl_ms: i64) -> Self {
        Self {
            map: DashMap::new(),
            ttl_ms,
        }
    }

    /// How long an entry lives after its last `typing`.
    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// `user` typed in `conv` at `now`.
    pub fn started(&self, app: &str, conv: &str, user: &str, now: i64) {
        let ttl = self.ttl_ms;
        let mut entry = self
            .map
            .entry((app.to_owned(), conv.to_owned()))
            .or_default();
        entry.retain(|(u, at)| u != user && now - at < ttl);
        entry.push((user.to_owned(), now));
    }

    /// `user` stopped typing in `conv` (sent, or said so).
    pub fn stopped(&self, app: &str, conv: &str, user: &str) {
        self.map
            .remove_if_mut(&(app.to_owned(), conv.to_owned()), |_, list| {
                list.retain(|(u, _)| u != user);
                list.is_empty()
            });
    }

    /// Users typing in `conv` at `now`.
    pub fn typing(&self, app: &str, conv: &str, now: i64) -> Vec<String> {
        let ttl = self.ttl_ms;
        self.map
            .get(&(app.to_owned(), conv.to_owned()))
            .map(|list| {
                list.iter()
                    .filter(|(_, at)| now - at < ttl)
                    .map(|(u, _)| u.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops every entry expired at `now`, and every conversation left with none.
    pub fn sweep(&self, now: i64) {
        let ttl = self.ttl_ms;
        self.map.retain(|_, list| {
            list.retain(|(_, at)| now - at < ttl);
            !list.is_empty()
        });
    }

    /// Conversations with an entry (expired or not, until swept).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::TypingMap;

    #[test]
    fn entries_expire_and_the_sweep_empties_the_map() {
        let typing = TypingMap::new(6_000);
        for i in 0..1000 {
            typing.started("app", &format!("c{i}"), "alice", 1_000);
        }
        typing.started("app", "c0", "bob", 4_000);
        assert_eq!(typing.len(), 1000);
        assert_eq!(typing.typing("app", "c0", 6_999), ["alice", "bob"]);
        assert_eq!(typing.typing("app", "c0", 7_000), ["bob"], "alice expired");

        // Nobody touches those keys again: the sweep alone empties the map.
        typing.sweep(6_999);
        assert_eq!(typing.len(), 1000, "nothing expired yet");
        typing.sweep(7_000);
        assert_eq!(typing.len(), 1, "only bob's conversation is left");
        assert_eq!(typing.typing("app", "c0", 7_000), ["bob"]);
        typing.sweep(10_000);
        assert!(typing.is_empty());
    }

    #[test]
    fn stopping_removes_the_entry_at_once() {
        let typing = TypingMap::new(6_000);
        typing.started("app", "c", "alice", 0);
        typing.started("app", "c", "bob", 0);
        typing.stopped("app", "c", "alice");
        assert_eq!(typing.typing("app", "c", 1), ["bob"]);
        typing.stopped("app", "c", "bob");
        assert!(typing.is_empty());
    }
}
