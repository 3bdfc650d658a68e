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

pub mod admin;
pub mod auth;
pub mod conversations;
pub mod cors;
pub mod devices;
pub mod events;
pub mod extract;
pub mod files;
pub mod hooks;
pub mod lifecycle;
pub mod messages;
pub mod notifications;
pub mod openapi;
pub mod presence;
pub mod social;
pub mod tokens;
pub mod users;
pub mod webhooks;

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
    delete "/v1/conversations/{id}" => conversations::delete,
    get "/v1/conversations/{id}/members" => conversations::members,
    post "/v1/conversations/{id}/members" => conversations::add_members,
    patch "/v1/conversations/{id}/members/{user}" => conversations::change_role,
    delete "/v1/conversations/{id}/members/{user}" => conversations::remove_member,
    get "/v1/conversations/{id}/messages" => messages::history,
    post "/v1/conversations/{id}/messages" => messages::send,
    patch "/v1/conversations/{id}/messages/{seq}" => messages::edit,
    delete "/v1/conversations/{id}/messages/{seq}" => messages::delete,
    post "/v1/conversations/{id}/messages/{seq}/reactions" => messages::react,
    delete "/v1/conversations/{id}/messages/{seq}/reactions/{emoji}" => messages::unreact,
    post "/v1/conversations/{id}/uploads" => files::create,
    post "/v1/conversations/{id}/attachment-urls" => files::attachment_urls,
    head "/v1/uploads/{app}/{id}" => files::tus_head,
    patch "/v1/uploads/{app}/{id}" => files::tus_patch,
    get "/v1/files/{app}/{id}" => files::download,
    get "/v1/files/{app}/{id}/thumbnail" => files::download_thumbnail,
    post "/v1/users/{id}/notifications" => notifications::send,
    get "/v1/users/{id}/notifications" => notifications::list,
    post "/v1/users/{id}/notifications/{notification}/ack" => notifications::ack,
    get "/v1/me/notifications" => notifications::list_mine,
    post "/v1/me/notifications/{id}/ack" => notifications::ack_mine,
    post "/v1/users/{id}/blocks" => social::block,
    get "/v1/users/{id}/blocks" => social::list,
    delete "/v1/users/{id}/blocks/{other}" => social::unblock,
    post "/v1/me/blocks" => social::block_mine,
    get "/v1/me/blocks" => social::list_mine,
    delete "/v1/me/blocks/{user}" => social::unblock_mine,
    post "/v1/users/{id}/conversations/{conversation}/hide" => social::hide,
    post "/v1/me/conversations/{id}/hide" => social::hide_mine,
    post "/v1/users/{id}/conversations/{conversation}/read" => social::mark_read,
    get "/v1/users/{id}/unread" => social::unread_total,
    post "/v1/users/{id}/devices" => devices::register,
    get "/v1/users/{id}/devices" => devices::list,
    delete "/v1/users/{id}/devices/{device}" => devices::delete,
    put "/v1/users/{id}/conversations/{conversation}/mute" => devices::mute,
    get "/v1/users/{id}/do-not-disturb" => devices::get_dnd,
    put "/v1/users/{id}/do-not-disturb" => devices::set_dnd,
    get "/v1/presence" => presence::get,
    post "/v1/users/{id}/deactivate" => lifecycle::deactivate,
    post "/v1/users/{id}/reactivate" => lifecycle::reactivate,
    post "/v1/users/{id}/revoke-tokens" => lifecycle::revoke_user_tokens,
    delete "/v1/users/{id}" => lifecycle::delete_user,
    post "/v1/revoke-tokens" => lifecycle::revoke_app_tokens,
    get "/v1/events" => events::list,
    get "/v1/before-send-hook" => hooks::get,
    put "/v1/before-send-hook" => hooks::set,
    delete "/v1/before-send-hook" => hooks::delete,
    post "/v1/webhooks" => webhooks::create,
    get "/v1/webhooks" => webhooks::list,
    get "/v1/webhooks/{id}" => webhooks::get,
    patch "/v1/webhooks/{id}" => webhooks::update,
    delete "/v1/webhooks/{id}" => webhooks::delete,
    post "/v1/webhooks/{id}/rotate-secret" => webhooks::rotate_secret,
    get "/v1/webhooks/{id}/attempts" => webhooks::attempts,
    post "/v1/webhooks/{id}/redeliver" => webhooks::redeliver,
    post "/v1/webhooks/{id}/test" => webhooks::test,
    get "/v1/admin/apps" => admin::list,
    post "/v1/admin/apps" => admin::create,
    patch "/v1/admin/apps/{app}" => admin::update,
    post "/v1/admin/apps/{app}/keys" => admin::add_key,
    delete "/v1/admin/apps/{app}/keys/{kid}" => admin::remove_key,
    post "/v1/admin/apps/{app}/api-keys" => admin::create_api_key,
    delete "/v1/admin/apps/{app}/api-keys/{prefix}" => admin::revoke_api_key,
    post "/v1/admin/apps/{app}/revoke-tokens" => admin::revoke_tokens,
}

/// The REST routes, with the request body limit (413 `too_large` above it).
/// No fallback here: the server's router merges gRPC, which brings its own.
pub fn router() -> Router<Arc<Node>> {
    routes().layer(DefaultBodyLimit::max(extract::READ_LIMIT_BYTES))
}
