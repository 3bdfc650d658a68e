//! What only `mkondo dev` serves: the two-window web demo (static files from
//! `web/demo/`, the npm package from `sdk-wasm/pkg/` at `/sdk/`) and
//! `POST /dev/token`, which mints a token for a demo user without a backend.
//! None of it exists under `mkondo serve`.

use std::{path::Path, sync::Arc};

use axum::{extract::State, routing::post, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_http::services::{ServeDir, ServeFile};

use crate::error::Result;
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
    router
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
