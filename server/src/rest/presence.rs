//! Presence over REST: `GET /v1/presence?users=a,b`. The backend reads any users
//! of its app; a user token reads only the people it may see (those sharing a
//! conversation with it and with no block between them), as over real-time.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::Query;
use super::openapi::{E401, E422};
use crate::engine::presence::UserPresence;
use crate::error::Result;
use crate::node::Node;
use crate::store::Millis;

pub const MAX_USERS: usize = crate::node::requests::MAX_PRESENCE_USERS;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PresenceParams {
    /// 1 to 100 comma-separated user ids, no spaces.
    #[param(
        required = true,
        pattern = "^[A-Za-z0-9._@:-]{1,128}(,[A-Za-z0-9._@:-]{1,128}){0,99}$"
    )]
    pub users: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Presence)]
pub struct PresenceView {
    pub user_id: String,
    /// `online`, `away` or `offline`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Millis>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PresenceList {
    /// One entry per visible user, in the order asked; unknown users and users the
    /// caller may not see are left out.
    pub presence: Vec<PresenceView>,
}

/// `GET /v1/presence?users=a,b`.
#[utoipa::path(
    get,
    path = "/v1/presence",
    operation_id = "getPresence",
    tag = "presence",
    summary = "Presence",
    description = "Presence and last seen of up to 100 users. The API key reads any user of the app; a user token only people sharing a conversation with it and with no block between them. Unknown and invisible users are left out.",
    security(("api_key" = []), ("user_token" = [])),
    params(PresenceParams),
    responses(
        (status = 200, description = "Their presence.", body = PresenceList),
        (status = 401, response = E401),
        (status = 422, response = E422),
    ),
)]
pub async fn get(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(params): Query<PresenceParams>,
) -> Result<axum::Json<PresenceList>> {
    let users: Vec<String> = params
        .users
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    let presence = node
        .presence_request(&caller.app, caller.actor(), &users)
        .await?;
    Ok(axum::Json(PresenceList {
        presence: presence.iter().map(view).collect(),
    }))
}

fn view(p: &UserPresence) -> PresenceView {
    PresenceView {
        user_id: p.user_id.clone(),
        status: p.status.as_str(),
        last_seen: p.last_seen.map(Millis),
    }
}
