//! The operator API (`/v1/admin/apps`, guarded by the operator secret) and the
//! `mkondo app` CLI: apps, signing-key rotation and removal, API keys, app-wide
//! token revocation. Removing a key or revoking tokens closes exactly the
//! affected live connections within a second, through the API at once and
//! through the CLI by the running server noticing.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mkondo_tests::{
    expect_alive, expect_stopped, valid_after_secs, Rest, ServerOptions, TestServer, Transport,
};
use serde_json::{json, Value};
use tokio::time::Instant;

const SECRET: &str = "operator-secret-for-tests-0123";
const ES256_PRIVATE: &[u8] = include_bytes!("../../fixtures/keys/es256-1.key.pem");
const ES256_PUBLIC: &str = include_str!("../../fixtures/keys/es256-1.pub.pem");

async fn server_with_operator() -> TestServer {
    TestServer::start(ServerOptions::new().operator_secret(SECRET).extra_apps(1)).await
}

fn operator(server: &TestServer) -> Rest {
    server.rest_as(SECRET)
}

fn app_in<'a>(list: &'a Value, app_id: &str) -> &'a Value {
    list["items"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["app_id"] == app_id))
        .unwrap_or_else(|| panic!("app {app_id} not listed: {list}"))
}

fn kids(app: &Value) -> Vec<String> {
    app["signing_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_api_refuses_missing_and_wrong_secrets() {
    let server = server_with_operator().await;
    let app = &server.app;
    let (alice, _) = server.client(Transport::WsJson, "alice").await;
    let revoke = format!("/v1/admin/apps/{}/revoke-tokens", app.app_id);
    let callers = [
        ("no credentials", server.rest_anon()),
        (
            "a wrong secret",
            server.rest_as("operator-secret-for-tests-0124"),
        ),
        ("a prefix of the secret", server.rest_as(&SECRET[..20])),
        ("the app's API key", server.api()),
        ("a user token", server.rest_as(&app.token("alice"))),
    ];
    for (what, rest) in &callers {
        let r = rest.get("/v1/admin/apps").await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        r.expect_error(401, "unauthenticated");
        rest.post("/v1/admin/apps", json!({"name": "sneaky"}))
            .await
            .expect_error(401, "unauthenticated");
        rest.post(&revoke, json!({}))
            .await
            .expect_error(401, "unauthenticated");
    }
    expect_alive("alice, after refused revocations", &alice).await;

    let r = operator(&server).get("/v1/admin/apps").await;
    assert!(!r.text.contains(&app.secret), "no signing secret in a list");
    assert!(!r.text.contains(&app.api_key), "no API key in a list");
    let list = r.ok();
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    assert!(list.as_object().unwrap().contains_key("next_cursor"));
    let main = app_in(&list, &app.app_id);
    assert_eq!(main["name"], "main");
    assert_eq!(kids(main), std::slice::from_ref(&app.kid));
    let prefix = main["api_keys"][0]["prefix"].as_str().unwrap();
    assert!(app.api_key.starts_with(prefix) && prefix.len() < app.api_key.len());
    assert!(
        list.to_string().find("\"sneaky\"").is_none(),
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_operator_secret_the_operator_api_does_not_exist() {
    let server = TestServer::start_default().await;
    for rest in [server.rest_anon(), server.api(), server.rest_as(SECRET)] {
        rest.get("/v1/admin/apps")
            .await
            .expect_error(404, "not_found");
        rest.post("/v1/admin/apps", json!({"name": "x"}))
            .await
            .expect_error(404, "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_creates_apps_and_manages_their_api_keys() {
    let server = server_with_operator().await;
    let op = operator(&server);
    let creds = op
        .post("/v1/admin/apps", json!({"name": "Shop", "id": "shop"}))
        .await
        .expect(201);
    assert_eq!(
        (&creds["app_id"], &creds["name"]),
        (&json!("shop"), &json!("Shop"))
    );
    let first_key = creds["api_key"].as_str().unwrap().to_owned();
    let kid = creds["signing_key"]["kid"].as_str().unwrap();
    let secret = creds["signing_key"]["secret"].as_str().unwrap();
    // The new app works at once: its API key, and tokens signed with its key.
    server.rest_as(&first_key).get("/v1/users").await.ok();
    let shop = mkondo_tests::App {
        app_id: "shop".into(),
        name: "Shop".into(),
        kid: kid.into(),
        secret: secret.into(),
        api_key: first_key.clone(),
        keys: Vec::new(),
    };
    server
        .client_with_token(Transport::WsJson, &shop.token("alice"))
        .await;
    op.post("/v1/admin/apps", json!({"name": "Shop", "id": "shop"}))
        .await
        .expect_error(409, "already_exists");
    op.post("/v1/admin/apps", json!({"name": ""}))
        .await
        .expect_error(422, "invalid_argument");

    // A second API key; revoking it leaves the first working.
    let created = op
        .post("/v1/admin/apps/shop/api-keys", json!({}))
        .await
        .expect(201);
    let second_key = created["api_key"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap().to_owned();
    assert!(second_key.starts_with(&prefix), "{created}");
    server.rest_as(&second_key).get("/v1/users").await.ok();
    op.delete(&format!("/v1/admin/apps/shop/api-keys/{prefix}"))
        .await
        .expect(204);
    let body = server
        .rest_as(&second_key)
        .get("/v1/users")
        .await
        .expect_error(401, "unauthenticated");
    assert_eq!(body["error"]["reason"], "invalid_api_key", "{body}");
    server.rest_as(&first_key).get("/v1/users").await.ok();
    op.delete(&format!("/v1/admin/apps/shop/api-keys/{prefix}"))
        .await
        .expect_error(404, "not_found");
    // A key's prefix names it within its own app only.
    let main = &server.app.app_id;
    op.delete(&format!("/v1/admin/apps/{main}/api-keys/{prefix}"))
        .await
        .expect_error(404, "not_found");
    op.post("/v1/admin/apps/nope/api-keys", json!({}))
        .await
        .expect_error(404, "not_found");

    let list = op.get("/v1/admin/apps").await.ok();
    let keys = app_in(&list, "shop")["api_keys"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(keys.len(), 2, "{list}");
    let revoked: Vec<bool> = keys.iter().map(|k| k["revoked_at"].is_string()).collect();
    assert_eq!(revoked, [false, true], "{list}");
}

/// An ES256 token for `user` of `app`, signed with the fixture key, with `kid`.
fn es256_token(app: &mkondo_tests::App, user: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_ec_pem(ES256_PRIVATE).unwrap();
    jsonwebtoken::encode(&header, &app.claims(user), &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_signing_key_closes_the_connections_it_signed() {
    let server = server_with_operator().await;
    let op = operator(&server);
    let app = &server.app;
    let keys = format!("/v1/admin/apps/{}/keys", app.app_id);

    let new = op.post(&keys, json!({})).await.expect(201);
    assert_eq!(new["alg"], "HS256", "{new}");
    let new_kid = new["kid"].as_str().unwrap().to_owned();
    let new_secret = new["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, app.kid);
    let es = op
        .post(&keys, json!({"alg": "ES256", "public_key": ES256_PUBLIC}))
        .await
        .expect(201);
    assert!(es.get("secret").is_none(), "{es}");
    let es_kid = es["kid"].as_str().unwrap().to_owned();

    // Every key signs tokens that connect.
    let old_token = app.token("alice");
    let (alice, _) = server
        .client_with_token(Transport::WsJson, &old_token)
        .await;
    let (bob, _) = server
        .client_with_token(
            Transport::Grpc,
            &app.token_with_key("bob", &new_kid, &new_secret),
        )
        .await;
    let (carol, _) = server
        .client_with_token(Transport::WsProto, &es256_token(app, "carol", &es_kid))
        .await;
    // Dave connected with the old key, then refreshed with the new one: he now
    // holds a token the removal does not touch.
    let (dave, _) = server.client(Transport::WsJson, "dave").await;
    dave.refresh(&app.token_with_key("dave", &new_kid, &new_secret))
        .await
        .unwrap();
    let (elsewhere, _) = server
        .client_with_token(Transport::WsJson, &server.other_apps[0].token("alice"))
        .await;

    op.delete(&format!("{keys}/{}", app.kid)).await.expect(204);
    let since = Instant::now();
    expect_stopped("alice (old key)", &alice, 3502, "tokens_revoked", since).await;
    expect_alive("bob (new key)", &bob).await;
    expect_alive("carol (ES256 key)", &carol).await;
    expect_alive("dave (refreshed to the new key)", &dave).await;
    expect_alive("the other app", &elsewhere).await;

    let err = server
        .open(Transport::WsJson)
        .await
        .connect(&old_token, Default::default())
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.reason.as_str()),
        ("invalid_token", "unknown_kid")
    );

    let list = op.get("/v1/admin/apps").await.ok();
    assert_eq!(
        kids(app_in(&list, &app.app_id)),
        [new_kid.clone(), es_kid.clone()]
    );
    op.delete(&format!("{keys}/{}", app.kid))
        .await
        .expect_error(404, "not_found");
    op.delete(&format!("{keys}/{es_kid}")).await.expect(204);
    let last = op.delete(&format!("{keys}/{new_kid}")).await;
    let body = last.expect_error(403, "permission_denied");
    assert!(body.to_string().contains("last"), "{body}");
    expect_alive("bob, holding the last key", &bob).await;

    // Bad key requests.
    for (body, what) in [
        (json!({"alg": "ES256"}), "no public key"),
        (
            json!({"alg": "ES256", "public_key": "not a pem"}),
            "bad pem",
        ),
        (json!({"alg": "HS512"}), "unknown alg"),
        (
            json!({"public_key": ES256_PUBLIC}),
            "a public key for HS256",
        ),
    ] {
        let r = op.post(&keys, body).await;
        assert_eq!(r.status, 422, "{what}: {}", r.text);
    }
    op.post("/v1/admin/apps/nope/keys", json!({}))
        .await
        .expect_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_revokes_an_apps_tokens() {
    let server = server_with_operator().await;
    let (alice, _) = server.client(Transport::Grpc, "alice").await;
    let other = &server.other_apps[0];
    let (elsewhere, _) = server
        .client_with_token(Transport::WsJson, &other.token("alice"))
        .await;
    let path = format!("/v1/admin/apps/{}/revoke-tokens", server.app.app_id);
    let body = operator(&server).post(&path, json!({})).await.ok();
    let since = Instant::now();
    expect_stopped("alice", &alice, 3502, "tokens_revoked", since).await;
    expect_alive("the other app", &elsewhere).await;
    let fresh = server.app.token_issued_at("alice", valid_after_secs(&body));
    server.client_with_token(Transport::Grpc, &fresh).await;
    operator(&server)
        .post("/v1/admin/apps/nope/revoke-tokens", json!({}))
        .await
        .expect_error(404, "not_found");
}

// ----- the CLI, on the database of a running server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_rotate_key_keeps_both_kids_working_and_remove_key_closes_the_old_ones() {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let app = &server.app;
    let out = server
        .cli(&["app", "rotate-key", "--app", &app.app_id, "--json"])
        .await;
    let key: Value = serde_json::from_str(out.trim()).expect("rotate-key --json prints JSON");
    let new_kid = key["kid"].as_str().unwrap().to_owned();
    let new_secret = key["secret"].as_str().unwrap().to_owned();
    assert_eq!(key["alg"], "HS256");

    // The running server accepts both kids.
    let (old, _) = server.client(Transport::WsJson, "alice").await;
    let new_token = app.token_with_key("bob", &new_kid, &new_secret);
    let (new, _) = server
        .client_with_token(Transport::WsProto, &new_token)
        .await;
    // `mkondo token` now signs with the newest key.
    let minted = server.cli_token("carol", None, &[]).await;
    let (carol, _) = server.client_with_token(Transport::Grpc, &minted).await;
    let (elsewhere, _) = server
        .client_with_token(Transport::WsJson, &server.other_apps[0].token("dave"))
        .await;

    let listed: Value =
        serde_json::from_str(server.cli(&["app", "list", "--json"]).await.trim()).unwrap();
    let main = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app_id"] == *app.app_id)
        .unwrap();
    assert_eq!(kids(main), [app.kid.clone(), new_kid.clone()]);

    server
        .cli(&["app", "remove-key", "--app", &app.app_id, "--kid", &app.kid])
        .await;
    let since = Instant::now();
    expect_stopped(
        "the old kid's connection",
        &old,
        3502,
        "tokens_revoked",
        since,
    )
    .await;
    expect_alive("the new kid's connection", &new).await;
    expect_alive("the CLI token's connection", &carol).await;
    expect_alive("the other app", &elsewhere).await;
    let err = server
        .open(Transport::WsJson)
        .await
        .connect(&app.token("alice"), Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason, "unknown_kid", "{err:?}");

    let (ok, _, stderr) = server
        .cli_result(&["app", "remove-key", "--app", &app.app_id, "--kid", &new_kid])
        .await;
    assert!(!ok && stderr.contains("last signing key"), "{stderr}");
    expect_alive("the last key's connection", &new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_api_keys_are_created_and_revoked() {
    let server = TestServer::start_default().await;
    let app = &server.app.app_id;
    let out = server
        .cli(&["app", "api-key", "create", "--app", app, "--json"])
        .await;
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let key = created["api_key"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap().to_owned();
    server.rest_as(&key).get("/v1/users").await.ok();

    let out = server
        .cli(&[
            "app", "api-key", "revoke", "--app", app, "--prefix", &prefix,
        ])
        .await;
    assert!(out.contains(&prefix), "{out}");
    let body = server
        .rest_as(&key)
        .get("/v1/users")
        .await
        .expect_error(401, "unauthenticated");
    assert_eq!(body["error"]["reason"], "invalid_api_key");
    server.api().get("/v1/users").await.ok();

    let (ok, _, stderr) = server
        .cli_result(&[
            "app", "api-key", "revoke", "--app", app, "--prefix", &prefix,
        ])
        .await;
    assert!(!ok && stderr.contains(&prefix), "{stderr}");
    // The text form prints the key and its prefix.
    let out = server
        .cli(&["app", "api-key", "create", "--app", app])
        .await;
    let line = out.lines().next().unwrap();
    let key = line.split_whitespace().nth(2).unwrap();
    server.rest_as(key).get("/v1/users").await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_revoke_tokens_closes_the_apps_connections() {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let (alice, _) = server.client(Transport::WsProto, "alice").await;
    let (elsewhere, _) = server
        .client_with_token(Transport::WsJson, &server.other_apps[0].token("alice"))
        .await;
    let out = server
        .cli(&[
            "app",
            "revoke-tokens",
            "--app",
            &server.app.app_id,
            "--json",
        ])
        .await;
    let since = Instant::now();
    let body: Value = serde_json::from_str(out.trim()).unwrap();
    expect_stopped("alice", &alice, 3502, "tokens_revoked", since).await;
    expect_alive("the other app", &elsewhere).await;
    let valid_after = valid_after_secs(&body);
    let stale = server.app.token_issued_at("alice", valid_after - 1);
    let err = server
        .open(Transport::WsJson)
        .await
        .connect(&stale, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason, "revoked", "{err:?}");
    let fresh = server.app.token_issued_at("alice", valid_after);
    server.client_with_token(Transport::WsProto, &fresh).await;
}

/// `--operator-secret-file` reads the secret from a file (a trailing newline is
/// not part of it) and logs no warning; the secret on the command line works but
/// warns that it shows in the process list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_secret_comes_from_a_file_and_the_command_line_warns() {
    const WARNING: &str = "visible in the process list";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("operator-secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let server = TestServer::start(
        ServerOptions::new().flag("--operator-secret-file", file.to_str().unwrap()),
    )
    .await;
    operator(&server).get("/v1/admin/apps").await.expect(200);
    assert!(
        !server.log_tail().contains(WARNING),
        "{}",
        server.log_tail()
    );

    let server = server_with_operator().await;
    operator(&server).get("/v1/admin/apps").await.expect(200);
    let log = server.log_tail();
    assert!(
        log.contains(WARNING),
        "no warning for the secret on the command line: {log}"
    );
    assert!(
        !log.contains(SECRET),
        "the secret itself is never logged: {log}"
    );
}
