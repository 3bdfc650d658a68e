//! Roles (owner / admin / member) enforced over real-time and REST alike, and the
//! system messages that make history tell the story of a group: members joining,
//! leaving and removed, renames and role changes.

use mkondo_tests::{per_transport, v1, PushKind, Rest, TestServer, Transport, WAIT};
use serde_json::{json, Value};

per_transport!(roles_over_realtime_and_rest);

#[track_caller]
fn assert_code(result: Result<impl std::fmt::Debug, v1::Error>, code: &str, what: &str) {
    match result {
        Err(e) => assert_eq!(e.code, code, "{what}: {e:?}"),
        Ok(v) => panic!("{what}: expected {code}, got {v:?}"),
    }
}

async fn set_role(rest: &Rest, conv: &str, user: &str, role: &str) -> mkondo_tests::Resp {
    rest.patch(
        &format!("/v1/conversations/{conv}/members/{user}"),
        json!({ "role": role }),
    )
    .await
}

async fn roles(api: &Rest, conv: &str) -> Vec<(String, String)> {
    let page = api
        .get(&format!("/v1/conversations/{conv}/members"))
        .await
        .ok();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The data of the system messages of a REST history, in seq order.
fn events(history: &[Value]) -> Vec<Value> {
    history
        .iter()
        .filter(|m| m["kind"] == "system")
        .map(|m| {
            assert_eq!(m["sender_id"], "system", "{m}");
            m["data"].clone()
        })
        .collect()
}

/// A member cannot manage the group; an admin can, except for owners; only an
/// owner makes owners; the last owner hands over before leaving.
async fn roles_over_realtime_and_rest(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol", "dave", "erin"])
        .await;
    let as_user = |u: &str| server.rest_as(&server.app.token(u));
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    let (dave, _) = server.client(transport, "dave").await;
    let created = alice
        .create_group("team", &["bob", "carol", "dave"])
        .await
        .unwrap();
    let conv = created.id;
    assert_eq!(created.role, "owner");
    assert_eq!(
        created.last_seq, 0,
        "a new group starts with no system message"
    );

    // A member manages nothing.
    assert_code(
        bob.add_members(&conv, &["erin"]).await,
        "permission_denied",
        "member adds",
    );
    assert_code(
        bob.remove_member(&conv, "carol").await,
        "permission_denied",
        "member removes",
    );
    let bob_rest = as_user("bob");
    bob_rest
        .patch(
            &format!("/v1/conversations/{conv}"),
            json!({"name": "mine"}),
        )
        .await
        .expect_error(403, "permission_denied");
    set_role(&bob_rest, &conv, "bob", "admin")
        .await
        .expect_error(403, "permission_denied");
    set_role(&bob_rest, &conv, "carol", "admin")
        .await
        .expect_error(403, "permission_denied");

    // The owner promotes Bob: his devices see their new role, everyone the story.
    let alice_rest = as_user("alice");
    let member = set_role(&alice_rest, &conv, "bob", "admin").await.ok();
    assert_eq!(
        (member["user_id"].as_str(), member["role"].as_str()),
        (Some("bob"), Some("admin"))
    );
    let updated = bob
        .expect_push("bob's new role", WAIT, |p| match p {
            PushKind::ConversationUpdated(u) => {
                u.conversation.clone().filter(|c| c.role != "member")
            }
            _ => None,
        })
        .await;
    assert_eq!(updated.role, "admin");
    let told = dave.expect_message(&conv, WAIT).await;
    assert_eq!(
        (told.kind.as_str(), told.text.as_str()),
        ("system", "alice made bob an admin")
    );
    // Setting the same role again changes nothing and tells nothing.
    set_role(&alice_rest, &conv, "bob", "admin").await.ok();

    // An admin adds, removes and renames.
    bob.add_members(&conv, &["erin"]).await.unwrap();
    bob.remove_member(&conv, "carol").await.unwrap();
    bob_rest
        .patch(
            &format!("/v1/conversations/{conv}"),
            json!({"name": "Team B"}),
        )
        .await
        .ok();
    set_role(&bob_rest, &conv, "dave", "admin").await.ok();
    set_role(&bob_rest, &conv, "dave", "member").await.ok();
    // ... but touches no owner, and makes none.
    set_role(&bob_rest, &conv, "dave", "owner")
        .await
        .expect_error(403, "permission_denied");
    set_role(&bob_rest, &conv, "alice", "member")
        .await
        .expect_error(403, "permission_denied");
    assert_code(
        bob.remove_member(&conv, "alice").await,
        "permission_denied",
        "admin removes the owner",
    );

    // An owner makes owners; owners change each other.
    set_role(&alice_rest, &conv, "dave", "owner").await.ok();
    let dave_rest = as_user("dave");
    set_role(&dave_rest, &conv, "alice", "member").await.ok();
    assert_code(
        alice.add_members(&conv, &["carol"]).await,
        "permission_denied",
        "demoted owner adds",
    );

    // The last owner hands over before leaving or stepping down.
    let refused = set_role(&dave_rest, &conv, "dave", "admin").await;
    assert_eq!(
        refused.body["error"]["reason"], "last_owner",
        "{}",
        refused.text
    );
    refused.expect_error(403, "permission_denied");
    assert_code(
        dave.leave(&conv).await,
        "permission_denied",
        "last owner leaves",
    );
    set_role(&dave_rest, &conv, "bob", "owner").await.ok();
    dave.leave(&conv).await.unwrap();

    // The backend may do anything; bad requests get clear errors.
    set_role(&api, &conv, "erin", "owner").await.ok();
    set_role(&api, &conv, "bob", "member").await.ok();
    set_role(&api, &conv, "erin", "king")
        .await
        .expect_error(422, "invalid_argument");
    set_role(&api, &conv, "nobody", "admin")
        .await
        .expect_error(404, "not_found");
    let direct = api.create_direct("alice", "bob").await;
    set_role(&api, &direct, "alice", "admin")
        .await
        .expect_error(403, "permission_denied");
    let mut now = roles(&api, &conv).await;
    now.sort();
    assert_eq!(
        now,
        vec![
            ("alice".to_owned(), "member".to_owned()),
            ("bob".to_owned(), "member".to_owned()),
            ("erin".to_owned(), "owner".to_owned()),
        ]
    );

    // History tells every change, in order.
    let history = api.history_all(&conv).await;
    let got: Vec<(String, String)> = events(&history)
        .iter()
        .map(|d| {
            (
                d["event"].as_str().unwrap().to_owned(),
                d["user_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want = [
        ("role_changed", "bob"),
        ("member_joined", "erin"),
        ("member_removed", "carol"),
        ("renamed", ""),
        ("role_changed", "dave"),
        ("role_changed", "dave"),
        ("role_changed", "dave"),
        ("role_changed", "alice"),
        ("role_changed", "bob"),
        ("member_left", "dave"),
        ("role_changed", "erin"),
        ("role_changed", "bob"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(e, u)| (e.to_string(), u.to_string()))
        .collect();
    assert_eq!(got, want);
}

/// Joining (added, or through a token's `groups` claim), leaving, removal and
/// renames are system messages with a seq, pushed as `message`, in history over
/// real-time and REST. They count as unread for the others, never for the
/// member who caused one while caught up, nor for a new member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_messages_tell_the_story() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol", "dave"]).await;
    api.post("/v1/users", json!({"id": "erin", "name": "Erin W"}))
        .await
        .ok();
    let (alice, _) = server.client(Transport::WsJson, "alice").await;
    let (bob, _) = server.client(Transport::WsProto, "bob").await;
    let (carol, _) = server.client(Transport::Grpc, "carol").await;
    let conv = alice
        .create_group("story", &["bob", "carol"])
        .await
        .unwrap()
        .id;

    alice.add_members(&conv, &["dave"]).await.unwrap();
    let unread = |list: &[v1::Conversation]| {
        let c = list.iter().find(|c| c.id == conv).unwrap();
        (c.unread_count, c.last_read_seq)
    };
    assert_eq!(
        unread(&alice.conversations("", 20).await.unwrap().conversations),
        (0, 1),
        "the one who caused it, caught up, stays caught up"
    );
    assert_eq!(
        unread(&bob.conversations("", 20).await.unwrap().conversations),
        (1, 0),
        "it counts as unread for the others"
    );
    let dave_rest = server.rest_as(&server.app.token("dave"));
    let dave_view = dave_rest
        .get(&format!("/v1/conversations/{conv}"))
        .await
        .ok();
    assert_eq!(
        (
            dave_view["unread_count"].as_i64(),
            dave_view["last_read_seq"].as_i64()
        ),
        (Some(0), Some(1))
    );

    bob.leave(&conv).await.unwrap();
    alice.remove_member(&conv, "carol").await.unwrap();
    let alice_rest = server.rest_as(&server.app.token("alice"));
    let path = format!("/v1/conversations/{conv}");
    alice_rest
        .patch(&path, json!({"name": "Story 2"}))
        .await
        .ok();
    // Neither the same name again nor an icon is a rename.
    alice_rest
        .patch(&path, json!({"name": "Story 2"}))
        .await
        .ok();
    alice_rest
        .patch(&path, json!({"icon_url": "https://example.com/i.png"}))
        .await
        .ok();
    // The backend adds Erin (a `groups` claim never joins a group a user made).
    api.post(&format!("{path}/members"), json!({"user_ids": ["erin"]}))
        .await
        .ok();
    let (erin, reply) = server.client(Transport::WsJson, "erin").await;
    let mine = reply.conversations.iter().find(|c| c.id == conv).unwrap();
    assert_eq!(
        (mine.unread_count, mine.last_read_seq),
        (0, 5),
        "a new member has nothing unread"
    );
    api.delete(&format!("{path}/members/dave"))
        .await
        .expect(204);

    // Carol heard the story live until she was removed, then only her removal.
    let heard = carol
        .collect_messages(&conv, WAIT, |got| got.len() >= 2)
        .await;
    let texts: Vec<&str> = heard.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["alice added dave", "bob left"]);
    assert!(heard
        .iter()
        .all(|m| m.kind == "system" && m.sender_id == "system"));
    let left = carol
        .expect_push("carol's removal", WAIT, |p| match p {
            PushKind::MemberLeft(l) => Some(l.clone()),
            PushKind::Message(m) if m.conversation_id == conv => {
                panic!("a removed member heard {m:?}")
            }
            _ => None,
        })
        .await;
    assert_eq!((left.user_id.as_str(), left.removed), ("carol", true));
    // Erin hears what happens after she joined.
    let removed = erin.expect_message(&conv, WAIT).await;
    assert_eq!(
        (removed.seq, removed.text.as_str()),
        (6, "dave was removed")
    );

    let want = [
        (
            1,
            "alice added dave",
            json!({"event": "member_joined", "user_id": "dave", "by": "alice"}),
        ),
        (
            2,
            "bob left",
            json!({"event": "member_left", "user_id": "bob"}),
        ),
        (
            3,
            "alice removed carol",
            json!({"event": "member_removed", "user_id": "carol", "by": "alice"}),
        ),
        (
            4,
            "alice renamed the conversation to \u{201c}Story 2\u{201d}",
            json!({"event": "renamed", "name": "Story 2", "by": "alice"}),
        ),
        (
            5,
            "Erin W joined",
            json!({"event": "member_joined", "user_id": "erin"}),
        ),
        (
            6,
            "dave was removed",
            json!({"event": "member_removed", "user_id": "dave"}),
        ),
    ];
    let rest = api.history_all(&conv).await;
    assert_eq!(rest.len(), want.len(), "{rest:#?}");
    for (m, (seq, text, data)) in rest.iter().zip(&want) {
        assert_eq!(m["seq"], *seq);
        assert_eq!(m["kind"], "system");
        assert_eq!(m["text"], *text);
        assert_eq!(m["data"], *data);
    }
    let realtime = alice.history_all(&conv).await.unwrap();
    let got: Vec<(u64, &str)> = realtime.iter().map(|m| (m.seq, m.text.as_str())).collect();
    let expected: Vec<(u64, &str)> = want.iter().map(|(s, t, _)| (*s as u64, *t)).collect();
    assert_eq!(got, expected);
}
