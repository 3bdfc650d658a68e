//! Commands about people and groups: members with their profiles, users by
//! id, the directory, one's own profile, editing a group, roles, deleting a
//! group, blocks and the total unread count. Each is one call to the node,
//! which holds the rules (REST and Admin gRPC call the same functions).

use mkondo_proto::convert::struct_to_json;
use mkondo_proto::v1::{self, client_frame::Command, reply::Result as R};

use super::Session;
use crate::error::{Error, Result};
use crate::node::requests::{wire_role, PageRequest};
use crate::node::Actor;
use crate::store::users::UserPatch;
use crate::views;

impl Session {
    pub(super) async fn people_command(
        &mut self,
        app: &str,
        me: &str,
        command: Command,
    ) -> Result<R> {
        let node = self.node.clone();
        let actor = Actor::User(me);
        Ok(match command {
            Command::Members(req) => {
                let page = PageRequest::from_wire(req.cursor, req.limit);
                let (members, users) = node
                    .members_with_users(app, actor, &req.conversation_id, &page)
                    .await?;
                R::Members(v1::MembersResult {
                    members: members
                        .items
                        .iter()
                        .map(|m| views::member_with_user(m, &users))
                        .collect(),
                    next_cursor: members.next_cursor.unwrap_or_default(),
                })
            }
            Command::Users(req) => {
                let (users, presence) = node.visible_users(app, me, &req.user_ids).await?;
                R::Users(v1::UsersResult {
                    users: users.iter().map(views::user).collect(),
                    presence: presence.iter().map(views::presence).collect(),
                })
            }
            Command::SearchUsers(req) => {
                let users = node
                    .search_directory(app, me, &req.query, req.limit)
                    .await?;
                R::Users(v1::UsersResult {
                    users: users.iter().map(views::user).collect(),
                    presence: Vec::new(),
                })
            }
            Command::UpdateProfile(req) => {
                let patch = UserPatch {
                    name: req.name,
                    avatar_url: req.avatar_url,
                    data: req.data.as_ref().map(struct_to_json),
                };
                let user = node.update_user(app, actor, me, &patch).await?;
                R::User(v1::UserResult {
                    user: Some(views::user(&user)),
                })
            }
            Command::UpdateConversation(req) => {
                let data = req.data.as_ref().map(struct_to_json);
                let c = node
                    .update_conversation(
                        app,
                        actor,
                        &req.conversation_id,
                        req.name.as_deref(),
                        req.icon_url.as_deref(),
                        data.as_ref(),
                    )
                    .await?;
                R::Conversation(v1::ConversationResult {
                    conversation: Some(node.conversation_view(app, me, &c).await?),
                })
            }
            Command::SetRole(req) => {
                let role = wire_role(&req.role)?;
                let member = node
                    .set_member_role(app, actor, &req.conversation_id, &req.user_id, role)
                    .await?;
                R::Member(v1::MemberResult {
                    member: Some(views::member(&member)),
                })
            }
            Command::DeleteConversation(req) => {
                node.delete_conversation(app, actor, &req.conversation_id)
                    .await?;
                R::Ok(v1::Ok {})
            }
            Command::Blocks(req) => {
                let page = node
                    .blocks_of(app, me, &PageRequest::from_wire(req.cursor, req.limit))
                    .await?;
                R::Blocks(v1::BlocksResult {
                    blocks: page.items.iter().map(views::block).collect(),
                    next_cursor: page.next_cursor.unwrap_or_default(),
                })
            }
            Command::Unread(_) => R::Unread(v1::UnreadResult {
                total: super::commands::unsigned(node.total_unread_of(app, me).await?),
            }),
            _ => return Err(Error::invalid("unexpected command")),
        })
    }
}
