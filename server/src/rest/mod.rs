//! The REST API under `/v1` (SPEC §3.2): how a customer's backend (API key) or a
//! frontend (user token) manages users, conversations, members and messages.
//! Handlers are thin: they authenticate, parse and hand the operation to the
//! `Node`, so REST shares its rules and live fan-out with real-time.
//!
//! Every route is declared once, in the `routes!` table below: it builds the
//! router and the `ROUTES` list that the OpenAPI test checks the document against.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::node::Node;

pub mod auth;
pub mod conversations;
pub mod extract;
pub mod messages;
pub mod openapi;
pub mod tokens;
pub mod users;

pub use auth::{Caller, Principal};

macro_rules! routes {
    ($($method:ident $path:literal => $handler:path,)*) => {
        /// Every REST route as (lower-case HTTP method, path template).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path),)*];

        fn routes() -> Router<Arc<Node>> {
            Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

routes! {
    get "/v1/openapi.json" => openapi::serve,
    post "/v1/tokens" => tokens::mint,
    post "/v1/users" => users::create,
    get "/v1/users" => users::list,
    get "/v1/users/{id}" => users::get,
    patch "/v1/users/{id}" => users::update,
    get "/v1/users/{id}/conversations" => users::conversations,
    get "/v1/users/{id}/messages" => users::messages,
    get "/v1/me" => users::me,
    patch "/v1/me" => users::update_me,
    get "/v1/me/conversations" => users::my_conversations,
    get "/v1/me/messages" => users::my_messages,
    post "/v1/conversations" => conversations::create,
    get "/v1/conversations" => conversations::list,
    get "/v1/conversations/{id}" => conversations::get,
    patch "/v1/conversations/{id}" => conversations::update,
    get "/v1/conversations/{id}/members" => conversations::members,
    post "/v1/conversations/{id}/members" => conversations::add_members,
    delete "/v1/conversations/{id}/members/{user}" => conversations::remove_member,
    get "/v1/conversations/{id}/messages" => messages::history,
    post "/v1/conversations/{id}/messages" => messages::send,
}

/// The REST routes, with the request body limit (413 `too_large` above it).
/// No fallback here: the server's router merges gRPC, which brings its own.
pub fn router() -> Router<Arc<Node>> {
    routes().layer(DefaultBodyLimit::max(extract::READ_LIMIT_BYTES))
}
