//! What only `mkondo dev` serves: the two-window web demo (static files from
//! `web/demo/`, the npm package from `sdk-wasm/pkg/` at `/sdk/`) and
//! `POST /dev/token`, which mints a token for a demo user without a backend.
//! None of it exists under `mkondo serve`, and it answers loopback peers only:
//! to any other peer (a `mkondo dev` listening on every interface) it does not
//! exist either (404).

use std::{net::SocketAddr, path::Path, sync::Arc};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{routing::post, Json, Router};
use mkondo_proto::ErrorCode;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_http::services::{ServeDir, ServeFile};

use crate::error::{Error, Result};
use crate::node::Node;

/// The demo's app; created by `server::dev_setup`.
const APP: &str = "demo";
/// Demo tokens live an hour; the SDK's token provider asks for the next one.
const TOKEN_TTL_SECS: i64 = 3600;

/// The dev-only routes. Paths are relative to the working directory (the
/// repository root, where `scripts/dev.sh` runs).
pub fn router(node: Arc<Node>) -> Router {
    if !Path::new("sdk-wasm/pkg/index.js").exists() {
        println!("the web demo needs the npm package: run ./scripts/build-web.sh (or start with ./scripts/dev.sh)");
    }
    let mut router = Router::new()
        .route("/dev/token", post(token))
        .with_state(node)
        .nest_service("/sdk", ServeDir::new("sdk-wasm/pkg"))
        .route_service("/", ServeFile::new("web/demo/index.html"));
    // One route per file: the main router already has a fallback (gRPC's).
    for entry in std::fs::read_dir("web/demo")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some(name) = entry
            .file_name()
            .to_str()
            .filter(|_| entry.path().is_file())
        {
            router = router.route_service(&format!("/{name}"), ServeFile::new(entry.path()));
        }
    }
    router.layer(axum::middleware::from_fn(loopback_only))
}

/// 404 unless the TCP peer is a loopback address (a forwarded address counts
/// for nothing here: a proxy on this machine is a loopback peer).
async fn loopback_only(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    // A proxy on this machine (nginx in front of `mkondo dev`) is a loopback
    // peer for every remote client: a forwarded request is not local.
    let forwarded = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|h| request.headers().contains_key(*h));
    if peer.is_some_and(|ip| ip.is_loopback()) && !forwarded {
        return next.run(request).await;
    }
    Error::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
    .into_response()
}

#[derive(Deserialize)]
struct TokenRequest {
    user: String,
    /// When given: the direct conversation of `user` and `peer` is made too.
    peer: Option<String>,
}

/// `{user, peer?}` → `{token, conversation_id?}`.
async fn token(
    State(node): State<Arc<Node>>,
    Json(req): Json<TokenRequest>,
) -> Result<Json<Value>> {
    let token = node.mint_dev_token(APP, &req.user, TOKEN_TTL_SECS).await?;
    let conversation = match &req.peer {
        Some(peer) => Some(node.start_direct(APP, &req.user, peer, true).await?.id),
        None => None,
    };
    Ok(Json(
        json!({ "token": token, "conversation_id": conversation }),
    ))
}
