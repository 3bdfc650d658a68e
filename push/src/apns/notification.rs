//! One APNs push as Apple's "Sending notification requests to APNs" and
//! "Generating a remote notification" define it: the request headers
//! (`apns-topic`, `apns-push-type`, `apns-priority`, `apns-expiration`,
//! `apns-collapse-id`, `apns-id`) and the JSON payload, an `aps` dictionary
//! beside the app's own keys. Everything Apple would refuse for its shape is
//! refused here first, with the field named.

use serde_json::{json, Map, Value};

use crate::answer::random_bytes;
use crate::{Error, Result};

/// The largest payload of an alert or background push (Apple: 4 KB).
pub const MAX_PAYLOAD: usize = 4096;
/// The largest payload of a VoIP push (Apple: 5 KB).
pub const MAX_VOIP_PAYLOAD: usize = 5120;
/// The longest `apns-collapse-id` (Apple: 64 bytes).
pub const MAX_COLLAPSE_ID: usize = 64;

/// `apns-push-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushType {
    /// A notification the user sees.
    Alert,
    /// Wakes the app silently (`content-available`); Apple requires
    /// priority 5 and no alert, badge or sound.
    Background,
    /// A PushKit call invitation; sent to the `<bundle id>.voip` topic.
    Voip,
}

impl PushType {
    pub fn as_str(self) -> &'static str {
        match self {
            PushType::Alert => "alert",
            PushType::Background => "background",
            PushType::Voip => "voip",
        }
    }
}

/// `apns-priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// 10: deliver at once.
    High,
    /// 5: deliver when it suits the device's power.
    Normal,
}

impl Priority {
    pub fn as_u8(self) -> u8 {
        match self {
            Priority::High => 10,
            Priority::Normal => 5,
        }
    }
}

/// `aps.alert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub title: String,
    pub body: String,
}

/// The JSON payload: `aps` and the app's own keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApnsPayload {
    pub alert: Option<Alert>,
    /// The app icon's badge.
    pub badge: Option<u32>,
    /// A sound file's name, or `default`.
    pub sound: Option<String>,
    /// Groups notifications (one thread per conversation).
    pub thread_id: Option<String>,
    /// `mutable-content: 1`: a notification service extension may change
    /// the notification (decrypt or enrich it) before it is shown.
    pub mutable_content: bool,
    /// `content-available: 1`: a background push.
    pub content_available: bool,
    /// Keys beside `aps`, for the app.
    pub custom: Map<String, Value>,
}

impl ApnsPayload {
    /// The payload as sent.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        if self.custom.contains_key("aps") {
            return Err(Error::invalid(
                "payload",
                "a custom key must not be called aps",
            ));
        }
        let mut aps = Map::new();
        if let Some(alert) = &self.alert {
            aps.insert(
                "alert".into(),
                json!({"title": alert.title, "body": alert.body}),
            );
        }
        if let Some(badge) = self.badge {
            aps.insert("badge".into(), badge.into());
        }
        if let Some(sound) = &self.sound {
            aps.insert("sound".into(), sound.as_str().into());
        }
        if let Some(thread) = &self.thread_id {
            aps.insert("thread-id".into(), thread.as_str().into());
        }
        if self.mutable_content {
            aps.insert("mutable-content".into(), 1.into());
        }
        if self.content_available {
            aps.insert("content-available".into(), 1.into());
        }
        let mut root = self.custom.clone();
        root.insert("aps".into(), Value::Object(aps));
        Ok(serde_json::to_vec(&Value::Object(root)).expect("a JSON value serializes"))
    }
}

/// One push to one device.
#[derive(Debug, Clone)]
pub struct ApnsNotification {
    /// The device token the app got from `registerForRemoteNotifications`
    /// (or PushKit for VoIP), in hex.
    pub device_token: String,
    /// The app's bundle id; the topic, with `.voip` added for VoIP pushes.
    pub bundle_id: String,
    pub push_type: PushType,
    /// A UUID that stays the same when the same push is sent again (after a
    /// crash between the provider's answer and the caller's record), so
    /// Apple and the device can tell it is one push. See [`new_apns_id`].
    pub apns_id: String,
    /// `None`: 10 for alert and VoIP pushes, 5 for background ones.
    pub priority: Option<Priority>,
    /// `apns-expiration`: until when (Unix seconds) APNs keeps trying an
    /// offline device; `Some(0)`: try once, keep nothing. `None`: Apple's
    /// default (it stores the push for some time).
    pub expiration: Option<u64>,
    /// `apns-collapse-id`: a later push with the same id replaces this one
    /// on the device (at most [`MAX_COLLAPSE_ID`] bytes).
    pub collapse_id: Option<String>,
    pub payload: ApnsPayload,
}

impl ApnsNotification {
    pub fn new(
        device_token: impl Into<String>,
        bundle_id: impl Into<String>,
        push_type: PushType,
        apns_id: impl Into<String>,
        payload: ApnsPayload,
    ) -> Self {
        ApnsNotification {
            device_token: device_token.into(),
            bundle_id: bundle_id.into(),
            push_type,
            apns_id: apns_id.into(),
            priority: None,
            expiration: None,
            collapse_id: None,
            payload,
        }
    }

    /// `apns-topic`.
    pub fn topic(&self) -> String {
        match self.push_type {
            PushType::Voip => format!("{}.voip", self.bundle_id),
            _ => self.bundle_id.clone(),
        }
    }

    /// `apns-priority` as sent.
    pub fn priority(&self) -> Priority {
        self.priority.unwrap_or(match self.push_type {
            PushType::Background => Priority::Normal,
            PushType::Alert | PushType::Voip => Priority::High,
        })
    }

    /// Checks the push and returns its payload as sent.
    pub fn validate(&self) -> Result<Vec<u8>> {
        validate_device_token(&self.device_token)?;
        validate_bundle_id(&self.bundle_id)?;
        if !is_uuid(&self.apns_id) {
            return Err(Error::invalid(
                "apns-id",
                "must be a UUID (8-4-4-4-12 hex digits)",
            ));
        }
        if let Some(collapse) = &self.collapse_id {
            if collapse.is_empty() || collapse.len() > MAX_COLLAPSE_ID {
                return Err(Error::invalid(
                    "collapse id",
                    format!("must be 1 to {MAX_COLLAPSE_ID} bytes"),
                ));
            }
            if collapse.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "collapse id",
                    "must not hold control characters",
                ));
            }
        }
        if self.push_type == PushType::Background {
            let p = &self.payload;
            if self.priority() != Priority::Normal {
                return Err(Error::invalid(
                    "priority",
                    "a background push must have priority 5",
                ));
            }
            if !p.content_available || p.alert.is_some() || p.badge.is_some() || p.sound.is_some() {
                return Err(Error::invalid(
                    "payload",
                    "a background push needs content-available and no alert, badge or sound",
                ));
            }
        }
        let payload = self.payload.to_json()?;
        let max = match self.push_type {
            PushType::Voip => MAX_VOIP_PAYLOAD,
            PushType::Alert | PushType::Background => MAX_PAYLOAD,
        };
        if payload.len() > max {
            return Err(Error::invalid(
                "payload",
                format!("{} bytes, more than APNs's {max}", payload.len()),
            ));
        }
        Ok(payload)
    }
}

/// Checks an APNs device token: hex, an even number of digits, 64 (today's
/// 32 bytes) to 200 (Apple says the length may grow).
pub fn validate_device_token(token: &str) -> Result<()> {
    let hex = token.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || !token.len().is_multiple_of(2) || !(64..=200).contains(&token.len()) {
        return Err(Error::invalid(
            "device token",
            "an APNs device token is 64 to 200 hex digits",
        ));
    }
    Ok(())
}

/// Checks a bundle id (reverse-DNS: letters, digits, `-` and `.`).
pub fn validate_bundle_id(bundle: &str) -> Result<()> {
    let charset = bundle
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if bundle.is_empty() || bundle.len() > 155 || !charset {
        return Err(Error::invalid(
            "bundle id",
            "letters, digits, '-' and '.', at most 155",
        ));
    }
    Ok(())
}

/// A random (version 4) UUID for `apns-id`. Keep it with the push: a push
/// sent again must carry the same one.
pub fn new_apns_id() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    fn alert() -> ApnsNotification {
        ApnsNotification::new(
            TOKEN,
            "com.example.chat",
            PushType::Alert,
            new_apns_id(),
            ApnsPayload {
                alert: Some(Alert {
                    title: "Ana".into(),
                    body: "hi".into(),
                }),
                badge: Some(3),
                sound: Some("default".into()),
                thread_id: Some("conv-1".into()),
                mutable_content: true,
                custom: [("conversation".to_owned(), json!("conv-1"))]
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn the_payload_has_aps_and_the_custom_keys() {
        let payload: Value = serde_json::from_slice(&alert().validate().unwrap()).unwrap();
        assert_eq!(
            payload,
            json!({
                "aps": {
                    "alert": {"title": "Ana", "body": "hi"},
                    "badge": 3,
                    "sound": "default",
                    "thread-id": "conv-1",
                    "mutable-content": 1
                },
                "conversation": "conv-1"
            })
        );
    }

    #[test]
    fn topic_and_priority_follow_the_push_type() {
        let mut n = alert();
        assert_eq!(n.topic(), "com.example.chat");
        assert_eq!(n.priority(), Priority::High);
        n.push_type = PushType::Voip;
        assert_eq!(n.topic(), "com.example.chat.voip");
        n.push_type = PushType::Background;
        assert_eq!(n.priority(), Priority::Normal);
    }

    #[test]
    fn new_ids_are_version_4_uuids() {
        let id = new_apns_id();
        assert!(is_uuid(&id), "{id}");
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_apns_id(), id);
    }

    #[test]
    fn invalid_pushes_name_their_field() {
        type Change = fn(&mut ApnsNotification);
        let cases: [(Change, &str); 9] = [
            (|n| n.device_token = "xyz".into(), "device token"),
            (|n| n.device_token = "ab".repeat(31), "device token"),
            (|n| n.bundle_id = "com.example/chat".into(), "bundle id"),
            (|n| n.apns_id = "not-a-uuid".into(), "apns-id"),
            (|n| n.collapse_id = Some("c".repeat(65)), "collapse id"),
            (|n| n.collapse_id = Some(String::new()), "collapse id"),
            (
                |n| {
                    n.payload.custom.insert("aps".into(), json!(1));
                },
                "payload",
            ),
            (
                |n| {
                    n.payload
                        .custom
                        .insert("big".into(), json!("x".repeat(4096)))
                        .map_or((), drop)
                },
                "payload",
            ),
            (|n| n.push_type = PushType::Background, "payload"),
        ];
        for (change, field) in cases {
            let mut n = alert();
            change(&mut n);
            match n.validate() {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut n = alert();
        n.collapse_id = Some("c".repeat(64));
        assert!(n.validate().is_ok());
        n.push_type = PushType::Voip;
        n.payload
            .custom
            .insert("big".into(), json!("x".repeat(4500)));
        assert!(n.validate().is_ok(), "VoIP payloads may reach 5 KB");
    }

    #[test]
    fn a_background_push_is_silent_and_low_priority() {
        let mut n = alert();
        n.push_type = PushType::Background;
        n.payload = ApnsPayload {
            content_available: true,
            ..Default::default()
        };
        assert!(n.validate().is_ok());
        n.priority = Some(Priority::High);
        assert!(matches!(
            n.validate(),
            Err(Error::Invalid {
                field: "priority",
                ..
            })
        ));
    }
}
