//! User lifecycle and token revocation over REST, for the customer's backend
//! (API key only): deactivate / reactivate, revoke tokens (a user's or the whole
//! app's), delete a user. The node closes the affected live sessions.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::{Path, Query};
use super::openapi::{UserId, E401, E403, E404, E422};
use crate::error::Result;
use crate::node::Node;
use crate::store::{Millis, User};

/// What a revocation answers: tokens issued (`iat`) before this are refused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub tokens_valid_after: Millis,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Also erase the user's messages (tombstones) in every conversation.
    pub erase: Option<bool>,
}

/// What deleting a user changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DeletedUser)]
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
#[utoipa::path(
    post,
    path = "/v1/users/{id}/deactivate",
    operation_id = "deactivateUser",
    tag = "users",
    summary = "Deactivate a user",
    description = "API key only. Their live connections close within a second with disconnect code 3501 user_deactivated, and their tokens are refused (REST: 403, reason user_deactivated) until reactivated. Idempotent.",
    security(("api_key" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    responses(
        (status = 200, description = "The user, deactivated.", body = User),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn deactivate(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<User>> {
    caller.require_backend()?;
    Ok(axum::Json(node.deactivate_user(&caller.app, &id).await?))
}

/// `POST /v1/users/{id}/reactivate`: the user's tokens are accepted again.
#[utoipa::path(
    post,
    path = "/v1/users/{id}/reactivate",
    operation_id = "reactivateUser",
    tag = "users",
    summary = "Reactivate a user",
    description = "API key only. Their tokens are accepted again, unless revoked. Idempotent.",
    security(("api_key" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    responses(
        (status = 200, description = "The user, active.", body = User),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
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
#[utoipa::path(
    post,
    path = "/v1/users/{id}/revoke-tokens",
    operation_id = "revokeUserTokens",
    tag = "users",
    summary = "Revoke a user's tokens",
    description = "API key only. Every token of the user issued up to now (iat in the current second or before) is refused; live connections holding one close within a second with 3502 tokens_revoked.",
    security(("api_key" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    responses(
        (status = 200, description = "The revocation point.", body = Revoked),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
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
#[utoipa::path(
    post,
    path = "/v1/revoke-tokens",
    operation_id = "revokeAppTokens",
    tag = "users",
    summary = "Revoke the app's tokens",
    description = "API key only. Every token of the app issued up to now is refused; live connections holding one close within a second with 3502 tokens_revoked.",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The revocation point.", body = Revoked),
        (status = 401, response = E401),
        (status = 403, response = E403),
    ),
)]
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
#[utoipa::path(
    delete,
    path = "/v1/users/{id}",
    operation_id = "deleteUser",
    tag = "users",
    summary = "Delete a user",
    description = "API key only, in one transaction: memberships (members receive member_left), blocks and notifications go, live connections close with 3505 user_deleted, tokens issued up to now stay refused. Messages are kept with their sender id, or with erase=true become tombstones.",
    security(("api_key" = [])),
    params(("id" = UserId, Path, description = "User id."), DeleteParams),
    responses(
        (status = 200, description = "What was deleted.", body = Deleted),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
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
