//! Webhook endpoints over REST (API key only): create, list, change, delete,
//! rotate the secret, read the attempt log, redeliver an event, send a test
//! event. The delivery contract is docs/webhooks.md.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;

use super::auth::Caller;
use super::extract::{Json, PageParams, Path, Query};
use super::openapi::{E401, E403, E404, E413, E422};
use crate::error::Result;
use crate::node::requests::PageRequest;
use crate::node::webhooks::{WebhookChanges, WebhookInput, WebhookTestResult, WebhookWithSecret};
use crate::node::Node;
use crate::store::webhooks::{Webhook, WebhookAttempt};
use crate::store::Page;

/// A webhook endpoint's id: `wh_` and a ULID.
pub struct WebhookId;

impl utoipa::PartialSchema for WebhookId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^wh_[A-Za-z0-9_]{1,61}$"))
            .max_length(Some(64))
            .description(Some("A webhook endpoint's id: `wh_` and a ULID."))
            .into()
    }
}

impl utoipa::ToSchema for WebhookId {}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https` to a public address (`http` and private addresses only when the
    /// server allows them, `--outbound-allow-private`). At most 2048 bytes.
    #[schema(max_length = 2048)]
    pub url: String,
    /// Event types to deliver (see `GET /v1/events`); empty or absent: all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// At most 500 characters.
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// Replaces the list; empty: all types.
    pub event_types: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// `false` disables the endpoint (nothing is delivered; its place in the
    /// feed is kept); `true` re-enables a disabled one: delivery resumes where
    /// it stopped, with what happened meanwhile.
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redeliver {
    /// An event of the feed (`GET /v1/events`), within its retention.
    #[schema(min_length = 1, max_length = 64)]
    pub event_id: String,
}

/// `POST /v1/webhooks`: 201 with the endpoint and its secret, shown once.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "createWebhook",
    tag = "webhooks",
    summary = "Create a webhook endpoint",
    description = "Registers an endpoint that receives the app's events (one signed POST per event, at least once, in order per conversation). The answer carries the signing secret, shown this once. At most 20 endpoints per app.",
    security(("api_key" = [])),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; `secret` is shown only here.", body = WebhookWithSecret),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn create(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<CreateWebhook>,
) -> Result<Response> {
    caller.require_backend()?;
    let input = WebhookInput {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
    };
    let created = node.create_webhook(&caller.app, input).await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "listWebhooks",
    tag = "webhooks",
    summary = "List webhook endpoints",
    description = "The app's endpoints by id, without their secrets.",
    security(("api_key" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of endpoints.", body = Page<Webhook>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 422, response = E422),
    ),
)]
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Webhook>>> {
    caller.require_backend()?;
    let page = PageRequest::from(page);
    Ok(axum::Json(node.list_webhooks(&caller.app, &page).await?))
}

/// `GET /v1/webhooks/{id}`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    operation_id = "getWebhook",
    tag = "webhooks",
    summary = "A webhook endpoint",
    description = "The endpoint with its status (`disabled` with a reason after failing for the give-up time), without its secret.",
    security(("api_key" = [])),
    params(("id" = WebhookId, Path, description = "Webhook id.")),
    responses(
        (status = 200, description = "The endpoint.", body = Webhook),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn get(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Webhook>> {
    caller.require_backend()?;
    Ok(axum::Json(node.get_webhook(&caller.app, &id).await?))
}

/// `PATCH /v1/webhooks/{id}`.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    operation_id = "updateWebhook",
    tag = "webhooks",
    summary = "Change a webhook endpoint",
    description = "Changes the URL, event types or description (absent fields are kept). `enabled: false` disables the endpoint; `enabled: true` re-enables a disabled one, which resumes delivery where it stopped (within the feed's retention).",
    security(("api_key" = [])),
    params(("id" = WebhookId, Path, description = "Webhook id.")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, description = "The endpoint.", body = Webhook),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn update(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdateWebhook>,
) -> Result<axum::Json<Webhook>> {
    caller.require_backend()?;
    let changes = WebhookChanges {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        enabled: body.enabled,
    };
    Ok(axum::Json(
        node.update_webhook(&caller.app, &id, changes).await?,
    ))
}

/// `DELETE /v1/webhooks/{id}`: 204.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "deleteWebhook",
    tag = "webhooks",
    summary = "Delete a webhook endpoint",
    description = "Deletes the endpoint, what it still had to deliver and its attempt log.",
    security(("api_key" = [])),
    params(("id" = WebhookId, Path, description = "Webhook id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn delete(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    caller.require_backend()?;
    node.delete_webhook(&caller.app, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/{id}/rotate-secret`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    operation_id = "rotateWebhookSecret",
    tag = "webhooks",
    summary = "Rotate a webhook's secret",
    description = "A new signing secret, shown this once. For 24 hours every delivery carries two signatures, one per secret, so the receiver can switch at its pace.",
    security(("api_key" = [])),
    params(("id" = WebhookId, Path, description = "Webhook id.")),
    responses(
        (status = 200, description = "The endpoint and its new secret.", body = WebhookWithSecret),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn rotate_secret(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<WebhookWithSecret>> {
    caller.require_backend()?;
    Ok(axum::Json(
        node.rotate_webhook_secret(&caller.app, &id).await?,
    ))
}

/// `GET /v1/webhooks/{id}/attempts`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/attempts",
    operation_id = "listWebhookAttempts",
    tag = "webhooks",
    summary = "A webhook's delivery attempts",
    description = "Attempts newest first (the last 1,000 are kept): event, time, status code or error, duration, attempt number.",
    security(("api_key" = [])),
    params(("id" = WebhookId, Path, description = "Webhook id."), PageParams),
    responses(
        (status = 200, description = "A page of attempts.", body = Page<WebhookAttempt>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn attempts(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<WebhookAttempt>>> {
    caller.require_backend()?;
    let page = PageRequest::from(page);
    Ok(axum::Json(
        node.webhook_attempts(&caller.app, &id, &page).await?,
    ))
}

/// `POST /v1/webhooks/{id}/redeliver`: 202.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/redeliver",
    operation_id = "redeliverWebhookEvent",
    tag = "webhooks",
    summary = "Deliver an event again",
    description = "Queues one event of the feed for the endpoint again, at its place in its conversation's order.",
    security(("api_key" = [])),
    params(("id" = WebhookId, Path, description = "Webhook id.")),
    request_body = Redeliver,
    responses(
        (status = 202, description = "Queued."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn redeliver(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<Redeliver>,
) -> Result<StatusCode> {
    caller.require_backend()?;
    node.redeliver_webhook_event(&caller.app, &id, &body.event_id)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /v1/webhooks/{id}/test`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/test",
    operation_id = "testWebhook",
    tag = "webhooks",
    summary = "Send a test event",
    description = "POSTs a `webhook.test` event to the endpoint now (signed like any delivery, outside the feed and the queue) and answers what the endpoint did.",
    security(("api_key" = [])),
    params(("id" = WebhookId, Path, description = "Webhook id.")),
    responses(
        (status = 200, description = "What the endpoint answered.", body = WebhookTestResult),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn test(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<WebhookTestResult>> {
    caller.require_backend()?;
    Ok(axum::Json(node.test_webhook(&caller.app, &id).await?))
}
