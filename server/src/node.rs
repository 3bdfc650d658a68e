//! The node: one executor for every interface. REST handlers, the Admin API and
//! real-time sessions all call these operations, so the rules (membership,
//! roles, limits) and the fan-out that follows a change exist once.
//!
//! Ordering: a conversation's messages are published in seq order. `send_message`
//! holds a striped per-conversation lock across "allocate seq + commit + publish",
//! so two senders cannot publish seq 6 before seq 5.

use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use mkondo_proto::v1::{self, push::Push};
use mkondo_proto::ErrorCode;
use tokio::sync::Mutex;

use crate::auth::{self, TokenClaims, TokenError, TokenPolicy};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::realtime::broker::{Broker, Event, Payload, Target};
use crate::realtime::hub::Hub;
use crate::realtime::outbound::Outbound;
use crate::realtime::presence::{AppState, PresenceManager, Status, UserPresence};
use crate::store::messages::HistoryQuery;
use crate::store::{
    self, users::UserPatch, Conversation, Member, NewGroup, NewMessage, Role, Sent, Store, User,
};
use crate::views;

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
    pub store: Store,
    pub config: Config,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn PresenceManager>,
    pub shutdown: tokio_util::sync::CancellationToken,
    locks: Vec<Mutex<()>>,
    typing: DashMap<(String, String), Vec<(String, i64)>>,
    started: Instant,
}

impl Node {
    pub fn new(
        store: Store,
        config: Config,
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
        presence: Arc<dyn PresenceManager>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            config,
            hub,
            broker,
            presence,
            shutdown: Default::default(),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            typing: DashMap::new(),
            started: Instant::now(),
        })
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    fn conversation_lock(&self, app: &str, conv: &str) -> &Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (app, conv).hash(&mut h);
        &self.locks[(h.finish() as usize) % LOCK_STRIPES]
    }

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
        result
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
        let issued_ms = claims.iat.unwrap_or(0) * 1000;
        if issued_ms < app.tokens_valid_after {
            return Err(Error::new(ErrorCode::InvalidToken, "token revoked").with_reason("revoked"));
        }
        if let Some(user) = self.store.get_user(&claims.app_id, &claims.user_id).await? {
            if user.deactivated {
                return Err(Error::denied("user is deactivated").with_reason("user_deactivated"));
            }
            if issued_ms < user.tokens_valid_after {
                return Err(
                    Error::new(ErrorCode::InvalidToken, "token revoked").with_reason("revoked")
                );
            }
        }
        Ok(claims)
    }

    /// The user behind a verified token, created from its claims on first connect,
    /// joined to the conversations its `groups` claim names.
    pub async fn user_for_claims(&self, claims: &TokenClaims) -> Result<User> {
        let app = &claims.app_id;
        let user = match self.store.get_user(app, &claims.user_id).await? {
            Some(user) => user,
            None if self.config.limits.auto_create_users => {
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
                return Err(Error::unauthenticated("unknown user").with_reason("unknown_user"));
            }
        };
        for group in &claims.groups {
            self.join_group_from_token(app, &claims.user_id, group)
                .await?;
        }
        Ok(user)
    }

    async fn join_group_from_token(&self, app: &str, user: &str, group: &str) -> Result<()> {
        if !store::valid_conversation_id(group) {
            return Err(Error::invalid(format!(
                "groups claim names an invalid conversation id: {group}"
            )));
        }
        match self.store.get_conversation(app, group, None).await? {
            Some(conv) if conv.kind == store::Kind::Direct => Err(Error::invalid(
                "the groups claim cannot name a direct conversation",
            )),
            Some(_) => {
                let added = self
                    .store
                    .add_members(app, group, &[user.to_owned()], Role::Member)
                    .await?;
                self.announce_joined(app, group, &added).await
            }
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
                        let added = self
                            .store
                            .add_members(app, group, &[user.to_owned()], Role::Member)
                            .await?;
                        self.announce_joined(app, group, &added).await
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    // ----- conversations

    /// A conversation the actor may see (members only, for users).
    pub async fn visible_conversation(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
    ) -> Result<Conversation> {
        let viewer = match actor {
            Actor::User(u) => Some(u),
            Actor::Backend => None,
        };
        let c = self
            .store
            .get_conversation(app, conv, viewer)
            .await?
            .ok_or_else(|| Error::not_found("conversation"))?;
        if viewer.is_some() && c.viewer.is_none() {
            return Err(Error::denied("not a member of this conversation"));
        }
        Ok(c)
    }

    /// A conversation in wire form for `viewer`, with the direct peer and their presence.
    pub async fn conversation_view(
        &self,
        app: &str,
        viewer: &str,
        c: &Conversation,
    ) -> Result<v1::Conversation> {
        let Some(peer_id) = c.peer_of(viewer) else {
            return Ok(views::conversation(c, None, None));
        };
        let peer = self.store.get_user(app, peer_id).await?;
        let presence = self.presence_of(app, &[peer_id.to_owned()]).await?;
        Ok(views::conversation(c, peer.as_ref(), presence.first()))
    }

    pub async fn create_group(
        &self,
        app: &str,
        actor: Actor<'_>,
        mut group: NewGroup,
    ) -> Result<Conversation> {
        match actor {
            Actor::User(u) => {
                group.creator = Some(u.to_owned());
                self.require_users(app, &group.members).await?;
            }
            Actor::Backend => self.ensure_users(app, &group.members).await?,
        }
        if group.members.len() > 1000 {
            return Err(Error::invalid("at most 1000 members at creation"));
        }
        let conv = self.store.create_group(app, group).await?;
        let members = self.store.member_ids(app, &conv.id).await?;
        self.publish(
            app,
            Target {
                users: members,
                ..Default::default()
            },
            Push::ConversationUpdated(v1::ConversationUpdated {
                conversation: Some(views::conversation(&conv, None, None)),
            }),
        )
        .await?;
        Ok(conv)
    }

    pub async fn start_direct(
        &self,
        app: &str,
        a: &str,
        b: &str,
        create_missing: bool,
    ) -> Result<Conversation> {
        self.start_direct_created(app, a, b, create_missing)
            .await
            .map(|(conv, _)| conv)
    }

    /// `start_direct`, also telling whether the conversation was created now
    /// (REST answers 201 then, 200 for an existing one).
    pub async fn start_direct_created(
        &self,
        app: &str,
        a: &str,
        b: &str,
        create_missing: bool,
    ) -> Result<(Conversation, bool)> {
        if create_missing {
            self.ensure_users(app, &[a.to_owned(), b.to_owned()])
                .await?;
        } else {
            self.require_users(app, &[b.to_owned()]).await?;
        }
        let (conv, created) = self.store.direct_conversation(app, a, b).await?;
        if created {
            self.publish(
                app,
                Target {
                    users: vec![a.to_owned(), b.to_owned()],
                    ..Default::default()
                },
                Push::ConversationUpdated(v1::ConversationUpdated {
                    conversation: Some(views::conversation(&conv, None, None)),
                }),
            )
            .await?;
        }
        Ok((conv, created))
    }

    pub async fn add_members(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        users: &[String],
    ) -> Result<Vec<Member>> {
        if users.is_empty() || users.len() > 1000 {
            return Err(Error::invalid("give 1 to 1000 user ids"));
        }
        let c = self.visible_conversation(app, actor, conv).await?;
        if c.kind == store::Kind::Direct {
            return Err(Error::invalid(
                "a direct conversation has exactly two members",
            ));
        }
        match actor {
            Actor::User(_) => {
                require_role(&c, Role::Admin)?;
                self.require_users(app, users).await?;
            }
            Actor::Backend => self.ensure_users(app, users).await?,
        }
        let added = self
            .store
            .add_members(app, conv, users, Role::Member)
            .await?;
        self.announce_joined(app, conv, &added).await?;
        Ok(added)
    }

    async fn announce_joined(&self, app: &str, conv: &str, added: &[Member]) -> Result<()> {
        if added.is_empty() {
            return Ok(());
        }
        let members = self.store.member_ids(app, conv).await?;
        for m in added {
            let user = self.store.get_user(app, &m.user_id).await?;
            let c = self
                .store
                .get_conversation(app, conv, Some(&m.user_id))
                .await?;
            self.publish(
                app,
                Target {
                    users: members.clone(),
                    ..Default::default()
                },
                Push::MemberJoined(v1::MemberJoined {
                    conversation_id: conv.to_owned(),
                    member: Some(views::member(m)),
                    user: user.as_ref().map(views::user),
                    conversation: c.as_ref().map(|c| views::conversation(c, None, None)),
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// Removes `user` from `conv`: themselves (leave), or by an admin / the backend.
    pub async fn remove_member(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        user: &str,
    ) -> Result<()> {
        let c = self.visible_conversation(app, actor, conv).await?;
        if c.kind == store::Kind::Direct && matches!(actor, Actor::User(_)) {
            return Err(Error::invalid(
                "cannot leave a direct conversation; hide it instead",
            ));
        }
        let removed_by_other = match actor {
            Actor::User(me) if me == user => false,
            Actor::User(_) => {
                require_role(&c, Role::Admin)?;
                if let Some(target) = self.store.member(app, conv, user).await? {
                    if target.role == Role::Owner
                        && c.viewer.as_ref().is_some_and(|v| v.role != Role::Owner)
                    {
                        return Err(Error::denied("only an owner can remove an owner"));
                    }
                }
                true
            }
            Actor::Backend => true,
        };
        let mut targets = self.store.member_ids(app, conv).await?;
        if !self.store.remove_member(app, conv, user).await? {
            return Err(Error::not_found("member"));
        }
        if !targets.iter().any(|t| t == user) {
            targets.push(user.to_owned());
        }
        self.publish(
            app,
            Target {
                users: targets,
                ..Default::default()
            },
            Push::MemberLeft(v1::MemberLeft {
                conversation_id: conv.to_owned(),
                user_id: user.to_owned(),
                removed: removed_by_other,
            }),
        )
        .await
    }

    pub async fn update_conversation(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        name: Option<&str>,
        icon_url: Option<&str>,
        data: Option<&serde_json::Value>,
    ) -> Result<Conversation> {
        let c = self.visible_conversation(app, actor, conv).await?;
        if matches!(actor, Actor::User(_)) {
            require_role(&c, Role::Admin)?;
        }
        self.store
            .update_conversation(app, conv, name, icon_url, data)
            .await?;
        let updated = self.visible_conversation(app, actor, conv).await?;
        let members = self.store.member_ids(app, conv).await?;
        self.publish(
            app,
            Target {
                users: members,
                ..Default::default()
            },
            Push::ConversationUpdated(v1::ConversationUpdated {
                conversation: Some(views::conversation(&updated, None, None)),
            }),
        )
        .await?;
        Ok(updated)
    }

    // ----- messages

    pub async fn send_message(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        msg: NewMessage,
    ) -> Result<Sent> {
        store::messages::check_new_message(&msg)?;
        let members = self.store.member_ids(app, conv).await?;
        if members.is_empty()
            && self
                .store
                .get_conversation(app, conv, None)
                .await?
                .is_none()
        {
            return Err(Error::not_found("conversation"));
        }
        let sender_is_member = members.contains(&msg.sender_id);
        match actor {
            Actor::User(u) if u != msg.sender_id => {
                return Err(Error::denied("cannot send as another user"))
            }
            _ if msg.kind == "system" => {}
            _ if !sender_is_member => {
                return Err(Error::denied(
                    "the sender is not a member of this conversation",
                ))
            }
            _ => {}
        }
        let _ordered = self.conversation_lock(app, conv).lock().await;
        let sent = self.store.send_message(app, conv, &msg).await?;
        if !sent.duplicate {
            metrics::counter!("mkondo_messages_total").increment(1);
            self.typing_stopped(app, conv, &msg.sender_id);
            self.publish(
                app,
                Target {
                    users: members,
                    ..Default::default()
                },
                Push::Message(views::message(&sent.message)),
            )
            .await?;
        }
        Ok(sent)
    }

    /// History the actor may read: users see nothing at or before their cleared_seq.
    pub async fn history(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        query: &HistoryQuery,
    ) -> Result<store::Page<store::Message>> {
        let c = self.visible_conversation(app, actor, conv).await?;
        let floor = c.viewer.as_ref().map_or(0, |v| v.cleared_seq);
        self.store.history_page(app, conv, query, floor).await
    }

    pub async fn mark_read(
        &self,
        app: &str,
        user: &str,
        conv: &str,
        seq: i64,
    ) -> Result<(i64, i64)> {
        self.visible_conversation(app, Actor::User(user), conv)
            .await?;
        let (read, unread) = self.store.mark_read(app, conv, user, seq).await?;
        let members = self.store.member_ids(app, conv).await?;
        self.publish(
            app,
            Target {
                users: members,
                ..Default::default()
            },
            Push::Read(v1::ReadPush {
                conversation_id: conv.to_owned(),
                user_id: user.to_owned(),
                last_read_seq: read as u64,
                unread_count: unread as u64,
            }),
        )
        .await?;
        Ok((read, unread))
    }

    // ----- ephemeral: typing and presence

    pub async fn typing(&self, app: &str, user: &str, conv: &str, stop: bool) -> Result<()> {
        if self.store.member(app, conv, user).await?.is_none() {
            return Err(self.not_member_error(app, conv).await);
        }
        if stop {
            self.typing_stopped(app, conv, user);
        } else {
            let now = store::now_ms();
            let mut entry = self
                .typing
                .entry((app.to_owned(), conv.to_owned()))
                .or_default();
            entry.retain(|(u, at)| u != user && now - at < TYPING_TTL_MS);
            entry.push((user.to_owned(), now));
        }
        self.publish(
            app,
            Target {
                subscribers_of: vec![conv.to_owned()],
                except_users: vec![user.to_owned()],
                ..Default::default()
            },
            Push::Typing(v1::TypingPush {
                conversation_id: conv.to_owned(),
                user_id: user.to_owned(),
                stop,
            }),
        )
        .await
    }

    fn typing_stopped(&self, app: &str, conv: &str, user: &str) {
        self.typing
            .remove_if_mut(&(app.to_owned(), conv.to_owned()), |_, list| {
                list.retain(|(u, _)| u != user);
                list.is_empty()
            });
    }

    /// Users typing in `conv` now.
    pub fn typing_now(&self, app: &str, conv: &str) -> Vec<String> {
        let now = store::now_ms();
        self.typing
            .get(&(app.to_owned(), conv.to_owned()))
            .map(|list| {
                list.iter()
                    .filter(|(_, at)| now - at < TYPING_TTL_MS)
                    .map(|(u, _)| u.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn not_member_error(&self, app: &str, conv: &str) -> Error {
        match self.store.get_conversation(app, conv, None).await {
            Ok(Some(_)) => Error::denied("not a member of this conversation"),
            Ok(None) => Error::not_found("conversation"),
            Err(e) => e,
        }
    }

    /// Presence of these users: live status, else offline with the stored last_seen.
    pub async fn presence_of(&self, app: &str, users: &[String]) -> Result<Vec<UserPresence>> {
        let live = self.presence.get(app, users).await;
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            match live.iter().find(|p| p.user_id == *u) {
                Some(p) if p.status != Status::Offline => out.push(p.clone()),
                found => {
                    let stored = self
                        .store
                        .get_user(app, u)
                        .await?
                        .and_then(|u| u.last_seen)
                        .map(|m| m.0);
                    let last_seen = match (found.and_then(|p| p.last_seen), stored) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    out.push(UserPresence {
                        user_id: u.clone(),
                        status: Status::Offline,
                        last_seen,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Presence a user may ask for: people who share a conversation with them.
    pub async fn visible_presence(
        &self,
        app: &str,
        viewer: &str,
        users: &[String],
    ) -> Result<Vec<UserPresence>> {
        if users.len() > 100 {
            return Err(Error::invalid("at most 100 user ids"));
        }
        let mine = self.store.conversation_ids_of(app, viewer).await?;
        let mut visible = Vec::new();
        for u in users {
            if u == viewer {
                visible.push(u.clone());
                continue;
            }
            let theirs = self.store.conversation_ids_of(app, u).await?;
            if theirs.iter().any(|c| mine.contains(c)) {
                visible.push(u.clone());
            }
        }
        self.presence_of(app, &visible).await
    }

    /// Records a connection's app state and tells the people who may see it.
    pub async fn set_presence(
        &self,
        app: &str,
        user: &str,
        conn: u64,
        state: AppState,
    ) -> Result<()> {
        if let Some(status) = self
            .presence
            .set(app, user, conn, state, store::now_ms())
            .await
        {
            self.announce_presence(app, user, status).await?;
        }
        Ok(())
    }

    pub async fn drop_presence(&self, app: &str, user: &str, conn: u64) -> Result<()> {
        let now = store::now_ms();
        if let Some(status) = self.presence.remove(app, user, conn, now).await {
            if status == Status::Offline {
                self.store.set_last_seen(app, user, now).await?;
            }
            self.announce_presence(app, user, status).await?;
        }
        Ok(())
    }

    /// Presence goes to direct contacts and to subscribers of the user's conversations,
    /// never to every member of a large group.
    async fn announce_presence(&self, app: &str, user: &str, status: Status) -> Result<()> {
        let contacts = self.store.contacts(app, user).await?;
        let convs = self.store.conversation_ids_of(app, user).await?;
        let presence = UserPresence {
            user_id: user.to_owned(),
            status,
            last_seen: Some(store::now_ms()),
        };
        self.publish(
            app,
            Target {
                users: contacts,
                subscribers_of: convs,
                except_users: vec![user.to_owned()],
            },
            Push::Presence(views::presence(&presence)),
        )
        .await
    }

    // ----- helpers

    async fn require_users(&self, app: &str, users: &[String]) -> Result<()> {
        for u in users {
            if self.store.get_user(app, u).await?.is_none() {
                return Err(Error::not_found(&format!("user {u}")));
            }
        }
        Ok(())
    }

    /// The backend may name users that do not exist yet: they are created empty.
    async fn ensure_users(&self, app: &str, users: &[String]) -> Result<()> {
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

fn require_role(c: &Conversation, at_least: Role) -> Result<()> {
    match &c.viewer {
        Some(v) if v.role >= at_least => Ok(()),
        _ => Err(Error::denied(format!(
            "requires the {} role",
            at_least.as_str()
        ))),
    }
}
