//! Lifecycle and revocation: deactivate / reactivate and delete users, revoke
//! tokens (per user, per app), remove signing keys. Each change is committed
//! first, then the sessions it affects are told to close through the broker
//! (so every node closes its own), with a stop-range code: 3501
//! `user_deactivated`, 3502 `tokens_revoked`, 3505 `user_deleted`.
//!
//! Tokens carry `iat` in whole seconds, so a revocation at 12:00:00.400 cannot
//! tell a token signed at .300 from one signed at .500. It refuses both: the
//! revocation point is the start of the *next* second, and a token is refused
//! when `iat * 1000 < tokens_valid_after`. A token signed in the revocation's
//! second, before or after it, is refused; one with a later `iat` is accepted.
//!
//! A session that was being authenticated while a revocation ran could join the
//! hub just after the revocation looked for it; `recheck_token` closes that gap
//! (see `Hub::revocations`).

use std::sync::Arc;
use std::time::Duration;

use mkondo_proto::v1::{self, push::Push};
use mkondo_proto::{DisconnectCode, ErrorCode};

use super::Node;
use crate::auth::{self, TokenClaims};
use crate::engine::broker::{Event, Payload, Target};
use crate::engine::hub::TokenStamp;
use crate::error::{Error, Result};
use crate::store::{self, users::DeletedUser, Announce, Revocation, User};

/// How often a server looks for revocations made with the CLI.
pub const REVOCATION_POLL: Duration = Duration::from_millis(250);

/// The revocation point for a change made at `now_ms`: the start of the next
/// second (see the module doc).
pub fn revocation_point(now_ms: i64) -> i64 {
    (now_ms.div_euclid(1000) + 1) * 1000
}

impl Node {
    /// `authenticate`, also returning what revocations select a session by.
    pub async fn authenticate_stamped(&self, token: &str) -> Result<(TokenClaims, TokenStamp)> {
        let claims = self.authenticate(token).await?;
        let header = auth::peek_header(token)?;
        let stamp = TokenStamp {
            kid: Arc::from(header.kid.as_str()),
            issued_at_ms: claims.iat.unwrap_or(0).saturating_mul(1000),
        };
        Ok((claims, stamp))
    }

    /// Called once a session is in the hub, with `hub.revocations()` as read
    /// before its token was checked: if a revocation ran in between, the token
    /// is checked again.
    pub async fn recheck_token(&self, token: &str, revocations_before: u64) -> Result<()> {
        if self.hub.revocations() == revocations_before {
            return Ok(());
        }
        self.authenticate(token).await.map(|_| ())
    }

    /// Closes the sessions `target` selects, on every node.
    pub async fn disconnect(&self, app: &str, target: Target, code: DisconnectCode) -> Result<()> {
        self.broker
            .publish(Event {
                app: app.to_owned(),
                target,
                payload: Payload::Disconnect(code),
            })
            .await
    }

    /// Refuses the user's tokens and closes their sessions (3501) until reactivated.
    pub async fn deactivate_user(&self, app: &str, id: &str) -> Result<User> {
        let user = self
            .store
            .set_deactivated(app, id, true)
            .await?
            .ok_or_else(|| Error::not_found("user"))?;
        let target = Target {
            users: vec![id.to_owned()],
            ..Default::default()
        };
        self.disconnect(app, target, DisconnectCode::UserDeactivated)
            .await?;
        Ok(user)
    }

    /// Lets the user connect again, with any token not otherwise refused (tokens
    /// issued before the deactivation included; revoke them to refuse them too).
    pub async fn reactivate_user(&self, app: &str, id: &str) -> Result<User> {
        self.store
            .set_deactivated(app, id, false)
            .await?
            .ok_or_else(|| Error::not_found("user"))
    }

    /// Refuses the user's tokens issued up to now and closes their sessions
    /// holding one (3502). Returns the revocation point (unix ms).
    pub async fn revoke_user_tokens(&self, app: &str, id: &str) -> Result<i64> {
        let point = revocation_point(store::now_ms());
        if !self.store.revoke_user_tokens(app, id, point).await? {
            return Err(Error::not_found("user"));
        }
        let target = Target {
            users: vec![id.to_owned()],
            issued_before_ms: Some(point),
            ..Default::default()
        };
        self.disconnect(app, target, DisconnectCode::TokensRevoked)
            .await?;
        Ok(point)
    }

    /// Refuses every token of the app issued up to now and closes the sessions
    /// holding one (3502). Returns the revocation point (unix ms).
    pub async fn revoke_app_tokens(&self, app: &str) -> Result<i64> {
        let point = revocation_point(store::now_ms());
        if !self
            .store
            .revoke_app_tokens(app, point, Announce::No)
            .await?
        {
            return Err(Error::not_found("app"));
        }
        let target = Target {
            whole_app: true,
            issued_before_ms: Some(point),
            ..Default::default()
        };
        self.disconnect(app, target, DisconnectCode::TokensRevoked)
            .await?;
        Ok(point)
    }

    /// Removes a signing key (never the app's last) and closes the sessions whose
    /// current token it signed (3502).
    pub async fn remove_signing_key(&self, app: &str, kid: &str) -> Result<()> {
        self.store
            .remove_signing_key(app, kid, Announce::No)
            .await?;
        let target = Target {
            whole_app: true,
            kid: Some(kid.to_owned()),
            ..Default::default()
        };
        self.disconnect(app, target, DisconnectCode::TokensRevoked)
            .await
    }

    /// Deletes a user (see `Store::delete_user`): their sessions close (3505),
    /// and the members of each conversation they were in get `member_left`.
    pub async fn delete_user(&self, app: &str, id: &str, erase: bool) -> Result<DeletedUser> {
        let point = revocation_point(store::now_ms());
        let deleted = self
            .store
            .delete_user(app, id, erase, point)
            .await?
            .ok_or_else(|| Error::not_found("user"))?;
        let target = Target {
            users: vec![id.to_owned()],
            ..Default::default()
        };
        self.disconnect(app, target, DisconnectCode::UserDeleted)
            .await?;
        for conv in &deleted.conversations {
            let members = self.store.member_ids(app, conv).await?;
            if members.is_empty() {
                continue;
            }
            let target = Target {
                users: members,
                ..Default::default()
            };
            let left = Push::MemberLeft(v1::MemberLeft {
                conversation_id: conv.clone(),
                user_id: id.to_owned(),
                removed: true,
            });
            self.publish(app, target, left).await?;
        }
        Ok(deleted)
    }

    /// Closes the sessions selected by the revocations the CLI records (it
    /// changes the database without the server), every `REVOCATION_POLL`, until
    /// shutdown. Every node of a cluster polls the shared table, so each closes
    /// its own sessions only (through the broker, each row would reach every
    /// session once per node).
    pub async fn watch_revocations(self: Arc<Self>) {
        let mut last = match self.store.last_revocation_id().await {
            Ok(id) => id,
            Err(err) => {
                tracing::error!(%err, "cannot read the revocations table; CLI revocations will not close live sessions");
                return;
            }
        };
        let mut tick = tokio::time::interval(REVOCATION_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let rows = match self.store.revocations_after(last).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(%err, "reading revocations failed; retrying");
                    continue;
                }
            };
            for row in rows {
                last = row.id;
                if let Err(err) = self.apply_revocation(&row).await {
                    tracing::warn!(%err, id = row.id, "applying a revocation failed");
                }
            }
        }
    }

    async fn apply_revocation(&self, row: &Revocation) -> Result<()> {
        let code = DisconnectCode::from_code(row.code)
            .filter(|c| !c.reconnect())
            .ok_or_else(|| Error::new(ErrorCode::Internal, "unknown disconnect code"))?;
        let target = Target {
            users: row.user_id.iter().cloned().collect(),
            whole_app: row.user_id.is_none(),
            kid: row.kid.clone(),
            issued_before_ms: row.issued_before,
            ..Default::default()
        };
        tracing::info!(app = %row.app_id, kid = ?row.kid, code = code.code(), "closing sessions for a CLI revocation");
        self.hub.deliver(&Event {
            app: row.app_id.clone(),
            target,
            payload: Payload::Disconnect(code),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::revocation_point;

    #[test]
    fn the_revocation_point_is_the_start_of_the_next_second() {
        assert_eq!(revocation_point(1_700_000_000_400), 1_700_000_001_000);
        assert_eq!(revocation_point(1_700_000_000_000), 1_700_000_001_000);
        assert_eq!(revocation_point(1_700_000_000_999), 1_700_000_001_000);
        // A token with iat in the revocation's second is refused, the next second's is not.
        let point = revocation_point(1_700_000_000_400);
        assert!(1_700_000_000 * 1000 < point);
        assert!(1_700_000_001 * 1000 >= point);
    }
}
