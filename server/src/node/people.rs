//! People as a user of the app sees them: the members of a conversation with
//! their profiles, users by id with their presence, the app's directory, and
//! the user's own total unread count. The real-time commands call these; REST
//! and Admin gRPC reach the same store reads through `requests.rs`.
//!
//! Visibility: a user sees themself and the people sharing a conversation with
//! them (anyone else reads as unknown, so ids cannot be probed); the directory,
//! when the app turns it on (`user_directory`), answers strangers too, but only
//! their id, name and avatar — never `data`, which the app may keep private.

use super::requests::{check_user_ids, distinct, PageRequest, MAX_PRESENCE_USERS};
use super::{Actor, Node};
use crate::engine::presence::UserPresence;
use crate::error::{Error, Result};
use crate::store::{Member, Page, User};

/// Results of one directory search when the request gives no limit.
pub const DIRECTORY_DEFAULT_LIMIT: u32 = 20;
/// Most results of one directory search.
pub const DIRECTORY_MAX_LIMIT: u32 = 50;
/// A directory query's bounds, in characters: shorter ones would list the
/// whole app a letter at a time.
const DIRECTORY_QUERY_CHARS: std::ops::RangeInclusive<usize> = 2..=64;

impl Node {
    /// A page of the members of `conv` (any member may list them), with the
    /// profiles of the page's users.
    pub async fn members_with_users(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        page: &PageRequest,
    ) -> Result<(Page<Member>, Vec<User>)> {
        let members = self.members_page(app, actor, conv, page).await?;
        let ids: Vec<String> = members.items.iter().map(|m| m.user_id.clone()).collect();
        let users = self.store.get_users(app, &ids).await?;
        Ok((members, users))
    }

    /// Profiles of `ids` (1 to 100, duplicates counted) that `me` may see, in
    /// the order asked, and the presence of those `me` may see it of (no block
    /// between them).
    pub async fn visible_users(
        &self,
        app: &str,
        me: &str,
        ids: &[String],
    ) -> Result<(Vec<User>, Vec<UserPresence>)> {
        if ids.is_empty() {
            return Err(Error::invalid(format!(
                "give 1 to {MAX_PRESENCE_USERS} user ids"
            )));
        }
        let ids = distinct(ids.to_vec(), MAX_PRESENCE_USERS, "user_ids")?;
        check_user_ids(&ids)?;
        let peers = self.store.peers_among(app, me, &ids).await?;
        let visible: Vec<String> = ids
            .into_iter()
            .filter(|u| u == me || peers.contains(u))
            .collect();
        let users = self.store.get_users(app, &visible).await?;
        let presence = self.visible_presence(app, me, &visible).await?;
        Ok((users, presence))
    }

    /// The app's user directory as `me` searches it (see the module doc):
    /// `permission_denied` unless the app turned it on.
    pub async fn search_directory(
        &self,
        app: &str,
        me: &str,
        query: &str,
        limit: u32,
    ) -> Result<Vec<User>> {
        let query = query.trim();
        if !DIRECTORY_QUERY_CHARS.contains(&query.chars().count()) {
            return Err(Error::invalid(format!(
                "query must be {} to {} characters",
                DIRECTORY_QUERY_CHARS.start(),
                DIRECTORY_QUERY_CHARS.end()
            )));
        }
        let limit = match limit {
            0 => DIRECTORY_DEFAULT_LIMIT,
            n if n <= DIRECTORY_MAX_LIMIT => n,
            _ => {
                return Err(Error::invalid(format!(
                    "limit must be 1 to {DIRECTORY_MAX_LIMIT}"
                )))
            }
        };
        let on = self
            .store
            .get_app(app)
            .await?
            .is_some_and(|a| a.user_directory);
        if !on {
            return Err(Error::denied(
                "the app's user directory is off (its operator turns it on with user_directory)",
            ));
        }
        let mut users = self.store.search_directory(app, me, query, limit).await?;
        for u in &mut users {
            u.data = serde_json::Value::Object(Default::default());
            u.last_seen = None;
        }
        Ok(users)
    }

    /// `user`'s total unread count over all their conversations (muted ones
    /// count; hidden ones count 0 until a new message shows them again).
    pub async fn total_unread_of(&self, app: &str, user: &str) -> Result<i64> {
        self.require_user(app, user).await?;
        let totals = self.store.total_unread(app, &[user.to_owned()]).await?;
        Ok(totals.get(user).copied().unwrap_or(0))
    }
}
