//! The package's Rust side as JavaScript sees it, against a real server.
//! `web/tests/wasm.sh` runs this suite twice, in headless Chromium and in Node
//! (the runner picks the environment, so there is no `wasm_bindgen_test_configure!`
//! here). It starts `mkondo dev` behind a small control port
//! (`web/tests/lib/control.mjs`) through which one test stops and restarts the
//! server, mints tokens with the CLI and passes both addresses and the tokens in
//! at compile time (wasm can neither listen nor run the CLI).
#![cfg(target_arch = "wasm32")]

use std::{cell::RefCell, rc::Rc};

use js_sys::{Array, Function, Object, Promise, Reflect};
use mkondo_wasm::JsClient;
use wasm_bindgen::{convert::TryFromJsValue, prelude::*, JsCast};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

const URL: &str = match option_env!("MKONDO_TEST_URL") {
    Some(u) => u,
    None => "http://127.0.0.1:8080",
};
/// Where the suite stops and starts the server (`web/tests/lib/control.mjs`).
const CONTROL: &str = match option_env!("MKONDO_TEST_CONTROL") {
    Some(u) => u,
    None => "http://127.0.0.1:8081",
};
const TOKEN_A: &str = match option_env!("MKONDO_TEST_TOKEN_A") {
    Some(t) => t,
    None => "",
};
const TOKEN_B: &str = match option_env!("MKONDO_TEST_TOKEN_B") {
    Some(t) => t,
    None => "",
};
/// An already expired token of user `c`, and a fresh one the provider gives.
const TOKEN_C_EXPIRED: &str = match option_env!("MKONDO_TEST_TOKEN_C_EXPIRED") {
    Some(t) => t,
    None => "",
};
const TOKEN_C: &str = match option_env!("MKONDO_TEST_TOKEN_C") {
    Some(t) => t,
    None => "",
};

/// A plain object of `fields`.
fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (k, v) in fields {
        Reflect::set(&obj, &(*k).into(), v).unwrap();
    }
    obj.into()
}

/// `create()` options with the server's `url`.
fn options(fields: &[(&str, JsValue)]) -> JsValue {
    assert!(
        Reflect::has(&js_sys::global(), &"WebSocket".into()).unwrap(),
        "no global WebSocket: run Node 20 with --experimental-websocket"
    );
    let obj = object(fields);
    Reflect::set(&obj, &"url".into(), &URL.into()).unwrap();
    obj
}

async fn client(token: &str) -> JsClient {
    client_with(token, &[]).await
}

/// A connected client with more `create()` options.
async fn client_with(token: &str, more: &[(&str, JsValue)]) -> JsClient {
    let mut fields = vec![("token", JsValue::from(token))];
    fields.extend(more.iter().cloned());
    let created = JsFuture::from(JsClient::create(options(&fields)))
        .await
        .unwrap();
    let client = JsClient::try_from_js_value(created).unwrap();
    JsFuture::from(client.wait_for_state("connected"))
        .await
        .unwrap();
    client
}

fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &key.into()).unwrap()
}

/// The next payload of `event` as a future.
fn next(client: &JsClient, event: &str, accept: impl Fn(&JsValue) -> bool + 'static) -> JsFuture {
    let client_event = event.to_owned();
    let slot: Rc<RefCell<Option<Function>>> = Default::default();
    let off_slot = slot.clone();
    let mut resolve_fn: Option<Function> = None;
    let promise = Promise::new(&mut |resolve, _| resolve_fn = Some(resolve));
    let resolve = resolve_fn.unwrap();
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |payload: JsValue| {
        if accept(&payload) {
            let _ = resolve.call1(&JsValue::UNDEFINED, &payload);
            if let Some(off) = off_slot.borrow_mut().take() {
                let _ = off.call0(&JsValue::UNDEFINED);
            }
        }
    });
    let off = client
        .on(client_event, callback.into_js_value().unchecked_into())
        .unwrap();
    *slot.borrow_mut() = Some(off);
    JsFuture::from(promise)
}

/// Every payload of `event` that `pick` maps to a value, in order of arrival.
fn record(
    client: &JsClient,
    event: &str,
    pick: impl Fn(&JsValue) -> Option<String> + 'static,
) -> Rc<RefCell<Vec<String>>> {
    let seen: Rc<RefCell<Vec<String>>> = Default::default();
    let sink = seen.clone();
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |payload: JsValue| {
        sink.borrow_mut().extend(pick(&payload));
    });
    client
        .on(event.into(), callback.into_js_value().unchecked_into())
        .unwrap();
    seen
}

async fn send(client: &JsClient, conv: &str, text: &str) -> JsValue {
    JsFuture::from(client.send_message(conv.into(), text.into(), None))
        .await
        .unwrap()
}

#[wasm_bindgen]
extern "C" {
    /// The global `fetch` (browsers, Node ≥ 18).
    #[wasm_bindgen(js_name = fetch)]
    fn fetch_with_init(url: &str, init: &JsValue) -> Promise;
}

/// `"stop"`s or `"start"`s the server through the control port; a start
/// resolves once the server listens again (same port, same database).
async fn server(action: &str) {
    let init = object(&[("method", "POST".into())]);
    let res = JsFuture::from(fetch_with_init(&format!("{CONTROL}/{action}"), &init))
        .await
        .unwrap();
    assert_eq!(
        get(&res, "status").as_f64(),
        Some(200.0),
        "{action} the server"
    );
}

async fn direct(a: &JsClient, b_user: &str) -> String {
    let conv = JsFuture::from(a.start_direct(b_user)).await.unwrap();
    get(&conv, "id").as_string().unwrap()
}

#[wasm_bindgen_test]
async fn chat_typing_history_read_and_presence() {
    let a = client(TOKEN_A).await;
    let b = client(TOKEN_B).await;
    assert_eq!(a.state(), "connected");
    let conv = direct(&a, "wasm-b").await;
    JsFuture::from(b.subscribe(&conv)).await.unwrap();
    assert_eq!(b.subscription_state(&conv), "subscribed");

    let typing = next(&b, "typing", |t| get(t, "typing").is_truthy());
    JsFuture::from(a.typing(&conv)).await.unwrap();
    assert_eq!(get(&typing.await.unwrap(), "userId"), "wasm-a");

    // The tests run at once and share the direct conversation: match by text.
    let received = next(&b, "message", |m| get(m, "text") == "hi from wasm");
    let sent = JsFuture::from(a.send_message(conv.clone(), "hi from wasm".into(), None))
        .await
        .unwrap();
    let got = received.await.unwrap();
    assert_eq!(get(&got, "text"), "hi from wasm");
    assert_eq!(get(&got, "seq").as_f64(), get(&sent, "seq").as_f64());

    let page = JsFuture::from(b.history(&conv, None)).await.unwrap();
    let texts: Vec<String> = Array::from(&get(&page, "messages"))
        .iter()
        .map(|m| get(&m, "text").as_string().unwrap())
        .collect();
    assert!(texts.iter().any(|t| t == "hi from wasm"), "{texts:?}");

    let read = next(&a, "read", |r| get(r, "userId") == "wasm-b");
    let seq = get(&sent, "seq").as_f64().unwrap();
    JsFuture::from(b.mark_read(&conv, seq)).await.unwrap();
    assert_eq!(get(&read.await.unwrap(), "lastReadSeq").as_f64(), Some(seq));

    let presence = JsFuture::from(a.presence(vec!["wasm-b".into()]))
        .await
        .unwrap();
    assert_eq!(get(&Array::from(&presence).get(0), "status"), "online");
    a.shutdown();
    b.shutdown();
}

#[wasm_bindgen_test]
async fn errors_are_mkondo_errors_with_a_code() {
    let a = client(TOKEN_A).await;
    let err = JsFuture::from(a.history("no-such-conversation", None))
        .await
        .unwrap_err();
    assert!(err.is_instance_of::<js_sys::Error>());
    assert_eq!(get(&err, "name"), "MkondoError");
    let code = get(&err, "code").as_string().unwrap();
    assert!(code == "not_found" || code == "permission_denied", "{code}");
    assert_eq!(get(&err, "temporary"), false);

    let bad = JsFuture::from(a.mark_read("x", -1.0)).await.unwrap_err();
    assert_eq!(get(&bad, "code"), "invalid_argument");
    // Options of the wrong type are refused, not ignored.
    let wrong = [
        a.history("x", Some(object(&[("limit", "10".into())]))),
        a.conversations(Some(5.into())),
        a.create_group(object(&[("members", "wasm-b".into())])),
        a.send_message(
            "x".into(),
            "y".into(),
            Some(object(&[("replyTo", 1.5.into())])),
        ),
    ];
    for call in wrong {
        let e = JsFuture::from(call).await.unwrap_err();
        assert_eq!(
            get(&e, "code"),
            "invalid_argument",
            "{:?}",
            get(&e, "message")
        );
    }
    let misspelt = a
        .on("mesage".into(), Function::new_no_args(""))
        .unwrap_err();
    assert_eq!(get(&misspelt, "code"), "invalid_argument");
    let no_url = JsFuture::from(JsClient::create(Object::new().into()))
        .await
        .unwrap_err();
    assert_eq!(get(&no_url, "code"), "invalid_argument");
    a.shutdown();
}

#[wasm_bindgen_test]
async fn an_expired_token_is_refreshed_through_the_js_provider() {
    let calls = Rc::new(std::cell::Cell::new(0));
    let counted = calls.clone();
    let provider = Closure::<dyn FnMut() -> Promise>::new(move || {
        counted.set(counted.get() + 1);
        Promise::resolve(&JsValue::from_str(TOKEN_C))
    });
    let created = JsFuture::from(JsClient::create(options(&[
        ("token", TOKEN_C_EXPIRED.into()),
        ("tokenProvider", provider.into_js_value()),
    ])))
    .await
    .unwrap();
    let c = JsClient::try_from_js_value(created).unwrap();
    JsFuture::from(c.wait_for_state("connected")).await.unwrap();
    assert_eq!(
        calls.get(),
        1,
        "the provider is asked once, for the expired token"
    );
    assert_eq!(get(&c.user(), "id"), "wasm-c");
    c.shutdown();
}

#[wasm_bindgen_test]
async fn messages_missed_while_disconnected_are_recovered_on_reconnect() {
    let a = client(TOKEN_A).await;
    let b = client(TOKEN_B).await;
    let conv = direct(&a, "wasm-b").await;
    // b sees the conversation's latest seq first, so it resumes from there.
    let seen = next(&b, "message", |m| get(m, "text") == "before");
    JsFuture::from(a.send_message(conv.clone(), "before".into(), None))
        .await
        .unwrap();
    seen.await.unwrap();

    b.disconnect();
    JsFuture::from(b.wait_for_state("disconnected"))
        .await
        .unwrap();
    JsFuture::from(a.send_message(conv.clone(), "while away".into(), None))
        .await
        .unwrap();
    let recovered = next(&b, "message", |m| get(m, "text") == "while away");
    b.connect();
    let got = recovered.await.unwrap();
    assert_eq!(get(&got, "senderId"), "wasm-a");
    a.shutdown();
    b.shutdown();
}

/// How long `b` waits before each reconnect attempt in the restart test: long
/// enough for the server to come back and `a` to send while `b` is still away.
const AWAY_MS: f64 = 2000.0;

#[wasm_bindgen_test]
async fn after_a_server_restart_messages_sent_while_away_arrive_once_in_order() {
    let quick = [("minDelayMs", 50.0.into()), ("maxDelayMs", 200.0.into())];
    let a = client_with(TOKEN_A, &quick).await;
    let slow = [
        ("minDelayMs", AWAY_MS.into()),
        ("maxDelayMs", AWAY_MS.into()),
    ];
    let b = client_with(TOKEN_B, &slow).await;
    // A conversation of its own: the other tests (and the other run) share the direct one.
    let group = JsFuture::from(a.create_group(object(&[
        ("name", "restart".into()),
        ("members", Array::of1(&"wasm-b".into()).into()),
    ])))
    .await
    .unwrap();
    let conv = get(&group, "id").as_string().unwrap();
    // b has seen the conversation up to "before": it resumes from there.
    let seen = next(&b, "message", |m| get(m, "text") == "before");
    send(&a, &conv, "before").await;
    seen.await.unwrap();

    let states = record(&b, "state", |s| get(s, "new").as_string());
    let in_conv = conv.clone();
    let received = record(&b, "message", move |m| {
        let seq = get(m, "seq").as_f64()?;
        let text = get(m, "text").as_string()?;
        (get(m, "conversationId") == in_conv.as_str()).then(|| format!("{seq} {text}"))
    });

    server("stop").await;
    JsFuture::from(b.wait_for_state("connecting"))
        .await
        .unwrap();
    server("start").await;
    let mut sent = Vec::new();
    for text in ["missed 1", "missed 2", "missed 3"] {
        // Queued while a reconnects, then sent once.
        let m = send(&a, &conv, text).await;
        sent.push(format!("{} {text}", get(&m, "seq").as_f64().unwrap()));
    }
    assert_eq!(
        b.state(),
        "connecting",
        "b came back before the messages were sent: raise AWAY_MS for this machine"
    );

    JsFuture::from(b.wait_for_state("connected")).await.unwrap();
    // Sent after b is back, so it arrives after anything recovered; a duplicate
    // of a recovered message would arrive before it.
    let last = next(&b, "message", |m| get(m, "text") == "after");
    let m = send(&a, &conv, "after").await;
    sent.push(format!("{} after", get(&m, "seq").as_f64().unwrap()));
    last.await.unwrap();

    assert_eq!(
        *received.borrow(),
        sent,
        "each missed message once, in order"
    );
    let mut states = states.borrow().clone();
    states.dedup();
    assert_eq!(states, ["connecting", "connected"]);
    a.shutdown();
    b.shutdown();
}

/// The rejection's `code`.
async fn refused(call: Promise) -> String {
    let err = JsFuture::from(call).await.unwrap_err();
    get(&err, "code").as_string().unwrap()
}

#[wasm_bindgen_test]
async fn members_profiles_roles_and_groups_through_the_package() {
    let a = client_with(
        TOKEN_A,
        &[
            ("conversationsLimit", 5.into()),
            ("appState", "background".into()),
        ],
    )
    .await;
    let b = client(TOKEN_B).await;
    assert!(!a.session_id().is_empty());
    let group = JsFuture::from(a.create_group(object(&[
        ("name", "crew".into()),
        ("members", Array::of1(&"wasm-b".into()).into()),
    ])))
    .await
    .unwrap();
    let conv = get(&group, "id").as_string().unwrap();
    assert_eq!(get(&a.cached_conversation(&conv), "id"), conv.as_str());
    assert!(a.cached_conversation("no-such").is_null());

    // Members, a page at a time, with profiles.
    let first = JsFuture::from(a.members(&conv, Some(object(&[("limit", 1.into())]))))
        .await
        .unwrap();
    let items = Array::from(&get(&first, "items"));
    assert_eq!(items.length(), 1);
    assert_eq!(get(&get(&items.get(0), "user"), "id"), "wasm-a");
    assert_eq!(get(&items.get(0), "role"), "owner");
    let cursor = get(&first, "nextCursor");
    let second = JsFuture::from(b.members(&conv, Some(object(&[("cursor", cursor)]))))
        .await
        .unwrap();
    assert_eq!(
        get(&Array::from(&get(&second, "items")).get(0), "userId"),
        "wasm-b"
    );
    assert!(get(&second, "nextCursor").is_undefined(), "the last page");

    // Users by id: only those one shares a conversation with.
    let seen = JsFuture::from(b.users(vec!["wasm-a".into(), "nobody".into()]))
        .await
        .unwrap();
    let users = Array::from(&get(&seen, "users"));
    assert_eq!(users.length(), 1);
    assert_eq!(get(&users.get(0), "id"), "wasm-a");

    // One's own profile, and the cache follows.
    let me = JsFuture::from(a.update_profile(object(&[("name", "Wasm A".into())])))
        .await
        .unwrap();
    assert_eq!(get(&me, "name"), "Wasm A");
    assert_eq!(get(&a.user(), "name"), "Wasm A");

    // Group edits and roles, with their refusals.
    let rename = || object(&[("name", "crew!".into())]);
    assert_eq!(
        refused(b.update_conversation(&conv, rename())).await,
        "permission_denied"
    );
    assert_eq!(
        refused(a.set_role(&conv, "wasm-b", "boss")).await,
        "invalid_argument"
    );
    let made = JsFuture::from(a.set_role(&conv, "wasm-b", "admin"))
        .await
        .unwrap();
    assert_eq!(get(&made, "role"), "admin");
    let renamed = JsFuture::from(b.update_conversation(&conv, rename()))
        .await
        .unwrap();
    assert_eq!(get(&renamed, "name"), "crew!");
    assert_eq!(
        refused(a.search_users("wasm", None)).await,
        "permission_denied"
    );

    // The total unread count, from the server and from the cache.
    let before = JsFuture::from(b.unread_total())
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    send(&a, &conv, "count me").await;
    let after = JsFuture::from(b.unread_total())
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    assert_eq!(after, before + 1.0);
    assert!(b.total_unread() >= 0.0);

    // Deleting: an admin may not, the owner may.
    assert_eq!(
        refused(b.delete_conversation(&conv)).await,
        "permission_denied"
    );
    JsFuture::from(a.delete_conversation(&conv)).await.unwrap();
    assert_eq!(refused(b.members(&conv, None)).await, "not_found");
    a.shutdown();
    b.shutdown();
}
