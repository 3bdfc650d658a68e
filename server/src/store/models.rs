//! Records as the store returns them, serialized as the REST API's JSON
//! (snake_case, times RFC 3339) and converted to the wire types for real-time.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Unix milliseconds, serialized as an RFC 3339 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub i64);

impl Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let dt = chrono::DateTime::from_timestamp_millis(self.0).unwrap_or_default();
        s.serialize_str(&dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub avatar_url: String,
    pub data: Value,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub deactivated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Millis>,
    #[serde(skip)]
    pub tokens_valid_after: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Direct,
    Group,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Group => "group",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(Kind::Direct),
            "group" => Some(Kind::Group),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub kind: String,
    pub text: String,
    pub data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    pub created_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Millis>,
    /// Who reacted with what, emoji in the order they were first used.
    pub reactions: Vec<Reaction>,
}

/// One emoji on a message and the users who reacted with it, earliest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub user_id: String,
    pub role: Role,
    pub joined_at: Millis,
    pub last_read_seq: i64,
    pub cleared_seq: i64,
    pub muted: bool,
}

/// The viewer's own membership, joined onto a conversation in per-user lists.
#[derive(Debug, Clone, Serialize)]
pub struct Viewer {
    pub role: Role,
    pub last_read_seq: i64,
    pub cleared_seq: i64,
    pub unread_count: i64,
    pub muted: bool,
    /// Hidden ("delete chat") and nothing new since: out of the viewer's list.
    pub hidden: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conversation {
    pub id: String,
    pub kind: Kind,
    pub name: String,
    pub icon_url: String,
    pub data: Value,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_activity_at: Millis,
    pub last_seq: i64,
    pub member_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    /// Member ids, for direct conversations (the pair) and small reads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub viewer: Option<Viewer>,
}

impl Conversation {
    /// For a direct conversation seen by `me`: the other member.
    pub fn peer_of(&self, me: &str) -> Option<&str> {
        if self.kind != Kind::Direct {
            return None;
        }
        self.members.iter().map(String::as_str).find(|m| *m != me)
    }
}

pub fn unread(last_seq: i64, last_read_seq: i64, cleared_seq: i64) -> i64 {
    (last_seq - last_read_seq.max(cleared_seq)).max(0)
}

pub(crate) fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Object(Default::default()))
}
