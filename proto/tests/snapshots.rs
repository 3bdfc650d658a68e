//! The JSON form of every frame, pinned: a change to the wire format shows up as a
//! snapshot diff in review. `docs/protocol.md` quotes these snapshots as its
//! examples. Each frame also round-trips through both encodings of the codec.
//!
//! Maps (`resume`, `Struct` data) are HashMaps whose order varies between runs,
//! so the snapshots sort map keys; message fields keep their schema order.

use std::collections::HashMap;

use mkondo_proto::codec::{decode_batch, encode, Encoding};
use mkondo_proto::convert::{json_to_struct, millis_to_timestamp};
use mkondo_proto::pbjson_types::{Struct, Timestamp};
use mkondo_proto::v1::{
    client_frame::Command, push, reply, server_frame::Body, AckNotificationRequest,
    AddMembersRequest, AppStateRequest, BlockRequest, ClientFrame, ConnectRequest, ConnectResult,
    Conversation, ConversationResult, ConversationUpdated, ConversationsRequest,
    ConversationsResult, CreateGroupRequest, DeleteRequest, Disconnect, EditRequest, Error,
    HideRequest, HistoryRequest, HistoryResult, LeaveRequest, Limits, Member, MemberJoined,
    MemberLeft, Message, MessageResult, MessageUpdated, Notification, PingRequest, Pong,
    PongResult, Presence, PresenceRequest, PresenceResult, Push, ReactRequest, Reaction, ReadPush,
    ReadRequest, ReadResult, Recovery, RefreshRequest, RefreshResult, RemoveMemberRequest, Reply,
    SendRequest, SendResult, ServerFrame, ServerPing, SignalPush, SignalRequest,
    StartDirectRequest, SubscribeRequest, SubscribeResult, TypingPush, TypingRequest,
    UnsubscribeRequest, User,
};
use mkondo_proto::v1::{
    Attachment, AttachmentUrl, AttachmentUrlsRequest, AttachmentUrlsResult, CreateUploadRequest,
    UploadResult,
};
use mkondo_proto::v1::{
    Block, BlocksRequest, BlocksResult, ConversationUpdateRequest, DeleteConversationRequest,
    MemberResult, MembersRequest, MembersResult, SearchUsersRequest, SetRoleRequest, UnreadRequest,
    UnreadResult, UpdateProfileRequest, UserResult, UsersRequest, UsersResult,
};
use mkondo_proto::v1::{
    Device, DeviceResult, DevicesRequest, DevicesResult, DoNotDisturbRequest, DoNotDisturbResult,
    MuteRequest, RegisterDeviceRequest, UnregisterDeviceRequest,
};
use mkondo_proto::DisconnectCode;
use serde_json::json;

// ---------------------------------------------------------------------------
// Fixtures: one small world, at a fixed time.

/// 2025-05-14T09:30:00Z.
const NOW_MS: i64 = 1_747_215_000_000;
const GROUP: &str = "launch-team";
const DIRECT: &str = "01JV5E3K8Q2W7N4R6T9Y1B3D5F";
const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsyMDI1In0.eyJzdWIiOiJhbGljZSIsImFwcCI6ImFjbWUiLCJleHAiOjE3NDcyMTg2MDB9.2yQ3o8m1xVf0bqS3kQpX7c9Lw1hB6nY5tZ4rE8uJ0aA";

/// A time `seconds` after [`NOW_MS`] (negative: before).
fn at(seconds: i64) -> Option<Timestamp> {
    Some(millis_to_timestamp(NOW_MS + seconds * 1000))
}

fn data(json: serde_json::Value) -> Option<Struct> {
    Some(json_to_struct(&json).unwrap())
}

fn alice() -> User {
    User {
        id: "alice".into(),
        name: "Alice Mwangi".into(),
        avatar_url: "https://cdn.example.com/avatars/alice.png".into(),
        data: data(json!({"team": "mobile"})),
        created_at: at(-86_400 * 90),
        updated_at: at(-86_400 * 2),
        deactivated: false,
    }
}

fn bob() -> User {
    User {
        id: "bob".into(),
        name: "Bob Otieno".into(),
        avatar_url: "https://cdn.example.com/avatars/bob.png".into(),
        data: None,
        created_at: at(-86_400 * 60),
        updated_at: at(-86_400 * 60),
        deactivated: false,
    }
}

fn message(seq: u64, sender: &str, text: &str) -> Message {
    Message {
        id: format!("01JV5F0A9X{seq:016}"),
        conversation_id: GROUP.into(),
        seq,
        sender_id: sender.into(),
        kind: "user".into(),
        text: text.into(),
        created_at: at(-600 + seq as i64),
        ..Default::default()
    }
}

fn photo_message() -> Message {
    Message {
        data: data(json!({
            "attachments": [{
                "kind": "image",
                "url": "https://cdn.example.com/uploads/rollout.png",
                "width": 1280,
                "height": 720
            }]
        })),
        client_id: "c-7f3a9e21".into(),
        reply_to: 41,
        ..message(43, "alice", "Here is the rollout plan")
    }
}

fn edited_message() -> Message {
    Message {
        text: "Rollout starts Thursday at 10:00".into(),
        edited_at: at(-30),
        reactions: vec![Reaction {
            emoji: "👍".into(),
            user_ids: vec!["bob".into(), "carol".into()],
        }],
        ..message(42, "alice", "")
    }
}

fn online(user: &str) -> Presence {
    Presence {
        user_id: user.into(),
        status: "online".into(),
        last_seen: None,
    }
}

fn offline(user: &str, seconds_ago: i64) -> Presence {
    Presence {
        user_id: user.into(),
        status: "offline".into(),
        last_seen: at(-seconds_ago),
    }
}

fn group() -> Conversation {
    Conversation {
        id: GROUP.into(),
        kind: "group".into(),
        name: "Launch team".into(),
        icon_url: "https://cdn.example.com/icons/rocket.png".into(),
        data: data(json!({"project": "v2"})),
        created_at: at(-86_400 * 30),
        last_seq: 43,
        last_message: Some(photo_message()),
        unread_count: 2,
        last_read_seq: 41,
        role: "owner".into(),
        muted: false,
        member_count: 3,
        peer: None,
        peer_presence: None,
        cleared_seq: 0,
        hidden: false,
    }
}

fn direct() -> Conversation {
    Conversation {
        id: DIRECT.into(),
        kind: "direct".into(),
        created_at: at(-86_400 * 7),
        last_seq: 7,
        last_message: Some(Message {
            conversation_id: DIRECT.into(),
            ..message(7, "bob", "See you at standup")
        }),
        unread_count: 0,
        last_read_seq: 7,
        role: "member".into(),
        member_count: 2,
        peer: Some(bob()),
        peer_presence: Some(online("bob")),
        ..Default::default()
    }
}

fn notification() -> Notification {
    Notification {
        id: "01JV5D7T2H6M0P4S8V1X3Z5B7C".into(),
        payload: data(json!({"type": "new_follower", "follower": "dave"})),
        created_at: at(-3600),
        expires_at: at(-3600 + 7 * 86_400),
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// Round-trips `frame` through both encodings, then snapshots its JSON form.
fn check<T>(name: &str, frame: &T)
where
    T: prost::Message + Default + PartialEq + serde::Serialize + serde::de::DeserializeOwned,
{
    for enc in [Encoding::Json, Encoding::Protobuf] {
        let bytes = encode(enc, frame).unwrap();
        let decoded: Vec<T> = decode_batch(enc, &bytes).unwrap();
        assert!(
            decoded.len() == 1 && &decoded[0] == frame,
            "{name} via {enc:?}"
        );
    }
    insta::with_settings!({
        sort_maps => true,
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_json_snapshot!(name, frame);
    });
}

fn client(name: &str, id: u32, command: Command) {
    check(
        name,
        &ClientFrame {
            id,
            command: Some(command),
        },
    );
}

fn reply(name: &str, id: u32, result: reply::Result) {
    let body = Body::Reply(Reply {
        result: Some(result),
    });
    check(
        name,
        &ServerFrame {
            id,
            body: Some(body),
        },
    );
}

fn push(name: &str, push: push::Push) {
    let body = Body::Push(Push { push: Some(push) });
    check(
        name,
        &ServerFrame {
            id: 0,
            body: Some(body),
        },
    );
}

// ---------------------------------------------------------------------------
// Client → server

#[test]
fn client_connect() {
    client(
        "client_connect",
        1,
        Command::Connect(ConnectRequest {
            token: TOKEN.into(),
            app_state: "foreground".into(),
            resume: HashMap::from([(GROUP.into(), 41), (DIRECT.into(), 7)]),
            conversations_limit: 10,
        }),
    );
}

#[test]
fn client_refresh() {
    client(
        "client_refresh",
        2,
        Command::Refresh(RefreshRequest {
            token: TOKEN.into(),
        }),
    );
}

#[test]
fn client_subscribe() {
    client(
        "client_subscribe",
        3,
        Command::Subscribe(SubscribeRequest {
            conversation_id: GROUP.into(),
        }),
    );
}

#[test]
fn client_unsubscribe() {
    client(
        "client_unsubscribe",
        4,
        Command::Unsubscribe(UnsubscribeRequest {
            conversation_id: GROUP.into(),
        }),
    );
}

#[test]
fn client_send() {
    let m = photo_message();
    client(
        "client_send",
        5,
        Command::Send(SendRequest {
            conversation_id: m.conversation_id,
            text: m.text,
            data: m.data,
            client_id: m.client_id,
            reply_to: m.reply_to,
            attachment_ids: Vec::new(),
        }),
    );
}

#[test]
fn client_edit() {
    client(
        "client_edit",
        6,
        Command::Edit(EditRequest {
            conversation_id: GROUP.into(),
            seq: 42,
            text: "Rollout starts Thursday at 10:00".into(),
            data: None,
        }),
    );
}

#[test]
fn client_delete() {
    client(
        "client_delete",
        7,
        Command::Delete(DeleteRequest {
            conversation_id: GROUP.into(),
            seq: 42,
        }),
    );
}

fn reaction() -> ReactRequest {
    ReactRequest {
        conversation_id: GROUP.into(),
        seq: 42,
        emoji: "👍".into(),
    }
}

#[test]
fn client_react() {
    client("client_react", 8, Command::React(reaction()));
}

#[test]
fn client_unreact() {
    client("client_unreact", 9, Command::Unreact(reaction()));
}

#[test]
fn client_typing() {
    client(
        "client_typing",
        10,
        Command::Typing(TypingRequest {
            conversation_id: GROUP.into(),
            stop: false,
        }),
    );
    client(
        "client_typing_stop",
        11,
        Command::Typing(TypingRequest {
            conversation_id: GROUP.into(),
            stop: true,
        }),
    );
}

#[test]
fn client_read() {
    client(
        "client_read",
        12,
        Command::Read(ReadRequest {
            conversation_id: GROUP.into(),
            seq: 43,
        }),
    );
}

#[test]
fn client_history() {
    client(
        "client_history",
        13,
        Command::History(HistoryRequest {
            conversation_id: GROUP.into(),
            before: 42,
            after: 0,
            limit: 2,
        }),
    );
}

#[test]
fn client_conversations() {
    client(
        "client_conversations",
        14,
        Command::Conversations(ConversationsRequest {
            cursor: "MTc0NzIxNDQwMDAwMDpsYXVuY2gtdGVhbQ".into(),
            limit: 20,
        }),
    );
}

#[test]
fn client_create_group() {
    client(
        "client_create_group",
        15,
        Command::CreateGroup(CreateGroupRequest {
            id: String::new(),
            name: "Design review".into(),
            icon_url: String::new(),
            data: data(json!({"project": "v2"})),
            members: vec!["bob".into(), "carol".into()],
        }),
    );
}

#[test]
fn client_start_direct() {
    client(
        "client_start_direct",
        16,
        Command::StartDirect(StartDirectRequest {
            user_id: "bob".into(),
        }),
    );
}

#[test]
fn client_add_members() {
    client(
        "client_add_members",
        17,
        Command::AddMembers(AddMembersRequest {
            conversation_id: GROUP.into(),
            user_ids: vec!["dave".into(), "erin".into()],
        }),
    );
}

#[test]
fn client_remove_member() {
    client(
        "client_remove_member",
        18,
        Command::RemoveMember(RemoveMemberRequest {
            conversation_id: GROUP.into(),
            user_id: "erin".into(),
        }),
    );
}

#[test]
fn client_leave() {
    client(
        "client_leave",
        19,
        Command::Leave(LeaveRequest {
            conversation_id: GROUP.into(),
        }),
    );
}

#[test]
fn client_hide() {
    client(
        "client_hide",
        20,
        Command::Hide(HideRequest {
            conversation_id: DIRECT.into(),
        }),
    );
}

#[test]
fn client_presence() {
    client(
        "client_presence",
        21,
        Command::Presence(PresenceRequest {
            user_ids: vec!["bob".into(), "carol".into()],
        }),
    );
}

#[test]
fn client_app_state() {
    client(
        "client_app_state",
        22,
        Command::AppState(AppStateRequest {
            state: "background".into(),
        }),
    );
}

#[test]
fn client_block() {
    client(
        "client_block",
        23,
        Command::Block(BlockRequest {
            user_id: "mallory".into(),
        }),
    );
}

#[test]
fn client_unblock() {
    client(
        "client_unblock",
        24,
        Command::Unblock(BlockRequest {
            user_id: "mallory".into(),
        }),
    );
}

#[test]
fn client_signal() {
    client(
        "client_signal",
        25,
        Command::Signal(SignalRequest {
            conversation_id: DIRECT.into(),
            to_user_id: "bob".into(),
            payload: r#"{"type":"offer","sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n..."}"#
                .into(),
            // A call invitation: a VoIP push too, if the callee is not in the foreground.
            ring: true,
        }),
    );
}

#[test]
fn client_ack_notification() {
    client(
        "client_ack_notification",
        26,
        Command::AckNotification(AckNotificationRequest {
            notification_id: notification().id,
        }),
    );
}

const FCM_TOKEN: &str = "dQw4w9WgXcQ:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx";

#[test]
fn client_register_device() {
    client(
        "client_register_device",
        45,
        Command::RegisterDevice(RegisterDeviceRequest {
            provider: "fcm".into(),
            token: FCM_TOKEN.into(),
            ..Default::default()
        }),
    );
}

#[test]
fn client_unregister_device() {
    client(
        "client_unregister_device",
        46,
        Command::UnregisterDevice(UnregisterDeviceRequest {
            device: FCM_TOKEN.into(),
        }),
    );
}

#[test]
fn client_devices() {
    client("client_devices", 47, Command::Devices(DevicesRequest {}));
}

#[test]
fn client_mute() {
    client(
        "client_mute",
        48,
        Command::Mute(MuteRequest {
            conversation_id: GROUP.into(),
            muted: true,
        }),
    );
}

#[test]
fn client_do_not_disturb() {
    client(
        "client_do_not_disturb",
        49,
        Command::DoNotDisturb(DoNotDisturbRequest {
            until: at(8 * 3600),
        }),
    );
}

#[test]
fn client_members() {
    client(
        "client_members",
        29,
        Command::Members(MembersRequest {
            conversation_id: GROUP.into(),
            cursor: String::new(),
            limit: 2,
        }),
    );
}

#[test]
fn client_users() {
    client(
        "client_users",
        30,
        Command::Users(UsersRequest {
            user_ids: vec!["alice".into(), "bob".into()],
        }),
    );
}

#[test]
fn client_search_users() {
    client(
        "client_search_users",
        31,
        Command::SearchUsers(SearchUsersRequest {
            query: "kam".into(),
            limit: 20,
        }),
    );
}

#[test]
fn client_update_profile() {
    client(
        "client_update_profile",
        32,
        Command::UpdateProfile(UpdateProfileRequest {
            name: Some("Alice W. Mwangi".into()),
            avatar_url: None,
            data: data(json!({"team": "web"})),
        }),
    );
}

#[test]
fn client_update_conversation() {
    client(
        "client_update_conversation",
        33,
        Command::UpdateConversation(ConversationUpdateRequest {
            conversation_id: GROUP.into(),
            name: Some("Launch crew".into()),
            icon_url: None,
            data: None,
        }),
    );
}

#[test]
fn client_set_role() {
    client(
        "client_set_role",
        34,
        Command::SetRole(SetRoleRequest {
            conversation_id: GROUP.into(),
            user_id: "bob".into(),
            role: "admin".into(),
        }),
    );
}

#[test]
fn client_delete_conversation() {
    client(
        "client_delete_conversation",
        35,
        Command::DeleteConversation(DeleteConversationRequest {
            conversation_id: GROUP.into(),
        }),
    );
}

#[test]
fn client_blocks() {
    client(
        "client_blocks",
        36,
        Command::Blocks(BlocksRequest {
            cursor: String::new(),
            limit: 0,
        }),
    );
}

#[test]
fn client_unread() {
    client("client_unread", 37, Command::Unread(UnreadRequest {}));
}

#[test]
fn client_ping() {
    client("client_ping", 27, Command::Ping(PingRequest {}));
}

#[test]
fn client_pong() {
    client("client_pong", 0, Command::Pong(Pong {}));
}

// ---------------------------------------------------------------------------
// Server → client: replies

#[test]
fn reply_ok() {
    reply("reply_ok", 4, reply::Result::Ok(mkondo_proto::v1::Ok {}));
}

#[test]
fn reply_connect() {
    reply(
        "reply_connect",
        1,
        reply::Result::Connect(ConnectResult {
            user: Some(alice()),
            conversations: vec![group(), direct()],
            notifications: vec![notification()],
            token_expires_at: at(3600),
            limits: Some(Limits {
                max_frame_bytes: 65_536,
                rate_per_second: 20,
                rate_burst: 50,
                ping_interval_ms: 25_000,
                pong_timeout_ms: 10_000,
                replay_limit: 100,
                max_text_bytes: 16_384,
                max_upload_bytes: 26_214_400,
            }),
            recovered: vec![
                Recovery {
                    conversation_id: GROUP.into(),
                    messages: vec![edited_message(), photo_message()],
                    more: false,
                    last_seq: 43,
                },
                Recovery {
                    conversation_id: DIRECT.into(),
                    messages: vec![],
                    more: false,
                    last_seq: 7,
                },
            ],
            session_id: "01JV5F2B7C9D1E3F5G7H9J1K3M".into(),
        }),
    );
}

#[test]
fn reply_refresh() {
    reply(
        "reply_refresh",
        2,
        reply::Result::Refresh(RefreshResult {
            token_expires_at: at(2 * 3600),
        }),
    );
}

#[test]
fn reply_subscribe() {
    reply(
        "reply_subscribe",
        3,
        reply::Result::Subscribe(SubscribeResult {
            conversation: Some(Conversation {
                last_message: None,
                ..group()
            }),
            presence: vec![online("bob"), offline("carol", 1800)],
            typing: vec!["bob".into()],
        }),
    );
}

#[test]
fn reply_send() {
    reply(
        "reply_send",
        5,
        reply::Result::Send(SendResult {
            message: Some(photo_message()),
            duplicate: false,
        }),
    );
    reply(
        "reply_send_duplicate",
        5,
        reply::Result::Send(SendResult {
            message: Some(photo_message()),
            duplicate: true,
        }),
    );
}

#[test]
fn reply_message() {
    reply(
        "reply_message",
        6,
        reply::Result::Message(MessageResult {
            message: Some(edited_message()),
        }),
    );
}

#[test]
fn reply_history() {
    reply(
        "reply_history",
        13,
        reply::Result::History(HistoryResult {
            messages: vec![
                message(40, "bob", "Is the build green?"),
                message(41, "carol", "Green since this morning"),
            ],
            more: true,
        }),
    );
}

#[test]
fn reply_conversations() {
    reply(
        "reply_conversations",
        14,
        reply::Result::Conversations(ConversationsResult {
            conversations: vec![direct()],
            next_cursor: "MTc0NjYxMDIwMDAwMDowMUpWNUUzSzhRMlc3TjRSNlQ5WTFCM0Q1Rg".into(),
        }),
    );
}

#[test]
fn reply_conversation() {
    reply(
        "reply_conversation",
        15,
        reply::Result::Conversation(ConversationResult {
            conversation: Some(Conversation {
                id: "01JV5F3C8D0E2F4G6H8J0K2M4N".into(),
                kind: "group".into(),
                name: "Design review".into(),
                data: data(json!({"project": "v2"})),
                created_at: at(0),
                last_seq: 1,
                last_message: Some(Message {
                    id: "01JV5F3C8D0E2F4G6H8J0K2M4P".into(),
                    conversation_id: "01JV5F3C8D0E2F4G6H8J0K2M4N".into(),
                    seq: 1,
                    sender_id: "alice".into(),
                    kind: "system".into(),
                    text: "Alice Mwangi created the group".into(),
                    data: data(json!({"event": "created"})),
                    created_at: at(0),
                    ..Default::default()
                }),
                last_read_seq: 1,
                role: "owner".into(),
                member_count: 3,
                ..Default::default()
            }),
        }),
    );
}

#[test]
fn reply_presence() {
    reply(
        "reply_presence",
        21,
        reply::Result::Presence(PresenceResult {
            presence: vec![online("bob"), offline("carol", 1800)],
        }),
    );
}

#[test]
fn reply_device() {
    reply(
        "reply_device",
        45,
        reply::Result::Device(DeviceResult {
            device: Some(Device {
                id: "dev_01JV5D7T2H6M0P4S8V1X3Z5B7C".into(),
                provider: "fcm".into(),
                token: FCM_TOKEN.into(),
                created_at: at(0),
                updated_at: at(0),
                ..Default::default()
            }),
        }),
    );
}

#[test]
fn reply_devices() {
    reply(
        "reply_devices",
        47,
        reply::Result::Devices(DevicesResult {
            devices: vec![Device {
                id: "dev_01JV5D7T2H6M0P4S8V1X3Z5B7C".into(),
                provider: "webpush".into(),
                token: "https://push.example.net/send/abc".into(),
                p256dh: "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM".into(),
                auth: "tBHItJI5svbpez7KI4CCXg".into(),
                created_at: at(0),
                updated_at: at(0),
                ..Default::default()
            }],
            web_push_key: "BDd3_hVL9fZi9Ybo2UUzA284WG5FZR30_95YeZJsiApwXKpNcF1rRPF3foIiBHXRdJI2Qhumhf6_LFTeZaNndIo".into(),
        }),
    );
}

#[test]
fn reply_do_not_disturb() {
    reply(
        "reply_do_not_disturb",
        49,
        reply::Result::DoNotDisturb(DoNotDisturbResult {
            until: at(8 * 3600),
        }),
    );
}

#[test]
fn reply_read() {
    reply(
        "reply_read",
        12,
        reply::Result::Read(ReadResult {
            last_read_seq: 43,
            unread_count: 0,
        }),
    );
}

fn bob_member(role: &str) -> Member {
    Member {
        user_id: "bob".into(),
        role: role.into(),
        joined_at: at(-86_400 * 30),
        last_read_seq: 41,
        ..Default::default()
    }
}

#[test]
fn reply_members() {
    reply(
        "reply_members",
        29,
        reply::Result::Members(MembersResult {
            members: vec![
                Member {
                    user_id: "alice".into(),
                    role: "owner".into(),
                    joined_at: at(-86_400 * 30),
                    last_read_seq: 42,
                    user: Some(alice()),
                    ..Default::default()
                },
                Member {
                    user: Some(bob()),
                    ..bob_member("member")
                },
            ],
            next_cursor: "WyJib2IiXQ".into(),
        }),
    );
}

#[test]
fn reply_users() {
    reply(
        "reply_users",
        30,
        reply::Result::Users(UsersResult {
            users: vec![alice(), bob()],
            presence: vec![online("alice"), offline("bob", 300)],
        }),
    );
}

#[test]
fn reply_user() {
    let mut updated = alice();
    updated.name = "Alice W. Mwangi".into();
    updated.data = data(json!({"team": "web"}));
    updated.updated_at = at(0);
    reply(
        "reply_user",
        32,
        reply::Result::User(UserResult {
            user: Some(updated),
        }),
    );
}

#[test]
fn reply_member() {
    reply(
        "reply_member",
        34,
        reply::Result::Member(MemberResult {
            member: Some(bob_member("admin")),
        }),
    );
}

#[test]
fn reply_blocks() {
    reply(
        "reply_blocks",
        36,
        reply::Result::Blocks(BlocksResult {
            blocks: vec![Block {
                user_id: "mallory".into(),
                created_at: at(-3600),
            }],
            next_cursor: String::new(),
        }),
    );
}

#[test]
fn reply_unread() {
    reply(
        "reply_unread",
        37,
        reply::Result::Unread(UnreadResult { total: 7 }),
    );
}

#[test]
fn reply_pong() {
    reply("reply_pong", 27, reply::Result::Pong(PongResult {}));
}

#[test]
fn reply_error() {
    check(
        "reply_error_rate_limited",
        &ServerFrame {
            id: 5,
            body: Some(Body::Error(Error {
                code: "rate_limited".into(),
                message: "too many commands: at most 20 per second, bursts of 50".into(),
                temporary: true,
                retry_after_ms: 350,
                reason: String::new(),
            })),
        },
    );
}

// ---------------------------------------------------------------------------
// Server → client: pushes

#[test]
fn push_message() {
    push("push_message", push::Push::Message(photo_message()));
}

const UPLOAD: &str = "upl_01jv5g2b7c4d6e8f0g1h2j3k4m";

#[test]
fn push_message_with_attachments() {
    push(
        "push_message_with_attachments",
        push::Push::Message(Message {
            text: "from the launch".into(),
            attachments: vec![Attachment {
                id: UPLOAD.into(),
                name: "rollout.jpg".into(),
                content_type: "image/jpeg".into(),
                size: 482_113,
                width: 1280,
                height: 720,
                thumbnail: true,
                blurhash: "LEHV6nWB2yk8pyo0adR*.7kCMdnj".into(),
            }],
            ..message(14, "alice", "")
        }),
    );
}

#[test]
fn client_create_upload() {
    client(
        "client_create_upload",
        55,
        Command::CreateUpload(CreateUploadRequest {
            conversation_id: GROUP.into(),
            name: "rollout.jpg".into(),
            size: 482_113,
            content_type: "image/jpeg".into(),
            upload_id: String::new(),
        }),
    );
}

#[test]
fn reply_upload() {
    reply(
        "reply_upload",
        55,
        reply::Result::Upload(UploadResult {
            id: UPLOAD.into(),
            url: format!(
                "/v1/uploads/appr6v3w7x1y0na/{UPLOAD}?exp=1747218600&sig=3q2-7wAAAAB8hA6p0uO9Xz4D1mFqS2kG5vJtYbNcLeQ"
            ),
            expires_at: at(3600),
            offset: 0,
            size: 482_113,
        }),
    );
}

#[test]
fn client_attachment_urls() {
    client(
        "client_attachment_urls",
        56,
        Command::AttachmentUrls(AttachmentUrlsRequest {
            conversation_id: GROUP.into(),
            attachment_ids: vec![UPLOAD.into()],
        }),
    );
}

#[test]
fn reply_attachment_urls() {
    let link = |tail: &str| {
        format!(
            "/v1/files/appr6v3w7x1y0na/{UPLOAD}{tail}?exp=1747218600&sig=Zk1uWl8tV2c4cUxvN0p2Ykx4YjZkT0pQeVdrcGlNRWQ"
        )
    };
    reply(
        "reply_attachment_urls",
        56,
        reply::Result::AttachmentUrls(AttachmentUrlsResult {
            urls: vec![AttachmentUrl {
                id: UPLOAD.into(),
                url: link(""),
                thumbnail_url: link("/thumbnail"),
            }],
            expires_at: at(3600),
        }),
    );
}

#[test]
fn push_message_updated() {
    push(
        "push_message_updated",
        push::Push::MessageUpdated(MessageUpdated {
            message: Some(edited_message()),
            change: "edited".into(),
        }),
    );
    let tombstone = Message {
        deleted_at: at(0),
        ..message(42, "alice", "")
    };
    push(
        "push_message_deleted",
        push::Push::MessageUpdated(MessageUpdated {
            message: Some(tombstone),
            change: "deleted".into(),
        }),
    );
}

#[test]
fn push_typing() {
    push(
        "push_typing",
        push::Push::Typing(TypingPush {
            conversation_id: GROUP.into(),
            user_id: "bob".into(),
            stop: false,
        }),
    );
}

#[test]
fn push_read() {
    push(
        "push_read",
        push::Push::Read(ReadPush {
            conversation_id: GROUP.into(),
            user_id: "alice".into(),
            last_read_seq: 43,
            unread_count: 0,
        }),
    );
}

#[test]
fn push_presence() {
    push("push_presence", push::Push::Presence(offline("bob", 0)));
}

#[test]
fn push_member_joined() {
    push(
        "push_member_joined",
        push::Push::MemberJoined(MemberJoined {
            conversation_id: GROUP.into(),
            member: Some(Member {
                user_id: "dave".into(),
                role: "member".into(),
                joined_at: at(0),
                last_read_seq: 43,
                cleared_seq: 0,
                muted: false,
                user: None,
            }),
            user: Some(User {
                id: "dave".into(),
                name: "Dave Kamau".into(),
                created_at: at(-86_400),
                updated_at: at(-86_400),
                ..Default::default()
            }),
            conversation: None,
        }),
    );
}

#[test]
fn push_member_left() {
    push(
        "push_member_left",
        push::Push::MemberLeft(MemberLeft {
            conversation_id: GROUP.into(),
            user_id: "erin".into(),
            removed: true,
        }),
    );
}

#[test]
fn push_conversation_updated() {
    push(
        "push_conversation_updated",
        push::Push::ConversationUpdated(ConversationUpdated {
            conversation: Some(Conversation {
                name: "Launch team 🚀".into(),
                last_seq: 44,
                last_message: Some(Message {
                    kind: "system".into(),
                    data: data(json!({"event": "renamed", "name": "Launch team 🚀"})),
                    ..message(44, "alice", "Alice Mwangi renamed the group")
                }),
                unread_count: 0,
                last_read_seq: 44,
                ..group()
            }),
        }),
    );
}

#[test]
fn push_notification() {
    push(
        "push_notification",
        push::Push::Notification(notification()),
    );
}

#[test]
fn push_signal() {
    push(
        "push_signal",
        push::Push::Signal(SignalPush {
            conversation_id: DIRECT.into(),
            from_user_id: "bob".into(),
            payload: r#"{"type":"answer","sdp":"v=0\r\no=- 8296547302846120573 2 IN IP4 127.0.0.1\r\n..."}"#
                .into(),
        }),
    );
}

#[test]
fn push_disconnect() {
    let code = DisconnectCode::Shutdown;
    push(
        "push_disconnect",
        push::Push::Disconnect(Disconnect {
            code: code.code().into(),
            reason: code.reason().into(),
            reconnect: code.reconnect(),
        }),
    );
}

#[test]
fn push_ping() {
    push("push_ping", push::Push::Ping(ServerPing {}));
}
