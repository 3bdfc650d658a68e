//! `POST /v1/tokens`: the backend mints a user token with the app's newest HS256
//! key — for demos and tests; production backends sign their own tokens.

use std::sync::Arc;

use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::extract::{whole, Json};
use super::openapi::{ConversationId, UserId, E401, E403, E422};
use crate::error::Result;
use crate::node::requests::MintInput;
use crate::node::Node;
use crate::store::Millis;

pub const DEFAULT_TTL_SECS: i64 = crate::node::requests::DEFAULT_TOKEN_TTL_SECS;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MintToken {
    #[schema(value_type = UserId)]
    pub user_id: String,
    /// Seconds, default 3600, at most the server's maximum token lifetime
    /// (`--max-token-lifetime-secs`, one day unless configured).
    #[serde(default, deserialize_with = "whole::option_i64")]
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: Option<i64>,
    /// Conversation ids the user joins on connect: at most 100, duplicates
    /// counted; a repeated id is minted once.
    #[serde(default)]
    #[schema(value_type = Vec<ConversationId>, max_items = 100)]
    pub groups: Vec<String>,
    /// At most 256 bytes.
    #[schema(max_length = 256)]
    pub name: Option<String>,
}

/// The answer of `POST /v1/tokens`; not `Debug`, so the token cannot be logged.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Minted {
    pub token: String,
    pub expires_at: Millis,
}

/// `POST /v1/tokens` (API key only): 200 with `{token, expires_at}`.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "mintToken",
    tag = "tokens",
    summary = "Mint a user token",
    description = "Mints a user token signed with the app's newest HS256 key (API key only; for development and tests: production backends sign their own).",
    security(("api_key" = [])),
    request_body = MintToken,
    responses(
        (status = 200, description = "The token.", body = Minted),
        (status = 401, response = E401),
        (status = 403, response = E403),
        (status = 422, response = E422),
    ),
)]
pub async fn mint(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(body): Json<MintToken>,
) -> Result<(StatusCode, axum::Json<Minted>)> {
    caller.require_backend()?;
    let input = MintInput {
        user_id: body.user_id,
        ttl_seconds: body.ttl_seconds,
        groups: body.groups,
        name: body.name,
    };
    let minted = node.mint_token(&caller.app, input).await?;
    Ok((
        StatusCode::OK,
        axum::Json(Minted {
            token: minted.token,
            expires_at: Millis(minted.expires_at_ms),
        }),
    ))
}
