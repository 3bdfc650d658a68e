//! The `Client` object apps hold, the two foreign traits they implement (event
//! listener, token provider), the listeners it delivers to, and the
//! cancel-on-drop `Subscription` handle.
//!
//! Each method hands its call to the core at once (calls leave in the order
//! they were made) and converts the result; nothing here keeps state of its own.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mkondo_sdk::store::sqlite::SqliteStore;
use mkondo_sdk::{Config, HistoryQuery};

use crate::error::{MkondoError, TokenError};
use crate::runtime;
use crate::types::*;

type Result<T, E = MkondoError> = std::result::Result<T, E>;

/// Receives every event, one at a time and in order, on a thread of the SDK's
/// runtime (not the UI thread: hop to the main thread before touching views).
/// Return quickly: the next event waits for this one.
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    fn on_event(&self, event: ClientEvent);
}

/// Fetches a user token from the app's backend. Called on a background thread,
/// only when a token is missing or expiring, never twice at once; blocking here
/// is fine.
#[uniffi::export(with_foreign)]
pub trait TokenProvider: Send + Sync {
    fn fetch_token(&self) -> Result<String, TokenError>;
}

/// The app's listeners, by id: each event goes to every one, in the order
/// they were added.
#[derive(Default)]
struct Listeners {
    next_id: u64,
    list: Vec<(u64, Arc<dyn EventListener>)>,
}

#[derive(Clone, Default)]
struct Fanout(Arc<Mutex<Listeners>>);

impl Fanout {
    fn add(&self, listener: Arc<dyn EventListener>) -> u64 {
        let mut l = self.0.lock().unwrap();
        let id = l.next_id;
        l.next_id += 1;
        l.list.push((id, listener));
        id
    }

    fn remove(&self, id: u64) -> bool {
        let mut l = self.0.lock().unwrap();
        let before = l.list.len();
        l.list.retain(|(i, _)| *i != id);
        l.list.len() != before
    }
}

impl mkondo_sdk::EventListener for Fanout {
    fn on_event(&self, event: mkondo_sdk::Event) {
        let Some(e) = ClientEvent::from_core(event) else {
            return;
        };
        // Copied first: a listener may add or remove listeners.
        let listeners: Vec<Arc<dyn EventListener>> = self
            .0
            .lock()
            .unwrap()
            .list
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        for listener in listeners {
            listener.on_event(e.clone());
        }
    }
}

fn parse_json(text: Option<String>) -> Result<Option<serde_json::Value>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| MkondoError::invalid(format!("data is not JSON: {e}")))
    })
    .transpose()
}

/// A Mkondo client: one user's connection, kept up across network changes.
#[derive(uniffi::Object)]
pub struct Client {
    pub(crate) inner: mkondo_sdk::Client,
    listeners: Fanout,
}

#[uniffi::export(async_runtime = "tokio")]
impl Client {
    /// A disconnected client: call `connect()`. Give `config.token`, a
    /// `token_provider`, or both. `listener`, when given, is the first
    /// listener (id 0; `add_listener` adds more).
    #[uniffi::constructor]
    pub fn new(
        config: ClientConfig,
        listener: Option<Arc<dyn EventListener>>,
        token_provider: Option<Arc<dyn TokenProvider>>,
    ) -> Result<Arc<Self>> {
        let mut core = Config::new(
            config.url,
            config.transport.unwrap_or(Transport::Grpc).into(),
        )
        .with_reconnect_delays(
            Duration::from_millis(config.min_reconnect_delay_ms),
            Duration::from_millis(config.max_reconnect_delay_ms),
        )
        .with_request_timeout(Duration::from_millis(config.request_timeout_ms))
        .with_outbox_limit(config.outbox_limit as usize);
        core.token = config.token;
        core.conversations_limit = config.conversations_limit;
        core.extra_ca_pem = config.extra_ca_pem;
        let has_store = config.store_path.is_some();
        match (config.store_path, config.store_user_id) {
            (Some(path), Some(user)) => {
                let store = SqliteStore::open(&path)
                    .map_err(|e| MkondoError::invalid(format!("store_path {path}: {e}")))?;
                core = core.with_store(Arc::new(store), user);
            }
            (None, None) => {}
            _ => {
                return Err(MkondoError::invalid(
                    "give store_path and store_user_id together",
                ))
            }
        }
        if config.start_in_background {
            core.app_state = mkondo_sdk::AppState::Background;
        }
        if let Some(provider) = token_provider {
            core = core.with_token_provider(move || {
                let provider = provider.clone();
                // Foreign code may block (an HTTP call): keep it off the workers.
                let task = runtime().spawn_blocking(move || provider.fetch_token());
                async move {
                    match task.await {
                        Ok(result) => result.map_err(Into::into),
                        Err(e) => Err(mkondo_sdk::TokenError::Failed(e.to_string())),
                    }
                }
            });
        }
        let listeners = Fanout::default();
        let first = listener.map(|l| listeners.add(l));
        debug_assert!(first.is_none_or(|id| id == 0));
        let inner = {
            let _entered = runtime().enter();
            mkondo_sdk::Client::with_listener(core, Arc::new(listeners.clone()))?
        };
        // With a store, the client answers from it once this returns (the
        // constructor is called on an app thread, never on the SDK's own).
        if has_store {
            runtime().block_on(inner.restored());
        }
        Ok(Arc::new(Self { inner, listeners }))
    }

    /// Adds a listener: every later event reaches it too, after the listeners
    /// added before it. Returns its id, for `remove_listener`.
    pub fn add_listener(&self, listener: Arc<dyn EventListener>) -> u64 {
        self.listeners.add(listener)
    }

    /// Removes a listener by the id `add_listener` gave (0: the constructor's);
    /// false when there was none. Events already being delivered may still
    /// reach it.
    pub fn remove_listener(&self, id: u64) -> bool {
        self.listeners.remove(id)
    }

    /// Starts connecting and keeps the connection up. Idempotent.
    pub fn connect(&self) {
        self.inner.connect();
    }

    /// Closes the connection and stops reconnecting; queued messages stay queued.
    pub fn disconnect(&self) {
        self.inner.disconnect();
    }

    /// Releases the client: no event after this returns; pending calls fail
    /// with `Cancelled`.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Lifecycle hook: the network came back (`true`: retry now) or went away.
    pub fn set_network_available(&self, available: bool) {
        self.inner.set_network_available(available);
    }

    /// Lifecycle hook: foreground (retry now; `online`) or background (`away`).
    pub fn set_app_state(&self, state: AppState) {
        self.inner.set_app_state(state.into());
    }

    pub fn state(&self) -> ConnectionState {
        self.inner.state().into()
    }

    /// Waits until the connection is in `state`, at most `timeout_ms`.
    pub async fn wait_for_state(&self, state: ConnectionState, timeout_ms: u64) -> Result<()> {
        let wait = self.inner.wait_for_state(state.into());
        match tokio::time::timeout(Duration::from_millis(timeout_ms), wait).await {
            Ok(r) => r.map_err(Into::into),
            Err(_) => Err(mkondo_sdk::Error::Timeout(Duration::from_millis(timeout_ms)).into()),
        }
    }

    /// The connected user (from the last connect, or the last profile update).
    pub fn user(&self) -> Option<User> {
        self.inner.user().map(Into::into)
    }

    /// The server's id of the current (or last) session; empty before the
    /// first connect.
    pub fn session_id(&self) -> String {
        self.inner.session_id()
    }

    /// The newest messages of a conversation the client keeps (with an
    /// offline store: restored at start), ascending by seq.
    pub fn cached_messages(&self, conversation_id: String) -> Vec<Message> {
        self.inner
            .cached_messages(&conversation_id)
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// One known conversation from the cache.
    pub fn cached_conversation(&self, conversation_id: String) -> Option<Conversation> {
        self.inner
            .cached_conversation(&conversation_id)
            .map(Into::into)
    }

    /// The sum of the cached conversations' unread counts (no round trip;
    /// `unread_total()` asks the server about all of them).
    pub fn total_unread(&self) -> u64 {
        self.inner.total_unread()
    }

    /// Known conversations from the cache, latest activity first.
    pub fn cached_conversations(&self) -> Vec<Conversation> {
        self.inner
            .cached_conversations()
            .into_iter()
            .map(Into::into)
            .collect()
    }

    pub fn cached_presence(&self, user_id: String) -> Option<Presence> {
        self.inner.cached_presence(&user_id).map(Into::into)
    }

    /// Who is typing in a conversation now.
    pub fn typing_users(&self, conversation_id: String) -> Vec<String> {
        self.inner.typing_users(&conversation_id)
    }

    pub fn subscription_state(&self, conversation_id: String) -> SubscriptionState {
        self.inner.subscription_state(&conversation_id).into()
    }

    /// Sends a text message (queued while offline, sent exactly once).
    pub async fn send_text(&self, conversation_id: String, text: String) -> Result<Message> {
        Ok(self.inner.send_text(&conversation_id, &text).await?.into())
    }

    pub async fn send_message(&self, message: NewMessage) -> Result<Message> {
        let msg = mkondo_sdk::NewMessage {
            conversation_id: message.conversation_id,
            text: message.text,
            data: parse_json(message.data)?,
            client_id: message.client_id,
            reply_to: message.reply_to,
            attachment_ids: message.attachment_ids,
        };
        Ok(self.inner.send_message(msg).await?.into())
    }

    /// `data`: a JSON object as text, or `None` to keep it.
    pub async fn edit_message(
        &self,
        conversation_id: String,
        seq: u64,
        text: String,
        data: Option<String>,
    ) -> Result<Message> {
        let data = parse_json(data)?;
        let call = self.inner.edit_message(&conversation_id, seq, &text, data);
        Ok(call.await?.into())
    }

    pub async fn delete_message(&self, conversation_id: String, seq: u64) -> Result<Message> {
        Ok(self
            .inner
            .delete_message(&conversation_id, seq)
            .await?
            .into())
    }

    /// Adds (`add = true`) or removes a reaction.
    pub async fn react(
        &self,
        conversation_id: String,
        seq: u64,
        emoji: String,
        add: bool,
    ) -> Result<Message> {
        let call = self.inner.react(&conversation_id, seq, &emoji, add);
        Ok(call.await?.into())
    }

    /// A page of messages (ascending by seq) before or after a seq.
    pub async fn history(
        &self,
        conversation_id: String,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage> {
        let query = HistoryQuery {
            before,
            after,
            limit,
        };
        let page = self.inner.history(&conversation_id, query).await?;
        Ok(HistoryPage {
            messages: page.messages.into_iter().map(Into::into).collect(),
            more: page.more,
        })
    }

    pub async fn conversations(
        &self,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<ConversationsPage> {
        let page = self.inner.conversations(cursor.as_deref(), limit).await?;
        Ok(ConversationsPage {
            conversations: page.conversations.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        })
    }

    pub async fn create_group(&self, group: NewGroup) -> Result<Conversation> {
        let group = mkondo_sdk::NewGroup {
            name: group.name,
            icon_url: group.icon_url,
            data: parse_json(group.data)?,
            members: group.members,
        };
        Ok(self.inner.create_group(group).await?.into())
    }

    /// The direct conversation with `user_id` (the same one every time).
    pub async fn start_direct(&self, user_id: String) -> Result<Conversation> {
        Ok(self.inner.start_direct(&user_id).await?.into())
    }

    pub async fn add_members(
        &self,
        conversation_id: String,
        user_ids: Vec<String>,
    ) -> Result<Conversation> {
        let ids: Vec<&str> = user_ids.iter().map(String::as_str).collect();
        let call = self.inner.add_members(&conversation_id, &ids);
        Ok(call.await?.into())
    }

    pub async fn remove_member(&self, conversation_id: String, user_id: String) -> Result<()> {
        Ok(self.inner.remove_member(&conversation_id, &user_id).await?)
    }

    pub async fn leave(&self, conversation_id: String) -> Result<()> {
        Ok(self.inner.leave(&conversation_id).await?)
    }

    /// "Delete chat" for this user: history up to now is hidden from them.
    pub async fn hide(&self, conversation_id: String) -> Result<()> {
        Ok(self.inner.hide(&conversation_id).await?)
    }

    /// Marks everything up to `seq` read, on every device of the user.
    pub async fn mark_read(&self, conversation_id: String, seq: u64) -> Result<ReadResult> {
        let r = self.inner.mark_read(&conversation_id, seq).await?;
        Ok(ReadResult {
            last_read_seq: r.last_read_seq,
            unread_count: r.unread_count,
        })
    }

    /// Call on every keystroke; at most one `typing` per 3 s leaves.
    pub async fn typing(&self, conversation_id: String) -> Result<()> {
        Ok(self.inner.typing(&conversation_id).await?)
    }

    /// The composer was cleared.
    pub async fn typing_stopped(&self, conversation_id: String) -> Result<()> {
        Ok(self.inner.typing_stopped(&conversation_id).await?)
    }

    /// Typing and members' presence of a conversation, kept across reconnects
    /// until the returned handle is cancelled or dropped.
    pub async fn subscribe(&self, conversation_id: String) -> Result<Arc<Subscription>> {
        // The handle exists before the await, so a cancelled future unsubscribes too.
        let handle = Subscription {
            client: self.inner.clone(),
            conversation_id: conversation_id.clone(),
            snapshot: std::sync::Mutex::new(None),
        };
        let snapshot = self.inner.subscribe(&conversation_id).await?;
        *handle.snapshot.lock().unwrap() = Some(snapshot.into());
        Ok(Arc::new(handle))
    }

    /// Ends a subscription (as cancelling or dropping its handle does).
    pub async fn unsubscribe(&self, conversation_id: String) -> Result<()> {
        Ok(self.inner.unsubscribe(&conversation_id).await?)
    }

    /// The presence of these users, as far as this user may see it.
    pub async fn presence(&self, user_ids: Vec<String>) -> Result<Vec<Presence>> {
        let ids: Vec<&str> = user_ids.iter().map(String::as_str).collect();
        let list = self.inner.presence(&ids).await?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    pub async fn block(&self, user_id: String) -> Result<()> {
        Ok(self.inner.block(&user_id).await?)
    }

    pub async fn unblock(&self, user_id: String) -> Result<()> {
        Ok(self.inner.unblock(&user_id).await?)
    }

    /// Relays an opaque payload (WebRTC set-up) to one member, live only.
    pub async fn send_signal(
        &self,
        conversation_id: String,
        to_user_id: String,
        payload: String,
    ) -> Result<()> {
        let call = self
            .inner
            .send_signal(&conversation_id, &to_user_id, &payload);
        Ok(call.await?)
    }

    /// A call invitation: relayed live like `send_signal`, and as a VoIP push
    /// to the recipient's PushKit devices when none of their sessions is in
    /// the foreground.
    pub async fn ring(
        &self,
        conversation_id: String,
        to_user_id: String,
        payload: String,
    ) -> Result<()> {
        let call = self.inner.ring(&conversation_id, &to_user_id, &payload);
        Ok(call.await?)
    }

    pub async fn ack_notification(&self, notification_id: String) -> Result<()> {
        Ok(self.inner.ack_notification(&notification_id).await?)
    }

    /// Registers this device's push credential for the user; call it again
    /// whenever the platform hands over a new one (token rotation).
    pub async fn register_device(&self, credential: PushCredential) -> Result<Device> {
        let device = self.inner.register_device(&credential.into()).await?;
        Ok(device.into())
    }

    /// Removes a device by its id (`dev_…`) or its credential (the token).
    pub async fn unregister_device(&self, device: String) -> Result<()> {
        Ok(self.inner.unregister_device(&device).await?)
    }

    /// The user's push devices, most recently registered first.
    pub async fn devices(&self) -> Result<Vec<Device>> {
        let list = self.inner.devices().await?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// The app's VAPID public key (base64url), `None` without Web Push.
    pub async fn web_push_key(&self) -> Result<Option<String>> {
        Ok(self.inner.web_push_key().await?)
    }

    /// Mutes (or unmutes) a conversation: no push for it, unread still counted.
    pub async fn mute(&self, conversation_id: String, muted: bool) -> Result<Conversation> {
        Ok(self.inner.mute(&conversation_id, muted).await?.into())
    }

    /// "Do not disturb until" `until_ms` (ms since the epoch, at most a year
    /// ahead); `None` turns it off. Returns the setting now (`None`: off).
    pub async fn set_do_not_disturb(&self, until_ms: Option<i64>) -> Result<Option<i64>> {
        Ok(self.inner.set_do_not_disturb(until_ms).await?)
    }

    /// Unregisters every device registered through this client, then shuts
    /// it down (also when an unregister fails; that error is returned).
    pub async fn sign_out(&self) -> Result<()> {
        Ok(self.inner.sign_out().await?)
    }

    /// A page of a conversation's members in user id order, each with its
    /// profile. `limit`: 1 to 100 (default 50).
    pub async fn members(
        &self,
        conversation_id: String,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<MembersPage> {
        let page = self
            .inner
            .members(&conversation_id, cursor.as_deref(), limit)
            .await?;
        Ok(MembersPage {
            members: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// Profiles and presence of users by id: the user themself and people
    /// sharing a conversation with them; others are left out.
    pub async fn users(&self, user_ids: Vec<String>) -> Result<UsersResult> {
        let ids: Vec<&str> = user_ids.iter().map(String::as_str).collect();
        let found = self.inner.users(&ids).await?;
        Ok(UsersResult {
            users: found.users.into_iter().map(Into::into).collect(),
            presence: found.presence.into_iter().map(Into::into).collect(),
        })
    }

    /// The app's user directory (when the app turned it on): users whose id
    /// or name contains `query`, without their `data`.
    pub async fn search_users(&self, query: String, limit: Option<u32>) -> Result<Vec<User>> {
        let found = self.inner.search_users(&query, limit).await?;
        Ok(found.into_iter().map(Into::into).collect())
    }

    /// Changes the user's own profile.
    pub async fn update_profile(&self, update: ProfileUpdate) -> Result<User> {
        let update = mkondo_sdk::ProfileUpdate {
            name: update.name,
            avatar_url: update.avatar_url,
            data: parse_json(update.data)?,
        };
        Ok(self.inner.update_profile(update).await?.into())
    }

    /// Changes a group's name, icon or data (its owners and admins).
    pub async fn update_conversation(
        &self,
        conversation_id: String,
        update: ConversationUpdate,
    ) -> Result<Conversation> {
        let update = mkondo_sdk::ConversationUpdate {
            name: update.name,
            icon_url: update.icon_url,
            data: parse_json(update.data)?,
        };
        let call = self.inner.update_conversation(&conversation_id, update);
        Ok(call.await?.into())
    }

    /// Sets a member's role (admins make members and admins; owners make owners).
    pub async fn set_role(
        &self,
        conversation_id: String,
        user_id: String,
        role: Role,
    ) -> Result<Member> {
        let call = self.inner.set_role(&conversation_id, &user_id, role.into());
        Ok(call.await?.into())
    }

    /// Deletes a group for everyone (its owners only).
    pub async fn delete_conversation(&self, conversation_id: String) -> Result<()> {
        Ok(self.inner.delete_conversation(&conversation_id).await?)
    }

    /// A page of the users this user blocks.
    pub async fn blocks(&self, cursor: Option<String>, limit: Option<u32>) -> Result<BlocksPage> {
        let page = self.inner.blocks(cursor.as_deref(), limit).await?;
        Ok(BlocksPage {
            blocks: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// The user's total unread count over all their conversations, from the server.
    pub async fn unread_total(&self) -> Result<u64> {
        Ok(self.inner.unread_total().await?)
    }

    /// A round trip to the server.
    pub async fn ping(&self) -> Result<()> {
        Ok(self.inner.ping().await?)
    }
}

/// A live subscription. Dropping it (or `cancel()`) unsubscribes.
#[derive(uniffi::Object)]
pub struct Subscription {
    client: mkondo_sdk::Client,
    conversation_id: String,
    snapshot: std::sync::Mutex<Option<SubscriptionSnapshot>>,
}

#[uniffi::export]
impl Subscription {
    pub fn conversation_id(&self) -> String {
        self.conversation_id.clone()
    }

    /// The state when subscribed: members' presence and who was typing.
    pub fn snapshot(&self) -> Option<SubscriptionSnapshot> {
        self.snapshot.lock().unwrap().clone()
    }

    /// Unsubscribes now (dropping the handle does the same).
    pub fn cancel(&self) {
        // The call is handed to the core when made; its outcome is not needed.
        drop(self.client.unsubscribe(&self.conversation_id));
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}
