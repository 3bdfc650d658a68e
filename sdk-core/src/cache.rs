//! The state a UI reads without a round trip: the user, the conversation list
//! with unread counts and last messages, the presence of known users, who is
//! typing where, and the subscriptions. The session keeps it current from every
//! reply and push, before the matching event is delivered.
//!
//! With an offline store, the cache also keeps the newest messages of each
//! conversation, and records each change to what survives (the user, the
//! conversations, those messages) for the session to hand to the store.

use std::collections::{BTreeMap, HashMap};

use mkondo_proto::v1;

use crate::event::SubscriptionState;
use crate::rt::Instant;
use crate::store::Change;

/// A snapshot-able view of what the client knows.
#[derive(Debug, Default)]
pub struct Cache {
    user: Option<v1::User>,
    session_id: String,
    conversations: HashMap<String, v1::Conversation>,
    presence: HashMap<String, v1::Presence>,
    /// Conversation → user → when their typing indicator expires.
    typing: HashMap<String, BTreeMap<String, Instant>>,
    subscriptions: BTreeMap<String, SubscriptionState>,
    /// With a store: the newest `keep` messages of each conversation, by seq.
    messages: HashMap<String, BTreeMap<u64, v1::Message>>,
    keep: usize,
    /// With a store: changes it has not been given yet.
    changes: Option<Vec<Change>>,
}

fn activity(c: &v1::Conversation) -> (i64, i32) {
    c.last_message
        .as_ref()
        .and_then(|m| m.created_at.as_ref())
        .or(c.created_at.as_ref())
        .map_or((0, 0), |t| (t.seconds, t.nanos))
}

impl Cache {
    /// The connected user's id.
    pub fn me(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.id.as_str())
    }

    /// The connected user's profile, from the last connect.
    pub fn user(&self) -> Option<&v1::User> {
        self.user.as_ref()
    }

    /// The server's id of the last session (for support and logs).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Known conversations, latest activity first.
    pub fn conversations(&self) -> Vec<v1::Conversation> {
        let mut list: Vec<v1::Conversation> = self.conversations.values().cloned().collect();
        list.sort_by(|a, b| activity(b).cmp(&activity(a)).then_with(|| a.id.cmp(&b.id)));
        list
    }

    pub fn conversation(&self, id: &str) -> Option<&v1::Conversation> {
        self.conversations.get(id)
    }

    /// The sum of the unread counts of known conversations.
    pub fn total_unread(&self) -> u64 {
        self.conversations.values().map(|c| c.unread_count).sum()
    }

    pub fn presence(&self, user_id: &str) -> Option<&v1::Presence> {
        self.presence.get(user_id)
    }

    /// Who is typing in a conversation now (sorted).
    pub fn typing(&self, conversation_id: &str) -> Vec<String> {
        self.typing
            .get(conversation_id)
            .map(|users| users.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The newest messages of a conversation the cache keeps (with an offline
    /// store), ascending by seq.
    pub fn messages(&self, conversation_id: &str) -> Vec<v1::Message> {
        self.messages
            .get(conversation_id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Keeps the newest `keep` messages per conversation and records changes
    /// for an offline store from now on.
    pub(crate) fn persist(&mut self, keep: usize) {
        self.keep = keep.max(1);
        self.changes = Some(Vec::new());
    }

    /// What a store held: the cache starts from it (nothing recorded).
    pub(crate) fn restore(
        &mut self,
        user: Option<v1::User>,
        conversations: Vec<v1::Conversation>,
        messages: Vec<v1::Message>,
    ) {
        self.user = user;
        for c in conversations {
            self.conversations.insert(c.id.clone(), c);
        }
        if self.keep == 0 {
            return;
        }
        for m in messages {
            let kept = self.messages.entry(m.conversation_id.clone()).or_default();
            kept.insert(m.seq, m);
            if kept.len() > self.keep {
                kept.pop_first();
            }
        }
    }

    /// The changes recorded since the last call.
    pub(crate) fn take_changes(&mut self) -> Vec<Change> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Forgets everything the store held (sign-out, a token for another
    /// user), and the changes not handed out yet (the session wipes the store).
    pub(crate) fn forget(&mut self) {
        self.user = None;
        self.conversations.clear();
        self.messages.clear();
        if let Some(changes) = self.changes.as_mut() {
            changes.clear();
        }
    }

    /// Stops recording: the store is not this user's.
    pub(crate) fn stop_persisting(&mut self) {
        self.changes = None;
        self.messages.clear();
        self.keep = 0;
    }

    /// Records a change for the store; built only when there is one.
    fn record(&mut self, change: impl FnOnce() -> Change) {
        if let Some(changes) = self.changes.as_mut() {
            changes.push(change());
        }
    }

    fn record_conversation(&mut self, id: &str) {
        if self.changes.is_some() {
            if let Some(c) = self.conversations.get(id).cloned() {
                self.record(|| Change::Conversation(c));
            }
        }
    }

    /// Keeps a message (if among the newest); true when kept.
    fn keep_message(&mut self, m: &v1::Message) -> bool {
        if self.keep == 0 {
            return false;
        }
        let kept = self.messages.entry(m.conversation_id.clone()).or_default();
        kept.insert(m.seq, m.clone());
        while kept.len() > self.keep {
            kept.pop_first();
        }
        kept.contains_key(&m.seq)
    }

    /// A message from a history page or a recovery: kept among the newest.
    pub(crate) fn on_history(&mut self, m: &v1::Message) {
        if self.keep_message(m) {
            self.record(|| Change::Message(m.clone()));
        }
    }

    pub fn subscription(&self, conversation_id: &str) -> SubscriptionState {
        self.subscriptions
            .get(conversation_id)
            .copied()
            .unwrap_or(SubscriptionState::Unsubscribed)
    }

    pub(crate) fn connected(&mut self, reply: &v1::ConnectResult) {
        self.user = reply.user.clone();
        if let Some(u) = &reply.user {
            self.record(|| Change::User(u.clone()));
        }
        self.session_id = reply.session_id.clone();
        for c in &reply.conversations {
            self.upsert_conversation(c);
        }
    }

    /// The user's own profile as an update answered it.
    pub(crate) fn set_user(&mut self, u: &v1::User) {
        if self.me() == Some(u.id.as_str()) {
            self.user = Some(u.clone());
            self.record(|| Change::User(u.clone()));
        }
    }

    pub(crate) fn upsert_conversation(&mut self, c: &v1::Conversation) {
        if let Some(p) = &c.peer_presence {
            self.set_presence(p);
        }
        self.conversations.insert(c.id.clone(), c.clone());
        self.record(|| Change::Conversation(c.clone()));
    }

    pub(crate) fn remove_conversation(&mut self, id: &str) {
        self.conversations.remove(id);
        self.typing.remove(id);
        self.messages.remove(id);
        self.record(|| Change::RemoveConversation(id.to_owned()));
    }

    pub(crate) fn on_message(&mut self, m: &v1::Message) {
        self.on_history(m);
        let me = self.me().map(str::to_owned);
        let Some(c) = self.conversations.get_mut(&m.conversation_id) else {
            return;
        };
        if m.seq < c.last_seq {
            return;
        }
        c.last_seq = m.seq;
        c.last_message = Some(m.clone());
        if me.as_deref() == Some(m.sender_id.as_str()) {
            c.last_read_seq = m.seq;
            c.unread_count = 0;
        } else {
            c.unread_count = c.last_seq.saturating_sub(c.last_read_seq);
        }
        self.record_conversation(&m.conversation_id);
    }

    pub(crate) fn on_message_updated(&mut self, m: &v1::Message) {
        let held = self
            .messages
            .get(&m.conversation_id)
            .is_some_and(|kept| kept.contains_key(&m.seq));
        if held {
            self.on_history(m);
        }
        if let Some(c) = self.conversations.get_mut(&m.conversation_id) {
            if c.last_message
                .as_ref()
                .is_some_and(|last| last.seq == m.seq)
            {
                c.last_message = Some(m.clone());
                self.record_conversation(&m.conversation_id);
            }
        }
    }

    pub(crate) fn on_read(&mut self, r: &v1::ReadPush) {
        if self.me() != Some(r.user_id.as_str()) {
            return;
        }
        if let Some(c) = self.conversations.get_mut(&r.conversation_id) {
            c.last_read_seq = c.last_read_seq.max(r.last_read_seq);
            c.unread_count = r.unread_count;
            self.record_conversation(&r.conversation_id);
        }
    }

    pub(crate) fn set_presence(&mut self, p: &v1::Presence) {
        self.presence.insert(p.user_id.clone(), p.clone());
    }

    /// Sets (with an expiry) or clears a typing indicator; true when it changed
    /// from not typing to typing or back.
    pub(crate) fn set_typing(&mut self, conv: &str, user: &str, until: Option<Instant>) -> bool {
        match until {
            Some(until) => self
                .typing
                .entry(conv.to_owned())
                .or_default()
                .insert(user.to_owned(), until)
                .is_none(),
            None => {
                let Some(users) = self.typing.get_mut(conv) else {
                    return false;
                };
                let was = users.remove(user).is_some();
                if users.is_empty() {
                    self.typing.remove(conv);
                }
                was
            }
        }
    }

    pub(crate) fn expire_typing(&mut self, now: Instant) -> Vec<(String, String)> {
        let mut expired = Vec::new();
        for (conv, users) in &mut self.typing {
            users.retain(|user, until| {
                let keep = *until > now;
                if !keep {
                    expired.push((conv.clone(), user.clone()));
                }
                keep
            });
        }
        self.typing.retain(|_, users| !users.is_empty());
        expired.sort();
        expired
    }

    pub(crate) fn typing_deadline(&self) -> Option<Instant> {
        self.typing.values().flat_map(|u| u.values().copied()).min()
    }

    pub(crate) fn set_subscription(&mut self, conversation_id: &str, state: SubscriptionState) {
        if state == SubscriptionState::Unsubscribed {
            self.subscriptions.remove(conversation_id);
        } else {
            self.subscriptions.insert(conversation_id.to_owned(), state);
        }
    }
}
