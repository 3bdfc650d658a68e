//! The operator API under `/v1/admin/apps`: what `mkondo app ...` does on the
//! database, over HTTP, for whoever runs the server (the `Operator` extractor:
//! `Authorization: Bearer <operator secret>`). Unlike the CLI, changes made
//! here close the affected live sessions at once.
//!
//! Secrets (an HS256 signing secret, an API key) are answered once, at
//! creation; listings show key ids and API-key prefixes only.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;

use super::auth::Operator;
use super::extract::{Json, Path};
use super::lifecycle::Revoked;
use super::openapi::{E401, E403, E404, E409, E413, E422};
use crate::auth::KeyAlg;
use crate::error::{Error, Result};
use crate::node::apps::AppChange;
use crate::node::hooks::HookInput;
use crate::node::push_settings::PushInput;
use crate::node::Node;
use crate::store::{AppOverview, Millis, Page};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// At most 200 bytes, not only whitespace.
    #[schema(
        max_length = 200,
        pattern = "[^\\x09-\\x0d\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    pub name: String,
    /// Chosen id (default: generated): 1 to 128 characters of `A-Z a-z 0-9 . @ : -`.
    #[schema(pattern = "^[A-Za-z0-9.@:-]{1,128}$")]
    pub id: Option<String>,
}

/// An app's settings to change; a field left out stays as it is.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    /// Whether a valid token for a user the app does not know creates that user
    /// on first use (default true). The server-wide `--auto-create-users` must
    /// allow it too: off there, no app creates users.
    pub auto_create_users: Option<bool>,
    /// Whether the app's users may search its user directory (`search_users`
    /// over the real-time protocol: ids and names, profiles without `data`;
    /// default false).
    pub user_directory: Option<bool>,
    /// Replaces the app's allowed browser origins (`[]` clears them): each
    /// `scheme://host[:port]` with scheme http or https and no path, or `*` for
    /// any origin (development). At most 100; normalised (lower case, default
    /// port dropped) and de-duplicated. The server's own origin is always allowed.
    #[schema(max_items = 100, value_type = Option<Vec<super::openapi::AllowedOrigin>>)]
    pub allowed_origins: Option<Vec<String>>,
    /// Sets the app's before-send hook (a new signing secret is made and
    /// answered this once, in `before_send_hook.secret`), or `null` to remove
    /// it. See docs/hooks.md.
    #[serde(default, deserialize_with = "crate::node::requests::given")]
    #[schema(value_type = Option<HookInput>, nullable)]
    pub before_send_hook: Option<Option<HookInput>>,
    /// The push providers' credentials and what a push shows (docs/push.md):
    /// each provider set, or removed with `null`; the others stay. Keys are
    /// sealed with the server's secrets key and never answered back.
    pub push: Option<PushInput>,
    /// File limits (docs/files.md): the largest file, allowed types, a
    /// user's daily and the app's total quota; `null` for one: back to the
    /// default. The others stay.
    #[serde(default, deserialize_with = "object")]
    pub files: Option<crate::node::files::FilesInput>,
}

/// A settings object given as a JSON object only (serde would also take a
/// struct written as an array of its fields).
fn object<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error as _;
    match <Option<serde_json::Value> as serde::Deserialize>::deserialize(d)? {
        None => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        Some(_) => Err(D::Error::custom("files must be an object")),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddKey {
    /// HS256 (default: a new secret is made), RS256, ES256 or EdDSA.
    #[schema(value_type = Option<KeyAlgName>)]
    pub alg: Option<String>,
    /// The PEM public key: required for RS256, ES256 and EdDSA, refused for HS256.
    pub public_key: Option<String>,
}

/// A signing algorithm, as `AddKey.alg` names it.
#[derive(utoipa::ToSchema)]
#[schema(as = KeyAlg)]
pub enum KeyAlgName {
    HS256,
    RS256,
    ES256,
    EdDSA,
}

/// `GET /v1/admin/apps`: every app, with its key ids and API-key prefixes.
#[utoipa::path(
    get,
    path = "/v1/admin/apps",
    operation_id = "listApps",
    tag = "admin",
    summary = "List apps",
    description = "Every app, with its signing key ids and API-key prefixes (never secrets). One page: next_cursor is null.",
    security(("operator" = [])),
    responses(
        (status = 200, description = "All apps.", body = Page<AppOverview>),
        (status = 401, response = E401),
        (status = 404, response = E404),
    ),
)]
pub async fn list(
    State(node): State<Arc<Node>>,
    _: Operator,
) -> Result<axum::Json<Page<AppOverview>>> {
    Ok(axum::Json(Page {
        items: node.app_overviews().await?,
        next_cursor: None,
    }))
}

/// `POST /v1/admin/apps` `{name, id?}`: 201 with the credentials, shown once.
#[utoipa::path(
    post,
    path = "/v1/admin/apps",
    operation_id = "createApp",
    tag = "admin",
    summary = "Create an app",
    description = "Answers the app's id, an HS256 signing key and an API key, shown this once.",
    security(("operator" = [])),
    request_body = CreateApp,
    responses(
        (status = 201, description = "The new app's credentials.", body = crate::store::AppCreds),
        (status = 401, response = E401),
        (status = 404, response = E404),
        (status = 409, response = E409),
        (status = 422, response = E422),
    ),
)]
pub async fn create(
    State(node): State<Arc<Node>>,
    _: Operator,
    Json(body): Json<CreateApp>,
) -> Result<Response> {
    let creds = node.create_app(&body.name, body.id.as_deref()).await?;
    Ok((StatusCode::CREATED, axum::Json(creds)).into_response())
}

/// `PATCH /v1/admin/apps/{app}` `{auto_create_users?, user_directory?, …}`: 200
/// with the app as listed.
#[utoipa::path(
    patch,
    path = "/v1/admin/apps/{app}",
    operation_id = "updateApp",
    tag = "admin",
    summary = "Change an app's settings",
    description = "auto_create_users: whether a valid token for a user the app does not know creates that user (default true; the server-wide --auto-create-users must allow it too). With it off, such a connect or request is refused with unauthenticated (reason unknown_user) until the backend creates the user. user_directory: whether the app's users may search its user directory (search_users over the real-time protocol; default false). allowed_origins: the browser origins the app's web frontends may call the REST API and connect over WebSocket from, replacing the list (see docs/security.md); a bad entry refuses the whole change. before_send_hook: the URL called with every user message and edit before it is stored (allow, reject, replace; docs/hooks.md), its timeout and failure mode; its signing secret is answered once, in before_send_hook.secret; null removes it. A URL that is not https to a public address is refused (422) unless the server runs with --outbound-allow-private; a server without a secrets key answers 503. push: the APNs key (.p8, key id, team id, bundle id), the FCM service account's JSON key, the Web Push VAPID key (made here unless given) and the preview mode; each credential is parsed when set (422 if it cannot sign) and never answered back; null removes a provider. Fields left out stay as they are.",
    security(("operator" = [])),
    params(("app" = String, Path, description = "App id.")),
    request_body = UpdateApp,
    responses(
        (status = 200, description = "The app.", body = AppOverview),
        (status = 401, response = E401),
        (status = 404, response = E404),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn update(
    State(node): State<Arc<Node>>,
    _: Operator,
    Path(app): Path<String>,
    Json(body): Json<UpdateApp>,
) -> Result<axum::Json<AppOverview>> {
    Ok(axum::Json(
        node.update_app(
            &app,
            AppChange {
                auto_create_users: body.auto_create_users,
                user_directory: body.user_directory,
                allowed_origins: body.allowed_origins,
                before_send_hook: body.before_send_hook,
                push: body.push,
                files: body.files,
            },
        )
        .await?,
    ))
}

/// `POST /v1/admin/apps/{app}/keys` (body optional): a new HS256 key (its secret
/// answered once), or `{alg, public_key}` for an asymmetric one. Older keys keep
/// working until removed.
#[utoipa::path(
    post,
    path = "/v1/admin/apps/{app}/keys",
    operation_id = "addSigningKey",
    tag = "admin",
    summary = "Add a signing key",
    description = "Rotation: no body (or {}) makes a new HS256 key and answers its secret once; {alg, public_key} registers an RS256 / ES256 / EdDSA public key. Tokens signed with older keys keep working until those are removed.",
    security(("operator" = [])),
    params(("app" = String, Path, description = "App id.")),
    request_body = Option<AddKey>,
    responses(
        (status = 201, description = "The new key.", body = crate::store::KeyRow),
        (status = 401, response = E401),
        (status = 404, response = E404),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn add_key(
    State(node): State<Arc<Node>>,
    _: Operator,
    Path(app): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let body: AddKey = optional_json(&body)?;
    let alg = match body.alg.as_deref() {
        None => KeyAlg::Hs256,
        Some(name) => KeyAlg::parse(name)
            .ok_or_else(|| Error::invalid("alg must be HS256, RS256, ES256 or EdDSA"))?,
    };
    let key = node.add_signing_key(&app, alg, body.public_key).await?;
    Ok((StatusCode::CREATED, axum::Json(key)).into_response())
}

/// `DELETE /v1/admin/apps/{app}/keys/{kid}`: tokens with this kid are refused,
/// sessions holding one closed (3502). The last key cannot be removed.
#[utoipa::path(
    delete,
    path = "/v1/admin/apps/{app}/keys/{kid}",
    operation_id = "removeSigningKey",
    tag = "admin",
    summary = "Remove a signing key",
    description = "Tokens with its kid are refused, and live connections whose token it signed close within a second with 3502 tokens_revoked. The app's last key cannot be removed (403).",
    security(("operator" = [])),
    params(("app" = String, Path, description = "App id."), ("kid" = String, Path, description = "The signing key's id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn remove_key(
    State(node): State<Arc<Node>>,
    _: Operator,
    Path((app, kid)): Path<(String, String)>,
) -> Result<StatusCode> {
    node.require_app(&app).await?;
    node.remove_signing_key(&app, &kid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/admin/apps/{app}/api-keys`: 201 `{api_key, prefix}`, the key shown once.
#[utoipa::path(
    post,
    path = "/v1/admin/apps/{app}/api-keys",
    operation_id = "createApiKey",
    tag = "admin",
    summary = "Create an API key",
    description = "Another API key for the app, shown this once.",
    security(("operator" = [])),
    params(("app" = String, Path, description = "App id.")),
    responses(
        (status = 201, description = "The key and its prefix.", body = crate::store::CreatedApiKey),
        (status = 401, response = E401),
        (status = 404, response = E404),
    ),
)]
pub async fn create_api_key(
    State(node): State<Arc<Node>>,
    _: Operator,
    Path(app): Path<String>,
) -> Result<Response> {
    let created = node.create_api_key(&app).await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// `DELETE /v1/admin/apps/{app}/api-keys/{prefix}`: the key is refused from now on.
#[utoipa::path(
    delete,
    path = "/v1/admin/apps/{app}/api-keys/{prefix}",
    operation_id = "revokeApiKey",
    tag = "admin",
    summary = "Revoke an API key",
    description = "Requests with it get 401 from now on.",
    security(("operator" = [])),
    params(("app" = String, Path, description = "App id."), ("prefix" = String, Path, description = "The API key's prefix, as listed.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, response = E401),
        (status = 404, response = E404),
    ),
)]
pub async fn revoke_api_key(
    State(node): State<Arc<Node>>,
    _: Operator,
    Path((app, prefix)): Path<(String, String)>,
) -> Result<StatusCode> {
    node.revoke_api_key(&app, &prefix).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/admin/apps/{app}/revoke-tokens`: as `POST /v1/revoke-tokens` with
/// the app's API key.
#[utoipa::path(
    post,
    path = "/v1/admin/apps/{app}/revoke-tokens",
    operation_id = "revokeAppTokensAsOperator",
    tag = "admin",
    summary = "Revoke an app's tokens",
    description = "As POST /v1/revoke-tokens with the app's API key: every token issued up to now is refused; live connections holding one close with 3502.",
    security(("operator" = [])),
    params(("app" = String, Path, description = "App id.")),
    responses(
        (status = 200, description = "The revocation point.", body = Revoked),
        (status = 401, response = E401),
        (status = 404, response = E404),
    ),
)]
pub async fn revoke_tokens(
    State(node): State<Arc<Node>>,
    _: Operator,
    Path(app): Path<String>,
) -> Result<axum::Json<Revoked>> {
    let point = node.revoke_app_tokens(&app).await?;
    Ok(axum::Json(Revoked {
        tokens_valid_after: Millis(point),
    }))
}

/// A JSON body that may be left out (empty, whitespace or `null`: the defaults).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T> {
    if body.len() > super::extract::MAX_BODY_BYTES {
        return Err(Error::too_large("the request body is larger than 1 MiB"));
    }
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    let value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("invalid request body: {e}")))?;
    super::extract::require_object(body)?;
    Ok(value)
}
