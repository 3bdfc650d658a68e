//! Between people: notifications from the customer's backend, blocks, hiding a
//! conversation ("delete chat") and WebRTC signaling.
//!
//! - A notification is stored before it is pushed, so a user who connects while
//!   it is being sent gets it in the connect reply, live, or both (never
//!   neither); clients drop an id they already have.
//! - A block is mutual for direct messaging: while A blocks B, neither can start
//!   or write in their direct conversation (`blocked`), and neither sees the
//!   other's presence or typing anywhere. Group messages still flow.
//! - Signals are live only: published to the addressed member's sessions, never
//!   stored, lost when they are offline.

use mkondo_proto::v1::{self, push::Push};
use serde_json::Value;

use super::requests::PageRequest;
use super::{Actor, Node};
use crate::auth::valid_user_id;
use crate::engine::broker::Target;
use crate::error::{Error, Result};
use crate::store::social::{blocked_error, Block, Notification};
use crate::store::{Conversation, NewMessage, Page};
use crate::views;

pub const MAX_NOTIFICATION_PAYLOAD_BYTES: usize = 16 * 1024;
pub const DEFAULT_NOTIFICATION_TTL_SECS: u64 = 7 * 24 * 3600;
pub const MAX_NOTIFICATION_TTL_SECS: u64 = 30 * 24 * 3600;
/// Pending notifications included in a connect reply; the rest are listed over REST.
pub const CONNECT_NOTIFICATIONS: u32 = 100;
pub const MAX_SIGNAL_PAYLOAD_BYTES: usize = 64 * 1024;

impl Node {
    // ----- notifications

    /// Stores a notification for `user` and pushes it to every connected device.
    pub async fn notify(
        &self,
        app: &str,
        user: &str,
        payload: &Value,
        ttl_secs: Option<u64>,
    ) -> Result<Notification> {
        if !payload.is_object() {
            return Err(Error::invalid("payload must be a JSON object"));
        }
        if payload.to_string().len() > MAX_NOTIFICATION_PAYLOAD_BYTES {
            return Err(Error::too_large(
                "notification payload is larger than 16 KiB",
            ));
        }
        let ttl = ttl_secs.unwrap_or(DEFAULT_NOTIFICATION_TTL_SECS);
        if !(1..=MAX_NOTIFICATION_TTL_SECS).contains(&ttl) {
            return Err(Error::invalid(format!(
                "ttl_seconds must be 1 to {MAX_NOTIFICATION_TTL_SECS} (30 days)"
            )));
        }
        self.require_users(app, &[user.to_owned()]).await?;
        let n = self
            .store
            .insert_notification(
                app,
                user,
                payload,
                i64::try_from(ttl * 1000).map_err(|_| Error::internal())?,
            )
            .await?;
        metrics::counter!("mkondo_notifications_total").increment(1);
        self.publish(
            app,
            Target {
                users: vec![user.to_owned()],
                ..Default::default()
            },
            Push::Notification(views::notification(&n)),
        )
        .await?;
        Ok(n)
    }

    /// `user`'s pending notifications, oldest first.
    pub async fn pending_notifications(
        &self,
        app: &str,
        user: &str,
        page: &PageRequest,
    ) -> Result<Page<Notification>> {
        let b = page.bounds()?;
        self.require_users(app, &[user.to_owned()]).await?;
        self.store
            .pending_notifications(app, user, b.cursor, b.limit)
            .await
    }

    /// What a connect reply carries: the oldest pending notifications.
    pub async fn connect_notifications(
        &self,
        app: &str,
        user: &str,
    ) -> Result<Vec<v1::Notification>> {
        let page = self
            .store
            .pending_notifications(app, user, None, CONNECT_NOTIFICATIONS)
            .await?;
        Ok(page.items.iter().map(views::notification).collect())
    }

    /// Removes a notification for good, on every device of `user`.
    pub async fn ack_notification(&self, app: &str, user: &str, id: &str) -> Result<()> {
        if self.store.ack_notification(app, user, id).await? {
            Ok(())
        } else {
            Err(Error::not_found("notification"))
        }
    }

    // ----- blocks

    /// `user` blocks `other`. Returns false when the block already stood.
    pub async fn block(&self, app: &str, user: &str, other: &str) -> Result<bool> {
        self.check_block_target(app, user, other).await?;
        self.store.block(app, user, other).await
    }

    /// `user` lifts their block of `other` (a no-op when there was none).
    pub async fn unblock(&self, app: &str, user: &str, other: &str) -> Result<()> {
        self.check_block_target(app, user, other).await?;
        self.store.unblock(app, user, other).await?;
        Ok(())
    }

    pub async fn blocks_of(
        &self,
        app: &str,
        user: &str,
        page: &PageRequest,
    ) -> Result<Page<Block>> {
        let b = page.bounds()?;
        self.require_users(app, &[user.to_owned()]).await?;
        self.store.blocks_of(app, user, b.cursor, b.limit).await
    }

    async fn check_block_target(&self, app: &str, user: &str, other: &str) -> Result<()> {
        if !valid_user_id(other) {
            return Err(Error::invalid("invalid user id"));
        }
        // A well-formed request the caller may not make (the OpenAPI document
        // cannot relate the path's id to the body's, so not invalid_argument).
        if user == other {
            return Err(Error::denied("a user cannot block themself"));
        }
        self.require_users(app, &[user.to_owned(), other.to_owned()])
            .await
    }

    /// `blocked` when a block stands between `a` and `b`, in either direction.
    pub(crate) async fn refuse_blocked(&self, app: &str, a: &str, b: &str) -> Result<()> {
        if self.store.blocked_between(app, a, b).await? {
            return Err(blocked_error());
        }
        Ok(())
    }

    /// `blocked` when `msg` is a user message in a direct conversation whose two
    /// members have a block between them. System messages still go through.
    pub(crate) async fn refuse_blocked_direct(
        &self,
        app: &str,
        conv: &str,
        msg: &NewMessage,
    ) -> Result<()> {
        if msg.kind != "system" && self.store.direct_blocked(app, conv, &msg.sender_id).await? {
            return Err(blocked_error());
        }
        Ok(())
    }

    /// Everyone who must not see `user`'s presence and typing, nor show theirs
    /// to `user`: blocks in either direction.
    pub(crate) async fn block_peers(&self, app: &str, user: &str) -> Result<Vec<String>> {
        self.store.block_peers(app, user).await
    }

    // ----- hide ("delete chat")

    /// Hides `conv` from `user`: their history starts after its current last
    /// message and it leaves their list until a new message arrives. Their
    /// devices get a `conversation_updated` with `hidden` set.
    pub async fn hide(&self, app: &str, user: &str, conv: &str) -> Result<Conversation> {
        self.visible_conversation(app, Actor::User(user), conv)
            .await?;
        if !self.store.hide_conversation(app, conv, user).await? {
            return Err(self.not_member_error());
        }
        self.own_view_changed(app, user, conv).await
    }

    /// After a change to `user`'s own membership of `conv` (hidden, muted):
    /// the conversation as they now see it, told to every session of theirs.
    pub(crate) async fn own_view_changed(
        &self,
        app: &str,
        user: &str,
        conv: &str,
    ) -> Result<Conversation> {
        let c = self
            .visible_conversation(app, Actor::User(user), conv)
            .await?;
        self.publish(
            app,
            Target {
                users: vec![user.to_owned()],
                ..Default::default()
            },
            Push::ConversationUpdated(v1::ConversationUpdated {
                conversation: Some(self.conversation_view(app, user, &c).await?),
            }),
        )
        .await?;
        Ok(c)
    }

    // ----- signaling

    /// Relays `payload` from `from` to `to`'s connected devices; both must be
    /// members of `conv` and have no block between them. `ring`: a call
    /// invitation, also sent as a VoIP push when `to` is not in the foreground.
    pub async fn signal(
        &self,
        app: &str,
        from: &str,
        conv: &str,
        to: &str,
        payload: String,
        ring: bool,
    ) -> Result<()> {
        if payload.len() > MAX_SIGNAL_PAYLOAD_BYTES {
            return Err(Error::too_large("signal payload is larger than 64 KiB"));
        }
        if payload.is_empty() {
            return Err(Error::invalid("payload is required"));
        }
        if to.is_empty() {
            return Err(Error::invalid("to_user_id is required"));
        }
        if to == from {
            return Err(Error::invalid("cannot signal yourself"));
        }
        if self.store.member(app, conv, from).await?.is_none() {
            return Err(self.not_member_error());
        }
        if self.store.member(app, conv, to).await?.is_none() {
            return Err(Error::not_found("recipient in this conversation"));
        }
        self.refuse_blocked(app, from, to).await?;
        metrics::counter!("mkondo_signals_total").increment(1);
        // The live signal first: a VoIP push is for a callee not looking.
        let rung = ring.then(|| payload.clone());
        self.publish(
            app,
            Target {
                users: vec![to.to_owned()],
                ..Default::default()
            },
            Push::Signal(v1::SignalPush {
                conversation_id: conv.to_owned(),
                from_user_id: from.to_owned(),
                payload,
            }),
        )
        .await?;
        if let Some(payload) = rung {
            self.ring(app, from, conv, to, &payload).await;
        }
        Ok(())
    }
}
