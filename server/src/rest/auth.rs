//! Who is calling a REST endpoint. `Authorization: Bearer <credential>` carries
//! either an API key (the customer's backend: everything in its app) or a user
//! token (a frontend: only what that user may see). Handlers take a `Caller` and
//! hand its `Actor` to the node, so REST follows the same rules as real-time.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;

use mkondo_proto::{ErrorCode, Reason};

use crate::auth;
use crate::error::{Error, Result};
use crate::node::{Actor, Node};

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
        let credential = bearer(parts)?;
        if auth::looks_like_api_key(credential) {
            let app = node
                .store
                .app_for_api_key(credential)
                .await?
                .ok_or_else(|| {
                    Error::unauthenticated("unknown or revoked API key")
                        .with_reason(Reason::InvalidApiKey)
                })?;
            return Ok(Caller {
                app,
                principal: Principal::Backend,
            });
        }
        let claims = node.authenticate(credential).await?;
        // A user seen for the first time is created from the token's claims (and
        // joins its `groups`), as on a first real-time connect.
        if node
            .store
            .get_user(&claims.app_id, &claims.user_id)
            .await?
            .is_none()
        {
            node.user_for_claims(&claims).await?;
        }
        Ok(Caller {
            app: claims.app_id,
            principal: Principal::User(claims.user_id),
        })
    }
}

/// The server's operator, for `/v1/admin/...` (apps and their keys):
/// `Authorization: Bearer <operator secret>`. With no secret configured the
/// operator API does not exist: 404, so it cannot be probed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator;

impl FromRequestParts<Arc<Node>> for Operator {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self> {
        let Some(secret) = &node.config.operator_secret else {
            return Err(Error::new(
                ErrorCode::NotFound,
                "the operator API is off: start the server with --operator-secret",
            )
            .with_reason(Reason::OperatorApiOff));
        };
        let credential = bearer(parts)?;
        if !same_secret(credential, secret.expose()) {
            return Err(Error::unauthenticated("wrong operator secret")
                .with_reason(Reason::InvalidOperatorSecret));
        }
        Ok(Operator)
    }
}

/// Compares two secrets in time independent of where they differ (and of their
/// lengths): their SHA-256 digests are compared with no early exit.
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest as _, Sha256};
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
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

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret("operator-secret-0123", "operator-secret-0123"));
        assert!(!same_secret("operator-secret-0124", "operator-secret-0123"));
        assert!(!same_secret("operator-secret-012", "operator-secret-0123"));
        assert!(!same_secret("", "operator-secret-0123"));
    }
}
