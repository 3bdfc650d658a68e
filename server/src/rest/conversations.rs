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
use super::openapi::{null_only, user_pair, ConversationId, UserId};
use super::openapi::{E401, E403, E404, E409, E413, E422};
use crate::error::Result;
use crate::node::requests::NewConversation;
use crate::node::Node;
use crate::store::{Conversation, Kind, Member, Page, Role};

/// The body of `POST /v1/conversations`, read for both kinds; the document
/// states each kind's rules apart ([`CreateConversationSchema`]).
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

/// [`CreateConversation`] as the document states it: a group or a direct
/// conversation, told apart by `kind`.
#[derive(utoipa::ToSchema)]
#[schema(as = CreateConversation)]
#[serde(untagged)]
pub enum CreateConversationSchema {
    Group(NewGroupSchema),
    Direct(NewDirectSchema),
}

#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    Group,
}

#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DirectKind {
    Direct,
}

/// A group to create.
#[derive(utoipa::ToSchema)]
#[schema(as = NewGroup)]
#[expect(dead_code, reason = "a schema only")]
pub struct NewGroupSchema {
    #[schema(inline)]
    kind: GroupKind,
    /// Up to 1000 members, duplicates counted; a repeated id counts once (a user
    /// token's user is added as owner). A longer list is refused before any
    /// user is looked up or created.
    #[serde(default)]
    #[schema(value_type = Vec<UserId>, max_items = 1000)]
    members: Vec<String>,
    /// Made by the server when absent. Only an API key may choose it (a user
    /// token naming one gets 403).
    #[schema(value_type = Option<ConversationId>)]
    id: Option<String>,
    /// At most 256 bytes.
    #[schema(max_length = 256)]
    name: Option<String>,
    /// At most 2048 bytes.
    #[schema(max_length = 2048)]
    icon_url: Option<String>,
    /// The customer's JSON object (at most 16 KiB serialized).
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// A direct conversation to start (or find).
#[derive(utoipa::ToSchema)]
#[schema(as = NewDirect)]
#[expect(dead_code, reason = "a schema only")]
pub struct NewDirectSchema {
    #[schema(inline)]
    kind: DirectKind,
    /// The two people (with a user token: the other person, optionally with
    /// the token's user).
    #[schema(schema_with = user_pair)]
    members: Vec<String>,
    #[schema(schema_with = null_only)]
    id: Option<String>,
    /// At most 256 bytes.
    #[schema(max_length = 256)]
    name: Option<String>,
    /// At most 2048 bytes.
    #[schema(max_length = 2048)]
    icon_url: Option<String>,
    /// The customer's JSON object (at most 16 KiB serialized).
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct UpdateConversation {
    /// At most 256 bytes.
    #[schema(max_length = 256)]
    pub name: Option<String>,
    /// At most 2048 bytes.
    #[schema(max_length = 2048)]
    pub icon_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AddMembers {
    /// 1 to 1000 user ids, duplicates counted; a repeated id counts once. A
    /// longer list is refused before any user is looked up or created.
    #[schema(value_type = Vec<UserId>, min_items = 1, max_items = 1000)]
    pub user_ids: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChangeRole {
    pub role: Role,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddedMembers {
    /// The users who were not members before.
    pub members: Vec<Member>,
}

/// `POST /v1/conversations`: a group (201; 409 when the id is taken) or a direct
/// conversation (201 when created, 200 when the pair already had one).
#[utoipa::path(
    post,
    path = "/v1/conversations",
    operation_id = "createConversation",
    tag = "conversations",
    summary = "Create a conversation",
    description = "Creates a group (201; a user token becomes its owner; only an API key may choose the `id`, 403 for a user token; 409 when the chosen id is taken) or starts a direct conversation (201 when created, 200 with the existing one for the same pair).",
    security(("api_key" = []), ("user_token" = [])),
    request_body = CreateConversationSchema,
    responses(
        (status = 201, description = "Created.", body = Conversation),
        (status = 200, description = "The existing direct conversation.", body = Conversation),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 409, response = E409),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn create(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<CreateConversation>,
) -> Result<Response> {
    let request = NewConversation {
        kind: body.kind,
        members: body.members,
        id: body.id,
        name: body.name,
        icon_url: body.icon_url,
        data: body.data,
    };
    let (conv, created) = node
        .create_conversation(&caller.app, caller.actor(), request)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(conv)).into_response())
}

/// `GET /v1/conversations`: the app's conversations (backend) or the user's own,
/// latest activity first.
#[utoipa::path(
    get,
    path = "/v1/conversations",
    operation_id = "listConversations",
    tag = "conversations",
    summary = "List conversations",
    description = "The app's conversations (API key) or the user's own (user token), latest activity first.",
    security(("api_key" = []), ("user_token" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of conversations.", body = Page<Conversation>),
        (status = 401, response = E401),
        (status = 422, response = E422),
    ),
)]
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Conversation>>> {
    let page = node
        .conversations_page(&caller.app, caller.actor(), &page.into())
        .await?;
    Ok(axum::Json(page))
}

/// `GET /v1/conversations/{id}`.
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}",
    operation_id = "getConversation",
    tag = "conversations",
    summary = "Read a conversation",
    description = "A user token reads only conversations it is a member of.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id.")),
    responses(
        (status = 200, description = "The conversation.", body = Conversation),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
    ),
)]
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

/// `DELETE /v1/conversations/{id}`: the backend, or an owner of a group.
#[utoipa::path(
    delete,
    path = "/v1/conversations/{id}",
    operation_id = "deleteConversation",
    tag = "conversations",
    summary = "Delete a conversation",
    description = "Deletes the conversation, its members and its messages for everyone (a user token: owners of a group; members of a direct conversation hide it instead). Each member's devices get a `member_left` push.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn delete(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<http::StatusCode> {
    node.delete_conversation(&caller.app, caller.actor(), &id)
        .await?;
    Ok(http::StatusCode::NO_CONTENT)
}

/// `PATCH /v1/conversations/{id}`: name, icon, data (admins, for a user token).
#[utoipa::path(
    patch,
    path = "/v1/conversations/{id}",
    operation_id = "updateConversation",
    tag = "conversations",
    summary = "Update a conversation",
    description = "Updates name, icon_url, data (a user token: admins and owners). Members are told live and history gets a system message for a rename.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id.")),
    request_body = UpdateConversation,
    responses(
        (status = 200, description = "The updated conversation.", body = Conversation),
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
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/members",
    operation_id = "listMembers",
    tag = "members",
    summary = "List members",
    description = "A conversation's members, by user id.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id."), PageParams),
    responses(
        (status = 200, description = "A page of members.", body = Page<Member>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn members(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<Member>>> {
    let page = node
        .members_page(&caller.app, caller.actor(), &id, &page.into())
        .await?;
    Ok(axum::Json(page))
}

/// `POST /v1/conversations/{id}/members`: 201 with the members added (200 and an
/// empty list when everyone was a member already).
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/members",
    operation_id = "addMembers",
    tag = "members",
    summary = "Add members",
    description = "Adds members to a group (a user token: admins and owners; the API key also creates unknown users). 201 with the users added; 200 with an empty list when everyone was a member already.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id.")),
    request_body = AddMembers,
    responses(
        (status = 201, description = "The users added.", body = AddedMembers),
        (status = 200, description = "Everyone was a member already.", body = AddedMembers),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn add_members(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<AddMembers>,
) -> Result<Response> {
    let added = node
        .add_members_request(&caller.app, caller.actor(), &id, &body.user_ids)
        .await?;
    let status = if added.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(AddedMembers { members: added })).into_response())
}

/// `DELETE /v1/conversations/{id}/members/{user}`: 204.
#[utoipa::path(
    delete,
    path = "/v1/conversations/{id}/members/{user}",
    operation_id = "removeMember",
    tag = "members",
    summary = "Remove a member",
    description = "Oneself (leave), or another member by an admin or owner, or by the API key.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id."), ("user" = UserId, Path, description = "User id of the member.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
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
#[utoipa::path(
    patch,
    path = "/v1/conversations/{id}/members/{user}",
    operation_id = "changeRole",
    tag = "members",
    summary = "Change a member's role",
    description = "A user token: owners and admins; only an owner makes owners or changes an owner's role, and the last owner cannot step down while others remain. Told in history as a system message.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id."), ("user" = UserId, Path, description = "User id of the member.")),
    request_body = ChangeRole,
    responses(
        (status = 200, description = "The member as now.", body = Member),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
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
