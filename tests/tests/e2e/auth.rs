//! Tokens: every bad-token class refused with its own reason (real-time and REST),
//! asymmetric keys, clock skew, and the wall between apps.

use std::collections::HashMap;

use jsonwebtoken::Algorithm;
use mkondo_tests::{
    now_secs, per_transport, App, Claims, PushKind, ServerOptions, TestServer, Transport, QUIET,
    WAIT,
};

/// A token and the `(code, reason)` the server must refuse it with.
struct BadToken {
    name: &'static str,
    token: String,
    code: &'static str,
    reason: &'static str,
}

fn bad_tokens(app: &App, other: &App) -> Vec<BadToken> {
    let now = now_secs();
    let claims = app.claims("mallory");
    let with = |f: &dyn Fn(&mut Claims)| {
        let mut c = claims.clone();
        f(&mut c);
        c
    };
    let invalid = |name, token, reason| BadToken {
        name,
        token,
        code: "invalid_token",
        reason,
    };
    vec![
        invalid(
            "bad signature",
            app.sign_with(Algorithm::HS256, Some(&app.kid), b"not-the-secret", &claims),
            "bad_signature",
        ),
        invalid("alg none", app.unsigned(&claims), "alg_none"),
        invalid(
            "alg does not match the key (HS512 on an HS256 key)",
            app.sign_with(
                Algorithm::HS512,
                Some(&app.kid),
                app.secret.as_bytes(),
                &claims,
            ),
            "alg_mismatch",
        ),
        invalid(
            "unknown kid",
            app.sign_with(
                Algorithm::HS256,
                Some("no-such-kid"),
                app.secret.as_bytes(),
                &claims,
            ),
            "unknown_kid",
        ),
        invalid(
            "missing kid",
            app.sign_with(Algorithm::HS256, None, app.secret.as_bytes(), &claims),
            "missing_kid",
        ),
        BadToken {
            name: "expired (beyond the 30 s skew)",
            token: app.sign(&with(&|c| {
                c.iat = Some(now - 7200);
                c.exp = Some(now - 120);
            })),
            code: "token_expired",
            reason: "expired",
        },
        invalid(
            "not yet valid (beyond the 30 s skew)",
            app.sign(&with(&|c| c.nbf = Some(now + 600))),
            "not_yet_valid",
        ),
        invalid(
            "missing sub",
            app.sign(&with(&|c| c.sub = None)),
            "missing_sub",
        ),
        invalid(
            "wrong app (app A's key, app B's id)",
            app.sign(&with(&|c| c.app = Some(other.app_id.clone()))),
            "wrong_app",
        ),
        invalid(
            "lifetime over the maximum",
            app.sign(&with(&|c| c.exp = Some(now + 2 * 86_400))),
            "lifetime_too_long",
        ),
        invalid("malformed", "this.is-not-a.jwt".to_owned(), "malformed"),
    ]
}

per_transport!(every_bad_token_class_is_refused);

/// Each bad token is refused on connect with its own code and reason, then the
/// connection is closed with a code of the "stop" range (never a crash: a good
/// token still connects afterwards).
async fn every_bad_token_class_is_refused(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    for bad in bad_tokens(&server.app, &server.other_apps[0]) {
        let client = server.open(transport).await;
        let err = client
            .connect(&bad.token, HashMap::new())
            .await
            .err()
            .unwrap_or_else(|| panic!("{}: the token was accepted", bad.name));
        assert_eq!(
            (err.code.as_str(), err.reason.as_str()),
            (bad.code, bad.reason),
            "{}: {err:?}",
            bad.name
        );
        let closed = client
            .wait_closed(WAIT)
            .await
            .unwrap_or_else(|| panic!("{}: the connection stayed open", bad.name));
        if bad.code == "invalid_token" {
            let code = closed
                .code()
                .unwrap_or_else(|| panic!("{}: no code: {closed:?}", bad.name));
            assert!(
                (3500..4000).contains(&code),
                "{}: an invalid token closes with a stop code, got {closed:?}",
                bad.name
            );
            if let Some(d) = &closed.disconnect {
                assert!(!d.reconnect, "{}: {d:?}", bad.name);
            }
        }
    }
    server.assert_running();
    server.client(transport, "alice").await;
}

/// REST refuses the same tokens with 401 and the same code and reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_class_is_refused_over_rest() {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    for bad in bad_tokens(&server.app, &server.other_apps[0]) {
        let body = server
            .rest_as(&bad.token)
            .get("/v1/me/conversations")
            .await
            .expect_error(401, bad.code);
        assert_eq!(
            body["error"]["reason"].as_str(),
            Some(bad.reason),
            "{}: {body}",
            bad.name
        );
    }
    // The good token works.
    server
        .rest_as(&server.app.token("alice"))
        .get("/v1/me/conversations")
        .await
        .ok();
}

/// Within the 30 s clock skew, a just-expired or not-quite-valid token is accepted;
/// a token at the maximum lifetime is accepted, one well over it (beyond the skew)
/// is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_and_maximum_lifetime() {
    let server = TestServer::start(ServerOptions::new().max_token_lifetime_secs(3600)).await;
    let app = &server.app;
    let now = now_secs();
    let mut claims = app.claims("skewed");
    claims.iat = Some(now - 600);
    claims.exp = Some(now - 10);
    server
        .client_with_token(Transport::WsJson, &app.sign(&claims))
        .await;
    let mut claims = app.claims("early");
    claims.nbf = Some(now + 10);
    server
        .client_with_token(Transport::WsJson, &app.sign(&claims))
        .await;
    let mut claims = app.claims("max");
    claims.exp = Some(claims.iat.unwrap() + 3600);
    server
        .client_with_token(Transport::WsJson, &app.sign(&claims))
        .await;
    claims.exp = Some(claims.iat.unwrap() + 3600 + 120);
    let client = server.open(Transport::WsJson).await;
    let err = client
        .connect(&app.sign(&claims), HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.reason, "lifetime_too_long", "{err:?}");
}

/// RS256, ES256 and EdDSA public keys: their tokens connect; the same claims signed
/// with an unregistered key are a bad signature; an HS256 token "signed" with the
/// public key (the classic confusion attack) is an alg mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_keys() {
    let server = TestServer::start(ServerOptions::new().asymmetric_keys()).await;
    let app = &server.app;
    for key in &app.keys {
        let user = format!("user-{:?}", key.alg).to_lowercase();
        let (client, reply) = server
            .client_with_token(Transport::WsJson, &key.token(app, &user))
            .await;
        assert_eq!(reply.user.unwrap().id, user, "{:?}", key.alg);
        client.ping().await.unwrap();

        let forged = jsonwebtoken::encode(
            &{
                let mut h = jsonwebtoken::Header::new(key.alg);
                h.kid = Some(key.kid.clone());
                h
            },
            &app.claims(&user),
            &key.encoding_key(key.other_private_pem),
        )
        .unwrap();
        let client = server.open(Transport::WsJson).await;
        let err = client.connect(&forged, HashMap::new()).await.unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.reason.as_str()),
            ("invalid_token", "bad_signature"),
            "{:?} signed by another key: {err:?}",
            key.alg
        );

        let confused = app.sign_with(
            Algorithm::HS256,
            Some(&key.kid),
            key.public_pem,
            &app.claims(&user),
        );
        let client = server.open(Transport::WsJson).await;
        let err = client.connect(&confused, HashMap::new()).await.unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.reason.as_str()),
            ("invalid_token", "alg_mismatch"),
            "HS256 with the {:?} public key as secret: {err:?}",
            key.alg
        );
    }
    // The HS256 key still works next to them.
    server.client(Transport::WsJson, "plain").await;
    // REST takes asymmetric tokens too.
    let key = app.key(Algorithm::EdDSA);
    server
        .rest_as(&key.token(app, "rest-user"))
        .get("/v1/me/conversations")
        .await
        .ok();
}

per_transport!(apps_never_see_each_other);

/// Apps A and B both have a user "bob" and a conversation "room". A's tokens and
/// A's API key never see B's data, events or presence.
async fn apps_never_see_each_other(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let a = server.app.clone();
    let b = server.other_apps[0].clone();
    let api_a = server.api();
    let api_b = server.rest_as(&b.api_key);
    api_a.create_users(&["alice", "bob"]).await;
    api_b.create_users(&["bob", "beatrice"]).await;
    api_a
        .create_group_with_id("room", "A's room", &["alice", "bob"])
        .await;
    api_b
        .create_group_with_id("room", "B's room", &["bob", "beatrice"])
        .await;
    let secret = api_b.create_group("secret", &["bob", "beatrice"]).await;
    api_b.send(&secret, "beatrice", "for B only", "s-1").await;

    let connect = |app: &App, user: &str| {
        let token = app.token(user);
        let server = &server;
        async move { server.client_with_token(transport, &token).await }
    };
    let (bob_a, reply) = connect(&a, "bob").await;
    assert!(
        reply
            .conversations
            .iter()
            .all(|c| c.id == "room" && c.name == "A's room"),
        "A's bob sees only A's conversations: {:?}",
        reply.conversations
    );
    let (bob_b, _) = connect(&b, "bob").await;
    let (alice_a, _) = connect(&a, "alice").await;
    let (_beatrice_b, _) = connect(&b, "beatrice").await;

    // B's events never reach A's clients, even under the same ids.
    api_b.send("room", "beatrice", "in B's room", "b-1").await;
    bob_b.expect_message("room", WAIT).await;
    alice_a
        .send_message("room", "in A's room", "a-1")
        .await
        .unwrap();
    let m = bob_a.expect_message("room", WAIT).await;
    assert_eq!(m.text, "in A's room");
    bob_a
        .expect_no_push("an event of app B", QUIET, |p| match p {
            PushKind::Message(m) => m.text.contains("B"),
            PushKind::MemberJoined(j) => j.conversation_id == secret,
            _ => false,
        })
        .await;
    let history = bob_a.history("room", 0, 0, 100).await.unwrap();
    let texts: Vec<&str> = history.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["in A's room"]);

    // B's conversation id is unknown to A's tokens.
    let not_found = |what: &str, r: Result<(), mkondo_tests::v1::Error>| {
        let err = r.expect_err(what);
        assert_eq!(err.code, "not_found", "{what}: {err:?}");
    };
    not_found("subscribe", bob_a.subscribe(&secret).await.map(drop));
    not_found("history", bob_a.history(&secret, 0, 0, 10).await.map(drop));
    not_found(
        "send",
        bob_a.send_message(&secret, "sneak", "x-1").await.map(drop),
    );
    // B's presence does not leak: A's beatrice does not exist / is not online.
    let presence = alice_a.presence(&["beatrice"]).await.unwrap_or_default();
    assert!(
        presence.iter().all(|p| p.status != "online"),
        "presence of B's user seen from A: {presence:?}"
    );
    // REST: A's API key and A's user tokens see nothing of B.
    api_a
        .get(&format!("/v1/conversations/{secret}"))
        .await
        .expect_error(404, "not_found");
    api_a
        .get(&format!("/v1/conversations/{secret}/messages"))
        .await
        .expect_error(404, "not_found");
    api_a
        .post(
            &format!("/v1/conversations/{secret}/messages"),
            serde_json::json!({"sender_id": "bob", "text": "sneak", "client_id": "x-2"}),
        )
        .await
        .expect_error(404, "not_found");
    api_a
        .get("/v1/users/beatrice")
        .await
        .expect_error(404, "not_found");
    let users_a = api_a.get("/v1/users?q=bea").await.ok();
    assert_eq!(
        users_a["items"].as_array().map(Vec::len),
        Some(0),
        "{users_a}"
    );
    let room_a = api_a.get("/v1/conversations/room/messages").await.ok();
    assert!(!room_a.to_string().contains("in B's room"), "{room_a}");
    let r = server
        .rest_as(&a.token("bob"))
        .get(&format!("/v1/conversations/{secret}/messages"))
        .await;
    assert!(
        r.status == 403 || r.status == 404,
        "A's user token on B's conversation: {} {}",
        r.status,
        r.text
    );
    // A `groups` claim naming B's conversation grants nothing in B.
    let mut claims = a.claims("intruder");
    claims.groups = Some(vec![secret.clone()]);
    let (intruder, _) = server.client_with_token(transport, &a.sign(&claims)).await;
    match intruder.history(&secret, 0, 0, 10).await {
        // A may have made its own conversation of that id: B's message is not in it.
        Ok(history) => assert!(
            history.messages.iter().all(|m| m.text != "for B only"),
            "app B's message seen through app A's groups claim"
        ),
        Err(e) => assert!(
            e.code == "not_found" || e.code == "permission_denied",
            "{e:?}"
        ),
    }
    let members_b = api_b
        .get(&format!("/v1/conversations/{secret}/members"))
        .await
        .ok();
    assert!(
        !members_b.to_string().contains("intruder"),
        "app A's token joined app B's conversation: {members_b}"
    );

    // And B's data is intact.
    assert_eq!(api_b.history_all(&secret).await.len(), 1);
}
