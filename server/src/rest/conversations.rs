//! Conversations and their members over REST. Every change goes through the node,
//! so a group created, renamed or joined here is pushed to connected members just
//! as when it happens over real-time. A user token sees only conversations it is
//! a member of (403 otherwise); the backend sees the whole app.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::extract::{Json, PageParams, Path, Query};
use crate::auth::valid_user_id;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::store::{Conversation, Kind, Member, NewGroup, Page, Role};

#[derive(Debug, Deserialize)]
pub struct CreateConversation {
    pub kind: Kind,
    #[serde(default)]
    pub members: Vec<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub icon_url: Option<String>,
    pub data: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UpdateConversation {
    pub name: Option<String>,
    pub icon_url: Option<String>,
    pub data: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct AddMembers {
    pub user_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChangeRole {
    pub role: Role,
}

#[derive(Debug, Serialize)]
pub struct AddedMembers {
    /// The users who were not members before.
    pub members: Vec<Member>,
}

fn check_user_ids(ids: &[String]) -> Result<()> {
    match ids.iter().find(|id| !valid_user_id(id)) {
        Some(bad) => Err(Error::invalid(format!(
            "invalid user id {bad:?}: 1-128 characters of A-Z a-z 0-9 . _ @ : -"
        ))),
        None => Ok(()),
    }
}

/// `POST /v1/conversations`: a group (201; 409 when the id is taken) or a direct
/// conversation (201 when created, 200 when the pair already had one).
pub async fn create(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<CreateConversation>,
) -> Result<Response> {
    check_user_ids(&body.members)?;
    let app = &caller.app;
    let (conv, created) = match body.kind {
        Kind::Group => {
            let group = NewGroup {
                id: body.id,
                name: body.name.unwrap_or_default(),
                icon_url: body.icon_url.unwrap_or_default(),
                data: body.data,
                creator: None,
                members: body.members,
            };
            (node.create_group(app, caller.actor(), group).await?, true)
        }
        Kind::Direct => {
            if body.id.is_some() {
                return Err(Error::invalid(
                    "a direct conversation's id is chosen by the server",
                ));
            }
            let mut members = body.members;
            members.sort();
            members.dedup();
            let (a, b, create_missing) = match caller.user() {
                None => match members.as_slice() {
                    [a, b] => (a.clone(), b.clone(), true),
                    _ => {
                        return Err(Error::invalid(
                            "a direct conversation needs exactly two distinct members",
                        ))
                    }
                },
                Some(me) => {
                    let others: Vec<&String> = members.iter().filter(|m| *m != me).collect();
                    match others.as_slice() {
                        [other] => (me.to_owned(), (*other).clone(), false),
                        _ => {
                            return Err(Error::invalid(
                                "a direct conversation needs exactly one other member",
                            ))
                        }
                    }
                }
            };
            let (conv, created) = node
                .start_direct_created(app, &a, &b, create_missing)
                .await?;
            let extras = body.name.is_some() || body.icon_url.is_some() || body.data.is_some();
            if created && extras {
                node.store
                    .update_conversation(
                        app,
                        &conv.id,
                        body.name.as_deref(),
                        body.icon_url.as_deref(),
                        body.data.as_ref(),
                    )
                    .await?;
            }
            (conv, created)
        }
    };
    // Answer the conversation as the caller sees it (the backend: no viewer fields).
    let conv = node
        .store
        .get_conversation(app, &conv.id, caller.user())
        .await?
        .ok_or_else(Error::internal)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(conv)).into_response())
}

/// `GET /v1/conversations`: the app's conversations (backend) or the user's own,
/// latest activity first.
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Conversation>>> {
    let limit = page.limit()?;
    let page = match caller.user() {
        None => {
            node.store
                .list_conversations(&caller.app, page.cursor(), limit)
                .await?
        }
        Some(me) => {
            node.store
                .user_conversations(&caller.app, me, page.cursor(), limit)
                .await?
        }
    };
    Ok(axum::Json(page))
}

/// `GET /v1/conversations/{id}`.
pub async fn get(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Conversation>> {
    let conv = node
        .visible_conversation(&caller.app, caller.actor(), &id)
        .await?;
    Ok(axum::Json(conv))
}

/// `PATCH /v1/conversations/{id}`: name, icon, data (admins, for a user token).
pub async fn update(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<UpdateConversation>,
) -> Result<axum::Json<Conversation>> {
    let conv = node
        .update_conversation(
            &caller.app,
            caller.actor(),
            &id,
            body.name.as_deref(),
            body.icon_url.as_deref(),
            body.data.as_ref(),
        )
        .await?;
    Ok(axum::Json(conv))
}

/// `GET /v1/conversations/{id}/members`, by user id.
pub async fn members(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Member>>> {
    let limit = page.limit()?;
    node.visible_conversation(&caller.app, caller.actor(), &id)
        .await?;
    let page = node
        .store
        .members(&caller.app, &id, page.cursor(), limit)
        .await?;
    Ok(axum::Json(page))
}

/// `POST /v1/conversations/{id}/members`: 201 with the members added (200 and an
/// empty list when everyone was a member already).
pub async fn add_members(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<AddMembers>,
) -> Result<Response> {
    check_user_ids(&body.user_ids)?;
    let added = node
        .add_members(&caller.app, caller.actor(), &id, &body.user_ids)
        .await?;
    let status = if added.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(AddedMembers { members: added })).into_response())
}

/// `DELETE /v1/conversations/{id}/members/{user}`: 204.
pub async fn remove_member(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode> {
    node.remove_member(&caller.app, caller.actor(), &id, &user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /v1/conversations/{id}/members/{user}` `{role}`: owners and admins
/// (only owners make owners or change an owner), or the backend. Answers the
/// member as now; a change is told in history as a system message.
pub async fn change_role(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
    Json(body): Json<ChangeRole>,
) -> Result<axum::Json<Member>> {
    let member = node
        .set_member_role(&caller.app, caller.actor(), &id, &user, body.role)
        .await?;
    Ok(axum::Json(member))
}
