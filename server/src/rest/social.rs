//! Blocks and hiding a conversation ("delete chat") over REST, for the user
//! holding a token (`/v1/me/...`) or, with an API key, for any user of the app
//! (`/v1/users/{id}/...`). The rules live in the node, shared with real-time.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::{Json, PageParams, Path, Query};
use crate::error::{Error, Result};
use crate::node::Node;
use crate::store::{social::Block, Conversation, Page};

#[derive(Debug, Deserialize)]
pub struct BlockUser {
    pub user_id: String,
}

#[derive(Debug, Serialize)]
pub struct Blocked {
    pub user_id: String,
    pub blocked: bool,
}

/// `POST /v1/users/{id}/blocks`: 201 when the block is new, 200 when it stood.
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
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Block>>> {
    caller.require_self_or_backend(&id)?;
    list_for(&node, &caller.app, &id, &page).await
}

/// `DELETE /v1/users/{id}/blocks/{other}`: 204, also when there was no block.
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
pub async fn block_mine(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<BlockUser>,
) -> Result<Response> {
    let me = caller.require_user()?;
    block_for(&node, &caller.app, me, body).await
}

/// `GET /v1/me/blocks`.
pub async fn list_mine(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Block>>> {
    let me = caller.require_user()?;
    list_for(&node, &caller.app, me, &page).await
}

/// `DELETE /v1/me/blocks/{user}`: 204.
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
    page: &PageParams,
) -> Result<axum::Json<Page<Block>>> {
    let limit = page.limit()?;
    let page = node.blocks_of(app, user, page.cursor(), limit).await?;
    Ok(axum::Json(page))
}

/// `POST /v1/users/{id}/conversations/{conversation}/hide`: the conversation as
/// that user now sees it (`hidden: true`).
pub async fn hide(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, conversation)): Path<(String, String)>,
) -> Result<axum::Json<Conversation>> {
    caller.require_self_or_backend(&id)?;
    if node.store.get_user(&caller.app, &id).await?.is_none() {
        return Err(Error::not_found("user"));
    }
    Ok(axum::Json(
        node.hide(&caller.app, &id, &conversation).await?,
    ))
}

/// `POST /v1/me/conversations/{id}/hide`.
pub async fn hide_mine(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Conversation>> {
    let me = caller.require_user()?;
    Ok(axum::Json(node.hide(&caller.app, me, &id).await?))
}
