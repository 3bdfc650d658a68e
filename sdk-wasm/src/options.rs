//! The options object of `Client.create()` → the core's `Config`.

use std::time::Duration;

use js_sys::{Function, Promise, Reflect};
use mkondo_sdk::{Config, TokenError, TransportKind};
use wasm_bindgen::{prelude::*, JsCast};
use wasm_bindgen_futures::JsFuture;

use crate::convert::invalid;

/// What `create()` needs besides the core's `Config`.
pub(crate) struct Options {
    pub config: Config,
    /// Start connecting at once (default `true`).
    pub connect: bool,
    /// Listen to `online` / `offline`, `visibilitychange` and `pageshow` (default `true`).
    pub browser_hooks: bool,
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
    Ok(Options {
        config,
        connect: flag(options, "connect", true)?,
        browser_hooks: flag(options, "browserHooks", true)?,
    })
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
