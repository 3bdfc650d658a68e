//! One method per call of the protocol (SPEC §4), each returning a typed result.
//! Reads are marked idempotent: sent again after a reconnect within their
//! timeout. Messages, edits, deletes, reactions and read positions go through
//! the outbox: queued while offline, in order. Everything else fails with
//! [`Error::ConnectionLost`] when its connection ends before the reply.

use mkondo_proto::{
    convert::json_to_struct,
    v1::{self, client_frame::Command, reply::Result as Reply},
};

use crate::client::{Call, Client};
use crate::error::{Error, Result};
use crate::session::Call as SessionCall;

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewMessage {
    pub conversation_id: String,
    pub text: String,
    /// A JSON object (attachments' metadata, custom fields).
    pub data: Option<serde_json::Value>,
    /// The idempotency key; a fresh one is made when empty.
    pub client_id: Option<String>,
    /// The seq this message answers.
    pub reply_to: Option<u64>,
    /// Files to attach (at most 10): ids of uploads of this conversation
    /// ([`Client::upload`]). The message waits in the outbox for those this
    /// client is still sending.
    pub attachment_ids: Vec<String>,
}

impl NewMessage {
    pub fn text(conversation_id: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            conversation_id: conversation_id.into(),
            text: text.into(),
            ..Self::default()
        }
    }
}

/// A group to create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewGroup {
    pub name: String,
    pub icon_url: Option<String>,
    pub data: Option<serde_json::Value>,
    /// The other members.
    pub members: Vec<String>,
}

/// Which page of history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Messages before this seq (exclusive).
    pub before: Option<u64>,
    /// Messages after this seq (exclusive).
    pub after: Option<u64>,
    /// At most this many (server default 50, at most 100).
    pub limit: Option<u32>,
}

/// A device's push credential, as its platform hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushCredential {
    /// An APNs device token (hex). `topic`: the app's bundle id (`None`: the
    /// one the app configured on the server); `sandbox`: a development build.
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
    /// A Web Push subscription: `endpoint` and its `p256dh` and `auth` keys
    /// (base64url, as `PushSubscription.toJSON()` gives them).
    WebPush {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
}

impl PushCredential {
    /// The credential itself: what unregisters it.
    pub fn token(&self) -> &str {
        match self {
            Self::Apns { token, .. } | Self::ApnsVoip { token, .. } | Self::Fcm { token } => token,
            Self::WebPush { endpoint, .. } => endpoint,
        }
    }

    fn request(&self) -> v1::RegisterDeviceRequest {
        let apns = |provider: &str, token: &str, topic: &Option<String>, sandbox: bool| {
            v1::RegisterDeviceRequest {
                provider: provider.into(),
                token: token.into(),
                topic: topic.clone().unwrap_or_default(),
                sandbox,
                ..Default::default()
            }
        };
        match self {
            Self::Apns {
                token,
                topic,
                sandbox,
            } => apns("apns", token, topic, *sandbox),
            Self::ApnsVoip {
                token,
                topic,
                sandbox,
            } => apns("apns_voip", token, topic, *sandbox),
            Self::Fcm { token } => v1::RegisterDeviceRequest {
                provider: "fcm".into(),
                token: token.clone(),
                ..Default::default()
            },
            Self::WebPush {
                endpoint,
                p256dh,
                auth,
            } => v1::RegisterDeviceRequest {
                provider: "webpush".into(),
                token: endpoint.clone(),
                p256dh: p256dh.clone(),
                auth: auth.clone(),
                ..Default::default()
            },
        }
    }
}

pub(crate) fn unexpected<T>(reply: Reply) -> Result<T> {
    Err(Error::Server {
        code: mkondo_proto::ErrorCode::Internal,
        message: format!("unexpected reply: {}", crate::error::shown(&reply)),
        temporary: false,
        retry_after: None,
        reason: String::new(),
    })
}

pub(crate) fn ok(reply: Reply) -> Result<()> {
    match reply {
        Reply::Ok(_) => Ok(()),
        other => unexpected(other),
    }
}

fn message(reply: Reply) -> Result<v1::Message> {
    match reply {
        Reply::Message(v1::MessageResult { message: Some(m) }) => Ok(m),
        Reply::Send(v1::SendResult {
            message: Some(m), ..
        }) => Ok(m),
        other => unexpected(other),
    }
}

pub(crate) fn conversation(reply: Reply) -> Result<v1::Conversation> {
    match reply {
        Reply::Conversation(v1::ConversationResult {
            conversation: Some(c),
        }) => Ok(c),
        other => unexpected(other),
    }
}

pub(crate) fn data(value: Option<&serde_json::Value>) -> Result<Option<pbjson_types::Struct>> {
    value
        .map(|v| json_to_struct(v).map_err(|e| Error::InvalidArgument(format!("data: {e}"))))
        .transpose()
}

impl Client {
    pub(crate) fn request<T>(
        &self,
        command: Command,
        idempotent: bool,
        map: fn(Reply) -> Result<T>,
    ) -> Call<T> {
        self.call(
            SessionCall::Request {
                command,
                idempotent,
            },
            map,
        )
    }

    /// A change through the outbox: queued while offline (durable with an
    /// offline store), sent in order, applied once (each sets a value).
    fn queue<T>(&self, command: Command, map: fn(Reply) -> Result<T>) -> Call<T> {
        self.call(SessionCall::Queue(command), map)
    }

    /// Sends a text message (through the outbox); resolves with the stored message.
    pub fn send_text(&self, conversation_id: &str, text: &str) -> Call<v1::Message> {
        self.send_message(NewMessage::text(conversation_id, text))
    }

    /// Sends a message: queued while disconnected, sent in order with its
    /// `client_id`, resolved when the server acknowledges it (exactly once).
    pub fn send_message(&self, msg: NewMessage) -> Call<v1::Message> {
        let data = match data(msg.data.as_ref()) {
            Ok(d) => d,
            Err(e) => return self.failed(e),
        };
        let request = v1::SendRequest {
            conversation_id: msg.conversation_id,
            text: msg.text,
            data,
            client_id: msg.client_id.unwrap_or_default(),
            reply_to: msg.reply_to.unwrap_or(0),
            attachment_ids: msg.attachment_ids,
        };
        self.call(SessionCall::Send(request), message)
    }

    pub fn edit_message(
        &self,
        conversation_id: &str,
        seq: u64,
        text: &str,
        data_json: Option<serde_json::Value>,
    ) -> Call<v1::Message> {
        let data = match data(data_json.as_ref()) {
            Ok(d) => d,
            Err(e) => return self.failed(e),
        };
        let command = Command::Edit(v1::EditRequest {
            conversation_id: conversation_id.into(),
            seq,
            text: text.into(),
            data,
        });
        self.queue(command, message)
    }

    pub fn delete_message(&self, conversation_id: &str, seq: u64) -> Call<v1::Message> {
        let command = Command::Delete(v1::DeleteRequest {
            conversation_id: conversation_id.into(),
            seq,
        });
        self.queue(command, message)
    }

    /// Adds (`add: true`) or removes a reaction.
    pub fn react(
        &self,
        conversation_id: &str,
        seq: u64,
        emoji: &str,
        add: bool,
    ) -> Call<v1::Message> {
        let req = v1::ReactRequest {
            conversation_id: conversation_id.into(),
            seq,
            emoji: emoji.into(),
        };
        let command = if add {
            Command::React(req)
        } else {
            Command::Unreact(req)
        };
        self.queue(command, message)
    }

    /// A page of messages, ascending by seq.
    pub fn history(&self, conversation_id: &str, query: HistoryQuery) -> Call<v1::HistoryResult> {
        let command = Command::History(v1::HistoryRequest {
            conversation_id: conversation_id.into(),
            before: query.before.unwrap_or(0),
            after: query.after.unwrap_or(0),
            limit: query.limit.unwrap_or(0),
        });
        self.request(command, true, |r| match r {
            Reply::History(h) => Ok(h),
            other => unexpected(other),
        })
    }

    /// A page of the user's conversations, latest activity first.
    pub fn conversations(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Call<v1::ConversationsResult> {
        let command = Command::Conversations(v1::ConversationsRequest {
            cursor: cursor.unwrap_or_default().into(),
            limit: limit.unwrap_or(0),
        });
        self.request(command, true, |r| match r {
            Reply::Conversations(c) => Ok(c),
            other => unexpected(other),
        })
    }

    pub fn create_group(&self, group: NewGroup) -> Call<v1::Conversation> {
        let data = match data(group.data.as_ref()) {
            Ok(d) => d,
            Err(e) => return self.failed(e),
        };
        // The server makes the id (only the backend chooses one), so a create
        // resent after a reconnect could make a second group: never resent.
        let command = Command::CreateGroup(v1::CreateGroupRequest {
            id: String::new(),
            name: group.name,
            icon_url: group.icon_url.unwrap_or_default(),
            data,
            members: group.members,
        });
        self.request(command, false, conversation)
    }

    /// The direct conversation with `user_id` (the same one every time).
    pub fn start_direct(&self, user_id: &str) -> Call<v1::Conversation> {
        let command = Command::StartDirect(v1::StartDirectRequest {
            user_id: user_id.into(),
        });
        self.request(command, true, conversation)
    }

    pub fn add_members(&self, conversation_id: &str, user_ids: &[&str]) -> Call<v1::Conversation> {
        let command = Command::AddMembers(v1::AddMembersRequest {
            conversation_id: conversation_id.into(),
            user_ids: user_ids.iter().map(|u| (*u).to_owned()).collect(),
        });
        self.request(command, true, conversation)
    }

    pub fn remove_member(&self, conversation_id: &str, user_id: &str) -> Call<()> {
        let command = Command::RemoveMember(v1::RemoveMemberRequest {
            conversation_id: conversation_id.into(),
            user_id: user_id.into(),
        });
        self.request(command, false, ok)
    }

    pub fn leave(&self, conversation_id: &str) -> Call<()> {
        let command = Command::Leave(v1::LeaveRequest {
            conversation_id: conversation_id.into(),
        });
        self.request(command, false, ok)
    }

    /// "Delete chat" for this user: history up to now is hidden from them.
    pub fn hide(&self, conversation_id: &str) -> Call<()> {
        let command = Command::Hide(v1::HideRequest {
            conversation_id: conversation_id.into(),
        });
        self.request(command, true, ok)
    }

    /// Marks everything up to `seq` read, on every device of the user.
    pub fn mark_read(&self, conversation_id: &str, seq: u64) -> Call<v1::ReadResult> {
        let command = Command::Read(v1::ReadRequest {
            conversation_id: conversation_id.into(),
            seq,
        });
        self.queue(command, |r| match r {
            Reply::Read(r) => Ok(r),
            other => unexpected(other),
        })
    }

    /// The user is typing: call it on every keystroke; at most one `typing` per
    /// 3 s leaves. Never queued offline.
    pub fn typing(&self, conversation_id: &str) -> Call<()> {
        self.typing_call(conversation_id, false)
    }

    /// The user stopped typing (cleared the composer). Sending a message stops it too.
    pub fn typing_stopped(&self, conversation_id: &str) -> Call<()> {
        self.typing_call(conversation_id, true)
    }

    fn typing_call(&self, conversation_id: &str, stop: bool) -> Call<()> {
        let call = SessionCall::Typing {
            conversation_id: conversation_id.into(),
            stop,
        };
        self.call(call, ok)
    }

    /// Adds the conversation's typing and its members' presence to this client,
    /// now and after every reconnect, until `unsubscribe`. Resolves when first
    /// subscribed, with the members' presence and who is typing.
    pub fn subscribe(&self, conversation_id: &str) -> Call<v1::SubscribeResult> {
        self.call(
            SessionCall::Subscribe(conversation_id.into()),
            |r| match r {
                Reply::Subscribe(s) => Ok(s),
                other => unexpected(other),
            },
        )
    }

    pub fn unsubscribe(&self, conversation_id: &str) -> Call<()> {
        self.call(SessionCall::Unsubscribe(conversation_id.into()), ok)
    }

    /// The presence of these users, as far as this user may see it.
    pub fn presence(&self, user_ids: &[&str]) -> Call<Vec<v1::Presence>> {
        let command = Command::Presence(v1::PresenceRequest {
            user_ids: user_ids.iter().map(|u| (*u).to_owned()).collect(),
        });
        self.request(command, true, |r| match r {
            Reply::Presence(p) => Ok(p.presence),
            other => unexpected(other),
        })
    }

    pub fn block(&self, user_id: &str) -> Call<()> {
        let command = Command::Block(v1::BlockRequest {
            user_id: user_id.into(),
        });
        self.request(command, true, ok)
    }

    pub fn unblock(&self, user_id: &str) -> Call<()> {
        let command = Command::Unblock(v1::BlockRequest {
            user_id: user_id.into(),
        });
        self.request(command, true, ok)
    }

    /// Relays an opaque payload (WebRTC set-up) to one member, live only.
    pub fn send_signal(&self, conversation_id: &str, to_user_id: &str, payload: &str) -> Call<()> {
        self.signal(conversation_id, to_user_id, payload, false)
    }

    /// A call invitation: relayed live like [`Client::send_signal`], and, when
    /// none of the recipient's sessions is in the foreground, sent as a VoIP
    /// push to their PushKit devices (with the payload when it is at most
    /// 3 KiB; docs/push.md).
    pub fn ring(&self, conversation_id: &str, to_user_id: &str, payload: &str) -> Call<()> {
        self.signal(conversation_id, to_user_id, payload, true)
    }

    fn signal(
        &self,
        conversation_id: &str,
        to_user_id: &str,
        payload: &str,
        ring: bool,
    ) -> Call<()> {
        let command = Command::Signal(v1::SignalRequest {
            conversation_id: conversation_id.into(),
            to_user_id: to_user_id.into(),
            payload: payload.into(),
            ring,
        });
        self.request(command, false, ok)
    }

    pub fn ack_notification(&self, notification_id: &str) -> Call<()> {
        let command = Command::AckNotification(v1::AckNotificationRequest {
            notification_id: notification_id.into(),
        });
        self.request(command, true, ok)
    }

    /// Registers this device's push credential for the user; call it again
    /// whenever the platform hands over a new one (FCM `onNewToken`,
    /// `pushsubscriptionchange`, a new APNs token). [`Client::sign_out`]
    /// unregisters what was registered through this client.
    pub fn register_device(&self, credential: &PushCredential) -> Call<v1::Device> {
        self.remember_device(credential.token());
        let command = Command::RegisterDevice(credential.request());
        self.request(command, true, |r| match r {
            Reply::Device(v1::DeviceResult { device: Some(d) }) => Ok(d),
            other => unexpected(other),
        })
    }

    /// Removes one of the user's devices, by its id (`dev_…`) or its
    /// credential (the token or Web Push endpoint).
    pub fn unregister_device(&self, device: &str) -> Call<()> {
        self.forget_device(device);
        let command = Command::UnregisterDevice(v1::UnregisterDeviceRequest {
            device: device.into(),
        });
        self.request(command, true, ok)
    }

    /// The user's registered devices, most recently registered first.
    pub fn devices(&self) -> Call<Vec<v1::Device>> {
        self.request(Command::Devices(v1::DevicesRequest {}), true, |r| match r {
            Reply::Devices(d) => Ok(d.devices),
            other => unexpected(other),
        })
    }

    /// The app's VAPID public key (base64url), for
    /// `pushManager.subscribe({applicationServerKey})`; `None` when the app
    /// has not configured Web Push.
    pub fn web_push_key(&self) -> Call<Option<String>> {
        self.request(Command::Devices(v1::DevicesRequest {}), true, |r| match r {
            Reply::Devices(d) => Ok(Some(d.web_push_key).filter(|k| !k.is_empty())),
            other => unexpected(other),
        })
    }

    /// Mutes (or unmutes) a conversation: no push for it, unread still
    /// counted. Every session of the user gets `conversation_updated`.
    pub fn mute(&self, conversation_id: &str, muted: bool) -> Call<v1::Conversation> {
        let command = Command::Mute(v1::MuteRequest {
            conversation_id: conversation_id.into(),
            muted,
        });
        self.request(command, true, conversation)
    }

    /// "Do not disturb until" `until_ms` (milliseconds since the epoch; at
    /// most a year ahead): no push before then. `None` turns it off. Resolves
    /// with the setting now (`None`: off).
    pub fn set_do_not_disturb(&self, until_ms: Option<i64>) -> Call<Option<i64>> {
        let command = Command::DoNotDisturb(v1::DoNotDisturbRequest {
            until: until_ms.map(mkondo_proto::convert::millis_to_timestamp),
        });
        self.request(command, true, |r| match r {
            Reply::DoNotDisturb(d) => Ok(d
                .until
                .as_ref()
                .map(mkondo_proto::convert::timestamp_to_millis)),
            other => unexpected(other),
        })
    }

    /// Asks for an upload (`size` bytes, the declared `content_type`) in a
    /// conversation: where to send the bytes, with a grant. [`Client::upload`]
    /// does this and sends the bytes.
    pub fn create_upload(
        &self,
        conversation_id: &str,
        name: &str,
        size: u64,
        content_type: &str,
    ) -> Call<v1::UploadResult> {
        let command = Command::CreateUpload(v1::CreateUploadRequest {
            conversation_id: conversation_id.into(),
            name: name.into(),
            size,
            content_type: content_type.into(),
            upload_id: String::new(),
        });
        self.request(command, false, upload)
    }

    /// A fresh grant for an upload of the caller's still arriving (after its
    /// grant expired), with the bytes the server holds.
    pub fn resume_upload(&self, conversation_id: &str, upload_id: &str) -> Call<v1::UploadResult> {
        let command = Command::CreateUpload(v1::CreateUploadRequest {
            conversation_id: conversation_id.into(),
            upload_id: upload_id.into(),
            ..Default::default()
        });
        self.request(command, true, upload)
    }

    /// Signed links to read attachments of messages in a conversation (at
    /// most 100), in the order asked; made absolute with the server's URL.
    pub fn attachment_urls(
        &self,
        conversation_id: &str,
        attachment_ids: &[&str],
    ) -> impl std::future::Future<Output = Result<v1::AttachmentUrlsResult>> + 'static {
        let command = Command::AttachmentUrls(v1::AttachmentUrlsRequest {
            conversation_id: conversation_id.into(),
            attachment_ids: attachment_ids.iter().map(|&id| id.into()).collect(),
        });
        let call = self.request(command, true, |r| match r {
            Reply::AttachmentUrls(u) => Ok(u),
            other => unexpected(other),
        });
        let base = self.http_base();
        async move {
            let mut result = call.await?;
            for url in &mut result.urls {
                url.url = crate::uploads::absolute(&base, &url.url);
                if !url.thumbnail_url.is_empty() {
                    url.thumbnail_url = crate::uploads::absolute(&base, &url.thumbnail_url);
                }
            }
            Ok(result)
        }
    }

    /// A round trip to the server.
    pub fn ping(&self) -> Call<()> {
        self.request(Command::Ping(v1::PingRequest {}), true, |r| match r {
            Reply::Pong(_) => Ok(()),
            other => unexpected(other),
        })
    }
}

fn upload(reply: Reply) -> Result<v1::UploadResult> {
    match reply {
        Reply::Upload(u) => Ok(u),
        other => unexpected(other),
    }
}
