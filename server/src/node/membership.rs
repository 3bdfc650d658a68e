//! Changes to an existing conversation: members joining, leaving or removed, a
//! new name, icon or data, and roles. Each writes, in the same transaction, the
//! system message that tells it (see `store::system_messages`), so history tells
//! the whole story; the message is pushed as `message` with its seq, after the
//! membership push, under the conversation's ordering lock.
//!
//! Roles: `owner` > `admin` > `member`. Owners and admins add and remove
//! others, change the name, icon and data, and change roles; only an owner
//! makes owners or changes (or removes) an owner. Anyone leaves, except the last
//! owner of a group that still has other members: they hand ownership over
//! first (nobody is promoted behind their back). The backend may do anything.

use mkondo_proto::v1::{self, push::Push};
use serde_json::{json, Value};

use super::requests::{distinct, MAX_MEMBERS_PER_REQUEST};
use super::{require_role, Actor, Node};
use crate::engine::broker::Target;
use crate::error::{Error, Result};
use crate::store::system_messages::{ChangeBy, ConversationPatch, Notice, Owners};
use crate::store::{self, Conversation, Member, Message, Role};
use crate::views;

impl Node {
    pub async fn add_members(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        users: &[String],
    ) -> Result<Vec<Member>> {
        if users.is_empty() {
            return Err(Error::invalid(format!(
                "give 1 to {MAX_MEMBERS_PER_REQUEST} user ids"
            )));
        }
        let users = &distinct(users.to_vec(), MAX_MEMBERS_PER_REQUEST, "user_ids")?;
        let c = self.visible_conversation(app, actor, conv).await?;
        if c.kind == store::Kind::Direct {
            return Err(Error::denied(
                "a direct conversation has exactly two members",
            ));
        }
        let by = match actor {
            Actor::User(me) => {
                require_role(&c, Role::Admin)?;
                self.require_users(app, users).await?;
                Some(me)
            }
            Actor::Backend => {
                self.ensure_users(app, users).await?;
                None
            }
        };
        self.join_members(app, conv, users, by).await
    }

    /// Makes `users` members (the conversation must exist and be a group), with
    /// a "joined" system message each, and announces them. `by` is the member
    /// who added them (None: the backend, or a token's `groups` claim).
    pub(crate) async fn join_members(
        &self,
        app: &str,
        conv: &str,
        users: &[String],
        by: Option<&str>,
    ) -> Result<Vec<Member>> {
        let by_name = match by {
            Some(by) => Some(self.display_name(app, by).await?),
            None => None,
        };
        let mut notices = Vec::with_capacity(users.len());
        for user in users {
            let name = self.display_name(app, user).await?;
            let text = match (&by_name, by) {
                (Some(by_name), Some(by)) if by != user => format!("{by_name} added {name}"),
                _ => format!("{name} joined"),
            };
            notices.push((
                user.clone(),
                notice(text, "member_joined", Some(user), by, None),
            ));
        }
        let _ordered = self.conversation_lock(app, conv).lock().await;
        let (added, written) = self
            .store
            .add_members_noticed(app, conv, &notices, Role::Member, by)
            .await?;
        if added.is_empty() {
            return Ok(added);
        }
        let members = self.store.member_ids(app, conv).await?;
        for m in &added {
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
        self.publish_notices(app, &members, &written).await?;
        Ok(added)
    }

    /// A token's `groups` claim joins its user to an existing group (each
    /// connect: a member already is one, and nothing is written).
    pub(crate) async fn join_from_token(&self, app: &str, group: &str, user: &str) -> Result<()> {
        if self.store.member(app, group, user).await?.is_some() {
            return Ok(());
        }
        self.join_members(app, group, &[user.to_owned()], None)
            .await
            .map(drop)
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
            return Err(Error::denied(
                "cannot leave a direct conversation; hide it instead",
            ));
        }
        let (by, owners) = match actor {
            Actor::User(me) if me == user => (None, Owners::KeepOne),
            Actor::User(me) => {
                require_role(&c, Role::Admin)?;
                if let Some(target) = self.store.member(app, conv, user).await? {
                    if target.role == Role::Owner && viewer_role(&c) != Some(Role::Owner) {
                        return Err(Error::denied("only an owner can remove an owner"));
                    }
                }
                (Some(me), Owners::KeepOne)
            }
            Actor::Backend => (None, Owners::MayLeaveNone),
        };
        let removed_by_other = !matches!(actor, Actor::User(me) if me == user);
        let name = self.display_name(app, user).await?;
        let notice = match (removed_by_other, by) {
            (false, _) => notice(
                format!("{name} left"),
                "member_left",
                Some(user),
                None,
                None,
            ),
            (true, Some(by)) => {
                let by_name = self.display_name(app, by).await?;
                notice(
                    format!("{by_name} removed {name}"),
                    "member_removed",
                    Some(user),
                    Some(by),
                    None,
                )
            }
            (true, None) => notice(
                format!("{name} was removed"),
                "member_removed",
                Some(user),
                None,
                None,
            ),
        };
        let _ordered = self.conversation_lock(app, conv).lock().await;
        let written = self
            .store
            .remove_member_noticed(app, conv, user, notice, ChangeBy { member: by, owners })
            .await?
            .ok_or_else(|| Error::not_found("member"))?;
        self.end_subscriptions(
            app,
            Target {
                users: vec![user.to_owned()],
                ..Default::default()
            },
            conv,
        )
        .await;
        let remaining = self.store.member_ids(app, conv).await?;
        let mut targets = remaining.clone();
        targets.push(user.to_owned());
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
        .await?;
        self.publish_notices(app, &remaining, &[written]).await
    }

    /// Name, icon and data (owners and admins, or the backend). A new name is
    /// told in history; every member receives the conversation as they see it.
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
        let by = match actor {
            Actor::User(me) => {
                require_role(&c, Role::Admin)?;
                Some(me)
            }
            Actor::Backend => None,
        };
        let new_name = name.unwrap_or_default();
        let text = match (by, new_name.is_empty()) {
            (Some(by), false) => format!(
                "{} renamed the conversation to \u{201c}{new_name}\u{201d}",
                self.display_name(app, by).await?
            ),
            (Some(by), true) => format!(
                "{} removed the conversation's name",
                self.display_name(app, by).await?
            ),
            (None, false) => format!("The conversation was renamed to \u{201c}{new_name}\u{201d}"),
            (None, true) => "The conversation's name was removed".to_owned(),
        };
        let renamed = notice(
            text,
            "renamed",
            None,
            by,
            Some(("name", Value::from(new_name))),
        );
        let patch = ConversationPatch {
            name,
            icon_url,
            data,
        };
        let _ordered = self.conversation_lock(app, conv).lock().await;
        let written = self
            .store
            .update_conversation_noticed(app, conv, patch, renamed, by)
            .await?;
        let members = self.store.member_ids(app, conv).await?;
        self.publish_conversation(app, conv, &members).await?;
        self.publish_notices(app, &members, written.as_slice())
            .await?;
        self.visible_conversation(app, actor, conv).await
    }

    /// Sets a member's role (see the module doc for who may). The change is told
    /// in history; the member's devices also receive the conversation as they
    /// now see it, with their new role.
    pub async fn set_member_role(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        user: &str,
        role: Role,
    ) -> Result<Member> {
        let c = self.visible_conversation(app, actor, conv).await?;
        if c.kind == store::Kind::Direct {
            return Err(Error::denied(
                "the members of a direct conversation have no roles",
            ));
        }
        let current = self
            .store
            .member(app, conv, user)
            .await?
            .ok_or_else(|| Error::not_found("member"))?;
        let (by, owners) = match actor {
            Actor::User(me) => {
                require_role(&c, Role::Admin)?;
                let touches_owner = role == Role::Owner || current.role == Role::Owner;
                if touches_owner && viewer_role(&c) != Some(Role::Owner) {
                    return Err(Error::denied(
                        "only an owner can make owners or change an owner's role",
                    ));
                }
                (Some(me), Owners::KeepOne)
            }
            Actor::Backend => (None, Owners::MayLeaveNone),
        };
        let name = self.display_name(app, user).await?;
        let article = if role == Role::Admin || role == Role::Owner {
            "an"
        } else {
            "a"
        };
        let text = match by {
            Some(by) if by == user => format!("{name} is now {article} {}", role.as_str()),
            Some(by) => format!(
                "{} made {name} {article} {}",
                self.display_name(app, by).await?,
                role.as_str()
            ),
            None => format!("{name} is now {article} {}", role.as_str()),
        };
        let changed = notice(
            text,
            "role_changed",
            Some(user),
            by,
            Some(("role", Value::from(role.as_str()))),
        );
        let _ordered = self.conversation_lock(app, conv).lock().await;
        let (member, written) = self
            .store
            .set_role_noticed(
                app,
                conv,
                user,
                role,
                changed,
                ChangeBy { member: by, owners },
            )
            .await?
            .ok_or_else(|| Error::not_found("member"))?;
        if let Some(written) = written {
            let members = self.store.member_ids(app, conv).await?;
            self.publish_conversation(app, conv, &[user.to_owned()])
                .await?;
            self.publish_notices(app, &members, &[written]).await?;
        }
        Ok(member)
    }

    /// `conversation_updated` to each of `users`, as that user sees it.
    pub(super) async fn publish_conversation(
        &self,
        app: &str,
        conv: &str,
        users: &[String],
    ) -> Result<()> {
        for user in users {
            let Some(c) = self.store.get_conversation(app, conv, Some(user)).await? else {
                continue;
            };
            let view = self.conversation_view(app, user, &c).await?;
            self.publish(
                app,
                Target {
                    users: vec![user.clone()],
                    ..Default::default()
                },
                Push::ConversationUpdated(v1::ConversationUpdated {
                    conversation: Some(view),
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// System messages, in seq order, as `message` pushes to `members`.
    async fn publish_notices(
        &self,
        app: &str,
        members: &[String],
        notices: &[Message],
    ) -> Result<()> {
        for m in notices {
            self.publish(
                app,
                Target {
                    users: members.to_vec(),
                    ..Default::default()
                },
                Push::Message(views::message(m)),
            )
            .await?;
        }
        Ok(())
    }

    /// How system messages name a user: their name, or their id without one.
    async fn display_name(&self, app: &str, user: &str) -> Result<String> {
        Ok(match self.store.get_user(app, user).await? {
            Some(u) if !u.name.is_empty() => u.name,
            _ => user.to_owned(),
        })
    }
}

fn viewer_role(c: &Conversation) -> Option<Role> {
    c.viewer.as_ref().map(|v| v.role)
}

/// A system message: `text` for people, `data` for programs:
/// `{"event", "user_id"?, "by"?, extra?}`.
fn notice(
    text: String,
    event: &str,
    user: Option<&str>,
    by: Option<&str>,
    extra: Option<(&str, Value)>,
) -> Notice {
    let mut data = json!({ "event": event });
    if let Some(user) = user {
        data["user_id"] = Value::from(user);
    }
    if let Some(by) = by {
        data["by"] = Value::from(by);
    }
    if let Some((key, value)) = extra {
        data[key] = value;
    }
    Notice { text, data }
}
