//! The app's before-send hook, for its backend (API key): `GET`, `PUT` and
//! `DELETE /v1/before-send-hook`, the twins of the Admin RPCs of the same
//! names and of the operator's `PATCH /v1/admin/apps/{app}`
//! `{before_send_hook}`. docs/hooks.md says what the hook is called with.

use std::sync::Arc;

use axum::extract::State;
use http::StatusCode;

use super::auth::Caller;
use super::extract::Json;
use super::openapi::{E401, E403, E404, E413, E422};
use crate::error::Result;
use crate::node::hooks::HookInput;
use crate::node::Node;
use crate::store::HookInfo;

/// `GET /v1/before-send-hook`.
#[utoipa::path(
    get,
    path = "/v1/before-send-hook",
    operation_id = "getBeforeSendHook",
    tag = "hooks",
    summary = "The app's before-send hook",
    description = "Its URL, timeout and failure mode; never its secret. 404 when the app has none.",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The hook.", body = HookInfo),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn get(State(node): State<Arc<Node>>, caller: Caller) -> Result<axum::Json<HookInfo>> {
    caller.require_backend()?;
    Ok(axum::Json(node.before_send_hook(&caller.app).await?))
}

/// `PUT /v1/before-send-hook` `{url, timeout_ms?, fail_open?}`.
#[utoipa::path(
    put,
    path = "/v1/before-send-hook",
    operation_id = "setBeforeSendHook",
    tag = "hooks",
    summary = "Set the app's before-send hook",
    description = "The URL is called with every user message and edit before it is stored, and answers allow, reject or replace (docs/hooks.md). Replaces any hook the app had; a new signing secret is made and answered this once, in `secret`. A URL that is not https to a public address is refused (422) unless the server runs with --outbound-allow-private; a server without a secrets key answers 503.",
    security(("api_key" = [])),
    request_body = HookInput,
    responses(
        (status = 200, description = "The hook, with its secret this once.", body = HookInfo),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn set(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<HookInput>,
) -> Result<axum::Json<HookInfo>> {
    caller.require_backend()?;
    Ok(axum::Json(
        node.set_before_send_hook(&caller.app, body).await?,
    ))
}

/// `DELETE /v1/before-send-hook`.
#[utoipa::path(
    delete,
    path = "/v1/before-send-hook",
    operation_id = "deleteBeforeSendHook",
    tag = "hooks",
    summary = "Remove the app's before-send hook",
    description = "Messages are stored without a call from now on (on other nodes within 2 s). Removing no hook is no error.",
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, response = E401),
        (status = 403, response = E403),
    ),
)]
pub async fn delete(State(node): State<Arc<Node>>, caller: Caller) -> Result<StatusCode> {
    caller.require_backend()?;
    node.delete_before_send_hook(&caller.app).await?;
    Ok(StatusCode::NO_CONTENT)
}
