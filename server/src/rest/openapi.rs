//! The OpenAPI 3.1 description of the REST API, served at `/v1/openapi.json` so
//! customers can generate clients and read the contract. Hand-written; a unit
//! test keeps it in step with the router's route table (`super::ROUTES`).

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

mod changes;
mod lifecycle;
mod social;

/// `GET /v1/openapi.json` (no authentication).
pub async fn serve() -> axum::Json<Value> {
    axum::Json(document().clone())
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn page_of(name: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": { "type": "array", "items": schema(name) },
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last page."
            }
        }
    })
}

fn body(name: &str) -> Value {
    json!({
        "required": true,
        "content": { "application/json": { "schema": schema(name) } }
    })
}

fn reply(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema } }
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true,
        "description": description, "schema": { "type": "string" }
    })
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name, "in": "query", "required": false,
        "description": description, "schema": schema
    })
}

fn paging() -> Vec<Value> {
    vec![
        json!({ "$ref": "#/components/parameters/limit" }),
        json!({ "$ref": "#/components/parameters/cursor" }),
    ]
}

/// An operation; `errors` are the statuses of `{error}` replies beyond 401.
fn op(
    id: &str,
    tag: &str,
    summary: &str,
    params: Vec<Value>,
    request: Option<Value>,
    replies: &[(&str, Value)],
    errors: &[&str],
) -> Value {
    let mut responses = Map::new();
    for (status, r) in replies {
        responses.insert((*status).to_owned(), r.clone());
    }
    for status in std::iter::once(&"401").chain(errors) {
        responses.insert(
            (*status).to_owned(),
            json!({ "$ref": format!("#/components/responses/E{status}") }),
        );
    }
    let mut o = json!({
        "operationId": id,
        "tags": [tag],
        "summary": summary,
        "parameters": params,
        "responses": responses,
    });
    if let Some(request) = request {
        o["requestBody"] = request;
    }
    o
}

fn build() -> Value {
    let conv_id = || path_param("id", "Conversation id.");
    let user_id = || path_param("id", "User id.");
    let mut paths = Map::new();
    let mut add = |path: &str, method: &str, operation: Value| {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = operation;
    };

    let mut spec = op(
        "getOpenApi",
        "meta",
        "This document.",
        vec![],
        None,
        &[(
            "200",
            reply("The OpenAPI document.", json!({ "type": "object" })),
        )],
        &[],
    );
    spec["security"] = json!([]);
    spec["responses"].as_object_mut().map(|r| r.remove("401"));
    add("/v1/openapi.json", "get", spec);

    add(
        "/v1/tokens",
        "post",
        op(
            "mintToken",
            "tokens",
            "Mint a user token signed with the app's newest HS256 key (API key only; development and tests).",
            vec![],
            Some(body("MintToken")),
            &[("200", reply("The token.", schema("Minted")))],
            &["403", "422"],
        ),
    );

    add(
        "/v1/users",
        "post",
        op(
            "upsertUser",
            "users",
            "Create a user, or update the given fields of an existing one (API key only).",
            vec![],
            Some(body("CreateUser")),
            &[
                ("201", reply("Created.", schema("User"))),
                ("200", reply("Updated.", schema("User"))),
            ],
            &["403", "413", "422"],
        ),
    );
    let mut list_users = paging();
    list_users.insert(
        0,
        query_param(
            "q",
            "Case-insensitive substring of the id or name.",
            json!({ "type": "string" }),
        ),
    );
    add(
        "/v1/users",
        "get",
        op(
            "listUsers",
            "users",
            "List and search the app's users, by id (API key only).",
            list_users,
            None,
            &[("200", reply("A page of users.", page_of("User")))],
            &["403", "422"],
        ),
    );
    add(
        "/v1/users/{id}",
        "get",
        op(
            "getUser",
            "users",
            "Read a user. A user token reads itself and people it shares a conversation with.",
            vec![user_id()],
            None,
            &[("200", reply("The user.", schema("User")))],
            &["404"],
        ),
    );
    add(
        "/v1/users/{id}",
        "patch",
        op(
            "updateUser",
            "users",
            "Update name, avatar_url, data (API key, or the user's own token).",
            vec![user_id()],
            Some(body("UpdateUser")),
            &[("200", reply("The updated user.", schema("User")))],
            &["403", "404", "413", "422"],
        ),
    );
    add(
        "/v1/users/{id}/conversations",
        "get",
        op(
            "listUserConversations",
            "users",
            "The conversations a user is in, latest activity first, with unread counts (API key, or the user's own token).",
            [vec![user_id()], paging()].concat(),
            None,
            &[("200", reply("A page of conversations.", page_of("Conversation")))],
            &["403", "404", "422"],
        ),
    );
    add(
        "/v1/users/{id}/messages",
        "get",
        op(
            "listUserMessages",
            "users",
            "Messages a user sent, newest first (API key, or the user's own token).",
            [vec![user_id()], paging()].concat(),
            None,
            &[("200", reply("A page of messages.", page_of("Message")))],
            &["403", "404", "422"],
        ),
    );

    add(
        "/v1/me",
        "get",
        op(
            "getMe",
            "me",
            "The user holding the token (user token only).",
            vec![],
            None,
            &[("200", reply("The user.", schema("User")))],
            &["403"],
        ),
    );
    add(
        "/v1/me",
        "patch",
        op(
            "updateMe",
            "me",
            "Update the token's own user (user token only).",
            vec![],
            Some(body("UpdateUser")),
            &[("200", reply("The updated user.", schema("User")))],
            &["403", "413", "422"],
        ),
    );
    add(
        "/v1/me/conversations",
        "get",
        op(
            "listMyConversations",
            "me",
            "The token user's conversations, latest activity first, with unread counts.",
            paging(),
            None,
            &[(
                "200",
                reply("A page of conversations.", page_of("Conversation")),
            )],
            &["403", "422"],
        ),
    );
    add(
        "/v1/me/messages",
        "get",
        op(
            "listMyMessages",
            "me",
            "Messages the token user sent, newest first.",
            paging(),
            None,
            &[("200", reply("A page of messages.", page_of("Message")))],
            &["403", "422"],
        ),
    );

    add(
        "/v1/conversations",
        "post",
        op(
            "createConversation",
            "conversations",
            "Create a group (a user token becomes its owner) or start a direct conversation (the same pair returns the same one, with 200).",
            vec![],
            Some(body("CreateConversation")),
            &[
                ("201", reply("Created.", schema("Conversation"))),
                ("200", reply("The existing direct conversation.", schema("Conversation"))),
            ],
            &["403", "404", "409", "413", "422"],
        ),
    );
    add(
        "/v1/conversations",
        "get",
        op(
            "listConversations",
            "conversations",
            "The app's conversations (API key) or the user's own (user token), latest activity first.",
            paging(),
            None,
            &[("200", reply("A page of conversations.", page_of("Conversation")))],
            &["422"],
        ),
    );
    add(
        "/v1/conversations/{id}",
        "get",
        op(
            "getConversation",
            "conversations",
            "Read a conversation (a user token: members only).",
            vec![conv_id()],
            None,
            &[("200", reply("The conversation.", schema("Conversation")))],
            &["403", "404"],
        ),
    );
    add(
        "/v1/conversations/{id}",
        "patch",
        op(
            "updateConversation",
            "conversations",
            "Update name, icon_url, data (a user token: admins and owners). Members are told live.",
            vec![conv_id()],
            Some(body("UpdateConversation")),
            &[(
                "200",
                reply("The updated conversation.", schema("Conversation")),
            )],
            &["403", "404", "413", "422"],
        ),
    );
    add(
        "/v1/conversations/{id}/members",
        "get",
        op(
            "listMembers",
            "members",
            "A conversation's members, by user id.",
            [vec![conv_id()], paging()].concat(),
            None,
            &[("200", reply("A page of members.", page_of("Member")))],
            &["403", "404", "422"],
        ),
    );
    add(
        "/v1/conversations/{id}/members",
        "post",
        op(
            "addMembers",
            "members",
            "Add members to a group (a user token: admins and owners). The API key creates unknown users.",
            vec![conv_id()],
            Some(body("AddMembers")),
            &[
                ("201", reply("The users added.", schema("AddedMembers"))),
                ("200", reply("Everyone was a member already.", schema("AddedMembers"))),
            ],
            &["403", "404", "422"],
        ),
    );
    add(
        "/v1/conversations/{id}/members/{user}",
        "delete",
        op(
            "removeMember",
            "members",
            "Remove a member: oneself (leave), or by an admin or the API key.",
            vec![conv_id(), path_param("user", "User id of the member.")],
            None,
            &[("204", json!({ "description": "Removed." }))],
            &["403", "404", "422"],
        ),
    );
    add(
        "/v1/conversations/{id}/messages",
        "get",
        op(
            "listMessages",
            "messages",
            "A page of history in ascending seq order. `after` pages forward from a seq; `before` (or neither) pages backward from the newest; `next_cursor` continues in the same direction.",
            [
                vec![
                    conv_id(),
                    query_param(
                        "before",
                        "Messages with a smaller seq (the newest of them).",
                        json!({ "type": "integer", "minimum": 1 }),
                    ),
                    query_param(
                        "after",
                        "Messages with a larger seq (the oldest of them).",
                        json!({ "type": "integer", "minimum": 0 }),
                    ),
                ],
                paging(),
            ]
            .concat(),
            None,
            &[("200", reply("A page of messages.", page_of("Message")))],
            &["403", "404", "422"],
        ),
    );
    add(
        "/v1/conversations/{id}/messages",
        "post",
        op(
            "sendMessage",
            "messages",
            "Send a message as a user (a user token: only as itself) or as the system (API key). Delivered live to connected members.",
            vec![conv_id()],
            Some(body("SendMessage")),
            &[
                ("201", reply("Sent.", schema("Message"))),
                ("200", reply("The original message of this client_id.", schema("Message"))),
            ],
            &["403", "404", "413", "422"],
        ),
    );

    social::paths(&mut add);
    changes::paths(&mut add);
    lifecycle::paths(&mut add);

    let error_response = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": schema("Error") } }
        })
    };

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Mkondo REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Backends authenticate with an API key (everything in its app); frontends with a user token (only what that user may see). Lists are cursor-paginated: `?limit=` (1-100, default 50) and `?cursor=`, answering `{items, next_cursor}`. Times are RFC 3339."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "tags": [
            { "name": "users" }, { "name": "me" }, { "name": "conversations" },
            { "name": "members" }, { "name": "messages" }, { "name": "notifications" },
            { "name": "blocks" }, { "name": "presence" }, { "name": "tokens" },
            { "name": "admin" }, { "name": "meta" }
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`mk_<app>_…`) or a user token (JWT)."
                },
                "operator": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The server's operator secret (`--operator-secret`), for /v1/admin. Without one configured, /v1/admin answers 404."
                }
            },
            "parameters": {
                "limit": {
                    "name": "limit", "in": "query", "required": false,
                    "description": "Page size, 1 to 100 (default 50).",
                    "schema": { "type": "integer", "minimum": 1, "maximum": 100, "default": 50 }
                },
                "cursor": {
                    "name": "cursor", "in": "query", "required": false,
                    "description": "The `next_cursor` of the previous page.",
                    "schema": { "type": "string" }
                }
            },
            "responses": {
                "E401": error_response("No credentials, or an unknown API key or invalid user token (code unauthenticated, invalid_token, token_expired)."),
                "E403": error_response("permission_denied: the caller may not do this; or blocked: a block stands between the two users (direct conversations, signals)."),
                "E404": error_response("not_found: no such id in this app (or not visible to this user)."),
                "E409": error_response("already_exists."),
                "E413": error_response("too_large: body over 1 MiB, text over 16 KiB, data over its limit."),
                "E422": error_response("invalid_argument: malformed JSON, wrong types, invalid ids or parameters.")
            },
            "schemas": lifecycle::schemas(social::schemas(changes::schemas(schemas())))
        }
    })
}

fn schemas() -> Value {
    let time = json!({ "type": "string", "format": "date-time" });
    let data = json!({ "type": "object", "description": "Custom JSON object." });
    let id = json!({ "type": "string", "pattern": "^[A-Za-z0-9._@:-]{1,128}$" });
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "request_id"],
                    "properties": {
                        "code": {
                            "type": "string",
                            "enum": ["unauthenticated", "token_expired", "invalid_token",
                                     "permission_denied", "not_found", "already_exists",
                                     "invalid_argument", "too_large", "rate_limited",
                                     "blocked", "unavailable", "internal"]
                        },
                        "message": { "type": "string" },
                        "request_id": { "type": "string" },
                        "reason": { "type": "string", "description": "A finer, stable reason within the code, e.g. bad_signature." }
                    }
                }
            }
        },
        "User": {
            "type": "object",
            "required": ["id", "name", "avatar_url", "data", "created_at", "updated_at", "deactivated"],
            "properties": {
                "id": id, "name": { "type": "string" }, "avatar_url": { "type": "string" },
                "data": data, "created_at": time, "updated_at": time,
                "deactivated": { "type": "boolean" }, "last_seen": time
            }
        },
        "CreateUser": {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": id,
                "name": { "type": "string", "maxLength": 256 },
                "avatar_url": { "type": "string", "maxLength": 2048 },
                "data": { "type": "object", "description": "At most 4 KiB." }
            }
        },
        "UpdateUser": {
            "type": "object",
            "description": "Absent fields are left as they are.",
            "properties": {
                "name": { "type": "string", "maxLength": 256 },
                "avatar_url": { "type": "string", "maxLength": 2048 },
                "data": { "type": "object", "description": "Replaces the data; at most 4 KiB." }
            }
        },
        "Message": {
            "type": "object",
            "required": ["id", "conversation_id", "seq", "sender_id", "kind", "text", "data", "created_at", "reactions"],
            "properties": {
                "id": { "type": "string" },
                "conversation_id": { "type": "string" },
                "seq": { "type": "integer", "minimum": 1, "description": "1, 2, 3 … per conversation, no gaps." },
                "sender_id": { "type": "string" },
                "kind": { "type": "string", "enum": ["user", "system"] },
                "text": { "type": "string" },
                "data": data,
                "client_id": { "type": "string" },
                "reply_to": { "type": "integer" },
                "created_at": time, "edited_at": time, "deleted_at": time,
                "reactions": { "type": "array", "items": schema("Reaction"), "description": "Emoji in the order first used; empty on a tombstone." }
            }
        },
        "SendMessage": {
            "type": "object",
            "description": "Needs text or data.",
            "properties": {
                "sender_id": { "type": "string", "description": "Required with an API key unless kind is system (then defaults to \"system\"); with a user token, absent or the token's user." },
                "text": { "type": "string", "description": "At most 16 KiB." },
                "data": { "type": "object", "description": "At most 32 KiB." },
                "client_id": { "type": "string", "maxLength": 128, "description": "Idempotency key: a retry answers the original message." },
                "reply_to": { "type": "integer", "description": "The seq replied to." },
                "kind": { "type": "string", "enum": ["user", "system"], "default": "user" }
            }
        },
        "Viewer": {
            "type": "object",
            "description": "Present on conversations read with a user token: the viewer's membership.",
            "properties": {
                "role": { "type": "string", "enum": ["owner", "admin", "member"] },
                "last_read_seq": { "type": "integer" },
                "cleared_seq": { "type": "integer" },
                "unread_count": { "type": "integer" },
                "muted": { "type": "boolean" },
                "hidden": { "type": "boolean" }
            }
        },
        "Conversation": {
            "type": "object",
            "required": ["id", "kind", "name", "icon_url", "data", "created_at", "updated_at",
                         "last_activity_at", "last_seq", "member_count"],
            "properties": {
                "id": { "type": "string" },
                "kind": { "type": "string", "enum": ["direct", "group"] },
                "name": { "type": "string" }, "icon_url": { "type": "string" }, "data": data,
                "created_at": time, "updated_at": time, "last_activity_at": time,
                "last_seq": { "type": "integer" },
                "member_count": { "type": "integer" },
                "last_message": schema("Message"),
                "members": { "type": "array", "items": { "type": "string" }, "description": "The pair, for direct conversations." },
                "role": { "type": "string", "enum": ["owner", "admin", "member"], "description": "User token only." },
                "last_read_seq": { "type": "integer", "description": "User token only." },
                "cleared_seq": { "type": "integer", "description": "User token only." },
                "unread_count": { "type": "integer", "description": "User token only." },
                "muted": { "type": "boolean", "description": "User token only." },
                "hidden": { "type": "boolean", "description": "User token only: the user hid the conversation and nothing came after; it is out of their list until a new message." }
            }
        },
        "CreateConversation": {
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": { "type": "string", "enum": ["group", "direct"] },
                "members": {
                    "type": "array", "items": id,
                    "description": "Group: the members (a user token's user is added as owner). Direct: exactly two with an API key, or the one other person with a user token."
                },
                "id": { "type": "string", "description": "Groups only; server-made when absent." },
                "name": { "type": "string", "maxLength": 256 },
                "icon_url": { "type": "string", "maxLength": 2048 },
                "data": { "type": "object", "description": "At most 16 KiB." }
            }
        },
        "UpdateConversation": {
            "type": "object",
            "description": "Absent fields are left as they are.",
            "properties": {
                "name": { "type": "string", "maxLength": 256 },
                "icon_url": { "type": "string", "maxLength": 2048 },
                "data": { "type": "object", "description": "Replaces the data; at most 16 KiB." }
            }
        },
        "Member": {
            "type": "object",
            "required": ["user_id", "role", "joined_at", "last_read_seq", "cleared_seq", "muted"],
            "properties": {
                "user_id": { "type": "string" },
                "role": { "type": "string", "enum": ["owner", "admin", "member"] },
                "joined_at": time,
                "last_read_seq": { "type": "integer" },
                "cleared_seq": { "type": "integer" },
                "muted": { "type": "boolean" }
            }
        },
        "AddMembers": {
            "type": "object",
            "required": ["user_ids"],
            "properties": { "user_ids": { "type": "array", "items": id, "minItems": 1, "maxItems": 1000 } }
        },
        "AddedMembers": {
            "type": "object",
            "required": ["members"],
            "properties": { "members": { "type": "array", "items": schema("Member") } }
        },
        "MintToken": {
            "type": "object",
            "required": ["user_id"],
            "properties": {
                "user_id": id,
                "ttl_seconds": { "type": "integer", "minimum": 1, "default": 3600, "description": "At most the server's maximum token lifetime." },
                "groups": { "type": "array", "items": { "type": "string" }, "description": "Conversation ids the user joins on connect." },
                "name": { "type": "string" }
            }
        },
        "Minted": {
            "type": "object",
            "required": ["token", "expires_at"],
            "properties": { "token": { "type": "string" }, "expires_at": time }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::ROUTES;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

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
            if matches!(*method, "post" | "patch") {
                assert!(
                    op["requestBody"].is_object(),
                    "{method} {path} documents no request body"
                );
            }
        }
    }

    #[test]
    fn the_document_lists_only_routes_that_exist() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                assert!(METHODS.contains(&method.as_str()), "{method} in {path}");
                assert!(
                    ROUTES.contains(&(method.as_str(), path.as_str())),
                    "{method} {path} is documented but not routed"
                );
            }
        }
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
        walk(doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
    }
}
