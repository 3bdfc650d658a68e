//! Conversations and members over the Admin API, the twins of
//! `rest/conversations.rs`: the backend sees every conversation of its app,
//! without the per-member fields (role, unread count) of a user's view.

use mkondo_proto::v1::*;
use pbjson_types::Empty;

use super::{json, owned, page};
use crate::error::{Error, Result};
use crate::node::requests::{wire_role, NewConversation};
use crate::node::{Actor, Node};
use crate::store::{self, Kind};
use crate::views;

/// A conversation as the backend sees it.
pub(super) fn view(c: &store::Conversation) -> Conversation {
    views::conversation(c, None, None)
}

pub(super) async fn create_conversation(
    node: &Node,
    app: &str,
    req: CreateConversationRequest,
) -> Result<CreateConversationResponse> {
    let kind = Kind::parse(&req.kind)
        .ok_or_else(|| Error::invalid("kind must be \"group\" or \"direct\""))?;
    let request = NewConversation {
        kind,
        members: req.members,
        id: owned(req.id),
        name: req.name,
        icon_url: req.icon_url,
        data: json(req.data),
    };
    let (conv, created) = node
        .create_conversation(app, Actor::Backend, request)
        .await?;
    Ok(CreateConversationResponse {
        conversation: Some(view(&conv)),
        created,
    })
}

pub(super) async fn get_conversation(
    node: &Node,
    app: &str,
    req: ConversationIdRequest,
) -> Result<Conversation> {
    let conv = node
        .visible_conversation(app, Actor::Backend, &req.id)
        .await?;
    Ok(view(&conv))
}

pub(super) async fn list_conversations(
    node: &Node,
    app: &str,
    req: PageRequest,
) -> Result<ConversationPage> {
    let page = node
        .conversations_page(app, Actor::Backend, &page(req.cursor, req.limit))
        .await?;
    Ok(ConversationPage {
        items: page.items.iter().map(view).collect(),
        next_cursor: page.next_cursor.unwrap_or_default(),
    })
}

pub(super) async fn update_conversation(
    node: &Node,
    app: &str,
    req: UpdateConversationRequest,
) -> Result<Conversation> {
    let data = json(req.data);
    let conv = node
        .update_conversation(
            app,
            Actor::Backend,
            &req.id,
            req.name.as_deref(),
            req.icon_url.as_deref(),
            data.as_ref(),
        )
        .await?;
    Ok(view(&conv))
}

pub(super) async fn delete_conversation(
    node: &Node,
    app: &str,
    req: ConversationIdRequest,
) -> Result<Empty> {
    node.delete_conversation(app, Actor::Backend, &req.id)
        .await?;
    Ok(Empty {})
}

pub(super) async fn list_members(
    node: &Node,
    app: &str,
    req: ListMembersRequest,
) -> Result<MemberPage> {
    let page = node
        .members_page(
            app,
            Actor::Backend,
            &req.conversation_id,
            &page(req.cursor, req.limit),
        )
        .await?;
    Ok(MemberPage {
        items: page.items.iter().map(views::member).collect(),
        next_cursor: page.next_cursor.unwrap_or_default(),
    })
}

pub(super) async fn add_members(
    node: &Node,
    app: &str,
    req: AddMembersRequest,
) -> Result<AddMembersResponse> {
    let added = node
        .add_members_request(app, Actor::Backend, &req.conversation_id, &req.user_ids)
        .await?;
    Ok(AddMembersResponse {
        members: added.iter().map(views::member).collect(),
    })
}

pub(super) async fn remove_member(
    node: &Node,
    app: &str,
    req: RemoveMemberRequest,
) -> Result<Empty> {
    node.remove_member(app, Actor::Backend, &req.conversation_id, &req.user_id)
        .await?;
    Ok(Empty {})
}

pub(super) async fn set_member_role(
    node: &Node,
    app: &str,
    req: SetMemberRoleRequest,
) -> Result<Member> {
    let role = wire_role(&req.role)?;
    let member = node
        .set_member_role(
            app,
            Actor::Backend,
            &req.conversation_id,
            &req.user_id,
            role,
        )
        .await?;
    Ok(views::member(&member))
}
