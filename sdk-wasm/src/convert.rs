//! Rust values → JavaScript values: wire types through their JSON mapping with
//! keys in camelCase and seqs and counts as numbers (JavaScript's idiom; exact
//! below 2^53), errors as `MkondoError`, and events as `(name, payload)` pairs.

use js_sys::{Object, Reflect};
use mkondo_sdk::{Error, Event, SubscriptionState};
use serde::Serialize;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/js/errors.js")]
extern "C" {
    /// Defined in JavaScript so that it `extends Error` (stack, `instanceof`).
    type MkondoError;

    #[wasm_bindgen(constructor)]
    fn new(
        code: &str,
        message: &str,
        temporary: bool,
        reason: &str,
        retry_after_ms: Option<f64>,
    ) -> MkondoError;
}

/// The `MkondoError` a rejected promise carries.
pub(crate) fn error(e: &Error) -> JsValue {
    let retry_after = match e {
        Error::Server {
            retry_after: Some(d),
            ..
        } => Some(d.as_millis() as f64),
        _ => None,
    };
    MkondoError::new(
        e.code().as_str(),
        &e.to_string(),
        e.temporary(),
        e.reason(),
        retry_after,
    )
    .into()
}

/// A bad argument caught in the wrapper (before the core saw the call).
pub(crate) fn invalid(message: impl Into<String>) -> JsValue {
    error(&Error::InvalidArgument(message.into()))
}

/// Wire fields holding a 64-bit count or seq (sent as strings by the JSON mapping).
const NUMBERS: &[&str] = &[
    "seq",
    "last_seq",
    "reply_to",
    "unread_count",
    "last_read_seq",
    "cleared_seq",
];

/// snake_case keys → camelCase, 64-bit numbers → numbers; the application's own
/// JSON (`data`, `payload`) is left as it was sent.
fn idiomatic(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, v)| {
                    let v = match v {
                        Value::String(n) if NUMBERS.contains(&key.as_str()) => {
                            n.parse::<u64>().map_or(Value::String(n), Value::from)
                        }
                        v if key == "data" || key == "payload" => v,
                        v => idiomatic(v),
                    };
                    (camel(&key), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(idiomatic).collect()),
        other => other,
    }
}

fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Any serialisable value as a plain JavaScript value.
pub(crate) fn to_js<T: Serialize>(value: &T) -> JsValue {
    let value = serde_json::to_value(value).map(idiomatic);
    match value.and_then(|v| serde_json::to_string(&v)) {
        Ok(text) => js_sys::JSON::parse(&text).unwrap_or(JsValue::NULL),
        Err(_) => JsValue::NULL,
    }
}

/// A page of a list as `{ items, nextCursor? }`.
pub(crate) fn page<T: Serialize>(page: mkondo_sdk::Page<T>) -> JsValue {
    #[derive(Serialize)]
    struct Page<T> {
        items: Vec<T>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_cursor: Option<String>,
    }
    to_js(&Page {
        items: page.items,
        next_cursor: page.next_cursor,
    })
}

/// A JavaScript value as JSON (`undefined` / `null` → `None`).
pub(crate) fn from_js(value: &JsValue) -> Result<Option<serde_json::Value>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    let text: String = js_sys::JSON::stringify(value)
        .map_err(|_| invalid("a value that JSON cannot hold"))?
        .into();
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

/// A push credential from JavaScript: a `PushSubscription`'s JSON
/// (`{endpoint, keys: {p256dh, auth}}`) or `{provider, token, topic?, sandbox?}`.
pub(crate) fn push_credential(
    value: Option<&serde_json::Value>,
) -> Result<mkondo_sdk::PushCredential, JsValue> {
    use mkondo_sdk::PushCredential;
    let text = |v: &serde_json::Value, key: &str| -> Result<String, JsValue> {
        v.get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| invalid(format!("{key}: a string is required")))
    };
    let value = value.ok_or_else(|| invalid("a push subscription or token is required"))?;
    if let Some(keys) = value.get("keys") {
        return Ok(PushCredential::WebPush {
            endpoint: text(value, "endpoint")?,
            p256dh: text(keys, "p256dh")?,
            auth: text(keys, "auth")?,
        });
    }
    let token = text(value, "token")?;
    let topic = value
        .get("topic")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let sandbox = value
        .get("sandbox")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    match text(value, "provider")?.as_str() {
        "fcm" => Ok(PushCredential::Fcm { token }),
        "apns" => Ok(PushCredential::Apns {
            token,
            topic,
            sandbox,
        }),
        "apns_voip" => Ok(PushCredential::ApnsVoip {
            token,
            topic,
            sandbox,
        }),
        other => Err(invalid(format!(
            "provider: fcm, apns or apns_voip (or pass a PushSubscription), not {other:?}"
        ))),
    }
}

pub(crate) fn subscription_state(s: SubscriptionState) -> &'static str {
    match s {
        SubscriptionState::Unsubscribed => "unsubscribed",
        SubscriptionState::Subscribing => "subscribing",
        SubscriptionState::Subscribed => "subscribed",
    }
}

fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (key, value) in fields {
        let _ = Reflect::set(&obj, &JsValue::from_str(key), value);
    }
    obj.into()
}

/// Every event name [`event`] gives, in the order of its match.
pub(crate) const EVENTS: &[&str] = &[
    "state",
    "message",
    "messageUpdated",
    "typing",
    "read",
    "presence",
    "memberJoined",
    "memberLeft",
    "conversationUpdated",
    "subscriptionState",
    "notification",
    "signal",
    "gap",
    "error",
    "sent",
];

/// The event name `on()` listens to, and the payload its callbacks get.
pub(crate) fn event(event: &Event) -> Option<(&'static str, JsValue)> {
    Some(match event {
        Event::StateChanged {
            old,
            new,
            code,
            reason,
        } => (
            "state",
            object(&[
                ("old", old.as_str().into()),
                ("new", new.as_str().into()),
                ("code", f64::from(*code).into()),
                ("reason", reason.as_str().into()),
            ]),
        ),
        Event::Message(m) => ("message", to_js(m)),
        Event::MessageUpdated { message, change } => (
            "messageUpdated",
            object(&[
                ("message", to_js(message)),
                ("change", change.as_str().into()),
            ]),
        ),
        Event::Typing {
            conversation_id,
            user_id,
            typing,
        } => (
            "typing",
            object(&[
                ("conversationId", conversation_id.as_str().into()),
                ("userId", user_id.as_str().into()),
                ("typing", (*typing).into()),
            ]),
        ),
        Event::Read(r) => ("read", to_js(r)),
        Event::Presence(p) => ("presence", to_js(p)),
        Event::MemberJoined(m) => ("memberJoined", to_js(m)),
        Event::MemberLeft(m) => ("memberLeft", to_js(m)),
        Event::ConversationUpdated(c) => ("conversationUpdated", to_js(c)),
        Event::SubscriptionStateChanged {
            conversation_id,
            old,
            new,
            error: failure,
        } => (
            "subscriptionState",
            object(&[
                ("conversationId", conversation_id.as_str().into()),
                ("old", subscription_state(*old).into()),
                ("new", subscription_state(*new).into()),
                ("error", failure.as_ref().map_or(JsValue::NULL, error)),
            ]),
        ),
        Event::Notification(n) => ("notification", to_js(n)),
        Event::Signal(s) => ("signal", to_js(s)),
        Event::Gap {
            conversation_id,
            from_seq,
            to_seq,
        } => (
            "gap",
            object(&[
                ("conversationId", conversation_id.as_str().into()),
                ("fromSeq", (*from_seq as f64).into()),
                ("toSeq", (*to_seq as f64).into()),
            ]),
        ),
        Event::Error(e) => ("error", error(e)),
        Event::Sent { client_id, result } => (
            "sent",
            object(&[
                ("clientId", client_id.as_str().into()),
                ("message", result.as_ref().map_or(JsValue::NULL, to_js)),
                ("error", result.as_ref().err().map_or(JsValue::NULL, error)),
            ]),
        ),
        _ => return None,
    })
}
