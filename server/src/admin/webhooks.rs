//! Webhook endpoints over the Admin API: the twins of `/v1/webhooks`
//! (`rest/webhooks.rs`), on the same node operations.

use mkondo_proto::v1::*;
use pbjson_types::Empty;

use super::{owned, page, timestamp};
use crate::error::{Error, Result};
use crate::node::webhooks::{self as hooks, WebhookChanges, WebhookInput};
use crate::node::Node;
use crate::store::webhooks::{self as stored, WebhookStatus};

fn view(w: &stored::Webhook) -> Webhook {
    Webhook {
        id: w.id.clone(),
        url: w.url.clone(),
        event_types: w.event_types.clone(),
        description: w.description.clone(),
        status: match w.status {
            WebhookStatus::Active => "active",
            WebhookStatus::Disabled => "disabled",
        }
        .to_owned(),
        disabled_reason: w.disabled_reason.clone().unwrap_or_default(),
        disabled_at: w.disabled_at.as_ref().and_then(|t| timestamp(t.0)),
        failing_since: w.failing_since.as_ref().and_then(|t| timestamp(t.0)),
        created_at: timestamp(w.created_at.0),
        updated_at: timestamp(w.updated_at.0),
    }
}

fn with_secret(w: hooks::WebhookWithSecret) -> WebhookWithSecret {
    WebhookWithSecret {
        webhook: Some(view(&w.webhook)),
        secret: w.secret,
    }
}

pub(super) async fn create_webhook(
    node: &Node,
    app: &str,
    req: CreateWebhookRequest,
) -> Result<WebhookWithSecret> {
    let input = WebhookInput {
        url: req.url,
        event_types: req.event_types,
        description: req.description,
    };
    Ok(with_secret(node.create_webhook(app, input).await?))
}

pub(super) async fn list_webhooks(node: &Node, app: &str, req: PageRequest) -> Result<WebhookPage> {
    let found = node
        .list_webhooks(app, &page(req.cursor, req.limit))
        .await?;
    Ok(WebhookPage {
        items: found.items.iter().map(view).collect(),
        next_cursor: found.next_cursor.unwrap_or_default(),
    })
}

pub(super) async fn get_webhook(node: &Node, app: &str, req: WebhookIdRequest) -> Result<Webhook> {
    Ok(view(&node.get_webhook(app, &req.id).await?))
}

pub(super) async fn update_webhook(
    node: &Node,
    app: &str,
    req: UpdateWebhookRequest,
) -> Result<Webhook> {
    let enabled = match (req.enable, req.disable) {
        (true, true) => return Err(Error::invalid("give enable or disable, not both")),
        (true, false) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    };
    let changes = WebhookChanges {
        url: req.url,
        event_types: req.replace_event_types.then_some(req.event_types),
        description: req.description,
        enabled,
    };
    Ok(view(&node.update_webhook(app, &req.id, changes).await?))
}

pub(super) async fn delete_webhook(node: &Node, app: &str, req: WebhookIdRequest) -> Result<Empty> {
    node.delete_webhook(app, &req.id).await?;
    Ok(Empty {})
}

pub(super) async fn rotate_webhook_secret(
    node: &Node,
    app: &str,
    req: WebhookIdRequest,
) -> Result<WebhookWithSecret> {
    Ok(with_secret(node.rotate_webhook_secret(app, &req.id).await?))
}

pub(super) async fn list_webhook_attempts(
    node: &Node,
    app: &str,
    req: WebhookPageRequest,
) -> Result<WebhookAttemptPage> {
    let found = node
        .webhook_attempts(app, &req.id, &page(req.cursor, req.limit))
        .await?;
    Ok(WebhookAttemptPage {
        items: found
            .items
            .into_iter()
            .map(|a| WebhookAttempt {
                id: a.id,
                event_id: a.event_id,
                event_type: a.event_type,
                attempt: u32::try_from(a.attempt).unwrap_or(u32::MAX),
                attempted_at: timestamp(a.attempted_at.0),
                status_code: a.status_code.and_then(|s| u32::try_from(s).ok()),
                error: a.error.unwrap_or_default(),
                duration_ms: u64::try_from(a.duration_ms).unwrap_or_default(),
            })
            .collect(),
        next_cursor: found.next_cursor.unwrap_or_default(),
    })
}

pub(super) async fn redeliver_webhook_event(
    node: &Node,
    app: &str,
    req: RedeliverWebhookEventRequest,
) -> Result<Empty> {
    node.redeliver_webhook_event(app, &req.id, &req.event_id)
        .await?;
    Ok(Empty {})
}

pub(super) async fn test_webhook(
    node: &Node,
    app: &str,
    req: WebhookIdRequest,
) -> Result<WebhookTestResult> {
    let r = node.test_webhook(app, &req.id).await?;
    Ok(WebhookTestResult {
        delivered: r.delivered,
        event_id: r.event_id,
        status_code: r.status_code.map(u32::from),
        error: owned(r.error.unwrap_or_default()).unwrap_or_default(),
        duration_ms: u64::try_from(r.duration_ms).unwrap_or_default(),
    })
}
