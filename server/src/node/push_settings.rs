//! An app's push settings, as the operator sets them (`PATCH
//! /v1/admin/apps/{app}`, `mkondo app update`): the APNs token-auth key, the
//! FCM service account, the Web Push (VAPID) key, and what a push shows.
//!
//! - Each credential is parsed here with the provider client that will use it
//!   (`mkondo-push`), so a key that cannot sign is refused when it is set, not
//!   when the first push fails.
//! - Keys are sealed with the server's secrets key before they are stored and
//!   are never answered back: the operator sees key ids, the project, the
//!   VAPID public key.
//! - A VAPID key is generated unless the operator brings one (an app moving
//!   from another server keeps its browsers' subscriptions only with its old
//!   key).
//! - Each provider is set or removed (`null`) on its own; the others stay.

use serde::Deserialize;
use serde_json::Value;

use mkondo_proto::ErrorCode;

use super::Node;
use crate::error::{Error, Result};
use crate::outbound::secrets::SecretBox;
use crate::store::push_settings::PushSettingsRow;

/// What a message push may show.
pub const PREVIEWS: [&str; 3] = ["full", "generic", "none"];
/// The longest `.p8` key or service-account JSON accepted.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// Push settings to change; a field left out stays as it is, `null` removes
/// that provider.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PushSettingsInput)]
pub struct PushInput {
    /// APNs token authentication (a `.p8` key from the Apple developer account).
    #[serde(default, deserialize_with = "crate::node::requests::given")]
    #[schema(value_type = Option<ApnsInput>, nullable)]
    pub apns: Option<Option<ApnsInput>>,
    /// FCM HTTP v1: a service account's JSON key.
    #[serde(default, deserialize_with = "crate::node::requests::given")]
    #[schema(value_type = Option<FcmInput>, nullable)]
    pub fcm: Option<Option<FcmInput>>,
    /// Web Push (VAPID): a key pair is generated unless `private_key` is given.
    #[serde(default, deserialize_with = "crate::node::requests::given")]
    #[schema(value_type = Option<WebPushInput>, nullable)]
    pub web_push: Option<Option<WebPushInput>>,
    /// What a message push shows: `full` (its text, the default), `generic`
    /// ("New message") or `none` (no alert text; the app fetches it).
    #[schema(pattern = "^(full|generic|none)$")]
    pub preview: Option<String>,
}

#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApnsInput {
    /// The `.p8` key's PEM text (`-----BEGIN PRIVATE KEY-----`).
    #[schema(max_length = 16384)]
    pub key: String,
    /// The key's 10-character id.
    pub key_id: String,
    /// The developer team's 10-character id.
    pub team_id: String,
    /// The app's bundle id (`apns-topic` when a device names none).
    pub topic: String,
}

impl std::fmt::Debug for ApnsInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsInput")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FcmInput {
    /// The service account's JSON key, as downloaded (an object).
    #[schema(value_type = Object)]
    pub service_account: Value,
}

impl std::fmt::Debug for FcmInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmInput").finish_non_exhaustive()
    }
}

#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebPushInput {
    /// The contact push services may reach: `mailto:…` or `https://…`.
    #[schema(max_length = 255)]
    pub subject: String,
    /// An existing VAPID private key (the 32-byte P-256 scalar, base64url);
    /// absent: a new key pair is made.
    pub private_key: Option<String>,
}

impl std::fmt::Debug for WebPushInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushInput")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The app's push settings after `input`: `current` (the stored ones, if
/// any) with each named provider set (checked, its key sealed with `sealer`)
/// or removed. Shared by the operator API and the CLI; writes nothing.
pub fn prepare(
    current: Option<PushSettingsRow>,
    input: PushInput,
    sealer: Option<&SecretBox>,
    now_ms: i64,
) -> Result<PushSettingsRow> {
    let seal = |plain: &[u8]| -> Result<String> {
        sealer.map(|s| s.seal(plain)).ok_or_else(|| {
            Error::new(
                ErrorCode::Unavailable,
                "this server has no secrets key: the operator must set --secrets-key or \
                 --secrets-key-file (the same on every node) before push credentials can be set",
            )
        })
    };
    let mut row = current.unwrap_or_else(|| PushSettingsRow {
        preview: "full".into(),
        ..Default::default()
    });
    if let Some(preview) = input.preview {
        if !PREVIEWS.contains(&preview.as_str()) {
            return Err(Error::invalid("push.preview must be full, generic or none"));
        }
        row.preview = preview;
    }
    match input.apns {
        None => {}
        Some(None) => {
            row.apns_key.clear();
            row.apns_key_id.clear();
            row.apns_team_id.clear();
            row.apns_topic.clear();
        }
        Some(Some(apns)) => {
            if apns.key.len() > MAX_CREDENTIAL_BYTES {
                return Err(Error::too_large("push.apns.key is larger than 16 KiB"));
            }
            mkondo_push::apns::ApnsKey::from_p8(&apns.key, &apns.key_id, &apns.team_id)
                .map_err(|e| Error::invalid(format!("push.apns: {e}")))?;
            mkondo_push::apns::validate_bundle_id(&apns.topic)
                .map_err(|e| Error::invalid(format!("push.apns.topic: {e}")))?;
            row.apns_key = seal(apns.key.as_bytes())?;
            row.apns_key_id = apns.key_id;
            row.apns_team_id = apns.team_id;
            row.apns_topic = apns.topic;
        }
    }
    match input.fcm {
        None => {}
        Some(None) => {
            row.fcm_service_account.clear();
            row.fcm_project_id.clear();
            row.fcm_client_email.clear();
        }
        Some(Some(fcm)) => {
            if !fcm.service_account.is_object() {
                return Err(Error::invalid(
                    "push.fcm.service_account must be the key's JSON object",
                ));
            }
            let json = fcm.service_account.to_string();
            if json.len() > MAX_CREDENTIAL_BYTES {
                return Err(Error::too_large(
                    "push.fcm.service_account is larger than 16 KiB",
                ));
            }
            let account = mkondo_push::fcm::ServiceAccount::from_json(&json)
                .map_err(|e| Error::invalid(format!("push.fcm.service_account: {e}")))?;
            row.fcm_project_id = account.project_id().to_owned();
            row.fcm_client_email = account.client_email().to_owned();
            row.fcm_service_account = seal(json.as_bytes())?;
        }
    }
    match input.web_push {
        None => {}
        Some(None) => {
            row.vapid_private_key.clear();
            row.vapid_public_key.clear();
            row.vapid_subject.clear();
        }
        Some(Some(web)) => {
            check_subject(&web.subject)?;
            let key = match &web.private_key {
                Some(private) => mkondo_push::webpush::VapidKey::from_private_base64url(private)
                    .map_err(|e| Error::invalid(format!("push.web_push.private_key: {e}")))?,
                None => mkondo_push::webpush::VapidKey::generate(),
            };
            row.vapid_private_key = seal(key.private_base64url().as_bytes())?;
            row.vapid_public_key = key.application_server_key();
            row.vapid_subject = web.subject;
        }
    }
    row.updated_at = now_ms;
    Ok(row)
}

impl Node {
    /// [`prepare`] against the app's stored settings and this node's secrets key.
    pub(super) async fn prepare_push_settings(
        &self,
        app: &str,
        input: PushInput,
    ) -> Result<PushSettingsRow> {
        let current = self.store.push_settings(app).await?;
        prepare(current, input, self.secrets().ok(), crate::store::now_ms())
    }

    /// The app's VAPID public key (the web SDK's `applicationServerKey`), if
    /// it configured Web Push.
    pub async fn web_push_key(&self, app: &str) -> Result<Option<String>> {
        Ok(self
            .store
            .push_settings(app)
            .await?
            .map(|row| row.vapid_public_key)
            .filter(|key| !key.is_empty()))
    }
}

/// A VAPID subject: a `mailto:` address or an `https:` URL (RFC 8292 §2.1).
fn check_subject(subject: &str) -> Result<()> {
    let ok = subject.len() <= 255
        && !subject.chars().any(char::is_control)
        && match subject.split_once(':') {
            Some(("mailto", rest)) => rest.contains('@') && !rest.contains(char::is_whitespace),
            Some(("https", _)) => url::Url::parse(subject).is_ok_and(|u| u.host().is_some()),
            _ => false,
        };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "push.web_push.subject must be a mailto: address or an https: URL (at most 255 bytes)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::check_subject;

    #[test]
    fn a_vapid_subject_is_a_mailto_or_an_https_url() {
        assert!(check_subject("mailto:ops@example.com").is_ok());
        assert!(check_subject("https://example.com/contact").is_ok());
        for bad in [
            "",
            "ops@example.com",
            "mailto:",
            "mailto:no at sign",
            "http://example.com",
            "https://",
            "mailto:a@b\n",
        ] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
        }
    }
}
