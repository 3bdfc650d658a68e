//! Hide ("delete chat"): the member's history starts after the hide point, the
//! conversation leaves their list until a new message brings it back with only
//! the new messages unread; the other members see no change.

use std::collections::HashMap;

use mkondo_tests::{
    json_u64, per_transport, v1, Client, Command, PushKind, ServerOptions, TestServer, Transport,
    WAIT,
};
use serde_json::json;

per_transport!(hide_then_new_message, hide_an_empty_direct_conversation);

async fn hide(client: &Client, conv: &str) -> Result<(), v1::Error> {
    let req = v1::HideRequest {
        conversation_id: conv.to_owned(),
    };
    client.request(Command::Hide(req)).await.map(drop)
}

async fn listed(client: &Client, conv: &str) -> Option<v1::Conversation> {
    let list = client.conversations("", 100).await.unwrap().conversations;
    list.into_iter().find(|c| c.id == conv)
}

fn seqs(messages: &[v1::Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// Bob hides a group after three messages: his other device is told, the group
/// leaves his list (real-time, REST, connect reply), his history is empty, and
/// Alice's is untouched. Two new messages bring it back with 2 unread, and his
/// history and resume start after the hide point.
async fn hide_then_new_message(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("chat", &["alice", "bob"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    let (bob_laptop, _) = server.client(Transport::WsJson, "bob").await;
    for i in 1..=3 {
        alice
            .send_message(&conv, &format!("old {i}"), &format!("o-{i}"))
            .await
            .unwrap();
    }
    bob.collect_messages(&conv, WAIT, |got| got.len() >= 3)
        .await;
    assert_eq!(listed(&bob, &conv).await.unwrap().unread_count, 3);

    hide(&bob, &conv).await.unwrap();
    let updated = bob_laptop
        .expect_push("the hide on bob's other device", WAIT, |p| match p {
            PushKind::ConversationUpdated(u) => u.conversation.clone(),
            _ => None,
        })
        .await;
    assert_eq!(updated.id, conv);
    assert!(updated.hidden, "{updated:?}");
    assert_eq!((updated.cleared_seq, updated.unread_count), (3, 0));

    assert!(listed(&bob, &conv).await.is_none(), "hidden from the list");
    let bob_rest = server.rest_as(&server.app.token("bob"));
    let mine = bob_rest.get("/v1/me/conversations").await.ok();
    assert!(mine["items"].as_array().unwrap().is_empty(), "{mine}");
    let (_tablet, reply) = server.client(transport, "bob").await;
    assert!(reply.conversations.iter().all(|c| c.id != conv));
    assert!(bob.history_all(&conv).await.unwrap().is_empty());
    let rest_history = bob_rest
        .get(&format!("/v1/conversations/{conv}/messages"))
        .await
        .ok();
    assert!(rest_history["items"].as_array().unwrap().is_empty());
    // Only Bob's view changed.
    assert_eq!(seqs(&alice.history_all(&conv).await.unwrap()), [1, 2, 3]);
    assert!(listed(&alice, &conv).await.is_some());

    for i in 4..=5 {
        alice
            .send_message(&conv, &format!("new {i}"), &format!("n-{i}"))
            .await
            .unwrap();
    }
    bob.collect_messages(&conv, WAIT, |got| got.iter().any(|m| m.seq == 5))
        .await;
    let back = listed(&bob, &conv).await.expect("back in the list");
    assert!(!back.hidden);
    assert_eq!((back.unread_count, back.cleared_seq), (2, 3));
    assert_eq!(back.last_message.as_ref().map(|m| m.seq), Some(5));
    let history = bob.history_all(&conv).await.unwrap();
    assert_eq!(seqs(&history), [4, 5]);
    assert_eq!(history[0].text, "new 4");
    let mine = bob_rest.get("/v1/me/conversations").await.ok();
    assert_eq!(json_u64(&mine["items"][0]["unread_count"]), Some(2));

    // A resume from before the hide replays only what came after it.
    let resumed = server.open(transport).await;
    let reply = resumed
        .connect(&server.app.token("bob"), HashMap::from([(conv.clone(), 0)]))
        .await
        .unwrap();
    let recovery = reply
        .recovered
        .iter()
        .find(|r| r.conversation_id == conv)
        .expect("a recovery");
    assert_eq!(seqs(&recovery.messages), [4, 5]);
}

/// A direct conversation with no message yet can be hidden too, and the first
/// message brings it back; hiding needs membership.
async fn hide_an_empty_direct_conversation(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;
    let direct = bob.start_direct("alice").await.unwrap().id;
    assert!(listed(&bob, &direct).await.is_some());

    hide(&bob, &direct).await.unwrap();
    assert!(listed(&bob, &direct).await.is_none());
    assert!(listed(&alice, &direct).await.is_some());

    alice.send_message(&direct, "hello?", "h-1").await.unwrap();
    bob.expect_message(&direct, WAIT).await;
    let back = listed(&bob, &direct).await.expect("back in the list");
    assert_eq!(back.unread_count, 1);

    let err = hide(&bob, "no-such-conversation").await.unwrap_err();
    assert_eq!(err.code, "not_found");
    let carols = api.create_group("carol's", &["carol"]).await;
    let err = hide(&bob, &carols).await.unwrap_err();
    assert_eq!(
        err.code, "not_found",
        "not a member: as if it did not exist"
    );
}

/// Hide over REST, for oneself or (the backend) for a user, and app isolation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_over_rest() {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("chat", &["alice", "bob"]).await;
    api.send(&conv, "alice", "one", "m-1").await;

    let alice = server.rest_as(&server.app.token("alice"));
    let hidden = alice
        .post(&format!("/v1/me/conversations/{conv}/hide"), json!({}))
        .await
        .ok();
    assert_eq!(hidden["hidden"], true);
    assert_eq!(json_u64(&hidden["cleared_seq"]), Some(1));
    assert!(alice.get("/v1/me/conversations").await.ok()["items"]
        .as_array()
        .unwrap()
        .is_empty());

    let other = server.rest_as(&server.other_apps[0].api_key);
    other
        .post(
            &format!("/v1/users/bob/conversations/{conv}/hide"),
            json!({}),
        )
        .await
        .expect_error(404, "not_found");
    alice
        .post(
            &format!("/v1/users/bob/conversations/{conv}/hide"),
            json!({}),
        )
        .await
        .expect_error(403, "permission_denied");
    let by_backend = api
        .post(
            &format!("/v1/users/bob/conversations/{conv}/hide"),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(by_backend["hidden"], true);
    let bobs = api.get("/v1/users/bob/conversations").await.ok();
    assert!(bobs["items"].as_array().unwrap().is_empty());
    // The backend's own list is not a member's view: the conversation is there.
    let all = api.get("/v1/conversations").await.ok();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
}
