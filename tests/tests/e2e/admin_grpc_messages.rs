//! The Admin gRPC service against its REST twins: messages (history, send,
//! edit, delete, reactions) and user lifecycle (see `admin_grpc.rs`).

use crate::admin_common::*;
use mkondo_proto::v1::*;
use mkondo_tests::urlencode;
use pbjson_types::Empty;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_match_rest() {
    let (_server, mut grpc, api, group) = setup().await;

    // SendMessage over gRPC; the same client_id over REST answers the original.
    let sent = ok(
        "SendMessage",
        grpc.send_message(SendMessageRequest {
            conversation_id: group.clone(),
            sender_id: "bob".into(),
            text: "over gRPC".into(),
            data: data(json!({"attachments": [{"url": "https://a.example/x"}]})),
            client_id: "g-1".into(),
            reply_to: 2,
            kind: String::new(),
            attachment_ids: Vec::new(),
        })
        .await,
    );
    assert!(!sent.duplicate);
    let message = sent.message.clone().unwrap();
    assert_eq!((message.seq, message.reply_to), (6, 2));
    let rest_dup = api
        .post(
            &format!("/v1/conversations/{group}/messages"),
            json!({"sender_id": "bob", "text": "over gRPC", "client_id": "g-1"}),
        )
        .await
        .expect(200);
    assert_same("SendMessage", &rest_dup, &sent.message, &[]);
    let rest_sent = api.send(&group, "carol", "over REST", "r-1").await;
    let dup = ok(
        "SendMessage duplicate",
        grpc.send_message(SendMessageRequest {
            conversation_id: group.clone(),
            sender_id: "carol".into(),
            text: "over REST".into(),
            client_id: "r-1".into(),
            ..Default::default()
        })
        .await,
    );
    assert!(dup.duplicate);
    assert_same("SendMessage duplicate", &rest_sent, &dup.message, &[]);
    let system = ok(
        "SendMessage system",
        grpc.send_message(SendMessageRequest {
            conversation_id: group.clone(),
            text: "maintenance tonight".into(),
            kind: "system".into(),
            ..Default::default()
        })
        .await,
    );
    let system = system.message.unwrap();
    assert_eq!((system.kind.as_str(), system.seq), ("system", 8));

    // History pages, backward and forward, with cursors.
    for (query, before, after) in [
        ("limit=3", None, None),
        ("limit=3&before=5", Some(5), None),
        ("limit=3&after=0", None, Some(0)),
        ("limit=2&after=6", None, Some(6)),
    ] {
        let page = ok(
            "History",
            grpc.history(HistoryPageRequest {
                conversation_id: group.clone(),
                before,
                after,
                limit: if query.starts_with("limit=2") { 2 } else { 3 },
                cursor: String::new(),
            })
            .await,
        );
        let rest = api
            .get(&format!("/v1/conversations/{group}/messages?{query}"))
            .await
            .ok();
        assert_same(&format!("History {query}"), &rest, &page, &[]);
        if !page.next_cursor.is_empty() {
            let next = ok(
                "History next",
                grpc.history(HistoryPageRequest {
                    conversation_id: group.clone(),
                    limit: 3,
                    cursor: page.next_cursor.clone(),
                    ..Default::default()
                })
                .await,
            );
            let rest = api
                .get(&format!(
                    "/v1/conversations/{group}/messages?limit=3&cursor={}",
                    urlencode(&page.next_cursor)
                ))
                .await
                .ok();
            assert_same(&format!("History {query} next"), &rest, &next, &[]);
        }
    }

    // Edit, react, unreact, delete over gRPC — each read back over REST.
    let edited = ok(
        "EditMessage",
        grpc.edit_message(EditMessageRequest {
            conversation_id: group.clone(),
            seq: 6,
            text: Some("edited over gRPC".into()),
            data: None,
        })
        .await,
    );
    assert!(edited.edited_at.is_some());
    let rest = api.history_all(&group).await;
    assert_same("EditMessage", &rest[5], &edited, &[]);
    let rest_edit = api
        .patch(
            &format!("/v1/conversations/{group}/messages/7"),
            json!({"text": "edited over REST"}),
        )
        .await
        .ok();
    let page = ok(
        "History",
        grpc.history(HistoryPageRequest {
            conversation_id: group.clone(),
            after: Some(6),
            limit: 1,
            ..Default::default()
        })
        .await,
    );
    assert_same("PATCH then History", &rest_edit, &page.items[0], &[]);
    let reacted = ok(
        "AddReaction",
        grpc.add_reaction(ReactionRequest {
            conversation_id: group.clone(),
            seq: 6,
            emoji: "👍".into(),
            user_id: "alice".into(),
        })
        .await,
    );
    assert!(reacted.added);
    let rest_react = api
        .post(
            &format!("/v1/conversations/{group}/messages/6/reactions"),
            json!({"emoji": "👍", "user_id": "alice"}),
        )
        .await
        .expect(200);
    assert_same("AddReaction", &rest_react, &reacted.message, &[]);
    api.post(
        &format!("/v1/conversations/{group}/messages/6/reactions"),
        json!({"emoji": "🎉", "user_id": "carol"}),
    )
    .await
    .expect(201);
    let unreacted = ok(
        "RemoveReaction",
        grpc.remove_reaction(ReactionRequest {
            conversation_id: group.clone(),
            seq: 6,
            emoji: "👍".into(),
            user_id: "alice".into(),
        })
        .await,
    );
    let rest_unreact = api
        .delete(&format!(
            "/v1/conversations/{group}/messages/6/reactions/{}?user_id=alice",
            urlencode("👍")
        ))
        .await
        .ok();
    assert_same("RemoveReaction", &rest_unreact, &unreacted, &[]);
    assert_eq!(unreacted.reactions.len(), 1);
    let deleted = ok(
        "DeleteMessage",
        grpc.delete_message(MessageRef {
            conversation_id: group.clone(),
            seq: 6,
        })
        .await,
    );
    assert!(deleted.deleted_at.is_some() && deleted.text.is_empty());
    let rest_again = api
        .delete(&format!("/v1/conversations/{group}/messages/6"))
        .await
        .ok();
    assert_same("DeleteMessage", &rest_again, &deleted, &[]);

    // Errors.
    same_error(
        "SendMessage without sender",
        "invalid_argument",
        grpc.send_message(SendMessageRequest {
            conversation_id: group.clone(),
            text: "x".into(),
            ..Default::default()
        })
        .await,
        api.post(
            &format!("/v1/conversations/{group}/messages"),
            json!({"text": "x"}),
        )
        .await,
    );
    api.create_users(&["outsider"]).await;
    same_error(
        "SendMessage by a non-member",
        "permission_denied",
        grpc.send_message(SendMessageRequest {
            conversation_id: group.clone(),
            sender_id: "outsider".into(),
            text: "x".into(),
            ..Default::default()
        })
        .await,
        api.post(
            &format!("/v1/conversations/{group}/messages"),
            json!({"sender_id": "outsider", "text": "x"}),
        )
        .await,
    );
    same_error(
        "SendMessage bad reply_to",
        "invalid_argument",
        grpc.send_message(SendMessageRequest {
            conversation_id: group.clone(),
            sender_id: "bob".into(),
            text: "x".into(),
            reply_to: 999,
            ..Default::default()
        })
        .await,
        api.post(
            &format!("/v1/conversations/{group}/messages"),
            json!({"sender_id": "bob", "text": "x", "reply_to": 999}),
        )
        .await,
    );
    same_error(
        "SendMessage unknown conversation",
        "not_found",
        grpc.send_message(SendMessageRequest {
            conversation_id: "nope".into(),
            sender_id: "bob".into(),
            text: "x".into(),
            ..Default::default()
        })
        .await,
        api.post(
            "/v1/conversations/nope/messages",
            json!({"sender_id": "bob", "text": "x"}),
        )
        .await,
    );
    same_error(
        "History before and after",
        "invalid_argument",
        grpc.history(HistoryPageRequest {
            conversation_id: group.clone(),
            before: Some(3),
            after: Some(1),
            ..Default::default()
        })
        .await,
        api.get(&format!(
            "/v1/conversations/{group}/messages?before=3&after=1"
        ))
        .await,
    );
    same_error(
        "History unknown",
        "not_found",
        grpc.history(HistoryPageRequest {
            conversation_id: "nope".into(),
            ..Default::default()
        })
        .await,
        api.get("/v1/conversations/nope/messages").await,
    );
    same_error(
        "EditMessage unknown seq",
        "not_found",
        grpc.edit_message(EditMessageRequest {
            conversation_id: group.clone(),
            seq: 999,
            text: Some("x".into()),
            data: None,
        })
        .await,
        api.patch(
            &format!("/v1/conversations/{group}/messages/999"),
            json!({"text": "x"}),
        )
        .await,
    );
    same_error(
        "DeleteMessage unknown seq",
        "not_found",
        grpc.delete_message(MessageRef {
            conversation_id: group.clone(),
            seq: 999,
        })
        .await,
        api.delete(&format!("/v1/conversations/{group}/messages/999"))
            .await,
    );
    same_error(
        "AddReaction without user",
        "invalid_argument",
        grpc.add_reaction(ReactionRequest {
            conversation_id: group.clone(),
            seq: 7,
            emoji: "👍".into(),
            user_id: String::new(),
        })
        .await,
        api.post(
            &format!("/v1/conversations/{group}/messages/7/reactions"),
            json!({"emoji": "👍"}),
        )
        .await,
    );
    same_error(
        "RemoveReaction by a non-member",
        "permission_denied",
        grpc.remove_reaction(ReactionRequest {
            conversation_id: group.clone(),
            seq: 7,
            emoji: "👍".into(),
            user_id: "outsider".into(),
        })
        .await,
        api.delete(&format!(
            "/v1/conversations/{group}/messages/7/reactions/{}?user_id=outsider",
            urlencode("👍")
        ))
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_matches_rest() {
    let (server, mut grpc, api, group) = setup().await;
    api.create_users(&["dave", "erin"]).await;
    api.post(
        &format!("/v1/conversations/{group}/members"),
        json!({"user_ids": ["dave", "erin"]}),
    )
    .await
    .ok();
    api.send(&group, "dave", "from dave", "d-1").await;
    api.send(&group, "erin", "from erin", "e-1").await;

    // Deactivate / reactivate over gRPC, read over REST, and the other way round.
    let off = ok(
        "DeactivateUser",
        grpc.deactivate_user(UserIdRequest { id: "bob".into() })
            .await,
    );
    assert!(off.deactivated);
    assert_same(
        "DeactivateUser",
        &api.get("/v1/users/bob").await.ok(),
        &off,
        REST_ONLY,
    );
    let bob_token = server.app.token("bob");
    server
        .rest_as(&bob_token)
        .get("/v1/me")
        .await
        .expect_error(403, "permission_denied");
    let on = ok(
        "ReactivateUser",
        grpc.reactivate_user(UserIdRequest { id: "bob".into() })
            .await,
    );
    assert!(!on.deactivated);
    assert_same(
        "ReactivateUser",
        &api.get("/v1/users/bob").await.ok(),
        &on,
        REST_ONLY,
    );
    server.rest_as(&bob_token).get("/v1/me").await.ok();
    let rest_off = api.post("/v1/users/carol/deactivate", json!({})).await.ok();
    let got = ok(
        "GetUser",
        grpc.get_user(GetUserRequest { id: "carol".into() }).await,
    );
    assert_same("REST deactivate then GetUser", &rest_off, &got, REST_ONLY);
    let rest_on = api.post("/v1/users/carol/reactivate", json!({})).await.ok();
    assert_same(
        "REST reactivate",
        &rest_on,
        &ok(
            "GetUser",
            grpc.get_user(GetUserRequest { id: "carol".into() }).await,
        ),
        REST_ONLY,
    );

    // RevokeUserTokens: the old token is refused; both APIs answer the point.
    let old_token = server.app.token("alice");
    let revoked = ok(
        "RevokeUserTokens",
        grpc.revoke_user_tokens(UserIdRequest { id: "alice".into() })
            .await,
    );
    let point = revoked.tokens_valid_after.unwrap();
    assert_eq!(point.nanos, 0, "a revocation point is a whole second");
    server
        .rest_as(&old_token)
        .get("/v1/me")
        .await
        .expect_error(401, "invalid_token");
    let rest_revoked = api
        .post("/v1/users/alice/revoke-tokens", json!({}))
        .await
        .ok();
    assert!(rest_revoked["tokens_valid_after"].is_string());
    let rest_point = normalize_time(rest_revoked["tokens_valid_after"].as_str().unwrap()).unwrap();
    let grpc_point = normalize(&serde_json::to_value(revoked).unwrap())["tokens_valid_after"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(rest_point >= grpc_point, "{rest_point} < {grpc_point}");

    // RevokeAppTokens.
    let carol_token = server.app.token("carol");
    let app_revoked = ok("RevokeAppTokens", grpc.revoke_app_tokens(Empty {}).await);
    assert!(app_revoked.tokens_valid_after.is_some());
    server
        .rest_as(&carol_token)
        .get("/v1/me")
        .await
        .expect_error(401, "invalid_token");
    let rest_app = api.post("/v1/revoke-tokens", json!({})).await.ok();
    assert!(rest_app["tokens_valid_after"].is_string());

    // DeleteUser with erase over gRPC, without over REST: the same shape.
    let deleted = ok(
        "DeleteUser",
        grpc.delete_user(DeleteUserRequest {
            id: "dave".into(),
            erase: true,
        })
        .await,
    );
    assert_eq!((deleted.id.as_str(), deleted.conversations), ("dave", 1));
    assert_eq!(deleted.erased_messages, 1);
    let rest_deleted = api.delete("/v1/users/erin").await.ok();
    assert_same(
        "DeleteUser",
        &rest_deleted,
        &DeleteUserResponse {
            id: "erin".into(),
            erased_messages: 0,
            ..deleted.clone()
        },
        &["tokens_valid_after"],
    );
    same_error(
        "GetUser deleted",
        "not_found",
        grpc.get_user(GetUserRequest { id: "dave".into() }).await,
        api.get("/v1/users/erin").await,
    );
    let history = api.history_all(&group).await;
    let erased = history.iter().find(|m| m["sender_id"] == "dave").unwrap();
    assert!(
        erased["deleted_at"].is_string() && erased["text"] == "",
        "{erased}"
    );

    // Unknown users.
    same_error(
        "DeactivateUser unknown",
        "not_found",
        grpc.deactivate_user(UserIdRequest { id: "ghost".into() })
            .await,
        api.post("/v1/users/ghost/deactivate", json!({})).await,
    );
    same_error(
        "ReactivateUser unknown",
        "not_found",
        grpc.reactivate_user(UserIdRequest { id: "ghost".into() })
            .await,
        api.post("/v1/users/ghost/reactivate", json!({})).await,
    );
    same_error(
        "RevokeUserTokens unknown",
        "not_found",
        grpc.revoke_user_tokens(UserIdRequest { id: "ghost".into() })
            .await,
        api.post("/v1/users/ghost/revoke-tokens", json!({})).await,
    );
    same_error(
        "DeleteUser unknown",
        "not_found",
        grpc.delete_user(DeleteUserRequest {
            id: "ghost".into(),
            erase: false,
        })
        .await,
        api.delete("/v1/users/ghost").await,
    );
}
