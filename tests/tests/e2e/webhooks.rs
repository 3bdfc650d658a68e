//! Webhooks against real receivers on loopback (`mkondo_tests::webhook_receiver`)
//! that verify every signature: every event type arrives and equals the feed,
//! a failing receiver gets everything in order once it recovers, deliveries
//! survive a SIGKILL, a dead endpoint is disabled and resumes when re-enabled,
//! private addresses are refused without the operator setting, secrets rotate
//! with two signatures meanwhile, and an app's endpoints are its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use mkondo_server::store::events::EVENT_TYPES;
use mkondo_tests::webhook_receiver::{Answer, Delivery, Receiver};
use mkondo_tests::{
    seq_of, urlencode, Rest, ServerOptions, TestServer, Transport, TEST_SECRETS_KEY, WAIT,
};
use serde_json::{json, Value};

/// A server that may POST to loopback, with retries shrunk.
fn options() -> ServerOptions {
    ServerOptions::new()
        .outbound_allow_private()
        .flag("--webhook-retry-min-ms", 100)
        .flag("--webhook-retry-max-ms", 1_000)
}

/// Creates an endpoint for `receiver` (every type unless `types`), tells the
/// receiver its secret, and answers the endpoint.
async fn subscribe(api: &Rest, receiver: &Receiver, types: &[&str]) -> Value {
    let created = api
        .post(
            "/v1/webhooks",
            json!({"url": receiver.url, "event_types": types, "description": "tests"}),
        )
        .await
        .expect(201);
    let secret = created["secret"].as_str().expect("a secret on creation");
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.set_secrets(&[secret]);
    created
}

/// `POST /v1/webhooks/{id}/test` for `hook`: the test event's outcome.
async fn test_event(api: &Rest, hook: &Value) -> Value {
    let id = hook["id"].as_str().unwrap();
    api.post(&format!("/v1/webhooks/{id}/test"), json!({}))
        .await
        .ok()
}

/// Every event of the feed after `after` (the feed's paging followed to its end).
async fn feed(api: &Rest, after: Option<&str>) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor = after.map(str::to_owned);
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/events?limit=100&after={}", urlencode(c)),
            None => "/v1/events?limit=100".to_owned(),
        };
        let page = api.get(&path).await.ok();
        let items = page["events"].as_array().expect("events").clone();
        if items.is_empty() {
            return events;
        }
        events.extend(items);
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The first accepted delivery of each event id, in arrival order.
fn first_accepted(deliveries: &[Delivery]) -> Vec<Delivery> {
    let mut seen = BTreeSet::new();
    deliveries
        .iter()
        .filter(|d| d.accepted() && seen.insert(d.id.clone()))
        .cloned()
        .collect()
}

/// Asserts that, per conversation, events arrived (first accepted copies) in
/// the feed's order.
#[track_caller]
fn assert_feed_order_per_conversation(feed: &[Value], deliveries: &[Delivery]) {
    let position: HashMap<&str, usize> = feed
        .iter()
        .enumerate()
        .map(|(i, e)| (e["id"].as_str().unwrap(), i))
        .collect();
    let mut last: HashMap<Option<String>, usize> = HashMap::new();
    for d in first_accepted(deliveries) {
        let Some(&at) = position.get(d.id.as_str()) else {
            continue;
        };
        if let Some(&before) = last.get(&d.conversation) {
            assert!(
                at > before,
                "{} ({}) of {:?} arrived after a later event of its conversation",
                d.id,
                d.kind,
                d.conversation
            );
        }
        last.insert(d.conversation.clone(), at);
    }
}

/// Asserts that message seqs arrived in increasing order per conversation.
#[track_caller]
fn assert_seqs_in_order(deliveries: &[Delivery]) -> usize {
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut n = 0;
    for d in first_accepted(deliveries) {
        if d.kind != "message.created" {
            continue;
        }
        let conv = d.conversation.clone().unwrap();
        let seq = seq_of(&d.body["data"]["message"]);
        if let Some(&before) = last.get(&conv) {
            assert!(seq > before, "{conv}: seq {seq} after {before}");
        }
        last.insert(conv, seq);
        n += 1;
    }
    n
}

/// Every change the outbox records, driven through REST and a real-time
/// client; every event arrives signed and equals the feed's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_arrives_signed_and_equals_the_feed() {
    let server = TestServer::start(options()).await;
    let api = server.api();
    let receiver = Receiver::start().await;
    subscribe(&api, &receiver, &[]).await;
    let start = feed(&api, None).await;

    // Users.
    api.create_users(&["alice", "bob", "carol", "dave"]).await;
    api.patch("/v1/users/bob", json!({"name": "Bob B."}))
        .await
        .ok();
    // Conversations, members, roles.
    let group = api.create_group("hooks", &["alice", "bob"]).await;
    api.patch(
        &format!("/v1/conversations/{group}"),
        json!({"name": "Hooks!"}),
    )
    .await
    .ok();
    api.post(
        &format!("/v1/conversations/{group}/members"),
        json!({"user_ids": ["carol"]}),
    )
    .await
    .ok();
    api.patch(
        &format!("/v1/conversations/{group}/members/carol"),
        json!({"role": "admin"}),
    )
    .await
    .ok();
    api.delete(&format!("/v1/conversations/{group}/members/carol"))
        .await
        .expect(204);
    // Messages: send, edit, react, unreact, delete.
    let m1 = seq_of(&api.send(&group, "alice", "one", "w-1").await);
    let m2 = seq_of(&api.send(&group, "bob", "two", "w-2").await);
    api.patch(
        &format!("/v1/conversations/{group}/messages/{m1}"),
        json!({"text": "one, edited"}),
    )
    .await
    .ok();
    api.post(
        &format!("/v1/conversations/{group}/messages/{m1}/reactions"),
        json!({"emoji": "👍", "user_id": "bob"}),
    )
    .await
    .ok();
    api.delete(&format!(
        "/v1/conversations/{group}/messages/{m1}/reactions/{}?user_id=bob",
        urlencode("👍")
    ))
    .await
    .ok();
    api.delete(&format!("/v1/conversations/{group}/messages/{m2}"))
        .await
        .ok();
    // Read position, through a real-time client.
    let (alice, _) = server.client(Transport::WsJson, "alice").await;
    alice.read(&group, m2).await.unwrap();
    // Hide, blocks, notifications.
    api.post(
        &format!("/v1/users/alice/conversations/{group}/hide"),
        json!({}),
    )
    .await
    .ok();
    api.post("/v1/users/alice/blocks", json!({"user_id": "dave"}))
        .await
        .ok();
    api.delete("/v1/users/alice/blocks/dave").await.expect(204);
    let n = api
        .post("/v1/users/bob/notifications", json!({"payload": {"k": 1}}))
        .await
        .ok();
    api.post(
        &format!(
            "/v1/users/bob/notifications/{}/ack",
            n["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await
    .expect(204);
    // Lifecycle: deactivate, delete a user and a conversation.
    api.post("/v1/users/carol/deactivate", json!({})).await.ok();
    api.post("/v1/users/carol/reactivate", json!({})).await.ok();
    api.delete("/v1/users/dave").await.ok();
    // Everything so far is delivered before the conversation's delete
    // empties the messages its retained events carry.
    let before = feed(&api, None).await;
    receiver
        .wait_for_ids(&ids(&before[start.len()..]), WAIT * 3)
        .await;
    api.delete(&format!("/v1/conversations/{group}"))
        .await
        .expect(204);

    let events = feed(&api, None).await;
    let new: Vec<Value> = events[start.len()..].to_vec();
    let kinds: BTreeSet<&str> = new.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for expected in EVENT_TYPES {
        assert!(
            kinds.contains(expected),
            "the feed has no {expected} event; it has {kinds:?}"
        );
    }
    let got = receiver.wait_for_ids(&ids(&new), WAIT * 3).await;
    receiver.assert_all_valid();
    let by_id: BTreeMap<&str, &Delivery> = got.iter().map(|d| (d.id.as_str(), d)).collect();
    for event in &new {
        let d = by_id[event["id"].as_str().unwrap()];
        assert_same_event(&d.body, event);
        assert_eq!(d.signatures, 1, "one secret, one signature");
    }
    assert_feed_order_per_conversation(&events, &got);
}

/// A POSTed body equals the feed's event, except that deleting a message or
/// its conversation redacts the retained events carrying it: one delivered
/// before the delete carried the message as it was then, the feed now carries
/// its tombstone, or (conversation deleted) the message with text and data
/// emptied.
#[track_caller]
fn assert_same_event(delivered: &Value, feed: &Value) {
    if delivered == feed {
        return;
    }
    let (sent, now) = (&delivered["data"]["message"], &feed["data"]["message"]);
    let tombstone = now["deleted_at"].is_string();
    let emptied = {
        let mut emptied = sent.clone();
        emptied["text"] = json!("");
        emptied["data"] = json!({});
        &emptied == now
    };
    assert!(
        (tombstone || emptied) && sent["seq"] == now["seq"] && sent["id"] == now["id"],
        "the POSTed body differs from the feed's event:\n{delivered}\n{feed}"
    );
    let strip = |v: &Value| {
        let mut v = v.clone();
        v["data"] = Value::Null;
        v
    };
    assert_eq!(
        strip(delivered),
        strip(feed),
        "only the redacted message differs"
    );
}

/// Sends `n` messages round-robin over `convs`, answering their feed ids afterwards.
async fn send_many(api: &Rest, convs: &[String], n: usize, tag: &str) {
    for i in 0..n {
        let conv = &convs[i % convs.len()];
        api.send(conv, "alice", &format!("{tag} {i}"), &format!("{tag}-{i}"))
            .await;
    }
}

async fn three_groups(api: &Rest) -> Vec<String> {
    api.create_users(&["alice", "bob"]).await;
    let mut convs = Vec::new();
    for name in ["a", "b", "c"] {
        convs.push(api.create_group(name, &["alice", "bob"]).await);
    }
    convs
}

/// The receiver fails every request for a minute, then recovers: the feed had
/// every event meanwhile, and every event then arrives, in order per conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_every_event_in_order_once_it_recovers() {
    let server = TestServer::start(options()).await;
    let api = server.api();
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status(500));
    let hook = subscribe(&api, &receiver, &["message.created"]).await;
    let id = hook["id"].as_str().unwrap();
    let convs = three_groups(&api).await;
    let failing_until = std::time::Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while std::time::Instant::now() < failing_until {
        send_many(&api, &convs, 6, &format!("fail{sent}")).await;
        sent += 6;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let failed = receiver.deliveries();
    assert!(
        failed.len() >= 3 && failed.iter().all(|d| !d.accepted()),
        "retried while failing"
    );
    let messages: Vec<Value> = feed(&api, None)
        .await
        .into_iter()
        .filter(|e| e["type"] == "message.created")
        .collect();
    assert_eq!(messages.len(), sent, "the feed had every message meanwhile");
    let attempts = api
        .get(&format!("/v1/webhooks/{id}/attempts?limit=5"))
        .await
        .ok();
    assert_eq!(attempts["items"][0]["status_code"], 500, "{attempts}");
    let hook_now = api.get(&format!("/v1/webhooks/{id}")).await.ok();
    assert_eq!(hook_now["status"], "active");
    assert!(hook_now["failing_since"].is_string(), "{hook_now}");

    receiver.answer(Answer::Ok);
    let got = receiver.wait_for_ids(&ids(&messages), WAIT * 3).await;
    receiver.assert_all_valid();
    assert_eq!(assert_seqs_in_order(&got), sent);
    let hook_now = api.get(&format!("/v1/webhooks/{id}")).await.ok();
    assert!(hook_now.get("failing_since").is_none(), "{hook_now}");
}

/// SIGKILL with deliveries in flight to a slow receiver, restart on the same
/// database: every event arrives; duplicates only ever repeat an event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_a_sigkill() {
    // On PostgreSQL the killed process's leases must expire first (three POST
    // timeouts); on SQLite the next process releases them when it starts.
    let mut server = TestServer::start(options().flag("--webhook-timeout-ms", 2_000)).await;
    let api = server.api();
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Slow(Duration::from_millis(300)));
    subscribe(&api, &receiver, &["message.created"]).await;
    let convs = three_groups(&api).await;
    send_many(&api, &convs, 30, "kill").await;
    receiver
        .wait_until(WAIT, "a few deliveries", |d| {
            d.iter().filter(|d| d.accepted()).count() >= 3
        })
        .await;
    server.kill().await;
    server.restart().await;
    let api = server.api();
    let messages: Vec<Value> = feed(&api, None)
        .await
        .into_iter()
        .filter(|e| e["type"] == "message.created")
        .collect();
    assert_eq!(messages.len(), 30);
    receiver.answer(Answer::Ok);
    let got = receiver.wait_for_ids(&ids(&messages), WAIT * 3).await;
    receiver.assert_all_valid();
    let mut bodies: HashMap<&str, &Value> = HashMap::new();
    for d in &got {
        if let Some(before) = bodies.insert(&d.id, &d.body) {
            assert_eq!(before, &d.body, "a duplicate is the same event");
        }
    }
    assert_eq!(bodies.len(), 30, "no event outside the feed");
    assert_eq!(assert_seqs_in_order(&got), 30);
}

/// With a give-up time of a few seconds, a dead endpoint is disabled (status,
/// reason, metric); re-enabled, it delivers what it missed, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_disabled_and_resumes_when_re_enabled() {
    let server = TestServer::start(options().flag("--webhook-give-up-secs", 2)).await;
    let api = server.api();
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status(503));
    let hook = subscribe(&api, &receiver, &["message.created"]).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let convs = three_groups(&api).await;
    send_many(&api, &convs, 3, "dead").await;
    let deadline = std::time::Instant::now() + WAIT;
    let disabled = loop {
        let now = api.get(&format!("/v1/webhooks/{id}")).await.ok();
        if now["status"] == "disabled" {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never disabled: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(disabled["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("503"));
    assert!(disabled["disabled_at"].is_string());
    let metrics = server.rest_anon().get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mkondo_webhook_endpoints_disabled_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // Disabled: nothing more is tried.
    send_many(&api, &convs, 3, "missed").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tried = receiver.deliveries().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.deliveries().len(),
        tried,
        "a disabled endpoint rests"
    );

    receiver.answer(Answer::Ok);
    let enabled = api
        .patch(&format!("/v1/webhooks/{id}"), json!({"enabled": true}))
        .await
        .ok();
    assert_eq!(enabled["status"], "active");
    assert!(enabled.get("disabled_reason").is_none());
    let messages: Vec<Value> = feed(&api, None)
        .await
        .into_iter()
        .filter(|e| e["type"] == "message.created")
        .collect();
    assert_eq!(messages.len(), 6);
    let got = receiver.wait_for_ids(&ids(&messages), WAIT * 2).await;
    receiver.assert_all_valid();
    assert_eq!(assert_seqs_in_order(&got), 6);
}

/// Without `--outbound-allow-private`, loopback, private addresses, names
/// resolving to loopback and plain `http` are refused when the endpoint is
/// created or changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_without_the_operator_setting() {
    let server = TestServer::start_default().await;
    let api = server.api();
    let receiver = Receiver::start().await;
    for url in [
        receiver.url.clone(),
        receiver.url.replace("http://", "https://"),
        "https://127.0.0.1/hook".to_owned(),
        "https://10.1.2.3/hook".to_owned(),
        "https://192.168.0.10/hook".to_owned(),
        "https://169.254.169.254/latest".to_owned(),
        "https://[::1]/hook".to_owned(),
        "https://localhost/hook".to_owned(),
        "http://example.com/hook".to_owned(),
    ] {
        api.post("/v1/webhooks", json!({"url": url}))
            .await
            .expect_error(422, "invalid_argument");
    }
    assert_eq!(
        api.get("/v1/webhooks").await.ok()["items"],
        json!([]),
        "nothing was created"
    );

    let allowed = TestServer::start(options()).await;
    let api = allowed.api();
    let hook = subscribe(&api, &receiver, &[]).await;
    let tested = test_event(&api, &hook).await;
    assert_eq!(tested["delivered"], true, "{tested}");
    assert_eq!(tested["status_code"], 200);
    let d = receiver
        .wait_until(WAIT, "the test event", |d| !d.is_empty())
        .await;
    assert_eq!(d[0].kind, "webhook.test");
    assert_eq!(d[0].id, tested["event_id"].as_str().unwrap());
    receiver.assert_all_valid();
}

/// A rotated secret: both signatures for the overlap, each verifiable with its
/// secret; no secret in any read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_both_secrets_and_reads_never_show_them() {
    let server = TestServer::start(options()).await;
    let api = server.api();
    let receiver = Receiver::start().await;
    let hook = subscribe(&api, &receiver, &["message.created"]).await;
    let id = hook["id"].as_str().unwrap();
    let old = hook["secret"].as_str().unwrap().to_owned();
    let rotated = api
        .post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({}))
        .await
        .ok();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    receiver.set_secrets(&[&old, &new]);
    let convs = three_groups(&api).await;
    send_many(&api, &convs, 1, "rotated").await;
    let got = receiver
        .wait_until(WAIT, "a delivery", |d| d.iter().any(Delivery::accepted))
        .await;
    receiver.assert_all_valid();
    assert_eq!(got[0].signatures, 2, "two signatures during the overlap");
    assert_eq!(got[0].verified_with, vec![0, 1], "each with its secret");

    for read in [
        api.get(&format!("/v1/webhooks/{id}")).await.text,
        api.get("/v1/webhooks").await.text,
        api.patch(&format!("/v1/webhooks/{id}"), json!({"description": "x"}))
            .await
            .text,
        api.get(&format!("/v1/webhooks/{id}/attempts")).await.text,
    ] {
        assert!(!read.contains("secret"), "{read}");
        assert!(!read.contains(&old) && !read.contains(&new), "{read}");
    }
    let log = server.log_tail();
    assert!(
        !log.contains(&old) && !log.contains(&new),
        "no secret in the log"
    );
}

/// Endpoints are per app; inputs are checked; the attempt log, redelivery and
/// deletion work on the app's own endpoints only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_belong_to_their_app_and_inputs_are_checked() {
    let server = TestServer::start(options().extra_apps(1)).await;
    let api = server.api();
    let other = server.rest_as(&server.other_apps[0].api_key);
    let receiver = Receiver::start().await;
    let hook = subscribe(&api, &receiver, &["message.created"]).await;
    let id = hook["id"].as_str().unwrap().to_owned();

    // Invisible to another app, and to a user token.
    assert_eq!(other.get("/v1/webhooks").await.ok()["items"], json!([]));
    for path in [
        format!("/v1/webhooks/{id}"),
        format!("/v1/webhooks/{id}/attempts"),
    ] {
        other.get(&path).await.expect_error(404, "not_found");
    }
    other
        .patch(&format!("/v1/webhooks/{id}"), json!({"description": "x"}))
        .await
        .expect_error(404, "not_found");
    other
        .post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({}))
        .await
        .expect_error(404, "not_found");
    other
        .delete(&format!("/v1/webhooks/{id}"))
        .await
        .expect_error(404, "not_found");
    let user = server.rest_as(&server.app.token("alice"));
    user.get("/v1/webhooks")
        .await
        .expect_error(403, "permission_denied");

    // Inputs.
    let url = receiver.url.clone();
    for bad in [
        json!({"url": url, "event_types": ["no.such"]}),
        json!({"url": url, "event_types": vec!["message.created"; 200]}),
        json!({"url": url, "description": "x".repeat(501)}),
        json!({"url": "not a url"}),
        json!({"url": url, "unknown": 1}),
    ] {
        api.post("/v1/webhooks", bad)
            .await
            .expect_error(422, "invalid_argument");
    }
    let deduplicated = api
        .post(
            "/v1/webhooks",
            json!({"url": url, "event_types": ["message.created", "message.created"]}),
        )
        .await
        .expect(201);
    assert_eq!(deduplicated["event_types"], json!(["message.created"]));
    for _ in 2..20 {
        api.post("/v1/webhooks", json!({"url": url}))
            .await
            .expect(201);
    }
    api.post("/v1/webhooks", json!({"url": url}))
        .await
        .expect_error(403, "permission_denied");
    let page = api.get("/v1/webhooks?limit=15").await.ok();
    assert_eq!(page["items"].as_array().unwrap().len(), 15);
    let rest = api
        .get(&format!(
            "/v1/webhooks?limit=15&cursor={}",
            page["next_cursor"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(rest["items"].as_array().unwrap().len(), 5);

    // Delete all but the first, then the attempt log and redelivery.
    for w in page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
    {
        let wid = w["id"].as_str().unwrap();
        if wid != id {
            api.delete(&format!("/v1/webhooks/{wid}")).await.expect(204);
        }
    }
    let convs = three_groups(&api).await;
    send_many(&api, &convs, 1, "logged").await;
    let first = receiver
        .wait_until(WAIT, "a delivery", |d| d.iter().any(Delivery::accepted))
        .await[0]
        .clone();
    let event_id = first.id.clone();
    // The attempt is recorded once the receiver's answer is in: after the
    // receiver saw the POST.
    let log = mkondo_tests::poll_until(WAIT, "the attempt recorded", || {
        let api = api.clone();
        let path = format!("/v1/webhooks/{id}/attempts");
        async move {
            let log = api.get(&path).await.ok();
            log["items"][0].is_object().then_some(log)
        }
    })
    .await;
    let attempt = &log["items"][0];
    assert_eq!(attempt["event_id"], event_id.as_str());
    assert_eq!(attempt["status_code"], 200);
    assert_eq!(attempt["attempt"], 1);
    api.post(
        &format!("/v1/webhooks/{id}/redeliver"),
        json!({"event_id": event_id}),
    )
    .await
    .expect(202);
    receiver
        .wait_until(WAIT, "the redelivery", |d| {
            d.iter().filter(|d| d.id == event_id).count() == 2
        })
        .await;
    api.post(
        &format!("/v1/webhooks/{id}/redeliver"),
        json!({"event_id": "ev_nope"}),
    )
    .await
    .expect_error(404, "not_found");
    other
        .post(
            &format!("/v1/webhooks/{id}/redeliver"),
            json!({"event_id": event_id}),
        )
        .await
        .expect_error(404, "not_found");
    receiver.assert_all_valid();
    api.delete(&format!("/v1/webhooks/{id}")).await.expect(204);
    api.get(&format!("/v1/webhooks/{id}"))
        .await
        .expect_error(404, "not_found");
}

/// `mkondo webhook …` on the server's database: the same checks as the API
/// (private addresses need the setting), a secret printed once that the
/// running server signs with, and the endpoint managed to its deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_endpoints_the_server_delivers_to() {
    let server = TestServer::start(options()).await;
    let receiver = Receiver::start().await;
    let app = server.app.app_id.clone();
    // The CLI takes the server's settings: on PostgreSQL, its secrets key.
    let on_postgres = std::env::var("MKONDO_TEST_STORE").as_deref() == Ok("postgres");
    let settings: &[&str] = if on_postgres {
        &[
            "--secrets-key",
            TEST_SECRETS_KEY,
            "--outbound-allow-private",
        ]
    } else {
        &["--outbound-allow-private"]
    };
    let cli = |args: &[&str]| {
        let all: Vec<String> = ["webhook"]
            .iter()
            .chain(args)
            .chain(settings)
            .map(|a| a.to_string())
            .collect();
        let server = &server;
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            server.cli(&all).await
        }
    };
    let url = receiver.url.as_str();
    let create = [
        "create",
        "--app",
        &app,
        "--url",
        url,
        "--event-type",
        "message.created",
        "--json",
    ];
    let mut without: Vec<&str> = ["webhook"].iter().chain(&create).copied().collect();
    if on_postgres {
        without.extend(["--secrets-key", TEST_SECRETS_KEY]);
    }
    let (ok, _, stderr) = server.cli_result(&without).await;
    assert!(
        !ok && stderr.contains("url"),
        "loopback without the setting: {stderr}"
    );
    let created: Value = serde_json::from_str(&cli(&create).await).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    receiver.set_secrets(&[created["secret"].as_str().unwrap()]);
    let listed = cli(&["list", "--app", &app]).await;
    assert!(
        listed.contains(&id) && !listed.contains("whsec_"),
        "{listed}"
    );

    // The running server delivers with the secret the CLI printed.
    let api = server.api();
    let convs = three_groups(&api).await;
    send_many(&api, &convs, 2, "cli").await;
    receiver
        .wait_until(WAIT, "two deliveries", |d| {
            d.iter().filter(|d| d.accepted()).count() >= 2
        })
        .await;
    receiver.assert_all_valid();

    let tested: Value =
        serde_json::from_str(&cli(&["test", "--app", &app, "--id", &id, "--json"]).await).unwrap();
    assert_eq!(tested["delivered"], true, "{tested}");
    let attempts = cli(&["attempts", "--app", &app, "--id", &id]).await;
    assert!(attempts.contains("message.created"), "{attempts}");
    let rotated: Value =
        serde_json::from_str(&cli(&["rotate-secret", "--app", &app, "--id", &id, "--json"]).await)
            .unwrap();
    assert_ne!(rotated["secret"], created["secret"]);
    cli(&["delete", "--app", &app, "--id", &id]).await;
    api.get(&format!("/v1/webhooks/{id}"))
        .await
        .expect_error(404, "not_found");
}

/// The app disables its endpoint: nothing is delivered meanwhile, and
/// re-enabled it receives what happened, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_the_app_disables_keeps_its_place() {
    let server = TestServer::start(options()).await;
    let api = server.api();
    let receiver = Receiver::start().await;
    let hook = subscribe(&api, &receiver, &["message.created"]).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let paused = api
        .patch(&format!("/v1/webhooks/{id}"), json!({"enabled": false}))
        .await
        .ok();
    assert_eq!(paused["status"], "disabled");
    assert_eq!(paused["disabled_reason"], "disabled by the app");
    let convs = three_groups(&api).await;
    send_many(&api, &convs, 9, "paused").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(receiver.deliveries().is_empty(), "nothing while disabled");
    api.patch(&format!("/v1/webhooks/{id}"), json!({"enabled": true}))
        .await
        .ok();
    let messages: Vec<Value> = feed(&api, None)
        .await
        .into_iter()
        .filter(|e| e["type"] == "message.created")
        .collect();
    let got = receiver.wait_for_ids(&ids(&messages), WAIT).await;
    receiver.assert_all_valid();
    assert_eq!(assert_seqs_in_order(&got), 9);
}

/// Presence is opt-in and best-effort: an endpoint naming `presence.changed`
/// gets each change once, signed like any event, outside the feed; an
/// endpoint with every (stored) type does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_changes_go_to_the_endpoints_that_ask_for_them() {
    let server = TestServer::start(options()).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let presence = Receiver::start().await;
    let everything = Receiver::start().await;
    subscribe(&api, &presence, &["presence.changed"]).await;
    subscribe(&api, &everything, &[]).await;

    let (alice, _) = server.client(Transport::WsJson, "alice").await;
    let online = presence
        .wait_until(WAIT, "alice online", |got| {
            got.iter().any(|d| {
                d.body["data"]["presence"]["user_id"] == "alice"
                    && d.body["data"]["presence"]["status"] == "online"
            })
        })
        .await;
    let d = online
        .iter()
        .find(|d| d.body["data"]["presence"]["status"] == "online")
        .unwrap();
    assert!(d.accepted() && d.verified_with == [0], "signed: {d:?}");
    assert_eq!(d.kind, "presence.changed");
    assert_eq!(d.conversation, None);
    assert!(d.body["id"].as_str().unwrap().starts_with("ev_"));
    drop(alice);
    presence
        .wait_until(WAIT, "alice offline", |got| {
            got.iter()
                .any(|d| d.body["data"]["presence"]["status"] == "offline")
        })
        .await;
    // Not in the feed; the endpoint with every stored type got none of it.
    let events = feed(&api, None).await;
    assert!(events.iter().all(|e| e["type"] != "presence.changed"));
    api.create_users(&["carol"]).await;
    everything
        .wait_until(WAIT, "carol's creation", |got| {
            got.iter()
                .any(|d| d.kind == "user.created" && d.body["data"]["user"]["id"] == "carol")
        })
        .await;
    assert!(everything
        .deliveries()
        .iter()
        .all(|d| d.kind != "presence.changed"));
}

/// Over HTTPS, the server verifies the receiver's certificate: a receiver
/// whose certificate comes from a CA the server does not trust gets nothing
/// (the test event reports the TLS failure); with `--outbound-ca` naming that
/// CA, the test event and a real message arrive, signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_are_verified_against_the_system_and_the_extra_ca() {
    let ca = mkondo_tests::tls::TestCa::new("Mkondo receivers' CA");
    let receiver = Receiver::start_tls(&ca.server_cert(&["localhost"], 7)).await;
    assert!(
        receiver.url.starts_with("https://localhost:"),
        "{}",
        receiver.url
    );

    let untrusting = TestServer::start(options()).await;
    let api = untrusting.api();
    let hook = subscribe(&api, &receiver, &[]).await;
    let tested = test_event(&api, &hook).await;
    assert_eq!(tested["delivered"], false, "{tested}");
    assert!(tested["status_code"].is_null(), "{tested}");
    assert!(receiver.deliveries().is_empty(), "no request got through");

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("receivers-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let trusting = TestServer::start(options().flag("--outbound-ca", ca_file.display())).await;
    let api = trusting.api();
    let hook = subscribe(&api, &receiver, &["message.created"]).await;
    let tested = test_event(&api, &hook).await;
    assert_eq!(tested["delivered"], true, "{tested}");
    api.create_users(&["alice", "bob"]).await;
    let group = api.create_group("tls", &["alice", "bob"]).await;
    api.send(&group, "alice", "over https", "tls-1").await;
    let got = receiver
        .wait_until(WAIT, "the message over https", |d| {
            d.iter().any(|d| d.kind == "message.created")
        })
        .await;
    let message = got.iter().find(|d| d.kind == "message.created").unwrap();
    assert_eq!(
        message.body["data"]["message"]["text"], "over https",
        "{:?}",
        message.body
    );
    receiver.assert_all_valid();
}
