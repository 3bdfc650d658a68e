//! The OpenAPI entries of user lifecycle and token revocation (API key) and of
//! the operator API (`/v1/admin/apps`, operator secret), kept apart so the main
//! document stays readable.

use serde_json::{json, Map, Value};

use super::{body, op, path_param, query_param, reply, schema};

/// No request body: actions that take nothing but their path.
fn no_body() -> Value {
    json!({
        "required": false,
        "description": "Nothing (a body is ignored).",
        "content": { "application/json": { "schema": { "type": "object" } } }
    })
}

/// Deactivate, reactivate, revoke tokens, delete users; the operator API.
pub(super) fn paths(add: &mut impl FnMut(&str, &str, Value)) {
    let user_id = || path_param("id", "User id.");
    add(
        "/v1/users/{id}/deactivate",
        "post",
        op(
            "deactivateUser",
            "users",
            "Deactivate a user (API key only): their live connections close within a second with disconnect code 3501 user_deactivated, and their tokens are refused (connect: 3501; REST: 403 permission_denied, reason user_deactivated) until reactivated. Idempotent.",
            vec![user_id()],
            Some(no_body()),
            &[("200", reply("The user, deactivated.", schema("User")))],
            &["403", "404"],
        ),
    );
    add(
        "/v1/users/{id}/reactivate",
        "post",
        op(
            "reactivateUser",
            "users",
            "Reactivate a user (API key only): their tokens are accepted again, unless revoked. Idempotent.",
            vec![user_id()],
            Some(no_body()),
            &[("200", reply("The user, active.", schema("User")))],
            &["403", "404"],
        ),
    );
    add(
        "/v1/users/{id}/revoke-tokens",
        "post",
        op(
            "revokeUserTokens",
            "users",
            "Refuse the user's tokens issued up to now (API key only): every token whose iat falls in the current second or before; their live connections holding one close within a second with 3502 tokens_revoked. Tokens with a later iat work.",
            vec![user_id()],
            Some(no_body()),
            &[("200", reply("The revocation point.", schema("Revoked")))],
            &["403", "404"],
        ),
    );
    let mut delete = op(
        "deleteUser",
        "users",
        "Delete a user (API key only), in one transaction: their memberships (the members of each conversation receive member_left), blocks and notifications go, their live connections close with 3505 user_deleted, and tokens issued up to now stay refused. Their messages are kept with their sender id, or with erase=true become tombstones (text and data erased, deleted_at set) in every conversation, and their reactions go.",
        vec![
            user_id(),
            query_param(
                "erase",
                "Also erase every message the user sent.",
                json!({ "type": "boolean", "default": false }),
            ),
        ],
        None,
        &[("200", reply("What was deleted.", schema("DeletedUser")))],
        &["403", "404", "422"],
    );
    delete["description"] = json!("Live clients see erased messages as tombstones on their next history read; no message_updated is pushed for them.");
    add("/v1/users/{id}", "delete", delete);
    add(
        "/v1/revoke-tokens",
        "post",
        op(
            "revokeAppTokens",
            "users",
            "Refuse every token of the app issued up to now (API key only): every live connection holding one closes within a second with 3502 tokens_revoked.",
            vec![],
            Some(no_body()),
            &[("200", reply("The revocation point.", schema("Revoked")))],
            &["403"],
        ),
    );
    admin_paths(add);
}

fn admin_paths(add: &mut impl FnMut(&str, &str, Value)) {
    let app_id = || path_param("app", "App id.");
    let operator = |mut o: Value| {
        o["security"] = json!([{ "operator": [] }]);
        o
    };
    add(
        "/v1/admin/apps",
        "get",
        operator(op(
            "listApps",
            "admin",
            "Every app, with its signing key ids and API-key prefixes (never secrets).",
            vec![],
            None,
            &[(
                "200",
                reply("All apps (next_cursor is null).", super::page_of("App")),
            )],
            &["404"],
        )),
    );
    add(
        "/v1/admin/apps",
        "post",
        operator(op(
            "createApp",
            "admin",
            "Create an app: answers its id, an HS256 signing key and an API key, shown this once.",
            vec![],
            Some(body("CreateApp")),
            &[(
                "201",
                reply("The new app's credentials.", schema("AppCredentials")),
            )],
            &["404", "409", "422"],
        )),
    );
    add(
        "/v1/admin/apps/{app}/keys",
        "post",
        operator(op(
            "addSigningKey",
            "admin",
            "Rotate: add a signing key. No body (or {}) makes a new HS256 key and answers its secret once; {alg, public_key} registers an RS256 / ES256 / EdDSA public key. Tokens signed with the older keys keep working until those are removed.",
            vec![app_id()],
            Some(json!({
                "required": false,
                "content": { "application/json": { "schema": schema("AddSigningKey") } }
            })),
            &[("201", reply("The new key.", schema("SigningKey")))],
            &["404", "422"],
        )),
    );
    add(
        "/v1/admin/apps/{app}/keys/{kid}",
        "delete",
        operator(op(
            "removeSigningKey",
            "admin",
            "Remove a signing key: tokens with its kid are refused, and live connections whose current token it signed close within a second with 3502 tokens_revoked. The app's last key cannot be removed (422).",
            vec![app_id(), path_param("kid", "The key id.")],
            None,
            &[("204", json!({ "description": "Removed." }))],
            &["404", "422"],
        )),
    );
    add(
        "/v1/admin/apps/{app}/api-keys",
        "post",
        operator(op(
            "createApiKey",
            "admin",
            "Create another API key for the app, shown this once.",
            vec![app_id()],
            Some(no_body()),
            &[(
                "201",
                reply("The key and its prefix.", schema("CreatedApiKey")),
            )],
            &["404"],
        )),
    );
    add(
        "/v1/admin/apps/{app}/api-keys/{prefix}",
        "delete",
        operator(op(
            "revokeApiKey",
            "admin",
            "Revoke an API key by its prefix: requests with it get 401 from now on.",
            vec![
                app_id(),
                path_param("prefix", "The key's prefix, as listed."),
            ],
            None,
            &[("204", json!({ "description": "Revoked." }))],
            &["404"],
        )),
    );
    add(
        "/v1/admin/apps/{app}/revoke-tokens",
        "post",
        operator(op(
            "revokeAppTokensAsOperator",
            "admin",
            "As POST /v1/revoke-tokens with the app's API key: every token issued up to now is refused, live connections holding one close with 3502.",
            vec![app_id()],
            Some(no_body()),
            &[("200", reply("The revocation point.", schema("Revoked")))],
            &["404"],
        )),
    );
}

pub(super) fn schemas(mut schemas: Value) -> Value {
    let time = json!({ "type": "string", "format": "date-time" });
    let extra = json!({
        "Revoked": {
            "type": "object",
            "required": ["tokens_valid_after"],
            "properties": {
                "tokens_valid_after": {
                    "type": "string", "format": "date-time",
                    "description": "Tokens with an iat before this are refused: the start of the second after the revocation (iat has whole seconds, so a token signed in the revocation's second is refused too)."
                }
            }
        },
        "DeletedUser": {
            "type": "object",
            "required": ["id", "conversations", "erased_messages", "tokens_valid_after"],
            "properties": {
                "id": { "type": "string" },
                "conversations": { "type": "integer", "description": "Conversations the user was removed from." },
                "erased_messages": { "type": "integer", "description": "Messages erased (0 without erase=true)." },
                "tokens_valid_after": { "type": "string", "format": "date-time", "description": "Tokens of this user id with an earlier iat stay refused, also if the id is created again." }
            }
        },
        "App": {
            "type": "object",
            "required": ["app_id", "name", "created_at", "auto_create_users", "signing_keys", "api_keys"],
            "properties": {
                "app_id": { "type": "string" }, "name": { "type": "string" }, "created_at": time,
                "auto_create_users": { "type": "boolean" },
                "signing_keys": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kid", "alg", "created_at"],
                        "properties": { "kid": { "type": "string" }, "alg": { "type": "string" }, "created_at": time }
                    }
                },
                "api_keys": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["prefix", "created_at"],
                        "properties": { "prefix": { "type": "string" }, "created_at": time, "revoked_at": time }
                    }
                }
            }
        },
        "CreateApp": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 200 },
                "id": { "type": "string", "description": "Chosen app id (A-Z a-z 0-9 . @ : -, no underscore); generated when absent." }
            }
        },
        "SigningKey": {
            "type": "object",
            "required": ["kid", "alg"],
            "properties": {
                "kid": { "type": "string" },
                "alg": { "type": "string", "enum": ["HS256", "RS256", "ES256", "EdDSA"] },
                "secret": { "type": "string", "description": "HS256 only: the shared secret, shown this once." }
            }
        },
        "AppCredentials": {
            "type": "object",
            "required": ["app_id", "name", "signing_key", "api_key"],
            "properties": {
                "app_id": { "type": "string" }, "name": { "type": "string" },
                "signing_key": schema("SigningKey"),
                "api_key": { "type": "string", "description": "Shown this once." }
            }
        },
        "AddSigningKey": {
            "type": "object",
            "properties": {
                "alg": { "type": "string", "enum": ["HS256", "RS256", "ES256", "EdDSA"], "default": "HS256" },
                "public_key": { "type": "string", "description": "PEM public key; required for RS256, ES256 and EdDSA, refused for HS256." }
            }
        },
        "CreatedApiKey": {
            "type": "object",
            "required": ["api_key", "prefix"],
            "properties": {
                "api_key": { "type": "string", "description": "Shown this once." },
                "prefix": { "type": "string", "description": "Names the key when listing or revoking it." }
            }
        }
    });
    if let (Some(all), Value::Object(extra)) = (schemas.as_object_mut(), extra) {
        let extra: Map<String, Value> = extra;
        all.extend(extra);
    }
    schemas
}
