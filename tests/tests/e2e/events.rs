//! The event feed: `GET /v1/events` pages every change in order and resumes
//! from a cursor; Admin `StreamEvents` serves the same events and follows new
//! ones; only the app's API key reads it.

use std::time::Duration;

use crate::admin_common::*;
use mkondo_proto::v1::StreamEventsRequest;
use mkondo_tests::{ServerOptions, TestServer};
use serde_json::{json, Value};

/// Every event after `after`, `limit` at a time, until caught up; and the last cursor.
async fn read_feed(api: &mkondo_tests::Rest, after: &str, limit: u32) -> (Vec<Value>, String) {
    let mut events = Vec::new();
    let mut cursor = after.to_owned();
    loop {
        let page = api
            .get(&format!("/v1/events?after={cursor}&limit={limit}"))
            .await
            .ok();
        let got = page["events"].as_array().unwrap().clone();
        cursor = page["next_cursor"].as_str().unwrap().to_owned();
        if got.is_empty() {
            return (events, cursor);
        }
        events.extend(got);
    }
}

/// The feed once it holds at least `n` events (an event is served once its
/// transaction and every earlier one committed: on PostgreSQL a moment later).
async fn feed_until(api: &mkondo_tests::Rest, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let (events, _) = read_feed(api, "", 100).await;
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the feed never reached {n} events");
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_pages_every_change_in_order_and_resumes_from_a_cursor() {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let group = api.create_group("pair", &["alice", "bob"]).await;
    let m1 = api.send(&group, "alice", "one", "c-1").await;
    // A retried send is the same message: no second event.
    api.send(&group, "alice", "one", "c-1").await;
    api.patch(
        &format!(
            "/v1/conversations/{group}/messages/{}",
            mkondo_tests::seq_of(&m1)
        ),
        json!({"text": "one, edited"}),
    )
    .await
    .ok();

    let all = feed_until(&api, 5).await;
    assert_eq!(
        types(&all),
        [
            "user.created",
            "user.created",
            "conversation.created",
            "message.created",
            "message.edited"
        ]
    );
    let created = &all[3];
    assert_eq!(created["conversation_id"], group.as_str());
    assert_eq!(created["app_id"], server.app.app_id.as_str());
    assert_eq!(created["data"]["message"]["text"], "one");
    assert_eq!(created["data"]["message"]["client_id"], "c-1");
    assert!(created["id"].as_str().unwrap().starts_with("ev_"));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(all[4]["data"]["message"]["text"], "one, edited");

    // Pages of two give the same events; a cursor resumes after its event.
    let (paged, last) = read_feed(&api, "", 2).await;
    assert_eq!(paged, all);
    let third = all[2]["cursor"].as_str().unwrap();
    let (rest, _) = read_feed(&api, third, 100).await;
    assert_eq!(rest, all[3..]);
    // Caught up: nothing new, and the cursor stays.
    let empty = api.get(&format!("/v1/events?after={last}")).await.ok();
    assert_eq!(empty["events"], json!([]));
    assert_eq!(empty["next_cursor"], last.as_str());
    // A new change shows up after it.
    api.send(&group, "bob", "two", "c-2").await;
    let mut next = Vec::new();
    for _ in 0..100 {
        next = read_feed(&api, &last, 100).await.0;
        if !next.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(types(&next), ["message.created"]);
    assert_eq!(next[0]["data"]["message"]["text"], "two");

    // Types filter.
    let only = api
        .get("/v1/events?types=conversation.created,message.edited")
        .await
        .ok();
    assert_eq!(
        types(only["events"].as_array().unwrap()),
        ["conversation.created", "message.edited"]
    );

    // Bad requests are refused with a clear code.
    for bad in [
        "/v1/events?after=banana",
        "/v1/events?after=1-2-3",
        "/v1/events?types=message.exploded",
        "/v1/events?limit=1001",
        "/v1/events?limit=0",
    ] {
        api.get(bad).await.expect_error(422, "invalid_argument");
    }
    // Only the backend reads the feed; another app sees none of these.
    server
        .rest_as(&server.app.token("alice"))
        .get("/v1/events")
        .await
        .expect_error(403, "permission_denied");
    server.rest_anon().get("/v1/events").await.expect(401);
    let other = server.rest_as(&server.other_apps[0].api_key);
    let theirs = other.get("/v1/events").await.ok();
    assert_eq!(theirs["events"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_stream_serves_the_feed_then_follows_new_events() {
    let (server, mut grpc, api, group) = setup().await;
    // setup: 3 users, the group, 5 messages.
    let feed = feed_until(&api, 9).await;
    let mut stream = ok(
        "StreamEvents",
        grpc.stream_events(StreamEventsRequest::default()).await,
    );
    let mut streamed = Vec::new();
    while streamed.len() < feed.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream serves the feed")
            .unwrap()
            .unwrap();
        streamed.push(event);
    }
    for (wire, rest) in streamed.iter().zip(&feed) {
        assert_eq!(wire.id, rest["id"].as_str().unwrap());
        assert_eq!(wire.r#type, rest["type"].as_str().unwrap());
        assert_eq!(wire.cursor, rest["cursor"].as_str().unwrap());
        assert_eq!(
            wire.conversation_id,
            rest["conversation_id"].as_str().unwrap_or_default()
        );
        let data = mkondo_proto::convert::struct_to_json(wire.data.as_ref().unwrap());
        assert_eq!(
            normalize(&data),
            normalize(&rest["data"]),
            "{}",
            wire.r#type
        );
    }
    // Then it follows: a new message arrives on the open stream.
    api.send(&group, "bob", "live", "live-1").await;
    let live = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream follows new events")
        .unwrap()
        .unwrap();
    assert_eq!(live.r#type, "message.created");
    let data = mkondo_proto::convert::struct_to_json(live.data.as_ref().unwrap());
    assert_eq!(data["message"]["text"], "live");

    // From a cursor; a bad cursor or type fails the call itself.
    let mut from = ok(
        "StreamEvents after",
        grpc.stream_events(StreamEventsRequest {
            after: streamed[7].cursor.clone(),
            types: vec![],
        })
        .await,
    );
    let first = from.message().await.unwrap().unwrap();
    assert_eq!(first.id, streamed[8].id);
    for bad in [
        StreamEventsRequest {
            after: "nope".into(),
            types: vec![],
        },
        StreamEventsRequest {
            after: String::new(),
            types: vec!["user.exploded".into()],
        },
    ] {
        let status = grpc.stream_events(bad).await.unwrap_err();
        assert_eq!(error_code(&status), "invalid_argument", "{status:?}");
    }
    // A user token is refused.
    let mut as_user = admin_as(&server, Some(&server.app.token("alice"))).await;
    let status = as_user
        .stream_events(StreamEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error_code(&status), "permission_denied");
}
