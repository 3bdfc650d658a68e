//! Push devices, muting and "do not disturb" (issue 18): a credential
//! registered over real-time, REST or the Admin API belongs to one user of the
//! app (registering it for another moves it), is checked field by field for
//! its provider (a Web Push endpoint through the outbound guard), is capped per
//! user, and goes with its user on erasure; `muted` is set by the member and
//! seen by their other devices; "do not disturb until" is bounded.

use crate::admin_common::{admin, error_code, ok};
use mkondo_proto::convert::millis_to_timestamp;
use mkondo_proto::v1::reply::Result as R;
use mkondo_tests::{
    per_transport, v1, Client, Command, PushKind, ServerOptions, TestServer, Transport, WAIT,
};
use serde_json::json;

per_transport!(
    a_credential_belongs_to_one_user_and_moves,
    device_fields_are_checked_for_their_provider,
    mute_is_the_members_own_and_reaches_their_other_devices,
);

const APNS: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const FCM: &str = "dQw4w9WgXcQ:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx";

fn fcm(token: &str) -> v1::RegisterDeviceRequest {
    v1::RegisterDeviceRequest {
        provider: "fcm".into(),
        token: token.into(),
        ..Default::default()
    }
}

async fn register(
    client: &Client,
    req: v1::RegisterDeviceRequest,
) -> Result<v1::Device, v1::Error> {
    match client.request(Command::RegisterDevice(req)).await? {
        R::Device(v1::DeviceResult { device: Some(d) }) => Ok(d),
        other => panic!("unexpected reply {other:?}"),
    }
}

async fn devices(client: &Client) -> Vec<v1::Device> {
    match client
        .request(Command::Devices(v1::DevicesRequest {}))
        .await
        .unwrap()
    {
        R::Devices(d) => d.devices,
        other => panic!("unexpected reply {other:?}"),
    }
}

async fn unregister(client: &Client, device: &str) -> Result<(), v1::Error> {
    let req = v1::UnregisterDeviceRequest {
        device: device.into(),
    };
    client
        .request(Command::UnregisterDevice(req))
        .await
        .map(drop)
}

/// Alice registers an FCM token; again (rotation) keeps its id. Bob registers
/// the same token: it moves to him (Alice has none). Her token cannot read or
/// remove Bob's devices over REST; the backend can; another app's backend can
/// neither see nor move nor remove them. Unregistering by the token works
/// once, then `not_found`.
async fn a_credential_belongs_to_one_user_and_moves(transport: Transport) {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let (bob, _) = server.client(transport, "bob").await;

    let first = register(&alice, fcm(FCM)).await.unwrap();
    assert!(first.id.starts_with("dev_"), "{first:?}");
    assert_eq!(
        (first.provider.as_str(), first.token.as_str()),
        ("fcm", FCM)
    );
    let again = register(&alice, fcm(FCM)).await.unwrap();
    assert_eq!(again.id, first.id, "a re-registration keeps the device");
    assert_eq!(devices(&alice).await.len(), 1);

    let moved = register(&bob, fcm(FCM)).await.unwrap();
    assert_eq!(moved.id, first.id);
    assert!(devices(&alice).await.is_empty(), "moved away from alice");
    assert_eq!(devices(&bob).await.len(), 1);

    let alice_rest = server.rest_as(&server.app.token("alice"));
    alice_rest
        .get("/v1/users/bob/devices")
        .await
        .expect_error(403, "permission_denied");
    alice_rest
        .delete(&format!("/v1/users/bob/devices/{}", first.id))
        .await
        .expect_error(403, "permission_denied");
    let listed = api.get("/v1/users/bob/devices").await.ok();
    assert_eq!(listed["items"][0]["id"], first.id.as_str(), "{listed}");
    assert_eq!(listed["items"][0]["token"], FCM);

    // Another app is another world: the same token registered there for a
    // user of the same name neither moves nor shows this app's device.
    let other = server.rest_as(&server.other_apps[0].api_key);
    other.create_users(&["bob"]).await;
    let theirs = other
        .post(
            "/v1/users/bob/devices",
            json!({"provider": "fcm", "token": FCM}),
        )
        .await
        .expect(201);
    assert_ne!(theirs["id"], first.id.as_str(), "a device of its own");
    assert_eq!(devices(&bob).await.len(), 1, "still bob's here");
    let listed = other.get("/v1/users/bob/devices").await.ok();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    other
        .delete(&format!("/v1/users/bob/devices/{}", first.id))
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        devices(&bob).await.len(),
        1,
        "not removable from another app"
    );

    unregister(&bob, FCM).await.unwrap();
    assert!(devices(&bob).await.is_empty());
    let err = unregister(&bob, FCM).await.unwrap_err();
    assert_eq!(err.code, "not_found", "{err:?}");

    // The backend registers and removes for a user, by id.
    let apns = api
        .post(
            "/v1/users/bob/devices",
            json!({"provider": "apns", "token": APNS.to_uppercase(), "topic": "com.example.chat", "sandbox": true}),
        )
        .await;
    assert_eq!(apns.status, 201, "{}", apns.text);
    assert_eq!(apns.body["token"], APNS, "stored in lower case");
    assert_eq!(apns.body["sandbox"], true);
    let id = apns.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.delete(&format!("/v1/users/bob/devices/{id}"))
            .await
            .status,
        204
    );
    api.get("/v1/users/nobody/devices")
        .await
        .expect_error(404, "not_found");
}

/// Every field is checked for its provider, before anything is written; a
/// Web Push endpoint must be https to a public address (the server here does
/// not allow private ones); past 25 devices the oldest goes; erasing the user
/// takes their devices.
async fn device_fields_are_checked_for_their_provider(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let key = base64_url(&[4u8; 65]);
    let auth = base64_url(&[7u8; 16]);
    let web = |endpoint: &str, p256dh: &str, auth: &str| v1::RegisterDeviceRequest {
        provider: "webpush".into(),
        token: endpoint.into(),
        p256dh: p256dh.into(),
        auth: auth.into(),
        ..Default::default()
    };
    let apns = |token: &str| v1::RegisterDeviceRequest {
        provider: "apns".into(),
        token: token.into(),
        ..Default::default()
    };
    let refused = [
        (
            "an unknown provider",
            v1::RegisterDeviceRequest {
                provider: "sms".into(),
                token: "x".into(),
                ..Default::default()
            },
        ),
        ("an empty FCM token", fcm("")),
        ("an FCM token with a space", fcm("abc def")),
        ("an FCM token of 4097 bytes", fcm(&"a".repeat(4097))),
        ("an APNs token that is not hex", apns(&"z".repeat(64))),
        ("a short APNs token", apns(&APNS[..62])),
        (
            "keys on an FCM device",
            v1::RegisterDeviceRequest {
                auth: auth.clone(),
                ..fcm(FCM)
            },
        ),
        (
            "a topic on an FCM device",
            v1::RegisterDeviceRequest {
                topic: "com.example".into(),
                ..fcm(FCM)
            },
        ),
        (
            "a bad APNs topic",
            v1::RegisterDeviceRequest {
                topic: "com example/x".into(),
                ..apns(APNS)
            },
        ),
        (
            "a plain-http endpoint",
            web("http://push.example.com/x", &key, &auth),
        ),
        (
            "a loopback endpoint",
            web("https://127.0.0.1/push", &key, &auth),
        ),
        (
            "a private endpoint",
            web("https://10.1.2.3/push", &key, &auth),
        ),
        (
            "a compressed p256dh",
            web("https://push.example.com/x", &base64_url(&[2u8; 33]), &auth),
        ),
        (
            "a p256dh not starting 0x04",
            web("https://push.example.com/x", &base64_url(&[5u8; 65]), &auth),
        ),
        (
            "a short auth",
            web("https://push.example.com/x", &key, &base64_url(&[7u8; 8])),
        ),
        (
            "keys that are not base64url",
            web("https://push.example.com/x", "!!!", &auth),
        ),
    ];
    for (what, req) in refused {
        let err = register(&alice, req).await.unwrap_err();
        assert_eq!(err.code, "invalid_argument", "{what}: {err:?}");
    }
    assert!(devices(&alice).await.is_empty(), "nothing written");

    // The cap: the device registered longest ago goes.
    for i in 0..26 {
        register(&alice, fcm(&format!("token-{i:02}")))
            .await
            .unwrap();
    }
    let kept = devices(&alice).await;
    assert_eq!(kept.len(), 25);
    assert_eq!(kept[0].token, "token-25", "most recent first");
    assert!(
        kept.iter().all(|d| d.token != "token-00"),
        "the oldest went"
    );

    api.delete("/v1/users/alice").await.ok();
    api.create_users(&["alice"]).await;
    let listed = api.get("/v1/users/alice/devices").await.ok();
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
}

/// Bob mutes the group: his reply and his other device say `muted`, REST
/// lists it muted, Alice's view is unchanged; a non-member cannot mute it.
/// "Do not disturb until" is set, read back over REST, turned off by a past
/// time, and refused beyond a year.
async fn mute_is_the_members_own_and_reaches_their_other_devices(transport: Transport) {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let conv = api.create_group("team", &["alice", "bob"]).await;
    let (bob, _) = server.client(transport, "bob").await;
    let (bob_laptop, _) = server.client(Transport::WsJson, "bob").await;
    let (carol, _) = server.client(transport, "carol").await;
    let mute = |muted: bool| {
        Command::Mute(v1::MuteRequest {
            conversation_id: conv.clone(),
            muted,
        })
    };

    match bob.request(mute(true)).await.unwrap() {
        R::Conversation(c) => assert!(c.conversation.unwrap().muted),
        other => panic!("unexpected reply {other:?}"),
    }
    let seen = bob_laptop
        .expect_push("the mute on bob's other device", WAIT, |p| match p {
            PushKind::ConversationUpdated(u) => u.conversation.clone(),
            _ => None,
        })
        .await;
    assert!(seen.muted && seen.id == conv, "{seen:?}");
    let mine = server
        .rest_as(&server.app.token("bob"))
        .get(&format!("/v1/conversations/{conv}"))
        .await
        .ok();
    assert_eq!(mine["muted"], true, "{mine}");
    let alices = server
        .rest_as(&server.app.token("alice"))
        .get(&format!("/v1/conversations/{conv}"))
        .await
        .ok();
    assert_eq!(alices["muted"], false, "{alices}");
    let err = carol.request(mute(true)).await.unwrap_err();
    assert_eq!(err.code, "not_found", "{err:?}");
    let unmuted = server
        .api()
        .put(
            &format!("/v1/users/bob/conversations/{conv}/mute"),
            json!({"muted": false}),
        )
        .await
        .ok();
    assert_eq!(unmuted["muted"], false, "{unmuted}");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let dnd = |until: Option<i64>| {
        Command::DoNotDisturb(v1::DoNotDisturbRequest {
            until: until.map(millis_to_timestamp),
        })
    };
    let hour = now + 3_600_000;
    match bob.request(dnd(Some(hour))).await.unwrap() {
        R::DoNotDisturb(d) => assert_eq!(d.until, Some(millis_to_timestamp(hour))),
        other => panic!("unexpected reply {other:?}"),
    }
    let read = api.get("/v1/users/bob/do-not-disturb").await.ok();
    assert!(read["until"].is_string(), "{read}");
    match bob.request(dnd(Some(now - 1_000))).await.unwrap() {
        R::DoNotDisturb(d) => assert_eq!(d.until, None, "a past time turns it off"),
        other => panic!("unexpected reply {other:?}"),
    }
    let read = api.get("/v1/users/bob/do-not-disturb").await.ok();
    assert!(read["until"].is_null(), "{read}");
    let err = bob
        .request(dnd(Some(now + 400 * 24 * 3_600_000)))
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");
    api.put(
        "/v1/users/bob/do-not-disturb",
        json!({"until": "not a time"}),
    )
    .await
    .expect_error(422, "invalid_argument");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The Admin API's twins: the backend registers, lists and removes a user's
/// devices, mutes a conversation for a member and sets "do not disturb"; the
/// same checks refuse the same input.
#[tokio::test]
async fn the_admin_api_manages_devices_mute_and_do_not_disturb() {
    let server = TestServer::start_default().await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("team", &["alice", "bob"]).await;
    let mut grpc = admin(&server).await;

    let device = ok(
        "register",
        grpc.register_device(v1::RegisterDeviceForUserRequest {
            user_id: "alice".into(),
            device: Some(fcm(FCM)),
        })
        .await,
    );
    assert!(device.id.starts_with("dev_"));
    let listed = ok(
        "list",
        grpc.list_devices(v1::UserIdRequest { id: "alice".into() })
            .await,
    );
    assert_eq!(listed.devices, std::slice::from_ref(&device));
    let rest = api.get("/v1/users/alice/devices").await.ok();
    assert_eq!(
        rest["items"][0]["id"],
        device.id.as_str(),
        "the REST twin agrees"
    );
    let bad = grpc
        .register_device(v1::RegisterDeviceForUserRequest {
            user_id: "alice".into(),
            device: Some(fcm("no spaces allowed")),
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&bad), "invalid_argument");
    ok(
        "delete by token",
        grpc.delete_device(v1::DeleteDeviceRequest {
            user_id: "alice".into(),
            device: FCM.into(),
        })
        .await,
    );
    let gone = grpc
        .delete_device(v1::DeleteDeviceRequest {
            user_id: "alice".into(),
            device: device.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&gone), "not_found");

    let muted = ok(
        "mute",
        grpc.mute_conversation(v1::MuteConversationRequest {
            user_id: "bob".into(),
            conversation_id: conv.clone(),
            muted: true,
        })
        .await,
    );
    assert!(muted.muted, "{muted:?}");
    let bobs = server
        .rest_as(&server.app.token("bob"))
        .get(&format!("/v1/conversations/{conv}"))
        .await
        .ok();
    assert_eq!(bobs["muted"], true);

    let until = millis_to_timestamp(4_102_444_800_000); // 2100: beyond a year
    let far = grpc
        .set_do_not_disturb(v1::SetDoNotDisturbRequest {
            user_id: "bob".into(),
            until: Some(until),
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&far), "invalid_argument");
    let off = ok(
        "do not disturb off",
        grpc.set_do_not_disturb(v1::SetDoNotDisturbRequest {
            user_id: "bob".into(),
            until: None,
        })
        .await,
    );
    assert_eq!(off.until, None);
}
