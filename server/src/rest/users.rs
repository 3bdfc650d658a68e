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
use crate::error::{Error, Result};
use crate::node::Node;
use crate::store::users::UserPatch;
use crate::store::{Conversation, Message, Page, User};

#[derive(Debug, Deserialize)]
pub struct CreateUser {
    pub id: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub data: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UpdateUser {
    pub name: Option<String>,
    pub avatar_url: Option<String>,
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

#[derive(Debug, Default, Deserialize)]
pub struct ListUsers {
    pub q: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// `POST /v1/users`: create (201) or update (200) a user.
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
    let (user, created) = node
        .store
        .upsert_user(&caller.app, &body.id, &patch)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(user)).into_response())
}

/// `GET /v1/users?q=`: the app's users by id, optionally searched by id and name.
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(params): Query<ListUsers>,
) -> Result<axum::Json<Page<User>>> {
    caller.require_backend()?;
    let limit = super::extract::page_limit(params.limit)?;
    let page = node
        .store
        .list_users(
            &caller.app,
            non_empty(&params.q),
            non_empty(&params.cursor),
            limit,
        )
        .await?;
    Ok(axum::Json(page))
}

/// `GET /v1/users/{id}`: any user for the backend; for a user token, itself or
/// someone sharing a conversation with it (others read as not found).
pub async fn get(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<User>> {
    let app = &caller.app;
    if let Some(me) = caller.user() {
        if me != id {
            let mine = node.store.conversation_ids_of(app, me).await?;
            let theirs = node.store.conversation_ids_of(app, &id).await?;
            if !theirs.iter().any(|c| mine.contains(c)) {
                return Err(Error::not_found("user"));
            }
        }
    }
    let user = node
        .store
        .get_user(app, &id)
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    Ok(axum::Json(user))
}

/// `PATCH /v1/users/{id}`: the backend, or the user themself.
pub async fn update(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdateUser>,
) -> Result<axum::Json<User>> {
    caller.require_self_or_backend(&id)?;
    let user = node
        .store
        .update_user(&caller.app, &id, &body.into())
        .await?;
    Ok(axum::Json(user))
}

/// `GET /v1/users/{id}/conversations`: latest activity first, with unread counts.
pub async fn conversations(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Conversation>>> {
    caller.require_self_or_backend(&id)?;
    user_conversations(&node, &caller.app, &id, &page).await
}

/// `GET /v1/users/{id}/messages`: messages the user sent, newest first.
pub async fn messages(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Message>>> {
    caller.require_self_or_backend(&id)?;
    user_messages(&node, &caller.app, &id, &page).await
}

/// `GET /v1/me`: the user holding the token.
pub async fn me(State(node): State<Arc<Node>>, caller: Caller) -> Result<axum::Json<User>> {
    let me = caller.require_user()?;
    let user = node
        .store
        .get_user(&caller.app, me)
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    Ok(axum::Json(user))
}

/// `PATCH /v1/me`: the token's user updates its profile.
pub async fn update_me(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<UpdateUser>,
) -> Result<axum::Json<User>> {
    let me = caller.require_user()?;
    let user = node
        .store
        .update_user(&caller.app, me, &body.into())
        .await?;
    Ok(axum::Json(user))
}

/// `GET /v1/me/conversations`.
pub async fn my_conversations(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Conversation>>> {
    let me = caller.require_user()?;
    user_conversations(&node, &caller.app, me, &page).await
}

/// `GET /v1/me/messages`.
pub async fn my_messages(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Message>>> {
    let me = caller.require_user()?;
    user_messages(&node, &caller.app, me, &page).await
}

async fn require_user_exists(node: &Node, app: &str, id: &str) -> Result<()> {
    match node.store.get_user(app, id).await? {
        Some(_) => Ok(()),
        None => Err(Error::not_found("user")),
    }
}

async fn user_conversations(
    node: &Node,
    app: &str,
    id: &str,
    page: &PageParams,
) -> Result<axum::Json<Page<Conversation>>> {
    let limit = page.limit()?;
    require_user_exists(node, app, id).await?;
    let page = node
        .store
        .user_conversations(app, id, page.cursor(), limit)
        .await?;
    Ok(axum::Json(page))
}

async fn user_messages(
    node: &Node,
    app: &str,
    id: &str,
    page: &PageParams,
) -> Result<axum::Json<Page<Message>>> {
    let limit = page.limit()?;
    require_user_exists(node, app, id).await?;
    let page = node
        .store
        .user_messages(app, id, page.cursor(), limit)
        .await?;
    Ok(axum::Json(page))
}
