//! The `mkondo.v1.Admin` gRPC service against its REST twins (users, their
//! views, presence, notifications, tokens, credentials, reflection). Every RPC
//! is called next to the REST call that does the same and the answers are
//! compared field by field, as are the error codes for bad input, unknown ids,
//! another app's key and missing credentials (`admin_common`). Conversations,
//! messages, blocks and lifecycle are in `admin_grpc_conversations.rs` and
//! `admin_grpc_messages.rs`.

use crate::admin_common::*;
use mkondo_proto::v1::*;
use mkondo_tests::{urlencode, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_match_rest() {
    let (_server, mut grpc, api, _) = setup().await;

    // CreateUser: created over gRPC, read over REST; an upsert answers created: false.
    let made = ok(
        "CreateUser",
        grpc.create_user(CreateUserRequest {
            id: "dave".into(),
            name: Some("Dave".into()),
            avatar_url: Some("https://a.example/d.png".into()),
            data: data(json!({"plan": "pro", "n": 3})),
        })
        .await,
    );
    assert!(made.created);
    let rest_dave = api.get("/v1/users/dave").await.ok();
    assert_same("CreateUser", &rest_dave, &made.user, REST_ONLY);
    let again = ok(
        "CreateUser again",
        grpc.create_user(CreateUserRequest {
            id: "dave".into(),
            ..Default::default()
        })
        .await,
    );
    assert!(!again.created, "an existing user is updated, not created");
    let rest_upsert = api
        .post("/v1/users", json!({"id": "dave"}))
        .await
        .expect(200);
    assert_eq!(
        again.user.as_ref().unwrap().name,
        "Dave",
        "absent fields are kept"
    );
    assert_same(
        "CreateUser upsert",
        &rest_upsert,
        &again.user,
        &["updated_at", "last_seen"],
    );

    // GetUser of a user made over REST.
    let rest_bob = api.get("/v1/users/bob").await.ok();
    let got = ok(
        "GetUser",
        grpc.get_user(GetUserRequest { id: "bob".into() }).await,
    );
    assert_same("GetUser", &rest_bob, &got, REST_ONLY);

    // UpdateUser over gRPC, read over REST; PATCH over REST, read over gRPC.
    let updated = ok(
        "UpdateUser",
        grpc.update_user(UpdateUserRequest {
            id: "bob".into(),
            name: Some("Robert".into()),
            data: data(json!({"k": "v"})),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(updated.name, "Robert");
    assert_same(
        "UpdateUser",
        &api.get("/v1/users/bob").await.ok(),
        &updated,
        REST_ONLY,
    );
    let patched = api
        .patch(
            "/v1/users/carol",
            json!({"avatar_url": "https://a.example/c.png"}),
        )
        .await
        .ok();
    let got = ok(
        "GetUser",
        grpc.get_user(GetUserRequest { id: "carol".into() }).await,
    );
    assert_same("PATCH then GetUser", &patched, &got, REST_ONLY);

    // ListUsers: the same pages, the same cursors.
    let mut cursor = String::new();
    let mut seen = Vec::new();
    loop {
        let page = ok(
            "ListUsers",
            grpc.list_users(ListUsersRequest {
                q: String::new(),
                limit: 2,
                cursor: cursor.clone(),
            })
            .await,
        );
        let rest = api
            .get(&format!("/v1/users?limit=2&cursor={}", urlencode(&cursor)))
            .await
            .ok();
        assert_same("ListUsers page", &rest, &page, REST_ONLY);
        seen.extend(page.items.iter().map(|u| u.id.clone()));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(seen, ["alice", "bob", "carol", "dave"]);
    let searched = ok(
        "ListUsers q",
        grpc.list_users(ListUsersRequest {
            q: "ober".into(),
            ..Default::default()
        })
        .await,
    );
    assert_same(
        "ListUsers q",
        &api.get("/v1/users?q=ober").await.ok(),
        &searched,
        REST_ONLY,
    );
    assert_eq!(searched.items.len(), 1);

    // Errors.
    same_error(
        "GetUser unknown",
        "not_found",
        grpc.get_user(GetUserRequest { id: "ghost".into() }).await,
        api.get("/v1/users/ghost").await,
    );
    same_error(
        "CreateUser bad id",
        "invalid_argument",
        grpc.create_user(CreateUserRequest {
            id: "no spaces".into(),
            ..Default::default()
        })
        .await,
        api.post("/v1/users", json!({"id": "no spaces"})).await,
    );
    same_error(
        "UpdateUser unknown",
        "not_found",
        grpc.update_user(UpdateUserRequest {
            id: "ghost".into(),
            name: Some("G".into()),
            ..Default::default()
        })
        .await,
        api.patch("/v1/users/ghost", json!({"name": "G"})).await,
    );
    same_error(
        "ListUsers limit",
        "invalid_argument",
        grpc.list_users(ListUsersRequest {
            limit: 101,
            ..Default::default()
        })
        .await,
        api.get("/v1/users?limit=101").await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_views_presence_notifications_tokens_match_rest() {
    let (server, mut grpc, api, _) = setup().await;

    // A user's conversations and messages.
    let convs = ok(
        "ListUserConversations",
        grpc.list_user_conversations(UserPageRequest {
            id: "bob".into(),
            ..Default::default()
        })
        .await,
    );
    let rest = api.get("/v1/users/bob/conversations").await.ok();
    assert_same("ListUserConversations", &rest, &convs, CONVERSATION_SKIP);
    assert_eq!(convs.items[0].unread_count, 5);
    let msgs = ok(
        "ListUserMessages",
        grpc.list_user_messages(UserPageRequest {
            id: "alice".into(),
            limit: 2,
            ..Default::default()
        })
        .await,
    );
    let rest = api.get("/v1/users/alice/messages?limit=2").await.ok();
    assert_same("ListUserMessages", &rest, &msgs, &[]);
    assert_eq!(msgs.items.len(), 2);
    assert!(!msgs.next_cursor.is_empty());
    let next = ok(
        "ListUserMessages page 2",
        grpc.list_user_messages(UserPageRequest {
            id: "alice".into(),
            limit: 2,
            cursor: msgs.next_cursor.clone(),
        })
        .await,
    );
    let rest = api
        .get(&format!(
            "/v1/users/alice/messages?limit=2&cursor={}",
            urlencode(&msgs.next_cursor)
        ))
        .await
        .ok();
    assert_same("ListUserMessages page 2", &rest, &next, &[]);
    for (what, grpc_result, path) in [
        (
            "ListUserConversations unknown",
            grpc.list_user_conversations(UserPageRequest {
                id: "ghost".into(),
                ..Default::default()
            })
            .await
            .map(|r| r.map(|_| ())),
            "/v1/users/ghost/conversations",
        ),
        (
            "ListUserMessages unknown",
            grpc.list_user_messages(UserPageRequest {
                id: "ghost".into(),
                ..Default::default()
            })
            .await
            .map(|r| r.map(|_| ())),
            "/v1/users/ghost/messages",
        ),
    ] {
        same_error(what, "not_found", grpc_result, api.get(path).await);
    }

    // Presence: one online user, one offline, an unknown one left out.
    let (_alice, _) = server
        .client(mkondo_tests::Transport::WsJson, "alice")
        .await;
    let presence = ok(
        "GetPresence",
        grpc.get_presence(GetPresenceRequest {
            user_ids: vec!["alice".into(), "bob".into(), "ghost".into()],
        })
        .await,
    );
    let rest = api.get("/v1/presence?users=alice,bob,ghost").await.ok();
    assert_same("GetPresence", &rest, &presence, &[]);
    assert_eq!(presence.presence.len(), 2);
    assert_eq!(presence.presence[0].status, "online");
    same_error(
        "GetPresence none",
        "invalid_argument",
        grpc.get_presence(GetPresenceRequest::default()).await,
        api.get("/v1/presence?users=").await,
    );
    same_error(
        "GetPresence bad id",
        "invalid_argument",
        grpc.get_presence(GetPresenceRequest {
            user_ids: vec!["a b".into()],
        })
        .await,
        api.get("/v1/presence?users=a%20b").await,
    );

    // Notifications: sent over gRPC, listed over REST.
    let sent = ok(
        "SendNotification",
        grpc.send_notification(SendNotificationRequest {
            user_id: "bob".into(),
            payload: data(json!({"type": "follow", "by": "alice"})),
            ttl_seconds: 60,
        })
        .await,
    );
    let pending = api.get("/v1/users/bob/notifications").await.ok();
    assert_same(
        "SendNotification",
        &pending["items"][0],
        &sent,
        &["user_id"],
    );
    let rest_sent = api
        .post(
            "/v1/users/carol/notifications",
            json!({"payload": {"type": "hi"}}),
        )
        .await
        .expect(201);
    assert!(rest_sent["id"].is_string());
    same_error(
        "SendNotification no payload",
        "invalid_argument",
        grpc.send_notification(SendNotificationRequest {
            user_id: "bob".into(),
            ..Default::default()
        })
        .await,
        api.post("/v1/users/bob/notifications", json!({"payload": "text"}))
            .await,
    );
    same_error(
        "SendNotification ttl",
        "invalid_argument",
        grpc.send_notification(SendNotificationRequest {
            user_id: "bob".into(),
            payload: data(json!({"a": 1})),
            ttl_seconds: 365 * 24 * 3600,
        })
        .await,
        api.post(
            "/v1/users/bob/notifications",
            json!({"payload": {"a": 1}, "ttl_seconds": 365 * 24 * 3600}),
        )
        .await,
    );
    same_error(
        "SendNotification unknown user",
        "not_found",
        grpc.send_notification(SendNotificationRequest {
            user_id: "ghost".into(),
            payload: data(json!({"a": 1})),
            ttl_seconds: 0,
        })
        .await,
        api.post(
            "/v1/users/ghost/notifications",
            json!({"payload": {"a": 1}}),
        )
        .await,
    );

    // MintToken: the token works over REST as that user, like REST's own.
    let minted = ok(
        "MintToken",
        grpc.mint_token(MintTokenRequest {
            user_id: "bob".into(),
            ttl_seconds: 600,
            ..Default::default()
        })
        .await,
    );
    let rest_minted = api
        .post("/v1/tokens", json!({"user_id": "bob", "ttl_seconds": 600}))
        .await
        .ok();
    let grpc_exp = minted.expires_at.as_ref().unwrap().seconds;
    assert!(rest_minted["expires_at"].is_string());
    let now = mkondo_tests::now_secs();
    assert!(
        (now + 598..=now + 602).contains(&grpc_exp),
        "expires_at {grpc_exp}, now {now}"
    );
    for token in [
        minted.token.as_str(),
        rest_minted["token"].as_str().unwrap(),
    ] {
        let me = server.rest_as(token).get("/v1/me").await.ok();
        assert_eq!(me["id"], "bob");
    }
    same_error(
        "MintToken bad user",
        "invalid_argument",
        grpc.mint_token(MintTokenRequest {
            user_id: "not valid".into(),
            ..Default::default()
        })
        .await,
        api.post("/v1/tokens", json!({"user_id": "not valid"}))
            .await,
    );
    same_error(
        "MintToken ttl",
        "invalid_argument",
        grpc.mint_token(MintTokenRequest {
            user_id: "bob".into(),
            ttl_seconds: 10 * 365 * 24 * 3600,
            ..Default::default()
        })
        .await,
        api.post(
            "/v1/tokens",
            json!({"user_id": "bob", "ttl_seconds": 10 * 365 * 24 * 3600}),
        )
        .await,
    );
}

/// Missing, wrong and user-token credentials are refused before anything runs;
/// another app's key sees none of this app's data — as over REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_app_isolation_match_rest() {
    let (server, _, api, group) = setup().await;
    let other_key = server.other_apps[0].api_key.clone();
    let other = server.rest_as(&other_key);
    let mut other_grpc = admin_as(&server, Some(&other_key)).await;

    for (what, credential, code) in [
        ("no credentials", None, "unauthenticated"),
        (
            "unknown API key",
            Some("mk_not_a_real_key".to_owned()),
            "unauthenticated",
        ),
        ("garbage", Some("garbage".to_owned()), "invalid_token"),
    ] {
        let mut grpc = admin_as(&server, credential.as_deref()).await;
        let rest = match &credential {
            None => server.rest_anon(),
            Some(c) => server.rest_as(c),
        };
        same_error(
            &format!("ListUsers, {what}"),
            code,
            grpc.list_users(ListUsersRequest::default()).await,
            rest.get("/v1/users").await,
        );
        same_error(
            &format!("SendMessage, {what}"),
            code,
            grpc.send_message(SendMessageRequest {
                conversation_id: group.clone(),
                sender_id: "alice".into(),
                text: "x".into(),
                ..Default::default()
            })
            .await,
            rest.post(
                &format!("/v1/conversations/{group}/messages"),
                json!({"sender_id": "alice", "text": "x"}),
            )
            .await,
        );
    }
    // A user token is not a backend credential.
    let token = server.app.token("alice");
    let mut as_user = admin_as(&server, Some(&token)).await;
    same_error(
        "ListUsers, user token",
        "permission_denied",
        as_user.list_users(ListUsersRequest::default()).await,
        server.rest_as(&token).get("/v1/users").await,
    );

    // Another app's key: this app's users, conversations and messages do not exist.
    same_error(
        "GetUser, other app",
        "not_found",
        other_grpc
            .get_user(GetUserRequest { id: "alice".into() })
            .await,
        other.get("/v1/users/alice").await,
    );
    same_error(
        "GetConversation, other app",
        "not_found",
        other_grpc
            .get_conversation(ConversationIdRequest { id: group.clone() })
            .await,
        other.get(&format!("/v1/conversations/{group}")).await,
    );
    same_error(
        "History, other app",
        "not_found",
        other_grpc
            .history(HistoryPageRequest {
                conversation_id: group.clone(),
                ..Default::default()
            })
            .await,
        other
            .get(&format!("/v1/conversations/{group}/messages"))
            .await,
    );
    same_error(
        "SendMessage, other app",
        "not_found",
        other_grpc
            .send_message(SendMessageRequest {
                conversation_id: group.clone(),
                sender_id: "alice".into(),
                text: "x".into(),
                ..Default::default()
            })
            .await,
        other
            .post(
                &format!("/v1/conversations/{group}/messages"),
                json!({"sender_id": "alice", "text": "x"}),
            )
            .await,
    );
    same_error(
        "DeleteMessage, other app",
        "not_found",
        other_grpc
            .delete_message(MessageRef {
                conversation_id: group.clone(),
                seq: 1,
            })
            .await,
        other
            .delete(&format!("/v1/conversations/{group}/messages/1"))
            .await,
    );
    same_error(
        "ListMembers, other app",
        "not_found",
        other_grpc
            .list_members(ListMembersRequest {
                conversation_id: group.clone(),
                ..Default::default()
            })
            .await,
        other
            .get(&format!("/v1/conversations/{group}/members"))
            .await,
    );
    same_error(
        "DeactivateUser, other app",
        "not_found",
        other_grpc
            .deactivate_user(UserIdRequest { id: "alice".into() })
            .await,
        other.post("/v1/users/alice/deactivate", json!({})).await,
    );
    same_error(
        "SendNotification, other app",
        "not_found",
        other_grpc
            .send_notification(SendNotificationRequest {
                user_id: "alice".into(),
                payload: data(json!({"a": 1})),
                ttl_seconds: 0,
            })
            .await,
        other
            .post(
                "/v1/users/alice/notifications",
                json!({"payload": {"a": 1}}),
            )
            .await,
    );
    let lists = ok(
        "ListUsers, other app",
        other_grpc.list_users(ListUsersRequest::default()).await,
    );
    assert!(lists.items.is_empty());
    assert_same(
        "ListUsers, other app",
        &other.get("/v1/users").await.ok(),
        &lists,
        &[],
    );
    let convs = ok(
        "ListConversations, other app",
        other_grpc.list_conversations(PageRequest::default()).await,
    );
    assert!(convs.items.is_empty());
    let presence = ok(
        "GetPresence, other app",
        other_grpc
            .get_presence(GetPresenceRequest {
                user_ids: vec!["alice".into()],
            })
            .await,
    );
    assert!(presence.presence.is_empty(), "{presence:?}");
    // The main app's data is untouched.
    assert_eq!(api.history_all(&group).await.len(), 5);
}

/// Reflection lists both services, so grpcurl works without the .proto files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = TestServer::start_default().await;
    let mut client = ServerReflectionClient::new(channel(&server).await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("mkondo.v1.Admin".into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection")
        .into_inner();
    let first = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("not a service list: {first:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in ["mkondo.v1.Admin", "mkondo.v1.Realtime"] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    let second = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
        panic!("no file for mkondo.v1.Admin: {second:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

/// The comparison the tests rely on sees through encodings (64-bit integers as
/// strings, Struct numbers as doubles, time zones written two ways, defaults
/// left out) and nothing else.
#[test]
fn the_comparison_finds_real_differences() {
    let grpc = Message {
        id: "m1".into(),
        seq: 7,
        text: "hi".into(),
        data: data(json!({"n": 3})),
        created_at: Some(pbjson_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        ..Default::default()
    };
    let rest = json!({
        "id": "m1", "seq": 7, "text": "hi", "data": {"n": 3}, "client_id": null,
        "created_at": "2023-11-14T22:13:20.000Z", "reactions": [],
    });
    assert_same("equal", &rest, &grpc, &[]);
    for (field, value) in [
        ("text", json!("other")),
        ("seq", json!(8)),
        ("data", json!({"n": 4})),
        ("created_at", json!("2023-11-14T22:13:21.000Z")),
        ("sender_id", json!("bob")),
    ] {
        let mut changed = rest.clone();
        changed[field] = value;
        let caught = std::panic::catch_unwind(|| assert_same(field, &changed, &grpc, &[]));
        assert!(caught.is_err(), "a different {field} went unnoticed");
    }
}
