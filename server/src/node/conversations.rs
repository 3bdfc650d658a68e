//! Conversations: read, create a group, start a direct one; each new
//! conversation is pushed to its members. Changes to an existing conversation
//! (members, name, roles) are in `membership.rs`.

use mkondo_proto::v1::{self, push::Push};

use super::requests::{distinct, MAX_MEMBERS_PER_REQUEST};
use super::{require_role, Actor, Node};
use crate::engine::broker::Target;
use crate::error::{Error, Result};
use crate::store::{Conversation, Kind, NewGroup, Role};
use crate::views;

impl Node {
    // ----- conversations

    /// A conversation the actor may see (members only, for users). To a user,
    /// one they are not in is `not_found`, as one that does not exist, so
    /// conversation ids cannot be probed; the backend sees every conversation.
    pub async fn visible_conversation(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
    ) -> Result<Conversation> {
        let viewer = match actor {
            Actor::User(u) => Some(u),
            Actor::Backend => None,
        };
        let c = self
            .store
            .get_conversation(app, conv, viewer)
            .await?
            .ok_or_else(|| Error::not_found("conversation"))?;
        if viewer.is_some() && c.viewer.is_none() {
            return Err(Error::not_found("conversation"));
        }
        Ok(c)
    }

    /// Deletes a conversation for everyone: the backend, or an owner of a group
    /// (a member of a direct conversation hides it instead). Each member's devices
    /// are told with a `member_left` (removed) push for that member, so their lists
    /// drop it.
    pub async fn delete_conversation(&self, app: &str, actor: Actor<'_>, conv: &str) -> Result<()> {
        let c = self.visible_conversation(app, actor, conv).await?;
        if let Actor::User(_) = actor {
            if c.kind == Kind::Direct {
                return Err(Error::invalid(
                    "a direct conversation cannot be deleted by a member; hide it instead",
                ));
            }
            require_role(&c, Role::Owner)?;
        }
        let members = self.store.member_ids(app, conv).await?;
        let _ordered = self.conversation_lock(app, conv).lock().await;
        if !self.store.delete_conversation(app, conv).await? {
            return Err(Error::not_found("conversation"));
        }
        self.end_subscriptions(
            app,
            Target {
                subscribers_of: vec![conv.to_owned()],
                ..Default::default()
            },
            conv,
        )
        .await;
        for member in members {
            self.publish(
                app,
                Target {
                    users: vec![member.clone()],
                    ..Default::default()
                },
                Push::MemberLeft(v1::MemberLeft {
                    conversation_id: conv.to_owned(),
                    user_id: member,
                    removed: true,
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// A conversation in wire form for `viewer`, with the direct peer and their presence.
    pub async fn conversation_view(
        &self,
        app: &str,
        viewer: &str,
        c: &Conversation,
    ) -> Result<v1::Conversation> {
        let Some(peer_id) = c.peer_of(viewer) else {
            return Ok(views::conversation(c, None, None));
        };
        let peer = self.store.get_user(app, peer_id).await?;
        let presence = self
            .presence_seen_by(app, viewer, &[peer_id.to_owned()])
            .await?;
        Ok(views::conversation(c, peer.as_ref(), presence.first()))
    }

    pub async fn create_group(
        &self,
        app: &str,
        actor: Actor<'_>,
        mut group: NewGroup,
    ) -> Result<Conversation> {
        // Capped and de-duplicated before any query: a refused create leaves
        // nothing behind (no user created for it).
        group.members = distinct(
            std::mem::take(&mut group.members),
            MAX_MEMBERS_PER_REQUEST,
            "members",
        )?;
        match actor {
            // SPEC §1: ids are the server's or the backend's. A user choosing one
            // could take an id the backend will name in `groups` claims.
            Actor::User(_) if group.id.is_some() => {
                return Err(Error::denied(
                    "only the backend chooses a conversation id; leave `id` out",
                ));
            }
            Actor::User(u) => {
                group.creator = Some(u.to_owned());
                self.require_users(app, &group.members).await?;
            }
            Actor::Backend => group.create_missing_members = true,
        }
        let conv = self.store.create_group(app, group).await?;
        let members = self.store.member_ids(app, &conv.id).await?;
        // Each member sees their own role and read state, not the creator's.
        self.publish_conversation(app, &conv.id, &members).await?;
        Ok(conv)
    }

    pub async fn start_direct(
        &self,
        app: &str,
        a: &str,
        b: &str,
        create_missing: bool,
    ) -> Result<Conversation> {
        self.start_direct_created(app, a, b, create_missing)
            .await
            .map(|(conv, _)| conv)
    }

    /// `start_direct`, also telling whether the conversation was created now
    /// (REST answers 201 then, 200 for an existing one).
    pub async fn start_direct_created(
        &self,
        app: &str,
        a: &str,
        b: &str,
        create_missing: bool,
    ) -> Result<(Conversation, bool)> {
        if create_missing {
            self.ensure_users(app, &[a.to_owned(), b.to_owned()])
                .await?;
        } else {
            self.require_users(app, &[b.to_owned()]).await?;
        }
        self.refuse_blocked(app, a, b).await?;
        let (conv, created) = self.store.direct_conversation(app, a, b).await?;
        if created {
            self.publish(
                app,
                Target {
                    users: vec![a.to_owned(), b.to_owned()],
                    ..Default::default()
                },
                Push::ConversationUpdated(v1::ConversationUpdated {
                    conversation: Some(views::conversation(&conv, None, None)),
                }),
            )
            .await?;
        }
        Ok((conv, created))
    }
}
