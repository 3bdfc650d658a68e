//! The chat screen's calls about people and groups through the SDK, over each
//! native transport: members with profiles, users by id, the directory, one's
//! own profile, editing a group, roles, deleting a group, blocks and the total
//! unread count — with the refusals a careless or hostile client meets.

use crate::sdk_common::{client, connected, kind};
use mkondo_sdk::{Config, ConversationUpdate, Error, ErrorCode, Event, ProfileUpdate, Role};
use mkondo_tests::{per_transport, ServerOptions, TestServer, Transport};
use serde_json::json;

per_transport!(
    members_profiles_and_groups,
    the_directory_is_the_apps_to_open
);

fn config(server: &TestServer, transport: Transport, user: &str) -> Config {
    Config::new(format!("http://{}", server.addr), kind(transport))
        .with_token(server.app.token(user))
}

#[track_caller]
fn assert_code(err: &Error, code: ErrorCode) {
    assert!(
        matches!(err, Error::Server { code: c, .. } if *c == code),
        "expected {code:?}, got {err:?}"
    );
}

async fn members_profiles_and_groups(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol", "dave"]).await;
    let (alice, alice_events) = client(config(&server, transport, "alice"));
    let (bob, bob_events) = client(config(&server, transport, "bob"));
    let (carol, _) = client(config(&server, transport, "carol"));
    let (dave, _) = client(config(&server, transport, "dave"));
    for c in [&alice, &bob, &carol, &dave] {
        connected(c).await;
    }
    let group = alice
        .create_group(mkondo_sdk::NewGroup {
            name: "team".into(),
            members: vec!["bob".into(), "carol".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .id;

    // Members, paged, each with a role and a profile.
    let first = alice.members(&group, None, Some(2)).await.unwrap();
    let ids: Vec<&str> = first.items.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(ids, ["alice", "bob"]);
    assert_eq!(first.items[0].role, "owner");
    assert_eq!(first.items[1].role, "member");
    assert_eq!(first.items[1].user.as_ref().unwrap().id, "bob");
    let cursor = first.next_cursor.expect("a second page");
    let rest = bob.members(&group, Some(&cursor), Some(2)).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].user_id, "carol");
    assert_eq!(rest.next_cursor, None);
    // Not a member: the group reads as unknown.
    let err = dave.members(&group, None, None).await.unwrap_err();
    assert_code(&err, ErrorCode::NotFound);
    let err = alice.members(&group, None, Some(101)).await.unwrap_err();
    assert_code(&err, ErrorCode::InvalidArgument);

    // Users by id: oneself and people one shares a conversation with; a
    // stranger and an unknown id are left out alike.
    let seen = bob
        .users(&["alice", "dave", "bob", "nobody", "alice"])
        .await
        .unwrap();
    let ids: Vec<&str> = seen.users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["alice", "bob"]);
    assert!(seen.presence.iter().any(|p| p.user_id == "alice"));
    assert!(seen.presence.iter().all(|p| p.user_id != "dave"));
    assert!(
        bob.cached_presence("alice").is_some(),
        "presence reaches the cache"
    );
    let err = bob.users(&[]).await.unwrap_err();
    assert_code(&err, ErrorCode::InvalidArgument);
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_code(
        &bob.users(&many).await.unwrap_err(),
        ErrorCode::InvalidArgument,
    );

    // One's own profile; the others read the new one.
    let me = alice
        .update_profile(ProfileUpdate {
            name: Some("Alice A.".into()),
            data: Some(json!({"city": "Moshi"})),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(me.name, "Alice A.");
    assert_eq!(alice.user().unwrap().name, "Alice A.", "the cache follows");
    let seen = bob.users(&["alice"]).await.unwrap();
    assert_eq!(seen.users[0].name, "Alice A.");
    let err = alice
        .update_profile(ProfileUpdate {
            name: Some("x".repeat(300)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_code(&err, ErrorCode::InvalidArgument);
    assert_eq!(
        bob.users(&["alice"]).await.unwrap().users[0].name,
        "Alice A."
    );

    // Editing the group: members may not, admins may; everyone sees it.
    let rename = || ConversationUpdate {
        name: Some("Launch".into()),
        ..Default::default()
    };
    let err = bob.update_conversation(&group, rename()).await.unwrap_err();
    assert_code(&err, ErrorCode::PermissionDenied);
    let err = carol
        .set_role(&group, "bob", Role::Admin)
        .await
        .unwrap_err();
    assert_code(&err, ErrorCode::PermissionDenied);
    let made = alice.set_role(&group, "bob", Role::Admin).await.unwrap();
    assert_eq!(
        (made.user_id.as_str(), made.role.as_str()),
        ("bob", "admin")
    );
    let from = alice_events.len();
    let renamed = bob.update_conversation(&group, rename()).await.unwrap();
    assert_eq!(renamed.name, "Launch");
    alice_events
        .wait_for("the rename", from, |e| match e {
            Event::ConversationUpdated(c) if c.name == "Launch" => Some(()),
            _ => None,
        })
        .await;
    // Only an owner makes owners.
    let err = bob
        .set_role(&group, "carol", Role::Owner)
        .await
        .unwrap_err();
    assert_code(&err, ErrorCode::PermissionDenied);

    // Blocks, listed.
    alice.block("dave").await.unwrap();
    let blocks = alice.blocks(None, None).await.unwrap();
    let ids: Vec<&str> = blocks.items.iter().map(|b| b.user_id.as_str()).collect();
    assert_eq!(ids, ["dave"]);
    assert!(bob.blocks(None, None).await.unwrap().items.is_empty());

    // The total unread count: two messages from bob, then read over REST by
    // the backend; the reading client hears of it.
    let before = carol.unread_total().await.unwrap();
    bob.send_text(&group, "one").await.unwrap();
    let last = bob.send_text(&group, "two").await.unwrap();
    assert_eq!(carol.unread_total().await.unwrap(), before + 2);
    let read = api
        .post(
            &format!("/v1/users/carol/conversations/{group}/read"),
            json!({"seq": last.seq}),
        )
        .await
        .ok();
    assert_eq!(read["unread_count"], 0);
    assert_eq!(carol.unread_total().await.unwrap(), 0);
    mkondo_tests::poll_until(mkondo_tests::WAIT, "carol's cache read", || {
        let total = carol.total_unread();
        async move { (total == 0).then_some(()) }
    })
    .await;
    // A user token reads only its own; the backend any user's.
    let carol_rest = server.rest_as(&server.app.token("carol"));
    carol_rest.get("/v1/users/carol/unread").await.expect(200);
    carol_rest
        .get("/v1/users/alice/unread")
        .await
        .expect_error(403, "permission_denied");
    carol_rest
        .post(
            &format!("/v1/users/bob/conversations/{group}/read"),
            json!({"seq": 1}),
        )
        .await
        .expect_error(403, "permission_denied");
    let total = api.get("/v1/users/alice/unread").await.ok();
    assert_eq!(total["total"], alice.unread_total().await.unwrap());

    // Deleting the group: its admins may not, its owner may; members hear.
    let err = bob.delete_conversation(&group).await.unwrap_err();
    assert_code(&err, ErrorCode::PermissionDenied);
    let from = bob_events.len();
    alice.delete_conversation(&group).await.unwrap();
    bob_events
        .wait_for("the group gone", from, |e| match e {
            Event::MemberLeft(left) if left.conversation_id == group => Some(()),
            _ => None,
        })
        .await;
    assert_code(
        &bob.members(&group, None, None).await.unwrap_err(),
        ErrorCode::NotFound,
    );
}

async fn the_directory_is_the_apps_to_open(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "carla", "carol", "caroline", "dave"])
        .await;
    api.patch(
        "/v1/users/carol",
        json!({"name": "Carol C.", "data": {"phone": "+255"}}),
    )
    .await
    .ok();
    let (alice, _) = client(config(&server, transport, "alice"));
    connected(&alice).await;

    // Off by default.
    let err = alice.search_users("car", None).await.unwrap_err();
    assert_code(&err, ErrorCode::PermissionDenied);
    server
        .cli(&[
            "app",
            "update",
            "--app",
            &server.app.app_id,
            "--user-directory",
            "true",
        ])
        .await;

    // Strangers found by id or name, without their data; in id order, capped.
    let found = alice.search_users("CAR", None).await.unwrap();
    let ids: Vec<&str> = found.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["carla", "carol", "caroline"]);
    let carol = &found[1];
    assert_eq!(carol.name, "Carol C.");
    assert!(carol.data.is_none(), "data stays private: {carol:?}");
    assert_eq!(alice.search_users("car", Some(2)).await.unwrap().len(), 2);
    // A block either way, or a deactivated user, hides them; oneself too.
    api.post("/v1/users/carla/blocks", json!({"user_id": "alice"}))
        .await
        .ok();
    api.post("/v1/users/caroline/deactivate", json!({}))
        .await
        .ok();
    let ids: Vec<String> = alice
        .search_users("car", None)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, ["carol"]);
    assert!(alice.search_users("alic", None).await.unwrap().is_empty());
    // LIKE's wildcards are text, not patterns.
    assert!(alice.search_users("%%", None).await.unwrap().is_empty());
    // Queries too short to be a search, or too large.
    for (query, limit) in [("c", None), (" c ", None), ("car", Some(51))] {
        let err = alice.search_users(query, limit).await.unwrap_err();
        assert_code(&err, ErrorCode::InvalidArgument);
    }
    let long = "x".repeat(65);
    assert_code(
        &alice.search_users(&long, None).await.unwrap_err(),
        ErrorCode::InvalidArgument,
    );
}
