//! The OpenAPI entries of message changes (edit, delete, reactions) and role
//! changes, kept apart so the main document stays readable.

use serde_json::{json, Map, Value};

use super::{body, op, path_param, query_param, reply, schema};

/// Edit, delete, react, unreact, change role.
pub(super) fn paths(add: &mut impl FnMut(&str, &str, Value)) {
    let conv_id = || path_param("id", "Conversation id.");
    let seq = || {
        json!({
            "name": "seq", "in": "path", "required": true,
            "description": "The message's seq in the conversation.",
            "schema": { "type": "integer", "minimum": 1 }
        })
    };
    add(
        "/v1/conversations/{id}/members/{user}",
        "patch",
        op(
            "changeRole",
            "members",
            "Change a member's role. A user token: owners and admins; only an owner makes owners or changes an owner's role, and the last owner cannot step down while others remain. Told in history as a system message (event role_changed).",
            vec![conv_id(), path_param("user", "User id of the member.")],
            Some(body("ChangeRole")),
            &[("200", reply("The member as now.", schema("Member")))],
            &["403", "404", "422"],
        ),
    );
    add(
        "/v1/conversations/{id}/messages/{seq}",
        "patch",
        op(
            "editMessage",
            "messages",
            "Edit a message: the sender only (the API key: any message); system messages cannot be edited by users, deleted ones by nobody. Sets edited_at; members receive message_updated (edited).",
            vec![conv_id(), seq()],
            Some(body("EditMessage")),
            &[("200", reply("The message as now.", schema("Message")))],
            &["403", "404", "413", "422"],
        ),
    );
    add(
        "/v1/conversations/{id}/messages/{seq}",
        "delete",
        op(
            "deleteMessage",
            "messages",
            "Delete a message: the sender, an admin or owner of the conversation, or the API key. It becomes a tombstone (text, data and reactions erased, deleted_at set; the seq stays taken); members receive message_updated (deleted). Repeating it answers the tombstone.",
            vec![conv_id(), seq()],
            None,
            &[("200", reply("The tombstone.", schema("Message")))],
            &["403", "404", "422"],
        ),
    );
    add(
        "/v1/conversations/{id}/messages/{seq}/reactions",
        "post",
        op(
            "addReaction",
            "messages",
            "React to a message (a member, for themselves; the API key names the member). Reactions are a set per emoji and user; members receive message_updated (reactions) when it changes.",
            vec![conv_id(), seq()],
            Some(body("AddReaction")),
            &[
                ("201", reply("Added.", schema("Message"))),
                ("200", reply("The user had already reacted so.", schema("Message"))),
            ],
            &["403", "404", "422"],
        ),
    );
    add(
        "/v1/conversations/{id}/messages/{seq}/reactions/{emoji}",
        "delete",
        op(
            "removeReaction",
            "messages",
            "Remove a reaction: the token's user's, or (API key) that of `user_id`. Answers the message whether or not the reaction was there.",
            vec![
                conv_id(),
                seq(),
                path_param("emoji", "The emoji, percent-encoded."),
                query_param(
                    "user_id",
                    "Whose reaction (API key only; required then).",
                    json!({ "type": "string" }),
                ),
            ],
            None,
            &[("200", reply("The message as now.", schema("Message")))],
            &["403", "404", "422"],
        ),
    );
}

/// Adds the schemas these paths use.
pub(super) fn schemas(mut schemas: Value) -> Value {
    let extra = json!({
        "Reaction": {
            "type": "object",
            "required": ["emoji", "user_ids"],
            "properties": {
                "emoji": { "type": "string", "description": "1-32 bytes, no whitespace." },
                "user_ids": { "type": "array", "items": { "type": "string" }, "description": "Earliest first." }
            }
        },
        "EditMessage": {
            "type": "object",
            "description": "Absent fields are kept; the result needs text or data.",
            "properties": {
                "text": { "type": "string", "description": "At most 16 KiB." },
                "data": { "type": "object", "description": "Replaces the data; at most 32 KiB." }
            }
        },
        "AddReaction": {
            "type": "object",
            "required": ["emoji"],
            "properties": {
                "emoji": { "type": "string", "minLength": 1, "maxLength": 32 },
                "user_id": { "type": "string", "description": "Required with an API key; with a user token, absent or the token's user." }
            }
        },
        "ChangeRole": {
            "type": "object",
            "required": ["role"],
            "properties": { "role": { "type": "string", "enum": ["owner", "admin", "member"] } }
        }
    });
    if let (Some(all), Value::Object(extra)) = (schemas.as_object_mut(), extra) {
        all.extend::<Map<String, Value>>(extra);
    }
    schemas
}
