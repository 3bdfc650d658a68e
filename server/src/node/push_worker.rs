//! Push delivery: from the event outbox to each device of each member who is
//! not in the foreground (docs/push.md). Three steps, each durable:
//!
//! 1. **Copy.** For each app with push settings, new `message.created` and
//!    `notification.sent` events of the feed (gap-safe) become one
//!    `push_jobs` row each, in the transaction that moves the app's position
//!    (compare-and-set): never a row per recipient in the send transaction.
//! 2. **Fan out.** A due stream (a conversation's jobs) is claimed with a
//!    lease. Its newest job is fanned out to every device of every member who
//!    may be pushed (not the author, not muted, not in do-not-disturb, not
//!    read that far, no session in the foreground cluster-wide), with each
//!    user's total unread as the badge; the `push_sends` rows and the removal
//!    of the jobs they cover commit together. Collapse: the first push of a
//!    conversation goes at once; jobs arriving within the window after it are
//!    held to the window's end and go as one push with the same collapse id,
//!    which replaces the first on the device.
//! 3. **Send.** Due sends are claimed with a lease and sent, many at once, to
//!    APNs, FCM or the Web Push service. A send leaves the queue when the
//!    provider answered for good; a retry waits for backon's jittered delay or
//!    the provider's `Retry-After`, whichever is longer, until the push
//!    expires; a dead credential removes the device. A node that dies
//!    mid-send leaves the send to be claimed again when its lease ends: the
//!    same id (`apns-id`), collapse id and `Topic`, so the device shows one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest as _;

use mkondo_push::apns::{Alert, ApnsClient, ApnsKey, ApnsNotification, ApnsPayload, PushType};
use mkondo_push::fcm::{AndroidConfig, FcmClient, FcmMessage, FcmNotification, ServiceAccount};
use mkondo_push::webpush::{Subscription, Urgency, VapidKey, WebPushClient, WebPushMessage};
use mkondo_push::Outcome;

use super::Node;
use crate::engine::presence::Status;
use crate::error::{Error, Result};
use crate::store::now_ms;
use crate::store::push_queue::{DueStream, Finish, NewJob, Recipient, Send};
use crate::store::push_settings::PushSettingsRow;

const TICK: Duration = Duration::from_millis(200);
/// Events read from an app's feed per tick.
const COPY_BATCH: u32 = 500;
/// The event types that are pushed.
const PUSHED_TYPES: [&str; 2] = ["message.created", "notification.sent"];
/// Streams one node fans out at once.
const CONCURRENT_FAN_OUTS: usize = 4;
/// Pushes one node has in flight at once (HTTP/2 multiplexes them over a
/// few connections per provider).
const CONCURRENT_SENDS: usize = 256;
/// Outcomes written in one transaction at most.
const RECORD_BATCH: usize = 512;
/// Users asked about at once from the presence engine.
const PRESENCE_CHUNK: usize = 1_000;
/// The longest alert text in a push, in bytes: providers take 4 KB in all
/// (Web Push's encrypted record leaves 3,993), with the ids and up to
/// [`MAX_CUSTOM_BYTES`] of custom data beside it.
const MAX_BODY_BYTES: usize = 1_500;
/// The largest custom data (`data.push` of a message, JSON) carried.
const MAX_CUSTOM_BYTES: usize = 1_024;
/// What a push says instead of the text when the app's preview is `generic`.
const GENERIC_BODY: &str = "New message";
/// The largest signal payload a VoIP push carries (APNs takes 5 KB for VoIP).
const MAX_CALL_PAYLOAD: usize = 3 * 1024;
/// How long a call's VoIP push is worth delivering: a ring older than this
/// rings for a call long given up.
const CALL_TTL_MS: i64 = 60_000;
/// How long pushes wait after the provider refused an app's credentials
/// (they go at once when the credentials change).
const REFUSED_PAUSE: Duration = Duration::from_secs(300);
/// How long the settings of an app are trusted before they are read again.
const SETTINGS_TTL: Duration = Duration::from_secs(5);

/// What a push shows, as the fan-out writes it (`push_sends.payload`) and as
/// the Web Push service worker receives it (with `tag`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Payload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The user's total unread.
    pub badge: i64,
    /// The conversation (iOS `thread-id`); empty for a notification.
    #[serde(default)]
    pub thread_id: String,
    /// A call invitation: sent as a VoIP push to PushKit tokens.
    #[serde(default)]
    pub voip: bool,
    /// Ids and the backend's custom data, for the app.
    pub mkondo: Value,
}

/// The push worker's state on a node.
#[derive(Default)]
pub(super) struct PushState {
    /// Wakes the sender when this node queued sends.
    wake: tokio::sync::Notify,
    /// One HTTP client for FCM and Web Push (HTTP/2 where offered), one for
    /// APNs (HTTP/2 only).
    http: OnceLock<reqwest::Client>,
    apns_http: OnceLock<reqwest::Client>,
    /// Provider clients per app, kept while the app's settings are unchanged
    /// (they cache their signed tokens).
    apps: Mutex<HashMap<String, CachedClients>>,
    /// (app, provider) whose credentials the provider refused, with the
    /// settings version it refused: their pushes wait for new settings.
    refused: Mutex<HashMap<(String, &'static str), i64>>,
}

struct CachedClients {
    read_at: Instant,
    updated_at: i64,
    clients: Arc<AppClients>,
}

/// An app's provider clients, from its push settings.
struct AppClients {
    /// The settings version they were built from.
    updated_at: i64,
    preview: String,
    apns: Option<ApnsClients>,
    fcm: Option<FcmClient>,
    web_push: Option<WebPushClient>,
}

struct ApnsClients {
    production: ApnsClient,
    sandbox: ApnsClient,
    topic: String,
}

impl AppClients {
    fn serves(&self, provider: &str) -> bool {
        match provider {
            "apns" | "apns_voip" => self.apns.is_some(),
            "fcm" => self.fcm.is_some(),
            "webpush" => self.web_push.is_some(),
            _ => false,
        }
    }
}

impl Node {
    /// Starts the push worker (the composition root calls it once);
    /// `finish_shutdown` waits for it.
    pub fn start_push_worker(self: &Arc<Self>) {
        self.workers.spawn(self.clone().run_push());
    }

    /// The push worker: copies, fans out and sends until shutdown, leaving
    /// what is unfinished to its lease.
    async fn run_push(self: Arc<Self>) {
        let owner: Arc<str> = Arc::from(format!(
            "pw_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        let sender = tokio::spawn(self.clone().run_push_sender(owner.clone()));
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_FAN_OUTS));
        let tasks = tokio_util::task::TaskTracker::new();
        let shutdown = self.shutdown_signal();
        let mut last_sweep = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
            if let Err(err) = self.copy_push_jobs().await {
                tracing::warn!(%err, "push: reading the event feed failed; retrying");
            }
            if let Err(err) = self.start_fan_outs(&owner, &slots, &tasks).await {
                tracing::warn!(%err, "push: claiming due conversations failed; retrying");
            }
            if last_sweep.elapsed() > Duration::from_secs(60) {
                last_sweep = Instant::now();
                let before = now_ms() - 2 * self.config.push.collapse_window.as_millis() as i64;
                if let Err(err) = self.store.sweep_push_queue(before).await {
                    tracing::debug!(%err, "push: sweeping the queue failed");
                }
            }
        }
        tasks.close();
        let _ = tokio::time::timeout(self.config.push.timeout, tasks.wait()).await;
        let _ = sender.await;
    }

    /// Step 1: each app's new messages and notifications into jobs.
    async fn copy_push_jobs(&self) -> Result<()> {
        let types: Vec<String> = PUSHED_TYPES.iter().map(|t| (*t).to_owned()).collect();
        for app in self.store.push_apps().await? {
            let from = app.cursor();
            let (events, to) = match self
                .store
                .events_scan(&app.app_id, from, Some(&types), COPY_BATCH)
                .await
            {
                Ok(read) => read,
                Err(err) => {
                    tracing::warn!(%err, app = %app.app_id, "push: reading the event feed failed");
                    continue;
                }
            };
            if to == from {
                continue;
            }
            let jobs: Vec<NewJob> = events.iter().filter_map(job_of).collect();
            self.store
                .copy_push_jobs(&app.app_id, from, to, &jobs)
                .await?;
        }
        Ok(())
    }

    /// Step 2: claims due streams and fans each out in a task, as long as
    /// some are due: a slot freed by a finished fan-out is used at once.
    async fn start_fan_outs(
        self: &Arc<Self>,
        owner: &Arc<str>,
        slots: &Arc<tokio::sync::Semaphore>,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<()> {
        let shutdown = self.shutdown_signal();
        loop {
            // Wait for a slot: the streams stay due meanwhile.
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            };
            let free = slots.available_permits() + 1;
            let now = now_ms();
            let claimed = self
                .store
                .claim_push_streams(
                    &claim_token(owner),
                    now,
                    now + self.push_lease_ms(),
                    free as u32,
                )
                .await?;
            let full = claimed.len() == free;
            let mut first = Some(first);
            for stream in claimed {
                // A claim never takes more than asked; should it, the extra
                // one waits for a slot rather than the worker failing.
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => slots.clone().acquire_owned().await.expect("never closed"),
                };
                let node = self.clone();
                tasks.spawn(async move {
                    if let Err(err) = node.fan_out(&stream).await {
                        tracing::warn!(%err, app = %stream.app_id, "push: a fan-out failed; it is retried");
                        let retry = now_ms() + node.config.push.retry_min.as_millis() as i64;
                        let _ = node.store.defer_push_stream(&stream, retry).await;
                    }
                    drop(permit);
                });
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// How long a node holds a stream or a send it works on.
    fn push_lease_ms(&self) -> i64 {
        (self.config.push.timeout.as_millis() as i64) * 3
    }

    /// Fans out a claimed stream's newest job, unless its collapse window is
    /// still open.
    async fn fan_out(&self, s: &DueStream) -> Result<()> {
        let now = now_ms();
        let window = self.config.push.collapse_window.as_millis() as i64;
        let conversation = !s.stream.starts_with("n:");
        if conversation && s.last_sent_at + window > now {
            return self
                .store
                .defer_push_stream(s, s.last_sent_at + window)
                .await;
        }
        let Some(job) = self.store.newest_push_job(&s.app_id, &s.stream).await? else {
            self.store
                .finish_push_fan_out(s, None, &[], now, window)
                .await?;
            return Ok(());
        };
        let sends = match self.store.event(&s.app_id, &job.event_id).await? {
            // A push older than its time to live is not worth sending (the
            // queue was stopped that long).
            Some(event) if event.created_at + (self.config.push.ttl.as_millis() as i64) > now => {
                self.sends_for(&s.app_id, &event, now).await?
            }
            // Erased, out of retention, or too old: nothing left to tell.
            _ => Vec::new(),
        };
        let written = self
            .store
            .finish_push_fan_out(s, Some(&job), &sends, now, window)
            .await?;
        if let Some(n @ 1..) = written {
            metrics::counter!("mkondo_push_queued_total").increment(n as u64);
            self.push.wake.notify_one();
        }
        Ok(())
    }

    /// The sends one event makes: a push per device of each recipient.
    async fn sends_for(
        &self,
        app: &str,
        event: &crate::store::events::StoredEvent,
        now: i64,
    ) -> Result<Vec<Send>> {
        let Some(clients) = self.push_clients(app).await? else {
            return Ok(Vec::new());
        };
        let (recipients, context) = match event.kind.as_str() {
            "message.created" => {
                let m = &event.data["message"];
                let (Some(conv), Some(seq), Some(author)) = (
                    m["conversation_id"].as_str(),
                    m["seq"].as_i64(),
                    m["sender_id"].as_str(),
                ) else {
                    return Ok(Vec::new());
                };
                if m["deleted_at"].is_string() || m["deleted_at"].is_number() {
                    return Ok(Vec::new());
                }
                let recipients = self
                    .store
                    .push_recipients(app, conv, author, seq, now)
                    .await?;
                (
                    recipients,
                    self.message_context(app, conv, m, &clients.preview).await?,
                )
            }
            "notification.sent" => {
                let n = &event.data["notification"];
                let Some(user) = n["user_id"].as_str() else {
                    return Ok(Vec::new());
                };
                let recipients = self.store.push_user_devices(app, user, now).await?;
                (recipients, notification_context(n, &clients.preview))
            }
            _ => return Ok(Vec::new()),
        };
        let recipients: Vec<Recipient> = recipients
            .into_iter()
            .filter(|r| {
                // A VoIP push must report a call (iOS ends apps that do not):
                // messages never go to PushKit tokens.
                let usable = r.provider != "apns_voip" && clients.serves(&r.provider);
                if !usable && r.provider != "apns_voip" {
                    metrics::counter!("mkondo_push_skipped_total", "reason" => "unconfigured")
                        .increment(1);
                }
                usable
            })
            .collect();
        // Presence last: the engine is asked only about users with a device
        // that can be pushed.
        let recipients = self.not_in_foreground(app, recipients).await;
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let users: Vec<String> = distinct_users(&recipients);
        let badges = self.store.total_unread(app, &users).await?;
        let expires_at = now + self.config.push.ttl.as_millis() as i64;
        let sends = recipients
            .into_iter()
            .map(|r| {
                let payload = Payload {
                    title: context.title.clone(),
                    body: context.body.clone(),
                    badge: badges.get(&r.user_id).copied().unwrap_or(0),
                    thread_id: context.conversation_id.clone(),
                    voip: false,
                    mkondo: context.mkondo.clone(),
                };
                new_send(app, r, &context, &payload, now, expires_at)
            })
            .collect();
        Ok(sends)
    }

    /// A call invitation for `to`: a VoIP push to each of their PushKit
    /// devices when none of their sessions is in the foreground (they get
    /// the live signal then) and the app has APNs. Durable once queued; a
    /// failure to queue is logged, the live signal goes anyway.
    pub(crate) async fn ring(&self, app: &str, from: &str, conv: &str, to: &str, payload: &str) {
        let queued = async {
            let Some(clients) = self.push_clients(app).await? else {
                return Ok(0);
            };
            if clients.apns.is_none() {
                return Ok(0);
            }
            let now = now_ms();
            let devices: Vec<Recipient> = self
                .store
                .push_user_devices(app, to, now)
                .await?
                .into_iter()
                .filter(|d| d.provider == "apns_voip")
                .collect();
            let devices = self.not_in_foreground(app, devices).await;
            if devices.is_empty() {
                return Ok(0);
            }
            let (_, _, from_name) = self.store.push_names(app, conv, from).await?;
            let mut mkondo = json!({
                "type": "call",
                "app_id": app,
                "conversation_id": conv,
                "from_user_id": from,
                "from_name": from_name,
            });
            // Counted as carried: JSON escapes (an SDP's line breaks) grow it.
            let escaped = serde_json::to_string(payload).map_or(usize::MAX, |p| p.len());
            if escaped <= MAX_CALL_PAYLOAD {
                mkondo["payload"] = payload.into();
            } else {
                mkondo["payload_omitted"] = true.into();
            }
            let context = Context {
                conversation_id: conv.to_owned(),
                message_id: String::new(),
                author_id: from.to_owned(),
                collapse_id: collapse_id(&format!("call:{conv}")),
                title: None,
                body: None,
                mkondo,
            };
            let payload = Payload {
                title: None,
                body: None,
                badge: 0,
                thread_id: conv.to_owned(),
                voip: true,
                mkondo: context.mkondo.clone(),
            };
            let sends: Vec<Send> = devices
                .into_iter()
                .map(|d| new_send(app, d, &context, &payload, now, now + CALL_TTL_MS))
                .collect();
            self.store.queue_push_sends(&sends).await?;
            Ok::<_, Error>(sends.len())
        };
        match queued.await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("mkondo_push_queued_total").increment(n as u64);
                self.push.wake.notify_one();
            }
            Err(err) => tracing::warn!(%err, app, "push: a call's VoIP push could not be queued"),
        }
    }

    /// Recipients without a session in the foreground, on any node: a user
    /// `online` is reading; `away` (every session in the background) and
    /// `offline` users are pushed. If presence cannot be read, they are
    /// pushed (a push too many beats a message missed).
    async fn not_in_foreground(&self, app: &str, recipients: Vec<Recipient>) -> Vec<Recipient> {
        let users = distinct_users(&recipients);
        let mut online = HashSet::new();
        for chunk in users.chunks(PRESENCE_CHUNK) {
            for p in self.presence.get(app, chunk).await {
                if p.status == Status::Online {
                    online.insert(p.user_id);
                }
            }
        }
        if !online.is_empty() {
            metrics::counter!("mkondo_push_skipped_total", "reason" => "foreground")
                .increment(online.len() as u64);
        }
        recipients
            .into_iter()
            .filter(|r| !online.contains(&r.user_id))
            .collect()
    }

    /// What a message's push says, per the app's preview setting.
    async fn message_context(
        &self,
        app: &str,
        conv: &str,
        m: &Value,
        preview: &str,
    ) -> Result<Context> {
        let author = m["sender_id"].as_str().unwrap_or_default();
        let (kind, conv_name, author_name) = self.store.push_names(app, conv, author).await?;
        let sender = if author_name.is_empty() {
            author.to_owned()
        } else {
            author_name.clone()
        };
        let group = kind != "direct" && !conv_name.is_empty();
        let text = match m["text"].as_str().unwrap_or_default() {
            // A message of files alone says what it carries.
            "" => attachments_text(&m["attachments"]),
            text => text.to_owned(),
        };
        let text = text.as_str();
        let (title, body) = match preview {
            "none" => (None, None),
            "generic" => (
                Some(if group {
                    conv_name.clone()
                } else {
                    sender.clone()
                }),
                Some(GENERIC_BODY.to_owned()),
            ),
            _ if group => (
                Some(conv_name.clone()),
                Some(format!("{sender}: {}", shorten(text))),
            ),
            _ => (Some(sender.clone()), Some(shorten(text))),
        };
        let mut mkondo = json!({
            "type": "message",
            "app_id": app,
            "conversation_id": conv,
            "seq": m["seq"],
            "message_id": m["id"],
            "sender_id": author,
        });
        // Preview `none`: no text at all reaches the providers.
        if preview != "none" {
            mkondo["sender_name"] = author_name.into();
        }
        if let Some(custom) = custom_data(&m["data"]["push"]) {
            mkondo["data"] = custom;
        }
        Ok(Context {
            conversation_id: conv.to_owned(),
            message_id: m["id"].as_str().unwrap_or_default().to_owned(),
            author_id: author.to_owned(),
            collapse_id: collapse_id(conv),
            title,
            body,
            mkondo,
        })
    }

    /// An app's provider clients, built from its settings and kept while
    /// they do not change; `None` when the app has no push settings.
    async fn push_clients(&self, app: &str) -> Result<Option<Arc<AppClients>>> {
        if let Some(cached) = self.push.apps.lock().expect("push clients").get(app) {
            if cached.read_at.elapsed() < SETTINGS_TTL {
                return Ok(Some(cached.clients.clone()));
            }
        }
        let Some(row) = self.store.push_settings(app).await? else {
            self.push.apps.lock().expect("push clients").remove(app);
            return Ok(None);
        };
        let mut apps = self.push.apps.lock().expect("push clients");
        if let Some(cached) = apps.get_mut(app) {
            if cached.updated_at == row.updated_at {
                cached.read_at = Instant::now();
                return Ok(Some(cached.clients.clone()));
            }
        }
        let clients = Arc::new(self.build_clients(app, &row)?);
        apps.insert(
            app.to_owned(),
            CachedClients {
                read_at: Instant::now(),
                updated_at: row.updated_at,
                clients: clients.clone(),
            },
        );
        Ok(Some(clients))
    }

    fn push_http(&self, http2_only: bool) -> Result<reqwest::Client> {
        let cell = if http2_only {
            &self.push.apns_http
        } else {
            &self.push.http
        };
        if let Some(http) = cell.get() {
            return Ok(http.clone());
        }
        let http = self
            .outbound()
            .push_client(self.config.push.timeout, http2_only)
            .map_err(|err| {
                tracing::error!(%err, "push: the HTTP client could not be built");
                Error::internal()
            })?;
        Ok(cell.get_or_init(|| http).clone())
    }

    /// The clients of the providers an app configured. A credential that no
    /// longer opens or parses (the server key changed) leaves that provider
    /// out, with a log line: its devices are not pushed until it is set again.
    fn build_clients(&self, app: &str, row: &PushSettingsRow) -> Result<AppClients> {
        let http = self.push_http(false)?;
        let apns_http = self.push_http(true)?;
        let config = &self.config.push;
        let open = |sealed: &str| -> Option<String> {
            let sealer = self.secrets().ok()?;
            String::from_utf8(sealer.open(sealed).ok()?).ok()
        };
        let unusable = |provider: &str| {
            tracing::error!(
                app,
                provider,
                "push: the app's credentials cannot be opened; set them again"
            );
        };
        let apns = (!row.apns_key.is_empty())
            .then(|| {
                let key = open(&row.apns_key).and_then(|pem| {
                    ApnsKey::from_p8(&pem, &row.apns_key_id, &row.apns_team_id).ok()
                });
                if key.is_none() {
                    unusable("apns");
                }
                key
            })
            .flatten()
            .map(|key| ApnsClients {
                production: ApnsClient::new(
                    apns_http.clone(),
                    config.apns_url.clone(),
                    key.clone(),
                ),
                sandbox: ApnsClient::new(apns_http.clone(), config.apns_sandbox_url.clone(), key),
                topic: row.apns_topic.clone(),
            });
        let fcm = (!row.fcm_service_account.is_empty())
            .then(|| {
                let account = open(&row.fcm_service_account)
                    .and_then(|json| ServiceAccount::from_json(&json).ok());
                if account.is_none() {
                    unusable("fcm");
                }
                account
            })
            .flatten()
            .map(|account| FcmClient::new(http.clone(), config.fcm_url.clone(), account));
        let web_push = (!row.vapid_private_key.is_empty())
            .then(|| {
                let client = open(&row.vapid_private_key)
                    .and_then(|key| VapidKey::from_private_base64url(&key).ok())
                    .and_then(|key| WebPushClient::new(http.clone(), key, &row.vapid_subject).ok());
                if client.is_none() {
                    unusable("webpush");
                }
                client
            })
            .flatten();
        Ok(AppClients {
            updated_at: row.updated_at,
            preview: row.preview.clone(),
            apns,
            fcm,
            web_push,
        })
    }

    /// Step 3: claims due sends while there is room and sends each in a task;
    /// a recorder task writes what became of them, many per transaction.
    async fn run_push_sender(self: Arc<Self>, owner: Arc<str>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SENDS));
        let tasks = tokio_util::task::TaskTracker::new();
        let shutdown = self.shutdown_signal();
        let (finished, results) = tokio::sync::mpsc::unbounded_channel();
        let recorder = tokio::spawn(self.clone().run_push_recorder(results));
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let free = slots.available_permits();
            let mut full = false;
            if free > 0 {
                let now = now_ms();
                match self
                    .store
                    .claim_push_sends(
                        &claim_token(&owner),
                        now,
                        now + self.push_lease_ms(),
                        free as u32,
                    )
                    .await
                {
                    Ok(sends) => {
                        full = sends.len() == free;
                        for send in sends {
                            // The slot is freed once the outcome is recorded:
                            // a slow database holds back new claims rather
                            // than letting leases run out on answered pushes.
                            let permit = slots.clone().acquire_owned().await.expect("never closed");
                            let (node, finished) = (self.clone(), finished.clone());
                            tasks.spawn(async move {
                                let finish = node.deliver(&send).await;
                                let _ = finished.send((send, finish, permit));
                            });
                        }
                    }
                    Err(err) => tracing::warn!(%err, "push: claiming sends failed; retrying"),
                }
            }
            if full {
                // More are due: claim again as soon as a slot frees up.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    permit = slots.clone().acquire_owned() => drop(permit),
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.push.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        tasks.close();
        let _ = tokio::time::timeout(self.config.push.timeout, tasks.wait()).await;
        drop(finished);
        let _ = recorder.await;
    }

    /// Writes the outcomes of finished sends: whatever finished while the
    /// previous batch was being written goes in one transaction.
    async fn run_push_recorder(
        self: Arc<Self>,
        mut results: tokio::sync::mpsc::UnboundedReceiver<Finished>,
    ) {
        while let Some(first) = results.recv().await {
            let mut batch = vec![first];
            while batch.len() < RECORD_BATCH {
                match results.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let outcomes: Vec<(&Send, &Finish)> = batch.iter().map(|(s, f, _)| (s, f)).collect();
            if let Err(err) = self.store.finish_push_sends(&outcomes).await {
                tracing::warn!(%err, sends = batch.len(),
                    "push: recording sends failed; their leases end and they are sent again");
            }
        }
    }

    /// Sends one push and says what becomes of it.
    async fn deliver(&self, send: &Send) -> Finish {
        let provider = provider_label(&send.provider);
        let started = Instant::now();
        let answer = self.send_push(send).await;
        metrics::histogram!("mkondo_push_send_seconds", "provider" => provider)
            .record(started.elapsed().as_secs_f64());
        let now = now_ms();
        let (label, finish) = match answer {
            Ok(Outcome::Accepted { .. }) => ("accepted", Finish::Done),
            Ok(Outcome::Gone { reason }) => {
                tracing::info!(app = %send.app_id, device = %send.device_id, provider, %reason,
                    "push: the provider says the device is gone; it is removed");
                ("gone", Finish::Gone)
            }
            Ok(Outcome::Rejected { status, reason }) => {
                tracing::warn!(app = %send.app_id, device = %send.device_id, provider, status, %reason,
                    "push: the provider refused a push for good");
                ("rejected", Finish::Done)
            }
            Ok(Outcome::Retry { after, reason }) => {
                tracing::debug!(app = %send.app_id, provider, %reason, "push: the provider asks to retry");
                self.retry_or_expire(send, after, now)
            }
            Ok(_) => ("rejected", Finish::Done),
            Err(SendError::Unconfigured) => ("unconfigured", Finish::Done),
            Err(SendError::Refused(why)) => {
                tracing::info!(app = %send.app_id, device = %send.device_id, %why,
                    "push: the device's endpoint is not allowed; it is removed");
                ("gone", Finish::Gone)
            }
            Err(SendError::Push(mkondo_push::Error::Invalid { field, reason })) => {
                tracing::warn!(app = %send.app_id, provider, field, %reason, "push: a push could not be made");
                ("rejected", Finish::Done)
            }
            Err(SendError::Paused) => self.retry_or_expire(send, Some(REFUSED_PAUSE), now),
            Err(err @ (SendError::Push(_) | SendError::Store | SendError::Timeout)) => {
                // No answer, or the database failing: tried again with
                // backoff until the push expires.
                tracing::warn!(app = %send.app_id, provider, %err, "push: sending failed; it is retried");
                self.retry_or_expire(send, None, now)
            }
        };
        metrics::counter!("mkondo_push_sends_total", "provider" => provider, "outcome" => label)
            .increment(1);
        finish
    }

    fn retry_or_expire(
        &self,
        send: &Send,
        after: Option<Duration>,
        now: i64,
    ) -> (&'static str, Finish) {
        let config = &self.config.push;
        let delay = crate::outbound::retry_delay(config.retry_min, config.retry_max, send.attempts)
            .max(after.unwrap_or_default());
        let next_at = now + delay.as_millis() as i64;
        if next_at >= send.expires_at {
            return ("expired", Finish::Done);
        }
        ("retry", Finish::Retry { next_at })
    }

    async fn send_push(&self, send: &Send) -> std::result::Result<Outcome, SendError> {
        let clients = self
            .push_clients(&send.app_id)
            .await
            .map_err(|_| SendError::Store)?
            .ok_or(SendError::Unconfigured)?;
        let family = provider_family(&send.provider);
        // APNs refuses a key per environment (`BadEnvironmentKeyInToken`): a
        // developer's sandbox device does not pause production pushes.
        let paused_as = if family == "apns" && send.sandbox {
            "apns_sandbox"
        } else {
            family
        };
        let refused = (send.app_id.clone(), paused_as);
        if self
            .push
            .refused
            .lock()
            .expect("refused credentials")
            .get(&refused)
            == Some(&clients.updated_at)
        {
            return Err(SendError::Paused);
        }
        let payload: Payload = serde_json::from_str(&send.payload).map_err(|_| {
            SendError::Push(mkondo_push::Error::Invalid {
                field: "payload",
                reason: "the queued payload cannot be read".into(),
            })
        })?;
        let ttl = Duration::from_millis((send.expires_at - now_ms()).max(0) as u64);
        // Within the lease, whatever the provider (or a token endpoint) does.
        let limit = self.config.push.timeout * 2;
        let answer = tokio::time::timeout(limit, self.provider_call(send, &clients, &payload, ttl))
            .await
            .map_err(|_| SendError::Timeout)?;
        if let Err(SendError::Push(mkondo_push::Error::Unauthorized { status, reason })) = &answer {
            let first = self
                .push
                .refused
                .lock()
                .expect("refused credentials")
                .insert(refused, clients.updated_at)
                != Some(clients.updated_at);
            if first {
                tracing::error!(app = %send.app_id, provider = paused_as, status, %reason,
                    "push: the provider refuses the app's credentials; its pushes wait until they are set again");
            }
            return Err(SendError::Paused);
        }
        answer
    }

    async fn provider_call(
        &self,
        send: &Send,
        clients: &AppClients,
        payload: &Payload,
        ttl: Duration,
    ) -> std::result::Result<Outcome, SendError> {
        let outcome = match send.provider.as_str() {
            "apns" | "apns_voip" => {
                let apns = clients.apns.as_ref().ok_or(SendError::Unconfigured)?;
                let client = if send.sandbox {
                    &apns.sandbox
                } else {
                    &apns.production
                };
                let topic = if send.topic.is_empty() {
                    &apns.topic
                } else {
                    &send.topic
                };
                client
                    .send(&apns_notification(send, topic, payload))
                    .await?
            }
            "fcm" => {
                let fcm = clients.fcm.as_ref().ok_or(SendError::Unconfigured)?;
                fcm.send(&fcm_message(send, payload, ttl)).await?
            }
            "webpush" => {
                let web_push = clients.web_push.as_ref().ok_or(SendError::Unconfigured)?;
                let subscription = Subscription::new(&send.token, &send.p256dh, &send.auth)?;
                self.outbound()
                    .check_parsed(subscription.endpoint())
                    .map_err(|e| SendError::Refused(e.to_string()))?;
                web_push
                    .send(&subscription, &web_push_message(send, payload, ttl))
                    .await?
            }
            _ => return Err(SendError::Unconfigured),
        };
        Ok(outcome)
    }
}

/// A token naming one claim of this node's worker (`owner`).
fn claim_token(owner: &str) -> String {
    format!("{owner}.{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A finished send on its way to the recorder, with its sender slot.
type Finished = (Send, Finish, tokio::sync::OwnedSemaphorePermit);

/// Why a push was not handed to a provider.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// The app's settings could not be read now.
    #[error("the database is unavailable")]
    Store,
    /// The provider refused the app's credentials: its pushes wait until
    /// the credentials change.
    #[error("the credentials were refused")]
    Paused,
    #[error("no answer in time")]
    Timeout,
    /// The app no longer has this provider (or push) configured.
    #[error("not configured")]
    Unconfigured,
    /// The Web Push endpoint is not one outbound calls may reach.
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Push(#[from] mkondo_push::Error),
}

/// What the pushes of one event share.
struct Context {
    conversation_id: String,
    message_id: String,
    author_id: String,
    collapse_id: String,
    title: Option<String>,
    body: Option<String>,
    mkondo: Value,
}

/// A backend notification's push: its `push` object's `title`, `body` and
/// `data` when it has one (the rest of the payload is the app's to fetch).
fn notification_context(n: &Value, preview: &str) -> Context {
    let id = n["id"].as_str().unwrap_or_default();
    let push = &n["payload"]["push"];
    let text = |key: &str| push[key].as_str().map(shorten);
    let (title, body) = match preview {
        "none" => (None, None),
        _ => (
            text("title"),
            Some(text("body").unwrap_or_else(|| "New notification".to_owned())),
        ),
    };
    let mut mkondo = json!({"type": "notification", "notification_id": id});
    if let Some(custom) = custom_data(&push["data"]) {
        mkondo["data"] = custom;
    }
    Context {
        conversation_id: String::new(),
        message_id: String::new(),
        author_id: String::new(),
        // Notifications do not replace each other.
        collapse_id: collapse_id(&format!("n:{id}")),
        title,
        body,
        mkondo,
    }
}

/// The job an event makes, if it is pushed: a user's message (system
/// messages are not pushed) or a backend notification.
fn job_of(event: &crate::store::events::StoredEvent) -> Option<NewJob> {
    match event.kind.as_str() {
        "message.created" => {
            let m = &event.data["message"];
            if m["kind"].as_str() == Some("system") {
                return None;
            }
            Some(NewJob {
                stream: event.conversation_id.clone()?,
                event_id: event.id.clone(),
                seq: m["seq"].as_i64()?,
                created_at: event.created_at,
            })
        }
        "notification.sent" => Some(NewJob {
            stream: format!("n:{}", event.id),
            event_id: event.id.clone(),
            seq: 0,
            created_at: event.created_at,
        }),
        _ => None,
    }
}

fn new_send(
    app: &str,
    r: Recipient,
    context: &Context,
    payload: &Payload,
    now: i64,
    expires_at: i64,
) -> Send {
    Send {
        app_id: app.to_owned(),
        id: mkondo_push::apns::new_apns_id(),
        device_id: r.device_id,
        user_id: r.user_id,
        conversation_id: context.conversation_id.clone(),
        message_id: context.message_id.clone(),
        author_id: context.author_id.clone(),
        provider: r.provider,
        token: r.token,
        p256dh: r.p256dh,
        auth: r.auth,
        topic: r.topic,
        sandbox: r.sandbox,
        collapse_id: context.collapse_id.clone(),
        payload: serde_json::to_string(payload).expect("a payload serializes"),
        created_at: now,
        expires_at,
        attempts: 0,
        lease_owner: None,
    }
}

fn distinct_users(recipients: &[Recipient]) -> Vec<String> {
    let mut users: Vec<String> = recipients.iter().map(|r| r.user_id.clone()).collect();
    users.sort();
    users.dedup();
    users
}

/// The collapse id of a conversation's pushes: 32 base64url characters of
/// its id's SHA-256, valid as an `apns-collapse-id`, an FCM collapse key
/// and a Web Push `Topic` alike (the last allows 32 base64url characters).
pub(crate) fn collapse_id(key: &str) -> String {
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    id.truncate(32);
    id
}

/// What a push shows for a message without text: its files ("📷 Photo",
/// "📷 3 photos", "📎 report.pdf", "📎 3 files"); empty without any.
fn attachments_text(attachments: &Value) -> String {
    let Some(list) = attachments.as_array().filter(|l| !l.is_empty()) else {
        return String::new();
    };
    let images = list.iter().all(|a| {
        a["content_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("image/"))
    });
    match (images, list.len()) {
        (true, 1) => "📷 Photo".to_owned(),
        (true, n) => format!("📷 {n} photos"),
        (false, 1) => format!("📎 {}", list[0]["name"].as_str().unwrap_or("File")),
        (false, n) => format!("📎 {n} files"),
    }
}

/// A message's text cut to what a push carries (on a character boundary).
fn shorten(text: &str) -> String {
    if text.len() <= MAX_BODY_BYTES {
        return text.to_owned();
    }
    let mut at = MAX_BODY_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}…", &text[..at])
}

/// The backend's custom data for a push, if it is an object small enough.
fn custom_data(value: &Value) -> Option<Value> {
    let object = value.as_object()?;
    let size = serde_json::to_string(object)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_CUSTOM_BYTES {
        metrics::counter!("mkondo_push_skipped_total", "reason" => "custom_data_too_large")
            .increment(1);
        return None;
    }
    Some(value.clone())
}

/// The provider a device's pushes go through (PushKit tokens: APNs).
fn provider_family(provider: &str) -> &'static str {
    match provider {
        "apns" | "apns_voip" => "apns",
        "fcm" => "fcm",
        "webpush" => "webpush",
        _ => "other",
    }
}

fn provider_label(provider: &str) -> &'static str {
    match provider {
        "apns" => "apns",
        "apns_voip" => "apns_voip",
        "fcm" => "fcm",
        "webpush" => "webpush",
        _ => "other",
    }
}

fn apns_notification(send: &Send, topic: &str, payload: &Payload) -> ApnsNotification {
    let mut custom = serde_json::Map::new();
    custom.insert("mkondo".into(), payload.mkondo.clone());
    let push_type = if payload.voip {
        PushType::Voip
    } else {
        PushType::Alert
    };
    let aps = if payload.voip {
        ApnsPayload {
            custom,
            ..Default::default()
        }
    } else {
        ApnsPayload {
            alert: (payload.title.is_some() || payload.body.is_some()).then(|| Alert {
                title: payload.title.clone().unwrap_or_default(),
                body: payload.body.clone().unwrap_or_default(),
            }),
            badge: Some(payload.badge.clamp(0, i64::from(u32::MAX)) as u32),
            // A sound with nothing shown would puzzle: preview `none` only
            // sets the badge.
            sound: (payload.title.is_some() || payload.body.is_some()).then(|| "default".into()),
            thread_id: (!payload.thread_id.is_empty()).then(|| payload.thread_id.clone()),
            mutable_content: true,
            content_available: false,
            custom,
        }
    };
    let mut n = ApnsNotification::new(&send.token, topic, push_type, &send.id, aps);
    n.expiration = Some((send.expires_at / 1000).max(0) as u64);
    n.collapse_id = (!payload.voip).then(|| send.collapse_id.clone());
    n
}

fn fcm_message(send: &Send, payload: &Payload, ttl: Duration) -> FcmMessage {
    let mut data = std::collections::BTreeMap::new();
    data.insert("mkondo".to_owned(), payload.mkondo.to_string());
    data.insert("badge".to_owned(), payload.badge.to_string());
    FcmMessage {
        token: send.token.clone(),
        data,
        // Preview `none`: a data-only message, the app builds what it shows.
        notification: (payload.title.is_some() || payload.body.is_some()).then(|| {
            FcmNotification {
                title: payload.title.clone().unwrap_or_default(),
                body: payload.body.clone().unwrap_or_default(),
            }
        }),
        android: AndroidConfig {
            // Replaces a message FCM still holds for the device…
            collapse_key: Some(send.collapse_id.clone()),
            // …and a notification already shown.
            tag: Some(send.collapse_id.clone()),
            notification_count: Some(payload.badge.clamp(0, i64::from(u32::MAX)) as u32),
            ttl: Some(ttl.min(mkondo_push::fcm::MAX_TTL)),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn web_push_message(send: &Send, payload: &Payload, ttl: Duration) -> WebPushMessage {
    let mut body = serde_json::to_value(payload).expect("a payload serializes");
    if let Some(object) = body.as_object_mut() {
        object.remove("thread_id");
        object.remove("voip");
        object.insert("tag".into(), send.collapse_id.clone().into());
    }
    WebPushMessage {
        payload: serde_json::to_vec(&body).expect("JSON serializes"),
        ttl,
        urgency: Urgency::High,
        topic: Some(send.collapse_id.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_of_files_alone_says_what_it_carries() {
        let image = json!({"name": "a.jpg", "content_type": "image/jpeg"});
        let pdf = json!({"name": "report.pdf", "content_type": "application/pdf"});
        assert_eq!(attachments_text(&json!([image])), "📷 Photo");
        assert_eq!(attachments_text(&json!([image, image])), "📷 2 photos");
        assert_eq!(attachments_text(&json!([pdf])), "📎 report.pdf");
        assert_eq!(attachments_text(&json!([image, pdf])), "📎 2 files");
        assert_eq!(attachments_text(&json!([])), "");
        assert_eq!(attachments_text(&Value::Null), "");
    }

    #[test]
    fn collapse_ids_fit_every_provider() {
        let id = collapse_id("a conversation id that is rather long, with spaces and ünïcode");
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(
            id,
            collapse_id("a conversation id that is rather long, with spaces and ünïcode")
        );
        assert_ne!(collapse_id("c1"), collapse_id("c2"));
    }

    #[test]
    fn long_texts_are_cut_on_a_character_within_the_byte_budget() {
        for text in [
            "é".repeat(MAX_BODY_BYTES),
            "漢".repeat(MAX_BODY_BYTES),
            "a".repeat(5_000),
        ] {
            let short = shorten(&text);
            assert!(short.len() <= MAX_BODY_BYTES, "{}", short.len());
            assert!(short.len() > MAX_BODY_BYTES - 8, "{}", short.len());
            assert!(short.ends_with('…'));
        }
        assert_eq!(shorten("hi"), "hi");
    }

    #[test]
    fn custom_data_is_an_object_within_its_cap() {
        assert_eq!(custom_data(&json!({"a": 1})), Some(json!({"a": 1})));
        assert_eq!(custom_data(&json!("text")), None);
        assert_eq!(
            custom_data(&json!({"a": "x".repeat(MAX_CUSTOM_BYTES)})),
            None
        );
    }
}
