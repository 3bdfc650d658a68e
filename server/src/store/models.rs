//! Records as the store returns them, serialized as the REST API's JSON
//! (snake_case, times RFC 3339) and converted to the wire types for real-time.
//! Their OpenAPI schemas are derived here too (`ToSchema`), so the REST document
//! describes exactly what is serialized, and so is how they are read from rows
//! (`sqlx::FromRow`, by column name; see `columns.rs`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::columns::{Flag, JsonText};

/// Unix milliseconds, serialized as an RFC 3339 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub i64);

impl Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let dt = chrono::DateTime::from_timestamp_millis(self.0).unwrap_or_default();
        s.serialize_str(&dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

impl utoipa::PartialSchema for Millis {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339 in UTC, with milliseconds."))
            .examples([serde_json::json!("2025-01-31T09:30:00.000Z")])
            .into()
    }
}

impl ToSchema for Millis {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Time")
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub name: String,
    pub avatar_url: String,
    /// The customer's JSON object (at most 4 KiB).
    #[schema(value_type = Object)]
    #[sqlx(try_from = "JsonText")]
    pub data: Value,
    pub created_at: Millis,
    pub updated_at: Millis,
    #[sqlx(try_from = "Flag")]
    pub deactivated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Millis>,
    #[serde(skip)]
    pub tokens_valid_after: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    /// 1, 2, 3 … per conversation, no gaps: the conversation's order.
    #[schema(minimum = 1)]
    pub seq: i64,
    pub sender_id: String,
    /// `user`, or `system` for messages the server or the backend writes
    /// (member joined / left, renamed …).
    #[schema(examples("user", "system"))]
    pub kind: String,
    pub text: String,
    /// The customer's JSON object (attachments' metadata, custom fields).
    #[schema(value_type = Object)]
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
    /// Files attached to it (uploaded first), in the order given; at most 10.
    pub attachments: Vec<super::files::Attachment>,
}

/// One emoji on a message and the users who reacted with it, earliest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Member {
    pub user_id: String,
    pub role: Role,
    pub joined_at: Millis,
    pub last_read_seq: i64,
    pub cleared_seq: i64,
    #[sqlx(try_from = "Flag")]
    pub muted: bool,
}

/// The viewer's own membership, joined onto a conversation in per-user lists.
/// Present (all its fields together) on conversations read with a user token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Viewer {
    #[schema(required = false)]
    pub role: Role,
    #[schema(required = false)]
    pub last_read_seq: i64,
    #[schema(required = false)]
    pub cleared_seq: i64,
    #[schema(required = false)]
    pub unread_count: i64,
    #[schema(required = false)]
    pub muted: bool,
    /// Hidden ("delete chat") and nothing new since: out of the viewer's list.
    #[schema(required = false)]
    pub hidden: bool,
}

/// Read from a row with its own columns only; the store fills in the rest
/// (`#[sqlx(skip)]`) from other tables.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Conversation {
    pub id: String,
    pub kind: Kind,
    pub name: String,
    pub icon_url: String,
    /// The customer's JSON object (at most 16 KiB).
    #[schema(value_type = Object)]
    #[sqlx(try_from = "JsonText")]
    pub data: Value,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_activity_at: Millis,
    pub last_seq: i64,
    /// The user whose token created the group; None for the backend, a
    /// `groups` claim and direct conversations. Not shown to clients.
    #[serde(skip)]
    pub created_by: Option<String>,
    #[sqlx(skip)]
    pub member_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(skip)]
    pub last_message: Option<Message>,
    /// Member ids, for direct conversations (the pair) and small reads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[sqlx(skip)]
    pub members: Vec<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[sqlx(skip)]
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
