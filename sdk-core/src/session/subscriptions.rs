//! Subscriptions: the conversations whose typing and members' presence this
//! client wants. A subscription is wanted until `unsubscribe()`, whatever the
//! connection does: it is sent with every `connect` and its state follows
//! (`subscribed` → `subscribing` when a connection ends, back when it is renewed).

use std::{collections::BTreeMap, time::Duration};

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as Reply};

use super::{requests::Purpose, Now, OpId, Session};
use crate::error::Error;
use crate::event::{Event, SubscriptionState};
use crate::rt::Instant;

#[derive(Debug)]
struct Sub {
    state: SubscriptionState,
    /// `subscribe()` calls waiting for the first `subscribed`.
    waiters: Vec<OpId>,
    result: Option<v1::SubscribeResult>,
    in_flight: bool,
    retry_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    subs: BTreeMap<String, Sub>,
}

fn changed(
    conversation_id: &str,
    old: SubscriptionState,
    new: SubscriptionState,
    error: Option<Error>,
) -> Event {
    Event::SubscriptionStateChanged {
        conversation_id: conversation_id.to_owned(),
        old,
        new,
        error,
    }
}

impl Subscriptions {
    pub(super) fn connection_gone(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        for (conv, sub) in &mut self.subs {
            sub.in_flight = false;
            sub.retry_at = None;
            if sub.state == SubscriptionState::Subscribed {
                sub.state = SubscriptionState::Subscribing;
                events.push(changed(
                    conv,
                    SubscriptionState::Subscribed,
                    SubscriptionState::Subscribing,
                    None,
                ));
            }
        }
        events
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.subs.values().filter_map(|s| s.retry_at).min()
    }

    pub(super) fn drain_waiters(&mut self) -> Vec<OpId> {
        self.subs
            .values_mut()
            .flat_map(|s| s.waiters.drain(..))
            .collect()
    }

    /// The state of one conversation's subscription.
    pub(super) fn state(&self, conversation_id: &str) -> SubscriptionState {
        self.subs
            .get(conversation_id)
            .map_or(SubscriptionState::Unsubscribed, |s| s.state)
    }
}

impl Session {
    pub(super) fn subscribe(&mut self, _now: Now, op: OpId, conv: String) {
        if conv.is_empty() {
            self.done(
                op,
                Err(Error::InvalidArgument("conversation_id is empty".into())),
            );
            return;
        }
        if let Some(sub) = self.subs.subs.get_mut(&conv) {
            match (&sub.state, &sub.result) {
                (SubscriptionState::Subscribed, Some(result)) => {
                    let reply = Reply::Subscribe(result.clone());
                    self.done(op, Ok(reply));
                }
                _ => sub.waiters.push(op),
            }
            return;
        }
        let connected = self.is_connected();
        self.subs.subs.insert(
            conv.clone(),
            Sub {
                state: SubscriptionState::Subscribing,
                waiters: vec![op],
                result: None,
                in_flight: connected,
                retry_at: None,
            },
        );
        self.emit(changed(
            &conv,
            SubscriptionState::Unsubscribed,
            SubscriptionState::Subscribing,
            None,
        ));
        if connected {
            let command = Command::Subscribe(v1::SubscribeRequest {
                conversation_id: conv.clone(),
            });
            self.control(command, Purpose::Subscribe(conv));
        }
    }

    pub(super) fn unsubscribe(&mut self, _now: Now, op: OpId, conv: String) {
        self.drop_subscription(&conv, Some(Error::Unsubscribed), None);
        if self.is_connected() {
            let command = Command::Unsubscribe(v1::UnsubscribeRequest {
                conversation_id: conv,
            });
            self.control(command, Purpose::Unsubscribe { op: Some(op) });
        } else {
            self.done(op, Ok(Reply::Ok(v1::Ok {})));
        }
    }

    /// Forgets a subscription: its waiters fail with `waiter_error`.
    pub(super) fn drop_subscription(
        &mut self,
        conv: &str,
        waiter_error: Option<Error>,
        why: Option<Error>,
    ) {
        let Some(sub) = self.subs.subs.remove(conv) else {
            return;
        };
        let error = waiter_error.unwrap_or(Error::Unsubscribed);
        for op in sub.waiters {
            self.done(op, Err(error.clone()));
        }
        self.emit(changed(
            conv,
            sub.state,
            SubscriptionState::Unsubscribed,
            why,
        ));
    }

    /// The subscribe frames that go with `connect`.
    pub(super) fn subscribe_frames(&mut self, _now: Now) -> Vec<v1::ClientFrame> {
        let convs: Vec<String> = self.subs.subs.keys().cloned().collect();
        let mut frames = Vec::with_capacity(convs.len());
        for conv in convs {
            if let Some(sub) = self.subs.subs.get_mut(&conv) {
                sub.in_flight = true;
                sub.retry_at = None;
            }
            let command = Command::Subscribe(v1::SubscribeRequest {
                conversation_id: conv.clone(),
            });
            frames.push(self.register(command, Purpose::Subscribe(conv)));
        }
        frames
    }

    pub(super) fn subscribe_reply(&mut self, now: Now, conv: String, result: Result<Reply, Error>) {
        let Some(sub) = self.subs.subs.get_mut(&conv) else {
            return; // unsubscribed meanwhile: the unsubscribe follows it
        };
        sub.in_flight = false;
        match result {
            Ok(Reply::Subscribe(result)) => {
                let old = std::mem::replace(&mut sub.state, SubscriptionState::Subscribed);
                sub.result = Some(result.clone());
                let waiters = std::mem::take(&mut sub.waiters);
                self.subscribed(now, &result);
                if old != SubscriptionState::Subscribed {
                    self.emit(changed(&conv, old, SubscriptionState::Subscribed, None));
                }
                for op in waiters {
                    self.done(op, Ok(Reply::Subscribe(result.clone())));
                }
            }
            Err(err) if err.temporary() => {
                let wait = match &err {
                    Error::Server {
                        retry_after: Some(wait),
                        ..
                    } => *wait,
                    _ => Duration::from_secs(1),
                };
                sub.retry_at = Some(now.at + wait);
            }
            Err(err) => self.drop_subscription(&conv, Some(err.clone()), Some(err)),
            Ok(other) => {
                let err = Error::InvalidArgument(format!(
                    "unexpected reply to subscribe: {}",
                    crate::error::shown(&other)
                ));
                self.drop_subscription(&conv, Some(err.clone()), Some(err));
            }
        }
    }

    pub(super) fn subscription_timers(&mut self, now: Now) {
        if !self.is_connected() {
            return;
        }
        let due: Vec<String> = self
            .subs
            .subs
            .iter()
            .filter(|(_, s)| s.retry_at.is_some_and(|at| at <= now.at))
            .map(|(c, _)| c.clone())
            .collect();
        for conv in due {
            if let Some(sub) = self.subs.subs.get_mut(&conv) {
                sub.retry_at = None;
                sub.in_flight = true;
            }
            let command = Command::Subscribe(v1::SubscribeRequest {
                conversation_id: conv.clone(),
            });
            self.control(command, Purpose::Subscribe(conv));
        }
    }

    /// A subscription's state, for the client handle.
    pub fn subscription_state(&self, conversation_id: &str) -> SubscriptionState {
        self.subs.state(conversation_id)
    }
}
