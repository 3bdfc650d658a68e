//! The outbox: the changes the user made — messages sent, edited, deleted,
//! reactions, read positions — kept until the server acknowledges them.
//!
//! They leave in the order they were made. A message carries its `client_id`;
//! one whose reply was lost with its connection is sent again with the same
//! `client_id`, and the server answers with the original (`duplicate: true`),
//! so a message lands once and its call completes once, with the server's ack.
//! An edit, a delete, a reaction or a read sets a value, so sending it again
//! applies it once too. While the client is offline they wait (up to the
//! outbox limit) rather than fail.
//!
//! With an offline store the outbox is durable: a change is stored when it is
//! queued and removed when acknowledged. After a restart its call is gone, so
//! the outcome of a message, edit, delete or reaction arrives as
//! [`Event::Sent`] instead (a read's arrives as the `read` event, as always).
//!
//! A message naming uploads this client is still sending waits for them: it
//! leaves once they finished (and fails with the first that failed or was
//! cancelled). It holds the later changes of its own conversation, not those
//! of others: a photo on a slow network does not hold a text elsewhere.

use std::{
    collections::{HashSet, VecDeque},
    time::Duration,
};

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as Reply};

use super::{requests::Purpose, Now, OpId, Session};
use crate::error::Error;
use crate::event::Event;
use crate::rt::Instant;
use crate::store::{Change, Pending};

#[derive(Debug)]
struct Item {
    /// The call waiting for it; `None` for one restored from the store.
    op: Option<OpId>,
    /// A send's `client_id`, or a key made for the other changes.
    key: String,
    command: Command,
    in_flight: bool,
    /// After a temporary refusal (rate limit): not before then.
    not_before: Option<Instant>,
    /// The uploads it names that are still being sent.
    waiting: Vec<String>,
}

pub(super) struct Outbox {
    items: VecDeque<Item>,
    limit: usize,
    /// The uploads this client is sending (their ids).
    uploads: HashSet<String>,
    /// The last uploads that failed or were cancelled, and why: a message
    /// naming one, made just after, fails the same way.
    failed: VecDeque<(String, Error)>,
}

/// How many failed uploads the outbox remembers.
const FAILED_KEPT: usize = 64;

impl Outbox {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            items: VecDeque::new(),
            limit: limit.max(1),
            uploads: HashSet::new(),
            failed: VecDeque::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// The first message not yet sent, if it may go now. Later ones wait behind
    /// it, so that the original order holds.
    pub(super) fn next_ready(&self, now: Instant) -> Option<usize> {
        let index = self.first_unsent_index()?;
        let item = &self.items[index];
        item.not_before.is_none_or(|at| at <= now).then_some(index)
    }

    /// `Some(not_before)` of the first message not yet sent.
    pub(super) fn first_unsent(&self) -> Option<Option<Instant>> {
        self.first_unsent_index()
            .map(|index| self.items[index].not_before)
    }

    /// The first change not yet sent that may go: not waiting for uploads,
    /// and behind no change of its conversation that waits.
    fn first_unsent_index(&self) -> Option<usize> {
        let mut held: Vec<&str> = Vec::new();
        for (index, item) in self.items.iter().enumerate() {
            if item.in_flight {
                continue;
            }
            let conversation = conversation_of(&item.command).unwrap_or_default();
            if !item.waiting.is_empty() {
                held.push(conversation);
            } else if !held.contains(&conversation) {
                return Some(index);
            }
        }
        None
    }

    pub(super) fn take_next(&mut self, now: Instant) -> Option<(Command, Purpose)> {
        let index = self.next_ready(now)?;
        let item = &mut self.items[index];
        item.in_flight = true;
        item.not_before = None;
        Some((
            item.command.clone(),
            Purpose::Send {
                client_id: item.key.clone(),
            },
        ))
    }

    pub(super) fn connection_gone(&mut self) {
        for item in &mut self.items {
            item.in_flight = false;
        }
    }

    pub(super) fn drain_ops(&mut self) -> Vec<OpId> {
        self.items.drain(..).filter_map(|i| i.op).collect()
    }

    /// Drops what was restored from a store (it is another user's).
    pub(super) fn drop_restored(&mut self) {
        self.items.retain(|i| i.op.is_some());
    }

    /// A change the store held, queued again (its call is gone). The limit
    /// does not apply: it was within it when made.
    pub(super) fn restore(&mut self, pending: Pending) {
        if self.items.iter().all(|i| i.key != pending.key) {
            self.items.push_back(Item {
                op: None,
                key: pending.key,
                command: pending.command,
                in_flight: false,
                not_before: None,
                waiting: Vec::new(),
            });
        }
    }

    fn remove(&mut self, key: &str) -> Option<Item> {
        let index = self.items.iter().position(|i| i.key == key)?;
        self.items.remove(index)
    }
}

impl Session {
    pub(super) fn enqueue_message(&mut self, now: Now, op: OpId, mut request: v1::SendRequest) {
        if request.client_id.is_empty() {
            request.client_id = self.new_client_id(now);
        }
        let failed = (self.outbox.failed.iter())
            .find(|(id, _)| request.attachment_ids.contains(id))
            .map(|(_, err)| err.clone());
        if let Some(err) = failed {
            self.done(op, Err(err));
            return;
        }
        let key = request.client_id.clone();
        let waiting = (request.attachment_ids.iter())
            .filter(|id| self.outbox.uploads.contains(*id))
            .cloned()
            .collect();
        self.enqueue(op, key, Command::Send(request), waiting);
    }

    /// An edit, a delete, a reaction or a read, queued like a message.
    pub(super) fn enqueue_change(&mut self, now: Now, op: OpId, command: Command) {
        let key = format!("q-{}", &self.new_client_id(now)[2..]);
        self.enqueue(op, key, command, Vec::new());
    }

    /// An upload of this client's began: messages naming it wait for it.
    pub(super) fn upload_started(&mut self, id: String) {
        self.outbox.uploads.insert(id);
    }

    /// An upload ended: the messages waiting for it may go, or (when it
    /// failed or was cancelled) fail with its error.
    pub(super) fn upload_ended(&mut self, id: &str, result: Result<(), Error>) {
        self.outbox.uploads.remove(id);
        let Err(err) = result else {
            for item in &mut self.outbox.items {
                item.waiting.retain(|w| w != id);
            }
            return;
        };
        if self.outbox.failed.len() == FAILED_KEPT {
            self.outbox.failed.pop_front();
        }
        self.outbox.failed.push_back((id.to_owned(), err.clone()));
        let failed: Vec<String> = (self.outbox.items.iter())
            .filter(|i| i.waiting.iter().any(|w| w == id))
            .map(|i| i.key.clone())
            .collect();
        for key in failed {
            if let Some(item) = self.outbox.remove(&key) {
                self.record(Change::OutboxRemove(item.key.clone()));
                match item.op {
                    Some(op) => self.done(op, Err(err.clone())),
                    None => self.emit(Event::Sent {
                        client_id: item.key,
                        result: Err(err.clone()),
                    }),
                }
            }
        }
    }

    fn enqueue(&mut self, op: OpId, key: String, command: Command, waiting: Vec<String>) {
        if conversation_of(&command).is_none_or(str::is_empty) {
            let err = Error::InvalidArgument("conversation_id is empty".into());
            self.done(op, Err(err));
            return;
        }
        if self.outbox.items.len() >= self.outbox.limit {
            let limit = self.outbox.limit;
            self.done(op, Err(Error::OutboxFull { limit }));
            return;
        }
        self.record(Change::OutboxAdd(Pending {
            key: key.clone(),
            command: command.clone(),
        }));
        self.outbox.items.push_back(Item {
            op: Some(op),
            key,
            command,
            in_flight: false,
            not_before: None,
            waiting,
        });
    }

    /// A fresh idempotency key: time-ordered, with 64 random bits.
    pub(super) fn new_client_id(&mut self, now: Now) -> String {
        format!("c-{:011x}{:016x}", now.unix_ms.max(0), self.rng.next_u64())
    }

    pub(super) fn send_reply(&mut self, now: Now, key: &str, result: Result<Reply, Error>) {
        match result {
            Err(err) if err.temporary() => {
                // Stays in place (and holds the later ones): sent again after a while.
                let wait = match &err {
                    Error::Server {
                        retry_after: Some(wait),
                        ..
                    } => *wait,
                    _ => Duration::from_secs(1),
                };
                if let Some(item) = self.outbox.items.iter_mut().find(|i| i.key == key) {
                    item.in_flight = false;
                    item.not_before = Some(now.at + wait);
                }
            }
            result => {
                let Some(item) = self.outbox.remove(key) else {
                    return;
                };
                // An edit's, delete's or reaction's answer updates the cache
                // (and the store) as any call's does.
                if let Ok(reply) = &result {
                    self.observe_reply(reply);
                }
                self.record(Change::OutboxRemove(item.key.clone()));
                if let (Ok(_), Command::Send(request)) = (&result, &item.command) {
                    self.typing_done(now, &request.conversation_id);
                }
                match item.op {
                    Some(op) => self.done(op, result),
                    None => {
                        let result = match result {
                            Ok(Reply::Send(v1::SendResult {
                                message: Some(m), ..
                            }))
                            | Ok(Reply::Message(v1::MessageResult { message: Some(m) })) => Ok(m),
                            // A read's outcome is the `read` event, as always.
                            Ok(Reply::Read(_)) => return,
                            Ok(other) => Err(Error::InvalidArgument(format!(
                                "unexpected reply: {}",
                                crate::error::shown(&other)
                            ))),
                            Err(e) => Err(e),
                        };
                        self.emit(Event::Sent {
                            client_id: item.key,
                            result,
                        });
                    }
                }
            }
        }
    }
}

/// The conversation a queued change is about.
fn conversation_of(command: &Command) -> Option<&str> {
    Some(match command {
        Command::Send(r) => &r.conversation_id,
        Command::Edit(r) => &r.conversation_id,
        Command::Delete(r) => &r.conversation_id,
        Command::React(r) | Command::Unreact(r) => &r.conversation_id,
        Command::Read(r) => &r.conversation_id,
        _ => return None,
    })
}
