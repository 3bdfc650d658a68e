//! Messages over REST: history pages, sending, and changes to sent messages
//! (edit, delete, reactions). Each goes through the node, the same path as its
//! real-time command: sending gets its seq under the conversation's ordering
//! lock and reaches connected members live (a repeated `client_id` answers the
//! original message); a change is pushed to members as `message_updated`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::auth::Caller;
use super::extract::{non_empty, page_limit, Json, Path, Query};
use crate::error::{Error, Result};
use crate::node::Node;
use crate::store::messages::{HistoryQuery, MessageEdit};
use crate::store::system_messages::SYSTEM_SENDER;
use crate::store::{Message, NewMessage, Page};

#[derive(Debug, Default, Deserialize)]
pub struct HistoryParams {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    #[default]
    User,
    System,
}

#[derive(Debug, Deserialize)]
pub struct SendMessage {
    pub sender_id: Option<String>,
    #[serde(default)]
    pub text: String,
    pub data: Option<Value>,
    pub client_id: Option<String>,
    pub reply_to: Option<i64>,
    #[serde(default)]
    pub kind: MessageKind,
}

/// `GET /v1/conversations/{id}/messages?before=&after=&limit=&cursor=`: a page in
/// ascending seq order. `after` pages forward from a seq; `before` (or neither)
/// pages backward from the newest; `next_cursor` continues in the same direction.
pub async fn history(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Result<axum::Json<Page<Message>>> {
    let limit = page_limit(params.limit)?;
    if params.before.is_some() && params.after.is_some() {
        return Err(Error::invalid("give before or after, not both"));
    }
    if params.before.is_some_and(|s| s < 1) || params.after.is_some_and(|s| s < 0) {
        return Err(Error::invalid(
            "before must be a seq of at least 1, after at least 0",
        ));
    }
    let query = HistoryQuery {
        before: params.before,
        after: params.after,
        cursor: non_empty(&params.cursor).map(str::to_owned),
        limit,
    };
    let page = node
        .history(&caller.app, caller.actor(), &id, &query)
        .await?;
    Ok(axum::Json(page))
}

/// `POST /v1/conversations/{id}/messages`: 201 with the message, or 200 with the
/// original when its `client_id` was used before.
pub async fn send(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<SendMessage>,
) -> Result<Response> {
    let sender_id = match (caller.user(), body.kind, body.sender_id) {
        (Some(_), MessageKind::System, _) => {
            return Err(Error::denied("only the backend may send system messages"))
        }
        (Some(me), MessageKind::User, None) => me.to_owned(),
        (Some(me), MessageKind::User, Some(sender)) if sender != me => {
            return Err(Error::denied("a user token may only send as its own user"))
        }
        (_, _, Some(sender)) => sender,
        (None, MessageKind::System, None) => SYSTEM_SENDER.to_owned(),
        (None, MessageKind::User, None) => {
            return Err(Error::invalid(
                "sender_id is required (or send kind \"system\")",
            ))
        }
    };
    let msg = NewMessage {
        sender_id,
        kind: match body.kind {
            MessageKind::User => "user",
            MessageKind::System => "system",
        }
        .to_owned(),
        text: body.text,
        data: body.data,
        client_id: body.client_id,
        reply_to: body.reply_to,
    };
    let sent = node
        .send_message(&caller.app, caller.actor(), &id, msg)
        .await?;
    let status = if sent.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(sent.message)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct EditMessage {
    pub text: Option<String>,
    pub data: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct AddReaction {
    pub emoji: String,
    /// Who reacts: required with an API key; with a user token, absent or itself.
    pub user_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ReactionParams {
    pub user_id: Option<String>,
}

/// The user a reaction is for: a user token's own user, or the one the backend names.
fn reacting_user(caller: &Caller, named: Option<String>) -> Result<String> {
    match (caller.user(), named) {
        (Some(me), None) => Ok(me.to_owned()),
        (Some(me), Some(named)) if named == me => Ok(named),
        (Some(_), Some(_)) => Err(Error::denied("a user token may only react as its own user")),
        (None, Some(named)) if !named.is_empty() => Ok(named),
        (None, _) => Err(Error::invalid("user_id is required with an API key")),
    }
}

/// `PATCH /v1/conversations/{id}/messages/{seq}`: the sender (or the backend)
/// replaces text and/or data; answers the message as it now is.
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
