//! Input caps and the answers that must not leak: every list a request carries
//! is capped (counting duplicates) and de-duplicated before any query, so a
//! refused request changes nothing; the connect `resume` map is capped and the
//! rest reported with `more`; a client that never reads is closed after the
//! write deadline; short HS256 secrets are refused; an app's own
//! `auto_create_users` is honoured; and a user token gets the same answer for a
//! conversation that does not exist as for one it is not a member of.

use std::collections::HashMap;
use std::time::Duration;

use mkondo_proto::v1::CreateConversationRequest;
use mkondo_tests::{
    mkondo_bin, per_transport, v1, Command, RawEvent, RawWs, ServerOptions, TestServer, Transport,
    WAIT,
};
use serde_json::{json, Value};

use crate::admin_common::{admin, error_code};

per_transport!(
    realtime_lists_are_capped_before_any_query_and_collapsed,
    the_resume_map_is_capped_and_the_rest_reported_with_more,
    realtime_answers_alike_for_missing_and_foreign_conversations,
);

/// The most members one request may name (duplicates counted).
const MAX_MEMBERS: usize = 1000;

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

/// A backend create naming 100,000 copies of one new id, or 1,001 new ids, is
/// refused before any user is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_over_the_member_cap_is_refused_before_any_user_is_created() {
    let server = TestServer::start(ServerOptions::new()).await;
    let api = server.api();

    // 100,000 copies of a short id: within the 1 MiB body limit.
    let dup = vec!["d1"; 100_000];
    api.post(
        "/v1/conversations",
        json!({"kind": "group", "name": "dups", "members": dup}),
    )
    .await
    .expect_error(422, "invalid_argument");
    api.get("/v1/users/d1").await.expect_error(404, "not_found");

    let many = ids("new-", MAX_MEMBERS + 1);
    api.post(
        "/v1/conversations",
        json!({"kind": "group", "name": "many", "members": many}),
    )
    .await
    .expect_error(422, "invalid_argument");
    for id in [&many[0], &many[MAX_MEMBERS / 2], &many[MAX_MEMBERS]] {
        api.get(&format!("/v1/users/{id}"))
            .await
            .expect_error(404, "not_found");
    }

    // Adding members: the same cap, nobody created.
    api.create_users(&["alice"]).await;
    let conv = api.create_group("g", &["alice"]).await;
    api.post(
        &format!("/v1/conversations/{conv}/members"),
        json!({"user_ids": ids("add-", MAX_MEMBERS + 1)}),
    )
    .await
    .expect_error(422, "invalid_argument");
    api.get("/v1/users/add-0000")
        .await
        .expect_error(404, "not_found");

    // The Admin gRPC twin.
    let mut grpc = admin(&server).await;
    let status = grpc
        .create_conversation(CreateConversationRequest {
            kind: "group".into(),
            members: ids("grpc-", MAX_MEMBERS + 1),
            name: Some("grpc".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&status), "invalid_argument", "{status:?}");
    api.get("/v1/users/grpc-0000")
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        api.get("/v1/users?limit=100").await.ok()["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only alice exists"
    );
}

/// Duplicates within the cap are collapsed silently: each member once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_members_within_the_cap_are_collapsed() {
    let server = TestServer::start(ServerOptions::new()).await;
    let api = server.api();
    let conv = api
        .post(
            "/v1/conversations",
            json!({"kind": "group", "name": "g", "members": ["ann", "ann", "ben", "ann"]}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.post(
        &format!("/v1/conversations/{conv}/members"),
        json!({"user_ids": ["cat", "cat", "ben"]}),
    )
    .await
    .ok();
    let members = api
        .get(&format!("/v1/conversations/{conv}/members"))
        .await
        .ok();
    let mut names: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["ann", "ben", "cat"]);

    // A token's groups: capped at 100 when minted.
    let groups: Vec<String> = ids("grp-", 101);
    api.post("/v1/tokens", json!({"user_id": "ann", "groups": groups}))
        .await
        .expect_error(422, "invalid_argument");
}

/// Over the real-time protocol: a group named with 1,001 ids is refused as too
/// many (not as an unknown user found one query at a time), and duplicates in
/// presence and member lists are answered once.
async fn realtime_lists_are_capped_before_any_query_and_collapsed(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let (alice, _) = server.client(transport, "alice").await;

    let many = ids("ghost-", MAX_MEMBERS + 1);
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let err = alice.create_group("big", &many).await.unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");
    let err = alice.presence(&["bob"; 101]).await.unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");

    let conv = alice
        .create_group("g", &["bob", "bob", "alice"])
        .await
        .unwrap();
    alice
        .add_members(&conv.id, &["carol", "carol"])
        .await
        .unwrap();
    let presence = alice.presence(&["bob", "bob", "carol"]).await.unwrap();
    let mut seen: Vec<&str> = presence.iter().map(|p| p.user_id.as_str()).collect();
    seen.sort();
    assert_eq!(seen, ["bob", "carol"], "{presence:?}");
}

/// The resume map is capped at 200 conversations (the first 200 by id): the
/// rest come back as recoveries with `more` and no messages, which the client
/// pages with `history`.
async fn the_resume_map_is_capped_and_the_rest_reported_with_more(transport: Transport) {
    const CAP: usize = 200;
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let mut real = Vec::new();
    for i in 0..3 {
        let conv = api
            .create_group_with_id(&format!("r-{i}"), "r", &["alice", "bob"])
            .await;
        api.send(&conv, "alice", "one", &format!("{conv}-1")).await;
        api.send(&conv, "alice", "two", &format!("{conv}-2")).await;
        real.push(conv);
    }
    // 3 real conversations sort first, then 202 ids of nothing.
    let mut resume: HashMap<String, u64> = real.iter().map(|c| (c.clone(), 0)).collect();
    let fake = ids("zz-", CAP + 2);
    resume.extend(fake.iter().map(|c| (c.clone(), 0)));
    assert_eq!(resume.len(), CAP + 5);

    let bob = server.open(transport).await;
    let reply = bob.connect(&server.app.token("bob"), resume).await.unwrap();
    for conv in &real {
        let rec = reply
            .recovered
            .iter()
            .find(|r| r.conversation_id == *conv)
            .unwrap_or_else(|| panic!("no recovery for {conv}: {:?}", reply.recovered));
        assert_eq!(rec.messages.len(), 2, "{rec:?}");
        assert!(!rec.more);
    }
    let mut more: Vec<&str> = reply
        .recovered
        .iter()
        .filter(|r| r.more)
        .map(|r| r.conversation_id.as_str())
        .collect();
    more.sort();
    let expected: Vec<&str> = fake[CAP - 3..].iter().map(String::as_str).collect();
    assert_eq!(more, expected, "the entries past the cap, with more");
    for r in reply.recovered.iter().filter(|r| r.more) {
        assert!(r.messages.is_empty(), "{r:?}");
    }
    assert_eq!(reply.recovered.len(), 3 + 5, "{:?}", reply.recovered);
    bob.ping().await.unwrap();
}

/// A client that sends commands with large replies but never reads: once the
/// server cannot write for `--write-timeout-ms`, it closes the connection (the
/// TCP connection ends), and goes on serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_after_the_write_deadline() {
    let server = TestServer::start(
        ServerOptions::new()
            .unlimited_rate()
            .flag("--write-timeout-ms", 300)
            // Only the write deadline may close it, not a missed pong.
            .ping_interval_ms(600_000),
    )
    .await;
    let api = server.api();
    api.create_users(&["reader", "stuck"]).await;
    let conv = api.create_group("big", &["reader", "stuck"]).await;
    let text = "t".repeat(16 * 1024);
    for i in 0..40 {
        api.send(&conv, "reader", &text, &format!("big-{i}")).await;
    }

    let mut stuck = RawWs::open_with_buffer(server.addr, Some("mkondo.v1.json"), Some(8192)).await;
    let reply = stuck.connect(&server.app.token("stuck")).await;
    assert!(
        matches!(reply.body, Some(v1::server_frame::Body::Reply(_))),
        "{reply:?}"
    );
    // About 25 MB of replies, never read while the server writes them.
    for id in 2..42 {
        let frame = v1::ClientFrame {
            id,
            command: Some(Command::History(v1::HistoryRequest {
                conversation_id: conv.clone(),
                limit: 100,
                ..Default::default()
            })),
        };
        stuck.send_frame(&frame).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Someone else is served meanwhile.
    let (reader, _) = server.client(Transport::WsJson, "reader").await;
    reader.ping().await.unwrap();

    // Reading now finds the connection closed: what the kernel had buffered,
    // then its end, never all 40 replies on a live connection.
    let (frames, end) = stuck.drain(WAIT).await;
    match end {
        Some(RawEvent::Ended(_)) => {}
        Some(RawEvent::Close(code, _)) => {
            assert!(
                code.is_none_or(|c| c == 3002),
                "closed with {code:?}, not as a slow consumer"
            )
        }
        other => panic!(
            "the connection is still open after {} frames: {other:?}",
            frames.len()
        ),
    }
    assert!(frames.len() < 41, "every reply was written");
    server.assert_running();
    reader.ping().await.unwrap();
}

/// An HS256 secret shorter than 32 bytes is refused when added with the CLI;
/// 32 bytes are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_hs256_secret_is_refused() {
    let server = TestServer::start(ServerOptions::new()).await;
    let add = |secret: &'static str| {
        let file = server.dir().join(format!("secret-{}", secret.len()));
        std::fs::write(&file, secret).unwrap();
        let db = server.database_url().to_owned();
        let app = server.app.app_id.clone();
        async move {
            tokio::process::Command::new(mkondo_bin())
                .args(["app", "add-key", "--app", &app, "--alg", "HS256"])
                .arg("--public-key")
                .arg(&file)
                .args(["--database", &db])
                .output()
                .await
                .unwrap()
        }
    };
    let short = add("only-31-bytes-long-secret-01234").await;
    assert!(!short.status.success(), "a 31-byte secret was accepted");
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(stderr.contains("32"), "{stderr}");
    let long = add("exactly-32-bytes-long-secret-012").await;
    assert!(
        long.status.success(),
        "{}",
        String::from_utf8_lossy(&long.stderr)
    );
}

/// An app with `auto_create_users` off refuses a connect from a user it does not
/// know, while another app on the same server creates theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_create_users_is_per_app() {
    const SECRET: &str = "operator-secret-for-tests-0123";
    let server =
        TestServer::start(ServerOptions::new().operator_secret(SECRET).extra_apps(1)).await;
    let operator = server.rest_as(SECRET);
    let closed = &server.other_apps[0];
    let body: Value = operator
        .patch(
            &format!("/v1/admin/apps/{}", closed.app_id),
            json!({"auto_create_users": false}),
        )
        .await
        .expect(200);
    assert_eq!(body["auto_create_users"], false, "{body}");
    assert_eq!(body["app_id"], closed.app_id.as_str());

    let refused = server.open(Transport::WsJson).await;
    let err = refused
        .connect(&closed.token("newbie"), HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.code, "unauthenticated", "{err:?}");
    assert_eq!(err.reason, "unknown_user", "{err:?}");

    let (_, reply) = server.client(Transport::WsJson, "newbie").await;
    assert_eq!(reply.user.unwrap().id, "newbie");

    // Back on: the same user is created.
    operator
        .patch(
            &format!("/v1/admin/apps/{}", closed.app_id),
            json!({"auto_create_users": true}),
        )
        .await
        .expect(200);
    let (_, reply) = server
        .client_with_token(Transport::WsJson, &closed.token("newbie"))
        .await;
    assert_eq!(reply.user.unwrap().id, "newbie");
    operator
        .patch("/v1/admin/apps/nope", json!({"auto_create_users": true}))
        .await
        .expect_error(404, "not_found");
}

/// A user token cannot tell a conversation that does not exist from one it is
/// not in: the same status and code on every REST route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_answers_alike_for_missing_and_foreign_conversations() {
    let server = TestServer::start(ServerOptions::new()).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let conv = api.create_group("private", &["alice", "bob"]).await;
    api.send(&conv, "alice", "hi", "hi-1").await;
    let carol = server.rest_as(&server.app.token("carol"));
    for id in [conv.as_str(), "no-such-conversation"] {
        let calls = [
            carol.get(&format!("/v1/conversations/{id}")).await,
            carol.get(&format!("/v1/conversations/{id}/messages")).await,
            carol.get(&format!("/v1/conversations/{id}/members")).await,
            carol
                .post(
                    &format!("/v1/conversations/{id}/messages"),
                    json!({"text": "x"}),
                )
                .await,
            carol
                .post(
                    &format!("/v1/conversations/{id}/members"),
                    json!({"user_ids": ["carol"]}),
                )
                .await,
            carol
                .patch(
                    &format!("/v1/conversations/{id}/messages/1"),
                    json!({"text": "y"}),
                )
                .await,
            carol
                .post(
                    &format!("/v1/conversations/{id}/messages/1/reactions"),
                    json!({"emoji": "👍"}),
                )
                .await,
            carol
                .post(&format!("/v1/me/conversations/{id}/hide"), json!({}))
                .await,
        ];
        for resp in calls {
            resp.expect_error(404, "not_found");
        }
    }
}

/// The real-time twin: subscribe, history, send, typing, read and leave answer
/// `not_found` for both.
async fn realtime_answers_alike_for_missing_and_foreign_conversations(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().unlimited_rate()).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let conv = api.create_group("private", &["alice", "bob"]).await;
    api.send(&conv, "alice", "hi", "hi-1").await;
    let (carol, _) = server.client(transport, "carol").await;
    for id in [conv.as_str(), "no-such-conversation"] {
        let errors = [
            carol.subscribe(id).await.map(drop).unwrap_err(),
            carol.history(id, 0, 0, 10).await.map(drop).unwrap_err(),
            carol
                .send_message(id, "x", "x-1")
                .await
                .map(drop)
                .unwrap_err(),
            carol.typing(id, false).await.unwrap_err(),
            carol.read(id, 1).await.map(drop).unwrap_err(),
            carol.leave(id).await.unwrap_err(),
            carol.edit(id, 1, "y").await.map(drop).unwrap_err(),
            carol.react(id, 1, "👍").await.map(drop).unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.code, "not_found", "{id}: {err:?}");
        }
    }
}
