//! The door real-time sessions come through. A session (`realtime/session`) owns
//! its connection's state — what it delivered per conversation, its
//! subscriptions, its rate limit — and reaches the hub, the presence engine and
//! the store only through these calls, like REST and the Admin API.
//!
//! Ordering: a session is attached to the hub *before* it reads the store for a
//! resume (`replay`), so nothing committed in between falls between the replay
//! and the live stream; the session drops what it already delivered.

use std::sync::Arc;

use mkondo_proto::{ErrorCode, Reason};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::requests::{PageRequest, MAX_PAGE_LIMIT};
use super::{Actor, Node};
use crate::engine::hub::{SessionHandle, SessionId, TokenStamp};
use crate::engine::presence::UserPresence;
use crate::error::{Error, Result};
use crate::store::{Conversation, Message, Page};

/// Messages a resumed conversation missed, as far as one replay goes.
#[derive(Debug)]
pub struct Replay {
    pub messages: Vec<Message>,
    /// More than the replay limit was missed: the client pages the rest.
    pub more: bool,
    pub last_seq: i64,
}

/// What a subscriber sees at once: the conversation, its other members'
/// presence (the first 100 members) and who is typing.
#[derive(Debug)]
pub struct Subscription {
    pub conversation: Conversation,
    pub presence: Vec<UserPresence>,
    pub typing: Vec<String>,
}

/// The first page of a connect reply's conversation list when the client asks
/// for no size.
pub const CONNECT_CONVERSATIONS: u32 = 10;
/// Most messages one gap fill reads (a larger hole is paged by the client).
const MAX_GAP_FILL: u32 = 100;

impl Node {
    /// Marks a session open until the token is dropped: a graceful shutdown waits
    /// for every one (upgraded WebSockets are not connections the HTTP server waits for).
    pub fn track_session(&self) -> TaskTrackerToken {
        self.sessions.token()
    }

    /// A turn to run `connect` at once, if one is free (`max_concurrent_connects`).
    pub fn try_connect_turn(&self) -> Option<OwnedSemaphorePermit> {
        self.connect_gate.clone().try_acquire_owned().ok()
    }

    /// Waits for a turn to run `connect`; `None` when the node shuts down first.
    pub async fn connect_turn(&self) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            permit = self.connect_gate.clone().acquire_owned() => permit.ok(),
            _ = self.shutdown.cancelled() => None,
        }
    }

    /// How many revocations this node has seen: taken before a token is checked,
    /// so `recheck_token` can tell whether one arrived meanwhile.
    pub fn revocation_mark(&self) -> u64 {
        self.hub.revocations()
    }

    /// Joins a session to the hub under its user, unless the user already holds
    /// the most connections allowed.
    pub fn attach_session(&self, handle: SessionHandle) -> Result<()> {
        if self.hub.user_session_count(&handle.app, &handle.user)
            >= self.config.limits.max_connections_per_user
        {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "too many connections for this user",
            )
            .with_reason(Reason::ConnectionLimit));
        }
        self.hub.add(handle);
        Ok(())
    }

    /// Takes a session out of the hub with its subscriptions.
    pub fn detach_session(&self, id: SessionId, subscriptions: impl IntoIterator<Item = String>) {
        self.hub.remove(id, subscriptions);
    }

    /// The token a live session now holds (after an in-band refresh).
    pub fn set_session_token(&self, id: SessionId, token: TokenStamp) {
        self.hub.set_token(id, token);
    }

    /// Subscribes a session to a conversation its user may see, and answers what
    /// a subscriber sees at once.
    pub async fn subscribe_session(
        &self,
        app: &Arc<str>,
        user: &str,
        conv: &str,
        id: SessionId,
    ) -> Result<Subscription> {
        // Checked before the hub hears of it, so a non-member never receives a
        // push meant for subscribers, not even for a moment.
        let conversation = self
            .visible_conversation(app, Actor::User(user), conv)
            .await?;
        self.hub.subscribe(app, &conversation.id, id);
        let subscription = self.subscription(app, user, conversation).await;
        if subscription.is_err() {
            self.hub.unsubscribe(app, conv, id);
        }
        subscription
    }

    /// The rest of a subscribe, once the session is in the hub. Membership is
    /// checked again first: a removal committed after the first check but before
    /// the hub subscription published its unsubscribe too early to end this one.
    async fn subscription(
        &self,
        app: &str,
        user: &str,
        conversation: Conversation,
    ) -> Result<Subscription> {
        if self
            .store
            .member(app, &conversation.id, user)
            .await?
            .is_none()
        {
            return Err(self.not_member_error());
        }
        let first_page = PageRequest::new(None, Some(MAX_PAGE_LIMIT));
        let first = first_page.bounds()?;
        let mut members = self
            .store
            .members(app, &conversation.id, first.cursor, first.limit)
            .await?
            .items;
        members.retain(|m| m.user_id != user);
        let ids: Vec<String> = members.into_iter().map(|m| m.user_id).collect();
        let presence = self.presence_seen_by(app, user, &ids).await?;
        let typing = self.typing_seen_by(app, user, &conversation.id).await?;
        Ok(Subscription {
            conversation,
            presence,
            typing,
        })
    }

    /// Ends a session's subscription (nothing to do when there was none).
    pub fn unsubscribe_session(&self, app: &Arc<str>, conv: &str, id: SessionId) {
        self.hub.unsubscribe(app, conv, id);
    }

    /// What `user` missed in `conv` after `position`, up to the replay limit;
    /// `None` when the conversation is gone or no longer theirs (nothing to say).
    pub async fn replay(
        &self,
        app: &str,
        user: &str,
        conv: &str,
        position: i64,
    ) -> Result<Option<(Conversation, Replay)>> {
        let Some(c) = self.store.get_conversation(app, conv, Some(user)).await? else {
            return Ok(None);
        };
        let Some(viewer) = &c.viewer else {
            return Ok(None);
        };
        let (messages, more) = self
            .store
            .history(
                app,
                conv,
                None,
                Some(position),
                self.config.limits.replay_limit,
                viewer.cleared_seq,
            )
            .await?;
        let last_seq = c.last_seq;
        Ok(Some((
            c,
            Replay {
                messages,
                more,
                last_seq,
            },
        )))
    }

    /// Messages of `conv` after `after` and before `before` (at most a replay
    /// page), for a session whose live stream skipped them: with several nodes a
    /// later seq can arrive first, and the earlier ones are committed by then.
    pub async fn gap_fill(
        &self,
        app: &str,
        conv: &str,
        after: i64,
        before: i64,
    ) -> Result<Vec<Message>> {
        let want = u32::try_from(before - after - 1)
            .unwrap_or(MAX_GAP_FILL)
            .min(MAX_GAP_FILL);
        let (messages, _) = self
            .store
            .history(app, conv, None, Some(after), want, 0)
            .await?;
        Ok(messages.into_iter().filter(|m| m.seq < before).collect())
    }

    /// The first page of a connecting user's conversation list.
    pub async fn connect_conversations(
        &self,
        app: &str,
        user: &str,
        limit: Option<u32>,
    ) -> Result<Page<Conversation>> {
        let page = PageRequest {
            cursor: None,
            limit: Some(limit.unwrap_or(CONNECT_CONVERSATIONS)),
        };
        self.conversations_page(app, Actor::User(user), &page).await
    }
}
