//! CORS for the REST API: which browser pages may call it, answered from the
//! apps' allowed origins (`node/origins.rs` holds the rules; this is the HTTP
//! half). A hand-written middleware rather than tower-http's `CorsLayer`: the
//! answer to a real request depends on the app its credential names, which only
//! the `Caller` extractor learns, and the operator API and `/dev` must refuse
//! foreign origins instead of being left out; `CorsLayer` decides by origin
//! alone, for every route alike.
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//!   carries no credential: it is allowed when some app lists the origin (the
//!   node's cached union), and answered here, before routing.
//! - A real request with `Origin` is checked against its caller's own app by
//!   the `Caller` extractor, before the handler runs (403 `permission_denied`,
//!   reason `origin_not_allowed`); the verdict it leaves in the request's
//!   extensions decides whether the answer carries `Access-Control-Allow-Origin`
//!   (never for a refused origin). A request answered before a caller was known
//!   (a bad token, a rate limit, `/v1/openapi.json`) carries it when a preflight
//!   would have been allowed, so the page can read the error.
//! - `/v1/admin/...` and `/dev/...` are not for browsers: no CORS headers, and
//!   an `Origin` other than the server's own is refused with the same error.
//! - Requests without `Origin` (backends, curl, native clients), the WebSocket
//!   upgrade (checked at `connect`), health, metrics and gRPC pass untouched.

use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use mkondo_proto::Reason;

use crate::error::{Error, Result};
use crate::node::origins::BrowserOrigin;
use crate::node::Node;

/// How long a browser may reuse a preflight's answer.
const MAX_AGE_SECS: &str = "600";
const ALLOW_METHODS: &str = "GET, HEAD, POST, PATCH, DELETE";
/// Besides credentials and JSON: tus uploads' headers, and `Range` for
/// downloads (docs/files.md).
const ALLOW_HEADERS: &str = "authorization, content-type, tus-resumable, upload-offset, range";
/// What a page may read of an answer besides the CORS-safelisted headers: a
/// retry's delay, and a tus upload's or a ranged download's state.
const EXPOSE_HEADERS: &str =
    "retry-after, upload-offset, upload-length, tus-resumable, content-range, content-disposition";

/// The `Caller` extractor's verdict on a request's origin, for the middleware
/// to answer with. Unset: no caller was established.
#[derive(Debug, Clone, Default)]
pub struct OriginVerdict(Arc<OnceLock<bool>>);

impl OriginVerdict {
    /// Records how authenticating the caller ended: allowed when it passed
    /// (the origin was checked against the caller's app), refused when the
    /// origin was; any other failure says nothing about the origin.
    pub fn record<T>(&self, outcome: &Result<T>) {
        match outcome {
            Ok(_) => {
                let _ = self.0.set(true);
            }
            Err(err) if err.reason == Reason::OriginNotAllowed => {
                let _ = self.0.set(false);
            }
            Err(_) => {}
        }
    }
}

/// Which CORS rules a path follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Routes {
    /// The REST API: open to the origins the apps list.
    Rest,
    /// The operator API and `/dev`: never for another origin's pages.
    Closed,
    /// Everything else: no CORS.
    Other,
}

fn routes(path: &str) -> Routes {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/v1/admin") || under("/dev") {
        Routes::Closed
    } else if path == "/v1/realtime" {
        Routes::Other
    } else if under("/v1") {
        Routes::Rest
    } else {
        Routes::Other
    }
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The middleware (see the module doc).
pub async fn cors(State(node): State<Arc<Node>>, mut request: Request, next: Next) -> Response {
    let kind = routes(request.uri().path());
    if kind == Routes::Other {
        return next.run(request).await;
    }
    let Some(sent) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let peer = super::auth::peer_of(request.extensions());
    let Some(origin) = node.browser_origin(request.headers(), request.uri(), peer) else {
        return next.run(request).await;
    };
    if kind == Routes::Closed {
        return match node.refuse_foreign_origin(&origin) {
            Ok(()) => next.run(request).await,
            Err(err) => err.into_response(),
        };
    }
    if is_preflight(&request) {
        return preflight(&node, &origin, sent).await;
    }
    let verdict = OriginVerdict::default();
    request.extensions_mut().insert(verdict.clone());
    let mut response = next.run(request).await;
    let allowed = match verdict.0.get() {
        Some(allowed) => *allowed,
        None => node.preflight_allows(&origin).await.unwrap_or(false),
    };
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, sent);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    response
}

async fn preflight(node: &Node, origin: &BrowserOrigin, sent: HeaderValue) -> Response {
    let vary = HeaderValue::from_static(
        "origin, access-control-request-method, access-control-request-headers",
    );
    let allowed = match node.preflight_allows(origin).await {
        Ok(allowed) => allowed,
        Err(err) => return with_vary(err.into_response(), vary),
    };
    if !allowed {
        let err = Error::denied("no app allows this origin")
            .with_reason(Reason::OriginNotAllowed)
            .into_response();
        return with_vary(err, vary);
    }
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, sent),
        (
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        ),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        ),
        (
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECS),
        ),
        (header::VARY, vary),
    ];
    (StatusCode::NO_CONTENT, headers).into_response()
}

fn with_vary(mut response: Response, vary: HeaderValue) -> Response {
    response.headers_mut().append(header::VARY, vary);
    response
}

#[cfg(test)]
mod tests {
    use super::{routes, Routes};

    #[test]
    fn only_the_rest_api_is_open_to_other_origins() {
        for path in [
            "/v1/users",
            "/v1/me",
            "/v1/openapi.json",
            "/v1/administrator",
        ] {
            assert_eq!(routes(path), Routes::Rest, "{path}");
        }
        for path in ["/v1/admin", "/v1/admin/apps", "/dev/token", "/dev"] {
            assert_eq!(routes(path), Routes::Closed, "{path}");
        }
        for path in [
            "/v1/realtime",
            "/healthz",
            "/metrics",
            "/",
            "/index.html",
            "/sdk/index.js",
            "/mkondo.v1.Admin/GetUser",
            "/v1x",
            "/developer",
        ] {
            assert_eq!(routes(path), Routes::Other, "{path}");
        }
    }
}
