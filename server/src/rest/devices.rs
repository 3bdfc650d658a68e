//! Push devices, muting a conversation and "do not disturb" over REST, for
//! the user holding a token or, with an API key, for any user of the app. The
//! SDKs do the same over the real-time protocol; the rules live in the node
//! (`node/devices.rs`).

use std::sync::Arc;

use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::{Json, Path};
use super::openapi::{ConversationId, UserId, E401, E403, E404, E422};
use crate::error::Result;
use crate::node::devices::DeviceInput;
use crate::node::Node;
use crate::store::devices::Device;
use crate::store::{Conversation, Millis};

/// A push credential to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    /// `apns`, `apns_voip` (a PushKit token), `fcm` or `webpush`.
    #[schema(example = "fcm", pattern = "^(apns|apns_voip|fcm|webpush)$")]
    pub provider: String,
    /// The APNs device token (hex), the FCM registration token, or the Web
    /// Push subscription's endpoint URL.
    #[schema(min_length = 1, max_length = 4096)]
    pub token: String,
    /// Web Push: the subscription's P-256 key, base64url (65 bytes).
    #[serde(default)]
    pub p256dh: String,
    /// Web Push: the subscription's auth secret, base64url (16 bytes).
    #[serde(default)]
    pub auth: String,
    /// APNs: the bundle id (`apns-topic`: letters, digits, `-` and `.`);
    /// empty for the app's.
    #[serde(default)]
    #[schema(max_length = 155)]
    pub topic: String,
    /// APNs: a development build's token (the sandbox environment).
    #[serde(default)]
    pub sandbox: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Devices {
    /// Most recently registered first (at most 25).
    pub items: Vec<Device>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mute {
    pub muted: bool,
}

/// "Do not disturb until": no push before this time. Null: off.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DoNotDisturb {
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<Millis>,
}

/// A new "do not disturb until": an RFC 3339 time at most a year ahead; null
/// (or a past time) turns it off.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDoNotDisturb {
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// `POST /v1/users/{id}/devices`: 201 with the device (its id is kept when the
/// credential was registered before).
#[utoipa::path(
    post,
    path = "/v1/users/{id}/devices",
    operation_id = "registerDevice",
    tag = "devices",
    summary = "Register a push device",
    description = "Registers a device's push credential for the user. The same credential registered again (token rotation) updates it; one registered for another user of the app moves to this one. Past 25 devices the one registered longest ago is removed. A Web Push endpoint must be https to a public address. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    request_body = RegisterDevice,
    responses(
        (status = 201, description = "Registered.", body = Device),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn register(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<RegisterDevice>,
) -> Result<(StatusCode, axum::Json<Device>)> {
    caller.require_self_or_backend(&id)?;
    let input = DeviceInput {
        provider: body.provider,
        token: body.token,
        p256dh: body.p256dh,
        auth: body.auth,
        topic: body.topic,
        sandbox: body.sandbox,
    };
    let device = node.register_device(&caller.app, &id, input).await?;
    Ok((StatusCode::CREATED, axum::Json(device)))
}

/// `GET /v1/users/{id}/devices`.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/devices",
    operation_id = "listDevices",
    tag = "devices",
    summary = "A user's push devices",
    description = "The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    responses(
        (status = 200, description = "The user's devices.", body = Devices),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Devices>> {
    caller.require_self_or_backend(&id)?;
    let items = node.devices(&caller.app, &id).await?;
    Ok(axum::Json(Devices { items }))
}

/// `DELETE /v1/users/{id}/devices/{device}`: 204.
#[utoipa::path(
    delete,
    path = "/v1/users/{id}/devices/{device}",
    operation_id = "deleteDevice",
    tag = "devices",
    summary = "Remove a push device",
    description = "By the device's id (`dev_…`), or by its credential (the token, or the Web Push endpoint URL-encoded). The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(
        ("id" = UserId, Path, description = "User id."),
        ("device" = String, Path, description = "The device id or its credential.", min_length = 1, max_length = 4096),
    ),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn delete(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, device)): Path<(String, String)>,
) -> Result<StatusCode> {
    caller.require_self_or_backend(&id)?;
    node.unregister_device(&caller.app, &id, &device).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/users/{id}/conversations/{conversation}/mute`.
#[utoipa::path(
    put,
    path = "/v1/users/{id}/conversations/{conversation}/mute",
    operation_id = "muteConversation",
    tag = "devices",
    summary = "Mute or unmute a conversation for a user",
    description = "A muted conversation sends the user no push; its unread count still grows. The user's devices are told live (`conversation_updated`). The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id."), ("conversation" = ConversationId, Path, description = "Conversation id.")),
    request_body = Mute,
    responses(
        (status = 200, description = "The conversation as the user now sees it.", body = Conversation),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn mute(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, conversation)): Path<(String, String)>,
    Json(body): Json<Mute>,
) -> Result<axum::Json<Conversation>> {
    caller.require_self_or_backend(&id)?;
    Ok(axum::Json(
        node.set_muted(&caller.app, &id, &conversation, body.muted)
            .await?,
    ))
}

/// `GET /v1/users/{id}/do-not-disturb`.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/do-not-disturb",
    operation_id = "getDoNotDisturb",
    tag = "devices",
    summary = "A user's \"do not disturb until\"",
    description = "`until` is null when it is off (never set, or past). The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    responses(
        (status = 200, description = "The user's setting.", body = DoNotDisturb),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
pub async fn get_dnd(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<DoNotDisturb>> {
    caller.require_self_or_backend(&id)?;
    let until = node.do_not_disturb(&caller.app, &id).await?;
    Ok(axum::Json(DoNotDisturb {
        until: until.map(Millis),
    }))
}

/// `PUT /v1/users/{id}/do-not-disturb`.
#[utoipa::path(
    put,
    path = "/v1/users/{id}/do-not-disturb",
    operation_id = "setDoNotDisturb",
    tag = "devices",
    summary = "Set a user's \"do not disturb until\"",
    description = "No push to the user before `until` (at most a year ahead); null or a past time turns it off. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    request_body = SetDoNotDisturb,
    responses(
        (status = 200, description = "The setting now.", body = DoNotDisturb),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn set_dnd(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<SetDoNotDisturb>,
) -> Result<axum::Json<DoNotDisturb>> {
    caller.require_self_or_backend(&id)?;
    let until = node
        .set_do_not_disturb(&caller.app, &id, body.until.map(|t| t.timestamp_millis()))
        .await?;
    Ok(axum::Json(DoNotDisturb {
        until: until.map(Millis),
    }))
}
