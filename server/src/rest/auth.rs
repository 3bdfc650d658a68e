//! Who is calling a REST endpoint. `Authorization: Bearer <credential>` carries
//! either an API key (the customer's backend: everything in its app) or a user
//! token (a frontend: only what that user may see). Handlers take a `Caller` and
//! hand its `Actor` to the node, so REST follows the same rules as real-time.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;

use mkondo_proto::Reason;

use super::cors::OriginVerdict;
use crate::auth;
use crate::error::{Error, Result};
use crate::node::{Actor, ClientAddr, Node};

/// The kind of principal behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An API key of the app.
    Backend,
    /// A user token; the user id.
    User(String),
}

/// An authenticated caller: its app and who it is within the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub app: String,
    pub principal: Principal,
}

impl Caller {
    pub fn actor(&self) -> Actor<'_> {
        match &self.principal {
            Principal::Backend => Actor::Backend,
            Principal::User(u) => Actor::User(u),
        }
    }

    /// The user id of a user token; `None` for the backend.
    pub fn user(&self) -> Option<&str> {
        match &self.principal {
            Principal::Backend => None,
            Principal::User(u) => Some(u),
        }
    }

    pub fn require_backend(&self) -> Result<()> {
        match self.principal {
            Principal::Backend => Ok(()),
            Principal::User(_) => Err(Error::denied("this endpoint requires an API key")),
        }
    }

    pub fn require_user(&self) -> Result<&str> {
        self.user()
            .ok_or_else(|| Error::denied("this endpoint requires a user token"))
    }

    /// The backend, or the user `id` themself.
    pub fn require_self_or_backend(&self, id: &str) -> Result<()> {
        match self.user() {
            Some(me) if me != id => {
                Err(Error::denied("a user token may only act for its own user"))
            }
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<Arc<Node>> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self> {
        let caller = authenticate(parts, node).await;
        // The CORS middleware answers with what became of the origin (rest/cors.rs).
        if let Some(verdict) = parts.extensions.get::<OriginVerdict>() {
            verdict.record(&caller);
        }
        caller
    }
}

/// The caller of a request, its browser origin checked against its app (the
/// node refuses an origin the app does not allow, before any work).
async fn authenticate(parts: &Parts, node: &Node) -> Result<Caller> {
    let credential = bearer(parts)?;
    let from = client_addr(parts, node);
    let origin = node.browser_origin(&parts.headers, &parts.uri, peer(parts));
    if auth::looks_like_api_key(credential) {
        return Ok(Caller {
            app: node
                .api_key_request(credential, from, origin.as_ref())
                .await?,
            principal: Principal::Backend,
        });
    }
    // A user seen for the first time is created from the token's claims (and
    // joins its `groups`), as on a first real-time connect.
    let claims = node.user_request(credential, from, origin.as_ref()).await?;
    Ok(Caller {
        app: claims.app_id,
        principal: Principal::User(claims.user_id),
    })
}

/// The server's operator, for `/v1/admin/...` (apps and their keys):
/// `Authorization: Bearer <operator secret>`. With no secret configured the
/// operator API does not exist: 404, so it cannot be probed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator;

impl FromRequestParts<Arc<Node>> for Operator {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self> {
        // Off: 404 before the credential is looked at.
        node.require_operator_api()?;
        let from = client_addr(parts, node);
        node.operator_request(bearer(parts)?, from).await?;
        Ok(Operator)
    }
}

/// The client's address: the TCP peer, or what a trusted proxy forwarded.
pub fn client_addr(parts: &Parts, node: &Node) -> ClientAddr {
    node.client_addr(peer(parts), &forwarded_for(&parts.headers))
}

/// The TCP peer of a request.
pub fn peer(parts: &Parts) -> Option<std::net::SocketAddr> {
    peer_of(&parts.extensions)
}

/// The TCP peer recorded in a request's extensions.
pub fn peer_of(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
}

/// Every `X-Forwarded-For` header's value, in order.
pub fn forwarded_for(headers: &http::HeaderMap) -> Vec<&str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

fn bearer(parts: &Parts) -> Result<&str> {
    let missing = || {
        Error::unauthenticated("missing Authorization: Bearer <API key or user token>")
            .with_reason(Reason::MissingCredentials)
    };
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, credential) = value.trim().split_once(' ').ok_or_else(missing)?;
    let credential = credential.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
        return Err(missing());
    }
    Ok(credential)
}
