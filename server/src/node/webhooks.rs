//! Webhook endpoints, as the backend manages them (REST, Admin gRPC, the CLI):
//! every input checked here before any query — the URL against the outbound
//! policy (`https` to public addresses unless the operator allows private
//! ones), event types against the feed's, lists capped and de-duplicated — and
//! every endpoint scoped to its app (another app's id is `not_found`).
//!
//! A secret is made here, handed out once (create, rotate) and stored sealed
//! with the server key; nothing else ever returns it. Delivery is
//! `webhook_worker.rs`.

use std::time::Instant;

use serde::Serialize;

use super::requests::{distinct, PageRequest};
use super::Node;
use crate::error::{Error, Result};
use crate::outbound::secrets;
use crate::store::events::{StoredEvent, EVENT_TYPES, OPT_IN_TYPES};
use crate::store::webhooks::{NewWebhook, Webhook, WebhookAttempt, WebhookPatch, WebhookRow};
use crate::store::{now_ms, Page};

/// Endpoints per app.
pub const MAX_WEBHOOKS_PER_APP: u32 = 20;
/// A URL's length.
pub const MAX_URL_LEN: usize = 2048;
/// A description's length, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// After a rotation, the previous secret still signs for this long.
pub const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;
/// The type of the event `test` sends.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// What creating an endpoint or rotating its secret answers: the endpoint and
/// its secret, shown this once.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_…`: the HMAC key of `Mkondo-Signature`. Shown this once.
    pub secret: String,
}

impl std::fmt::Debug for WebhookWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookWithSecret")
            .field("webhook", &self.webhook)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A new endpoint, as an interface decoded it.
#[derive(Debug, Clone, Default)]
pub struct WebhookInput {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
}

/// Changes to an endpoint; `enabled` re-activates a disabled one (`true`) or
/// disables an active one (`false`: nothing is delivered, its position in the
/// feed stays, and re-enabling it delivers what happened meanwhile).
#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// What a test delivery answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookTestResult {
    /// Whether the endpoint answered 2xx.
    pub delivered: bool,
    /// The test event's id.
    pub event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl Node {
    pub async fn create_webhook(
        &self,
        app: &str,
        input: WebhookInput,
    ) -> Result<WebhookWithSecret> {
        let event_types = check_event_types(input.event_types)?;
        let description = check_description(input.description.unwrap_or_default())?;
        let url = self.check_webhook_url(&input.url).await?;
        let sealer = self.secrets()?;
        self.require_app(app).await?;
        let secret = secrets::new_secret();
        let new = NewWebhook {
            id: format!("wh_{}", ulid::Ulid::new().to_string().to_lowercase()),
            url,
            event_types,
            description,
            sealed_secret: sealer.seal(secret.as_bytes()),
            start: self.store.events_head(app).await?,
        };
        let row = self
            .store
            .create_webhook(app, &new, MAX_WEBHOOKS_PER_APP)
            .await?;
        Ok(WebhookWithSecret {
            webhook: row.view(),
            secret,
        })
    }

    pub async fn list_webhooks(&self, app: &str, page: &PageRequest) -> Result<Page<Webhook>> {
        let b = page.bounds()?;
        self.store.list_webhooks(app, b.cursor, b.limit).await
    }

    pub async fn get_webhook(&self, app: &str, id: &str) -> Result<Webhook> {
        Ok(self.webhook_row(app, id).await?.view())
    }

    pub async fn update_webhook(
        &self,
        app: &str,
        id: &str,
        changes: WebhookChanges,
    ) -> Result<Webhook> {
        check_webhook_id(id)?;
        let event_types = changes.event_types.map(check_event_types).transpose()?;
        let description = changes.description.map(check_description).transpose()?;
        let url = match changes.url {
            Some(url) => Some(self.check_webhook_url(&url).await?),
            None => None,
        };
        let patch = WebhookPatch {
            url,
            event_types,
            description,
            enabled: changes.enabled,
        };
        let row = self
            .store
            .update_webhook(app, id, &patch)
            .await?
            .ok_or_else(|| Error::not_found("webhook"))?;
        Ok(row.view())
    }

    pub async fn delete_webhook(&self, app: &str, id: &str) -> Result<()> {
        check_webhook_id(id)?;
        if !self.store.delete_webhook(app, id).await? {
            return Err(Error::not_found("webhook"));
        }
        Ok(())
    }

    /// A new secret, shown once; the previous one signs too for 24 hours.
    pub async fn rotate_webhook_secret(&self, app: &str, id: &str) -> Result<WebhookWithSecret> {
        check_webhook_id(id)?;
        let sealer = self.secrets()?;
        let secret = secrets::new_secret();
        let row = self
            .store
            .rotate_webhook_secret(
                app,
                id,
                &sealer.seal(secret.as_bytes()),
                now_ms() + ROTATION_OVERLAP_MS,
            )
            .await?
            .ok_or_else(|| Error::not_found("webhook"))?;
        Ok(WebhookWithSecret {
            webhook: row.view(),
            secret,
        })
    }

    /// The endpoint's delivery attempts, newest first.
    pub async fn webhook_attempts(
        &self,
        app: &str,
        id: &str,
        page: &PageRequest,
    ) -> Result<Page<WebhookAttempt>> {
        let b = page.bounds()?;
        self.webhook_row(app, id).await?;
        self.store
            .webhook_attempts(app, id, b.cursor, b.limit)
            .await
    }

    /// Queues one event of the feed for the endpoint again.
    pub async fn redeliver_webhook_event(&self, app: &str, id: &str, event_id: &str) -> Result<()> {
        if event_id.is_empty() || event_id.len() > 64 {
            return Err(Error::invalid("event_id: 1-64 characters"));
        }
        let hook = self.webhook_row(app, id).await?;
        let event =
            self.store.event(app, event_id).await?.ok_or_else(|| {
                Error::not_found("event (events are kept for the feed's retention)")
            })?;
        if !hook.event_types.is_empty() && !hook.event_types.contains(&event.kind) {
            return Err(Error::invalid(format!(
                "the endpoint does not receive {} events",
                event.kind
            )));
        }
        self.store.requeue_webhook_event(app, id, &event).await
    }

    /// Sends a `webhook.test` event to the endpoint now, outside the feed and
    /// the queue, and says what it answered.
    pub async fn test_webhook(&self, app: &str, id: &str) -> Result<WebhookTestResult> {
        let hook = self.webhook_row(app, id).await?;
        let now = now_ms();
        let event = StoredEvent {
            id: format!("ev_{}", ulid::Ulid::new().to_string().to_lowercase()),
            cursor: Default::default(),
            app_id: app.to_owned(),
            kind: TEST_EVENT_TYPE.to_owned(),
            conversation_id: None,
            created_at: now,
            data: serde_json::json!({ "webhook": hook.view() }),
        };
        let started = Instant::now();
        let outcome = self.post_webhook_event(&hook, &event).await?;
        Ok(WebhookTestResult {
            delivered: outcome.delivered(),
            event_id: event.id,
            status_code: outcome.status,
            error: outcome.error,
            duration_ms: started.elapsed().as_millis() as i64,
        })
    }

    async fn webhook_row(&self, app: &str, id: &str) -> Result<WebhookRow> {
        check_webhook_id(id)?;
        self.store
            .webhook(app, id)
            .await?
            .ok_or_else(|| Error::not_found("webhook"))
    }

    async fn check_webhook_url(&self, url: &str) -> Result<String> {
        if url.is_empty() || url.len() > MAX_URL_LEN {
            return Err(Error::invalid(format!("url: 1-{MAX_URL_LEN} characters")));
        }
        let parsed = self.outbound().check_url(url).await?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Error::invalid("url: no user or password in the URL"));
        }
        Ok(parsed.to_string())
    }
}

/// An id that cannot be an endpoint's is `not_found`, as an unknown one.
fn check_webhook_id(id: &str) -> Result<()> {
    let ok = id.len() <= 64
        && id.starts_with("wh_")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::not_found("webhook"))
    }
}

fn check_event_types(types: Vec<String>) -> Result<Vec<String>> {
    let known = |t: &str| EVENT_TYPES.contains(&t) || OPT_IN_TYPES.contains(&t);
    let types = distinct(types, EVENT_TYPES.len() + OPT_IN_TYPES.len(), "event_types")?;
    if let Some(bad) = types.iter().find(|t| !known(t)) {
        return Err(Error::invalid(format!(
            "event_types: unknown event type {bad:?}"
        )));
    }
    Ok(types)
}

fn check_description(d: String) -> Result<String> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS || d.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "description: at most {MAX_DESCRIPTION_CHARS} characters, no control characters"
        )));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_known_capped_and_deduplicated() {
        let known = EVENT_TYPES[0].to_owned();
        assert_eq!(
            check_event_types(vec![known.clone(), known.clone()]).unwrap(),
            vec![known.clone()]
        );
        assert!(check_event_types(vec!["nope.nope".into()]).is_err());
        let too_many = vec![known; EVENT_TYPES.len() + OPT_IN_TYPES.len() + 1];
        assert!(check_event_types(too_many).is_err());
    }

    #[test]
    fn webhook_ids_have_their_shape() {
        assert!(check_webhook_id("wh_01jabc").is_ok());
        assert!(check_webhook_id("01jabc").is_err());
        assert!(check_webhook_id("wh_../x").is_err());
    }
}
