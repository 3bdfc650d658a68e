//! Users over REST: the backend creates, updates, lists and searches the app's
//! users; a user token reads itself and the people it shares a conversation with,
//! and has `/v1/me/...` views of its own conversations and messages.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::auth::Caller;
use super::extract::{non_empty, Json, PageParams, Path, Query};
use super::openapi::{UserId, E401, E403, E404, E413, E422};
use crate::error::Result;
use crate::node::requests::PageRequest;
use crate::node::{Actor, Node};
use crate::store::users::UserPatch;
use crate::store::{Conversation, Message, Page, User};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateUser {
    #[schema(value_type = UserId)]
    pub id: String,
    /// At most 256 bytes.
    #[schema(max_length = 256)]
    pub name: Option<String>,
    /// At most 2048 bytes.
    #[schema(max_length = 2048)]
    pub avatar_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct UpdateUser {
    /// At most 256 bytes.
    #[schema(max_length = 256)]
    pub name: Option<String>,
    /// At most 2048 bytes.
    #[schema(max_length = 2048)]
    pub avatar_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

impl From<UpdateUser> for UserPatch {
    fn from(u: UpdateUser) -> Self {
        UserPatch {
            name: u.name,
            avatar_url: u.avatar_url,
            data: u.data,
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUsers {
    /// A case-insensitive substring of the id or name.
    pub q: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

/// `POST /v1/users`: create (201) or update (200) a user.
#[utoipa::path(
    post,
    path = "/v1/users",
    operation_id = "upsertUser",
    tag = "users",
    summary = "Create or update a user",
    description = "Creates the user (201), or updates the given fields of an existing one (200). API key only.",
    security(("api_key" = [])),
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created.", body = User),
        (status = 200, description = "Updated.", body = User),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn create(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<CreateUser>,
) -> Result<Response> {
    caller.require_backend()?;
    let patch = UserPatch {
        name: body.name,
        avatar_url: body.avatar_url,
        data: body.data,
    };
    let (user, created) = node.create_user(&caller.app, &body.id, &patch).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(user)).into_response())
}

/// `GET /v1/users?q=`: the app's users by id, optionally searched by id and name.
#[utoipa::path(
    get,
    path = "/v1/users",
    operation_id = "listUsers",
    tag = "users",
    summary = "List and search users",
    description = "The app's users by id, optionally filtered by `q` (a case-insensitive substring of the id or name). API key only.",
    security(("api_key" = [])),
    params(ListUsers),
    responses(
        (status = 200, description = "A page of users.", body = Page<User>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 422, response = E422),
    ),
)]
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(params): Query<ListUsers>,
) -> Result<axum::Json<Page<User>>> {
    caller.require_backend()?;
    let page = node
        .users_page(
            &caller.app,
            non_empty(&params.q),
            &PageRequest::new(params.cursor, params.limit),
        )
        .await?;
    Ok(axum::Json(page))
}

/// `GET /v1/users/{id}`: any user for the backend; for a user token, itself or
/// someone sharing a conversation with it (others read as not found).
#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    operation_id = "getUser",
    tag = "users",
    summary = "Read a user",
    description = "The API key reads any user; a user token reads itself and the people it shares a conversation with (others: 404).",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    responses(
        (status = 200, description = "The user.", body = User),
        (status = 401, response = E401),
        (status = 404, response = E404),
    ),
)]
pub async fn get(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<User>> {
    let user = node.visible_user(&caller.app, caller.actor(), &id).await?;
    Ok(axum::Json(user))
}

/// `PATCH /v1/users/{id}`: the backend, or the user themself.
#[utoipa::path(
    patch,
    path = "/v1/users/{id}",
    operation_id = "updateUser",
    tag = "users",
    summary = "Update a user",
    description = "Updates name, avatar_url, data (absent fields are kept). The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id.")),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "The updated user.", body = User),
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
    Json(body): Json<UpdateUser>,
) -> Result<axum::Json<User>> {
    let user = node
        .update_user(&caller.app, caller.actor(), &id, &body.into())
        .await?;
    Ok(axum::Json(user))
}

/// `GET /v1/users/{id}/conversations`: latest activity first, with unread counts.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/conversations",
    operation_id = "listUserConversations",
    tag = "users",
    summary = "A user's conversations",
    description = "The conversations the user is in, latest activity first, with unread counts. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id."), PageParams),
    responses(
        (status = 200, description = "A page of conversations.", body = Page<Conversation>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn conversations(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Conversation>>> {
    caller.require_self_or_backend(&id)?;
    user_conversations(&node, &caller.app, &id, page).await
}

/// `GET /v1/users/{id}/messages`: messages the user sent, newest first.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/messages",
    operation_id = "listUserMessages",
    tag = "users",
    summary = "Messages a user sent",
    description = "Messages the user sent, newest first. The API key, or the user's own token.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = UserId, Path, description = "User id."), PageParams),
    responses(
        (status = 200, description = "A page of messages.", body = Page<Message>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn messages(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Message>>> {
    caller.require_self_or_backend(&id)?;
    user_messages(&node, &caller.app, &id, page).await
}

/// `GET /v1/me`: the user holding the token.
#[utoipa::path(
    get,
    path = "/v1/me",
    operation_id = "getMe",
    tag = "me",
    summary = "The token's user",
    description = "The user holding the token (user token only).",
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The user.", body = User),
        (status = 401, response = E401),
        (status = 403, response = E403),
    ),
)]
pub async fn me(State(node): State<Arc<Node>>, caller: Caller) -> Result<axum::Json<User>> {
    let me = caller.require_user()?;
    let user = node.visible_user(&caller.app, Actor::User(me), me).await?;
    Ok(axum::Json(user))
}

/// `PATCH /v1/me`: the token's user updates its profile.
#[utoipa::path(
    patch,
    path = "/v1/me",
    operation_id = "updateMe",
    tag = "me",
    summary = "Update the token's user",
    description = "Updates name, avatar_url, data of the user holding the token (user token only).",
    security(("user_token" = [])),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "The updated user.", body = User),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn update_me(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<UpdateUser>,
) -> Result<axum::Json<User>> {
    let me = caller.require_user()?;
    let user = node
        .update_user(&caller.app, Actor::User(me), me, &body.into())
        .await?;
    Ok(axum::Json(user))
}

/// `GET /v1/me/conversations`.
#[utoipa::path(
    get,
    path = "/v1/me/conversations",
    operation_id = "listMyConversations",
    tag = "me",
    summary = "My conversations",
    description = "The token user's conversations, latest activity first, with unread counts.",
    security(("user_token" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of conversations.", body = Page<Conversation>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 422, response = E422),
    ),
)]
pub async fn my_conversations(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Conversation>>> {
    let me = caller.require_user()?;
    user_conversations(&node, &caller.app, me, page).await
}

/// `GET /v1/me/messages`.
#[utoipa::path(
    get,
    path = "/v1/me/messages",
    operation_id = "listMyMessages",
    tag = "me",
    summary = "My messages",
    description = "Messages the token user sent, newest first.",
    security(("user_token" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of messages.", body = Page<Message>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 422, response = E422),
    ),
)]
pub async fn my_messages(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Message>>> {
    let me = caller.require_user()?;
    user_messages(&node, &caller.app, me, page).await
}

async fn user_conversations(
    node: &Node,
    app: &str,
    id: &str,
    page: PageParams,
) -> Result<axum::Json<Page<Conversation>>> {
    let page = node.user_conversations_page(app, id, &page.into()).await?;
    Ok(axum::Json(page))
}

async fn user_messages(
    node: &Node,
    app: &str,
    id: &str,
    page: PageParams,
) -> Result<axum::Json<Page<Message>>> {
    let page = node.user_messages_page(app, id, &page.into()).await?;
    Ok(axum::Json(page))
}
