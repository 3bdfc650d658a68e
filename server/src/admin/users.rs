//! Users over the Admin API: create / read / update / list, lifecycle and
//! revocation, a user's conversations and messages, notifications, presence,
//! and minting tokens — the twins of `rest/users.rs`, `rest/lifecycle.rs`,
//! `rest/notifications.rs`, `rest/presence.rs` and `rest/tokens.rs`.

use mkondo_proto::v1::*;
use pbjson_types::Empty;

use super::{json, non_empty, page, timestamp};
use crate::error::{Error, Result};
use crate::node::requests::MintInput;
use crate::node::{Actor, Node};
use crate::store::users::UserPatch;
use crate::views;

pub(super) async fn create_user(
    node: &Node,
    app: &str,
    req: CreateUserRequest,
) -> Result<CreateUserResponse> {
    let patch = UserPatch {
        name: req.name,
        avatar_url: req.avatar_url,
        data: json(req.data),
    };
    let (user, created) = node.create_user(app, &req.id, &patch).await?;
    Ok(CreateUserResponse {
        user: Some(views::user(&user)),
        created,
    })
}

pub(super) async fn get_user(node: &Node, app: &str, req: GetUserRequest) -> Result<User> {
    let user = node.visible_user(app, Actor::Backend, &req.id).await?;
    Ok(views::user(&user))
}

pub(super) async fn update_user(node: &Node, app: &str, req: UpdateUserRequest) -> Result<User> {
    let patch = UserPatch {
        name: req.name,
        avatar_url: req.avatar_url,
        data: json(req.data),
    };
    let user = node
        .update_user(app, Actor::Backend, &req.id, &patch)
        .await?;
    Ok(views::user(&user))
}

pub(super) async fn list_users(node: &Node, app: &str, req: ListUsersRequest) -> Result<UserPage> {
    let page = node
        .users_page(app, non_empty(&req.q), &page(req.cursor, req.limit))
        .await?;
    Ok(UserPage {
        items: page.items.iter().map(views::user).collect(),
        next_cursor: page.next_cursor.unwrap_or_default(),
    })
}

pub(super) async fn delete_user(
    node: &Node,
    app: &str,
    req: DeleteUserRequest,
) -> Result<DeleteUserResponse> {
    let deleted = node.delete_user(app, &req.id, req.erase).await?;
    Ok(DeleteUserResponse {
        id: req.id,
        conversations: u32::try_from(deleted.conversations.len()).unwrap_or(u32::MAX),
        erased_messages: deleted.erased,
        tokens_valid_after: timestamp(deleted.tokens_valid_after),
    })
}

pub(super) async fn deactivate_user(node: &Node, app: &str, req: UserIdRequest) -> Result<User> {
    Ok(views::user(&node.deactivate_user(app, &req.id).await?))
}

pub(super) async fn reactivate_user(node: &Node, app: &str, req: UserIdRequest) -> Result<User> {
    Ok(views::user(&node.reactivate_user(app, &req.id).await?))
}

pub(super) async fn revoke_user_tokens(
    node: &Node,
    app: &str,
    req: UserIdRequest,
) -> Result<RevokeTokensResponse> {
    let point = node.revoke_user_tokens(app, &req.id).await?;
    Ok(RevokeTokensResponse {
        tokens_valid_after: timestamp(point),
    })
}

pub(super) async fn revoke_app_tokens(
    node: &Node,
    app: &str,
    _: Empty,
) -> Result<RevokeTokensResponse> {
    let point = node.revoke_app_tokens(app).await?;
    Ok(RevokeTokensResponse {
        tokens_valid_after: timestamp(point),
    })
}

pub(super) async fn list_user_conversations(
    node: &Node,
    app: &str,
    req: UserPageRequest,
) -> Result<ConversationPage> {
    let page = node
        .user_conversations_page(app, &req.id, &page(req.cursor, req.limit))
        .await?;
    Ok(ConversationPage {
        items: page
            .items
            .iter()
            .map(|c| views::conversation(c, None, None))
            .collect(),
        next_cursor: page.next_cursor.unwrap_or_default(),
    })
}

pub(super) async fn list_user_messages(
    node: &Node,
    app: &str,
    req: UserPageRequest,
) -> Result<MessagePage> {
    let page = node
        .user_messages_page(app, &req.id, &page(req.cursor, req.limit))
        .await?;
    Ok(MessagePage {
        items: page.items.iter().map(views::message).collect(),
        next_cursor: page.next_cursor.unwrap_or_default(),
    })
}

pub(super) async fn send_notification(
    node: &Node,
    app: &str,
    req: SendNotificationRequest,
) -> Result<Notification> {
    let payload = json(req.payload).unwrap_or(serde_json::Value::Null);
    let ttl = (req.ttl_seconds != 0).then_some(req.ttl_seconds);
    let n = node.notify(app, &req.user_id, &payload, ttl).await?;
    Ok(views::notification(&n))
}

pub(super) async fn get_presence(
    node: &Node,
    app: &str,
    req: GetPresenceRequest,
) -> Result<PresenceResult> {
    let presence = node
        .presence_request(app, Actor::Backend, &req.user_ids)
        .await?;
    Ok(PresenceResult {
        presence: presence.iter().map(views::presence).collect(),
    })
}

pub(super) async fn mint_token(
    node: &Node,
    app: &str,
    req: MintTokenRequest,
) -> Result<MintTokenResponse> {
    let ttl_seconds = match req.ttl_seconds {
        0 => None,
        n => Some(i64::try_from(n).map_err(|_| Error::invalid("ttl_seconds is out of range"))?),
    };
    let input = MintInput {
        user_id: req.user_id,
        ttl_seconds,
        groups: req.groups,
        name: req.name,
    };
    let minted = node.mint_token(app, input).await?;
    Ok(MintTokenResponse {
        token: minted.token,
        expires_at: timestamp(minted.expires_at_ms),
    })
}
