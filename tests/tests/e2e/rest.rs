//! The REST API: every core endpoint, its scopes (API key vs user token) and its
//! errors, cursor pagination, and REST messages reaching real-time clients live.

use std::collections::HashSet;

use futures::{stream, StreamExt};
use mkondo_tests::{json_u64, seq_of, urlencode, Rest, TestServer, Transport, WAIT};
use serde_json::{json, Value};

fn ids(body: &Value, field: &str) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
        .iter()
        .map(|i| i[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Follows `next_cursor` from `path` (which has a `?`), returning every page.
async fn all_pages(rest: &Rest, path: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = path.to_owned();
    for _ in 0..1000 {
        let page = rest.get(&next).await.ok();
        let cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
        pages.push(page);
        if cursor.is_empty() {
            return pages;
        }
        next = format!("{path}&cursor={}", urlencode(&cursor));
    }
    panic!("more than 1000 pages at {path}");
}

/// No credentials, a wrong API key, or a user token where an API key is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_scopes() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let with_alice = api.create_group("with alice", &["alice", "bob"]).await;
    let without_alice = api.create_group("without alice", &["bob", "carol"]).await;
    api.send(&with_alice, "bob", "hello alice", "m-1").await;
    api.send(&without_alice, "bob", "private", "m-2").await;

    server
        .rest_anon()
        .get("/v1/users")
        .await
        .expect_error(401, "unauthenticated");
    for bad in ["mk_not_a_real_key", "garbage", ""] {
        let r = server.rest_as(bad).get("/v1/users").await;
        assert_eq!(r.status, 401, "bearer {bad:?}: {}", r.text);
        assert!(r.body["error"]["request_id"].is_string(), "{}", r.text);
    }

    let alice = server.rest_as(&server.app.token("alice"));
    // Backend-only operations.
    alice
        .post("/v1/users", json!({"id": "eve", "name": "Eve"}))
        .await
        .expect_error(403, "permission_denied");
    alice
        .post("/v1/tokens", json!({"user_id": "bob", "ttl_seconds": 60}))
        .await
        .expect_error(403, "permission_denied");
    alice
        .get("/v1/users/bob/conversations")
        .await
        .expect_error(403, "permission_denied");

    // What Alice may see.
    let mine = alice.get("/v1/me/conversations").await.ok();
    assert_eq!(ids(&mine, "id"), [with_alice.as_str()]);
    assert_eq!(json_u64(&mine["items"][0]["unread_count"]), Some(1));
    let history = alice
        .get(&format!("/v1/conversations/{with_alice}/messages"))
        .await
        .ok();
    assert_eq!(history["items"][0]["text"], "hello alice");
    let r = alice
        .get(&format!("/v1/conversations/{without_alice}/messages"))
        .await;
    assert!(
        r.status == 403 || r.status == 404,
        "a user token on another user's conversation: {} {}",
        r.status,
        r.text
    );
    assert!(!r.text.contains("private"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users() {
    let server = TestServer::start_default().await;
    let api = server.api();

    let created = api
        .post(
            "/v1/users",
            json!({"id": "alice", "name": "Alice", "avatar_url": "https://example.com/a.png", "data": {"team": "red"}}),
        )
        .await
        .expect(201);
    assert_eq!(created["id"], "alice");
    assert_eq!(created["name"], "Alice");
    assert_eq!(created["avatar_url"], "https://example.com/a.png");
    assert_eq!(created["data"]["team"], "red");

    // Upsert.
    let upserted = api
        .post("/v1/users", json!({"id": "alice", "name": "Alice B."}))
        .await
        .expect(200);
    assert_eq!(upserted["name"], "Alice B.");
    let got = api.get("/v1/users/alice").await.ok();
    assert_eq!(got["name"], "Alice B.");
    assert!(got["created_at"].is_string(), "{got}");

    let patched = api
        .patch("/v1/users/alice", json!({"name": "Ally"}))
        .await
        .ok();
    assert_eq!(patched["name"], "Ally");
    assert_eq!(api.get("/v1/users/alice").await.ok()["name"], "Ally");

    api.get("/v1/users/nobody")
        .await
        .expect_error(404, "not_found");
    api.patch("/v1/users/nobody", json!({"name": "x"}))
        .await
        .expect_error(404, "not_found");

    // User ids: 1-128 of [A-Za-z0-9._@:-].
    for bad in ["bad id!", "", "slash/y", "ünï", &"x".repeat(129)] {
        api.post("/v1/users", json!({"id": bad, "name": "x"}))
            .await
            .expect_error(422, "invalid_argument");
    }
    for good in ["a.b_c@d:e-f", &"y".repeat(128)] {
        api.post("/v1/users", json!({"id": good})).await.expect(201);
    }
    api.post("/v1/users", json!({"id": "d1", "data": [1, 2]}))
        .await
        .expect_error(422, "invalid_argument");
    let r = api
        .post(
            "/v1/users",
            json!({"id": "d2", "data": {"big": "z".repeat(5000)}}),
        )
        .await;
    assert!(
        (r.status == 413 && r.error_code() == Some("too_large"))
            || (r.status == 422 && r.error_code() == Some("invalid_argument")),
        "user data over 4 KiB: {} {}",
        r.status,
        r.text
    );
    let r = api
        .request(
            reqwest::Method::POST,
            "/v1/users",
            Some(b"{not json".to_vec()),
        )
        .await;
    assert!(
        (r.status == 400 || r.status == 422) && r.body["error"]["code"].is_string(),
        "invalid JSON body: {} {}",
        r.status,
        r.text
    );

    // Listing pages through everyone, once each; search by name and by id.
    let more: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
    api.create_users(&more.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let pages = all_pages(&api, "/v1/users?limit=3").await;
    let mut listed = Vec::new();
    for page in &pages {
        let items = ids(page, "id");
        assert!(items.len() <= 3, "page over the limit: {page}");
        listed.extend(items);
    }
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "a user listed twice: {listed:?}"
    );
    assert_eq!(listed.len(), 10, "{listed:?}");
    let found = ids(&api.get("/v1/users?q=Ally").await.ok(), "id");
    assert_eq!(found, ["alice"]);
    let found = ids(&api.get("/v1/users?q=u3").await.ok(), "id");
    assert_eq!(found, ["u3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_and_members() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["a", "b", "c", "d"]).await;

    let r = api
        .post(
            "/v1/conversations",
            json!({"kind": "group", "name": "G", "members": ["a", "b"]}),
        )
        .await;
    assert!(
        r.status == 201 || r.status == 200,
        "{} {}",
        r.status,
        r.text
    );
    let conv = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["kind"], "group");
    assert_eq!(r.body["name"], "G");

    let got = api.get(&format!("/v1/conversations/{conv}")).await.ok();
    assert_eq!(
        (got["id"].as_str(), got["name"].as_str()),
        (Some(conv.as_str()), Some("G"))
    );
    let patched = api
        .patch(
            &format!("/v1/conversations/{conv}"),
            json!({"name": "G2", "data": {"topic": "x"}}),
        )
        .await
        .ok();
    assert_eq!(patched["name"], "G2");
    let got = api.get(&format!("/v1/conversations/{conv}")).await.ok();
    assert_eq!(got["name"], "G2");
    assert_eq!(got["data"]["topic"], "x");
    let listed = all_pages(&api, "/v1/conversations?limit=100").await;
    assert!(ids(&listed[0], "id").contains(&conv));

    let members_path = format!("/v1/conversations/{conv}/members");
    let member_set =
        |body: Value| -> HashSet<String> { ids(&body, "user_id").into_iter().collect() };
    let members = api.get(&members_path).await.ok();
    assert_eq!(
        member_set(members.clone()),
        HashSet::from(["a".into(), "b".into()])
    );
    assert!(members["items"][0]["role"].is_string(), "{members}");
    api.post(&members_path, json!({"user_ids": ["c"]}))
        .await
        .ok();
    assert_eq!(
        member_set(api.get(&members_path).await.ok()),
        HashSet::from(["a".into(), "b".into(), "c".into()])
    );
    api.delete(&format!("{members_path}/c")).await.ok();
    assert_eq!(
        member_set(api.get(&members_path).await.ok()),
        HashSet::from(["a".into(), "b".into()])
    );
    api.delete(&format!("{members_path}/c"))
        .await
        .expect_error(404, "not_found");

    // Unknown ids.
    for path in [
        "/v1/conversations/nope",
        "/v1/conversations/nope/members",
        "/v1/conversations/nope/messages",
    ] {
        api.get(path).await.expect_error(404, "not_found");
    }
    api.patch("/v1/conversations/nope", json!({"name": "x"}))
        .await
        .expect_error(404, "not_found");
    api.post("/v1/conversations/nope/members", json!({"user_ids": ["a"]}))
        .await
        .expect_error(404, "not_found");

    // A chosen id is taken once.
    api.create_group_with_id("fixed", "F", &["a"]).await;
    api.post(
        "/v1/conversations",
        json!({"id": "fixed", "kind": "group", "name": "F again", "members": ["b"]}),
    )
    .await
    .expect_error(409, "already_exists");
    api.post(
        "/v1/conversations",
        json!({"id": "bad id!", "kind": "group", "members": ["a"]}),
    )
    .await
    .expect_error(422, "invalid_argument");

    // Direct: exactly two members, the same conversation both ways.
    let direct = api.create_direct("a", "d").await;
    assert_eq!(api.create_direct("d", "a").await, direct);
    let got = api.get(&format!("/v1/conversations/{direct}")).await.ok();
    assert_eq!(got["kind"], "direct");
    for members in [json!(["a", "b", "c"]), json!(["a"])] {
        api.post(
            "/v1/conversations",
            json!({"kind": "direct", "members": members}),
        )
        .await
        .expect_error(422, "invalid_argument");
    }
    api.post(
        "/v1/conversations",
        json!({"kind": "weird", "members": ["a"]}),
    )
    .await
    .expect_error(422, "invalid_argument");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["a", "b", "outsider"]).await;
    let conv = api.create_group("msgs", &["a", "b"]).await;
    let path = format!("/v1/conversations/{conv}/messages");

    let first = api
        .post(
            &path,
            json!({"sender_id": "a", "text": "hi", "client_id": "r-1", "data": {"k": 1}}),
        )
        .await
        .expect(201);
    assert_eq!(seq_of(&first), 1);
    assert!(first["seq"].is_u64(), "seq is a JSON number: {first}");
    assert_eq!(first["sender_id"], "a");
    assert_eq!(first["text"], "hi");
    assert_eq!(first["client_id"], "r-1");
    assert_eq!(first["data"]["k"], 1);
    assert!(first["id"].is_string());
    let again = api
        .post(
            &path,
            json!({"sender_id": "a", "text": "hi", "client_id": "r-1"}),
        )
        .await
        .expect(200);
    assert_eq!(
        (again["id"].clone(), seq_of(&again)),
        (first["id"].clone(), 1)
    );

    api.post(
        &path,
        json!({"sender_id": "a", "text": "x".repeat(16 * 1024 + 1), "client_id": "big"}),
    )
    .await
    .expect_error(413, "too_large");
    let max = api
        .post(
            &path,
            json!({"sender_id": "a", "text": "x".repeat(16 * 1024), "client_id": "max"}),
        )
        .await
        .expect(201);
    assert_eq!(seq_of(&max), 2);
    let huge_body =
        json!({"sender_id": "a", "text": "y".repeat(2 * 1024 * 1024), "client_id": "huge"});
    api.post(&path, huge_body)
        .await
        .expect_error(413, "too_large");
    api.post(&path, json!({"sender_id": "a", "client_id": "empty"}))
        .await
        .expect_error(422, "invalid_argument");
    let r = api
        .post(
            &path,
            json!({"sender_id": "outsider", "text": "let me in", "client_id": "o-1"}),
        )
        .await;
    assert!(
        r.status == 403 || r.status == 422,
        "a non-member sending: {} {}",
        r.status,
        r.text
    );
    api.post(
        "/v1/conversations/nope/messages",
        json!({"sender_id": "a", "text": "x"}),
    )
    .await
    .expect_error(404, "not_found");

    // The users' conversation lists, with unread counts, for the API key and the user.
    let of_b = api.get("/v1/users/b/conversations").await.ok();
    assert_eq!(ids(&of_b, "id"), [conv.as_str()]);
    assert_eq!(json_u64(&of_b["items"][0]["unread_count"]), Some(2));
    let me_b = server
        .rest_as(&server.app.token("b"))
        .get("/v1/me/conversations")
        .await
        .ok();
    assert_eq!(json_u64(&me_b["items"][0]["unread_count"]), Some(2));
    let of_a = api.get("/v1/users/a/conversations").await.ok();
    assert_eq!(
        json_u64(&of_a["items"][0]["unread_count"]),
        Some(0),
        "the sender read their own"
    );

    // What a user sent.
    api.send(&conv, "b", "from b", "b-1").await;
    let sent_by_a = api.get("/v1/users/a/messages").await.ok();
    let texts: Vec<&str> = sent_by_a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2, "{sent_by_a}");
    assert!(texts.contains(&"hi") && !texts.contains(&"from b"));
    api.get("/v1/users/nobody/messages")
        .await
        .expect_error(404, "not_found");

    let of_a = api.get("/v1/users/a/conversations").await.ok();
    assert_eq!(json_u64(&of_a["items"][0]["unread_count"]), Some(1));
    let of_b = api.get("/v1/users/b/conversations").await.ok();
    assert_eq!(json_u64(&of_b["items"][0]["unread_count"]), Some(0));
}

/// 250 messages page by 100 with `next_cursor`, backward from the newest and
/// forward with `after`: no gap, no duplicate, ascending within each page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_through_250_messages() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["a", "b"]).await;
    let conv = api.create_group("long", &["a", "b"]).await;
    let path = format!("/v1/conversations/{conv}/messages");
    stream::iter(1..=250)
        .map(|i| {
            let api = &api;
            let conv = &conv;
            async move {
                api.send(conv, "a", &format!("n{i}"), &format!("c-{i}"))
                    .await
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;

    let check_pages = |pages: &[Value], want_sizes: &[usize]| -> Vec<u64> {
        let mut all = Vec::new();
        for page in pages {
            let seqs: Vec<u64> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(seq_of)
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "a page is not ascending: {seqs:?}"
            );
            all.extend(seqs);
        }
        let sizes: Vec<usize> = pages
            .iter()
            .map(|p| p["items"].as_array().unwrap().len())
            .filter(|n| *n > 0)
            .collect();
        assert_eq!(sizes, want_sizes);
        all.sort_unstable();
        all
    };

    let backward = all_pages(&api, &format!("{path}?limit=100")).await;
    let first: Vec<u64> = backward[0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(seq_of)
        .collect();
    assert_eq!(
        first.first().copied(),
        Some(151),
        "the first page is the newest"
    );
    let all = check_pages(&backward, &[100, 100, 50]);
    mkondo_tests::assert_seqs("backward pages", &all, 1..=250);
    let texts: HashSet<&str> = backward
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    let want: HashSet<String> = (1..=250).map(|i| format!("n{i}")).collect();
    assert_eq!(
        texts,
        want.iter().map(String::as_str).collect::<HashSet<_>>()
    );

    let forward = all_pages(&api, &format!("{path}?after=100&limit=100")).await;
    let all = check_pages(&forward, &[100, 50]);
    mkondo_tests::assert_seqs("forward pages", &all, 101..=250);

    let before = api.get(&format!("{path}?before=101&limit=100")).await.ok();
    let seqs: Vec<u64> = before["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(seq_of)
        .collect();
    mkondo_tests::assert_seqs("before=101", &seqs, 1..=100);

    let r = api.get(&format!("{path}?limit=500")).await;
    if r.status == 200 {
        assert!(
            r.body["items"].as_array().unwrap().len() <= 100,
            "limit is capped at 100"
        );
    } else {
        r.expect_error(422, "invalid_argument");
    }

    // A member pages with their own token too.
    let as_b = server.rest_as(&server.app.token("b"));
    let pages = all_pages(&as_b, &format!("{path}?limit=100")).await;
    let all = check_pages(&pages, &[100, 100, 50]);
    mkondo_tests::assert_seqs("pages with a user token", &all, 1..=250);
}

/// A message sent through REST reaches connected clients live, with its seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_message_reaches_realtime_clients() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["a", "b"]).await;
    let conv = api.create_group("live", &["a", "b"]).await;
    let (json_client, _) = server.client(Transport::WsJson, "b").await;
    let (grpc_client, _) = server.client(Transport::Grpc, "b").await;
    let sent = api.send(&conv, "a", "from the backend", "be-1").await;
    for client in [&json_client, &grpc_client] {
        let m = client.expect_message(&conv, WAIT).await;
        assert_eq!(m.seq, seq_of(&sent));
        assert_eq!(m.text, "from the backend");
        assert_eq!(m.sender_id, "a");
        assert_eq!(m.id, sent["id"].as_str().unwrap());
    }
    // And the other way: a real-time message is in REST history at once.
    json_client
        .send_message(&conv, "from b", "rt-1")
        .await
        .unwrap();
    let history = api.history_all(&conv).await;
    assert_eq!(history.last().unwrap()["text"], "from b");
}

/// `POST /v1/tokens` mints a working token with the requested lifetime and groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_endpoint() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["owner"]).await;
    api.create_group_with_id("club", "Club", &["owner"]).await;
    let before = mkondo_tests::now_secs();
    let minted = api
        .post(
            "/v1/tokens",
            json!({"user_id": "zed", "ttl_seconds": 600, "groups": ["club"]}),
        )
        .await
        .ok();
    let token = minted["token"].as_str().expect("token").to_owned();
    let (_zed, reply) = server.client_with_token(Transport::WsJson, &token).await;
    assert_eq!(reply.user.unwrap().id, "zed");
    let exp = reply.token_expires_at.unwrap().seconds;
    assert!(
        (before + 595..=mkondo_tests::now_secs() + 605).contains(&exp),
        "expiry {exp} is not ~600 s from now"
    );
    assert!(reply.conversations.iter().any(|c| c.id == "club"));
    api.post(
        "/v1/tokens",
        json!({"user_id": "bad id!", "ttl_seconds": 60}),
    )
    .await
    .expect_error(422, "invalid_argument");
    // The minted token works over REST too.
    server
        .rest_as(&token)
        .get("/v1/me/conversations")
        .await
        .ok();
}
