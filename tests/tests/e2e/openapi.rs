//! The OpenAPI document against the real server. The test walks
//! `/v1/openapi.json`: every operation it lists is called once with ids made in
//! setup and a small valid body (the table in [`call_for`]), with the credential
//! the operation declares; the status must be a success the operation declares,
//! and the body must validate against the declared schema, sealed so that a
//! field the document does not mention fails too. Then app isolation: every
//! operation that takes an id, called with another app's API key, another app's
//! user token and an unrelated user's token of the same app, answers 401, 403
//! or 404 with the error body, never a success.

use std::collections::BTreeSet;

use mkondo_tests::{seq_of, urlencode, Resp, Rest, ServerOptions, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const SECRET: &str = "operator-secret-for-openapi-walk";

/// One documented operation.
struct Op {
    method: String,
    path: String,
    id: String,
    spec: Value,
}

impl Op {
    fn schemes(&self) -> BTreeSet<String> {
        self.spec["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|r| r.keys().cloned())
            .collect()
    }

    fn takes_an_id(&self) -> bool {
        self.path.contains('{')
    }
}

/// The document and the validators' view of its components.
struct Doc {
    doc: Value,
    /// `components`, every object schema sealed (`unevaluatedProperties: false`).
    sealed: Value,
}

impl Doc {
    fn new(doc: Value) -> Doc {
        let mut components = doc["components"].clone();
        // Schemas that are a part of an `allOf` (a flattened struct) must stay
        // open: only the whole they are part of is sealed.
        let mut parts = BTreeSet::new();
        collect_all_of_parts(&components, false, &mut parts);
        if let Some(schemas) = components["schemas"].as_object_mut() {
            for (name, schema) in schemas.iter_mut() {
                if !parts.contains(&format!("#/components/schemas/{name}")) {
                    seal(schema, false);
                }
            }
        }
        Doc {
            doc,
            sealed: components,
        }
    }

    fn operations(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for (method, spec) in item.as_object().expect("path item") {
                ops.push(Op {
                    method: method.clone(),
                    path: path.clone(),
                    id: spec["operationId"]
                        .as_str()
                        .expect("operationId")
                        .to_owned(),
                    spec: spec.clone(),
                });
            }
        }
        ops
    }

    /// The declared response for `status`, with a `$ref` to a shared one resolved.
    fn response(&self, op: &Op, status: u16) -> Option<Value> {
        let r = op.spec["responses"].get(status.to_string())?;
        match r["$ref"].as_str() {
            Some(pointer) => self
                .doc
                .pointer(pointer.strip_prefix('#').unwrap())
                .cloned(),
            None => Some(r.clone()),
        }
    }

    /// Asserts that `resp` is a response `op` declares, with a body that
    /// validates against its schema (or no body where none is declared).
    #[track_caller]
    fn check(&self, op: &Op, what: &str, resp: &Resp) {
        let declared = self.response(op, resp.status).unwrap_or_else(|| {
            panic!(
                "{} {} ({what}) answered {}, which the document does not declare: {}",
                op.method, op.path, resp.status, resp.text
            )
        });
        match declared["content"]["application/json"]["schema"].as_object() {
            None => assert!(
                resp.text.is_empty(),
                "{} {} ({what}) declares no body for {} but answered {}",
                op.method,
                op.path,
                resp.status,
                resp.text
            ),
            Some(schema) => {
                let mut schema = Value::Object(schema.clone());
                seal(&mut schema, false);
                let mut root = json!({ "allOf": [schema] });
                root["components"] = self.sealed.clone();
                let validator = jsonschema::draft202012::options()
                    .should_validate_formats(true)
                    .build(&root)
                    .unwrap_or_else(|e| panic!("schema of {} {}: {e}", op.method, op.path));
                let errors: Vec<String> = validator
                    .iter_errors(&resp.body)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{} {} ({what}) answered {} with a body that does not match the document:\n{}\nbody: {}",
                    op.method,
                    op.path,
                    resp.status,
                    errors.join("\n"),
                    resp.text
                );
            }
        }
    }
}

/// Adds `unevaluatedProperties: false` to every object schema with properties
/// (and to every `allOf` whole), except the direct parts of an `allOf`.
fn seal(v: &mut Value, part_of_all_of: bool) {
    let Some(o) = v.as_object_mut() else {
        if let Some(a) = v.as_array_mut() {
            a.iter_mut().for_each(|x| seal(x, false));
        }
        return;
    };
    let whole = o.contains_key("allOf");
    if (o.contains_key("properties") && !part_of_all_of || whole)
        && !o.contains_key("additionalProperties")
    {
        o.insert("unevaluatedProperties".into(), Value::Bool(false));
    }
    for (k, child) in o.iter_mut() {
        match (k.as_str(), child) {
            ("allOf", Value::Array(parts)) => parts.iter_mut().for_each(|p| seal(p, true)),
            // A `oneOf` inside an `allOf` part (a flattened `Option`) is a part too.
            ("oneOf" | "anyOf", Value::Array(parts)) if part_of_all_of => {
                parts.iter_mut().for_each(|p| seal(p, true))
            }
            ("enum" | "examples" | "example" | "default", _) => {}
            (_, child) => seal(child, false),
        }
    }
}

fn collect_all_of_parts(v: &Value, in_all_of: bool, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            if in_all_of {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    out.insert(r.to_owned());
                }
            }
            for (k, child) in o {
                let inside = k == "allOf" || (in_all_of && matches!(k.as_str(), "oneOf" | "anyOf"));
                match child {
                    Value::Array(parts) if inside => parts
                        .iter()
                        .for_each(|p| collect_all_of_parts(p, true, out)),
                    _ => collect_all_of_parts(child, false, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_all_of_parts(x, false, out)),
        _ => {}
    }
}

/// Ids made in setup for the walk to act on, each used by the operations that
/// change it and no other, so the walk's order does not matter.
struct Fixture {
    /// A file alice sent in `group`.
    attachment: String,
    /// A group of alice (owner), bob and carol, with a message to edit and
    /// react to and one to delete (their seqs).
    group: String,
    edit: String,
    delete: String,
    /// A group bob is removed from.
    leave: String,
    /// A group alice hides.
    hide: String,
    /// A group the backend deletes.
    doomed: String,
    /// Two of alice's notifications: one acked for her, one by her.
    notification: String,
    my_notification: String,
    /// An app of the operator's, with a second signing key and API key to remove.
    app: String,
    kid: String,
    prefix: String,
    /// A before-send hook URL nothing listens on: the main app's hook is set
    /// to it, failing open, so sends stay unaffected.
    hook_url: String,
    /// A webhook endpoint to read, change, test and redeliver to; one to
    /// delete; where new ones point; an event of the feed to redeliver.
    webhook: String,
    doomed_webhook: String,
    /// A push device of alice's to remove.
    device: String,
    webhook_url: String,
    event_id: String,
}

/// One call: path parameters, query string, body.
type Call = (Vec<(&'static str, String)>, &'static str, Option<Value>);

/// The request each operation is walked with. A documented operation missing
/// here fails the test: add it.
/// Operations a signed link authorises (see files.rs).
const SIGNED_LINK_OPS: [&str; 4] = ["tusOffset", "tusPatch", "downloadFile", "downloadThumbnail"];

fn call_for(op_id: &str, f: &Fixture) -> Option<Call> {
    let id = |v: &str| vec![("id", v.to_owned())];
    let conv = || id(&f.group);
    let seq = |s: &str| vec![("id", f.group.clone()), ("seq", s.to_owned())];
    let app = || vec![("app", f.app.clone())];
    Some(match op_id {
        "getOpenApi" => (vec![], "", None),
        "mintToken" => (
            vec![],
            "",
            Some(json!({"user_id": "alice", "ttl_seconds": 600, "groups": [f.group]})),
        ),
        "upsertUser" => (
            vec![],
            "",
            Some(json!({"id": "walker", "name": "Walker", "data": {"plan": "free"}})),
        ),
        "listUsers" => (vec![], "?q=a&limit=10", None),
        "getUser" => (id("alice"), "", None),
        "updateUser" => (id("alice"), "", Some(json!({"name": "Alice A."}))),
        "listUserConversations" | "listUserMessages" | "listNotifications" | "listBlocks" => {
            (id("alice"), "?limit=5", None)
        }
        "getMe"
        | "listMyConversations"
        | "listMyMessages"
        | "listMyNotifications"
        | "listMyBlocks" => (vec![], "", None),
        "updateMe" => (vec![], "", Some(json!({"data": {"theme": "dark"}}))),
        "createConversation" => (
            vec![],
            "",
            Some(json!({"kind": "group", "name": "walked", "members": ["alice", "bob"]})),
        ),
        "listConversations" => (vec![], "?limit=5", None),
        "getConversation" | "listMembers" => (conv(), "", None),
        "updateConversation" => (conv(), "", Some(json!({"name": "Renamed"}))),
        "deleteConversation" => (id(&f.doomed), "", None),
        "addMembers" => (conv(), "", Some(json!({"user_ids": ["dave"]}))),
        "changeRole" => (
            [conv(), vec![("user", "bob".into())]].concat(),
            "",
            Some(json!({"role": "admin"})),
        ),
        "removeMember" => (
            vec![("id", f.leave.clone()), ("user", "bob".into())],
            "",
            None,
        ),
        "listMessages" => (conv(), "?limit=10", None),
        "sendMessage" => (
            conv(),
            "",
            Some(json!({"sender_id": "alice", "text": "walked", "client_id": "walk-1"})),
        ),
        "editMessage" => (seq(&f.edit), "", Some(json!({"text": "edited"}))),
        "deleteMessage" => (seq(&f.delete), "", None),
        "addReaction" => (
            seq(&f.edit),
            "",
            Some(json!({"emoji": "👍", "user_id": "bob"})),
        ),
        "removeReaction" => (
            [seq(&f.edit), vec![("emoji", urlencode("🎉"))]].concat(),
            "?user_id=bob",
            None,
        ),
        "sendNotification" => (
            id("alice"),
            "",
            Some(json!({"payload": {"kind": "follow", "from": "bob"}, "ttl_seconds": 3600})),
        ),
        "ackNotification" => (
            vec![
                ("id", "alice".into()),
                ("notification", f.notification.clone()),
            ],
            "",
            None,
        ),
        "ackMyNotification" => (id(&f.my_notification), "", None),
        "blockUser" => (id("alice"), "", Some(json!({"user_id": "erin"}))),
        "unblockUser" => (
            vec![("id", "alice".into()), ("other", "erin".into())],
            "",
            None,
        ),
        "blockMyUser" => (vec![], "", Some(json!({"user_id": "frank"}))),
        "unblockMyUser" => (vec![("user", "frank".into())], "", None),
        "hideConversation" => (
            vec![("id", "alice".into()), ("conversation", f.hide.clone())],
            "",
            None,
        ),
        "hideMyConversation" => (id(&f.hide), "", None),
        "markRead" => (
            vec![("id", "alice".into()), ("conversation", f.group.clone())],
            "",
            Some(json!({"seq": 1})),
        ),
        "getUnreadTotal" => (id("alice"), "", None),
        "registerDevice" => (
            id("alice"),
            "",
            Some(
                json!({"provider": "apns", "token": "0f".repeat(32), "topic": "com.example.chat"}),
            ),
        ),
        "listDevices" | "getDoNotDisturb" => (id("alice"), "", None),
        "createUpload" => (
            conv(),
            "",
            Some(
                json!({"name": "notes.txt", "size": 5, "content_type": "text/plain", "user_id": "alice"}),
            ),
        ),
        "attachmentUrls" => (conv(), "", Some(json!({"attachment_ids": [f.attachment]}))),
        "deleteDevice" => (
            vec![("id", "alice".into()), ("device", f.device.clone())],
            "",
            None,
        ),
        "muteConversation" => (
            vec![("id", "alice".into()), ("conversation", f.group.clone())],
            "",
            Some(json!({"muted": true})),
        ),
        "setDoNotDisturb" => (id("alice"), "", Some(json!({"until": null}))),
        "getPresence" => (vec![], "?users=alice,bob", None),
        "deactivateUser" | "reactivateUser" | "revokeUserTokens" => (id("yan"), "", None),
        "deleteUser" => (id("zed"), "?erase=true", None),
        "revokeAppTokens" => (vec![], "", None),
        "listEvents" => (vec![], "?limit=5&types=message.created", None),
        "getBeforeSendHook" | "deleteBeforeSendHook" => (vec![], "", None),
        "setBeforeSendHook" => (
            vec![],
            "",
            Some(json!({"url": f.hook_url, "timeout_ms": 500, "fail_open": true})),
        ),
        "createWebhook" => (vec![], "", Some(json!({"url": f.webhook_url}))),
        "listWebhooks" => (vec![], "?limit=5", None),
        "getWebhook" | "rotateWebhookSecret" | "listWebhookAttempts" | "testWebhook" => {
            (id(&f.webhook), "", None)
        }
        "updateWebhook" => (id(&f.webhook), "", Some(json!({"description": "walked"}))),
        "deleteWebhook" => (id(&f.doomed_webhook), "", None),
        "redeliverWebhookEvent" => (id(&f.webhook), "", Some(json!({"event_id": f.event_id}))),
        "listApps" => (vec![], "", None),
        "createApp" => (vec![], "", Some(json!({"name": "walked app"}))),
        "updateApp" => (app(), "", Some(json!({"auto_create_users": true}))),
        "addSigningKey" => (app(), "", Some(json!({}))),
        "removeSigningKey" => ([app(), vec![("kid", f.kid.clone())]].concat(), "", None),
        "createApiKey" | "revokeAppTokensAsOperator" => (app(), "", None),
        "revokeApiKey" => (
            [app(), vec![("prefix", f.prefix.clone())]].concat(),
            "",
            None,
        ),
        _ => return None,
    })
}

async fn send(rest: &Rest, op: &Op, call: &Call) -> Resp {
    let (params, query, body) = call;
    let mut path = op.path.clone();
    for (name, value) in params {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    assert!(
        !path.contains('{'),
        "{}: path parameters left in {path}",
        op.id
    );
    let method = Method::from_bytes(op.method.to_uppercase().as_bytes()).unwrap();
    let body = body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
    rest.request(method, &format!("{path}{query}"), body).await
}

async fn setup(server: &TestServer, webhook_url: &str) -> Fixture {
    let api = server.api();
    api.create_users(&[
        "alice", "bob", "carol", "dave", "erin", "frank", "yan", "zed", "mallory",
    ])
    .await;
    let alice = server.rest_as(&server.app.token("alice"));
    let group = alice.create_group("walk", &["bob", "carol"]).await;
    let edit = seq_of(&api.send(&group, "alice", "one", "c-1").await).to_string();
    let delete = seq_of(&api.send(&group, "bob", "two", "c-2").await).to_string();
    api.post(
        &format!("/v1/conversations/{group}/messages/{edit}/reactions"),
        json!({"emoji": "🎉", "user_id": "bob"}),
    )
    .await
    .ok();
    let leave = api.create_group("leave", &["alice", "bob"]).await;
    let doomed = api.create_group("doomed", &["alice", "bob"]).await;
    let hide = api.create_group("hide", &["alice", "zed"]).await;
    api.send(&hide, "zed", "hidden soon", "h-1").await;
    let mut notifications = Vec::new();
    for n in 0..2 {
        let sent = api
            .post(
                "/v1/users/alice/notifications",
                json!({"payload": {"n": n}}),
            )
            .await
            .ok();
        notifications.push(sent["id"].as_str().unwrap().to_owned());
    }
    api.post("/v1/users/alice/blocks", json!({"user_id": "dave"}))
        .await
        .ok();

    let operator = server.rest_as(SECRET);
    let created = operator
        .post("/v1/admin/apps", json!({"name": "operated"}))
        .await
        .ok();
    let app = created["app_id"].as_str().unwrap().to_owned();
    let key = operator
        .post(&format!("/v1/admin/apps/{app}/keys"), json!({}))
        .await
        .ok();
    let api_key = operator
        .post(&format!("/v1/admin/apps/{app}/api-keys"), json!({}))
        .await
        .ok();
    let hook_url = format!("http://127.0.0.1:{}/hook", mkondo_tests::free_port());
    api.request(
        reqwest::Method::PUT,
        "/v1/before-send-hook",
        Some(
            json!({"url": hook_url, "timeout_ms": 500, "fail_open": true})
                .to_string()
                .into_bytes(),
        ),
    )
    .await
    .ok();
    let mut webhooks = Vec::new();
    for _ in 0..2 {
        let created = api
            .post("/v1/webhooks", json!({"url": webhook_url}))
            .await
            .expect(201);
        webhooks.push(created["id"].as_str().unwrap().to_owned());
    }
    let events = api.get("/v1/events?limit=1").await.ok();
    let device = api
        .post(
            "/v1/users/alice/devices",
            json!({"provider": "fcm", "token": "openapi-doomed-device"}),
        )
        .await
        .expect(201);
    let upload = alice
        .post(
            &format!("/v1/conversations/{group}/uploads"),
            json!({"name": "n.txt", "size": 2, "content_type": "text/plain"}),
        )
        .await
        .expect(201);
    let link = upload["url"].as_str().unwrap();
    let patched = mkondo_tests::tus_patch(server.addr, link, 0, b"hi", None).await;
    assert_eq!(patched.status(), 204);
    let attachment = upload["id"].as_str().unwrap().to_owned();
    alice
        .post(
            &format!("/v1/conversations/{group}/messages"),
            json!({"attachment_ids": [attachment]}),
        )
        .await
        .expect(201);
    Fixture {
        attachment,
        device: device["id"].as_str().unwrap().to_owned(),
        hook_url,
        webhook: webhooks[0].clone(),
        doomed_webhook: webhooks[1].clone(),
        webhook_url: webhook_url.to_owned(),
        event_id: events["events"][0]["id"].as_str().unwrap().to_owned(),
        group,
        edit,
        delete,
        leave,
        doomed,
        hide,
        notification: notifications[0].clone(),
        my_notification: notifications[1].clone(),
        app,
        kid: key["kid"].as_str().unwrap().to_owned(),
        prefix: api_key["prefix"].as_str().unwrap().to_owned(),
    }
}

/// Every operation of the document, called with valid input and the credential
/// it declares, answers a declared success whose body matches the document.
/// Before the walk changes anything, every operation that takes an id refuses
/// other apps and unrelated users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_as_its_openapi_document_says() {
    // Loopback hook URLs allowed: the walk sets a before-send hook.
    let server = TestServer::start(
        ServerOptions::new()
            .operator_secret(SECRET)
            .extra_apps(1)
            .outbound_allow_private(),
    )
    .await;
    let raw = server.rest_anon().get("/v1/openapi.json").await;
    assert_eq!(raw.status, 200, "{}", raw.text);
    let doc = Doc::new(raw.body);
    assert!(doc.doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let receiver = mkondo_tests::webhook_receiver::Receiver::start().await;
    let fixture = setup(&server, &receiver.url).await;
    let mut ops = doc.operations();
    // The tus resource and downloads are authorised by the signed link in
    // their query and speak tus headers and bytes, not JSON: files.rs calls
    // each of them with its link.
    for signed in SIGNED_LINK_OPS {
        assert!(
            ops.iter().any(|op| op.id == signed),
            "{signed} is documented"
        );
    }
    ops.retain(|op| !SIGNED_LINK_OPS.contains(&op.id.as_str()));
    assert!(ops.len() >= 50, "only {} operations", ops.len());
    let calls: Vec<Call> = ops
        .iter()
        .map(|op| {
            call_for(&op.id, &fixture).unwrap_or_else(|| {
                panic!(
                    "no example request for {} ({} {}): add it to call_for",
                    op.id, op.method, op.path
                )
            })
        })
        .collect();

    // App isolation, before the walk changes anything.
    let other = &server.other_apps[0];
    let outsiders = [
        ("another app's API key", server.rest_as(&other.api_key)),
        (
            "a user token of another app",
            server.rest_as(&other.token("outsider")),
        ),
        (
            "an unrelated user's token",
            server.rest_as(&server.app.token("mallory")),
        ),
    ];
    let mut refused = 0;
    for (op, call) in ops.iter().zip(&calls) {
        if !op.takes_an_id() {
            continue;
        }
        for (who, rest) in &outsiders {
            // A user's own block list, named by the other user's id, is theirs.
            if op.id == "unblockMyUser" && *who == "an unrelated user's token" {
                continue;
            }
            let resp = send(rest, op, call).await;
            assert!(
                matches!(resp.status, 401 | 403 | 404),
                "{} {} with {who} answered {}: {}",
                op.method,
                op.path,
                resp.status,
                resp.text
            );
            doc.check(op, who, &resp);
            refused += 1;
        }
    }
    assert!(refused >= 100, "only {refused} isolation calls");

    // The walk, app-wide revocation last (it refuses the tokens used before it),
    // the before-send hook's removal just before (reading it needs it there).
    let api = server.api();
    let alice = server.rest_as(&server.app.token("alice"));
    let operator = server.rest_as(SECRET);
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| {
        (
            ops[i].id == "revokeAppTokens",
            ops[i].id == "deleteBeforeSendHook",
        )
    });
    let mut walked = 0;
    for i in order {
        let (op, call) = (&ops[i], &calls[i]);
        let schemes = op.schemes();
        let mut callers: Vec<(&str, &Rest)> = Vec::new();
        if schemes.contains("operator") {
            callers.push(("the operator secret", &operator));
        }
        if schemes.contains("api_key") {
            callers.push(("the API key", &api));
        }
        if schemes.contains("user_token") && (callers.is_empty() || op.method == "get") {
            callers.push(("alice's token", &alice));
        }
        if schemes.is_empty() {
            callers.push(("no credentials", &api));
        }
        for (who, rest) in callers {
            let resp = send(rest, op, call).await;
            assert!(
                (200..300).contains(&resp.status),
                "{} {} with {who} answered {}: {}",
                op.method,
                op.path,
                resp.status,
                resp.text
            );
            doc.check(op, who, &resp);
            walked += 1;
        }
    }
    assert!(walked >= ops.len());

    // What the walk did is what the server now holds.
    let group = api
        .get(&format!("/v1/conversations/{}", fixture.group))
        .await
        .ok();
    assert_eq!(group["name"], "Renamed");
    let history = api.history_all(&fixture.group).await;
    let at = |seq: &str| {
        history
            .iter()
            .find(|m| seq_of(m).to_string() == seq)
            .unwrap()
    };
    assert_eq!(at(&fixture.edit)["text"], "edited");
    assert!(at(&fixture.delete)["deleted_at"].is_string());
    assert!(history.iter().any(|m| m["text"] == "walked"));
    assert_eq!(api.get("/v1/users/zed").await.status, 404);
    assert_eq!(alice.get("/v1/me").await.status, 401, "revoked app-wide");
}

/// The document needs no credentials, and unknown paths are not in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_public_and_lists_only_v1_routes() {
    let server = TestServer::start_default().await;
    let doc = server.rest_anon().get("/v1/openapi.json").await.ok();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| p.starts_with("/v1/")));
    for scheme in ["api_key", "user_token", "operator"] {
        assert_eq!(
            doc["components"]["securitySchemes"][scheme]["scheme"], "bearer",
            "{scheme}"
        );
    }
}
