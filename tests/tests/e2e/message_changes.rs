//! Edit, delete, reactions and replies, end to end: who may change a message,
//! that every member's devices hear of a change, that history (real-time and
//! REST) shows messages as they now are, and that a deleted message's text is
//! gone from the database file, not only hidden.

use mkondo_tests::{
    per_transport, seq_of, urlencode, v1, PushKind, ServerOptions, TestServer, Transport, WAIT,
};
use serde_json::{json, Value};

per_transport!(
    changes_over_realtime,
    replies_must_point_into_the_conversation
);

#[track_caller]
fn assert_code(result: Result<impl std::fmt::Debug, v1::Error>, code: &str, what: &str) {
    match result {
        Err(e) => assert_eq!(e.code, code, "{what}: {e:?}"),
        Ok(v) => panic!("{what}: expected {code}, got {v:?}"),
    }
}

fn reactions(m: &v1::Message) -> Vec<(String, Vec<String>)> {
    m.reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.user_ids.clone()))
        .collect()
}

fn rest_reactions(m: &Value) -> Vec<(String, Vec<String>)> {
    m["reactions"]
        .as_array()
        .unwrap_or_else(|| panic!("a REST message always has reactions: {m}"))
        .iter()
        .map(|r| {
            let users = r["user_ids"].as_array().unwrap();
            (
                r["emoji"].as_str().unwrap().to_owned(),
                users
                    .iter()
                    .map(|u| u.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

fn pair(emoji: &str, users: &[&str]) -> (String, Vec<String>) {
    (
        emoji.to_owned(),
        users.iter().map(|u| u.to_string()).collect(),
    )
}

/// Alice owns a group with Bob and Carol. Wrong users are refused; the right
/// ones' changes reach every member's devices and show in history.
async fn changes_over_realtime(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol", "dave"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let (alice_laptop, _) = server.client(Transport::WsJson, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    let (carol, _) = server.client(transport, "carol").await;
    let (dave, _) = server.client(transport, "dave").await;
    let conv = alice
        .create_group("launch", &["bob", "carol"])
        .await
        .unwrap()
        .id;

    let first = alice.send_message(&conv, "hello all", "a-1").await.unwrap();
    let first = first.message.unwrap();
    let second = bob.send_message(&conv, "hi alice", "b-1").await.unwrap();
    let second = second.message.unwrap();
    assert_eq!((first.seq, second.seq), (1, 2));

    // Wrong users.
    assert_code(
        bob.edit(&conv, 1, "not mine").await,
        "permission_denied",
        "bob edits alice's message",
    );
    assert_code(
        carol.delete(&conv, 2).await,
        "permission_denied",
        "carol (member) deletes bob's message",
    );
    assert_code(
        dave.edit(&conv, 1, "x").await,
        "not_found",
        "a non-member edits (as if the conversation did not exist)",
    );
    assert_code(
        dave.react(&conv, 1, "👍").await,
        "not_found",
        "a non-member reacts",
    );
    assert_code(
        dave.delete(&conv, 1).await,
        "not_found",
        "a non-member deletes",
    );
    // Nothing that does not exist.
    assert_code(
        alice.edit(&conv, 99, "x").await,
        "not_found",
        "edit of a missing seq",
    );
    assert_code(
        alice.edit(&conv, 0, "x").await,
        "invalid_argument",
        "edit of seq 0",
    );
    assert_code(
        alice.react(&conv, 1, "").await,
        "invalid_argument",
        "an empty emoji",
    );
    assert_code(
        alice.react(&conv, 1, &"😀".repeat(9)).await,
        "invalid_argument",
        "an emoji over 32 bytes",
    );

    // The sender edits: the reply and every member's devices show it.
    let edited = alice.edit(&conv, 1, "hello everyone").await.unwrap();
    assert_eq!(edited.text, "hello everyone");
    assert!(edited.edited_at.is_some(), "an edit sets edited_at");
    for (who, device) in [
        ("bob", &bob),
        ("carol", &carol),
        ("alice's laptop", &alice_laptop),
    ] {
        let update = device.expect_update(&conv, 1, WAIT).await;
        assert_eq!(update.change, "edited", "{who}");
        let m = update.message.unwrap();
        assert_eq!(m.text, "hello everyone", "{who}");
        assert!(m.edited_at.is_some(), "{who}");
    }

    // Reactions: a set per emoji and user; reacting twice changes nothing.
    let once = bob.react(&conv, 1, "👍").await.unwrap();
    assert_eq!(reactions(&once), vec![pair("👍", &["bob"])]);
    let twice = bob.react(&conv, 1, "👍").await.unwrap();
    assert_eq!(reactions(&twice), vec![pair("👍", &["bob"])], "idempotent");
    carol.react(&conv, 1, "👍").await.unwrap();
    let with_party = carol.react(&conv, 1, "🎉").await.unwrap();
    assert_eq!(
        reactions(&with_party),
        vec![pair("👍", &["bob", "carol"]), pair("🎉", &["carol"])]
    );
    // Alice hears of each change once: the repeated react pushed nothing.
    let own_edit = alice.expect_update(&conv, 1, WAIT).await;
    assert_eq!(
        own_edit.change, "edited",
        "the editor's own device hears it too"
    );
    let mut heard = Vec::new();
    for _ in 0..3 {
        let update = alice.expect_update(&conv, 1, WAIT).await;
        assert_eq!(update.change, "reactions");
        heard.push(reactions(&update.message.unwrap()));
    }
    assert_eq!(
        heard,
        vec![
            vec![pair("👍", &["bob"])],
            vec![pair("👍", &["bob", "carol"])],
            vec![pair("👍", &["bob", "carol"]), pair("🎉", &["carol"])],
        ]
    );
    let removed = bob.unreact(&conv, 1, "👍").await.unwrap();
    assert_eq!(
        reactions(&removed),
        vec![pair("👍", &["carol"]), pair("🎉", &["carol"])]
    );
    let again = bob.unreact(&conv, 1, "👍").await.unwrap();
    assert_eq!(reactions(&again), reactions(&removed), "unreacting twice");
    let mut last = None;
    for _ in 0..4 {
        last = Some(carol.expect_update(&conv, 1, WAIT).await);
    }
    assert_eq!(
        reactions(&last.unwrap().message.unwrap()),
        reactions(&removed)
    );

    // An owner deletes someone else's message; a sender deletes their own.
    let tombstone = alice.delete(&conv, 2).await.unwrap();
    assert!(tombstone.deleted_at.is_some());
    assert_eq!(
        (tombstone.text.as_str(), tombstone.data.is_none()),
        ("", true)
    );
    for device in [&bob, &carol] {
        let update = device.expect_update(&conv, 2, WAIT).await;
        assert_eq!(update.change, "deleted");
        let m = update.message.unwrap();
        assert!(m.deleted_at.is_some() && m.text.is_empty());
    }
    let third = bob.send_message(&conv, "oops", "b-2").await.unwrap();
    assert_eq!(third.message.unwrap().seq, 3);
    bob.delete(&conv, 3).await.unwrap();
    // A deleted message takes no more changes; deleting again is harmless.
    assert_code(
        bob.edit(&conv, 3, "back").await,
        "invalid_argument",
        "edit of a tombstone",
    );
    assert_code(
        carol.react(&conv, 3, "👍").await,
        "invalid_argument",
        "react to a tombstone",
    );
    let repeated = bob.delete(&conv, 3).await.unwrap();
    assert!(repeated.deleted_at.is_some() && repeated.text.is_empty());

    // Users never change system messages.
    let system = api
        .post(
            &format!("/v1/conversations/{conv}/messages"),
            json!({"kind": "system", "text": "Release frozen"}),
        )
        .await
        .ok();
    let system_seq = seq_of(&system);
    assert_code(
        alice.edit(&conv, system_seq, "x").await,
        "permission_denied",
        "owner edits a system message",
    );
    assert_code(
        alice.delete(&conv, system_seq).await,
        "permission_denied",
        "owner deletes a system message",
    );

    // History, over real-time and REST, shows messages as they now are.
    let history = carol.history_all(&conv).await.unwrap();
    let by_seq = |seq: u64| history.iter().find(|m| m.seq == seq).unwrap().clone();
    let m1 = by_seq(1);
    assert_eq!(m1.text, "hello everyone");
    assert!(m1.edited_at.is_some());
    assert_eq!(reactions(&m1), reactions(&removed));
    for seq in [2, 3] {
        let m = by_seq(seq);
        assert!(
            m.deleted_at.is_some() && m.text.is_empty() && m.data.is_none(),
            "{m:?}"
        );
    }
    let rest = api.history_all(&conv).await;
    assert_eq!(rest.len(), 4);
    assert_eq!(rest[0]["text"], "hello everyone");
    assert!(rest[0]["edited_at"].is_string());
    assert_eq!(rest_reactions(&rest[0]), reactions(&removed));
    for m in &rest[1..3] {
        assert_eq!(m["text"], "", "{m}");
        assert_eq!(m["data"], json!({}), "{m}");
        assert!(m["deleted_at"].is_string(), "{m}");
        assert_eq!(rest_reactions(m), vec![], "{m}");
    }
    assert_eq!(rest_reactions(&rest[3]), vec![]);
}

/// `reply_to` names an existing seq of the same conversation.
async fn replies_must_point_into_the_conversation(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let big = api.create_group("big", &["alice", "bob"]).await;
    let small = api.create_group("small", &["alice", "bob"]).await;
    for i in 1..=5 {
        api.send(&big, "alice", &format!("b{i}"), &format!("b-{i}"))
            .await;
    }
    api.send(&small, "alice", "s1", "s-1").await;
    let (bob, _) = server.client(transport, "bob").await;

    let send = |conv: &str, reply_to: u64, cid: &str| {
        bob.send(v1::SendRequest {
            conversation_id: conv.to_owned(),
            text: "re".into(),
            client_id: cid.to_owned(),
            reply_to,
            ..Default::default()
        })
    };
    let ok = send(&big, 4, "r-1").await.unwrap().message.unwrap();
    assert_eq!((ok.seq, ok.reply_to), (6, 4));
    // Seq 5 exists in `big`, not in `small` (which has only seq 1).
    assert_code(
        send(&small, 5, "r-2").await,
        "invalid_argument",
        "reply_to another conversation's seq",
    );
    assert_code(
        send(&big, 99, "r-3").await,
        "invalid_argument",
        "reply_to a missing seq",
    );
    // Nothing was stored by the refused sends.
    let history = bob.history_all(&small).await.unwrap();
    assert_eq!(history.len(), 1);

    let rest = server.rest_as(&server.app.token("bob"));
    let path = format!("/v1/conversations/{small}/messages");
    rest.post(&path, json!({"text": "re", "reply_to": 5}))
        .await
        .expect_error(422, "invalid_argument");
    let created = rest
        .post(&path, json!({"text": "re", "reply_to": 1}))
        .await
        .expect(201);
    assert_eq!(created["reply_to"], 1);
}

/// Edit, delete and reactions over REST, with user tokens and the API key; a
/// live member hears of REST changes; a tombstone's text is gone from the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_over_rest() {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol", "dave"]).await;
    let conv = api.create_group("rest", &["alice", "bob", "carol"]).await;
    // Carol administers the group.
    api.patch(
        &format!("/v1/conversations/{conv}/members/carol"),
        json!({"role": "admin"}),
    )
    .await
    .ok();
    let alice = server.rest_as(&server.app.token("alice"));
    let bob = server.rest_as(&server.app.token("bob"));
    let carol = server.rest_as(&server.app.token("carol"));
    let dave = server.rest_as(&server.app.token("dave"));
    let (live, _) = server.client(Transport::WsProto, "bob").await;

    let secret = "the launch code is 7421-ZEBRA";
    let m = api.send(&conv, "alice", secret, "a-1").await;
    let seq = seq_of(&m);
    let msg = format!("/v1/conversations/{conv}/messages/{seq}");

    // Edit: the sender only (and the backend).
    bob.patch(&msg, json!({"text": "hijack"}))
        .await
        .expect_error(403, "permission_denied");
    // A non-member: as if the conversation did not exist.
    dave.patch(&msg, json!({"text": "hijack"}))
        .await
        .expect_error(404, "not_found");
    alice
        .patch(&msg, json!({}))
        .await
        .expect_error(422, "invalid_argument");
    alice
        .patch(&msg, json!({"data": "not an object"}))
        .await
        .expect_error(422, "invalid_argument");
    alice
        .patch(&msg, json!({"text": "x".repeat(17 * 1024)}))
        .await
        .expect_error(413, "too_large");
    let edited = alice
        .patch(&msg, json!({"text": secret, "data": {"pinned": true}}))
        .await
        .ok();
    assert!(edited["edited_at"].is_string(), "{edited}");
    assert_eq!(edited["data"]["pinned"], true);
    let update = live.expect_update(&conv, seq, WAIT).await;
    assert_eq!(update.change, "edited");
    let by_backend = api.patch(&msg, json!({"text": secret})).await.ok();
    assert_eq!(by_backend["text"], secret);
    assert_eq!(by_backend["data"]["pinned"], true, "absent fields are kept");
    api.patch(
        &format!("/v1/conversations/{conv}/messages/99"),
        json!({"text": "x"}),
    )
    .await
    .expect_error(404, "not_found");
    api.patch(
        &format!("/v1/conversations/{conv}/messages/abc"),
        json!({"text": "x"}),
    )
    .await
    .expect_error(422, "invalid_argument");

    // Reactions.
    let reactions = format!("{msg}/reactions");
    let r = bob
        .post(&reactions, json!({"emoji": "🔥"}))
        .await
        .expect(201);
    assert_eq!(rest_reactions(&r), vec![pair("🔥", &["bob"])]);
    let r = bob
        .post(&reactions, json!({"emoji": "🔥"}))
        .await
        .expect(200);
    assert_eq!(rest_reactions(&r), vec![pair("🔥", &["bob"])], "idempotent");
    bob.post(&reactions, json!({"emoji": "🔥", "user_id": "carol"}))
        .await
        .expect_error(403, "permission_denied");
    api.post(&reactions, json!({"emoji": "🔥"}))
        .await
        .expect_error(422, "invalid_argument");
    api.post(&reactions, json!({"emoji": "🔥", "user_id": "dave"}))
        .await
        .expect_error(403, "permission_denied");
    let r = api
        .post(&reactions, json!({"emoji": "🔥", "user_id": "carol"}))
        .await
        .expect(201);
    assert_eq!(rest_reactions(&r), vec![pair("🔥", &["bob", "carol"])]);
    // At most 50 different emoji on one message.
    for i in 1..50 {
        api.post(
            &reactions,
            json!({"emoji": format!(":e{i}:"), "user_id": "alice"}),
        )
        .await
        .expect(201);
    }
    api.post(
        &reactions,
        json!({"emoji": ":one-too-many:", "user_id": "alice"}),
    )
    .await
    .expect_error(422, "invalid_argument");
    let fire = urlencode("🔥");
    let r = bob.delete(&format!("{reactions}/{fire}")).await.ok();
    let fire_users = rest_reactions(&r)
        .into_iter()
        .find(|(e, _)| e == "🔥")
        .map(|(_, users)| users);
    assert_eq!(fire_users, Some(vec!["carol".to_owned()]));
    api.delete(&format!("{reactions}/{fire}"))
        .await
        .expect_error(422, "invalid_argument");
    let r = api
        .delete(&format!("{reactions}/{fire}?user_id=carol"))
        .await
        .ok();
    assert!(rest_reactions(&r).iter().all(|(e, _)| e != "🔥"), "{r}");

    // Another app sees none of it: not with its key, nor with its user's token.
    let other = &server.other_apps[0];
    for outsider in [
        server.rest_as(&other.api_key),
        server.rest_as(&other.token("alice")),
    ] {
        outsider
            .patch(&msg, json!({"text": "x", "user_id": "alice"}))
            .await
            .expect_error(404, "not_found");
        outsider.delete(&msg).await.expect_error(404, "not_found");
        outsider
            .post(&reactions, json!({"emoji": "👍", "user_id": "alice"}))
            .await
            .expect_error(404, "not_found");
        outsider
            .delete(&format!("{reactions}/{fire}?user_id=alice"))
            .await
            .expect_error(404, "not_found");
        outsider
            .patch(
                &format!("/v1/conversations/{conv}/members/alice"),
                json!({"role": "owner"}),
            )
            .await
            .expect_error(404, "not_found");
    }

    // Delete: not a plain member; an admin may; repeating answers the tombstone.
    bob.delete(&msg)
        .await
        .expect_error(403, "permission_denied");
    let tombstone = carol.delete(&msg).await.ok();
    assert_eq!(tombstone["text"], "");
    assert_eq!(tombstone["data"], json!({}));
    assert!(tombstone["deleted_at"].is_string());
    assert_eq!(rest_reactions(&tombstone), vec![]);
    let update = live
        .expect_push("the deletion", WAIT, |p| match p {
            PushKind::MessageUpdated(u) if u.change == "deleted" => Some(u.clone()),
            _ => None,
        })
        .await;
    assert!(update.message.unwrap().text.is_empty());
    let again = alice.delete(&msg).await.ok();
    assert_eq!(again["deleted_at"], tombstone["deleted_at"]);
    alice
        .patch(&msg, json!({"text": "back"}))
        .await
        .expect_error(422, "invalid_argument");
    bob.post(&reactions, json!({"emoji": "🔥"}))
        .await
        .expect_error(422, "invalid_argument");
    let history = api.history_all(&conv).await;
    let in_history = history.iter().find(|m| seq_of(m) == seq).unwrap();
    assert_eq!(in_history["text"], "");
    assert!(in_history["deleted_at"].is_string());
    let sent = api.get("/v1/users/alice/messages").await.ok();
    assert_eq!(
        sent["items"][0]["text"], "",
        "the sender's own list shows the tombstone"
    );

    // The text is gone from the database itself, not only from the API.
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}");
    let mut files = vec![server.database().to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = server.database().as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    let contains =
        |bytes: &[u8], text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
    let database = std::fs::read(server.database()).expect("read the database file");
    assert!(
        contains(&database, "carol is now an admin"),
        "the scan finds text that was not deleted"
    );
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        assert!(
            !contains(&bytes, secret),
            "the deleted text is still in {}",
            file.display()
        );
    }
}

/// Editing and reacting are writing: refused with `blocked` in a direct
/// conversation where a block stands; deleting one's own message is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_stops_edits_and_reactions_in_direct() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let direct = api.create_direct("alice", "bob").await;
    api.send(&direct, "alice", "hi", "a-1").await;
    api.send(&direct, "bob", "hello", "b-1").await;
    let (alice, _) = server.client(Transport::WsJson, "alice").await;
    let (bob, _) = server.client(Transport::Grpc, "bob").await;
    bob.react(&direct, 1, "👋").await.unwrap();

    api.post("/v1/users/alice/blocks", json!({"user_id": "bob"}))
        .await
        .ok();
    assert_code(
        bob.edit(&direct, 2, "edited").await,
        "blocked",
        "blocked user edits",
    );
    assert_code(
        bob.react(&direct, 1, "👍").await,
        "blocked",
        "blocked user reacts",
    );
    assert_code(
        alice.react(&direct, 2, "👍").await,
        "blocked",
        "the blocker reacts",
    );
    let bob_rest = server.rest_as(&server.app.token("bob"));
    bob_rest
        .post(
            &format!("/v1/conversations/{direct}/messages/1/reactions"),
            json!({"emoji": "👍"}),
        )
        .await
        .expect_error(403, "blocked");
    // Taking something away stays possible.
    bob.unreact(&direct, 1, "👋").await.unwrap();
    let tombstone = bob.delete(&direct, 2).await.unwrap();
    assert!(tombstone.deleted_at.is_some());
}
