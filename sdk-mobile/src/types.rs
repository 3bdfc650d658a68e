//! Records and enums mirroring the core's types in each language's terms. JSON
//! `data` travels as JSON text; times as milliseconds since the Unix epoch.
//! Event variants carry distinct names (`MessageReceived`, not `Message`) so
//! that Kotlin's nested classes never shadow the records they hold.

use mkondo_proto::convert::{struct_to_json, timestamp_to_millis};
use mkondo_sdk::{v1, Event};

use crate::error::MkondoError;
use crate::files::Attachment;

pub(crate) fn ms(ts: Option<&mkondo_proto::pbjson_types::Timestamp>) -> Option<i64> {
    ts.map(timestamp_to_millis)
}

fn json(data: Option<&mkondo_proto::pbjson_types::Struct>) -> Option<String> {
    data.map(|s| struct_to_json(s).to_string())
}

/// Which wire the client speaks. gRPC is mobile's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Transport {
    Grpc,
    WebSocketProtobuf,
    WebSocketJson,
}

impl From<Transport> for mkondo_sdk::TransportKind {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Grpc => Self::Grpc,
            Transport::WebSocketProtobuf => Self::WebSocketProtobuf,
            Transport::WebSocketJson => Self::WebSocketJson,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ConnectionState {
    Disconnected,
    Connecting,
    Connected,
}

impl From<mkondo_sdk::ConnectionState> for ConnectionState {
    fn from(s: mkondo_sdk::ConnectionState) -> Self {
        use mkondo_sdk::ConnectionState as C;
        match s {
            C::Disconnected => Self::Disconnected,
            C::Connecting => Self::Connecting,
            C::Connected => Self::Connected,
        }
    }
}

impl From<ConnectionState> for mkondo_sdk::ConnectionState {
    fn from(s: ConnectionState) -> Self {
        match s {
            ConnectionState::Disconnected => Self::Disconnected,
            ConnectionState::Connecting => Self::Connecting,
            ConnectionState::Connected => Self::Connected,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SubscriptionState {
    Unsubscribed,
    Subscribing,
    Subscribed,
}

impl From<mkondo_sdk::SubscriptionState> for SubscriptionState {
    fn from(s: mkondo_sdk::SubscriptionState) -> Self {
        use mkondo_sdk::SubscriptionState as S;
        match s {
            S::Unsubscribed => Self::Unsubscribed,
            S::Subscribing => Self::Subscribing,
            S::Subscribed => Self::Subscribed,
        }
    }
}

/// Foreground or background (the user shows `online` or `away`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum AppState {
    Foreground,
    Background,
}

impl From<AppState> for mkondo_sdk::AppState {
    fn from(s: AppState) -> Self {
        match s {
            AppState::Foreground => Self::Foreground,
            AppState::Background => Self::Background,
        }
    }
}

/// How a client is set up. Only `url` is required.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ClientConfig {
    /// `http://host:port` (or `ws://host:port/v1/realtime`); `https` for TLS.
    pub url: String,
    /// `None`: gRPC.
    #[uniffi(default = None)]
    pub transport: Option<Transport>,
    /// A token to start with; the token provider is asked when it is missing or expires.
    #[uniffi(default = None)]
    pub token: Option<String>,
    #[uniffi(default = 500)]
    pub min_reconnect_delay_ms: u64,
    #[uniffi(default = 20000)]
    pub max_reconnect_delay_ms: u64,
    #[uniffi(default = 10000)]
    pub request_timeout_ms: u64,
    #[uniffi(default = 1000)]
    pub outbox_limit: u32,
    #[uniffi(default = 20)]
    pub conversations_limit: u32,
    /// `true` when the app starts in the background.
    #[uniffi(default = false)]
    pub start_in_background: bool,
    /// An extra CA (PEM) for a private deployment's `https://` server, trusted
    /// besides the platform's trust store.
    #[uniffi(default = None)]
    pub extra_ca_pem: Option<String>,
    /// The offline store: a SQLite file the app names (in its own data
    /// directory), kept for `store_user_id` — the user the app signs in as.
    /// With it, the client opens with the cached conversations and recent
    /// messages, and messages written offline survive a restart. Give both
    /// or neither.
    #[uniffi(default = None)]
    pub store_path: Option<String>,
    #[uniffi(default = None)]
    pub store_user_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub seq: u64,
    pub sender_id: String,
    /// `user` or `system`.
    pub kind: String,
    pub text: String,
    /// A JSON object, as text.
    pub data: Option<String>,
    pub client_id: String,
    pub reply_to: Option<u64>,
    pub created_at_ms: Option<i64>,
    pub edited_at_ms: Option<i64>,
    pub deleted_at_ms: Option<i64>,
    pub reactions: Vec<Reaction>,
    /// Files attached; read them through `attachment_urls`.
    pub attachments: Vec<Attachment>,
}

impl From<v1::Message> for Message {
    fn from(m: v1::Message) -> Self {
        Self {
            data: json(m.data.as_ref()),
            created_at_ms: ms(m.created_at.as_ref()),
            edited_at_ms: ms(m.edited_at.as_ref()),
            deleted_at_ms: ms(m.deleted_at.as_ref()),
            reply_to: (m.reply_to > 0).then_some(m.reply_to),
            reactions: m
                .reactions
                .into_iter()
                .map(|r| Reaction {
                    emoji: r.emoji,
                    user_ids: r.user_ids,
                })
                .collect(),
            attachments: m.attachments.into_iter().map(Into::into).collect(),
            id: m.id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            sender_id: m.sender_id,
            kind: m.kind,
            text: m.text,
            client_id: m.client_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct User {
    pub id: String,
    pub name: String,
    pub avatar_url: String,
    pub data: Option<String>,
    pub deactivated: bool,
}

impl From<v1::User> for User {
    fn from(u: v1::User) -> Self {
        Self {
            data: json(u.data.as_ref()),
            id: u.id,
            name: u.name,
            avatar_url: u.avatar_url,
            deactivated: u.deactivated,
        }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Presence {
    pub user_id: String,
    /// `online`, `away` or `offline`.
    pub status: String,
    pub last_seen_ms: Option<i64>,
}

impl From<v1::Presence> for Presence {
    fn from(p: v1::Presence) -> Self {
        Self {
            last_seen_ms: ms(p.last_seen.as_ref()),
            user_id: p.user_id,
            status: p.status,
        }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Member {
    pub user_id: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    pub joined_at_ms: Option<i64>,
    pub last_read_seq: u64,
    pub muted: bool,
    /// The member's profile, in `members()` pages.
    pub user: Option<User>,
}

impl From<v1::Member> for Member {
    fn from(m: v1::Member) -> Self {
        Self {
            joined_at_ms: ms(m.joined_at.as_ref()),
            user_id: m.user_id,
            role: m.role,
            last_read_seq: m.last_read_seq,
            muted: m.muted,
            user: m.user.map(Into::into),
        }
    }
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl From<Role> for mkondo_sdk::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Owner => Self::Owner,
            Role::Admin => Self::Admin,
            Role::Member => Self::Member,
        }
    }
}

/// A page of a conversation's members, in user id order, with profiles.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct MembersPage {
    pub members: Vec<Member>,
    /// `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Profiles, and the presence of those the user may see it of.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct UsersResult {
    pub users: Vec<User>,
    pub presence: Vec<Presence>,
}

/// A user this user blocks.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Block {
    pub user_id: String,
    pub created_at_ms: Option<i64>,
}

impl From<v1::Block> for Block {
    fn from(b: v1::Block) -> Self {
        Self {
            created_at_ms: ms(b.created_at.as_ref()),
            user_id: b.user_id,
        }
    }
}

/// A page of the users this user blocks, in user id order.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct BlocksPage {
    pub blocks: Vec<Block>,
    /// `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Changes to the user's own profile; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct ProfileUpdate {
    #[uniffi(default = None)]
    pub name: Option<String>,
    #[uniffi(default = None)]
    pub avatar_url: Option<String>,
    /// A JSON object as text, replacing the profile's `data`.
    #[uniffi(default = None)]
    pub data: Option<String>,
}

/// Changes to a group; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct ConversationUpdate {
    #[uniffi(default = None)]
    pub name: Option<String>,
    #[uniffi(default = None)]
    pub icon_url: Option<String>,
    /// A JSON object as text, replacing the conversation's `data`.
    #[uniffi(default = None)]
    pub data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Conversation {
    pub id: String,
    /// `direct` or `group`.
    pub kind: String,
    pub name: String,
    pub icon_url: String,
    pub data: Option<String>,
    pub created_at_ms: Option<i64>,
    pub last_seq: u64,
    pub last_message: Option<Message>,
    pub unread_count: u64,
    pub last_read_seq: u64,
    pub role: String,
    pub muted: bool,
    pub member_count: u32,
    pub peer: Option<User>,
    pub peer_presence: Option<Presence>,
    pub cleared_seq: u64,
    pub hidden: bool,
}

impl From<v1::Conversation> for Conversation {
    fn from(c: v1::Conversation) -> Self {
        Self {
            data: json(c.data.as_ref()),
            created_at_ms: ms(c.created_at.as_ref()),
            last_message: c.last_message.map(Into::into),
            peer: c.peer.map(Into::into),
            peer_presence: c.peer_presence.map(Into::into),
            id: c.id,
            kind: c.kind,
            name: c.name,
            icon_url: c.icon_url,
            last_seq: c.last_seq,
            unread_count: c.unread_count,
            last_read_seq: c.last_read_seq,
            role: c.role,
            muted: c.muted,
            member_count: c.member_count,
            cleared_seq: c.cleared_seq,
            hidden: c.hidden,
        }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Notification {
    pub id: String,
    /// A JSON object, as text.
    pub payload: Option<String>,
    pub created_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
}

/// A page of history, ascending by seq.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    /// More messages exist in the requested direction.
    pub more: bool,
}

/// A page of conversations, latest activity first.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConversationsPage {
    pub conversations: Vec<Conversation>,
    /// Empty on the last page.
    pub next_cursor: String,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ReadResult {
    pub last_read_seq: u64,
    pub unread_count: u64,
}

/// What a subscription starts with: the conversation, its members' presence and
/// who is typing. Changes then arrive as events.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SubscriptionSnapshot {
    pub conversation: Option<Conversation>,
    pub presence: Vec<Presence>,
    pub typing: Vec<String>,
}

impl From<v1::SubscribeResult> for SubscriptionSnapshot {
    fn from(s: v1::SubscribeResult) -> Self {
        Self {
            conversation: s.conversation.map(Into::into),
            presence: s.presence.into_iter().map(Into::into).collect(),
            typing: s.typing,
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewMessage {
    pub conversation_id: String,
    pub text: String,
    /// A JSON object, as text.
    #[uniffi(default = None)]
    pub data: Option<String>,
    /// The idempotency key; made for you when `None`.
    #[uniffi(default = None)]
    pub client_id: Option<String>,
    #[uniffi(default = None)]
    pub reply_to: Option<u64>,
    /// Uploads to attach (at most 10): the message waits for those this
    /// client is still sending.
    #[uniffi(default = [])]
    pub attachment_ids: Vec<String>,
}

/// A group to create.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewGroup {
    pub name: String,
    /// The other members.
    pub members: Vec<String>,
    #[uniffi(default = None)]
    pub icon_url: Option<String>,
    #[uniffi(default = None)]
    pub data: Option<String>,
}

/// Something that happened, delivered to the listener one at a time, in order.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum ClientEvent {
    StateChanged {
        old: ConnectionState,
        new: ConnectionState,
        code: u16,
        reason: String,
    },
    /// A new message: once per seq, in seq order per conversation.
    MessageReceived {
        message: Message,
    },
    /// Edited, deleted, or its reactions changed (`change` says which).
    MessageUpdated {
        message: Message,
        change: String,
    },
    Typing {
        conversation_id: String,
        user_id: String,
        typing: bool,
    },
    ReadUpdated {
        conversation_id: String,
        user_id: String,
        last_read_seq: u64,
        unread_count: u64,
    },
    PresenceChanged {
        presence: Presence,
    },
    MemberJoined {
        conversation_id: String,
        member: Option<Member>,
        user: Option<User>,
        conversation: Option<Conversation>,
    },
    MemberLeft {
        conversation_id: String,
        user_id: String,
        removed: bool,
    },
    ConversationUpdated {
        conversation: Conversation,
    },
    SubscriptionChanged {
        conversation_id: String,
        old: SubscriptionState,
        new: SubscriptionState,
        /// Why the subscription failed, when it did: the error every call uses.
        error: Option<MkondoError>,
    },
    NotificationReceived {
        notification: Notification,
    },
    SignalReceived {
        conversation_id: String,
        from_user_id: String,
        payload: String,
    },
    /// Messages `from_seq..=to_seq` could not be recovered: an explicit hole.
    Gap {
        conversation_id: String,
        from_seq: u64,
        to_seq: u64,
    },
    /// Something failed that no call waited for (e.g. a token refresh).
    Failed {
        code: String,
        detail: String,
        reason: String,
        temporary: bool,
    },
    /// A message written in an earlier run (kept by the offline store) and
    /// sent in this one: its outcome, once, by its `client_id` (the call that
    /// wrote it is gone).
    Sent {
        client_id: String,
        message: Option<Message>,
        error: Option<MkondoError>,
    },
}

impl ClientEvent {
    /// `None` for events this version of the bindings does not know.
    pub(crate) fn from_core(e: Event) -> Option<Self> {
        Some(match e {
            Event::StateChanged {
                old,
                new,
                code,
                reason,
            } => Self::StateChanged {
                old: old.into(),
                new: new.into(),
                code,
                reason,
            },
            Event::Message(m) => Self::MessageReceived { message: m.into() },
            Event::MessageUpdated { message, change } => Self::MessageUpdated {
                message: message.into(),
                change,
            },
            Event::Typing {
                conversation_id,
                user_id,
                typing,
            } => Self::Typing {
                conversation_id,
                user_id,
                typing,
            },
            Event::Read(r) => Self::ReadUpdated {
                conversation_id: r.conversation_id,
                user_id: r.user_id,
                last_read_seq: r.last_read_seq,
                unread_count: r.unread_count,
            },
            Event::Presence(p) => Self::PresenceChanged { presence: p.into() },
            Event::MemberJoined(j) => Self::MemberJoined {
                conversation_id: j.conversation_id,
                member: j.member.map(Into::into),
                user: j.user.map(Into::into),
                conversation: j.conversation.map(Into::into),
            },
            Event::MemberLeft(l) => Self::MemberLeft {
                conversation_id: l.conversation_id,
                user_id: l.user_id,
                removed: l.removed,
            },
            Event::ConversationUpdated(c) => Self::ConversationUpdated {
                conversation: c.into(),
            },
            Event::SubscriptionStateChanged {
                conversation_id,
                old,
                new,
                error,
            } => Self::SubscriptionChanged {
                conversation_id,
                old: old.into(),
                new: new.into(),
                error: error.map(Into::into),
            },
            Event::Notification(n) => Self::NotificationReceived {
                notification: Notification {
                    payload: json(n.payload.as_ref()),
                    created_at_ms: ms(n.created_at.as_ref()),
                    expires_at_ms: ms(n.expires_at.as_ref()),
                    id: n.id,
                },
            },
            Event::Signal(s) => Self::SignalReceived {
                conversation_id: s.conversation_id,
                from_user_id: s.from_user_id,
                payload: s.payload,
            },
            Event::Gap {
                conversation_id,
                from_seq,
                to_seq,
            } => Self::Gap {
                conversation_id,
                from_seq,
                to_seq,
            },
            Event::Error(e) => Self::Failed {
                code: e.code().as_str().to_owned(),
                detail: e.to_string(),
                reason: e.reason().to_owned(),
                temporary: e.temporary(),
            },
            Event::Sent { client_id, result } => {
                let (message, error) = match result {
                    Ok(m) => (Some(m.into()), None),
                    Err(e) => (None, Some(e.into())),
                };
                Self::Sent {
                    client_id,
                    message,
                    error,
                }
            }
            _ => return None,
        })
    }
}

/// A device's push credential, as the platform hands it over.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PushCredential {
    /// An APNs device token (hex) from `didRegisterForRemoteNotificationsWithDeviceToken`.
    /// `topic`: the bundle id (`None`: the one set on the server); `sandbox`: a
    /// development build.
    Apns {
        token: String,
        topic: Option<String>,
        sandbox: bool,
    },
    /// A PushKit (VoIP) token, for call invitations sent over `signal`.
    ApnsVoip {
        token: String,
        topic: Option<String>,
        sandbox: bool,
    },
    /// An FCM registration token (`onNewToken`).
    Fcm { token: String },
    /// A Web Push subscription (endpoint and its base64url keys).
    WebPush {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
}

impl From<PushCredential> for mkondo_sdk::PushCredential {
    fn from(c: PushCredential) -> Self {
        match c {
            PushCredential::Apns {
                token,
                topic,
                sandbox,
            } => Self::Apns {
                token,
                topic,
                sandbox,
            },
            PushCredential::ApnsVoip {
                token,
                topic,
                sandbox,
            } => Self::ApnsVoip {
                token,
                topic,
                sandbox,
            },
            PushCredential::Fcm { token } => Self::Fcm { token },
            PushCredential::WebPush {
                endpoint,
                p256dh,
                auth,
            } => Self::WebPush {
                endpoint,
                p256dh,
                auth,
            },
        }
    }
}

/// A registered push device.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Device {
    /// `dev_` and a ULID.
    pub id: String,
    /// `apns`, `apns_voip`, `fcm` or `webpush`.
    pub provider: String,
    pub token: String,
    pub topic: String,
    pub sandbox: bool,
    pub created_at_ms: Option<i64>,
    pub updated_at_ms: Option<i64>,
}

impl From<v1::Device> for Device {
    fn from(d: v1::Device) -> Self {
        Self {
            created_at_ms: ms(d.created_at.as_ref()),
            updated_at_ms: ms(d.updated_at.as_ref()),
            id: d.id,
            provider: d.provider,
            token: d.token,
            topic: d.topic,
            sandbox: d.sandbox,
        }
    }
}
