//! Messages over REST: history pages, sending, and changes to sent messages
//! (edit, delete, reactions). Each goes through the node, the same path as its
//! real-time command: sending gets its seq under the conversation's ordering
//! lock and reaches connected members live (a repeated `client_id` answers the
//! original message); a change is pushed to members as `message_updated`.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use super::auth::Caller;
use super::extract::{whole, Json, Path, Query};
use super::openapi::{at_least_one_of, ConversationId, UserId, E401, E403, E404, E413, E422};
use crate::error::Result;
use crate::node::requests::{HistoryRequest, PageRequest, SendInput};
use crate::node::Node;
use crate::store::messages::MessageEdit;
use crate::store::{Message, Page};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Messages with a smaller seq (the newest of them).
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Messages with a larger seq (the oldest of them).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (base64url; only a cursor the
    /// server answered is valid).
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    #[default]
    User,
    System,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SendMessage {
    /// Required with an API key unless kind is system (then "system"); with a
    /// user token, absent or the token's user.
    #[schema(value_type = Option<UserId>)]
    pub sender_id: Option<String>,
    /// At most 16 KiB (16,384 bytes of UTF-8); a message needs a non-empty
    /// text or a non-empty data object.
    #[serde(default)]
    #[schema(max_length = 16384)]
    pub text: String,
    /// The customer's JSON object (at most 32 KiB serialized). An object
    /// under `push` (at most 1 KiB) rides in the message's push
    /// notifications as custom data (docs/push.md).
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// Idempotency key (1 to 128 bytes): a retry answers the original message.
    #[schema(min_length = 1, max_length = 128)]
    pub client_id: Option<String>,
    /// The seq of an earlier message of the same conversation.
    #[serde(default, deserialize_with = "whole::option_i64")]
    #[schema(minimum = 1)]
    pub reply_to: Option<i64>,
    #[serde(default)]
    pub kind: MessageKind,
    /// Ready uploads of the sender in this conversation (`POST
    /// /v1/conversations/{id}/uploads`), at most 10, in the order shown.
    #[serde(default)]
    #[schema(max_items = 10, value_type = Vec<super::openapi::AttachmentId>)]
    pub attachment_ids: Vec<String>,
}

/// `GET /v1/conversations/{id}/messages?before=&after=&limit=&cursor=`: a page in
/// ascending seq order. `after` pages forward from a seq; `before` (or neither)
/// pages backward from the newest; `next_cursor` continues in the same direction.
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/messages",
    operation_id = "listMessages",
    tag = "messages",
    summary = "History",
    description = "A page of history in ascending seq order. `after` pages forward from a seq; `before` (or neither) pages backward from the newest; `next_cursor` continues in the same direction.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id."), HistoryParams),
    responses(
        (status = 200, description = "A page of messages.", body = Page<Message>),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn history(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Result<axum::Json<Page<Message>>> {
    let req = HistoryRequest {
        before: params.before,
        after: params.after,
        page: PageRequest::new(params.cursor, params.limit),
    };
    let page = node
        .history_request(&caller.app, caller.actor(), &id, &req)
        .await?;
    Ok(axum::Json(page))
}

/// `POST /v1/conversations/{id}/messages`: 201 with the message, or 200 with the
/// original when its `client_id` was used before.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/messages",
    operation_id = "sendMessage",
    tag = "messages",
    summary = "Send a message",
    description = "Sends as a user (a user token: only as itself) or as the system (API key). Delivered live to connected members. A repeated client_id answers the original message (200).",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id.")),
    request_body = SendMessageBody,
    responses(
        (status = 201, description = "Sent.", body = Message),
        (status = 200, description = "The original message of this client_id.", body = Message),
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
    Json(body): Json<SendMessage>,
) -> Result<Response> {
    let input = SendInput {
        sender_id: body.sender_id,
        system: body.kind == MessageKind::System,
        text: body.text,
        data: body.data,
        client_id: body.client_id,
        reply_to: body.reply_to,
        attachment_ids: body.attachment_ids,
    };
    let sent = node
        .send_request(&caller.app, caller.actor(), &id, input)
        .await?;
    let status = if sent.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(sent.message)).into_response())
}

/// The request body schema of sending: [`SendMessage`] and the rule that a
/// message has a text, data or attachments.
pub struct SendMessageBody;

impl utoipa::PartialSchema for SendMessageBody {
    fn schema() -> RefOr<Schema> {
        text_or_data(
            SendMessage::schema(),
            vec![("attachment_ids", ObjectBuilder::new())],
        )
    }
}

impl utoipa::ToSchema for SendMessageBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SendMessage")
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EditMessage {
    /// At most 16 KiB (16,384 bytes of UTF-8).
    #[schema(max_length = 16384)]
    pub text: Option<String>,
    /// At most 32 KiB serialized.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// The request body schema of an edit: [`EditMessage`] with a non-empty text
/// or data (so the message never ends up empty).
pub struct EditMessageBody;

impl utoipa::PartialSchema for EditMessageBody {
    fn schema() -> RefOr<Schema> {
        text_or_data(EditMessage::schema(), Vec::new())
    }
}

/// `base` with the rule a message keeps: a non-empty text or a non-empty data
/// (or one of `more`).
fn text_or_data(base: RefOr<Schema>, more: Vec<(&str, ObjectBuilder)>) -> RefOr<Schema> {
    at_least_one_of(
        base,
        [
            (
                "text",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            ),
            (
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .min_properties(Some(1)),
            ),
        ]
        .into_iter()
        .chain(more)
        .collect(),
    )
}

impl utoipa::ToSchema for EditMessageBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EditMessage")
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AddReaction {
    /// 1 to 32 bytes, no whitespace or control characters: an emoji, a sequence
    /// of them, or a short name such as `:thumbsup:`.
    #[schema(
        pattern = "^[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]{1,32}$"
    )]
    pub emoji: String,
    /// Who reacts: required with an API key; with a user token, absent or itself.
    #[schema(value_type = Option<UserId>)]
    pub user_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReactionParams {
    /// Whose reaction (API key only; required then).
    #[param(value_type = Option<UserId>)]
    pub user_id: Option<String>,
}

/// The user a reaction is for: a user token's own user, or the one the backend names.
fn reacting_user(caller: &Caller, named: Option<String>) -> Result<String> {
    crate::node::requests::reacting_user(caller.actor(), named)
}

/// `PATCH /v1/conversations/{id}/messages/{seq}`: the sender (or the backend)
/// replaces text and/or data; answers the message as it now is.
#[utoipa::path(
    patch,
    path = "/v1/conversations/{id}/messages/{seq}",
    operation_id = "editMessage",
    tag = "messages",
    summary = "Edit a message",
    description = "The sender only (the API key: any message); system messages cannot be edited by users, deleted ones by nobody. Sets edited_at; members receive message_updated.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id."), ("seq" = i64, Path, minimum = 1, description = "The message's seq in the conversation.")),
    request_body = EditMessageBody,
    responses(
        (status = 200, description = "The message as now.", body = Message),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 413, response = E413),
        (status = 422, response = E422),
    ),
)]
pub async fn edit(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, seq)): Path<(String, i64)>,
    Json(body): Json<EditMessage>,
) -> Result<axum::Json<Message>> {
    let edit = MessageEdit {
        text: body.text,
        data: body.data,
    };
    let message = node
        .edit_message(&caller.app, caller.actor(), &id, seq, edit)
        .await?;
    Ok(axum::Json(message))
}

/// `DELETE /v1/conversations/{id}/messages/{seq}`: the sender, an admin or owner,
/// or the backend; answers the tombstone (again, unchanged, when repeated).
#[utoipa::path(
    delete,
    path = "/v1/conversations/{id}/messages/{seq}",
    operation_id = "deleteMessage",
    tag = "messages",
    summary = "Delete a message",
    description = "The sender, an admin or owner of the conversation, or the API key. The message becomes a tombstone (text, data and reactions erased, deleted_at set; the seq stays taken); members receive message_updated. Repeating it answers the tombstone.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id."), ("seq" = i64, Path, minimum = 1, description = "The message's seq in the conversation.")),
    responses(
        (status = 200, description = "The tombstone.", body = Message),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn delete(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, seq)): Path<(String, i64)>,
) -> Result<axum::Json<Message>> {
    let message = node
        .delete_message(&caller.app, caller.actor(), &id, seq)
        .await?;
    Ok(axum::Json(message))
}

/// `POST /v1/conversations/{id}/messages/{seq}/reactions`: 201 with the message
/// when the reaction is new, 200 when the user had already reacted so.
#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/messages/{seq}/reactions",
    operation_id = "addReaction",
    tag = "messages",
    summary = "React to a message",
    description = "A member, for themselves (the API key names the member). Reactions are a set per emoji and user; members receive message_updated when it changes.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id."), ("seq" = i64, Path, minimum = 1, description = "The message's seq in the conversation.")),
    request_body = AddReaction,
    responses(
        (status = 201, description = "Added.", body = Message),
        (status = 200, description = "The user had already reacted so.", body = Message),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn react(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, seq)): Path<(String, i64)>,
    Json(body): Json<AddReaction>,
) -> Result<Response> {
    let user = reacting_user(&caller, body.user_id)?;
    let (message, added) = node
        .react(&caller.app, caller.actor(), &id, seq, &body.emoji, &user)
        .await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(message)).into_response())
}

/// `DELETE /v1/conversations/{id}/messages/{seq}/reactions/{emoji}?user_id=`:
/// removes the reaction (the token's user, or `user_id` for the backend);
/// answers the message, whether or not there was one.
#[utoipa::path(
    delete,
    path = "/v1/conversations/{id}/messages/{seq}/reactions/{emoji}",
    operation_id = "removeReaction",
    tag = "messages",
    summary = "Remove a reaction",
    description = "The token user's reaction, or (API key) that of `user_id`. Answers the message whether or not the reaction was there.",
    security(("api_key" = []), ("user_token" = [])),
    params(("id" = ConversationId, Path, description = "Conversation id."), ("seq" = i64, Path, minimum = 1, description = "The message's seq in the conversation."), ("emoji" = String, Path, pattern = "^[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]{1,32}$", description = "The emoji, percent-encoded."), ReactionParams),
    responses(
        (status = 200, description = "The message as now.", body = Message),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 404, response = E404),
        (status = 422, response = E422),
    ),
)]
pub async fn unreact(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path((id, seq, emoji)): Path<(String, i64, String)>,
    Query(params): Query<ReactionParams>,
) -> Result<axum::Json<Message>> {
    let user = reacting_user(&caller, params.user_id)?;
    let (message, _) = node
        .unreact(&caller.app, caller.actor(), &id, seq, &emoji, &user)
        .await?;
    Ok(axum::Json(message))
}
