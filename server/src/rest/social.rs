//! Blocks, hiding a conversation ("delete chat"), read positions and the
//! total unread count over REST, for the user holding a token (`/v1/me/...`,
//! or their own `/v1/users/{id}/...`) or, with an API key, for any user of the
//! app. The rules live in the node, shared with real-time.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::{Json, PageParams, Path, Query};
use super::openapi::{ConversationId, UserId, E401, E403, E404, E422};
use crate::error::Result;
use crate::node::requests::wire_seq;
use crate::node::Node;
use crate::store::{social::Block, Conversation, Page};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BlockUser {
    #[schema(value_type = UserId)]
    pub user_id: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Blocked {
    pub user_id: String,
    pub blocked: bool,
}

/// `POST /v1/users/{id}/blocks`: 201 when the block is new, 200 when it stood.
#[utoipa::path(
    post,
    path = "/v1/users/{id}/blocks",
    operation_id = "blockUser",
    tag = "blocks",
    summary = "Block a user",
    description = "While the block stands, neither can start or write in their direct conversation (403 blocked) and neither sees the other's presence or typing. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    request_body = BlockUser,
    responses(
        (status = 201, description = "Blocked.", body = Blocked),
        (status = 200, description = "The block already stood.", body = Blocked),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn block(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<BlockUser>,
) -> Result<Response> {
    caller.require_self_or_backend(&id)?;
    block_for(&node, &caller.app, &id, body).await
}

/// `GET /v1/users/{id}/blocks`: the users `id` blocked, by id.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/blocks",
    operation_id = "listBlocks",
    tag = "blocks",
    summary = "A user's blocks",
    description = "The users blocked, by id. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id."), PageParams),
    responses(
        (status = 200, description = "A page of blocks.", body = Page<Block>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Block>>> {
    caller.require_self_or_backend(&id)?;
    list_for(&node, &caller.app, &id, page).await
}

/// `DELETE /v1/users/{id}/blocks/{other}`: 204, also when there was no block.
#[utoipa::path(
    delete,
    path = "/v1/users/{id}/blocks/{other}",
    operation_id = "unblockUser",
    tag = "blocks",
    summary = "Lift a block",
    description = "A no-op when there was none. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id."), ("other" = UserId, Path, description = "The blocked user's id.")),
    responses(
        (status = 204, description = "Not blocked any more."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn unblock(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, other)): Path<(String, String)>,
) -> Result<StatusCode> {
    caller.require_self_or_backend(&id)?;
    node.unblock(&caller.app, &id, &other).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/me/blocks`.
#[utoipa::path(
    post,
    path = "/v1/me/blocks",
    operation_id = "blockMyUser",
    tag = "blocks",
    summary = "Block a user (me)",
    description = "While the block stands, neither can start or write in their direct conversation (403 blocked) and neither sees the other's presence or typing.",
    security(("user_token" = [])),
    request_body = BlockUser,
    responses(
        (status = 201, description = "Blocked.", body = Blocked),
        (status = 200, description = "The block already stood.", body = Blocked),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn block_mine(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<BlockUser>,
) -> Result<Response> {
    let me = caller.require_user()?;
    block_for(&node, &caller.app, me, body).await
}

/// `GET /v1/me/blocks`.
#[utoipa::path(
    get,
    path = "/v1/me/blocks",
    operation_id = "listMyBlocks",
    tag = "blocks",
    summary = "My blocks",
    description = "The users the token user blocked, by id.",
    security(("user_token" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of blocks.", body = Page<Block>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 422, response = E422),
    ),
)]
pub async fn list_mine(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Block>>> {
    let me = caller.require_user()?;
    list_for(&node, &caller.app, me, page).await
}

/// `DELETE /v1/me/blocks/{user}`: 204.
#[utoipa::path(
    delete,
    path = "/v1/me/blocks/{user}",
    operation_id = "unblockMyUser",
    tag = "blocks",
    summary = "Lift my block",
    description = "A no-op when there was none.",
    security(("user_token" = [])),
    params(("user" = UserId, Path, description = "The blocked user's id.")),
    responses(
        (status = 204, description = "Not blocked any more."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn unblock_mine(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<StatusCode> {
    let me = caller.require_user()?;
    node.unblock(&caller.app, me, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn block_for(node: &Node, app: &str, user: &str, body: BlockUser) -> Result<Response> {
    let created = node.block(app, user, &body.user_id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let reply = Blocked {
        user_id: body.user_id,
        blocked: true,
    };
    Ok((status, axum::Json(reply)).into_response())
}

async fn list_for(
    node: &Node,
    app: &str,
    user: &str,
    page: PageParams,
) -> Result<axum::Json<Page<Block>>> {
    let page = node.blocks_of(app, user, &page.into()).await?;
    Ok(axum::Json(page))
}

/// `POST /v1/users/{id}/conversations/{conversation}/hide`: the conversation as
/// that user now sees it (`hidden: true`).
#[utoipa::path(
    post,
    path = "/v1/users/{id}/conversations/{conversation}/hide",
    operation_id = "hideConversation",
    tag = "conversations",
    summary = "Hide a conversation for a user",
    description = "\"Delete chat\": the user's history starts after the conversation's last message, and it leaves their list until a new message arrives. Their devices are told live. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id."), ("conversation" = ConversationId, Path, description = "Conversation id.")),
    responses(
        (status = 200, description = "The conversation as the user now sees it.", body = Conversation),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn hide(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, conversation)): Path<(String, String)>,
) -> Result<axum::Json<Conversation>> {
    caller.require_self_or_backend(&id)?;
    Ok(axum::Json(
        node.hide_for_user(&caller.app, &id, &conversation).await?,
    ))
}

/// `POST /v1/me/conversations/{id}/hide`.
#[utoipa::path(
    post,
    path = "/v1/me/conversations/{id}/hide",
    operation_id = "hideMyConversation",
    tag = "me",
    summary = "Hide a conversation",
    description = "\"Delete chat\" for the token user.",
    security(("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id.")),
    responses(
        (status = 200, description = "The conversation as the user now sees it.", body = Conversation),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn hide_mine(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Conversation>> {
    let me = caller.require_user()?;
    Ok(axum::Json(node.hide(&caller.app, me, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// Read up to this seq (the conversation's last seq at most; a position
    /// behind the current one changes nothing).
    #[schema(minimum = 0)]
    pub seq: u64,
}

/// A read position as it now is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadPosition {
    pub last_read_seq: i64,
    pub unread_count: i64,
}

/// `POST /v1/users/{id}/conversations/{conversation}/read` `{seq}`.
#[utoipa::path(
    post,
    path = "/v1/users/{id}/conversations/{conversation}/read",
    operation_id = "markRead",
    tag = "conversations",
    summary = "Mark a conversation read for a user",
    description = "Moves the user's read position forward (never back), as their own client's `read` does: the conversation's members are told (`read` push) and the user's unread count drops. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id."), ("conversation" = ConversationId, Path, description = "Conversation id.")),
    request_body = MarkRead,
    responses(
        (status = 200, description = "The read position now.", body = ReadPosition),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn mark_read(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, conversation)): Path<(String, String)>,
    Json(body): Json<MarkRead>,
) -> Result<axum::Json<ReadPosition>> {
    caller.require_self_or_backend(&id)?;
    let seq = wire_seq(body.seq, "seq")?;
    let (last_read_seq, unread_count) =
        node.mark_read(&caller.app, &id, &conversation, seq).await?;
    Ok(axum::Json(ReadPosition {
        last_read_seq,
        unread_count,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnreadTotal {
    /// The sum of the unread counts of every conversation the user is in
    /// (muted ones count; hidden ones count 0 until a new message shows them).
    pub total: i64,
}

/// `GET /v1/users/{id}/unread`.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/unread",
    operation_id = "getUnreadTotal",
    tag = "users",
    summary = "A user's total unread count",
    description = "Over all the user's conversations, the number an app badge shows. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    responses(
        (status = 200, description = "The total.", body = UnreadTotal),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn unread_total(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<UnreadTotal>> {
    caller.require_self_or_backend(&id)?;
    Ok(axum::Json(UnreadTotal {
        total: node.total_unread_of(&caller.app, &id).await?,
    }))
}
