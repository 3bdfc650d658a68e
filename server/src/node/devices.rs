//! Push devices and whether a user wants to be pushed: registering a device's
//! credential, listing and removing a user's devices, muting a conversation,
//! and "do not disturb until". Every field is checked here, before the store
//! sees it; a Web Push endpoint is a URL the server will call, so it passes the
//! outbound guard (https to a public address, unless the operator allows
//! private ones).

use base64::Engine as _;
use mkondo_proto::v1;

use super::{Actor, Node};
use crate::error::{Error, Result};
use crate::store::devices::{Device, NewDevice};
use crate::store::Conversation;

/// The providers a device can register with.
pub const PROVIDERS: [&str; 4] = ["apns", "apns_voip", "fcm", "webpush"];
/// The longest device id or credential `unregister_device` takes (an FCM
/// token's maximum; a Web Push endpoint is at most 2048 bytes).
pub const MAX_FCM_TOKEN_LEN: usize = mkondo_push::fcm::MAX_TOKEN_LEN;
/// The latest "do not disturb until" accepted: a year ahead.
pub const MAX_DND_AHEAD_MS: i64 = 366 * 24 * 3600 * 1000;

/// A device credential as a caller sent it, before any check.
#[derive(Debug, Clone, Default)]
pub struct DeviceInput {
    pub provider: String,
    pub token: String,
    pub p256dh: String,
    pub auth: String,
    pub topic: String,
    pub sandbox: bool,
}

impl From<v1::RegisterDeviceRequest> for DeviceInput {
    fn from(d: v1::RegisterDeviceRequest) -> Self {
        Self {
            provider: d.provider,
            token: d.token,
            p256dh: d.p256dh,
            auth: d.auth,
            topic: d.topic,
            sandbox: d.sandbox,
        }
    }
}

impl Node {
    /// Registers a push credential for `user` (moving it from another user
    /// of the app who had it).
    pub async fn register_device(
        &self,
        app: &str,
        user: &str,
        input: DeviceInput,
    ) -> Result<Device> {
        let device = self.check_device(input).await?;
        self.require_users(app, &[user.to_owned()]).await?;
        let row = self.store.register_device(app, user, &device).await?;
        metrics::counter!("mkondo_push_devices_registered_total", "provider" => row.provider.clone())
            .increment(1);
        Ok(row)
    }

    /// `user`'s devices, most recently registered first.
    pub async fn devices(&self, app: &str, user: &str) -> Result<Vec<Device>> {
        self.require_users(app, &[user.to_owned()]).await?;
        self.store.devices_of(app, user).await
    }

    /// Removes one of `user`'s devices, by its id (`dev_…`) or by its
    /// credential (the token or Web Push endpoint): what a client knows after
    /// a restart is its token.
    pub async fn unregister_device(&self, app: &str, user: &str, id_or_token: &str) -> Result<()> {
        if id_or_token.is_empty() || id_or_token.len() > MAX_FCM_TOKEN_LEN {
            return Err(Error::invalid(
                "a device id or token of 1 to 4096 bytes is required",
            ));
        }
        let removed = if id_or_token.starts_with("dev_") {
            self.store.delete_device(app, user, id_or_token).await?
        } else {
            // APNs tokens are stored in lower case (no other token is all hex).
            let token = match check_apns_token(id_or_token) {
                Ok(lower) => lower,
                Err(_) => id_or_token.to_owned(),
            };
            self.store.delete_device_by_token(app, user, &token).await?
        };
        if removed {
            Ok(())
        } else {
            Err(Error::not_found("device"))
        }
    }

    /// `user` mutes or unmutes `conv`: a muted conversation sends them no push
    /// but still counts unread. Their other devices see the change.
    pub async fn set_muted(
        &self,
        app: &str,
        user: &str,
        conv: &str,
        muted: bool,
    ) -> Result<Conversation> {
        self.visible_conversation(app, Actor::User(user), conv)
            .await?;
        if !self.store.set_muted(app, conv, user, muted).await? {
            return Err(self.not_member_error());
        }
        self.own_view_changed(app, user, conv).await
    }

    /// `user`'s "do not disturb until" (ms since the epoch), if set and not past.
    pub async fn do_not_disturb(&self, app: &str, user: &str) -> Result<Option<i64>> {
        self.require_users(app, &[user.to_owned()]).await?;
        let now = crate::store::now_ms();
        Ok(self
            .store
            .dnd_until(app, user)
            .await?
            .filter(|until| *until > now))
    }

    /// Sets `user`'s "do not disturb until" (ms since the epoch; None or a
    /// past time: off). At most a year ahead.
    pub async fn set_do_not_disturb(
        &self,
        app: &str,
        user: &str,
        until: Option<i64>,
    ) -> Result<Option<i64>> {
        let now = crate::store::now_ms();
        let until = until.filter(|u| *u > now);
        if until.is_some_and(|u| u > now + MAX_DND_AHEAD_MS) {
            return Err(Error::invalid(
                "do_not_disturb_until must be at most a year ahead",
            ));
        }
        self.store.set_dnd_until(app, user, until).await?;
        Ok(until)
    }

    /// Checks a credential, field by field, for its provider.
    async fn check_device(&self, input: DeviceInput) -> Result<NewDevice> {
        let provider = input.provider.as_str();
        if !PROVIDERS.contains(&provider) {
            return Err(Error::invalid(
                "provider must be apns, apns_voip, fcm or webpush",
            ));
        }
        let apns = provider.starts_with("apns");
        let webpush = provider == "webpush";
        if !apns && (!input.topic.is_empty() || input.sandbox) {
            return Err(Error::invalid(
                "topic and sandbox are for apns devices only",
            ));
        }
        if !webpush && (!input.p256dh.is_empty() || !input.auth.is_empty()) {
            return Err(Error::invalid(
                "p256dh and auth are for webpush devices only",
            ));
        }
        let token = match provider {
            "apns" | "apns_voip" => check_apns_token(&input.token)?,
            "fcm" => check_fcm_token(&input.token)?,
            _ => {
                check_key(&input.p256dh, "p256dh", 65)?;
                if !input.p256dh.is_empty()
                    && base64url(&input.p256dh).is_some_and(|k| k.first() != Some(&4))
                {
                    return Err(Error::invalid(
                        "p256dh must be an uncompressed P-256 point (65 bytes starting 0x04)",
                    ));
                }
                check_key(&input.auth, "auth", 16)?;
                // Kept as sent: the client unregisters with the same string.
                self.outbound().check_url(&input.token).await?;
                input.token.clone()
            }
        };
        if !input.topic.is_empty() {
            // The worker's APNs client takes the same bundle ids.
            mkondo_push::apns::validate_bundle_id(&input.topic).map_err(invalid)?;
        }
        Ok(NewDevice {
            provider: input.provider,
            token,
            p256dh: input.p256dh,
            auth: input.auth,
            topic: input.topic,
            sandbox: input.sandbox,
        })
    }
}

/// Tokens are checked by the provider clients that will send to them
/// (mkondo-push), so a device that registers is one the worker can push to.
fn check_apns_token(token: &str) -> Result<String> {
    mkondo_push::apns::validate_device_token(token).map_err(invalid)?;
    Ok(token.to_ascii_lowercase())
}

fn check_fcm_token(token: &str) -> Result<String> {
    mkondo_push::fcm::validate_registration_token(token).map_err(invalid)?;
    Ok(token.to_owned())
}

fn invalid(e: mkondo_push::Error) -> Error {
    Error::invalid(e.to_string())
}

/// A Web Push key: base64url (padding allowed) of exactly `len` bytes.
fn check_key(key: &str, name: &str, len: usize) -> Result<()> {
    match base64url(key) {
        Some(bytes) if bytes.len() == len => Ok(()),
        _ => Err(Error::invalid(format!(
            "{name} must be the subscription's {len}-byte key in base64url"
        ))),
    }
}

fn base64url(s: &str) -> Option<Vec<u8>> {
    if s.len() > 256 {
        return None;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_tokens_are_even_hex_of_a_bounded_length() {
        assert_eq!(check_apns_token(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
        for bad in [
            "",
            &"a".repeat(63),
            &"a".repeat(65),
            &"g".repeat(64),
            &"a".repeat(202),
        ] {
            assert!(check_apns_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fcm_tokens_refuse_what_no_token_holds() {
        assert!(check_fcm_token("dQw4w9WgXcQ:APA91bH-x_y").is_ok());
        for bad in ["", "a b", "a/b", "a\nb", &"a".repeat(MAX_FCM_TOKEN_LEN + 1)] {
            assert!(check_fcm_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn web_push_keys_have_their_exact_length() {
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([4u8; 65]);
        assert!(check_key(&key, "p256dh", 65).is_ok());
        assert!(check_key(&format!("{key}="), "p256dh", 65).is_ok());
        assert!(check_key(&key[..80], "p256dh", 65).is_err());
        assert!(check_key("not base64!", "auth", 16).is_err());
        assert!(check_key("", "auth", 16).is_err());
    }
}
