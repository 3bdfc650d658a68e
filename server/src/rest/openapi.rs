//! The OpenAPI 3.1 description of the REST API, served at `/v1/openapi.json` so
//! customers can generate clients and read the contract.
//!
//! The document is generated from the code, so it cannot drift from it: every
//! handler carries a `#[utoipa::path]` (method, path, parameters, body,
//! responses, credentials), the request and response types derive `ToSchema`,
//! and [`ApiDoc`] lists the handlers. What utoipa cannot express is added in one
//! place, [`Finish`]: the security schemes and the error body's code list (taken
//! from `ErrorCode::ALL`). The unit tests below tie the document to the router's
//! route table (`super::ROUTES`) in both directions.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use mkondo_proto::ErrorCode;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, Ref, Schema, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse, ToSchema};

use super::{admin, conversations, lifecycle, messages, notifications, presence, social};
use super::{devices, events, files, hooks, tokens, users, webhooks};

/// `GET /v1/openapi.json` (no authentication).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "getOpenApi",
    tag = "meta",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI document.", body = Object)),
)]
pub async fn serve() -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        json_text(),
    )
        .into_response()
}

/// The document as JSON text, generated once (field order as in the code).
pub fn json_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

/// The document as a JSON value.
pub fn document() -> serde_json::Value {
    serde_json::from_str(json_text()).expect("the OpenAPI document is JSON")
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mkondo REST API",
        description = "Backends authenticate with an API key (everything in its app); frontends \
            with a user token (only what that user may see); `/v1/admin` with the server's \
            operator secret. Lists are cursor-paginated: `?limit=` (1-100, default 50) and \
            `?cursor=`, answering `{items, next_cursor}`. Errors answer `{error: {code, \
            message, request_id}}` with the code's HTTP status. Times are RFC 3339.",
    ),
    servers((url = "/")),
    modifiers(&Finish),
    tags(
        (name = "users", description = "The app's users (the backend) and what a user may read of others."),
        (name = "me", description = "The same views for the user holding the token."),
        (name = "conversations"),
        (name = "members"),
        (name = "messages", description = "History, sending, edits, deletes, reactions."),
        (name = "notifications"),
        (name = "blocks"),
        (name = "devices", description = "Push devices, muted conversations and \"do not disturb\": what decides whether a user is pushed."),
        (name = "files", description = "Uploads (tus 1.0 through the server), attachments and signed download links (docs/files.md)."),
        (name = "presence"),
        (name = "tokens"),
        (name = "events", description = "The event feed: every change in the app, in order, from a cursor."),
        (name = "hooks", description = "The before-send hook: the app's backend allows, rejects or replaces each message before it is stored."),
        (name = "webhooks", description = "Endpoints that receive the app's events as signed POSTs (docs/webhooks.md)."),
        (name = "admin", description = "The operator API: apps and their keys (operator secret)."),
        (name = "meta"),
    ),
    components(
        schemas(ErrorBody, UserId, ConversationId, AttachmentId, AllowedOrigin, messages::MessageKind, webhooks::WebhookId),
        responses(E401, E403, E404, E409, E413, E422),
    ),
    paths(
        serve,
        tokens::mint,
        users::create,
        users::list,
        users::get,
        users::update,
        users::conversations,
        users::messages,
        users::me,
        users::update_me,
        users::my_conversations,
        users::my_messages,
        conversations::create,
        conversations::list,
        conversations::get,
        conversations::update,
        conversations::delete,
        conversations::members,
        conversations::add_members,
        conversations::change_role,
        conversations::remove_member,
        messages::history,
        messages::send,
        messages::edit,
        messages::delete,
        messages::react,
        messages::unreact,
        notifications::send,
        notifications::list,
        notifications::ack,
        notifications::list_mine,
        notifications::ack_mine,
        social::block,
        social::list,
        social::unblock,
        social::block_mine,
        social::list_mine,
        social::unblock_mine,
        social::hide,
        social::hide_mine,
        social::mark_read,
        social::unread_total,
        devices::register,
        devices::list,
        devices::delete,
        devices::mute,
        devices::get_dnd,
        devices::set_dnd,
        files::create,
        files::attachment_urls,
        files::tus_head,
        files::tus_patch,
        files::download,
        files::download_thumbnail,
        presence::get,
        lifecycle::deactivate,
        lifecycle::reactivate,
        lifecycle::revoke_user_tokens,
        lifecycle::delete_user,
        lifecycle::revoke_app_tokens,
        events::list,
        hooks::get,
        hooks::set,
        hooks::delete,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::update,
        webhooks::delete,
        webhooks::rotate_secret,
        webhooks::attempts,
        webhooks::redeliver,
        webhooks::test,
        admin::list,
        admin::create,
        admin::update,
        admin::add_key,
        admin::remove_key,
        admin::create_api_key,
        admin::revoke_api_key,
        admin::revoke_tokens,
    )
)]
pub struct ApiDoc;

/// The security schemes the operations name (`api_key`, `user_token`,
/// `operator`): all three are `Authorization: Bearer`, told apart by the server.
struct Finish;

impl Modify for Finish {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |format: &str, description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format(format)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "api_key",
            bearer(
                "mk_<app>_<secret>",
                "An API key of the app: the customer's backend, everything in its app.",
            ),
        );
        components.add_security_scheme(
            "user_token",
            bearer(
                "JWT",
                "A user token signed with one of the app's signing keys: only what that user may see or do.",
            ),
        );
        components.add_security_scheme(
            "operator",
            bearer(
                "secret",
                "The server's operator secret (`--operator-secret`). Without one configured, /v1/admin answers 404.",
            ),
        );
        components.add_security_scheme(
            "signed_link",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Query(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "sig",
                    "A link the server signed (with `exp`): an upload grant from createUpload, or a download link from attachmentUrls. It names one upload or file and expires.",
                ),
            )),
        );
        add_flood_responses(doc);
    }
}

/// Every operation may be refused for floods (`node::floods`): 429 for a
/// credential over its rate or an address over its failed authentications
/// (authenticated operations), 503 when the node is at its limit of requests
/// in progress (all; with `Retry-After`, as 429) or the request outlasted the
/// request timeout.
fn add_flood_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    let retrying = |description: &str| {
        let seconds = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::Integer))
            .description(Some("Seconds to wait before retrying (rounded up)."))
            .build();
        let body = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build();
        ResponseBuilder::new()
            .description(description)
            .header("Retry-After", seconds)
            .content("application/json", body)
            .build()
    };
    let components = doc.components.get_or_insert_with(Default::default);
    components.responses.insert(
        "E429".to_owned(),
        RefOr::T(retrying(
            "rate_limited: the credential is over its rate (a user token shares its \
             user's real-time budget; an app's API keys have theirs), or the client's \
             address is over its failed authentications. Retry after `Retry-After`.",
        )),
    );
    components.responses.insert(
        "E503".to_owned(),
        RefOr::T(retrying(
            "unavailable: the server is at its limit of requests in progress (then \
             with `Retry-After`), the request was not answered within the server's \
             request timeout (its body read included), or its database is \
             unavailable. Retry, after `Retry-After` when given.",
        )),
    );
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
        ];
        for op in ops.into_iter().flatten() {
            let responses = &mut op.responses.responses;
            // Signed links (uploads, downloads) are not rate-limited per
            // credential: each names one file and expires.
            let signed_link_only = serde_json::to_value(&op.security)
                .is_ok_and(|s| s.to_string().contains("signed_link"));
            if op.security.as_ref().is_some_and(|s| !s.is_empty()) && !signed_link_only {
                responses.insert("429".to_owned(), Ref::from_response_name("E429").into());
            }
            responses.insert("503".to_owned(), Ref::from_response_name("E503").into());
        }
    }
}

/// The body of every error reply: `{"error": {"code", "message", "request_id",
/// "reason"?}}`; the code list is the one every interface shares.
pub struct ErrorBody;

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let codes = ErrorCode::ALL.map(ErrorCode::as_str);
        let detail = ObjectBuilder::new()
            .property("code", string().enum_values(Some(codes)))
            .required("code")
            .property(
                "message",
                string().description(Some("For people; never parse it.")),
            )
            .required("message")
            .property(
                "request_id",
                string().description(Some("Quote it when reporting a problem.")),
            )
            .required("request_id")
            .property(
                "reason",
                string().description(Some(
                    "A finer, stable reason within the code, e.g. `bad_signature`.",
                )),
            );
        ObjectBuilder::new()
            .property("error", detail)
            .required("error")
            .into()
    }
}

impl ToSchema for ErrorBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Error")
    }
}

/// The rule of `auth::valid_user_id`, which conversation ids share
/// (`store::valid_conversation_id`).
const ID_PATTERN: &str = "^[A-Za-z0-9._@:-]{1,128}$";

fn id_schema(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(ID_PATTERN))
        .min_length(Some(1))
        .max_length(Some(128))
        .description(Some(description))
        .into()
}

/// A user id: 1 to 128 characters of `A-Z a-z 0-9 . _ @ : -`.
pub struct UserId;

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        id_schema("A user id: 1 to 128 characters of `A-Z a-z 0-9 . _ @ : -`.")
    }
}

impl ToSchema for UserId {}

/// A conversation id, by the same rule as user ids.
pub struct ConversationId;

impl PartialSchema for ConversationId {
    fn schema() -> RefOr<Schema> {
        id_schema("A conversation id: 1 to 128 characters of `A-Z a-z 0-9 . _ @ : -`.")
    }
}

impl ToSchema for ConversationId {}

/// An attachment (upload) id: `upl_` and 26 lower-case ULID characters.
pub struct AttachmentId;

impl PartialSchema for AttachmentId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^upl_[0-9a-z]{26}$"))
            .description(Some(
                "An attachment id: `upl_` and 26 characters of `0-9 a-z`.",
            ))
            .into()
    }
}

impl ToSchema for AttachmentId {}

/// An entry of an app's `allowed_origins`. The pattern admits every origin the
/// server accepts and refuses what is plainly not one; the finer rules (a real
/// host, a port up to 65535) are `node::origins::normalise`'s (docs/rest.md).
pub struct AllowedOrigin;

impl PartialSchema for AllowedOrigin {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(\\*|[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\s]+)$"))
            .min_length(Some(1))
            .max_length(Some(crate::node::origins::MAX_ORIGIN_BYTES))
            .description(Some(
                "`scheme://host[:port]` (http or https, no path, no trailing slash), \
                 e.g. `https://chat.example`, or `*` for any origin (development).",
            ))
            .examples(["https://chat.example"])
            .into()
    }
}

impl ToSchema for AllowedOrigin {}

/// `{"type": "null"}`: a field that must be absent or null.
pub fn null_only() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Null)
        .description(Some("Chosen by the server: absent or null."))
}

/// Two different user ids.
pub fn user_pair() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(Ref::from_schema_name(UserId::name()))
        .min_items(Some(2))
        .max_items(Some(2))
        .unique_items(true)
}

/// `schema` with one more rule: at least one of `alternatives` holds, each a
/// field that is given with a value of its schema (JSON Schema's `anyOf`).
pub fn at_least_one_of(
    schema: RefOr<Schema>,
    alternatives: Vec<(&str, ObjectBuilder)>,
) -> RefOr<Schema> {
    let mut any = AnyOfBuilder::new();
    for (field, value) in alternatives {
        any = any.item(ObjectBuilder::new().property(field, value).required(field));
    }
    AllOfBuilder::new().item(schema).item(any).into()
}

/// unauthenticated, invalid_token, token_expired: no credentials, an unknown or
/// revoked API key, an invalid, expired or revoked user token, or a wrong
/// operator secret.
#[derive(ToResponse)]
pub struct E401(pub ErrorBody);

/// permission_denied: the caller may not do this (e.g. a user token on an API
/// key's route, a member who is not an admin, a deactivated user); or blocked: a
/// block stands between the two users; or rejected: the app's before-send hook
/// refused the message (the message is the hook's reason).
#[derive(ToResponse)]
pub struct E403(pub ErrorBody);

/// not_found: no such id in this app, or not visible to this caller.
#[derive(ToResponse)]
pub struct E404(pub ErrorBody);

/// already_exists: the chosen id is taken.
#[derive(ToResponse)]
pub struct E409(pub ErrorBody);

/// too_large: a body over 1 MiB, a text over 16 KiB, data over its limit.
#[derive(ToResponse)]
pub struct E413(pub ErrorBody);

/// invalid_argument: malformed JSON, wrong types, invalid ids or parameters.
#[derive(ToResponse)]
pub struct E422(pub ErrorBody);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::rest::ROUTES;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(METHODS.contains(&method.as_str()), "{method} in {path}");
                ops.push((method.clone(), path.clone(), op.clone()));
            }
        }
        ops
    }

    #[test]
    fn every_route_is_documented_with_its_path_parameters() {
        let doc = document();
        for (method, path) in ROUTES {
            let op = &doc["paths"][*path][*method];
            assert!(
                op.is_object(),
                "{method} {path} is not in the OpenAPI document"
            );
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no responses"
            );
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let in_template: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, in_template, "path parameters of {method} {path}");
        }
    }

    #[test]
    fn the_document_lists_only_routes_that_exist() {
        let doc = document();
        let ops = operations(&doc);
        for (method, path, _) in &ops {
            assert!(
                ROUTES.contains(&(method.as_str(), path.as_str())),
                "{method} {path} is documented but not routed"
            );
        }
        assert_eq!(ops.len(), ROUTES.len());
    }

    #[test]
    fn operations_have_unique_ids_known_credentials_and_error_bodies() {
        let doc = document();
        let schemes: BTreeSet<&str> = doc["components"]["securitySchemes"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut ids = BTreeSet::new();
        for (method, path, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(ids.insert(id.clone()), "operationId {id:?} twice");
            if path == "/v1/openapi.json" {
                assert!(op.get("security").is_none());
                continue;
            }
            let security = op["security"].as_array().unwrap_or_else(|| {
                panic!("{method} {path} names no credentials");
            });
            assert!(!security.is_empty(), "{method} {path}");
            for requirement in security {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(
                        schemes.contains(scheme.as_str()),
                        "{method} {path}: {scheme}"
                    );
                }
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("401"), "{method} {path} without 401");
            let signed_link = security
                .iter()
                .all(|r| r.as_object().unwrap().contains_key("signed_link"));
            assert!(
                signed_link || responses.contains_key("429"),
                "{method} {path} without 429"
            );
            assert!(responses.contains_key("503"), "{method} {path} without 503");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} without a success"
            );
        }
    }

    #[test]
    fn the_error_schema_lists_every_code() {
        let doc = document();
        let codes = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
            ["code"]["enum"];
        let codes: Vec<&str> = codes
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(codes, ErrorCode::ALL.map(ErrorCode::as_str));
    }

    #[test]
    fn every_reference_resolves() {
        fn walk<'a>(v: &'a Value, refs: &mut Vec<&'a str>) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(r)) = o.get("$ref") {
                        refs.push(r);
                    }
                    o.values().for_each(|v| walk(v, refs));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let doc = document();
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
    }
}
