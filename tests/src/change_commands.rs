//! Convenience methods for the commands that change messages and membership
//! (edit, delete, react, unreact, remove_member, leave), like `commands.rs`.

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as ReplyResult};

use crate::Client;

impl Client {
    pub async fn edit(&self, conv: &str, seq: u64, text: &str) -> Result<v1::Message, v1::Error> {
        let req = v1::EditRequest {
            conversation_id: conv.to_owned(),
            seq,
            text: text.to_owned(),
            data: None,
        };
        message_reply("edit", self.request(Command::Edit(req)).await?)
    }

    pub async fn delete(&self, conv: &str, seq: u64) -> Result<v1::Message, v1::Error> {
        let req = v1::DeleteRequest {
            conversation_id: conv.to_owned(),
            seq,
        };
        message_reply("delete", self.request(Command::Delete(req)).await?)
    }

    pub async fn react(&self, conv: &str, seq: u64, emoji: &str) -> Result<v1::Message, v1::Error> {
        let req = v1::ReactRequest {
            conversation_id: conv.to_owned(),
            seq,
            emoji: emoji.to_owned(),
        };
        message_reply("react", self.request(Command::React(req)).await?)
    }

    pub async fn unreact(
        &self,
        conv: &str,
        seq: u64,
        emoji: &str,
    ) -> Result<v1::Message, v1::Error> {
        let req = v1::ReactRequest {
            conversation_id: conv.to_owned(),
            seq,
            emoji: emoji.to_owned(),
        };
        message_reply("unreact", self.request(Command::Unreact(req)).await?)
    }

    pub async fn remove_member(&self, conv: &str, user: &str) -> Result<(), v1::Error> {
        let req = v1::RemoveMemberRequest {
            conversation_id: conv.to_owned(),
            user_id: user.to_owned(),
        };
        self.request(Command::RemoveMember(req)).await.map(drop)
    }

    pub async fn leave(&self, conv: &str) -> Result<(), v1::Error> {
        let req = v1::LeaveRequest {
            conversation_id: conv.to_owned(),
        };
        self.request(Command::Leave(req)).await.map(drop)
    }

    /// The next `message_updated` push of `conv` at `seq`, skipping other pushes.
    pub async fn expect_update(
        &self,
        conv: &str,
        seq: u64,
        timeout: std::time::Duration,
    ) -> v1::MessageUpdated {
        self.expect_push(
            &format!("message_updated of {conv} seq {seq}"),
            timeout,
            |p| match p {
                crate::PushKind::MessageUpdated(u)
                    if u.message
                        .as_ref()
                        .is_some_and(|m| m.conversation_id == conv && m.seq == seq) =>
                {
                    Some(u.clone())
                }
                _ => None,
            },
        )
        .await
    }
}

fn message_reply(what: &str, reply: ReplyResult) -> Result<v1::Message, v1::Error> {
    match reply {
        ReplyResult::Message(v1::MessageResult { message: Some(m) }) => Ok(m),
        other => panic!("unexpected reply to {what}: {other:?}"),
    }
}
