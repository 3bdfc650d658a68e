//! `POST /v1/tokens`: the backend mints a user token with the app's newest HS256
//! key — for demos and tests; production backends sign their own tokens.

use std::sync::Arc;

use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::Json;
use crate::auth::{mint_hs256, valid_user_id};
use crate::error::{Error, Result};
use crate::node::Node;
use crate::store::{valid_conversation_id, Millis};

pub const DEFAULT_TTL_SECS: i64 = 3600;

#[derive(Debug, Deserialize)]
pub struct MintToken {
    pub user_id: String,
    pub ttl_seconds: Option<i64>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Minted {
    pub token: String,
    pub expires_at: Millis,
}

/// `POST /v1/tokens` (API key only): 200 with `{token, expires_at}`.
pub async fn mint(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<MintToken>,
) -> Result<(StatusCode, axum::Json<Minted>)> {
    caller.require_backend()?;
    if !valid_user_id(&body.user_id) {
        return Err(Error::invalid(
            "user_id must be 1-128 characters of A-Z a-z 0-9 . _ @ : -",
        ));
    }
    let max = node.config.limits.max_token_lifetime_secs;
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TTL_SECS.min(max));
    if !(1..=max).contains(&ttl) {
        return Err(Error::invalid(format!("ttl_seconds must be 1 to {max}")));
    }
    if let Some(bad) = body.groups.iter().find(|g| !valid_conversation_id(g)) {
        return Err(Error::invalid(format!(
            "groups names an invalid conversation id: {bad:?}"
        )));
    }
    if body.name.as_ref().is_some_and(|n| n.len() > 256) {
        return Err(Error::invalid("name is longer than 256 bytes"));
    }
    let key = node
        .store
        .minting_key(&caller.app)
        .await?
        .ok_or_else(|| Error::invalid("this app has no HS256 signing key to mint with"))?;
    let now = chrono::Utc::now().timestamp();
    let token = mint_hs256(
        &key,
        &body.user_id,
        ttl,
        &body.groups,
        body.name.as_deref(),
        now,
    )?;
    Ok((
        StatusCode::OK,
        axum::Json(Minted {
            token,
            expires_at: Millis((now + ttl) * 1000),
        }),
    ))
}
