//! Changes to messages already sent: edit, delete, react, unreact. REST and
//! real-time both call these, so who may change what is decided once:
//!
//! - edit: the sender only (the backend may edit anything); users never edit
//!   system messages;
//! - delete: the sender, an admin or owner of the conversation, or the backend;
//!   users never delete system messages. A deleted message is a tombstone: its
//!   text, data and reactions are erased from storage, its seq stays taken, and
//!   it can no longer be edited or reacted to;
//! - react / unreact: members, for themselves (the backend names the member).
//!
//! Editing and reacting are writing: in a direct conversation where a block
//! stands between the two, users get `blocked` (deleting and unreacting, which
//! only take something away, stay possible).
//!
//! Each change is pushed to every member as `message_updated` with the message
//! as it now is. The push leaves under the conversation's ordering lock, so a
//! member never hears of a change to a message before the message itself, and
//! hears changes to one message in the order they were made.

use mkondo_proto::v1::{self, push::Push};

use super::{require_role, Actor, Node};
use crate::engine::broker::Target;
use crate::error::{Error, Result};
use crate::store::messages::MessageEdit;
use crate::store::reactions::{check_emoji, deleted_error};
use crate::store::{Conversation, Message, NewMessage, Role};
use crate::views;

/// What a `message_updated` push says changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Edited,
    Deleted,
    Reactions,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Edited => "edited",
            Change::Deleted => "deleted",
            Change::Reactions => "reactions",
        }
    }
}

impl Node {
    /// Replaces the text and/or data of a message (absent fields are kept). An
    /// edit gives a non-empty text or a non-empty data object, so the message
    /// never ends up empty (a rule the request alone shows).
    pub async fn edit_message(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        seq: i64,
        edit: MessageEdit,
    ) -> Result<Message> {
        let gives_text = edit.text.as_deref().is_some_and(|t| !t.is_empty());
        let gives_data = edit
            .data
            .as_ref()
            .is_some_and(|d| d.as_object().is_none_or(|o| !o.is_empty()));
        if !gives_text && !gives_data {
            return Err(Error::invalid(
                "an edit needs a non-empty text or a non-empty data object",
            ));
        }
        let (_, message) = self.changeable_message(app, actor, conv, seq).await?;
        if let Actor::User(me) = actor {
            if message.kind == "system" {
                return Err(Error::denied("system messages cannot be edited"));
            }
            if message.sender_id != me {
                return Err(Error::denied("only the sender may edit a message"));
            }
            self.refuse_writing_if_blocked(app, conv, me).await?;
        }
        // Before the ordering lock, as for a send (hooks.rs).
        let edit = self.before_edit(app, &message, edit).await?;
        let _ordered = self.conversation_lock(app, conv).lock().await;
        let edited = self.store.edit_message(app, conv, seq, &edit).await?;
        self.publish_change(app, &edited, Change::Edited).await?;
        Ok(edited)
    }

    /// Turns a message into a tombstone. Deleting a tombstone again answers it
    /// unchanged and pushes nothing, so a retried delete is harmless.
    pub async fn delete_message(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        seq: i64,
    ) -> Result<Message> {
        let (c, message) = self.changeable_message(app, actor, conv, seq).await?;
        if let Actor::User(me) = actor {
            if message.kind == "system" {
                return Err(Error::denied("system messages cannot be deleted"));
            }
            if message.sender_id != me {
                require_role(&c, Role::Admin).map_err(|_| {
                    Error::denied(
                        "only the sender or an admin of the conversation may delete a message",
                    )
                })?;
            }
        }
        let _ordered = self.conversation_lock(app, conv).lock().await;
        let (tombstone, deleted_now) = self.store.delete_message(app, conv, seq).await?;
        if deleted_now {
            self.publish_change(app, &tombstone, Change::Deleted)
                .await?;
        }
        Ok(tombstone)
    }

    /// Adds `user`'s reaction. Returns the message and whether the reaction is new
    /// (reacting twice with the same emoji changes nothing and pushes nothing).
    pub async fn react(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        seq: i64,
        emoji: &str,
        user: &str,
    ) -> Result<(Message, bool)> {
        check_emoji(emoji)?;
        self.reacting_member(app, actor, conv, user).await?;
        self.changeable_message(app, Actor::User(user), conv, seq)
            .await?;
        if let Actor::User(me) = actor {
            self.refuse_writing_if_blocked(app, conv, me).await?;
        }
        let _ordered = self.conversation_lock(app, conv).lock().await;
        let added = self.store.add_reaction(app, conv, seq, emoji, user).await?;
        self.reactions_changed(app, conv, seq, added).await
    }

    /// Removes `user`'s reaction. Returns the message and whether there was one.
    pub async fn unreact(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        seq: i64,
        emoji: &str,
        user: &str,
    ) -> Result<(Message, bool)> {
        check_emoji(emoji)?;
        self.reacting_member(app, actor, conv, user).await?;
        let (_, message) = self
            .changeable_message(app, Actor::User(user), conv, seq)
            .await?;
        if message.deleted_at.is_some() {
            return Err(deleted_error());
        }
        let _ordered = self.conversation_lock(app, conv).lock().await;
        let removed = self
            .store
            .remove_reaction(app, conv, seq, emoji, user)
            .await?;
        self.reactions_changed(app, conv, seq, removed).await
    }

    /// The rule that refuses a user's message in a blocked direct conversation.
    async fn refuse_writing_if_blocked(&self, app: &str, conv: &str, user: &str) -> Result<()> {
        let writing = NewMessage {
            sender_id: user.to_owned(),
            kind: "user".to_owned(),
            ..Default::default()
        };
        self.refuse_blocked_direct(app, conv, &writing).await
    }

    /// A user reacts for themselves; the backend names a member.
    async fn reacting_member(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        user: &str,
    ) -> Result<()> {
        match actor {
            Actor::User(me) if me != user => Err(Error::denied("cannot react as another user")),
            Actor::User(_) => Ok(()),
            Actor::Backend => {
                self.visible_conversation(app, Actor::Backend, conv).await?;
                match self.store.member(app, conv, user).await? {
                    Some(_) => Ok(()),
                    None => Err(Error::denied(
                        "the user is not a member of this conversation",
                    )),
                }
            }
        }
    }

    async fn reactions_changed(
        &self,
        app: &str,
        conv: &str,
        seq: i64,
        changed: bool,
    ) -> Result<(Message, bool)> {
        let message = self
            .store
            .message(app, conv, seq)
            .await?
            .ok_or_else(|| Error::not_found("message"))?;
        if changed {
            self.publish_change(app, &message, Change::Reactions)
                .await?;
        }
        Ok((message, changed))
    }

    /// The conversation and message `actor` wants to change: users only reach
    /// messages of conversations they are in, after what they hid.
    async fn changeable_message(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        seq: i64,
    ) -> Result<(Conversation, Message)> {
        if seq < 1 {
            return Err(Error::invalid("seq must be at least 1"));
        }
        let c = self.visible_conversation(app, actor, conv).await?;
        let hidden_up_to = c.viewer.as_ref().map_or(0, |v| v.cleared_seq);
        let message = self
            .store
            .message(app, conv, seq)
            .await?
            .filter(|_| seq > hidden_up_to)
            .ok_or_else(|| Error::not_found("message"))?;
        Ok((c, message))
    }

    async fn publish_change(&self, app: &str, message: &Message, change: Change) -> Result<()> {
        let members = self.store.member_ids(app, &message.conversation_id).await?;
        self.publish(
            app,
            Target {
                users: members,
                ..Default::default()
            },
            Push::MessageUpdated(v1::MessageUpdated {
                message: Some(views::message(message)),
                change: change.as_str().to_owned(),
            }),
        )
        .await
    }
}
