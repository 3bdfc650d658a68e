//! The OpenAPI entries of notifications, blocks, hiding a conversation and
//! presence, kept apart so the main document stays readable.

use serde_json::{json, Value};

use super::{body, op, page_of, paging, path_param, reply, schema};

/// No request body: POST actions that take nothing but their path.
fn no_body() -> Value {
    json!({
        "required": false,
        "description": "Nothing (an empty object is accepted and ignored).",
        "content": { "application/json": { "schema": { "type": "object" } } }
    })
}

/// Notifications, blocks, hide and presence.
pub(super) fn paths(add: &mut impl FnMut(&str, &str, Value)) {
    let user_id = || path_param("id", "User id.");
    add(
        "/v1/users/{id}/notifications",
        "post",
        op(
            "sendNotification",
            "notifications",
            "Push a notification to a user (API key only): delivered live to every connected device, and kept for the next connect until acknowledged or expired.",
            vec![user_id()],
            Some(body("SendNotification")),
            &[("201", reply("Stored and pushed.", schema("Notification")))],
            &["403", "404", "413", "422"],
        ),
    );
    add(
        "/v1/users/{id}/notifications",
        "get",
        op(
            "listNotifications",
            "notifications",
            "A user's pending (unacknowledged, unexpired) notifications, oldest first (API key, or the user's own token).",
            [vec![user_id()], paging()].concat(),
            None,
            &[("200", reply("A page of notifications.", page_of("Notification")))],
            &["403", "404", "422"],
        ),
    );
    add(
        "/v1/users/{id}/notifications/{notification}/ack",
        "post",
        op(
            "ackNotification",
            "notifications",
            "Acknowledge a notification for a user: it is never delivered again, to any device (API key, or the user's own token).",
            vec![user_id(), path_param("notification", "Notification id.")],
            Some(no_body()),
            &[("204", json!({ "description": "Acknowledged." }))],
            &["403", "404"],
        ),
    );
    add(
        "/v1/me/notifications",
        "get",
        op(
            "listMyNotifications",
            "me",
            "The token user's pending notifications, oldest first.",
            paging(),
            None,
            &[(
                "200",
                reply("A page of notifications.", page_of("Notification")),
            )],
            &["403", "422"],
        ),
    );
    add(
        "/v1/me/notifications/{id}/ack",
        "post",
        op(
            "ackMyNotification",
            "me",
            "Acknowledge one of the token user's notifications.",
            vec![path_param("id", "Notification id.")],
            Some(no_body()),
            &[("204", json!({ "description": "Acknowledged." }))],
            &["403", "404"],
        ),
    );

    let blocks = [
        (
            "/v1/users/{id}/blocks",
            "/v1/users/{id}/blocks/{other}",
            "other",
            "",
            true,
        ),
        ("/v1/me/blocks", "/v1/me/blocks/{user}", "user", "My", false),
    ];
    for (list_path, one_path, other, mine, by_id) in blocks {
        let who = if by_id {
            " (API key, or the user's own token)"
        } else {
            " (user token)"
        };
        let base = if by_id { vec![user_id()] } else { vec![] };
        add(
            list_path,
            "post",
            op(
                &format!("block{mine}User"),
                "blocks",
                &format!("Block a user{who}. While the block stands, neither can start or write in their direct conversation (403 blocked) and neither sees the other's presence or typing."),
                base.clone(),
                Some(body("BlockUser")),
                &[
                    ("201", reply("Blocked.", schema("Blocked"))),
                    ("200", reply("The block already stood.", schema("Blocked"))),
                ],
                &["403", "404", "422"],
            ),
        );
        add(
            list_path,
            "get",
            op(
                &format!("list{mine}Blocks"),
                "blocks",
                &format!("The users blocked, by id{who}."),
                [base.clone(), paging()].concat(),
                None,
                &[("200", reply("A page of blocks.", page_of("Block")))],
                &["403", "404", "422"],
            ),
        );
        add(
            one_path,
            "delete",
            op(
                &format!("unblock{mine}User"),
                "blocks",
                &format!("Lift a block (a no-op when there was none){who}."),
                [base, vec![path_param(other, "The blocked user's id.")]].concat(),
                None,
                &[("204", json!({ "description": "Not blocked any more." }))],
                &["403", "404", "422"],
            ),
        );
    }

    add(
        "/v1/users/{id}/conversations/{conversation}/hide",
        "post",
        op(
            "hideConversation",
            "conversations",
            "Hide a conversation for a user (\"delete chat\"; API key, or the user's own token): their history starts after its last message, and it leaves their list until a new message arrives. Their devices are told live.",
            vec![user_id(), path_param("conversation", "Conversation id.")],
            Some(no_body()),
            &[("200", reply("The conversation as the user now sees it.", schema("Conversation")))],
            &["403", "404"],
        ),
    );
    add(
        "/v1/me/conversations/{id}/hide",
        "post",
        op(
            "hideMyConversation",
            "me",
            "Hide a conversation for the token user (\"delete chat\").",
            vec![path_param("id", "Conversation id.")],
            Some(no_body()),
            &[(
                "200",
                reply(
                    "The conversation as the user now sees it.",
                    schema("Conversation"),
                ),
            )],
            &["403", "404"],
        ),
    );

    add(
        "/v1/presence",
        "get",
        op(
            "getPresence",
            "presence",
            "Presence and last seen of up to 100 users. The API key reads any user of the app; a user token only people sharing a conversation with it and with no block between them. Unknown and invisible users are left out.",
            vec![json!({
                "name": "users", "in": "query", "required": true,
                "description": "Comma-separated user ids (at most 100).",
                "schema": { "type": "string" }
            })],
            None,
            &[("200", reply("Their presence.", schema("PresenceList")))],
            &["422"],
        ),
    );
}

/// Adds the schemas of these routes to `schemas`.
pub(super) fn schemas(mut schemas: Value) -> Value {
    let time = json!({ "type": "string", "format": "date-time" });
    let data = json!({ "type": "object", "description": "Custom JSON object." });
    let id = json!({ "type": "string", "pattern": "^[A-Za-z0-9._@:-]{1,128}$" });
    let extra = json!({
        "SendNotification": {
            "type": "object",
            "required": ["payload"],
            "properties": {
                "payload": { "type": "object", "description": "Opaque to the server; at most 16 KiB." },
                "ttl_seconds": { "type": "integer", "minimum": 1, "maximum": 2_592_000, "default": 604_800, "description": "Kept this long for a user who does not acknowledge it (default 7 days, at most 30)." }
            }
        },
        "Notification": {
            "type": "object",
            "required": ["id", "user_id", "payload", "created_at", "expires_at"],
            "properties": {
                "id": { "type": "string" }, "user_id": { "type": "string" }, "payload": data,
                "created_at": time, "expires_at": time
            }
        },
        "BlockUser": {
            "type": "object",
            "required": ["user_id"],
            "properties": { "user_id": id }
        },
        "Blocked": {
            "type": "object",
            "required": ["user_id", "blocked"],
            "properties": { "user_id": { "type": "string" }, "blocked": { "type": "boolean" } }
        },
        "Block": {
            "type": "object",
            "required": ["user_id", "created_at"],
            "properties": { "user_id": { "type": "string", "description": "The blocked user." }, "created_at": time }
        },
        "Presence": {
            "type": "object",
            "required": ["user_id", "status"],
            "properties": {
                "user_id": { "type": "string" },
                "status": { "type": "string", "enum": ["online", "away", "offline"] },
                "last_seen": time
            }
        },
        "PresenceList": {
            "type": "object",
            "required": ["presence"],
            "properties": { "presence": { "type": "array", "items": schema("Presence") } }
        }
    });
    if let (Some(all), Value::Object(extra)) = (schemas.as_object_mut(), extra) {
        all.extend(extra);
    }
    schemas
}
