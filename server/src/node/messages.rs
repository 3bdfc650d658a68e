//! Messages: send (seq allocation and fan-out in seq order), history, read
//! positions.

use mkondo_proto::v1::{self, push::Push};
use mkondo_proto::ErrorCode;

use super::{Actor, Node};
use crate::engine::broker::Target;
use crate::error::{Error, Result};
use crate::store::{self, messages::HistoryQuery, NewMessage, Sent};
use crate::views;

impl Node {
    // ----- messages

    /// Sends a checked message (`send_request` is the door: who the sender may be).
    pub(super) async fn send_message(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        msg: NewMessage,
    ) -> Result<Sent> {
        store::messages::check_new_message(&msg)?;
        if let Actor::User(u) = actor {
            if u != msg.sender_id {
                return Err(Error::denied("cannot send as another user"));
            }
        }
        // The app's before-send hook, before the ordering lock: a slow hook
        // holds up this message only (hooks.rs).
        let msg = self.before_send(app, conv, msg).await?;
        // Whether the conversation exists, the sender is a member and no block
        // stands in a direct conversation is decided in the send's transaction,
        // under the conversation's row lock: nothing is read before it.
        let _ordered = self.conversation_lock(app, conv).lock().await;
        let sent = match self.store.send_message(app, conv, &msg).await {
            // As for a conversation that does not exist: ids cannot be probed.
            Err(e) if e.code == ErrorCode::PermissionDenied && matches!(actor, Actor::User(_)) => {
                return Err(self.not_member_error())
            }
            other => other?,
        };
        if !sent.duplicate {
            metrics::counter!("mkondo_messages_total").increment(1);
            self.typing_stopped(app, conv, &msg.sender_id);
            // The members as of the commit, not as of the checks above.
            self.publish(
                app,
                Target {
                    users: sent.recipients.clone(),
                    ..Default::default()
                },
                Push::Message(views::message(&sent.message)),
            )
            .await?;
        }
        Ok(sent)
    }

    /// Sends a message carrying uploads: they are claimed first (no other
    /// message can take them), the send's transaction records its seq on them,
    /// and a send that fails gives them back. A retried send (its `client_id`
    /// used) answers the original, whose uploads are attached already.
    pub(super) async fn send_with_attachments(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        mut msg: NewMessage,
        ids: &[String],
    ) -> Result<Sent> {
        if ids.is_empty() {
            return self.send_message(app, actor, conv, msg).await;
        }
        if msg.kind == "system" {
            return Err(Error::invalid("system messages carry no attachments"));
        }
        if let Some(client_id) = &msg.client_id {
            let used = self
                .store
                .client_id_seq(app, conv, &msg.sender_id, client_id)
                .await?;
            if let Some(message) = match used {
                Some(seq) => self.store.message(app, conv, seq).await?,
                None => None,
            } {
                return Ok(Sent {
                    message,
                    duplicate: true,
                    recipients: Vec::new(),
                });
            }
        }
        msg.attachments = self
            .claim_attachments(app, conv, &msg.sender_id, ids)
            .await?;
        let claimed = msg.attachments.clone();
        let sent = self.send_message(app, actor, conv, msg).await;
        match &sent {
            Ok(s) if !s.duplicate => {}
            // Refused, or answered by an original sent meanwhile: these
            // uploads are in no message.
            _ => self.release_attachments(app, &claimed).await,
        }
        sent
    }

    /// History the actor may read: users see nothing at or before their cleared_seq.
    pub(super) async fn history(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        query: &HistoryQuery,
    ) -> Result<store::Page<store::Message>> {
        let c = self.visible_conversation(app, actor, conv).await?;
        let floor = c.viewer.as_ref().map_or(0, |v| v.cleared_seq);
        self.store.history_page(app, conv, query, floor).await
    }

    pub async fn mark_read(
        &self,
        app: &str,
        user: &str,
        conv: &str,
        seq: i64,
    ) -> Result<(i64, i64)> {
        self.visible_conversation(app, Actor::User(user), conv)
            .await?;
        let (read, unread) = self.store.mark_read(app, conv, user, seq).await?;
        let members = self.store.member_ids(app, conv).await?;
        self.publish(
            app,
            Target {
                users: members,
                ..Default::default()
            },
            Push::Read(v1::ReadPush {
                conversation_id: conv.to_owned(),
                user_id: user.to_owned(),
                last_read_seq: read as u64,
                unread_count: unread as u64,
            }),
        )
        .await?;
        Ok((read, unread))
    }
}
