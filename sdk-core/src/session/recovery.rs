//! Recovery: each conversation's messages reach the application once per seq,
//! in seq order, across reconnects.
//!
//! The session remembers the last seq it delivered per conversation and resumes
//! from it on `connect`. A message below or at that position is a duplicate and
//! dropped; one right after it is delivered; one further ahead waits in a buffer
//! while history pages (`after` the position) fill the gap, which is also how a
//! replay cut at the server's limit (`more`) is completed. What the server cannot
//! give any more becomes an explicit [`Event::Gap`].

use std::collections::{BTreeMap, HashMap, HashSet};

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as Reply};

use super::{requests::Purpose, Now, Session};
use crate::error::Error;
use crate::event::{codes, Event};

/// History page size for filling gaps (the server's maximum).
const PAGE: u32 = 100;

#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// Last seq delivered (or the baseline the application started from).
    pos: HashMap<String, u64>,
    /// Messages that came ahead of a gap, by seq.
    ahead: HashMap<String, BTreeMap<u64, v1::Message>>,
    /// Conversations with a history page in flight.
    filling: HashSet<String>,
    /// Conversations whose position moved since the offline store last heard
    /// (tracked only with a store: `track_moves`).
    moved: HashSet<String>,
    pub(super) track_moves: bool,
}

impl Recovery {
    pub(super) fn positions(&self) -> HashMap<String, u64> {
        self.pos.clone()
    }

    fn set(&mut self, conv: &str, seq: u64) {
        self.pos.insert(conv.to_owned(), seq);
        if self.track_moves {
            self.moved.insert(conv.to_owned());
        }
    }

    /// Conversations the connect reply lists: messages after their `last_seq`
    /// are what this client will deliver (earlier ones are history).
    pub(super) fn baseline(&mut self, conversations: &[v1::Conversation]) {
        for c in conversations {
            self.baseline_one(&c.id, c.last_seq);
        }
    }

    pub(super) fn baseline_one(&mut self, conversation_id: &str, last_seq: u64) {
        if !self.pos.contains_key(conversation_id) {
            self.set(conversation_id, last_seq);
        }
    }

    /// Positions from the offline store: where the last run stopped.
    pub(super) fn restore(&mut self, positions: &[(String, u64)]) {
        for (conv, seq) in positions {
            self.pos.insert(conv.clone(), *seq);
        }
    }

    /// The positions that moved since the last call, for the offline store.
    pub(super) fn take_moved(&mut self) -> Vec<(String, u64)> {
        let moved = std::mem::take(&mut self.moved);
        moved
            .into_iter()
            .filter_map(|c| self.pos.get(&c).map(|seq| (c, *seq)))
            .collect()
    }

    /// The next connection resumes from the positions and replays everything
    /// after them, the buffered messages included.
    pub(super) fn connection_gone(&mut self) {
        self.ahead.clear();
        self.filling.clear();
    }
}

impl Session {
    /// A message from a push, a replay or a history page.
    pub(super) fn offer(&mut self, now: Now, msg: v1::Message) {
        let conv = msg.conversation_id.clone();
        match self.recovery.pos.get(&conv).copied() {
            None => {
                self.recovery.set(&conv, msg.seq);
                self.deliver(now, msg);
            }
            Some(pos) if msg.seq <= pos => {}
            Some(pos) if msg.seq == pos + 1 => {
                self.recovery.set(&conv, msg.seq);
                self.deliver(now, msg);
                self.drain_ahead(now, &conv);
            }
            Some(_) => {
                self.recovery
                    .ahead
                    .entry(conv.clone())
                    .or_default()
                    .insert(msg.seq, msg);
                if !self.recovery.filling.contains(&conv) {
                    self.fill(conv);
                }
            }
        }
    }

    fn drain_ahead(&mut self, now: Now, conv: &str) {
        loop {
            let pos = self.recovery.pos.get(conv).copied().unwrap_or(0);
            let Some(ahead) = self.recovery.ahead.get_mut(conv) else {
                return;
            };
            let Some(entry) = ahead.first_entry() else {
                self.recovery.ahead.remove(conv);
                return;
            };
            let seq = *entry.key();
            if seq > pos + 1 {
                return;
            }
            let msg = entry.remove();
            if seq == pos + 1 {
                self.recovery.set(conv, seq);
                self.deliver(now, msg);
            }
        }
    }

    /// Asks for the page after the position.
    fn fill(&mut self, conv: String) {
        let after = self.recovery.pos.get(&conv).copied().unwrap_or(0);
        self.recovery.filling.insert(conv.clone());
        let command = Command::History(v1::HistoryRequest {
            conversation_id: conv.clone(),
            before: 0,
            after,
            limit: PAGE,
        });
        self.control(
            command,
            Purpose::History {
                conversation_id: conv,
            },
        );
    }

    /// The connect reply's replay for one resumed conversation.
    pub(super) fn recover(&mut self, now: Now, recovered: v1::Recovery) {
        let conv = recovered.conversation_id.clone();
        // Replayed messages come in order; none of them should start a fill.
        self.recovery.filling.insert(conv.clone());
        for msg in recovered.messages {
            self.offer(now, msg);
        }
        self.recovery.filling.remove(&conv);
        if recovered.more || self.recovery.ahead.contains_key(&conv) {
            self.fill(conv);
        }
    }

    pub(super) fn fill_reply(&mut self, now: Now, conv: String, result: Result<Reply, Error>) {
        match result {
            Ok(Reply::History(page)) => {
                for msg in page.messages {
                    self.offer(now, msg);
                }
                self.recovery.filling.remove(&conv);
                if page.more {
                    self.fill(conv);
                } else if self.recovery.ahead.contains_key(&conv) {
                    // The server has nothing more before what is buffered.
                    self.gap(now, &conv);
                }
            }
            Err(err) if err.temporary() => {
                // Start over from the position on a new connection.
                self.recovery.filling.remove(&conv);
                if let super::Phase::Connected { conn } = self.phase {
                    self.outputs.push_back(super::Output::Close { conn });
                    let reason = format!("history for recovery failed: {err}");
                    self.lost(now, codes::TRANSPORT_CLOSED, &reason);
                }
            }
            other => {
                self.recovery.filling.remove(&conv);
                if let Err(err) = other {
                    self.emit(Event::Error(err));
                }
                self.gap(now, &conv);
            }
        }
    }

    /// Declares the hole before the first buffered message and moves on.
    fn gap(&mut self, now: Now, conv: &str) {
        let pos = self.recovery.pos.get(conv).copied().unwrap_or(0);
        let Some(first) = self
            .recovery
            .ahead
            .get(conv)
            .and_then(|a| a.keys().next().copied())
        else {
            return;
        };
        if first > pos + 1 {
            self.emit(Event::Gap {
                conversation_id: conv.to_owned(),
                from_seq: pos + 1,
                to_seq: first - 1,
            });
            self.recovery.set(conv, first - 1);
        }
        self.drain_ahead(now, conv);
    }
}
