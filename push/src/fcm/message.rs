//! One FCM HTTP v1 message (Google's `projects.messages` resource, "Firebase
//! Cloud Messaging HTTP v1 API reference"): a registration token, string
//! `data`, an optional `notification`, the Android options Mkondo uses
//! (`collapse_key`, `priority`, `ttl`) and, verbatim, the `apns` and
//! `webpush` overrides for tokens that reach iOS or browsers through FCM.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::{Error, Result};

/// FCM's largest message payload (`data` and `notification`), 4096 bytes.
pub const MAX_PAYLOAD: usize = 4096;
/// The longest `ttl` FCM keeps a message for: four weeks.
pub const MAX_TTL: Duration = Duration::from_secs(28 * 24 * 3600);
/// The longest registration token taken.
pub const MAX_TOKEN_LEN: usize = 4096;

/// `notification`: what the system shows when the app is in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcmNotification {
    pub title: String,
    pub body: String,
}

/// `android.priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AndroidPriority {
    /// Wakes a sleeping device (chat messages).
    #[default]
    High,
    Normal,
}

/// `android`: the options of delivery to Android devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AndroidConfig {
    /// A later message with the same key replaces this one while it waits.
    pub collapse_key: Option<String>,
    pub priority: AndroidPriority,
    /// How long FCM keeps the message for an offline device (at most
    /// [`MAX_TTL`]; `None`: FCM's default, four weeks).
    pub ttl: Option<Duration>,
    /// `android.notification.tag`: a notification with the same tag replaces
    /// the one shown (`collapse_key` only replaces one still waiting at FCM).
    pub tag: Option<String>,
    /// `android.notification.notification_count`: the count a launcher may
    /// show on the app's icon.
    pub notification_count: Option<u32>,
}

/// One message to one registration token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FcmMessage {
    /// The registration token the app got from `getToken` / `onNewToken`.
    pub token: String,
    /// Key–value pairs the app receives (`RemoteMessage.getData()`).
    pub data: BTreeMap<String, String>,
    pub notification: Option<FcmNotification>,
    pub android: AndroidConfig,
    /// `apns`: an `ApnsConfig` object, sent as given.
    pub apns: Option<Value>,
    /// `webpush`: a `WebpushConfig` object, sent as given.
    pub webpush: Option<Value>,
}

impl FcmMessage {
    /// Checks the message and returns the request body, `{"message": …}`.
    pub fn to_json(&self) -> Result<Value> {
        validate_registration_token(&self.token)?;
        let mut size = 0;
        for (key, value) in &self.data {
            let reserved = ["from", "notification", "message_type"].contains(&key.as_str())
                || key.starts_with("google.")
                || key.starts_with("gcm.");
            if key.is_empty() || reserved {
                return Err(Error::invalid(
                    "data",
                    format!("{key:?} is a key FCM reserves"),
                ));
            }
            size += key.len() + value.len();
        }
        if let Some(n) = &self.notification {
            size += n.title.len() + n.body.len();
        }
        if size > MAX_PAYLOAD {
            return Err(Error::invalid(
                "data",
                format!("{size} bytes of data and notification, more than FCM's {MAX_PAYLOAD}"),
            ));
        }
        let mut android = Map::new();
        if let Some(key) = &self.android.collapse_key {
            if key.is_empty() || key.len() > 256 || key.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "collapse key",
                    "must be 1 to 256 bytes without control characters",
                ));
            }
            android.insert("collapse_key".into(), key.as_str().into());
        }
        let priority = match self.android.priority {
            AndroidPriority::High => "HIGH",
            AndroidPriority::Normal => "NORMAL",
        };
        android.insert("priority".into(), priority.into());
        if let Some(ttl) = self.android.ttl {
            if ttl > MAX_TTL {
                return Err(Error::invalid(
                    "ttl",
                    "FCM keeps a message four weeks at most",
                ));
            }
            // A protobuf Duration in JSON: seconds with an "s".
            android.insert("ttl".into(), format!("{}s", ttl.as_secs()).into());
        }
        let mut notification = Map::new();
        if let Some(tag) = &self.android.tag {
            if tag.is_empty() || tag.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "tag",
                    "must not be empty or hold control characters",
                ));
            }
            notification.insert("tag".into(), tag.as_str().into());
        }
        if let Some(count) = self.android.notification_count {
            notification.insert("notification_count".into(), count.into());
        }
        if !notification.is_empty() {
            android.insert("notification".into(), Value::Object(notification));
        }
        let mut message = Map::new();
        message.insert("token".into(), self.token.as_str().into());
        message.insert("data".into(), json!(self.data));
        if let Some(n) = &self.notification {
            message.insert(
                "notification".into(),
                json!({"title": n.title, "body": n.body}),
            );
        }
        message.insert("android".into(), Value::Object(android));
        for (name, value) in [("apns", &self.apns), ("webpush", &self.webpush)] {
            if let Some(value) = value {
                if !value.is_object() {
                    return Err(Error::invalid(name, "must be a JSON object"));
                }
                message.insert(name.into(), value.clone());
            }
        }
        Ok(json!({ "message": message }))
    }
}

/// Checks an FCM registration token: 1 to [`MAX_TOKEN_LEN`] characters of
/// base64url, `:` and `.` (the alphabet tokens are written in).
pub fn validate_registration_token(token: &str) -> Result<()> {
    let charset = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b));
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || !charset {
        return Err(Error::invalid(
            "registration token",
            format!("must be 1 to {MAX_TOKEN_LEN} characters of A-Z a-z 0-9 - _ : ."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> FcmMessage {
        FcmMessage {
            token: "dXNlcjE:APA91bH-x_y".into(),
            data: [("conversation".to_owned(), "c1".to_owned())].into(),
            notification: Some(FcmNotification {
                title: "Ana".into(),
                body: "hi".into(),
            }),
            android: AndroidConfig {
                collapse_key: Some("c1".into()),
                priority: AndroidPriority::High,
                ttl: Some(Duration::from_secs(3600)),
                tag: Some("c1".into()),
                notification_count: Some(3),
            },
            apns: Some(json!({"headers": {"apns-priority": "10"}})),
            webpush: None,
        }
    }

    #[test]
    fn the_body_has_googles_shape() {
        assert_eq!(
            message().to_json().unwrap(),
            json!({"message": {
                "token": "dXNlcjE:APA91bH-x_y",
                "data": {"conversation": "c1"},
                "notification": {"title": "Ana", "body": "hi"},
                "android": {"collapse_key": "c1", "priority": "HIGH", "ttl": "3600s",
                            "notification": {"tag": "c1", "notification_count": 3}},
                "apns": {"headers": {"apns-priority": "10"}}
            }})
        );
    }

    #[test]
    fn invalid_messages_name_their_field() {
        type Change = fn(&mut FcmMessage);
        let cases: [(Change, &str); 8] = [
            (|m| m.token = String::new(), "registration token"),
            (|m| m.token = "has space".into(), "registration token"),
            (
                |m| m.token = "x".repeat(MAX_TOKEN_LEN + 1),
                "registration token",
            ),
            (
                |m| {
                    m.data.insert("google.x".into(), "1".into());
                },
                "data",
            ),
            (
                |m| {
                    m.data.insert("big".into(), "x".repeat(MAX_PAYLOAD));
                },
                "data",
            ),
            (
                |m| m.android.collapse_key = Some(String::new()),
                "collapse key",
            ),
            (
                |m| m.android.ttl = Some(MAX_TTL + Duration::from_secs(1)),
                "ttl",
            ),
            (|m| m.webpush = Some(json!("x")), "webpush"),
        ];
        for (change, field) in cases {
            let mut m = message();
            change(&mut m);
            match m.to_json() {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
