//! User lifecycle and token revocation over REST, for the customer's backend
//! (API key only): deactivate / reactivate, revoke tokens (a user's or the whole
//! app's), delete a user. The node closes the affected live sessions.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::{Path, Query};
use crate::error::Result;
use crate::node::Node;
use crate::store::{Millis, User};

/// What a revocation answers: tokens issued (`iat`) before this are refused.
#[derive(Debug, Serialize)]
pub struct Revoked {
    pub tokens_valid_after: Millis,
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteParams {
    /// Also erase the user's messages (tombstones) in every conversation.
    pub erase: Option<bool>,
}

/// What deleting a user changed.
#[derive(Debug, Serialize)]
pub struct Deleted {
    pub id: String,
    /// Conversations the user was removed from.
    pub conversations: usize,
    /// Messages erased (0 without `?erase=true`).
    pub erased_messages: u64,
    /// Tokens of this user id issued before this stay refused.
    pub tokens_valid_after: Millis,
}

/// `POST /v1/users/{id}/deactivate`: tokens refused, live sessions closed (3501).
pub async fn deactivate(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<User>> {
    caller.require_backend()?;
    Ok(axum::Json(node.deactivate_user(&caller.app, &id).await?))
}

/// `POST /v1/users/{id}/reactivate`: the user's tokens are accepted again.
pub async fn reactivate(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<User>> {
    caller.require_backend()?;
    Ok(axum::Json(node.reactivate_user(&caller.app, &id).await?))
}

/// `POST /v1/users/{id}/revoke-tokens`: the user's tokens issued up to now are
/// refused, their sessions holding one closed (3502).
pub async fn revoke_user_tokens(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Revoked>> {
    caller.require_backend()?;
    let point = node.revoke_user_tokens(&caller.app, &id).await?;
    Ok(axum::Json(Revoked {
        tokens_valid_after: Millis(point),
    }))
}

/// `POST /v1/revoke-tokens`: every token of the app issued up to now is refused,
/// every session holding one closed (3502).
pub async fn revoke_app_tokens(
    State(node): State<Arc<Node>>,
    caller: Caller,
) -> Result<axum::Json<Revoked>> {
    caller.require_backend()?;
    let point = node.revoke_app_tokens(&caller.app).await?;
    Ok(axum::Json(Revoked {
        tokens_valid_after: Millis(point),
    }))
}

/// `DELETE /v1/users/{id}[?erase=true]`: memberships removed (members told),
/// sessions closed (3505), old tokens refused; messages kept or erased.
pub async fn delete_user(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Result<axum::Json<Deleted>> {
    caller.require_backend()?;
    let erase = params.erase.unwrap_or(false);
    let deleted = node.delete_user(&caller.app, &id, erase).await?;
    Ok(axum::Json(Deleted {
        id,
        conversations: deleted.conversations.len(),
        erased_messages: deleted.erased,
        tokens_valid_after: Millis(deleted.tokens_valid_after),
    }))
}
