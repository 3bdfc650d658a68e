//! The offline store in the browser: an IndexedDB database the app names,
//! through web-sys's IndexedDB bindings, each request awaited through one small
//! promise adapter (see "The database" below for why not a wrapper crate). Wire
//! types are kept as
//! their protobuf bytes (`Uint8Array`); the schema is versioned by the
//! database's version, each upgrade step applied once by `onupgradeneeded`.
//! `navigator.storage.persist()` is asked for when the store opens, so that
//! the browser does not evict it under storage pressure (it may still refuse).
//!
//! # Several tabs
//!
//! Every tab of an origin sees the same database. Each store instance (a tab's
//! client) holds a Web Lock of its own (`mkondo-tab:<owner>`) for its life and
//! tags the outbox entries it writes with that owner. One tab at a time holds
//! the outbox lock (`mkondo-outbox:<database>`): that tab sends what the store
//! holds from instances that are gone (a closed or reloaded tab), and the
//! others send only what they wrote themselves. So no entry is sent by two
//! live tabs; the other tabs see the result as the message arrives.
//!
//! The holder takes such entries over (`adopt`) when it gets the lock, when a
//! tab opens or writes to the outbox (a `BroadcastChannel` tells it), and when
//! a tab whose entries it saw closes (it waits for that tab's lock).

use std::{
    cell::{Cell, RefCell},
    collections::HashSet,
    rc::{Rc, Weak},
};

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use tokio::sync::{oneshot, Notify};
use wasm_bindgen::{prelude::*, JsCast};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, AbortSignal, BroadcastChannel, IdbDatabase, IdbFactory, IdbKeyRange,
    IdbObjectStore, IdbOpenDbRequest, IdbRequest, IdbTransaction, IdbTransactionMode,
    IdbVersionChangeEvent, MessageEvent,
};

use super::{
    Change, Pending, Snapshot, Store, StoreError, StoreKey, StoredCommand,
    DEFAULT_MESSAGES_PER_CONVERSATION,
};
use crate::rt::{self, BoxFuture};

/// The database's version: one upgrade step per version (`upgrade`).
const VERSION: u32 = 1;

const META: &str = "meta";
const PROFILE: &str = "profile";
const CONVERSATIONS: &str = "conversations";
const MESSAGES: &str = "messages";
const OUTBOX: &str = "outbox";
const POSITIONS: &str = "positions";
const STORES: [&str; 6] = [META, PROFILE, CONVERSATIONS, MESSAGES, OUTBOX, POSITIONS];
/// The outbox's index by when an entry was made.
const BY_TIME: &str = "at";

/// The channel tabs tell each other about the outbox on, and its listener.
type Channel = (BroadcastChannel, Closure<dyn FnMut(MessageEvent)>);

/// A store in one IndexedDB database (browsers).
#[derive(Clone)]
pub struct IndexedDbStore {
    inner: Rc<Inner>,
}

struct Inner {
    name: String,
    keep: usize,
    /// This instance's id: its tab lock and the owner of the entries it writes.
    owner: String,
    db: RefCell<Option<Rc<IdbDatabase>>>,
    /// When this instance's last outbox entry was made (`Date.now()`).
    last_at: Cell<f64>,
    /// Holds the outbox lock.
    leader: Cell<bool>,
    /// Something may have changed who owns the outbox's entries.
    wake: Notify,
    /// Releases the locks this instance holds.
    releases: RefCell<Vec<Function>>,
    /// Tabs whose closing the leader waits for.
    watched: RefCell<HashSet<String>>,
    channel: RefCell<Option<Channel>>,
    /// Withdraws the lock requests still waiting when the store goes.
    abort: Option<AbortController>,
}

fn js_failed(e: JsValue) -> StoreError {
    StoreError(
        e.as_string()
            .or_else(|| {
                Reflect::get(&e, &"message".into())
                    .ok()
                    .and_then(|m| m.as_string())
            })
            .unwrap_or_else(|| format!("{e:?}")),
    )
}

impl IndexedDbStore {
    /// The store in the IndexedDB database `name`, keeping the newest
    /// [`DEFAULT_MESSAGES_PER_CONVERSATION`] messages of each conversation.
    /// The database opens on the first `load`.
    pub fn new(name: impl Into<String>) -> Self {
        Self::keeping(name, DEFAULT_MESSAGES_PER_CONVERSATION)
    }

    /// The store, keeping the newest `messages_per_conversation` messages of
    /// each conversation (at least 1).
    pub fn keeping(name: impl Into<String>, messages_per_conversation: usize) -> Self {
        let name = name.into();
        let owner = format!("{}-{}", rt::unix_ms(), rt::entropy());
        Self {
            inner: Rc::new(Inner {
                name,
                keep: messages_per_conversation.max(1),
                owner,
                db: RefCell::new(None),
                last_at: Cell::new(0.0),
                leader: Cell::new(false),
                wake: Notify::new(),
                releases: RefCell::new(Vec::new()),
                watched: RefCell::new(HashSet::new()),
                channel: RefCell::new(None),
                abort: AbortController::new().ok(),
            }),
        }
    }

    /// Whether this instance holds the outbox lock (sends what gone tabs left).
    pub fn is_outbox_holder(&self) -> bool {
        self.inner.leader.get()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(abort) = &self.abort {
            abort.abort();
        }
        for release in self.releases.borrow_mut().drain(..) {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
        if let Some((channel, _)) = self.channel.borrow_mut().take() {
            channel.set_onmessage(None);
            channel.close();
        }
        if let Some(db) = self.db.borrow_mut().take() {
            db.close();
        }
    }
}

fn tab_lock(owner: &str) -> String {
    format!("mkondo-tab:{owner}")
}

// --- The browser's APIs. IndexedDB goes through web-sys; each request and
// transaction is awaited through one small promise adapter below, so all of
// the store's awaits share one future type (a typed future per kind of
// request, as wrapper crates have, made the package 10 KiB larger than this
// whole store). Web Locks are called from the same adapter: web-sys has them
// only behind its unstable-API flag.

#[wasm_bindgen(inline_js = "
export function settled(r) {
  return new Promise((ok, fail) => { r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error); });
}
export function snapshot(t) {
  const all = (name) => settled(t.objectStore(name).getAll());
  return Promise.all([all('profile'), all('conversations'), all('messages'),
    settled(t.objectStore('positions').getAllKeys()), all('positions')]);
}
export function closeOnVersionChange(db) {
  db.onversionchange = () => { db.close(); db.closedForUpgrade = true; };
}
export function putMax(store, key, value) {
  const r = store.get(key);
  r.onsuccess = () => { if (!(r.result >= value)) store.put(value, key); };
}
export function keepNewest(store, range, keep) {
  const count = store.count(range);
  count.onsuccess = () => {
    if (count.result <= keep) return;
    const old = store.getAllKeys(range, count.result - keep);
    old.onsuccess = () => store.delete(IDBKeyRange.bound(range.lower, old.result[old.result.length - 1]));
  };
}
export function completed(t) {
  return new Promise((ok, fail) => {
    t.oncomplete = () => ok();
    t.onabort = t.onerror = () => fail(t.error ?? new Error('the transaction was aborted'));
  });
}
export function lock(name, ifAvailable, signal) {
  return new Promise((granted, failed) => {
    const locks = globalThis.navigator?.locks;
    if (!locks) return failed(new Error('this page has no Web Locks (they need a secure context: https or localhost), so tabs could send the same entry twice: the offline store is not used'));
    const options = ifAvailable ? { ifAvailable } : signal ? { signal } : {};
    locks.request(name, options, (held) => {
      if (!held) return granted(null);
      return new Promise((release) => granted(release));
    }).catch(failed);
  });
}
export function released(name, signal) {
  const locks = globalThis.navigator?.locks;
  if (!locks) return Promise.resolve();
  return locks.request(name, signal ? { signal } : {}, () => {}).catch(() => {});
}
export async function heldLocks() {
  const locks = globalThis.navigator?.locks;
  return locks ? (await locks.query()).held.map((l) => l.name) : [];
}
export async function persist() {
  const storage = globalThis.navigator?.storage;
  try { if (storage?.persist && !(await storage.persisted())) await storage.persist(); } catch {}
}
")]
extern "C" {
    /// Resolves with the request's result, rejects with its error.
    fn settled(request: &IdbRequest) -> Promise;
    /// The records of the profile, conversations and messages stores, then
    /// the positions' keys and their values (names as in `upgrade`).
    fn snapshot(transaction: &IdbTransaction) -> Promise;
    /// Closes `db` when another tab's newer SDK upgrades (or deletes) the
    /// database, instead of blocking it; the next use here reopens and fails.
    #[wasm_bindgen(js_name = closeOnVersionChange)]
    fn close_on_version_change(db: &IdbDatabase);
    /// Writes `value` under `key` unless what is there is as large: requests
    /// of the caller's transaction, nothing to await.
    #[wasm_bindgen(js_name = putMax)]
    fn put_max(store: &IdbObjectStore, key: &JsValue, value: f64);
    /// Deletes the records of `range` but the last `keep` (by key), in the
    /// caller's transaction.
    #[wasm_bindgen(js_name = keepNewest)]
    fn keep_newest(store: &IdbObjectStore, range: &IdbKeyRange, keep: f64);
    /// Resolves once the transaction committed, rejects if it was aborted.
    fn completed(transaction: &IdbTransaction) -> Promise;
    /// Requests the Web Lock `name`: resolves with the function that lets it go
    /// once held, or `null` when `if_available` and another holds it; rejects
    /// when `signal` withdraws the request first, and without Web Locks (an
    /// old browser, or a page that is not a secure context): tabs could not
    /// tell which of them sends, so the store is not used at all.
    fn lock(name: &str, if_available: bool, signal: Option<AbortSignal>) -> Promise;
    /// Resolves once the lock `name` is free (its holder let go or closed), or
    /// `signal` withdrew the wait.
    fn released(name: &str, signal: Option<AbortSignal>) -> Promise;
    /// The names of the locks any tab of the origin holds now.
    #[wasm_bindgen(js_name = heldLocks)]
    fn held_locks() -> Promise;
    /// Asks the browser not to evict the origin's storage, unless it was
    /// granted already (it may refuse; some browsers ask the user once).
    fn persist() -> Promise;
}

/// Takes the lock `name` and keeps it until released; `false` when
/// `if_available` and another tab holds it.
async fn acquire(
    inner: &Inner,
    name: &str,
    if_available: bool,
    signal: Option<AbortSignal>,
) -> Result<bool, StoreError> {
    let release = JsFuture::from(lock(name, if_available, signal))
        .await
        .map_err(js_failed)?;
    match release.dyn_into::<Function>() {
        Ok(release) => {
            inner.releases.borrow_mut().push(release);
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

async fn result(request: Result<IdbRequest, JsValue>) -> Result<JsValue, StoreError> {
    JsFuture::from(settled(&request.map_err(js_failed)?))
        .await
        .map_err(js_failed)
}

/// A transaction over `stores`, and the promise of its end (taken at once,
/// before anything can end it).
fn transaction(
    db: &IdbDatabase,
    stores: &[&str],
    mode: IdbTransactionMode,
) -> Result<(IdbTransaction, Promise), StoreError> {
    let names: Array = stores.iter().map(|s| JsValue::from(*s)).collect();
    let tx = db
        .transaction_with_str_sequence_and_mode(&names, mode)
        .map_err(js_failed)?;
    let done = completed(&tx);
    Ok((tx, done))
}

/// Commits the transaction after `outcome`'s requests, or aborts it (nothing
/// of it is kept) when `outcome` failed.
async fn finish<T>(
    tx: IdbTransaction,
    done: Promise,
    outcome: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match outcome {
        Ok(value) => commit(done).await.map(|()| value),
        Err(e) => {
            let _ = tx.abort();
            Err(e)
        }
    }
}

/// Waits for the transaction to commit by itself, once no request is left:
/// not `commit()`, which would refuse the requests `putMax` and `keepNewest`
/// make from their callbacks.
async fn commit(done: Promise) -> Result<(), StoreError> {
    JsFuture::from(done).await.map(drop).map_err(js_failed)
}

fn store(tx: &IdbTransaction, name: &str) -> Result<IdbObjectStore, StoreError> {
    tx.object_store(name).map_err(js_failed)
}

async fn open(name: &str) -> Result<IdbDatabase, StoreError> {
    let factory: IdbFactory = Reflect::get(&js_sys::global(), &"indexedDB".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| StoreError("this browser has no IndexedDB".into()))?;
    let request = factory.open_with_u32(name, VERSION).map_err(js_failed)?;
    let on_upgrade =
        Closure::<dyn FnMut(IdbVersionChangeEvent)>::new(move |event: IdbVersionChangeEvent| {
            let Some(request) = event
                .target()
                .and_then(|t| t.dyn_into::<IdbOpenDbRequest>().ok())
            else {
                return;
            };
            let db = request
                .result()
                .ok()
                .and_then(|db| db.dyn_into::<IdbDatabase>().ok());
            let upgraded = match db {
                Some(db) => upgrade(&db, event.old_version() as u32),
                None => Err(StoreError("no database to upgrade".into())),
            };
            if upgraded.is_err() {
                // Not left half-made at the new version: the open fails.
                if let Some(tx) = request.transaction() {
                    let _ = tx.abort();
                }
            }
        });
    request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    // A database of a newer version (a newer SDK wrote it) fails to open:
    // refused, not misread.
    let opened = JsFuture::from(settled(&request)).await;
    request.set_onupgradeneeded(None);
    let db = opened
        .and_then(|db| db.dyn_into::<IdbDatabase>())
        .map_err(|e| {
            StoreError(format!(
                "the offline store {name} cannot be opened: {}",
                js_failed(e).0
            ))
        })?;
    close_on_version_change(&db);
    Ok(db)
}

/// The schema, one step per version: step `v` moves the database to `v + 1`.
fn upgrade(db: &IdbDatabase, from: u32) -> Result<(), StoreError> {
    if from < 1 {
        for name in [META, PROFILE, CONVERSATIONS, MESSAGES, POSITIONS] {
            db.create_object_store(name).map_err(js_failed)?;
        }
        // By the entry's key; `at` orders them.
        let outbox = db.create_object_store(OUTBOX).map_err(js_failed)?;
        outbox
            .create_index_with_str(BY_TIME, "at")
            .map_err(js_failed)?;
    }
    Ok(())
}

fn bytes(message: &impl prost::Message) -> JsValue {
    Uint8Array::from(message.encode_to_vec().as_slice()).into()
}

fn decode<T: prost::Message + Default>(value: &JsValue) -> Result<T, StoreError> {
    let array: Uint8Array = value
        .clone()
        .dyn_into()
        .map_err(|_| StoreError("the offline store holds a value that is not bytes".into()))?;
    T::decode(array.to_vec().as_slice()).map_err(|e| StoreError(e.to_string()))
}

fn decoded<T: prost::Message + Default>(values: JsValue) -> Result<Vec<T>, StoreError> {
    Array::from(&values).iter().map(|v| decode(&v)).collect()
}

fn message_key(conversation_id: &str, seq: f64) -> JsValue {
    Array::of2(&conversation_id.into(), &seq.into()).into()
}

fn conversation_range(conversation_id: &str) -> Result<IdbKeyRange, StoreError> {
    IdbKeyRange::bound(
        &message_key(conversation_id, 0.0),
        &message_key(conversation_id, f64::INFINITY),
    )
    .map_err(js_failed)
}

fn field(value: &JsValue, name: &str) -> Result<JsValue, StoreError> {
    Reflect::get(value, &name.into()).map_err(js_failed)
}

/// An outbox entry as stored: its key, when it was made, its owner and its
/// frame bytes.
struct Entry {
    key: String,
    at: JsValue,
    owner: String,
    body: JsValue,
}

impl Entry {
    fn read(value: &JsValue) -> Result<Self, StoreError> {
        Ok(Entry {
            key: field(value, "key")?.as_string().unwrap_or_default(),
            at: field(value, "at")?,
            owner: field(value, "owner")?.as_string().unwrap_or_default(),
            body: field(value, "body")?,
        })
    }

    fn value(&self) -> Result<JsValue, StoreError> {
        let entry = Object::new();
        for (name, value) in [
            ("key", &self.key.as_str().into()),
            ("at", &self.at),
            ("owner", &self.owner.as_str().into()),
            ("body", &self.body),
        ] {
            Reflect::set(&entry, &name.into(), value).map_err(js_failed)?;
        }
        Ok(entry.into())
    }

    fn pending(&self) -> Result<Pending, StoreError> {
        let stored: StoredCommand = decode(&self.body)?;
        let command = stored
            .into_command()
            .ok_or_else(|| StoreError(format!("outbox entry {} has no command", self.key)))?;
        Ok(Pending {
            key: self.key.clone(),
            command,
        })
    }
}

/// The outbox's entries, in the order they were made.
async fn entries(outbox: &IdbObjectStore) -> Result<Vec<Entry>, StoreError> {
    let index = outbox.index(BY_TIME).map_err(js_failed)?;
    let values = result(index.get_all()).await?;
    Array::from(&values)
        .iter()
        .map(|v| Entry::read(&v))
        .collect()
}

fn wipe(tx: &IdbTransaction) -> Result<(), StoreError> {
    for name in STORES {
        store(tx, name)?.clear().map_err(js_failed)?;
    }
    Ok(())
}

impl Inner {
    fn signal(&self) -> Option<AbortSignal> {
        self.abort.as_ref().map(AbortController::signal)
    }

    async fn db(&self) -> Result<Rc<IdbDatabase>, StoreError> {
        // A connection closed by a newer SDK's upgrade elsewhere is opened
        // again (and then refused).
        if let Some(db) = self.db.borrow().as_ref() {
            if !field(db, "closedForUpgrade")?.is_truthy() {
                return Ok(db.clone());
            }
        }
        let db = Rc::new(open(&self.name).await?);
        *self.db.borrow_mut() = Some(db.clone());
        Ok(db)
    }

    /// When an entry is made: now, but never before this instance's last one.
    fn next_at(&self) -> f64 {
        let at = js_sys::Date::now().max(self.last_at.get() + 1.0);
        self.last_at.set(at);
        at
    }

    /// Takes over the entries of instances that are gone: their owner becomes
    /// this one. Watches the live owners of the others, to take theirs over
    /// when they close.
    async fn take_over(self: &Rc<Self>) -> Result<Vec<Pending>, StoreError> {
        let alive: HashSet<String> =
            Array::from(&JsFuture::from(held_locks()).await.map_err(js_failed)?)
                .iter()
                .filter_map(|name| name.as_string())
                .collect();
        let db = self.db().await?;
        let (tx, done) = transaction(&db, &[OUTBOX], IdbTransactionMode::Readwrite)?;
        let outcome = async {
            let outbox = store(&tx, OUTBOX)?;
            let mut taken = Vec::new();
            for mut entry in entries(&outbox).await? {
                if entry.owner == self.owner {
                    continue;
                }
                if alive.contains(&tab_lock(&entry.owner)) {
                    self.watch(entry.owner);
                    continue;
                }
                // One that cannot be read (a newer SDK's command) stays where
                // it is rather than stopping every other.
                let Ok(pending) = entry.pending() else {
                    continue;
                };
                entry.owner.clone_from(&self.owner);
                outbox
                    .put_with_key(&entry.value()?, &entry.key.as_str().into())
                    .map_err(js_failed)?;
                taken.push(pending);
            }
            Ok(taken)
        }
        .await;
        finish(tx, done, outcome).await
    }

    /// Wakes the leader when the tab `owner` closes.
    fn watch(self: &Rc<Self>, owner: String) {
        if !self.watched.borrow_mut().insert(owner.clone()) {
            return;
        }
        let this = Rc::downgrade(self);
        let gone = released(&tab_lock(&owner), self.signal());
        rt::spawn(async move {
            let _ = JsFuture::from(gone).await;
            if let Some(this) = this.upgrade() {
                this.watched.borrow_mut().remove(&owner);
                this.wake.notify_one();
            }
        });
    }

    fn listen(self: &Rc<Self>) -> Result<(), StoreError> {
        let channel =
            BroadcastChannel::new(&format!("mkondo-store:{}", self.name)).map_err(js_failed)?;
        let this: Weak<Self> = Rc::downgrade(self);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |_: MessageEvent| {
            if let Some(this) = this.upgrade() {
                this.wake.notify_one();
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // A tab that opens may be a reloaded one whose entries are orphans now.
        let _ = channel.post_message(&"opened".into());
        *self.channel.borrow_mut() = Some((channel, on_message));
        Ok(())
    }

    fn announce_outbox(&self) {
        if let Some((channel, _)) = self.channel.borrow().as_ref() {
            let _ = channel.post_message(&"outbox".into());
        }
    }

    async fn load(self: Rc<Self>, key: StoreKey) -> Result<Snapshot, StoreError> {
        let _ = persist();
        acquire(&self, &tab_lock(&self.owner), false, None).await?;
        let db = self.db().await?;
        // Whose it is, checked and (if another's) wiped in one transaction: two
        // tabs opening at once cannot wipe what the other just wrote.
        let (tx, done) = transaction(&db, &STORES, IdbTransactionMode::Readwrite)?;
        let outcome = async {
            let meta = store(&tx, META)?;
            let url = result(meta.get(&"url".into())).await?;
            let user = result(meta.get(&"user_id".into())).await?;
            let mine = url.as_string().as_deref() == Some(key.url.as_str())
                && user.as_string().as_deref() == Some(key.user_id.as_str());
            if !mine {
                // Another user's (or server's) store, or a new one: never read.
                wipe(&tx)?;
                meta.put_with_key(&key.url.as_str().into(), &"url".into())
                    .map_err(js_failed)?;
                meta.put_with_key(&key.user_id.as_str().into(), &"user_id".into())
                    .map_err(js_failed)?;
            }
            Ok(mine)
        }
        .await;
        let mine = finish(tx, done, outcome).await?;
        self.listen()?;
        let outbox_lock = format!("mkondo-outbox:{}", self.name);
        if acquire(&self, &outbox_lock, true, None).await? {
            self.leader.set(true);
        } else {
            // Waits its turn: the holder's tab closes, this one takes over. The
            // request is withdrawn if this store goes first.
            let this = Rc::downgrade(&self);
            let turn = lock(&outbox_lock, false, self.signal());
            rt::spawn(async move {
                let Ok(release) = JsFuture::from(turn).await else {
                    return;
                };
                let Ok(release) = release.dyn_into::<Function>() else {
                    return;
                };
                match this.upgrade() {
                    Some(this) => {
                        this.releases.borrow_mut().push(release);
                        this.leader.set(true);
                        this.wake.notify_one();
                    }
                    None => {
                        let _ = release.call0(&JsValue::UNDEFINED);
                    }
                }
            });
        }
        if !mine {
            return Ok(Snapshot::default());
        }
        let outbox = if self.leader.get() {
            self.take_over().await?
        } else {
            Vec::new()
        };
        let (tx, _) = transaction(
            &db,
            &[PROFILE, CONVERSATIONS, MESSAGES, POSITIONS],
            IdbTransactionMode::Readonly,
        )?;
        // Every store's records (messages by key: conversation, then seq) and
        // the positions' keys, read in one go.
        let read = JsFuture::from(snapshot(&tx)).await.map_err(js_failed)?;
        let part = |i: u32| Array::from(&read).get(i);
        let user = decoded(part(0))?.pop();
        let conversations = decoded(part(1))?;
        let messages = decoded(part(2))?;
        let ids = Array::from(&part(3));
        let seqs = Array::from(&part(4));
        let positions = ids
            .iter()
            .zip(seqs.iter())
            .filter_map(|(id, seq)| Some((id.as_string()?, seq.as_f64()? as u64)))
            .collect();
        Ok(Snapshot {
            user,
            conversations,
            messages,
            outbox,
            positions,
        })
    }

    async fn apply(self: Rc<Self>, changes: Vec<Change>) -> Result<(), StoreError> {
        let db = self.db().await?;
        let (tx, done) = transaction(&db, &STORES, IdbTransactionMode::Readwrite)?;
        // All of the batch or none of it.
        let outcome = async {
            // Conversations with new messages: trimmed once, at the end.
            let mut touched = HashSet::new();
            let mut positions = std::collections::HashMap::new();
            let mut added = false;
            for change in changes {
                match change {
                    Change::User(u) => {
                        store(&tx, PROFILE)?
                            .put_with_key(&bytes(&u), &1.into())
                            .map_err(js_failed)?;
                    }
                    Change::Conversation(c) => {
                        store(&tx, CONVERSATIONS)?
                            .put_with_key(&bytes(&c), &c.id.as_str().into())
                            .map_err(js_failed)?;
                    }
                    Change::RemoveConversation(id) => {
                        let key = JsValue::from(id.as_str());
                        store(&tx, CONVERSATIONS)?.delete(&key).map_err(js_failed)?;
                        store(&tx, MESSAGES)?
                            .delete(&conversation_range(&id)?.into())
                            .map_err(js_failed)?;
                        store(&tx, POSITIONS)?.delete(&key).map_err(js_failed)?;
                        touched.remove(&id);
                        positions.remove(&id);
                    }
                    Change::Message(m) => {
                        store(&tx, MESSAGES)?
                            .put_with_key(
                                &bytes(&m),
                                &message_key(&m.conversation_id, m.seq as f64),
                            )
                            .map_err(js_failed)?;
                        touched.insert(m.conversation_id);
                    }
                    Change::OutboxAdd(Pending { key, command }) => {
                        let entry = Entry {
                            at: self.next_at().into(),
                            owner: self.owner.clone(),
                            body: bytes(&StoredCommand::of(command)),
                            key,
                        };
                        store(&tx, OUTBOX)?
                            .put_with_key(&entry.value()?, &entry.key.as_str().into())
                            .map_err(js_failed)?;
                        added = true;
                    }
                    Change::OutboxRemove(key) => {
                        store(&tx, OUTBOX)?
                            .delete(&key.as_str().into())
                            .map_err(js_failed)?;
                    }
                    Change::Position {
                        conversation_id,
                        seq,
                    } => {
                        let at = positions.entry(conversation_id).or_insert(seq);
                        *at = (*at).max(seq);
                    }
                    Change::Wipe => {
                        // The key goes too: the next load starts afresh.
                        wipe(&tx)?;
                        touched.clear();
                        positions.clear();
                    }
                }
            }
            // Never back: another tab may have gone further. One write per
            // conversation (two in one transaction would both read the old value).
            let stored = store(&tx, POSITIONS)?;
            for (conversation_id, seq) in positions {
                put_max(&stored, &conversation_id.as_str().into(), seq as f64);
            }
            let messages = store(&tx, MESSAGES)?;
            for conversation_id in touched {
                keep_newest(
                    &messages,
                    &conversation_range(&conversation_id)?,
                    self.keep as f64,
                );
            }
            Ok(added)
        }
        .await;
        let added = finish(tx, done, outcome).await?;
        if added {
            self.announce_outbox();
        }
        Ok(())
    }

    /// Waits until entries of gone instances are this one's to send.
    async fn adopt(self: Rc<Self>) -> Result<Vec<Pending>, StoreError> {
        loop {
            self.wake.notified().await;
            if !self.leader.get() {
                continue;
            }
            // On a task of its own: the driver polls this future only when
            // nothing else is ready, and a transaction whose next request
            // waited for that poll would commit half done.
            let (answer, taken) = oneshot::channel();
            let this = self.clone();
            rt::spawn(async move {
                let _ = answer.send(this.take_over().await);
            });
            let taken = taken
                .await
                .map_err(|_| StoreError("the outbox scan stopped".into()))??;
            if !taken.is_empty() {
                return Ok(taken);
            }
        }
    }
}

impl Store for IndexedDbStore {
    fn load(&self, key: &StoreKey) -> BoxFuture<'static, Result<Snapshot, StoreError>> {
        Box::pin(self.inner.clone().load(key.clone()))
    }

    fn apply(&self, changes: Vec<Change>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(self.inner.clone().apply(changes))
    }

    fn adopt(&self) -> BoxFuture<'static, Result<Vec<Pending>, StoreError>> {
        Box::pin(self.inner.clone().adopt())
    }
}
