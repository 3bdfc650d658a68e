//! Options objects → the core's types: `Client.create()`'s → `Config`, and the
//! fields of the per-call options (`history`, `sendMessage`, …). A field of the
//! wrong type is an `invalid_argument` rather than silently ignored.

use std::time::Duration;

use js_sys::{Function, Promise, Reflect};
use mkondo_sdk::{
    store::indexeddb::IndexedDbStore, AppState, Config, ConversationUpdate, HistoryQuery, NewGroup,
    NewMessage, ProfileUpdate, TokenError, TransportKind,
};
use wasm_bindgen::{prelude::*, JsCast};
use wasm_bindgen_futures::JsFuture;

use crate::convert::{from_js, invalid};

/// What `create()` needs besides the core's `Config`.
pub(crate) struct Options {
    pub config: Config,
    /// Start connecting at once (default `true`).
    pub connect: bool,
    /// Listen to `online` / `offline`, `visibilitychange` and `pageshow` (default `true`).
    pub browser_hooks: bool,
    /// `appState` was given: it, not the page's visibility, is the first state.
    pub app_state_given: bool,
}

/// An optional options argument: `undefined` / `null` → no field set.
fn optional(options: Option<JsValue>, what: &str) -> Result<JsValue, JsValue> {
    match options {
        Some(o) if o.is_object() => Ok(o),
        Some(o) if !o.is_undefined() && !o.is_null() => {
            Err(invalid(format!("{what}: an object of options")))
        }
        _ => Ok(js_sys::Object::new().into()),
    }
}

fn field(options: &JsValue, name: &str) -> Result<Option<JsValue>, JsValue> {
    let value = Reflect::get(options, &JsValue::from_str(name))?;
    Ok((!value.is_undefined() && !value.is_null()).then_some(value))
}

fn string(options: &JsValue, name: &str) -> Result<Option<String>, JsValue> {
    field(options, name)?
        .map(|v| {
            v.as_string()
                .ok_or_else(|| invalid(format!("{name}: a string")))
        })
        .transpose()
}

fn number(options: &JsValue, name: &str) -> Result<Option<f64>, JsValue> {
    field(options, name)?
        .map(|v| {
            v.as_f64()
                .filter(|n| *n >= 0.0)
                .ok_or_else(|| invalid(format!("{name}: a number ≥ 0")))
        })
        .transpose()
}

/// A whole number ≥ 0 (a seq, a limit).
fn whole(options: &JsValue, name: &str) -> Result<Option<u64>, JsValue> {
    match number(options, name)? {
        Some(n) if n.fract() == 0.0 && n <= 2f64.powi(53) => Ok(Some(n as u64)),
        Some(_) => Err(invalid(format!("{name}: a whole number ≥ 0"))),
        None => Ok(None),
    }
}

/// A list of strings (user ids).
fn strings(options: &JsValue, name: &str) -> Result<Option<Vec<String>>, JsValue> {
    let Some(value) = field(options, name)? else {
        return Ok(None);
    };
    let wrong = || invalid(format!("{name}: a list of strings"));
    if !js_sys::Array::is_array(&value) {
        return Err(wrong());
    }
    js_sys::Array::from(&value)
        .iter()
        .map(|v| v.as_string().ok_or_else(wrong))
        .collect::<Result<_, _>>()
        .map(Some)
}

fn millis(options: &JsValue, name: &str) -> Result<Option<Duration>, JsValue> {
    Ok(number(options, name)?.map(|ms| Duration::from_millis(ms as u64)))
}

fn flag(options: &JsValue, name: &str, default: bool) -> Result<bool, JsValue> {
    Ok(field(options, name)?.map_or(default, |v| v.is_truthy()))
}

pub(crate) fn parse(options: &JsValue) -> Result<Options, JsValue> {
    if !options.is_object() {
        return Err(invalid("options: an object with at least `url`"));
    }
    let url = string(options, "url")?.ok_or_else(|| invalid("url: required"))?;
    let transport = match string(options, "transport")?.as_deref() {
        None | Some("json") => TransportKind::WebSocketJson,
        Some("protobuf") => TransportKind::WebSocketProtobuf,
        Some(other) => {
            return Err(invalid(format!(
                "transport: 'json' or 'protobuf', not '{other}'"
            )))
        }
    };
    let mut config = Config::new(url, transport);
    if let Some(token) = string(options, "token")? {
        config = config.with_token(token);
    }
    if let Some(provider) = field(options, "tokenProvider")? {
        let provider: Function = provider
            .dyn_into()
            .map_err(|_| invalid("tokenProvider: a function returning a token (or its Promise)"))?;
        config = config.with_token_provider(move || fetch_token(provider.clone()));
    }
    let (min, max) = (
        millis(options, "minDelayMs")?,
        millis(options, "maxDelayMs")?,
    );
    if min.is_some() || max.is_some() {
        let (min, max) = (
            min.unwrap_or(config.min_delay),
            max.unwrap_or(config.max_delay),
        );
        config = config.with_reconnect_delays(min, max);
    }
    if let Some(timeout) = millis(options, "requestTimeoutMs")? {
        config = config.with_request_timeout(timeout);
    }
    if let Some(limit) = number(options, "outboxLimit")? {
        config = config.with_outbox_limit(limit as usize);
    }
    if let Some(limit) = whole(options, "conversationsLimit")? {
        config.conversations_limit = page_size(limit);
    }
    match (
        string(options, "storeName")?,
        string(options, "storeUserId")?,
    ) {
        (Some(name), Some(user)) if !name.is_empty() && !user.is_empty() => {
            // The core asks `Send + Sync` only off wasm; JavaScript is single-threaded.
            #[allow(clippy::arc_with_non_send_sync)]
            let store = std::sync::Arc::new(IndexedDbStore::new(name));
            config = config.with_store(store, user);
        }
        (None, None) => {}
        _ => {
            return Err(invalid(
                "storeName and storeUserId: two non-empty strings, given together",
            ))
        }
    }
    let app_state = string(options, "appState")?;
    if let Some(state) = &app_state {
        config.app_state = app_state_named(state)?;
    }
    Ok(Options {
        config,
        connect: flag(options, "connect", true)?,
        browser_hooks: flag(options, "browserHooks", true)?,
        app_state_given: app_state.is_some(),
    })
}

/// `'foreground'` or `'background'`.
pub(crate) fn app_state_named(state: &str) -> Result<AppState, JsValue> {
    match state {
        "foreground" => Ok(AppState::Foreground),
        "background" => Ok(AppState::Background),
        _ => Err(invalid("app state: 'foreground' or 'background'")),
    }
}

/// `updateProfile({ name, avatarUrl, data })`: what is left out stays.
pub(crate) fn profile_update(update: &JsValue) -> Result<ProfileUpdate, JsValue> {
    if !update.is_object() {
        return Err(invalid(
            "updateProfile: an object (`name`, `avatarUrl`, `data`)",
        ));
    }
    Ok(ProfileUpdate {
        name: string(update, "name")?,
        avatar_url: string(update, "avatarUrl")?,
        data: from_js(&field(update, "data")?.unwrap_or_default())?,
    })
}

/// `updateConversation(id, { name, iconUrl, data })`: what is left out stays.
pub(crate) fn conversation_update(update: &JsValue) -> Result<ConversationUpdate, JsValue> {
    if !update.is_object() {
        return Err(invalid(
            "updateConversation: an object (`name`, `iconUrl`, `data`)",
        ));
    }
    Ok(ConversationUpdate {
        name: string(update, "name")?,
        icon_url: string(update, "iconUrl")?,
        data: from_js(&field(update, "data")?.unwrap_or_default())?,
    })
}

/// `sendMessage(conversationId, text, { data, clientId, replyTo })`.
pub(crate) fn new_message(
    conversation_id: String,
    text: String,
    options: Option<JsValue>,
) -> Result<NewMessage, JsValue> {
    let o = optional(options, "sendMessage")?;
    Ok(NewMessage {
        conversation_id,
        text,
        data: from_js(&field(&o, "data")?.unwrap_or_default())?,
        client_id: string(&o, "clientId")?,
        reply_to: whole(&o, "replyTo")?,
        attachment_ids: strings(&o, "attachmentIds")?.unwrap_or_default(),
    })
}

/// `upload(conversationId, file, { name, contentType, onProgress })`: the
/// name and type default to the `File`'s.
pub(crate) fn new_upload(
    conversation_id: String,
    file: web_sys::Blob,
    options: Option<JsValue>,
) -> Result<(mkondo_sdk::NewUpload, Option<js_sys::Function>), JsValue> {
    use wasm_bindgen::JsCast;
    let o = optional(options, "upload")?;
    let file_name = file.dyn_ref::<web_sys::File>().map(web_sys::File::name);
    let name = string(&o, "name")?
        .or(file_name)
        .unwrap_or_else(|| "file".into());
    let content_type = string(&o, "contentType")?
        .or_else(|| Some(file.type_()).filter(|t| !t.is_empty()))
        .unwrap_or_else(|| "application/octet-stream".into());
    let progress = match field(&o, "onProgress")? {
        None => None,
        Some(f) => Some(
            f.dyn_into::<js_sys::Function>()
                .map_err(|_| invalid("onProgress: a function"))?,
        ),
    };
    let upload = mkondo_sdk::NewUpload {
        conversation_id,
        name,
        content_type,
        source: mkondo_sdk::UploadSource::Blob(file),
    };
    Ok((upload, progress))
}

/// `history(conversationId, { before, after, limit })`.
pub(crate) fn history_query(options: Option<JsValue>) -> Result<HistoryQuery, JsValue> {
    let o = optional(options, "history")?;
    Ok(HistoryQuery {
        before: whole(&o, "before")?,
        after: whole(&o, "after")?,
        limit: whole(&o, "limit")?.map(page_size),
    })
}

/// `{ cursor, limit }` of a paged call (`conversations`, `members`, `blocks`).
pub(crate) fn page(
    options: Option<JsValue>,
    what: &str,
) -> Result<(Option<String>, Option<u32>), JsValue> {
    let o = optional(options, what)?;
    Ok((string(&o, "cursor")?, whole(&o, "limit")?.map(page_size)))
}

/// `searchUsers(query, { limit })`.
pub(crate) fn search_limit(options: Option<JsValue>) -> Result<Option<u32>, JsValue> {
    let o = optional(options, "searchUsers")?;
    Ok(whole(&o, "limit")?.map(page_size))
}

/// `createGroup({ name, iconUrl, data, members })` (the server makes the id).
pub(crate) fn new_group(group: &JsValue) -> Result<NewGroup, JsValue> {
    if !group.is_object() {
        return Err(invalid("createGroup: an object (`name`, `members`, …)"));
    }
    Ok(NewGroup {
        name: string(group, "name")?.unwrap_or_default(),
        icon_url: string(group, "iconUrl")?,
        data: from_js(&field(group, "data")?.unwrap_or_default())?,
        members: strings(group, "members")?.unwrap_or_default(),
    })
}

/// The server caps a page anyway: a huge size is just "the most".
fn page_size(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Calls the application's provider. A thrown error whose `code` is
/// `'unauthorized'` stops the client; anything else is retried with backoff.
async fn fetch_token(provider: Function) -> Result<String, TokenError> {
    let failed = |e: JsValue| {
        let code = Reflect::get(&e, &JsValue::from_str("code"))
            .ok()
            .and_then(|c| c.as_string());
        let message = Reflect::get(&e, &JsValue::from_str("message"))
            .ok()
            .and_then(|m| m.as_string())
            .or_else(|| e.as_string())
            .unwrap_or_else(|| "the token provider threw".into());
        if code.as_deref() == Some("unauthorized") {
            TokenError::Unauthorized(message)
        } else {
            TokenError::Failed(message)
        }
    };
    let value = provider.call0(&JsValue::UNDEFINED).map_err(failed)?;
    let value = JsFuture::from(Promise::resolve(&value))
        .await
        .map_err(failed)?;
    value
        .as_string()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::Failed("the token provider gave no string".into()))
}
