//! Store records → wire types. The one place where the REST shapes and the
//! real-time shapes meet, so both APIs describe an entity the same way.

use mkondo_proto::convert::{json_to_struct, millis_to_timestamp};
use mkondo_proto::v1;

use crate::engine::presence::UserPresence;
use crate::store::social::{Block, Notification};
use crate::store::{Conversation, Member, Message, Millis, User};

fn ts(m: Millis) -> Option<pbjson_types::Timestamp> {
    Some(millis_to_timestamp(m.0))
}

fn opt_ts(m: Option<Millis>) -> Option<pbjson_types::Timestamp> {
    m.map(|m| millis_to_timestamp(m.0))
}

fn data(value: &serde_json::Value) -> Option<pbjson_types::Struct> {
    match value.as_object() {
        Some(o) if !o.is_empty() => json_to_struct(value).ok(),
        _ => None,
    }
}

pub fn user(u: &User) -> v1::User {
    v1::User {
        id: u.id.clone(),
        name: u.name.clone(),
        avatar_url: u.avatar_url.clone(),
        data: data(&u.data),
        created_at: ts(u.created_at),
        updated_at: ts(u.updated_at),
        deactivated: u.deactivated,
    }
}

pub fn message(m: &Message) -> v1::Message {
    v1::Message {
        id: m.id.clone(),
        conversation_id: m.conversation_id.clone(),
        seq: m.seq as u64,
        sender_id: m.sender_id.clone(),
        kind: m.kind.clone(),
        text: m.text.clone(),
        data: data(&m.data),
        client_id: m.client_id.clone().unwrap_or_default(),
        reply_to: m.reply_to.unwrap_or(0) as u64,
        created_at: ts(m.created_at),
        edited_at: opt_ts(m.edited_at),
        deleted_at: opt_ts(m.deleted_at),
        reactions: m
            .reactions
            .iter()
            .map(|r| v1::Reaction {
                emoji: r.emoji.clone(),
                user_ids: r.user_ids.clone(),
            })
            .collect(),
        attachments: m.attachments.iter().map(attachment).collect(),
    }
}

pub fn attachment(a: &crate::store::files::Attachment) -> v1::Attachment {
    v1::Attachment {
        id: a.id.clone(),
        name: a.name.clone(),
        content_type: a.content_type.clone(),
        size: a.size as u64,
        width: a.width as u32,
        height: a.height as u32,
        thumbnail: a.thumbnail,
        blurhash: a.blurhash.clone(),
    }
}

pub fn attachment_urls(
    links: &[crate::node::files::AttachmentLink],
    expires_at_ms: i64,
) -> v1::AttachmentUrlsResult {
    v1::AttachmentUrlsResult {
        urls: links
            .iter()
            .map(|l| v1::AttachmentUrl {
                id: l.id.clone(),
                url: l.url.clone(),
                thumbnail_url: l.thumbnail_url.clone(),
            })
            .collect(),
        expires_at: ts(Millis(expires_at_ms)),
    }
}

pub fn upload(grant: &crate::node::files::UploadGrant) -> v1::UploadResult {
    v1::UploadResult {
        id: grant.upload.id.clone(),
        url: grant.url.clone(),
        expires_at: ts(Millis(grant.expires_at_ms)),
        offset: grant.offset,
        size: grant.upload.size as u64,
    }
}

pub fn member(m: &Member) -> v1::Member {
    v1::Member {
        user_id: m.user_id.clone(),
        role: m.role.as_str().to_owned(),
        joined_at: ts(m.joined_at),
        last_read_seq: m.last_read_seq as u64,
        cleared_seq: m.cleared_seq as u64,
        muted: m.muted,
        user: None,
    }
}

/// A member with their profile (`members` replies).
pub fn member_with_user(m: &Member, users: &[User]) -> v1::Member {
    v1::Member {
        user: users.iter().find(|u| u.id == m.user_id).map(user),
        ..member(m)
    }
}

pub fn block(b: &Block) -> v1::Block {
    v1::Block {
        user_id: b.user_id.clone(),
        created_at: ts(b.created_at),
    }
}

pub fn presence(p: &UserPresence) -> v1::Presence {
    v1::Presence {
        user_id: p.user_id.clone(),
        status: p.status.as_str().to_owned(),
        last_seen: p.last_seen.map(millis_to_timestamp),
    }
}

/// A conversation as `viewer` sees it; `peer` and `peer_presence` for direct ones.
pub fn conversation(
    c: &Conversation,
    peer: Option<&User>,
    peer_presence: Option<&UserPresence>,
) -> v1::Conversation {
    let viewer = c.viewer.as_ref();
    v1::Conversation {
        id: c.id.clone(),
        kind: c.kind.as_str().to_owned(),
        name: c.name.clone(),
        icon_url: c.icon_url.clone(),
        data: data(&c.data),
        created_at: ts(c.created_at),
        last_seq: c.last_seq as u64,
        last_message: c.last_message.as_ref().map(message),
        unread_count: viewer.map_or(0, |v| v.unread_count as u64),
        last_read_seq: viewer.map_or(0, |v| v.last_read_seq as u64),
        role: viewer
            .map(|v| v.role.as_str().to_owned())
            .unwrap_or_default(),
        muted: viewer.is_some_and(|v| v.muted),
        member_count: c.member_count as u32,
        peer: peer.map(user),
        peer_presence: peer_presence.map(presence),
        cleared_seq: viewer.map_or(0, |v| v.cleared_seq as u64),
        hidden: viewer.is_some_and(|v| v.hidden),
    }
}

pub fn notification(n: &Notification) -> v1::Notification {
    v1::Notification {
        id: n.id.clone(),
        payload: json_to_struct(&n.payload).ok(),
        created_at: ts(n.created_at),
        expires_at: ts(n.expires_at),
    }
}

pub fn device(d: &crate::store::devices::Device) -> v1::Device {
    v1::Device {
        id: d.id.clone(),
        provider: d.provider.clone(),
        token: d.token.clone(),
        p256dh: d.p256dh.clone(),
        auth: d.auth.clone(),
        topic: d.topic.clone(),
        sandbox: d.sandbox,
        created_at: ts(d.created_at),
        updated_at: ts(d.updated_at),
    }
}

pub fn do_not_disturb(until: Option<i64>) -> v1::DoNotDisturbResult {
    v1::DoNotDisturbResult {
        until: until.map(millis_to_timestamp),
    }
}
