//! Push delivery end to end (issue 18): the real server pushes through
//! loopback APNs, FCM and Web Push servers (tests/push-providers/) that check
//! what they receive with independent libraries — the provider JWT against
//! the `.p8`'s public key, the OAuth2 grant against the service account's
//! key, VAPID, and every Web Push payload decrypted with the subscription's
//! private key. On PostgreSQL (`MKONDO_TEST_STORE=postgres`) each scenario
//! runs two nodes sharing Redis presence: recipients connect to the second
//! node, messages are sent through the first.

use std::time::Duration;

use mkondo_tests::push_providers::{
    assert_no_errors, LoopbackApns, Provider, APNS_BUNDLE as BUNDLE, APNS_KEY_ID, APNS_TEAM_ID,
};
use mkondo_tests::{
    redis_url, v1, Client, Command, ServerOptions, TestServer, Transport, QUIET, WAIT,
};
use serde_json::{json, Value};

const SECRET: &str = "operator-secret-for-push-delivery";
/// The collapse window of these servers: long enough that a slow machine
/// still sends a spaced burst within it.
const WINDOW: Duration = Duration::from_millis(3_000);

fn postgres() -> bool {
    std::env::var("MKONDO_TEST_STORE").as_deref() == Ok("postgres")
}

/// The providers, a server (two nodes on PostgreSQL) pushing through them,
/// and an app whose push settings name them.
struct Rig {
    server: TestServer,
    /// Where recipients connect: the second node on PostgreSQL.
    other: Option<TestServer>,
    apns: LoopbackApns,
    fcm: Provider,
    webpush: Provider,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        Self::start_with("full").await
    }

    /// With the app's push preview `full`, `generic` or `none`.
    async fn start_with(preview: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let account = dir.path().join("account.json");
        let account = account.to_str().unwrap().to_owned();
        let apns = LoopbackApns::start();
        let ca = apns.ca_file.to_str().unwrap().to_owned();
        let fcm = Provider::start(
            "fcm.py",
            &["--service-account-out", &account],
            reqwest::Client::new(),
        );
        let webpush = Provider::start("webpush.py", &[], reqwest::Client::new());

        let mut opts = ServerOptions::new()
            .operator_secret(SECRET)
            .unlimited_rate()
            .outbound_allow_private()
            // The loopback APNs's certificate chains to its own CA.
            .flag("--outbound-ca", &ca)
            .flag("--apns-url", &apns.url)
            .flag("--apns-sandbox-url", &apns.url)
            .flag("--fcm-url", &fcm.url)
            .flag("--push-collapse-window-ms", WINDOW.as_millis())
            .flag("--push-timeout-ms", 1_000)
            .flag("--push-retry-min-ms", 200);
        if postgres() {
            opts = opts.flag("--broker", redis_url());
        }
        let server = TestServer::start(opts).await;
        let other = if postgres() {
            Some(server.join().await)
        } else {
            None
        };
        let account: Value =
            serde_json::from_str(&std::fs::read_to_string(&account).unwrap()).unwrap();
        let set = server
            .rest_as(SECRET)
            .patch(
                &format!("/v1/admin/apps/{}", server.app.app_id),
                json!({"push": {
                    "apns": {"key": apns.p8, "key_id": APNS_KEY_ID,
                             "team_id": APNS_TEAM_ID, "topic": BUNDLE},
                    "fcm": {"service_account": account},
                    "web_push": {"subject": "mailto:ops@example.com"},
                    "preview": preview,
                }}),
            )
            .await;
        assert_eq!(set.status, 200, "{}", set.text);
        Rig {
            server,
            other,
            apns,
            fcm,
            webpush,
            _dir: dir,
        }
    }

    /// The node recipients connect to.
    fn recipients_node(&self) -> &TestServer {
        self.other.as_ref().unwrap_or(&self.server)
    }

    async fn register(&self, user: &str, device: Value) -> String {
        let made = self
            .server
            .api()
            .post(&format!("/v1/users/{user}/devices"), device)
            .await
            .expect(201);
        made["id"].as_str().unwrap().to_owned()
    }

    /// An APNs device for `user`; its token.
    async fn apns_device(&self, user: &str, n: u8) -> String {
        let token = format!("{n:02x}").repeat(32);
        self.register(user, json!({"provider": "apns", "token": token}))
            .await;
        token
    }

    /// An FCM device for `user`; its token.
    async fn fcm_device(&self, user: &str) -> String {
        let token = format!("fcm-token-of-{user}:APA91b{}", "x".repeat(40));
        self.register(user, json!({"provider": "fcm", "token": token}))
            .await;
        token
    }

    /// A Web Push subscription made at the loopback push service (with the
    /// app's VAPID key), registered for `user`; its id there.
    async fn webpush_device(&self, user: &str) -> String {
        let key = self.server.rest_as(SECRET).get("/v1/admin/apps").await.ok();
        let key = key["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["app_id"] == self.server.app.app_id.as_str())
            .unwrap()["push"]["web_push"]["public_key"]
            .as_str()
            .unwrap()
            .to_owned();
        let sub = self
            .webpush
            .post("/_subscriptions", json!({"application_server_key": key}))
            .await;
        self.register(
            user,
            json!({"provider": "webpush", "token": sub["endpoint"],
                   "p256dh": sub["keys"]["p256dh"], "auth": sub["keys"]["auth"]}),
        )
        .await;
        sub["id"].as_str().unwrap().to_owned()
    }

    /// Creates the users `members` and a group `name` of them all; its id.
    async fn group(&self, name: &str, members: &[&str]) -> String {
        let api = self.server.api();
        api.create_users(members).await;
        api.create_group(name, members).await
    }

    async fn devices_of(&self, user: &str) -> Vec<Value> {
        self.server
            .api()
            .get(&format!("/v1/users/{user}/devices"))
            .await
            .ok()["items"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// The pushes a provider received for one device, in order.
async fn pushes(provider: &Provider, key: &str) -> Vec<Value> {
    provider
        .received()
        .await
        .into_iter()
        .filter(|r| {
            r["device_token"] == key || r["message"]["token"] == key || r["subscription"] == key
        })
        .collect()
}

/// Waits until `key` has `n` pushes at `provider`, and returns them.
async fn wait_pushes(provider: &Provider, key: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = pushes(provider, key).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key}: {} pushes, not {n}: {got:#?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a Web Push carried, decrypted by the loopback push service.
fn plaintext(record: &Value) -> Value {
    serde_json::from_str(record["plaintext"].as_str().expect("decrypted")).unwrap()
}

async fn connect(node: &TestServer, user: &str, state: &str) -> Client {
    let (client, _) = node.client(Transport::WsJson, user).await;
    if state != "foreground" {
        client
            .request(Command::AppState(v1::AppStateRequest {
                state: state.into(),
            }))
            .await
            .unwrap();
    }
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_members_are_pushed_on_every_provider_and_a_burst_collapses() {
    let rig = Rig::start().await;
    let api = rig.server.api();
    let team = rig.group("team", &["alice", "bob", "carol", "dave"]).await;
    let bob = rig.apns_device("bob", 1).await;
    let carol = rig.fcm_device("carol").await;
    let dave = rig.webpush_device("dave").await;
    // The author's own phone, and Bob's PushKit token: neither gets a message.
    let alice = rig.apns_device("alice", 9).await;
    let bob_voip = "0b".repeat(32);
    rig.register("bob", json!({"provider": "apns_voip", "token": bob_voip}))
        .await;

    // The backend's custom data for the push rides in the message's `data`.
    let first = api
        .post(
            &format!("/v1/conversations/{team}/messages"),
            json!({"sender_id": "alice", "text": "hello", "client_id": "c-1",
                   "data": {"push": {"screen": "chat"}}}),
        )
        .await
        .expect(201);
    let seq = first["seq"].as_i64().unwrap();

    // APNs: token auth, the headers Apple documents, the payload.
    let got = wait_pushes(&rig.apns, &bob, 1).await;
    assert_no_errors(&got);
    let h = &got[0]["headers"];
    assert_eq!(h["apns-push-type"], "alert");
    assert_eq!(h["apns-topic"], BUNDLE);
    assert_eq!(h["apns-priority"], "10");
    let collapse = h["apns-collapse-id"].as_str().unwrap().to_owned();
    let expiration: i64 = h["apns-expiration"].as_str().unwrap().parse().unwrap();
    assert!(expiration > mkondo_tests::now_secs() + 3600, "{h}");
    let p = &got[0]["payload"];
    assert_eq!(
        p["aps"]["alert"],
        json!({"title": "team", "body": "alice: hello"})
    );
    assert_eq!(p["aps"]["badge"], 1);
    assert_eq!(p["aps"]["thread-id"], team.as_str());
    assert_eq!(p["aps"]["mutable-content"], 1);
    assert_eq!(p["mkondo"]["conversation_id"], team.as_str());
    assert_eq!(p["mkondo"]["seq"], seq);
    assert_eq!(p["mkondo"]["sender_id"], "alice");
    assert_eq!(p["mkondo"]["message_id"], first["id"]);
    assert_eq!(p["mkondo"]["data"], json!({"screen": "chat"}));

    // FCM: an OAuth2 token from the service account, the v1 message.
    let got = wait_pushes(&rig.fcm, &carol, 1).await;
    assert_no_errors(&rig.fcm.received().await);
    let m = &got[0]["message"];
    assert_eq!(
        m["notification"],
        json!({"title": "team", "body": "alice: hello"})
    );
    assert_eq!(m["android"]["collapse_key"], collapse.as_str());
    assert_eq!(m["android"]["notification"]["tag"], collapse.as_str());
    assert_eq!(m["android"]["notification"]["notification_count"], 1);
    assert_eq!(m["data"]["badge"], "1");
    let data: Value = serde_json::from_str(m["data"]["mkondo"].as_str().unwrap()).unwrap();
    assert_eq!(data["conversation_id"], team.as_str());

    // Web Push: VAPID verified and the payload decrypted by the push service.
    let got = wait_pushes(&rig.webpush, &dave, 1).await;
    assert_no_errors(&got);
    let body = plaintext(&got[0]);
    assert_eq!(body["title"], "team");
    assert_eq!(body["body"], "alice: hello");
    assert_eq!(body["badge"], 1);
    assert_eq!(body["tag"], collapse.as_str());
    assert_eq!(body["mkondo"]["seq"], seq);
    assert_eq!(body["mkondo"]["data"], json!({"screen": "chat"}));
    assert_eq!(got[0]["headers"]["topic"], collapse.as_str());

    // A burst within the window: held, then one push replacing the first
    // (same collapse id, a new apns-id) with the newest message and badge.
    // Spread over the window, so that only the window (not one read of the
    // feed taking them all) makes them one push.
    for (i, text) in ["two", "three", "four"].iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(WINDOW / 6).await;
        }
        api.send(&team, "alice", text, &format!("c-burst-{i}"))
            .await;
    }
    let got = wait_pushes(&rig.apns, &bob, 2).await;
    let second = &got[1];
    assert_eq!(second["headers"]["apns-collapse-id"], collapse.as_str());
    assert_ne!(second["headers"]["apns-id"], got[0]["headers"]["apns-id"]);
    assert_eq!(second["payload"]["mkondo"]["seq"], seq + 3);
    assert_eq!(second["payload"]["aps"]["badge"], 4);
    assert_eq!(second["payload"]["aps"]["alert"]["body"], "alice: four");
    let web = wait_pushes(&rig.webpush, &dave, 2).await;
    assert_eq!(plaintext(&web[1])["badge"], 4);
    wait_pushes(&rig.fcm, &carol, 2).await;
    // Nothing more comes: three messages, one push.
    tokio::time::sleep(WINDOW + QUIET).await;
    assert_eq!(pushes(&rig.apns, &bob).await.len(), 2);
    assert_eq!(pushes(&rig.fcm, &carol).await.len(), 2);
    assert_eq!(pushes(&rig.webpush, &dave).await.len(), 2);
    assert_eq!(pushes(&rig.apns, &alice).await.len(), 0, "the author");
    assert_eq!(
        pushes(&rig.apns, &bob_voip).await.len(),
        0,
        "a PushKit token"
    );

    // A message deleted before its push is due is never pushed.
    api.send(&team, "alice", "five", "c-5").await;
    wait_pushes(&rig.apns, &bob, 3).await;
    let six = api
        .send(&team, "alice", "six, sent by mistake", "c-6")
        .await;
    api.delete(&format!(
        "/v1/conversations/{team}/messages/{}",
        mkondo_tests::seq_of(&six)
    ))
    .await
    .ok();
    tokio::time::sleep(WINDOW + QUIET).await;
    for got in [
        pushes(&rig.apns, &bob).await,
        pushes(&rig.fcm, &carol).await,
        pushes(&rig.webpush, &dave).await,
    ] {
        assert_eq!(got.len(), 3, "{got:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_preview_setting_decides_what_a_push_shows() {
    for preview in ["generic", "none"] {
        let rig = Rig::start_with(preview).await;
        let api = rig.server.api();
        let team = rig.group("team", &["alice", "bob", "carol", "dave"]).await;
        let bob = rig.apns_device("bob", 1).await;
        let carol = rig.fcm_device("carol").await;
        let dave = rig.webpush_device("dave").await;
        api.send(&team, "alice", "the secret plan", "c-1").await;
        let apns = wait_pushes(&rig.apns, &bob, 1).await;
        let fcm = wait_pushes(&rig.fcm, &carol, 1).await;
        let web = wait_pushes(&rig.webpush, &dave, 1).await;
        assert_no_errors(&apns);
        for shown in [
            apns[0]["payload"].to_string(),
            fcm[0]["message"].to_string(),
            web[0]["plaintext"].to_string(),
        ] {
            assert!(!shown.contains("secret plan"), "{preview}: {shown}");
        }
        let aps = &apns[0]["payload"]["aps"];
        let web = plaintext(&web[0]);
        assert_eq!(aps["badge"], 1, "{preview}");
        if preview == "generic" {
            assert_eq!(
                aps["alert"],
                json!({"title": "team", "body": "New message"})
            );
            assert_eq!(fcm[0]["message"]["notification"]["body"], "New message");
            assert_eq!(web["body"], "New message");
        } else {
            assert!(
                aps.get("alert").is_none() && aps.get("sound").is_none(),
                "{aps}"
            );
            assert!(fcm[0]["message"].get("notification").is_none(), "data only");
            assert!(
                web.get("title").is_none() && web.get("body").is_none(),
                "{web}"
            );
            assert!(web["mkondo"].get("sender_name").is_none(), "{web}");
            assert_eq!(web["mkondo"]["seq"], 1, "the app fetches it: {web}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_with_no_session_in_the_foreground_are_pushed() {
    let rig = Rig::start().await;
    let api = rig.server.api();
    let team = rig.group("team", &["alice", "bob", "erin", "owen"]).await;
    let bob = rig.apns_device("bob", 1).await;
    let erin = rig.apns_device("erin", 2).await;
    let owen = rig.apns_device("owen", 3).await;
    // Bob reads in the foreground; Erin's app is in the background (`away`);
    // Owen has a session in the background and one in the foreground.
    let node = rig.recipients_node();
    let _bob = connect(node, "bob", "foreground").await;
    let _erin = connect(node, "erin", "background").await;
    let _owen_phone = connect(node, "owen", "background").await;
    let _owen_laptop = connect(&rig.server, "owen", "foreground").await;

    api.send(&team, "alice", "anyone there?", "c-1").await;
    let got = wait_pushes(&rig.apns, &erin, 1).await;
    assert_no_errors(&got);
    tokio::time::sleep(QUIET).await;
    assert_eq!(pushes(&rig.apns, &bob).await, Vec::<Value>::new());
    assert_eq!(pushes(&rig.apns, &owen).await, Vec::<Value>::new());

    // A backend notification, on the same terms; its `push` object says what
    // the push shows.
    for user in ["erin", "bob"] {
        api.post(
            &format!("/v1/users/{user}/notifications"),
            json!({"payload": {"kind": "invite", "push": {
                "title": "Invitation", "body": "Join the launch", "data": {"invite": 7}}}}),
        )
        .await
        .expect(201);
    }
    let got = wait_pushes(&rig.apns, &erin, 2).await;
    let p = &got[1]["payload"];
    assert_eq!(
        p["aps"]["alert"],
        json!({"title": "Invitation", "body": "Join the launch"})
    );
    assert_eq!(p["mkondo"]["type"], "notification");
    assert_eq!(p["mkondo"]["data"], json!({"invite": 7}));
    assert!(p["mkondo"]["notification_id"].is_string());
    tokio::time::sleep(QUIET).await;
    assert_eq!(pushes(&rig.apns, &bob).await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_do_not_disturb_and_read_elsewhere_are_not_pushed() {
    let rig = Rig::start().await;
    let api = rig.server.api();
    let team = rig
        .group("team", &["alice", "bob", "carol", "dave", "frank"])
        .await;
    let direct = api.create_group("pair", &["alice", "bob"]).await;
    let bob = rig.apns_device("bob", 1).await;
    let carol = rig.apns_device("carol", 2).await;
    let dave = rig.apns_device("dave", 3).await;
    let frank = rig.apns_device("frank", 4).await;
    api.put(
        &format!("/v1/users/bob/conversations/{team}/mute"),
        json!({"muted": true}),
    )
    .await
    .ok();
    let until = chrono::Utc::now() + chrono::Duration::hours(1);
    let dnd = api
        .put(
            "/v1/users/carol/do-not-disturb",
            json!({"until": until.to_rfc3339()}),
        )
        .await;
    assert_eq!(dnd.status, 200, "{}", dnd.text);
    // Dave's phone is in the background: he is pushed, and reads there.
    let dave_phone = connect(rig.recipients_node(), "dave", "background").await;

    api.send(&team, "alice", "one", "c-1").await;
    wait_pushes(&rig.apns, &frank, 1).await;
    wait_pushes(&rig.apns, &dave, 1).await;
    // Within the window: a second message, read by Dave before its push is due.
    let second = api.send(&team, "alice", "two", "c-2").await;
    dave_phone
        .request(Command::Read(v1::ReadRequest {
            conversation_id: team.clone(),
            seq: second["seq"].as_u64().unwrap(),
        }))
        .await
        .unwrap();
    // Frank's second push proves the window ended.
    wait_pushes(&rig.apns, &frank, 2).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(pushes(&rig.apns, &dave).await.len(), 1, "read elsewhere");
    assert_eq!(pushes(&rig.apns, &carol).await.len(), 0, "do not disturb");
    assert_eq!(pushes(&rig.apns, &bob).await.len(), 0, "muted");

    // Muted still counts unread: Bob's next push (another conversation) has
    // the team's two messages in its badge.
    api.send(&direct, "alice", "psst", "c-3").await;
    let got = wait_pushes(&rig.apns, &bob, 1).await;
    assert_eq!(got[0]["payload"]["aps"]["badge"], 3);
    assert_eq!(got[0]["payload"]["aps"]["thread-id"], direct.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_credentials_remove_the_device_and_retry_after_is_honoured() {
    let rig = Rig::start().await;
    let api = rig.server.api();
    api.create_users(&["alice", "bob", "carol", "dave", "erin", "frank", "gina"])
        .await;
    let team = api
        .create_group("team", &["alice", "bob", "carol", "dave", "erin", "frank"])
        .await;
    let bob = rig.apns_device("bob", 1).await;
    let carol = rig.fcm_device("carol").await;
    let dave = rig.webpush_device("dave").await;
    let erin = rig.apns_device("erin", 2).await;
    rig.apns
        .script(json!({
            bob.clone(): [{"status": 410}],
            erin.clone(): [{"status": 503, "retry_after": 3}],
        }))
        .await;
    rig.fcm
        .script(json!({carol.clone(): [{"status": 404, "error_code": "UNREGISTERED"}]}))
        .await;
    rig.webpush
        .script(json!({dave.clone(): [{"status": 410}]}))
        .await;

    // Frank's phone answers 503 first; before the retry, Gina signs in on
    // it (its token is registered for her): Frank's message must not reach
    // her.
    let frank = rig.apns_device("frank", 6).await;
    rig.apns
        .script(json!({frank.clone(): [{"status": 503, "retry_after": 2}]}))
        .await;

    api.send(&team, "alice", "hello", "c-1").await;
    wait_pushes(&rig.apns, &frank, 1).await;
    rig.register("gina", json!({"provider": "apns", "token": frank}))
        .await;
    for user in ["bob", "carol", "dave"] {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !rig.devices_of(user).await.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{user}'s dead device was kept"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(rig.devices_of("erin").await.len(), 1);
    // 503 with Retry-After: 3 — tried again no sooner, with the same apns-id.
    let got = wait_pushes(&rig.apns, &erin, 2).await;
    assert_eq!(got[0]["answer"], 503);
    assert_eq!(got[1]["answer"], 200);
    let waited = got[1]["at"].as_f64().unwrap() - got[0]["at"].as_f64().unwrap();
    assert!(waited >= 2.95, "retried after {waited:.2} s");
    assert_eq!(got[1]["headers"]["apns-id"], got[0]["headers"]["apns-id"]);
    assert_eq!(
        got[1]["headers"]["apns-collapse-id"],
        got[0]["headers"]["apns-collapse-id"]
    );
    // The dead ones were tried once; the moved one is not retried.
    assert_eq!(
        pushes(&rig.apns, &frank).await.len(),
        1,
        "sent to its new owner"
    );
    assert_eq!(pushes(&rig.apns, &bob).await.len(), 1);
    assert_eq!(pushes(&rig.fcm, &carol).await.len(), 1);
    assert_eq!(pushes(&rig.webpush, &dave).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_queue_loses_no_push_and_repeats_keep_their_id() {
    let mut rig = Rig::start().await;
    let api = rig.server.api();
    const MEMBERS: u8 = 30;
    let users: Vec<String> = (1..=MEMBERS).map(|n| format!("user{n}")).collect();
    let mut all: Vec<&str> = users.iter().map(String::as_str).collect();
    all.push("alice");
    api.create_users(&all).await;
    let team = api.create_group("crowd", &all).await;
    let mut tokens = Vec::new();
    for (n, user) in users.iter().enumerate() {
        tokens.push(rig.apns_device(user, n as u8 + 1).await);
    }
    // The provider holds its first answers: the node dies with pushes sent
    // and not yet answered, so not yet marked sent.
    let held: Vec<Value> = (0..MEMBERS)
        .map(|_| json!({"status": 200, "delay": 3}))
        .collect();
    rig.apns.script(json!({"*": held})).await;

    api.send(&team, "alice", "to everyone", "c-1").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while rig.apns.received().await.len() < 5 {
        assert!(tokio::time::Instant::now() < deadline, "no push went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rig.server.kill().await;
    if rig.other.is_none() {
        // One node: it comes back on the same database.
        rig.server.restart().await;
    }
    // Every device gets the push; a repeat carries the first one's ids.
    for token in &tokens {
        let got = wait_pushes(&rig.apns, token, 1).await;
        for repeat in &got[1..] {
            assert_eq!(repeat["headers"]["apns-id"], got[0]["headers"]["apns-id"]);
            assert_eq!(
                repeat["headers"]["apns-collapse-id"],
                got[0]["headers"]["apns-collapse-id"]
            );
        }
    }
    // Every first attempt was held past the node's death: each device's
    // push was sent again, by the node that took the queue over, and
    // answered.
    for token in &tokens {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = pushes(&rig.apns, token).await;
            if got.iter().skip(1).any(|r| r["answer"] == 200) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{token} was not sent again: {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_wakes_the_callees_pushkit_devices_with_a_voip_push() {
    use crate::sdk_common::{client, connected};
    let rig = Rig::start().await;
    let call = rig.group("call", &["alice", "bob", "carol"]).await;
    let bob_voip = "0b".repeat(32);
    rig.register("bob", json!({"provider": "apns_voip", "token": bob_voip}))
        .await;
    let bob_alerts = rig.apns_device("bob", 1).await;
    let carol_voip = "0c".repeat(32);
    rig.register(
        "carol",
        json!({"provider": "apns_voip", "token": carol_voip}),
    )
    .await;
    // Carol is on screen: the live signal reaches her, no push.
    let _carol = connect(rig.recipients_node(), "carol", "foreground").await;
    let (alice, _) = client(
        mkondo_sdk::Config::new(
            format!("http://{}", rig.server.addr),
            mkondo_sdk::TransportKind::WebSocketJson,
        )
        .with_token(rig.server.app.token("alice")),
    );
    connected(&alice).await;

    let offer = r#"{"type":"offer","sdp":"v=0"}"#;
    alice.send_signal(&call, "bob", "not a call").await.unwrap();
    alice.ring(&call, "bob", offer).await.unwrap();
    alice.ring(&call, "carol", offer).await.unwrap();
    let got = wait_pushes(&rig.apns, &bob_voip, 1).await;
    assert_no_errors(&got);
    let h = &got[0]["headers"];
    assert_eq!(h["apns-push-type"], "voip");
    assert_eq!(h["apns-topic"], format!("{BUNDLE}.voip"));
    assert_eq!(h["apns-priority"], "10");
    let m = &got[0]["payload"]["mkondo"];
    assert_eq!(m["type"], "call");
    assert_eq!(m["from_user_id"], "alice");
    assert_eq!(m["conversation_id"], call.as_str());
    assert_eq!(m["payload"], offer);

    // A payload too large for a VoIP push rings with the ids only.
    let big = format!(r#"{{"sdp":"{}"}}"#, "a".repeat(4_000));
    alice.ring(&call, "bob", &big).await.unwrap();
    let got = wait_pushes(&rig.apns, &bob_voip, 2).await;
    assert_eq!(got[1]["payload"]["mkondo"]["payload_omitted"], true);
    assert!(got[1]["payload"]["mkondo"].get("payload").is_none());

    tokio::time::sleep(QUIET).await;
    // A plain signal never rings; messages' devices get no call; nor does
    // a callee in the foreground.
    assert_eq!(pushes(&rig.apns, &bob_voip).await.len(), 2);
    assert_eq!(pushes(&rig.apns, &bob_alerts).await.len(), 0);
    assert_eq!(pushes(&rig.apns, &carol_voip).await.len(), 0);
}
