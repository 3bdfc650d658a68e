//! REST API placeholder router (filled in below).

use std::sync::Arc;

use axum::Router;

use crate::node::Node;

pub fn router() -> Router<Arc<Node>> {
    Router::new()
}
