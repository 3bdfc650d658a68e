//! Ephemeral state: typing and presence, with who may see them.

use std::sync::Arc;

use mkondo_proto::v1::{self, push::Push};

use super::requests::{distinct, MAX_PRESENCE_USERS};
use super::Node;
use crate::engine::broker::Target;
use crate::engine::presence::{AppState, Status, UserPresence};
use crate::error::{Error, Result};
use crate::store;
use crate::views;

impl Node {
    // ----- ephemeral: typing and presence

    pub async fn typing(&self, app: &str, user: &str, conv: &str, stop: bool) -> Result<()> {
        if self.store.member(app, conv, user).await?.is_none() {
            return Err(self.not_member_error());
        }
        if stop {
            self.typing_stopped(app, conv, user);
        } else {
            self.typing.started(app, conv, user, store::now_ms());
        }
        let mut except_users = self.block_peers(app, user).await?;
        except_users.push(user.to_owned());
        self.publish(
            app,
            Target {
                subscribers_of: vec![conv.to_owned()],
                except_users,
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

    pub(crate) fn typing_stopped(&self, app: &str, conv: &str, user: &str) {
        self.typing.stopped(app, conv, user);
    }

    /// Users typing in `conv` now, as `viewer` may see them (not themself, nobody
    /// with a block between them).
    pub async fn typing_seen_by(&self, app: &str, viewer: &str, conv: &str) -> Result<Vec<String>> {
        let mut typing = self.typing_now(app, conv);
        let hidden = self.block_peers(app, viewer).await?;
        typing.retain(|u| u != viewer && !hidden.contains(u));
        Ok(typing)
    }

    /// Users typing in `conv` now.
    pub fn typing_now(&self, app: &str, conv: &str) -> Vec<String> {
        self.typing.typing(app, conv, store::now_ms())
    }

    /// Drops expired typing entries every typing interval until shutdown, so
    /// the map holds only conversations where someone typed lately.
    pub async fn run_typing_sweep(self: Arc<Self>) {
        let every = std::time::Duration::from_millis(self.typing.ttl_ms().unsigned_abs());
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => self.typing.sweep(store::now_ms()),
            }
        }
    }

    /// What a user is told about a conversation they are not in: `not_found`,
    /// as for one that does not exist, so ids cannot be probed.
    pub(crate) fn not_member_error(&self) -> Error {
        Error::not_found("conversation")
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

    /// `presence_of`, leaving out the users with a block between them and `viewer`.
    pub async fn presence_seen_by(
        &self,
        app: &str,
        viewer: &str,
        users: &[String],
    ) -> Result<Vec<UserPresence>> {
        let hidden = self.block_peers(app, viewer).await?;
        let seen: Vec<String> = users
            .iter()
            .filter(|u| !hidden.contains(u))
            .cloned()
            .collect();
        self.presence_of(app, &seen).await
    }

    /// Presence a user may ask for: people who share a conversation with them
    /// and have no block between them.
    pub async fn visible_presence(
        &self,
        app: &str,
        viewer: &str,
        users: &[String],
    ) -> Result<Vec<UserPresence>> {
        let users = distinct(users.to_vec(), MAX_PRESENCE_USERS, "user_ids")?;
        let peers = self.store.peers_among(app, viewer, &users).await?;
        let blocked = self.block_peers(app, viewer).await?;
        let visible: Vec<String> = users
            .into_iter()
            .filter(|u| u == viewer || (peers.contains(u) && !blocked.contains(u)))
            .collect();
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
    /// never to every member of a large group, nor to anyone with a block between them.
    pub(crate) async fn announce_presence(
        &self,
        app: &str,
        user: &str,
        status: Status,
    ) -> Result<()> {
        let contacts = self.store.contacts(app, user).await?;
        let convs = self.store.conversation_ids_of(app, user).await?;
        let mut except_users = self.block_peers(app, user).await?;
        except_users.push(user.to_owned());
        let presence = UserPresence {
            user_id: user.to_owned(),
            status,
            last_seen: Some(store::now_ms()),
        };
        self.queue_presence_webhook(app, &presence);
        self.publish(
            app,
            Target {
                users: contacts,
                subscribers_of: convs,
                except_users,
                ..Default::default()
            },
            Push::Presence(views::presence(&presence)),
        )
        .await
    }

    /// Runs the presence engine's upkeep until shutdown (refreshing this node's
    /// entries, removing a crashed node's) and announces the status changes it
    /// finds, as a disconnect on this node would have.
    pub async fn run_presence_upkeep(self: Arc<Self>) {
        let Some(every) = self.presence.upkeep_interval() else {
            return;
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for change in self.presence.upkeep(store::now_ms()).await {
                if change.status == Status::Offline {
                    if let Err(err) = self
                        .store
                        .set_last_seen(&change.app, &change.user, change.last_seen)
                        .await
                    {
                        tracing::warn!(%err, "storing last seen failed");
                    }
                }
                tracing::debug!(user = %change.user, status = change.status.as_str(), "presence expired");
                if let Err(err) = self
                    .announce_presence(&change.app, &change.user, change.status)
                    .await
                {
                    tracing::warn!(%err, "announcing a presence change failed");
                }
            }
        }
    }
}
