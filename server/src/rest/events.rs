//! The event feed over REST: `GET /v1/events?after=CURSOR&types=…` (API key).
//! Every change in the app, in order, from the outbox written with each change;
//! the backend keeps `next_cursor` and asks again from it. docs/webhooks.md
//! lists every event type and its `data`.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::extract::Query;
use super::openapi::{E401, E403, E422};
use crate::error::Result;
use crate::node::events::FeedRequest;
use crate::node::Node;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// The `cursor` of the last event processed (or a page's `next_cursor`);
    /// absent or empty: from the oldest event retained.
    #[param(pattern = "^([0-9]{1,19}-[0-9]{1,19})?$")]
    pub after: Option<String>,
    /// Comma-separated event types to return (others are skipped), at most
    /// 64; absent: all. The pattern lists the feed's types (a unit test keeps
    /// it equal to `EVENT_TYPES`).
    #[param(
        pattern = "^(message\\.created|message\\.edited|message\\.deleted|message\\.reacted|member\\.added|member\\.removed|member\\.role_changed|conversation\\.created|conversation\\.updated|conversation\\.deleted|conversation\\.hidden|read\\.moved|user\\.created|user\\.updated|user\\.deactivated|user\\.reactivated|user\\.deleted|notification\\.sent|notification\\.acknowledged|user\\.blocked|user\\.unblocked)(,(message\\.created|message\\.edited|message\\.deleted|message\\.reacted|member\\.added|member\\.removed|member\\.role_changed|conversation\\.created|conversation\\.updated|conversation\\.deleted|conversation\\.hidden|read\\.moved|user\\.created|user\\.updated|user\\.deactivated|user\\.reactivated|user\\.deleted|notification\\.sent|notification\\.acknowledged|user\\.blocked|user\\.unblocked)){0,63}$"
    )]
    pub types: Option<String>,
    /// 1 to 1000; absent: 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One event: the same JSON as a webhook's body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Event)]
pub struct EventView {
    /// Stable and unique: a receiver de-duplicates by it.
    pub id: String,
    /// The event type, e.g. `message.created`.
    #[serde(rename = "type")]
    pub kind: String,
    pub app_id: String,
    /// The conversation it happened in, when there is one.
    #[schema(required = true)]
    pub conversation_id: Option<String>,
    pub created_at: crate::store::Millis,
    /// Its position in the feed: ask `?after=` it to go on from here.
    pub cursor: String,
    /// The entity as the REST API shows it, e.g. `{"message": {…}}`.
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventFeed {
    /// In feed order: per conversation, the order the changes committed.
    pub events: Vec<EventView>,
    /// Where to ask next (`?after=`): the last event's cursor, or the one
    /// asked with when there was nothing new.
    pub next_cursor: String,
}

/// `GET /v1/events`.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "listEvents",
    tag = "events",
    summary = "The event feed",
    description = "Every change in the app (messages, members, conversations, read positions, users, notifications, blocks), in order, after a cursor (API key only). Events are kept for the server's retention (7 days by default). An event appears once its transaction and every one that could precede it have committed, so a cursor never skips one.",
    security(("api_key" = [])),
    params(FeedParams),
    responses(
        (status = 200, description = "A page of the feed.", body = EventFeed),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 422, response = E422),
    ),
)]
pub async fn list(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(params): Query<FeedParams>,
) -> Result<axum::Json<EventFeed>> {
    caller.require_backend()?;
    let types = params
        .types
        .as_deref()
        .map(|t| t.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let page = node
        .events(
            &caller.app,
            FeedRequest {
                after: params.after,
                types,
                limit: params.limit,
            },
        )
        .await?;
    Ok(axum::Json(EventFeed {
        events: page
            .events
            .into_iter()
            .map(|e| EventView {
                cursor: e.cursor.to_string(),
                id: e.id,
                kind: e.kind,
                app_id: e.app_id,
                conversation_id: e.conversation_id,
                created_at: crate::store::Millis(e.created_at),
                data: e.data,
            })
            .collect(),
        next_cursor: page.next.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use crate::store::events::EVENT_TYPES;

    /// The document's pattern for `types` names exactly the feed's types, so
    /// a schema-valid request is never refused for an unknown type.
    #[test]
    fn the_documented_types_are_the_feeds() {
        let params = <super::FeedParams as utoipa::IntoParams>::into_params(|| None);
        let types = params.iter().find(|p| p.name == "types").unwrap();
        let schema = serde_json::to_value(&types.schema).unwrap();
        let one = format!("({})", EVENT_TYPES.join("|").replace('.', "\\."));
        assert_eq!(schema["pattern"], format!("^{one}(,{one}){{0,63}}$"));
    }
}
