//! Pushes and replies as the state cache sees them: every push becomes an
//! event after the cache took it in, so a listener that reads the cache sees
//! the state the event describes.

use std::time::Duration;

use mkondo_proto::v1::{self, client_frame::Command, push::Push, reply::Result as Reply};

use super::{ConnId, Now, Session};
use crate::event::{Event, SubscriptionState};

/// Receivers forget a typing indicator after this long without renewal.
const TYPING_TTL: Duration = Duration::from_secs(6);

impl Session {
    pub(super) fn push(&mut self, now: Now, conn: ConnId, push: Push) {
        match push {
            Push::Ping(_) => {
                let pong = v1::ClientFrame {
                    id: 0,
                    command: Some(Command::Pong(v1::Pong {})),
                };
                self.send_frames(conn, vec![pong]);
            }
            Push::Disconnect(d) => {
                let code = u16::try_from(d.code).unwrap_or(u16::MAX);
                self.pending_disconnect = Some((code, d.reason));
            }
            Push::Message(m) => self.offer(now, m),
            Push::MessageUpdated(u) => {
                if let Some(m) = &u.message {
                    self.cache.lock().unwrap().on_message_updated(m);
                }
                if let Some(message) = u.message {
                    self.emit(Event::MessageUpdated {
                        message,
                        change: u.change,
                    });
                }
            }
            Push::Typing(t) => {
                let until = (!t.stop).then(|| now.at + TYPING_TTL);
                let changed =
                    self.cache
                        .lock()
                        .unwrap()
                        .set_typing(&t.conversation_id, &t.user_id, until);
                // Renewals change nothing the application shows.
                if changed {
                    self.emit(Event::Typing {
                        conversation_id: t.conversation_id,
                        user_id: t.user_id,
                        typing: !t.stop,
                    });
                }
            }
            Push::Read(r) => {
                self.cache.lock().unwrap().on_read(&r);
                self.emit(Event::Read(r));
            }
            Push::Presence(p) => {
                self.cache.lock().unwrap().set_presence(&p);
                self.emit(Event::Presence(p));
            }
            Push::MemberJoined(j) => {
                if let Some(c) = &j.conversation {
                    self.cache.lock().unwrap().upsert_conversation(c);
                }
                self.emit(Event::MemberJoined(j));
            }
            Push::MemberLeft(l) => {
                if self.me().as_deref() == Some(l.user_id.as_str()) {
                    self.cache
                        .lock()
                        .unwrap()
                        .remove_conversation(&l.conversation_id);
                    self.drop_subscription(&l.conversation_id, None, None);
                }
                self.emit(Event::MemberLeft(l));
            }
            Push::ConversationUpdated(u) => {
                if let Some(c) = u.conversation {
                    self.cache.lock().unwrap().upsert_conversation(&c);
                    self.emit(Event::ConversationUpdated(c));
                }
            }
            Push::Notification(n) => self.emit(Event::Notification(n)),
            Push::Signal(s) => self.emit(Event::Signal(s)),
        }
    }

    /// Delivers one message (recovery decided it is next).
    pub(super) fn deliver(&mut self, _now: Now, msg: v1::Message) {
        let stopped_typing = {
            let mut cache = self.cache.lock().unwrap();
            cache.on_message(&msg);
            cache.set_typing(&msg.conversation_id, &msg.sender_id, None)
        };
        if stopped_typing {
            self.emit(Event::Typing {
                conversation_id: msg.conversation_id.clone(),
                user_id: msg.sender_id.clone(),
                typing: false,
            });
        }
        self.emit(Event::Message(msg));
    }

    /// A successful subscribe: presence, typing and the conversation, cached.
    pub(super) fn subscribed(&mut self, now: Now, result: &v1::SubscribeResult) {
        let mut cache = self.cache.lock().unwrap();
        if let Some(c) = &result.conversation {
            cache.upsert_conversation(c);
            self.recovery.baseline_one(&c.id, c.last_seq);
            for user in &result.typing {
                cache.set_typing(&c.id, user, Some(now.at + TYPING_TTL));
            }
        }
        for p in &result.presence {
            cache.set_presence(p);
        }
    }

    /// What a user call's reply teaches the cache.
    pub(super) fn observe_reply(&mut self, reply: &Reply) {
        let mut cache = self.cache.lock().unwrap();
        match reply {
            Reply::Conversations(r) => {
                for c in &r.conversations {
                    cache.upsert_conversation(c);
                }
            }
            Reply::Conversation(r) => {
                if let Some(c) = &r.conversation {
                    cache.upsert_conversation(c);
                }
            }
            Reply::Presence(v1::PresenceResult { presence })
            | Reply::Users(v1::UsersResult { presence, .. }) => {
                for p in presence {
                    cache.set_presence(p);
                }
            }
            Reply::User(v1::UserResult { user: Some(u) }) => cache.set_user(u),
            Reply::Message(r) => {
                if let Some(m) = &r.message {
                    cache.on_message_updated(m);
                }
            }
            _ => {}
        }
    }

    /// Mirrors subscription states into the cache as they are announced.
    pub(super) fn mirror(&self, event: &Event) {
        if let Event::SubscriptionStateChanged {
            conversation_id,
            new,
            ..
        } = event
        {
            let state: SubscriptionState = *new;
            self.cache
                .lock()
                .unwrap()
                .set_subscription(conversation_id, state);
        }
    }
}
