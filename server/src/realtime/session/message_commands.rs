//! Commands that change existing messages: edit, delete, react, unreact. Each is
//! answered with the message as it now is (`MessageResult`); the node pushes
//! `message_updated` to every member, this connection's user included.

use mkondo_proto::convert::struct_to_json;
use mkondo_proto::v1::{self, client_frame::Command, reply::Result as R};

use super::Session;
use crate::error::{Error, Result};
use crate::node::requests::wire_seq;
use crate::node::Actor;
use crate::store::messages::MessageEdit;
use crate::store::Message;
use crate::views;

impl Session {
    pub(super) async fn message_command(
        &mut self,
        app: &str,
        me: &str,
        command: Command,
    ) -> Result<R> {
        let node = self.node.clone();
        let actor = Actor::User(me);
        let message = match command {
            Command::Edit(req) => {
                // proto3 cannot tell an empty text from an absent one: an empty
                // text keeps the current one (REST's PATCH can clear it).
                let edit = MessageEdit {
                    text: (!req.text.is_empty()).then_some(req.text),
                    data: req.data.as_ref().map(struct_to_json),
                };
                node.edit_message(
                    app,
                    actor,
                    &req.conversation_id,
                    wire_seq(req.seq, "seq")?,
                    edit,
                )
                .await?
            }
            Command::Delete(req) => {
                node.delete_message(app, actor, &req.conversation_id, wire_seq(req.seq, "seq")?)
                    .await?
            }
            Command::React(req) => {
                node.react(
                    app,
                    actor,
                    &req.conversation_id,
                    wire_seq(req.seq, "seq")?,
                    &req.emoji,
                    me,
                )
                .await?
                .0
            }
            Command::Unreact(req) => {
                node.unreact(
                    app,
                    actor,
                    &req.conversation_id,
                    wire_seq(req.seq, "seq")?,
                    &req.emoji,
                    me,
                )
                .await?
                .0
            }
            _ => return Err(Error::invalid("not a message command")),
        };
        Ok(reply(&message))
    }
}

fn reply(message: &Message) -> R {
    R::Message(v1::MessageResult {
        message: Some(views::message(message)),
    })
}
