//! The package's Rust side as JavaScript sees it, in headless Chromium against a
//! real server: `web/tests/wasm.sh` starts `mkondo dev`, mints tokens with the
//! CLI and passes them in at compile time (wasm cannot listen nor run the CLI).
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Function, Object, Promise, Reflect};
use mkondo_wasm::JsClient;
use wasm_bindgen::{convert::TryFromJsValue, prelude::*, JsCast};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const URL: &str = match option_env!("MKONDO_TEST_URL") {
    Some(u) => u,
    None => "http://127.0.0.1:8080",
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

fn options(fields: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    Reflect::set(&obj, &"url".into(), &URL.into()).unwrap();
    for (k, v) in fields {
        Reflect::set(&obj, &(*k).into(), v).unwrap();
    }
    obj.into()
}

async fn client(token: &str) -> JsClient {
    let created = JsFuture::from(JsClient::create(options(&[("token", token.into())])))
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
    let slot: std::rc::Rc<std::cell::RefCell<Option<Function>>> = Default::default();
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
    let off = client.on(client_event, callback.into_js_value().unchecked_into());
    *slot.borrow_mut() = Some(off);
    JsFuture::from(promise)
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
    let sent =
        JsFuture::from(a.send_message(conv.clone(), "hi from wasm".into(), JsValue::UNDEFINED))
            .await
            .unwrap();
    let got = received.await.unwrap();
    assert_eq!(get(&got, "text"), "hi from wasm");
    assert_eq!(get(&got, "seq").as_f64(), get(&sent, "seq").as_f64());

    let page = JsFuture::from(b.history(&conv, JsValue::UNDEFINED))
        .await
        .unwrap();
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
    let err = JsFuture::from(a.history("no-such-conversation", JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert!(err.is_instance_of::<js_sys::Error>());
    assert_eq!(get(&err, "name"), "MkondoError");
    let code = get(&err, "code").as_string().unwrap();
    assert!(code == "not_found" || code == "permission_denied", "{code}");
    assert_eq!(get(&err, "temporary"), false);

    let bad = JsFuture::from(a.mark_read("x", -1.0)).await.unwrap_err();
    assert_eq!(get(&bad, "code"), "invalid_argument");
    let no_url = JsFuture::from(JsClient::create(Object::new().into()))
        .await
        .unwrap_err();
    assert_eq!(get(&no_url, "code"), "invalid_argument");
    a.shutdown();
}

#[wasm_bindgen_test]
async fn an_expired_token_is_refreshed_through_the_js_provider() {
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
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
    JsFuture::from(a.send_message(conv.clone(), "before".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    seen.await.unwrap();

    b.disconnect();
    JsFuture::from(b.wait_for_state("disconnected"))
        .await
        .unwrap();
    JsFuture::from(a.send_message(conv.clone(), "while away".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    let recovered = next(&b, "message", |m| get(m, "text") == "while away");
    b.connect();
    let got = recovered.await.unwrap();
    assert_eq!(get(&got, "senderId"), "wasm-a");
    a.shutdown();
    b.shutdown();
}
