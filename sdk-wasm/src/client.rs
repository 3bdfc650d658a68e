//! The `Client` class: a static async factory, one camelCase Promise method per
//! core call, and `on(event, fn)` listeners that return their own remover.

use std::{cell::RefCell, collections::HashMap, future::Future, rc::Rc, sync::Arc};

use js_sys::{Function, Promise};
use mkondo_sdk::{Client, ConnectionState, Event, Role};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::browser::{self, Hooks};
use crate::convert::{self, error, from_js, invalid, to_js};
use crate::options;

/// The event callbacks, by event name.
#[derive(Default)]
struct Listeners {
    next_id: u32,
    by_event: HashMap<String, Vec<(u32, Function)>>,
}

impl Listeners {
    fn dispatch(listeners: &RefCell<Listeners>, event: &Event) {
        let Some((name, payload)) = convert::event(event) else {
            return;
        };
        // Cloned first: a callback may add or remove listeners.
        let callbacks: Vec<Function> = listeners
            .borrow()
            .by_event
            .get(name)
            .map(|fns| fns.iter().map(|(_, f)| f.clone()).collect())
            .unwrap_or_default();
        for callback in callbacks {
            // A throwing callback must not stop the others (nor the client).
            if let Err(e) = callback.call1(&JsValue::UNDEFINED, &payload) {
                web_sys_log(&e);
            }
        }
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_sys_log(value: &JsValue);
}

/// A Mkondo client. Create it with `await Client.create({ url, tokenProvider })`.
#[wasm_bindgen(js_name = Client)]
pub struct JsClient {
    pub(crate) core: Client,
    listeners: Rc<RefCell<Listeners>>,
    hooks: RefCell<Option<Hooks>>,
}

fn seq(value: f64) -> Result<u64, JsValue> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 {
        Ok(value as u64)
    } else {
        Err(invalid("seq: a whole number ≥ 0"))
    }
}

fn rejected(e: JsValue) -> Promise {
    Promise::reject(&e)
}

/// The core's call as a Promise of its JavaScript value.
pub(crate) fn promise<T: 'static>(
    call: impl Future<Output = mkondo_sdk::Result<T>> + 'static,
    out: impl FnOnce(T) -> JsValue + 'static,
) -> Promise {
    // Boxed: one `future_to_promise` for every call, not one per call (the
    // package paid for each).
    let call: std::pin::Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>> =
        Box::pin(async move { call.await.map(out).map_err(|e| error(&e)) });
    future_to_promise(call)
}

pub(crate) fn json<T: Serialize>(value: T) -> JsValue {
    to_js(&value)
}

fn unit(_: ()) -> JsValue {
    JsValue::UNDEFINED
}

#[wasm_bindgen(js_class = Client)]
impl JsClient {
    /// Creates a client and (unless `connect: false`) starts connecting. Options:
    /// `url`, `token` or `tokenProvider` (`() => Promise<string>`), `transport`
    /// (`'json'` | `'protobuf'`), `minDelayMs`, `maxDelayMs`, `requestTimeoutMs`,
    /// `outboxLimit`, `connect`, `browserHooks`, `conversationsLimit`,
    /// `appState`, and the offline store: `storeName` (an IndexedDB database)
    /// with `storeUserId`. With a store the Promise resolves once the stored
    /// conversations and messages are in the cache, before any network.
    #[wasm_bindgen(unchecked_return_type = "Promise<Client>")]
    pub fn create(
        #[wasm_bindgen(unchecked_param_type = "import('./index.js').ClientOptions")]
        options: JsValue,
    ) -> Promise {
        let built = options::parse(&options).and_then(|mut opts| {
            if opts.browser_hooks && !opts.app_state_given {
                opts.config.app_state = browser::initial_app_state();
            }
            let listeners = Rc::new(RefCell::new(Listeners::default()));
            let sink = listeners.clone();
            // The core asks `Send + Sync` only off wasm; JavaScript is single-threaded.
            #[allow(clippy::arc_with_non_send_sync)]
            let listener: Arc<dyn mkondo_sdk::EventListener> =
                Arc::new(move |event: Event| Listeners::dispatch(&sink, &event));
            let core = Client::with_listener(opts.config, listener).map_err(|e| error(&e))?;
            let hooks = opts.browser_hooks.then(|| Hooks::install(&core)).flatten();
            Ok((
                JsClient {
                    core,
                    listeners,
                    hooks: RefCell::new(hooks),
                },
                opts.connect,
            ))
        });
        match built {
            Ok((client, connect)) => future_to_promise(async move {
                // With a store, the client answers from it before connecting.
                client.core.restored().await;
                if connect {
                    client.core.connect();
                }
                Ok(JsValue::from(client))
            }),
            Err(e) => rejected(e),
        }
    }

    /// Calls `callback(payload)` on every `event`; returns the function that
    /// removes it. Events: `state`, `message`, `messageUpdated`, `typing`,
    /// `read`, `presence`, `memberJoined`, `memberLeft`, `conversationUpdated`,
    /// `subscriptionState`, `notification`, `signal`, `gap`, `sent`, `error`; another
    /// name throws (a misspelt event would otherwise never fire).
    // Typed by hand in `npm/index.d.ts`: one signature per event and payload.
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: String, callback: Function) -> Result<Function, JsValue> {
        if !convert::EVENTS.contains(&event.as_str()) {
            return Err(invalid(format!(
                "event: one of {}, not '{event}'",
                convert::EVENTS.join(", ")
            )));
        }
        let id = {
            let mut l = self.listeners.borrow_mut();
            l.next_id += 1;
            let id = l.next_id;
            l.by_event
                .entry(event.clone())
                .or_default()
                .push((id, callback));
            id
        };
        let listeners = Rc::downgrade(&self.listeners);
        let remove = move || {
            if let Some(l) = listeners.upgrade() {
                if let Some(fns) = l.borrow_mut().by_event.get_mut(&event) {
                    fns.retain(|(i, _)| *i != id);
                }
            }
        };
        Ok(Closure::<dyn FnMut()>::new(remove)
            .into_js_value()
            .unchecked_into())
    }

    /// Removes a callback added with `on()`.
    #[wasm_bindgen(skip_typescript)]
    pub fn off(&self, event: String, callback: Function) {
        if let Some(fns) = self.listeners.borrow_mut().by_event.get_mut(&event) {
            fns.retain(|(_, f)| *f != callback);
        }
    }

    /// Starts connecting (and keeps the connection up). Idempotent.
    pub fn connect(&self) {
        self.core.connect();
    }

    /// Closes the connection and stops reconnecting. Idempotent.
    pub fn disconnect(&self) {
        self.core.disconnect();
    }

    /// Releases everything: no event is delivered afterwards.
    pub fn shutdown(&self) {
        if let Some(hooks) = self.hooks.borrow_mut().take() {
            hooks.remove();
        }
        self.core.shutdown();
    }

    #[wasm_bindgen(js_name = setNetworkAvailable)]
    pub fn set_network_available(&self, available: bool) {
        self.core.set_network_available(available);
    }

    /// `'foreground'` or `'background'`.
    #[wasm_bindgen(js_name = setAppState)]
    pub fn set_app_state(
        &self,
        #[wasm_bindgen(unchecked_param_type = "import('./index.js').AppState")] state: &str,
    ) -> Result<(), JsValue> {
        self.core.set_app_state(options::app_state_named(state)?);
        Ok(())
    }

    /// `'disconnected'`, `'connecting'` or `'connected'`.
    #[wasm_bindgen(getter, unchecked_return_type = "import('./index.js').ConnectionState")]
    pub fn state(&self) -> String {
        self.core.state().as_str().into()
    }

    /// Resolves once the connection state is `state`.
    #[wasm_bindgen(js_name = waitForState, unchecked_return_type = "Promise<void>")]
    pub fn wait_for_state(
        &self,
        #[wasm_bindgen(unchecked_param_type = "import('./index.js').ConnectionState")] state: &str,
    ) -> Promise {
        let wanted = match state {
            "disconnected" => ConnectionState::Disconnected,
            "connecting" => ConnectionState::Connecting,
            "connected" => ConnectionState::Connected,
            _ => {
                return rejected(invalid(
                    "state: 'disconnected', 'connecting' or 'connected'",
                ))
            }
        };
        let core = self.core.clone();
        promise(async move { core.wait_for_state(wanted).await }, unit)
    }

    /// The connected user, or `null`.
    #[wasm_bindgen(getter, unchecked_return_type = "import('./index.js').User | null")]
    pub fn user(&self) -> JsValue {
        self.core.user().map_or(JsValue::NULL, json)
    }

    /// The server's id of the current (or last) session; `''` before the first connect.
    #[wasm_bindgen(getter, js_name = sessionId)]
    pub fn session_id(&self) -> String {
        self.core.session_id()
    }

    /// The sum of the cached conversations' unread counts (no round trip;
    /// `unreadTotal()` asks the server about all of them).
    #[wasm_bindgen(getter, js_name = totalUnread)]
    pub fn total_unread(&self) -> f64 {
        self.core.total_unread() as f64
    }

    /// One known conversation, or `null` (no round trip).
    #[wasm_bindgen(
        js_name = cachedConversation,
        unchecked_return_type = "import('./index.js').Conversation | null"
    )]
    pub fn cached_conversation(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
    ) -> JsValue {
        self.core
            .cached_conversation(conversation_id)
            .map_or(JsValue::NULL, json)
    }

    /// The recent messages of a conversation the client holds (with an offline
    /// store: restored at start, then kept current), ascending by seq.
    #[wasm_bindgen(
        js_name = cachedMessages,
        unchecked_return_type = "import('./index.js').Message[]"
    )]
    pub fn cached_messages(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
    ) -> JsValue {
        json(self.core.cached_messages(conversation_id))
    }

    /// Known conversations, latest activity first, with unread counts (no round trip).
    #[wasm_bindgen(
        js_name = cachedConversations,
        unchecked_return_type = "import('./index.js').Conversation[]"
    )]
    pub fn cached_conversations(&self) -> JsValue {
        json(self.core.cached_conversations())
    }

    /// The last known presence of a user, or `null`.
    #[wasm_bindgen(
        js_name = cachedPresence,
        unchecked_return_type = "import('./index.js').Presence | null"
    )]
    pub fn cached_presence(&self, #[wasm_bindgen(js_name = userId)] user_id: &str) -> JsValue {
        self.core
            .cached_presence(user_id)
            .map_or(JsValue::NULL, json)
    }

    /// Who is typing in a conversation now.
    #[wasm_bindgen(js_name = typingUsers)]
    pub fn typing_users(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
    ) -> Vec<String> {
        self.core.typing_users(conversation_id)
    }

    /// `'unsubscribed'`, `'subscribing'` or `'subscribed'`.
    #[wasm_bindgen(
        js_name = subscriptionState,
        unchecked_return_type = "import('./index.js').SubscriptionState"
    )]
    pub fn subscription_state(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
    ) -> String {
        convert::subscription_state(self.core.subscription_state(conversation_id)).into()
    }

    /// Sends a text message (queued while offline, sent exactly once).
    #[wasm_bindgen(js_name = sendText, unchecked_return_type = "Promise<import('./index.js').Message>")]
    pub fn send_text(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        text: &str,
    ) -> Promise {
        promise(self.core.send_text(conversation_id, text), json)
    }

    /// Sends a message (queued while offline, sent exactly once). Options:
    /// `data` (an object), `clientId`, `replyTo`, `attachmentIds` (ids of
    /// uploads: the message waits for those still being sent).
    #[wasm_bindgen(js_name = sendMessage, unchecked_return_type = "Promise<import('./index.js').Message>")]
    pub fn send_message(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: String,
        text: String,
        #[wasm_bindgen(unchecked_optional_param_type = "import('./index.js').SendOptions")]
        options: Option<JsValue>,
    ) -> Promise {
        match options::new_message(conversation_id, text, options) {
            Ok(msg) => promise(self.core.send_message(msg), json),
            Err(e) => rejected(e),
        }
    }

    #[wasm_bindgen(js_name = editMessage, unchecked_return_type = "Promise<import('./index.js').Message>")]
    pub fn edit_message(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(js_name = seq)] seq_: f64,
        text: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "object")] data: Option<JsValue>,
    ) -> Promise {
        let (seq, data) = match (seq(seq_), from_js(&data.unwrap_or_default())) {
            (Ok(s), Ok(d)) => (s, d),
            (Err(e), _) | (_, Err(e)) => return rejected(e),
        };
        promise(
            self.core.edit_message(conversation_id, seq, text, data),
            json,
        )
    }

    #[wasm_bindgen(js_name = deleteMessage, unchecked_return_type = "Promise<import('./index.js').Message>")]
    pub fn delete_message(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(js_name = seq)] seq_: f64,
    ) -> Promise {
        match seq(seq_) {
            Ok(s) => promise(self.core.delete_message(conversation_id, s), json),
            Err(e) => rejected(e),
        }
    }

    /// Adds a reaction (`add` defaults to `true`; `false` removes it).
    #[wasm_bindgen(unchecked_return_type = "Promise<import('./index.js').Message>")]
    pub fn react(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(js_name = seq)] seq_: f64,
        emoji: &str,
        add: Option<bool>,
    ) -> Promise {
        match seq(seq_) {
            Ok(s) => promise(
                self.core
                    .react(conversation_id, s, emoji, add.unwrap_or(true)),
                json,
            ),
            Err(e) => rejected(e),
        }
    }

    /// A page of messages, ascending by seq. Options: `before`, `after`, `limit`.
    #[wasm_bindgen(unchecked_return_type = "Promise<import('./index.js').HistoryResult>")]
    pub fn history(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "import('./index.js').HistoryOptions")]
        options: Option<JsValue>,
    ) -> Promise {
        match options::history_query(options) {
            Ok(query) => promise(self.core.history(conversation_id, query), json),
            Err(e) => rejected(e),
        }
    }

    /// A page of the user's conversations. Options: `cursor`, `limit`.
    #[wasm_bindgen(unchecked_return_type = "Promise<import('./index.js').ConversationsResult>")]
    pub fn conversations(
        &self,
        #[wasm_bindgen(
            unchecked_optional_param_type = "import('./index.js').ConversationsOptions"
        )]
        options: Option<JsValue>,
    ) -> Promise {
        match options::page(options, "conversations") {
            Ok((cursor, limit)) => promise(self.core.conversations(cursor.as_deref(), limit), json),
            Err(e) => rejected(e),
        }
    }

    /// Options: `id`, `name`, `iconUrl`, `data`, `members` (the other members).
    #[wasm_bindgen(js_name = createGroup, unchecked_return_type = "Promise<import('./index.js').Conversation>")]
    pub fn create_group(
        &self,
        #[wasm_bindgen(unchecked_param_type = "import('./index.js').NewGroup")] group: JsValue,
    ) -> Promise {
        match options::new_group(&group) {
            Ok(group) => promise(self.core.create_group(group), json),
            Err(e) => rejected(e),
        }
    }

    #[wasm_bindgen(js_name = startDirect, unchecked_return_type = "Promise<import('./index.js').Conversation>")]
    pub fn start_direct(&self, #[wasm_bindgen(js_name = userId)] user_id: &str) -> Promise {
        promise(self.core.start_direct(user_id), json)
    }

    #[wasm_bindgen(js_name = addMembers, unchecked_return_type = "Promise<import('./index.js').Conversation>")]
    pub fn add_members(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(js_name = userIds)] user_ids: Vec<String>,
    ) -> Promise {
        let ids: Vec<&str> = user_ids.iter().map(String::as_str).collect();
        promise(self.core.add_members(conversation_id, &ids), json)
    }

    #[wasm_bindgen(js_name = removeMember, unchecked_return_type = "Promise<void>")]
    pub fn remove_member(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
    ) -> Promise {
        promise(self.core.remove_member(conversation_id, user_id), unit)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn leave(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
    ) -> Promise {
        promise(self.core.leave(conversation_id), unit)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn hide(&self, #[wasm_bindgen(js_name = conversationId)] conversation_id: &str) -> Promise {
        promise(self.core.hide(conversation_id), unit)
    }

    #[wasm_bindgen(js_name = markRead, unchecked_return_type = "Promise<import('./index.js').ReadResult>")]
    pub fn mark_read(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(js_name = seq)] seq_: f64,
    ) -> Promise {
        match seq(seq_) {
            Ok(s) => promise(self.core.mark_read(conversation_id, s), json),
            Err(e) => rejected(e),
        }
    }

    /// Says the user is typing (renew every few seconds while they are).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn typing(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
    ) -> Promise {
        promise(self.core.typing(conversation_id), unit)
    }

    #[wasm_bindgen(js_name = typingStopped, unchecked_return_type = "Promise<void>")]
    pub fn typing_stopped(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
    ) -> Promise {
        promise(self.core.typing_stopped(conversation_id), unit)
    }

    /// Typing and members' presence of a conversation (kept across reconnects).
    #[wasm_bindgen(unchecked_return_type = "Promise<import('./index.js').SubscribeResult>")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
    ) -> Promise {
        promise(self.core.subscribe(conversation_id), json)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn unsubscribe(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
    ) -> Promise {
        promise(self.core.unsubscribe(conversation_id), unit)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<import('./index.js').Presence[]>")]
    pub fn presence(&self, #[wasm_bindgen(js_name = userIds)] user_ids: Vec<String>) -> Promise {
        let ids: Vec<&str> = user_ids.iter().map(String::as_str).collect();
        promise(self.core.presence(&ids), json)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn block(&self, #[wasm_bindgen(js_name = userId)] user_id: &str) -> Promise {
        promise(self.core.block(user_id), unit)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn unblock(&self, #[wasm_bindgen(js_name = userId)] user_id: &str) -> Promise {
        promise(self.core.unblock(user_id), unit)
    }

    /// Relays an opaque payload (e.g. WebRTC signalling) to one member.
    #[wasm_bindgen(js_name = sendSignal, unchecked_return_type = "Promise<void>")]
    pub fn send_signal(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(js_name = toUserId)] to_user_id: &str,
        payload: &str,
    ) -> Promise {
        promise(
            self.core.send_signal(conversation_id, to_user_id, payload),
            unit,
        )
    }

    /// A call invitation: relayed live like `sendSignal`, and as a VoIP push
    /// to the recipient's PushKit devices when none of their sessions is in
    /// the foreground.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn ring(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(js_name = toUserId)] to_user_id: &str,
        payload: &str,
    ) -> Promise {
        promise(self.core.ring(conversation_id, to_user_id, payload), unit)
    }

    #[wasm_bindgen(js_name = ackNotification, unchecked_return_type = "Promise<void>")]
    pub fn ack_notification(
        &self,
        #[wasm_bindgen(js_name = notificationId)] notification_id: &str,
    ) -> Promise {
        promise(self.core.ack_notification(notification_id), unit)
    }

    /// Registers this device for push: a `PushSubscription` (or its
    /// `toJSON()`), or `{provider: 'fcm' | 'apns' | 'apns_voip', token, topic?,
    /// sandbox?}`. Call it again on `pushsubscriptionchange`.
    #[wasm_bindgen(js_name = registerDevice, unchecked_return_type = "Promise<import('./index.js').Device>")]
    pub fn register_device(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "PushSubscription | import('./index.js').PushSubscriptionJSON | import('./index.js').PushToken"
        )]
        credential: JsValue,
    ) -> Promise {
        match from_js(&credential).and_then(|v| convert::push_credential(v.as_ref())) {
            Ok(c) => promise(self.core.register_device(&c), json),
            Err(e) => rejected(e),
        }
    }

    /// Removes a device by its id (`dev_…`) or its credential (the token, or
    /// the subscription's `endpoint`).
    #[wasm_bindgen(js_name = unregisterDevice, unchecked_return_type = "Promise<void>")]
    pub fn unregister_device(&self, device: &str) -> Promise {
        promise(self.core.unregister_device(device), unit)
    }

    /// The user's push devices, most recently registered first.
    #[wasm_bindgen(unchecked_return_type = "Promise<import('./index.js').Device[]>")]
    pub fn devices(&self) -> Promise {
        promise(self.core.devices(), json)
    }

    /// The app's VAPID public key (base64url) for
    /// `registration.pushManager.subscribe({userVisibleOnly: true,
    /// applicationServerKey})`, or `null` when the app has no Web Push.
    #[wasm_bindgen(js_name = webPushKey, unchecked_return_type = "Promise<string | null>")]
    pub fn web_push_key(&self) -> Promise {
        promise(self.core.web_push_key(), |key| {
            key.map_or(JsValue::NULL, |k| JsValue::from_str(&k))
        })
    }

    /// Mutes (or unmutes) a conversation: no push, unread still counted.
    #[wasm_bindgen(unchecked_return_type = "Promise<import('./index.js').Conversation>")]
    pub fn mute(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        muted: bool,
    ) -> Promise {
        promise(self.core.mute(conversation_id, muted), json)
    }

    /// "Do not disturb until" a `Date` or a time in ms (at most a year ahead);
    /// `null` turns it off. Resolves with the setting now (ms, or `null`).
    #[wasm_bindgen(js_name = setDoNotDisturb, unchecked_return_type = "Promise<number | null>")]
    pub fn set_do_not_disturb(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Date | number | null")] until: JsValue,
    ) -> Promise {
        let until = if until.is_null() || until.is_undefined() {
            None
        } else if let Some(date) = until.dyn_ref::<js_sys::Date>() {
            Some(date.get_time())
        } else if let Some(ms) = until.as_f64() {
            Some(ms)
        } else {
            return rejected(invalid("until: a Date, a time in ms, or null"));
        };
        if until.is_some_and(|ms| !ms.is_finite() || ms.fract() != 0.0) {
            return rejected(invalid("until: a whole number of ms"));
        }
        promise(
            self.core.set_do_not_disturb(until.map(|ms| ms as i64)),
            |until| until.map_or(JsValue::NULL, |ms| JsValue::from_f64(ms as f64)),
        )
    }

    /// Unregisters every device registered through this client, then shuts it
    /// down (even when an unregister fails, which rejects the promise).
    #[wasm_bindgen(js_name = signOut, unchecked_return_type = "Promise<void>")]
    pub fn sign_out(&self) -> Promise {
        let core = self.core.clone();
        promise(async move { core.sign_out().await }, unit)
    }

    /// A page of a conversation's members, each with its profile (`user`).
    /// Options: `cursor`, `limit`.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<import('./index.js').Page<import('./index.js').Member>>"
    )]
    pub fn members(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "import('./index.js').PageOptions")]
        options: Option<JsValue>,
    ) -> Promise {
        match options::page(options, "members") {
            Ok((cursor, limit)) => promise(
                self.core.members(conversation_id, cursor.as_deref(), limit),
                convert::page,
            ),
            Err(e) => rejected(e),
        }
    }

    /// Profiles and presence of users this user may see (themself and people
    /// sharing a conversation); others are left out.
    #[wasm_bindgen(unchecked_return_type = "Promise<import('./index.js').UsersResult>")]
    pub fn users(&self, #[wasm_bindgen(js_name = userIds)] user_ids: Vec<String>) -> Promise {
        let ids: Vec<&str> = user_ids.iter().map(String::as_str).collect();
        promise(self.core.users(&ids), json)
    }

    /// The app's user directory (when the app turned it on). Options: `limit`.
    #[wasm_bindgen(js_name = searchUsers, unchecked_return_type = "Promise<import('./index.js').User[]>")]
    pub fn search_users(
        &self,
        query: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "{ limit?: number }")] options: Option<
            JsValue,
        >,
    ) -> Promise {
        match options::search_limit(options) {
            Ok(limit) => promise(self.core.search_users(query, limit), json),
            Err(e) => rejected(e),
        }
    }

    /// Changes the user's own profile: `name`, `avatarUrl`, `data`.
    #[wasm_bindgen(js_name = updateProfile, unchecked_return_type = "Promise<import('./index.js').User>")]
    pub fn update_profile(
        &self,
        #[wasm_bindgen(unchecked_param_type = "import('./index.js').ProfileUpdate")]
        update: JsValue,
    ) -> Promise {
        match options::profile_update(&update) {
            Ok(update) => promise(self.core.update_profile(update), json),
            Err(e) => rejected(e),
        }
    }

    /// Changes a group's `name`, `iconUrl` or `data` (owners and admins).
    #[wasm_bindgen(js_name = updateConversation, unchecked_return_type = "Promise<import('./index.js').Conversation>")]
    pub fn update_conversation(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(unchecked_param_type = "import('./index.js').ConversationUpdate")]
        update: JsValue,
    ) -> Promise {
        match options::conversation_update(&update) {
            Ok(update) => promise(self.core.update_conversation(conversation_id, update), json),
            Err(e) => rejected(e),
        }
    }

    /// Sets a member's role: `'owner'`, `'admin'` or `'member'`.
    #[wasm_bindgen(js_name = setRole, unchecked_return_type = "Promise<import('./index.js').Member>")]
    pub fn set_role(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        #[wasm_bindgen(unchecked_param_type = "import('./index.js').Role")] role: &str,
    ) -> Promise {
        match Role::parse(role) {
            Some(role) => promise(self.core.set_role(conversation_id, user_id, role), json),
            None => rejected(invalid("role: 'owner', 'admin' or 'member'")),
        }
    }

    /// Deletes a group for everyone (its owners only).
    #[wasm_bindgen(js_name = deleteConversation, unchecked_return_type = "Promise<void>")]
    pub fn delete_conversation(
        &self,
        #[wasm_bindgen(js_name = conversationId)] conversation_id: &str,
    ) -> Promise {
        promise(self.core.delete_conversation(conversation_id), unit)
    }

    /// A page of the users this user blocks. Options: `cursor`, `limit`.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<import('./index.js').Page<import('./index.js').Block>>"
    )]
    pub fn blocks(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "import('./index.js').PageOptions")]
        options: Option<JsValue>,
    ) -> Promise {
        match options::page(options, "blocks") {
            Ok((cursor, limit)) => {
                promise(self.core.blocks(cursor.as_deref(), limit), convert::page)
            }
            Err(e) => rejected(e),
        }
    }

    /// The user's total unread count over all their conversations, from the server.
    #[wasm_bindgen(js_name = unreadTotal, unchecked_return_type = "Promise<number>")]
    pub fn unread_total(&self) -> Promise {
        promise(self.core.unread_total(), |n| JsValue::from_f64(n as f64))
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn ping(&self) -> Promise {
        promise(self.core.ping(), unit)
    }
}

impl Drop for JsClient {
    fn drop(&mut self) {
        // `free()` from JavaScript: release like `shutdown()`.
        self.shutdown();
    }
}
