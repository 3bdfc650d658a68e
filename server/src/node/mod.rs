//! The node: one executor for every interface. REST handlers, the Admin API and
//! real-time sessions all call these operations, so the rules (membership,
//! roles, limits) and the fan-out that follows a change exist once.
//!
//! Ordering: a conversation's messages are published in seq order. `send_message`
//! holds a striped per-conversation lock across "allocate seq + commit + publish",
//! so two senders cannot publish seq 6 before seq 5.

pub mod apps;
mod conversations;
pub mod devices;
pub mod events;
pub mod files;
mod floods;
pub mod hooks;
pub mod lifecycle;
mod membership;
mod message_changes;
mod messages;
pub mod origins;
mod people;
mod presence;
pub mod push_settings;
mod push_worker;
pub mod requests;
mod sessions;
pub mod social;
mod webhook_worker;
pub mod webhooks;

pub use apps::{DemoApp, NotReady};
pub use floods::{Bucket, ClientAddr, Rate};
pub use sessions::{Replay, Subscription};

use std::sync::Arc;
use std::time::Instant;

use mkondo_proto::v1::push::Push;
use mkondo_proto::{ErrorCode, Reason};
use tokio::sync::Mutex;

use crate::auth::{self, TokenClaims, TokenError, TokenPolicy};
use crate::config::Config;
use crate::engine::broker::{Broker, Event, Payload, Target};
use crate::engine::hub::Hub;
use crate::engine::outbound::Outbound;
use crate::engine::presence::PresenceManager;
use crate::engine::typing::TypingMap;
use crate::error::{Error, Result};
use crate::store::{self, users::UserPatch, Conversation, NewGroup, Role, Store, User};
use requests::{distinct, MAX_TOKEN_GROUPS};

const LOCK_STRIPES: usize = 256;
pub const TYPING_TTL_MS: i64 = 6_000;

/// Who performs an operation.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// A user holding a token: sees and does only what that user may.
    User(&'a str),
    /// The customer's backend (an API key): everything in the app.
    Backend,
}

pub struct Node {
    store: Store,
    config: Config,
    hub: Arc<Hub>,
    broker: Arc<dyn Broker>,
    presence: Arc<dyn PresenceManager>,
    shutdown: tokio_util::sync::CancellationToken,
    /// Every session until its transport is closed (its goodbye written), so a
    /// graceful shutdown can wait for them: upgraded WebSockets are not
    /// connections axum's graceful shutdown waits for.
    sessions: tokio_util::task::TaskTracker,
    /// Permits for `connect` commands in progress (`max_concurrent_connects`).
    connect_gate: Arc<tokio::sync::Semaphore>,
    /// Rate limits per principal and per client address, the request cap.
    floods: floods::Floods,
    locks: Vec<Mutex<()>>,
    typing: TypingMap,
    /// Every app's allowed origins together, for preflights (`origins.rs`).
    origin_union: origins::UnionCache,
    /// The client for webhooks and the before-send hook (`outbound`).
    outbound: crate::outbound::OutboundClient,
    /// Seals the secrets those calls are signed with; `None` on PostgreSQL
    /// without `--secrets-key` (see [`Node::secrets`]).
    secrets: Option<crate::outbound::secrets::SecretBox>,
    /// The before-send hooks read lately (`hooks.rs`).
    hooks: hooks::HookCache,
    /// Presence changes waiting for the webhook worker (opt-in, best-effort).
    presence_changes: webhook_worker::PresenceQueue,
    /// The push worker's clients and wake-up (`push_worker.rs`).
    push: push_worker::PushState,
    /// Where files live, uploads arriving, image decode permits (`files.rs`).
    files: files::FilesState,
    /// The push worker's task, waited for at shutdown (it records what it
    /// sent before the store closes).
    workers: tokio_util::task::TaskTracker,
    started: Instant,
}

impl Node {
    pub fn new(
        store: Store,
        config: Config,
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
        presence: Arc<dyn PresenceManager>,
        outbound: crate::outbound::OutboundClient,
        secrets: Option<crate::outbound::secrets::SecretBox>,
    ) -> anyhow::Result<Arc<Self>> {
        let connect_gate = Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_concurrent_connects,
        ));
        let floods = floods::Floods::new(&config);
        let files = files::FilesState::new(&config.files)?;
        Ok(Arc::new(Self {
            store,
            config,
            floods,
            hub,
            broker,
            presence,
            shutdown: Default::default(),
            sessions: Default::default(),
            connect_gate,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            typing: TypingMap::new(TYPING_TTL_MS),
            origin_union: Default::default(),
            outbound,
            secrets,
            hooks: Default::default(),
            presence_changes: Default::default(),
            push: Default::default(),
            files,
            workers: Default::default(),
            started: Instant::now(),
        }))
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The outbound HTTP client (webhooks, the before-send hook).
    pub(crate) fn outbound(&self) -> &crate::outbound::OutboundClient {
        &self.outbound
    }

    /// The box sealing webhook and hook secrets, or `unavailable` telling the
    /// operator to set `--secrets-key` (PostgreSQL without a key: the nodes
    /// must share one, so none is made up).
    pub(crate) fn secrets(&self) -> Result<&crate::outbound::secrets::SecretBox> {
        self.secrets.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::Unavailable,
                "this server has no secrets key: the operator must set --secrets-key or \
                 --secrets-key-file (the same on every node) before webhooks or hooks can be created",
            )
        })
    }

    pub(crate) fn conversation_lock(&self, app: &str, conv: &str) -> &Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (app, conv).hash(&mut h);
        &self.locks[(h.finish() as usize) % LOCK_STRIPES]
    }

    /// Fans a push out to every node. Called after the change it announces is
    /// committed, so a broker failure does not fail the call: the change stands,
    /// and clients that missed the push get it back through resume or a gap fill
    /// (a node that lost the broker makes its clients resume once it is back).
    pub async fn publish(&self, app: &str, target: Target, push: Push) -> Result<()> {
        let started = Instant::now();
        let result = self
            .broker
            .publish(Event {
                app: app.to_owned(),
                target,
                payload: Payload::Push(Outbound::push(push)),
            })
            .await;
        metrics::histogram!("mkondo_fanout_seconds").record(started.elapsed().as_secs_f64());
        if let Err(err) = result {
            metrics::counter!("mkondo_publish_failures_total").increment(1);
            tracing::warn!(%err, app, "a push was not published; clients recover it on resume");
        }
        Ok(())
    }

    /// Ends the target sessions' subscriptions to `conv` on every node (after
    /// the membership change is committed; see `Payload::Unsubscribe`).
    pub(crate) async fn end_subscriptions(&self, app: &str, target: Target, conv: &str) {
        let event = Event {
            app: app.to_owned(),
            target,
            payload: Payload::Unsubscribe(conv.to_owned()),
        };
        if let Err(err) = self.broker.publish(event).await {
            metrics::counter!("mkondo_publish_failures_total").increment(1);
            tracing::warn!(%err, app, "an unsubscribe was not published");
        }
    }

    // ----- authentication

    /// Verifies a user token and returns its claims; the user must not be
    /// deactivated and the token not issued before a revocation.
    pub async fn authenticate(&self, token: &str) -> Result<TokenClaims> {
        let header = auth::peek_header(token)?;
        let key = self
            .store
            .signing_key(&header.kid)
            .await?
            .ok_or(TokenError::UnknownKid)?;
        let policy = TokenPolicy {
            max_lifetime_secs: self.config.limits.max_token_lifetime_secs,
            leeway_secs: 30,
        };
        let claims = auth::verify(token, &key, &policy, chrono::Utc::now().timestamp())?;
        let app = self
            .store
            .get_app(&claims.app_id)
            .await?
            .ok_or(TokenError::WrongApp)?;
        let issued_ms = claims.issued_at_ms();
        if issued_ms < app.tokens_valid_after {
            return Err(
                Error::new(ErrorCode::InvalidToken, "token revoked").with_reason(Reason::Revoked)
            );
        }
        if let Some(user) = self.store.get_user(&claims.app_id, &claims.user_id).await? {
            if user.deactivated {
                return Err(
                    Error::denied("user is deactivated").with_reason(Reason::UserDeactivated)
                );
            }
            if issued_ms < user.tokens_valid_after {
                return Err(Error::new(ErrorCode::InvalidToken, "token revoked")
                    .with_reason(Reason::Revoked));
            }
        } else if let Some(deleted_at) = self
            .store
            .user_deleted_at(&claims.app_id, &claims.user_id)
            .await?
        {
            // A deleted user's old tokens must not bring them back (node/lifecycle.rs).
            if issued_ms < deleted_at {
                return Err(Error::new(ErrorCode::InvalidToken, "the user was deleted")
                    .with_reason(Reason::UserDeleted));
            }
        }
        Ok(claims)
    }

    /// The user behind a verified token, created from its claims on first connect
    /// (when both the server's and the app's `auto_create_users` allow it),
    /// joined to the conversations its `groups` claim names (at most 100,
    /// duplicates counted, checked before anything is written).
    pub async fn user_for_claims(&self, claims: &TokenClaims) -> Result<User> {
        let app = &claims.app_id;
        let groups = distinct(claims.groups.clone(), MAX_TOKEN_GROUPS, "the groups claim")?;
        let user = match self.store.get_user(app, &claims.user_id).await? {
            Some(user) => user,
            None if self.auto_create_users(app).await? => {
                let patch = UserPatch {
                    name: claims.name.clone(),
                    avatar_url: claims.avatar.clone(),
                    data: None,
                };
                self.store
                    .upsert_user(app, &claims.user_id, &patch)
                    .await?
                    .0
            }
            None => {
                return Err(Error::unauthenticated("unknown user").with_reason(Reason::UnknownUser));
            }
        };
        for group in &groups {
            self.join_group_from_token(app, &claims.user_id, group)
                .await?;
        }
        Ok(user)
    }

    /// Whether users unknown to `app` are created from their token's claims:
    /// the server-wide setting (`--auto-create-users`) and the app's own
    /// (`PATCH /v1/admin/apps/{app}`, on by default) must both allow it.
    async fn auto_create_users(&self, app: &str) -> Result<bool> {
        if !self.config.limits.auto_create_users {
            return Ok(false);
        }
        Ok(self
            .store
            .get_app(app)
            .await?
            .is_some_and(|a| a.auto_create_users))
    }

    pub(crate) async fn join_group_from_token(
        &self,
        app: &str,
        user: &str,
        group: &str,
    ) -> Result<()> {
        if !store::valid_conversation_id(group) {
            return Err(Error::invalid(format!(
                "groups claim names an invalid conversation id: {group}"
            )));
        }
        match self.store.get_conversation(app, group, None).await? {
            Some(conv) if conv.kind == store::Kind::Direct => Err(Error::invalid(
                "the groups claim cannot name a direct conversation",
            )),
            // A group a user created is not the backend's to join people to: its
            // id may have been taken ahead of the backend (see `created_by`).
            Some(conv) if conv.created_by.is_some() => {
                tracing::warn!(
                    app,
                    group,
                    "a groups claim names a group a user created; not joining"
                );
                Ok(())
            }
            Some(_) => self.join_from_token(app, group, user).await,
            None => {
                let created = self.store.create_group(
                    app,
                    NewGroup {
                        id: Some(group.to_owned()),
                        name: group.to_owned(),
                        members: vec![user.to_owned()],
                        ..Default::default()
                    },
                );
                match created.await {
                    Ok(_) => Ok(()),
                    // Created concurrently by another connection: join it.
                    Err(e) if e.code == ErrorCode::AlreadyExists => {
                        self.join_from_token(app, group, user).await
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    // ----- helpers

    pub(crate) async fn require_users(&self, app: &str, users: &[String]) -> Result<()> {
        for u in users {
            if self.store.get_user(app, u).await?.is_none() {
                return Err(Error::not_found(&format!("user {u}")));
            }
        }
        Ok(())
    }

    /// The backend may name users that do not exist yet: they are created empty.
    pub(crate) async fn ensure_users(&self, app: &str, users: &[String]) -> Result<()> {
        for u in users {
            if self.store.get_user(app, u).await?.is_none() {
                self.store
                    .upsert_user(app, u, &UserPatch::default())
                    .await?;
            }
        }
        Ok(())
    }
}

pub(crate) fn require_role(c: &Conversation, at_least: Role) -> Result<()> {
    match &c.viewer {
        Some(v) if v.role >= at_least => Ok(()),
        _ => Err(Error::denied(format!(
            "requires the {} role",
            at_least.as_str()
        ))),
    }
}
