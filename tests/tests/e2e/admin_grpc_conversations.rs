//! The Admin gRPC service against its REST twins: conversations, members,
//! blocks and hiding a conversation (see `admin_grpc.rs`).

use crate::admin_common::*;
use mkondo_proto::v1::*;
use mkondo_tests::urlencode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_and_members_match_rest() {
    let (_server, mut grpc, api, trio) = setup().await;
    api.create_users(&["dave", "erin"]).await;

    // CreateConversation (group) over gRPC, read over REST; and the other way.
    let made = ok(
        "CreateConversation",
        grpc.create_conversation(CreateConversationRequest {
            kind: "group".into(),
            members: vec!["alice".into(), "bob".into()],
            id: "g-grpc".into(),
            name: Some("Over gRPC".into()),
            icon_url: Some("https://a.example/g.png".into()),
            data: data(json!({"topic": "x"})),
        })
        .await,
    );
    assert!(made.created);
    let rest = api.get("/v1/conversations/g-grpc").await.ok();
    assert_same(
        "CreateConversation",
        &rest,
        &made.conversation,
        CONVERSATION_SKIP,
    );
    let got = ok(
        "GetConversation",
        grpc.get_conversation(ConversationIdRequest { id: trio.clone() })
            .await,
    );
    let rest = api.get(&format!("/v1/conversations/{trio}")).await.ok();
    assert_same("GetConversation", &rest, &got, CONVERSATION_SKIP);
    assert_eq!(got.last_seq, 5);
    assert_eq!(got.last_message.as_ref().unwrap().text, "hello 5");

    // Direct: created once, found the second time by either API.
    let direct = ok(
        "CreateConversation direct",
        grpc.create_conversation(CreateConversationRequest {
            kind: "direct".into(),
            members: vec!["carol".into(), "dave".into()],
            ..Default::default()
        })
        .await,
    );
    assert!(direct.created);
    let rest_direct = api
        .post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["dave", "carol"]}),
        )
        .await
        .expect(200);
    assert_same(
        "direct again",
        &rest_direct,
        &direct.conversation,
        CONVERSATION_SKIP,
    );
    let again = ok(
        "CreateConversation direct again",
        grpc.create_conversation(CreateConversationRequest {
            kind: "direct".into(),
            members: vec!["dave".into(), "carol".into()],
            ..Default::default()
        })
        .await,
    );
    assert!(!again.created);
    assert_eq!(again.conversation, direct.conversation);

    // ListConversations: the same pages.
    let mut cursor = String::new();
    let mut count = 0;
    loop {
        let page = ok(
            "ListConversations",
            grpc.list_conversations(PageRequest {
                limit: 2,
                cursor: cursor.clone(),
            })
            .await,
        );
        let rest = api
            .get(&format!(
                "/v1/conversations?limit=2&cursor={}",
                urlencode(&cursor)
            ))
            .await
            .ok();
        assert_same("ListConversations", &rest, &page, CONVERSATION_SKIP);
        count += page.items.len();
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(count, 3);

    // UpdateConversation over gRPC, read over REST; PATCH over REST, read over gRPC.
    let renamed = ok(
        "UpdateConversation",
        grpc.update_conversation(UpdateConversationRequest {
            id: "g-grpc".into(),
            name: Some("Renamed".into()),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(renamed.name, "Renamed");
    assert_eq!(
        renamed.icon_url, "https://a.example/g.png",
        "absent fields are kept"
    );
    let rest = api.get("/v1/conversations/g-grpc").await.ok();
    assert_same("UpdateConversation", &rest, &renamed, CONVERSATION_SKIP);
    let patched = api
        .patch(
            &format!("/v1/conversations/{trio}"),
            json!({"data": {"a": 1}}),
        )
        .await
        .ok();
    let got = ok(
        "GetConversation",
        grpc.get_conversation(ConversationIdRequest { id: trio.clone() })
            .await,
    );
    assert_same(
        "PATCH then GetConversation",
        &patched,
        &got,
        CONVERSATION_SKIP,
    );

    // Members: add, list, change a role, remove — each compared with REST.
    let added = ok(
        "AddMembers",
        grpc.add_members(AddMembersRequest {
            conversation_id: "g-grpc".into(),
            user_ids: vec!["carol".into(), "alice".into()],
        })
        .await,
    );
    assert_eq!(added.members.len(), 1, "alice was a member already");
    let rest_added = api
        .post(
            "/v1/conversations/g-grpc/members",
            json!({"user_ids": ["dave"]}),
        )
        .await
        .expect(201);
    assert_eq!(rest_added["members"][0]["user_id"], "dave");
    let members = ok(
        "ListMembers",
        grpc.list_members(ListMembersRequest {
            conversation_id: "g-grpc".into(),
            ..Default::default()
        })
        .await,
    );
    let rest_members = api.get("/v1/conversations/g-grpc/members").await.ok();
    assert_same("ListMembers", &rest_members, &members, &[]);
    let ids: Vec<&str> = members.items.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(ids, ["alice", "bob", "carol", "dave"]);
    let carol = rest_members["items"][2].clone();
    assert_same("AddMembers", &json!({"members": [carol]}), &added, &[]);
    let promoted = ok(
        "SetMemberRole",
        grpc.set_member_role(SetMemberRoleRequest {
            conversation_id: "g-grpc".into(),
            user_id: "carol".into(),
            role: "admin".into(),
        })
        .await,
    );
    assert_eq!(promoted.role, "admin");
    let rest_members = api.get("/v1/conversations/g-grpc/members").await.ok();
    assert_same("SetMemberRole", &rest_members["items"][2], &promoted, &[]);
    let rest_promoted = api
        .patch(
            "/v1/conversations/g-grpc/members/dave",
            json!({"role": "admin"}),
        )
        .await
        .ok();
    let members = ok(
        "ListMembers",
        grpc.list_members(ListMembersRequest {
            conversation_id: "g-grpc".into(),
            ..Default::default()
        })
        .await,
    );
    assert_same(
        "PATCH role then ListMembers",
        &rest_promoted,
        &members.items[3],
        &[],
    );
    ok(
        "RemoveMember",
        grpc.remove_member(RemoveMemberRequest {
            conversation_id: "g-grpc".into(),
            user_id: "carol".into(),
        })
        .await,
    );
    api.delete("/v1/conversations/g-grpc/members/dave")
        .await
        .expect(204);
    let members = ok(
        "ListMembers",
        grpc.list_members(ListMembersRequest {
            conversation_id: "g-grpc".into(),
            limit: 1,
            ..Default::default()
        })
        .await,
    );
    let rest_members = api
        .get("/v1/conversations/g-grpc/members?limit=1")
        .await
        .ok();
    assert_same("ListMembers after removals", &rest_members, &members, &[]);
    let rest_all = api.get("/v1/conversations/g-grpc/members").await.ok();
    assert_eq!(rest_all["items"].as_array().unwrap().len(), 2);

    // Delete: one conversation over each API; both are gone the same way.
    let by_grpc = api
        .create_group("deleted over gRPC", &["alice", "bob"])
        .await;
    let by_rest = api
        .create_group("deleted over REST", &["alice", "bob"])
        .await;
    ok(
        "DeleteConversation",
        grpc.delete_conversation(ConversationIdRequest {
            id: by_grpc.clone(),
        })
        .await,
    );
    api.delete(&format!("/v1/conversations/{by_rest}"))
        .await
        .expect(204);
    for gone in [&by_grpc, &by_rest] {
        same_error(
            "GetConversation after DeleteConversation",
            "not_found",
            grpc.get_conversation(ConversationIdRequest { id: gone.clone() })
                .await,
            api.get(&format!("/v1/conversations/{gone}")).await,
        );
    }
    same_error(
        "DeleteConversation twice",
        "not_found",
        grpc.delete_conversation(ConversationIdRequest {
            id: by_grpc.clone(),
        })
        .await,
        api.delete(&format!("/v1/conversations/{by_rest}")).await,
    );

    // Errors.
    same_error(
        "CreateConversation bad kind",
        "invalid_argument",
        grpc.create_conversation(CreateConversationRequest {
            kind: "triangle".into(),
            ..Default::default()
        })
        .await,
        api.post("/v1/conversations", json!({"kind": "triangle"}))
            .await,
    );
    same_error(
        "CreateConversation bad member id",
        "invalid_argument",
        grpc.create_conversation(CreateConversationRequest {
            kind: "group".into(),
            members: vec!["a b".into()],
            ..Default::default()
        })
        .await,
        api.post(
            "/v1/conversations",
            json!({"kind": "group", "members": ["a b"]}),
        )
        .await,
    );
    same_error(
        "CreateConversation direct of three",
        "invalid_argument",
        grpc.create_conversation(CreateConversationRequest {
            kind: "direct".into(),
            members: vec!["alice".into(), "bob".into(), "carol".into()],
            ..Default::default()
        })
        .await,
        api.post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["alice", "bob", "carol"]}),
        )
        .await,
    );
    same_error(
        "CreateConversation taken id",
        "already_exists",
        grpc.create_conversation(CreateConversationRequest {
            kind: "group".into(),
            id: "g-grpc".into(),
            ..Default::default()
        })
        .await,
        api.post(
            "/v1/conversations",
            json!({"kind": "group", "id": "g-grpc"}),
        )
        .await,
    );
    same_error(
        "GetConversation unknown",
        "not_found",
        grpc.get_conversation(ConversationIdRequest { id: "nope".into() })
            .await,
        api.get("/v1/conversations/nope").await,
    );
    same_error(
        "UpdateConversation unknown",
        "not_found",
        grpc.update_conversation(UpdateConversationRequest {
            id: "nope".into(),
            name: Some("x".into()),
            ..Default::default()
        })
        .await,
        api.patch("/v1/conversations/nope", json!({"name": "x"}))
            .await,
    );
    same_error(
        "ListConversations limit",
        "invalid_argument",
        grpc.list_conversations(PageRequest {
            limit: 500,
            cursor: String::new(),
        })
        .await,
        api.get("/v1/conversations?limit=500").await,
    );
    same_error(
        "ListMembers unknown",
        "not_found",
        grpc.list_members(ListMembersRequest {
            conversation_id: "nope".into(),
            ..Default::default()
        })
        .await,
        api.get("/v1/conversations/nope/members").await,
    );
    same_error(
        "AddMembers bad id",
        "invalid_argument",
        grpc.add_members(AddMembersRequest {
            conversation_id: "g-grpc".into(),
            user_ids: vec!["a b".into()],
        })
        .await,
        api.post(
            "/v1/conversations/g-grpc/members",
            json!({"user_ids": ["a b"]}),
        )
        .await,
    );
    same_error(
        "SetMemberRole bad role",
        "invalid_argument",
        grpc.set_member_role(SetMemberRoleRequest {
            conversation_id: "g-grpc".into(),
            user_id: "bob".into(),
            role: "king".into(),
        })
        .await,
        api.patch(
            "/v1/conversations/g-grpc/members/bob",
            json!({"role": "king"}),
        )
        .await,
    );
    same_error(
        "RemoveMember unknown conversation",
        "not_found",
        grpc.remove_member(RemoveMemberRequest {
            conversation_id: "nope".into(),
            user_id: "bob".into(),
        })
        .await,
        api.delete("/v1/conversations/nope/members/bob").await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_and_hide_match_rest() {
    let (_server, mut grpc, api, group) = setup().await;

    let blocked = ok(
        "BlockUser",
        grpc.block_user(BlockUserRequest {
            user_id: "alice".into(),
            blocked_user_id: "bob".into(),
        })
        .await,
    );
    assert!(blocked.created && blocked.blocked);
    let rest_again = api
        .post("/v1/users/alice/blocks", json!({"user_id": "bob"}))
        .await
        .expect(200);
    assert_same("BlockUser", &rest_again, &blocked, &["created"]);
    api.post("/v1/users/alice/blocks", json!({"user_id": "carol"}))
        .await
        .expect(201);
    let list = ok(
        "ListBlocks",
        grpc.list_blocks(UserPageRequest {
            id: "alice".into(),
            ..Default::default()
        })
        .await,
    );
    assert_same(
        "ListBlocks",
        &api.get("/v1/users/alice/blocks").await.ok(),
        &list,
        &[],
    );
    let ids: Vec<&str> = list.items.iter().map(|b| b.user_id.as_str()).collect();
    assert_eq!(ids, ["bob", "carol"]);
    // The block holds: no direct conversation between them, over either API.
    same_error(
        "CreateConversation direct while blocked",
        "blocked",
        grpc.create_conversation(CreateConversationRequest {
            kind: "direct".into(),
            members: vec!["alice".into(), "bob".into()],
            ..Default::default()
        })
        .await,
        api.post(
            "/v1/conversations",
            json!({"kind": "direct", "members": ["alice", "bob"]}),
        )
        .await,
    );
    ok(
        "UnblockUser",
        grpc.unblock_user(BlockUserRequest {
            user_id: "alice".into(),
            blocked_user_id: "bob".into(),
        })
        .await,
    );
    api.delete("/v1/users/alice/blocks/carol").await.expect(204);
    let list = ok(
        "ListBlocks",
        grpc.list_blocks(UserPageRequest {
            id: "alice".into(),
            ..Default::default()
        })
        .await,
    );
    assert!(list.items.is_empty());
    assert_same(
        "ListBlocks empty",
        &api.get("/v1/users/alice/blocks").await.ok(),
        &list,
        &[],
    );

    // Read positions and the total unread count, from either API.
    let total = ok(
        "GetUnreadTotal",
        grpc.get_unread_total(UserIdRequest { id: "bob".into() })
            .await,
    );
    assert_same(
        "GetUnreadTotal",
        &api.get("/v1/users/bob/unread").await.ok(),
        &total,
        &[],
    );
    let read = ok(
        "MarkRead",
        grpc.mark_read(MarkReadRequest {
            user_id: "bob".into(),
            conversation_id: group.clone(),
            seq: 2,
        })
        .await,
    );
    assert_eq!(read.last_read_seq, 2);
    let rest_read = api
        .post(
            &format!("/v1/users/bob/conversations/{group}/read"),
            json!({"seq": 2}),
        )
        .await
        .ok();
    assert_same("MarkRead", &rest_read, &read, &[]);
    let after = ok(
        "GetUnreadTotal",
        grpc.get_unread_total(UserIdRequest { id: "bob".into() })
            .await,
    );
    assert_eq!(after.total, read.unread_count, "bob is in one conversation");
    same_error(
        "MarkRead unknown user",
        "not_found",
        grpc.mark_read(MarkReadRequest {
            user_id: "ghost".into(),
            conversation_id: group.clone(),
            seq: 1,
        })
        .await,
        api.post(
            &format!("/v1/users/ghost/conversations/{group}/read"),
            json!({"seq": 1}),
        )
        .await,
    );
    same_error(
        "GetUnreadTotal unknown user",
        "not_found",
        grpc.get_unread_total(UserIdRequest { id: "ghost".into() })
            .await,
        api.get("/v1/users/ghost/unread").await,
    );

    // Hide: the conversation as that user now sees it, from either API.
    let hidden = ok(
        "HideConversation",
        grpc.hide_conversation(HideConversationRequest {
            user_id: "bob".into(),
            conversation_id: group.clone(),
        })
        .await,
    );
    assert!(hidden.hidden);
    assert_eq!((hidden.cleared_seq, hidden.unread_count), (5, 0));
    let rest_hide = api
        .post(
            &format!("/v1/users/bob/conversations/{group}/hide"),
            json!({}),
        )
        .await
        .ok();
    assert_same("HideConversation", &rest_hide, &hidden, CONVERSATION_SKIP);
    let rest_history = api.get("/v1/users/bob/conversations").await.ok();
    assert!(
        rest_history["items"].as_array().unwrap().is_empty(),
        "hidden from bob's list: {rest_history}"
    );

    // Errors.
    same_error(
        "BlockUser self",
        "permission_denied",
        grpc.block_user(BlockUserRequest {
            user_id: "alice".into(),
            blocked_user_id: "alice".into(),
        })
        .await,
        api.post("/v1/users/alice/blocks", json!({"user_id": "alice"}))
            .await,
    );
    same_error(
        "BlockUser unknown",
        "not_found",
        grpc.block_user(BlockUserRequest {
            user_id: "alice".into(),
            blocked_user_id: "ghost".into(),
        })
        .await,
        api.post("/v1/users/alice/blocks", json!({"user_id": "ghost"}))
            .await,
    );
    same_error(
        "ListBlocks unknown",
        "not_found",
        grpc.list_blocks(UserPageRequest {
            id: "ghost".into(),
            ..Default::default()
        })
        .await,
        api.get("/v1/users/ghost/blocks").await,
    );
    same_error(
        "UnblockUser unknown user",
        "not_found",
        grpc.unblock_user(BlockUserRequest {
            user_id: "ghost".into(),
            blocked_user_id: "bob".into(),
        })
        .await,
        api.delete("/v1/users/ghost/blocks/bob").await,
    );
    same_error(
        "HideConversation unknown user",
        "not_found",
        grpc.hide_conversation(HideConversationRequest {
            user_id: "ghost".into(),
            conversation_id: group.clone(),
        })
        .await,
        api.post(
            &format!("/v1/users/ghost/conversations/{group}/hide"),
            json!({}),
        )
        .await,
    );
    same_error(
        "HideConversation unknown conversation",
        "not_found",
        grpc.hide_conversation(HideConversationRequest {
            user_id: "bob".into(),
            conversation_id: "nope".into(),
        })
        .await,
        api.post("/v1/users/bob/conversations/nope/hide", json!({}))
            .await,
    );
}
