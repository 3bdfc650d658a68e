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
use super::extract::{Json, PageParams, Path, Query};
use crate::error::Result;
use crate::node::Node;
use crate::store::{social::Notification, Page};

#[derive(Debug, Deserialize)]
pub struct SendNotification {
    pub payload: Value,
    /// Default 7 days, at most 30 days.
    pub ttl_seconds: Option<u64>,
}

/// `POST /v1/users/{id}/notifications` (API key only): 201 with the notification.
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
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Notification>>> {
    caller.require_self_or_backend(&id)?;
    pending(&node, &caller.app, &id, &page).await
}

/// `POST /v1/users/{id}/notifications/{notification}/ack`: 204.
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
pub async fn list_mine(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Notification>>> {
    let me = caller.require_user()?;
    pending(&node, &caller.app, me, &page).await
}

/// `POST /v1/me/notifications/{id}/ack`: 204.
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
    page: &PageParams,
) -> Result<axum::Json<Page<Notification>>> {
    let limit = page.limit()?;
    let page = node
        .pending_notifications(app, user, page.cursor(), limit)
        .await?;
    Ok(axum::Json(page))
}
