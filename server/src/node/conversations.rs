//! Conversations and membership: create, start direct, add / remove members,
//! update; each change is pushed to the members.

use mkondo_proto::v1::{self, push::Push};

use super::{require_role, Actor, Node};
use crate::error::{Error, Result};
use crate::realtime::broker::Target;
use crate::store::{self, Conversation, Member, NewGroup, Role};
use crate::views;

impl Node {
    // ----- conversations

    /// A conversation the actor may see (members only, for users).
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
            return Err(Error::denied("not a member of this conversation"));
        }
        Ok(c)
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
        let presence = self.presence_of(app, &[peer_id.to_owned()]).await?;
        Ok(views::conversation(c, peer.as_ref(), presence.first()))
    }

    pub async fn create_group(
        &self,
        app: &str,
        actor: Actor<'_>,
        mut group: NewGroup,
    ) -> Result<Conversation> {
        match actor {
            Actor::User(u) => {
                group.creator = Some(u.to_owned());
                self.require_users(app, &group.members).await?;
            }
            Actor::Backend => self.ensure_users(app, &group.members).await?,
        }
        if group.members.len() > 1000 {
            return Err(Error::invalid("at most 1000 members at creation"));
        }
        let conv = self.store.create_group(app, group).await?;
        let members = self.store.member_ids(app, &conv.id).await?;
        self.publish(
            app,
            Target {
                users: members,
                ..Default::default()
            },
            Push::ConversationUpdated(v1::ConversationUpdated {
                conversation: Some(views::conversation(&conv, None, None)),
            }),
        )
        .await?;
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

    pub async fn add_members(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        users: &[String],
    ) -> Result<Vec<Member>> {
        if users.is_empty() || users.len() > 1000 {
            return Err(Error::invalid("give 1 to 1000 user ids"));
        }
        let c = self.visible_conversation(app, actor, conv).await?;
        if c.kind == store::Kind::Direct {
            return Err(Error::invalid(
                "a direct conversation has exactly two members",
            ));
        }
        match actor {
            Actor::User(_) => {
                require_role(&c, Role::Admin)?;
                self.require_users(app, users).await?;
            }
            Actor::Backend => self.ensure_users(app, users).await?,
        }
        let added = self
            .store
            .add_members(app, conv, users, Role::Member)
            .await?;
        self.announce_joined(app, conv, &added).await?;
        Ok(added)
    }

    pub(crate) async fn announce_joined(
        &self,
        app: &str,
        conv: &str,
        added: &[Member],
    ) -> Result<()> {
        if added.is_empty() {
            return Ok(());
        }
        let members = self.store.member_ids(app, conv).await?;
        for m in added {
            let user = self.store.get_user(app, &m.user_id).await?;
            let c = self
                .store
                .get_conversation(app, conv, Some(&m.user_id))
                .await?;
            self.publish(
                app,
                Target {
                    users: members.clone(),
                    ..Default::default()
                },
                Push::MemberJoined(v1::MemberJoined {
                    conversation_id: conv.to_owned(),
                    member: Some(views::member(m)),
                    user: user.as_ref().map(views::user),
                    conversation: c.as_ref().map(|c| views::conversation(c, None, None)),
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// Removes `user` from `conv`: themselves (leave), or by an admin / the backend.
    pub async fn remove_member(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        user: &str,
    ) -> Result<()> {
        let c = self.visible_conversation(app, actor, conv).await?;
        if c.kind == store::Kind::Direct && matches!(actor, Actor::User(_)) {
            return Err(Error::invalid(
                "cannot leave a direct conversation; hide it instead",
            ));
        }
        let removed_by_other = match actor {
            Actor::User(me) if me == user => false,
            Actor::User(_) => {
                require_role(&c, Role::Admin)?;
                if let Some(target) = self.store.member(app, conv, user).await? {
                    if target.role == Role::Owner
                        && c.viewer.as_ref().is_some_and(|v| v.role != Role::Owner)
                    {
                        return Err(Error::denied("only an owner can remove an owner"));
                    }
                }
                true
            }
            Actor::Backend => true,
        };
        let mut targets = self.store.member_ids(app, conv).await?;
        if !self.store.remove_member(app, conv, user).await? {
            return Err(Error::not_found("member"));
        }
        if !targets.iter().any(|t| t == user) {
            targets.push(user.to_owned());
        }
        self.publish(
            app,
            Target {
                users: targets,
                ..Default::default()
            },
            Push::MemberLeft(v1::MemberLeft {
                conversation_id: conv.to_owned(),
                user_id: user.to_owned(),
                removed: removed_by_other,
            }),
        )
        .await
    }

    pub async fn update_conversation(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        name: Option<&str>,
        icon_url: Option<&str>,
        data: Option<&serde_json::Value>,
    ) -> Result<Conversation> {
        let c = self.visible_conversation(app, actor, conv).await?;
        if matches!(actor, Actor::User(_)) {
            require_role(&c, Role::Admin)?;
        }
        self.store
            .update_conversation(app, conv, name, icon_url, data)
            .await?;
        let updated = self.visible_conversation(app, actor, conv).await?;
        let members = self.store.member_ids(app, conv).await?;
        self.publish(
            app,
            Target {
                users: members,
                ..Default::default()
            },
            Push::ConversationUpdated(v1::ConversationUpdated {
                conversation: Some(views::conversation(&updated, None, None)),
            }),
        )
        .await?;
        Ok(updated)
    }
}
