//! Notifications over REST: the customer's backend pushes a payload to a user
//! (live to every connected device, kept until acknowledged or expired); the
//! user, or the backend for them, lists and acknowledges pending ones.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::auth::Caller;
use super::extract::{whole, Json, PageParams, Path, Query};
use super::openapi::{UserId, E401, E403, E404, E413, E422};
use crate::error::Result;
use crate::node::Node;
use crate::store::{social::Notification, Page};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SendNotification {
    /// The backend's JSON object. Its `push` object (`title`, `body`,
    /// `data`), when it has one, says what the push notification to the
    /// user's phones and browsers shows (docs/push.md).
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Seconds, default 7 days, at most 30 days.
    #[serde(default, deserialize_with = "whole::option_u64")]
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl_seconds: Option<u64>,
}

/// `POST /v1/users/{id}/notifications` (API key only): 201 with the notification.
#[utoipa::path(
    post,
    path = "/v1/users/{id}/notifications",
    operation_id = "sendNotification",
    tag = "notifications",
    summary = "Notify a user",
    description = "Pushes a notification to a user (API key only): delivered live to every connected device, and kept for the next connect until acknowledged or expired.",
    security(("api_key" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    request_body = SendNotification,
    responses(
        (status = 201, description = "Stored and pushed.", body = Notification),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn send(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<SendNotification>,
) -> Result<Response> {
    caller.require_backend()?;
    let n = node
        .notify(&caller.app, &id, &body.payload, body.ttl_seconds)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(n)).into_response())
}

/// `GET /v1/users/{id}/notifications`: pending ones, oldest first.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/notifications",
    operation_id = "listNotifications",
    tag = "notifications",
    summary = "A user's pending notifications",
    description = "Pending (unacknowledged, unexpired) notifications, oldest first. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id."), PageParams),
    responses(
        (status = 200, description = "A page of notifications.", body = Page<Notification>),
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
) -> Result<axum::Json<Page<Notification>>> {
    caller.require_self_or_backend(&id)?;
    pending(&node, &caller.app, &id, page).await
}

/// `POST /v1/users/{id}/notifications/{notification}/ack`: 204.
#[utoipa::path(
    post,
    path = "/v1/users/{id}/notifications/{notification}/ack",
    operation_id = "ackNotification",
    tag = "notifications",
    summary = "Acknowledge a notification",
    description = "It is never delivered again, to any device. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id."), ("notification" = String, Path, description = "Notification id.")),
    responses(
        (status = 204, description = "Acknowledged."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn ack(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, notification)): Path<(String, String)>,
) -> Result<StatusCode> {
    caller.require_self_or_backend(&id)?;
    node.ack_notification(&caller.app, &id, &notification)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/me/notifications`.
#[utoipa::path(
    get,
    path = "/v1/me/notifications",
    operation_id = "listMyNotifications",
    tag = "me",
    summary = "My pending notifications",
    description = "The token user's pending notifications, oldest first.",
    security(("user_token" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of notifications.", body = Page<Notification>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 422, response = E422),
    ),
)]
pub async fn list_mine(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Notification>>> {
    let me = caller.require_user()?;
    pending(&node, &caller.app, me, page).await
}

/// `POST /v1/me/notifications/{id}/ack`: 204.
#[utoipa::path(
    post,
    path = "/v1/me/notifications/{id}/ack",
    operation_id = "ackMyNotification",
    tag = "me",
    summary = "Acknowledge my notification",
    description = "Acknowledges one of the token user's notifications.",
    security(("user_token" = [])),
    params(("id" = String, Path, description = "Notification id.")),
    responses(
        (status = 204, description = "Acknowledged."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn ack_mine(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let me = caller.require_user()?;
    node.ack_notification(&caller.app, me, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pending(
    node: &Node,
    app: &str,
    user: &str,
    page: PageParams,
) -> Result<axum::Json<Page<Notification>>> {
    let page = node.pending_notifications(app, user, &page.into()).await?;
    Ok(axum::Json(page))
}
