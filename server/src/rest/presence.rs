//! Presence over REST: `GET /v1/presence?users=a,b`. The backend reads any users
//! of its app; a user token reads only the people it may see (those sharing a
//! conversation with it and with no block between them), as over real-time.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::Query;
use crate::auth::valid_user_id;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::realtime::presence::UserPresence;
use crate::store::Millis;

pub const MAX_USERS: usize = 100;

#[derive(Debug, Deserialize)]
pub struct PresenceParams {
    /// Comma-separated user ids.
    pub users: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PresenceView {
    pub user_id: String,
    /// `online`, `away` or `offline`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Millis>,
}

#[derive(Debug, Serialize)]
pub struct PresenceList {
    /// One entry per visible user, in the order asked; unknown users and users the
    /// caller may not see are left out.
    pub presence: Vec<PresenceView>,
}

/// `GET /v1/presence?users=a,b`.
pub async fn get(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(params): Query<PresenceParams>,
) -> Result<axum::Json<PresenceList>> {
    let mut users: Vec<String> = Vec::new();
    for u in params.users.as_deref().unwrap_or_default().split(',') {
        let u = u.trim();
        if u.is_empty() || users.iter().any(|seen| seen == u) {
            continue;
        }
        if !valid_user_id(u) {
            return Err(Error::invalid(format!("invalid user id {u:?}")));
        }
        users.push(u.to_owned());
    }
    if users.is_empty() {
        return Err(Error::invalid("give user ids: ?users=a,b"));
    }
    if users.len() > MAX_USERS {
        return Err(Error::invalid(format!("at most {MAX_USERS} user ids")));
    }
    let app = &caller.app;
    let found = node.store.get_users(app, &users).await?;
    users.retain(|u| found.iter().any(|f| f.id == *u));
    let presence = match caller.user() {
        None => node.presence_of(app, &users).await?,
        Some(me) => node.visible_presence(app, me, &users).await?,
    };
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
