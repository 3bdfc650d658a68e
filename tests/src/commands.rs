//! One convenience method per command, on top of [`Client::request`]: each returns
//! the typed result or the server's error, and panics on a reply of the wrong kind.

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as ReplyResult};

use crate::Client;

impl Client {
    pub async fn ping(&self) -> Result<(), v1::Error> {
        match self.request(Command::Ping(v1::PingRequest {})).await? {
            ReplyResult::Pong(_) | ReplyResult::Ok(_) => Ok(()),
            other => panic!("unexpected reply to ping: {other:?}"),
        }
    }

    pub async fn send(&self, req: v1::SendRequest) -> Result<v1::SendResult, v1::Error> {
        match self.request(Command::Send(req)).await? {
            ReplyResult::Send(r) => Ok(r),
            other => panic!("unexpected reply to send: {other:?}"),
        }
    }

    pub async fn send_message(
        &self,
        conv: &str,
        text: &str,
        client_id: &str,
    ) -> Result<v1::SendResult, v1::Error> {
        self.send(v1::SendRequest {
            conversation_id: conv.to_owned(),
            text: text.to_owned(),
            client_id: client_id.to_owned(),
            ..Default::default()
        })
        .await
    }

    pub async fn history(
        &self,
        conv: &str,
        before: u64,
        after: u64,
        limit: u32,
    ) -> Result<v1::HistoryResult, v1::Error> {
        let req = v1::HistoryRequest {
            conversation_id: conv.to_owned(),
            before,
            after,
            limit,
        };
        match self.request(Command::History(req)).await? {
            ReplyResult::History(r) => Ok(r),
            other => panic!("unexpected reply to history: {other:?}"),
        }
    }

    /// Every message of `conv`, oldest first: the newest page, then older pages
    /// with `before` while the server says there are `more`.
    pub async fn history_all(&self, conv: &str) -> Result<Vec<v1::Message>, v1::Error> {
        let mut pages = Vec::new();
        let mut before = 0;
        for _ in 0..10_000 {
            let page = self.history(conv, before, 0, 100).await?;
            let Some(first) = page.messages.first() else {
                break;
            };
            before = first.seq;
            let more = page.more;
            pages.push(page.messages);
            if !more || before <= 1 {
                break;
            }
        }
        Ok(pages.into_iter().rev().flatten().collect())
    }

    pub async fn read(&self, conv: &str, seq: u64) -> Result<v1::ReadResult, v1::Error> {
        let req = v1::ReadRequest {
            conversation_id: conv.to_owned(),
            seq,
        };
        match self.request(Command::Read(req)).await? {
            ReplyResult::Read(r) => Ok(r),
            other => panic!("unexpected reply to read: {other:?}"),
        }
    }

    pub async fn subscribe(&self, conv: &str) -> Result<v1::SubscribeResult, v1::Error> {
        let req = v1::SubscribeRequest {
            conversation_id: conv.to_owned(),
        };
        match self.request(Command::Subscribe(req)).await? {
            ReplyResult::Subscribe(r) => Ok(r),
            other => panic!("unexpected reply to subscribe: {other:?}"),
        }
    }

    pub async fn unsubscribe(&self, conv: &str) -> Result<(), v1::Error> {
        let req = v1::UnsubscribeRequest {
            conversation_id: conv.to_owned(),
        };
        self.request(Command::Unsubscribe(req)).await.map(drop)
    }

    pub async fn typing(&self, conv: &str, stop: bool) -> Result<(), v1::Error> {
        let req = v1::TypingRequest {
            conversation_id: conv.to_owned(),
            stop,
        };
        self.request(Command::Typing(req)).await.map(drop)
    }

    pub async fn create_group(
        &self,
        name: &str,
        members: &[&str],
    ) -> Result<v1::Conversation, v1::Error> {
        let req = v1::CreateGroupRequest {
            name: name.to_owned(),
            members: members.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        };
        conversation_reply(
            "create_group",
            self.request(Command::CreateGroup(req)).await?,
        )
    }

    pub async fn start_direct(&self, user: &str) -> Result<v1::Conversation, v1::Error> {
        let req = v1::StartDirectRequest {
            user_id: user.to_owned(),
        };
        conversation_reply(
            "start_direct",
            self.request(Command::StartDirect(req)).await?,
        )
    }

    pub async fn conversations(
        &self,
        cursor: &str,
        limit: u32,
    ) -> Result<v1::ConversationsResult, v1::Error> {
        let req = v1::ConversationsRequest {
            cursor: cursor.to_owned(),
            limit,
        };
        match self.request(Command::Conversations(req)).await? {
            ReplyResult::Conversations(r) => Ok(r),
            other => panic!("unexpected reply to conversations: {other:?}"),
        }
    }

    pub async fn add_members(&self, conv: &str, users: &[&str]) -> Result<(), v1::Error> {
        let req = v1::AddMembersRequest {
            conversation_id: conv.to_owned(),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        };
        self.request(Command::AddMembers(req)).await.map(drop)
    }

    pub async fn presence(&self, users: &[&str]) -> Result<Vec<v1::Presence>, v1::Error> {
        let req = v1::PresenceRequest {
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        };
        match self.request(Command::Presence(req)).await? {
            ReplyResult::Presence(r) => Ok(r.presence),
            other => panic!("unexpected reply to presence: {other:?}"),
        }
    }

    /// `"foreground"` or `"background"`.
    pub async fn app_state(&self, state: &str) -> Result<(), v1::Error> {
        let req = v1::AppStateRequest {
            state: state.to_owned(),
        };
        self.request(Command::AppState(req)).await.map(drop)
    }

    pub async fn refresh(&self, token: &str) -> Result<v1::RefreshResult, v1::Error> {
        let req = v1::RefreshRequest {
            token: token.to_owned(),
        };
        match self.request(Command::Refresh(req)).await? {
            ReplyResult::Refresh(r) => Ok(r),
            other => panic!("unexpected reply to refresh: {other:?}"),
        }
    }
}

fn conversation_reply(what: &str, reply: ReplyResult) -> Result<v1::Conversation, v1::Error> {
    match reply {
        ReplyResult::Conversation(v1::ConversationResult {
            conversation: Some(c),
        }) => Ok(c),
        other => panic!("unexpected reply to {what}: {other:?}"),
    }
}
