//! Messages over the Admin API, the twins of `rest/messages.rs`: history
//! pages, sending (as a member or as the system), edit, delete, reactions.

use mkondo_proto::v1::*;

use super::{json, owned, page, seq};
use crate::error::{Error, Result};
use crate::node::requests::{reacting_user, HistoryRequest, SendInput};
use crate::node::{Actor, Node};
use crate::store::messages::MessageEdit;
use crate::views;

pub(super) async fn history(
    node: &Node,
    app: &str,
    req: HistoryPageRequest,
) -> Result<MessagePage> {
    let query = HistoryRequest {
        before: req.before.map(seq).transpose()?,
        after: req.after.map(seq).transpose()?,
        page: page(req.cursor, req.limit),
    };
    let page = node
        .history_request(app, Actor::Backend, &req.conversation_id, &query)
        .await?;
    Ok(MessagePage {
        items: page.items.iter().map(views::message).collect(),
        next_cursor: page.next_cursor.unwrap_or_default(),
    })
}

pub(super) async fn send_message(
    node: &Node,
    app: &str,
    req: SendMessageRequest,
) -> Result<SendMessageResponse> {
    let system = match req.kind.as_str() {
        "" | "user" => false,
        "system" => true,
        _ => return Err(Error::invalid("kind must be \"user\" or \"system\"")),
    };
    let input = SendInput {
        sender_id: owned(req.sender_id),
        system,
        text: req.text,
        data: json(req.data),
        client_id: owned(req.client_id),
        reply_to: match req.reply_to {
            0 => None,
            n => Some(seq(n)?),
        },
        attachment_ids: req.attachment_ids,
    };
    let sent = node
        .send_request(app, Actor::Backend, &req.conversation_id, input)
        .await?;
    Ok(SendMessageResponse {
        message: Some(views::message(&sent.message)),
        duplicate: sent.duplicate,
    })
}

pub(super) async fn edit_message(
    node: &Node,
    app: &str,
    req: EditMessageRequest,
) -> Result<Message> {
    let edit = MessageEdit {
        text: req.text,
        data: json(req.data),
    };
    let message = node
        .edit_message(
            app,
            Actor::Backend,
            &req.conversation_id,
            seq(req.seq)?,
            edit,
        )
        .await?;
    Ok(views::message(&message))
}

pub(super) async fn delete_message(node: &Node, app: &str, req: MessageRef) -> Result<Message> {
    let message = node
        .delete_message(app, Actor::Backend, &req.conversation_id, seq(req.seq)?)
        .await?;
    Ok(views::message(&message))
}

pub(super) async fn add_reaction(
    node: &Node,
    app: &str,
    req: ReactionRequest,
) -> Result<AddReactionResponse> {
    let user = reacting_user(Actor::Backend, Some(req.user_id))?;
    let (message, added) = node
        .react(
            app,
            Actor::Backend,
            &req.conversation_id,
            seq(req.seq)?,
            &req.emoji,
            &user,
        )
        .await?;
    Ok(AddReactionResponse {
        message: Some(views::message(&message)),
        added,
    })
}

pub(super) async fn remove_reaction(
    node: &Node,
    app: &str,
    req: ReactionRequest,
) -> Result<Message> {
    let user = reacting_user(Actor::Backend, Some(req.user_id))?;
    let (message, _) = node
        .unreact(
            app,
            Actor::Backend,
            &req.conversation_id,
            seq(req.seq)?,
            &req.emoji,
            &user,
        )
        .await?;
    Ok(views::message(&message))
}
