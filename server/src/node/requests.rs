//! Operations as every interface takes them: REST (`rest/`), the Admin gRPC
//! service (`admin/`) and real-time sessions (`realtime/`). The input rules that
//! sit between a parsed request and the node's core operations — who a message or
//! a reaction is for, which page bounds are allowed, which seqs are in range, how
//! a direct conversation's pair is found, which ids are valid — live here once,
//! so the interfaces cannot drift: each of them only decodes its wire format into
//! one of these types, calls the node, and encodes the answer.

use std::collections::HashSet;

use serde_json::Value;

use super::{Actor, Node};
use crate::auth::{mint_hs256, valid_user_id};
use crate::engine::presence::UserPresence;
use crate::error::{Error, Result};
use crate::store::messages::HistoryQuery;
use crate::store::system_messages::SYSTEM_SENDER;
use crate::store::users::UserPatch;
use crate::store::{
    check_conversation_fields, valid_conversation_id, Conversation, Kind, Member, Message,
    NewGroup, NewMessage, Page, Role, Sent, User,
};

/// A list's page size when the request gives none.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// The largest page size of every list.
pub const MAX_PAGE_LIMIT: u32 = 100;

/// Most user ids one presence request may name (duplicates counted).
pub const MAX_PRESENCE_USERS: usize = 100;
/// Most user ids one request may name as members, creating a group or adding
/// members (duplicates counted).
pub const MAX_MEMBERS_PER_REQUEST: usize = 1000;
/// Most conversations a token's `groups` may name (minted here or signed by the
/// customer's backend; duplicates counted).
pub const MAX_TOKEN_GROUPS: usize = 100;
/// A minted token's lifetime when the request gives none (capped by the server's maximum).
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 3600;

/// `invalid_argument` naming the first id that is not a valid user id.
pub fn check_user_ids(ids: &[String]) -> Result<()> {
    match ids.iter().find(|id| !valid_user_id(id)) {
        Some(bad) => Err(Error::invalid(format!(
            "invalid user id {bad:?}: 1-128 characters of A-Z a-z 0-9 . _ @ : -"
        ))),
        None => Ok(()),
    }
}

/// A list a request carries, as the node uses it: at most `max` entries,
/// duplicates counted (so an oversized list is refused before any work, whatever
/// it repeats), then each entry once, in the order first given. Every list input
/// passes here before a query is made, so a refused request changes nothing.
pub fn distinct(list: Vec<String>, max: usize, what: &str) -> Result<Vec<String>> {
    if list.len() > max {
        return Err(Error::invalid(format!(
            "{what}: at most {max} entries (duplicates counted)"
        )));
    }
    let mut seen = HashSet::with_capacity(list.len());
    Ok(list
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect())
}

/// Page bounds of every list, as an interface gives them: the previous page's
/// `next_cursor` and a size. Checked by the node (`bounds`), never by an adapter.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Absent, or empty, for the first page.
    pub cursor: Option<String>,
    /// 1 to 100; absent: 50.
    pub limit: Option<u32>,
}

/// Page bounds that passed the rules.
#[derive(Debug, Clone, Copy)]
pub struct Bounds<'a> {
    pub cursor: Option<&'a str>,
    pub limit: u32,
}

impl PageRequest {
    pub fn new(cursor: Option<String>, limit: Option<u32>) -> Self {
        Self { cursor, limit }
    }

    /// From a protobuf request, where proto3 cannot tell 0 and "" from absent.
    pub fn from_wire(cursor: String, limit: u32) -> Self {
        Self {
            cursor: (!cursor.is_empty()).then_some(cursor),
            limit: (limit != 0).then_some(limit),
        }
    }

    /// The bounds, or `invalid_argument` for a size outside 1..=100.
    pub fn bounds(&self) -> Result<Bounds<'_>> {
        let limit = match self.limit {
            None => DEFAULT_PAGE_LIMIT,
            Some(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => n,
            Some(_) => {
                return Err(Error::invalid(format!(
                    "limit must be 1 to {MAX_PAGE_LIMIT}"
                )))
            }
        };
        Ok(Bounds {
            cursor: self.cursor.as_deref().filter(|c| !c.is_empty()),
            limit,
        })
    }
}

/// A seq or read position from a protobuf field (`uint64`) as the store holds it
/// (`i64`): a value past `i64::MAX` is refused, never wrapped. The node checks
/// the range each operation allows.
pub fn wire_seq(n: u64, field: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid(format!("{field} is out of range")))
}

/// A member's role as an interface names it.
pub fn wire_role(role: &str) -> Result<Role> {
    Role::parse(role)
        .ok_or_else(|| Error::invalid("role must be \"owner\", \"admin\" or \"member\""))
}

/// A message's seq as an operation names it: at least 1.
pub fn message_seq(seq: i64) -> Result<i64> {
    if seq < 1 {
        return Err(Error::invalid("seq must be a message's seq (at least 1)"));
    }
    Ok(seq)
}

/// A history page to read: `after` pages forward, `before` (or neither) backward.
#[derive(Debug, Clone, Default)]
pub struct HistoryRequest {
    /// Exclusive; at least 1.
    pub before: Option<i64>,
    /// Exclusive; at least 0.
    pub after: Option<i64>,
    pub page: PageRequest,
}

/// A conversation to create, as a request gives it.
#[derive(Debug, Clone)]
pub struct NewConversation {
    pub kind: Kind,
    pub members: Vec<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub icon_url: Option<String>,
    pub data: Option<Value>,
}

/// A message to send, as a request gives it.
#[derive(Debug, Clone, Default)]
pub struct SendInput {
    /// Required for a user message sent by the backend; a user token's own user
    /// when absent.
    pub sender_id: Option<String>,
    /// A system message (backend only): the sender defaults to the system.
    pub system: bool,
    pub text: String,
    pub data: Option<Value>,
    pub client_id: Option<String>,
    pub reply_to: Option<i64>,
    /// Ready uploads of the sender in this conversation (at most 10).
    pub attachment_ids: Vec<String>,
}

/// A user token to mint, as a request gives it.
#[derive(Debug, Clone, Default)]
pub struct MintInput {
    pub user_id: String,
    pub ttl_seconds: Option<i64>,
    pub groups: Vec<String>,
    pub name: Option<String>,
}

/// A minted token and when it expires (unix ms). `Debug` leaves the token out.
#[derive(Clone)]
pub struct Minted {
    pub token: String,
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// The user a reaction is for: a user token's own user, or the one the backend names.
pub fn reacting_user(actor: Actor<'_>, named: Option<String>) -> Result<String> {
    match (actor, named) {
        (Actor::User(me), None) => Ok(me.to_owned()),
        (Actor::User(me), Some(named)) if named == me => Ok(named),
        (Actor::User(_), Some(_)) => {
            Err(Error::denied("a user token may only react as its own user"))
        }
        (Actor::Backend, Some(named)) if !named.is_empty() => Ok(named),
        (Actor::Backend, _) => Err(Error::invalid("user_id is required with an API key")),
    }
}

impl Node {
    // ----- users

    pub(crate) async fn require_user(&self, app: &str, id: &str) -> Result<()> {
        match self.store.get_user(app, id).await? {
            Some(_) => Ok(()),
            None => Err(Error::not_found("user")),
        }
    }

    /// A user as `actor` may read it: any user for the backend; for a user,
    /// themself or someone sharing a conversation with them (others read as
    /// not found, so a user cannot probe for ids).
    pub async fn visible_user(&self, app: &str, actor: Actor<'_>, id: &str) -> Result<User> {
        if let Actor::User(me) = actor {
            if me != id {
                let mine = self.store.conversation_ids_of(app, me).await?;
                let theirs = self.store.conversation_ids_of(app, id).await?;
                if !theirs.iter().any(|c| mine.contains(c)) {
                    return Err(Error::not_found("user"));
                }
            }
        }
        self.store
            .get_user(app, id)
            .await?
            .ok_or_else(|| Error::not_found("user"))
    }

    /// Creates a user (backend), or updates the given fields of an existing one.
    /// Returns the user and whether it was created now.
    pub async fn create_user(
        &self,
        app: &str,
        id: &str,
        patch: &UserPatch,
    ) -> Result<(User, bool)> {
        self.store.upsert_user(app, id, patch).await
    }

    /// Updates a user's profile: the backend any user, a user themself.
    pub async fn update_user(
        &self,
        app: &str,
        actor: Actor<'_>,
        id: &str,
        patch: &UserPatch,
    ) -> Result<User> {
        if let Actor::User(me) = actor {
            if me != id {
                return Err(Error::denied("a user token may only act for its own user"));
            }
        }
        self.store.update_user(app, id, patch).await
    }

    /// The app's users by id, optionally those whose id or name contains `q`.
    pub async fn users_page(
        &self,
        app: &str,
        q: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<User>> {
        let b = page.bounds()?;
        let q = q.filter(|q| !q.is_empty());
        self.store.list_users(app, q, b.cursor, b.limit).await
    }

    /// The conversations `user` is in, latest activity first, with unread counts.
    pub async fn user_conversations_page(
        &self,
        app: &str,
        user: &str,
        page: &PageRequest,
    ) -> Result<Page<Conversation>> {
        let b = page.bounds()?;
        self.require_user(app, user).await?;
        self.store
            .user_conversations(app, user, b.cursor, b.limit)
            .await
    }

    /// Messages `user` sent, newest first.
    pub async fn user_messages_page(
        &self,
        app: &str,
        user: &str,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        let b = page.bounds()?;
        self.require_user(app, user).await?;
        self.store.user_messages(app, user, b.cursor, b.limit).await
    }

    /// Presence of `users` (1 to 100 valid ids, duplicates counted, and answered
    /// once): the backend sees any of its users, a user only those it may see.
    /// Unknown users are left out.
    pub async fn presence_request(
        &self,
        app: &str,
        actor: Actor<'_>,
        users: &[String],
    ) -> Result<Vec<UserPresence>> {
        if users.is_empty() {
            return Err(Error::invalid(format!(
                "give 1 to {MAX_PRESENCE_USERS} user ids: ?users=a,b"
            )));
        }
        let mut wanted = distinct(users.to_vec(), MAX_PRESENCE_USERS, "users")?;
        check_user_ids(&wanted)?;
        let found = self.store.get_users(app, &wanted).await?;
        wanted.retain(|u| found.iter().any(|f| f.id == *u));
        match actor {
            Actor::Backend => self.presence_of(app, &wanted).await,
            Actor::User(me) => self.visible_presence(app, me, &wanted).await,
        }
    }

    /// Hides `conv` for a user the backend names (who must exist).
    pub async fn hide_for_user(&self, app: &str, user: &str, conv: &str) -> Result<Conversation> {
        self.require_user(app, user).await?;
        self.hide(app, user, conv).await
    }

    // ----- conversations

    /// Creates a group, or starts (or finds) a direct conversation. Returns the
    /// conversation as `actor` sees it and whether it was created now.
    pub async fn create_conversation(
        &self,
        app: &str,
        actor: Actor<'_>,
        mut req: NewConversation,
    ) -> Result<(Conversation, bool)> {
        req.members = distinct(req.members, MAX_MEMBERS_PER_REQUEST, "members")?;
        check_user_ids(&req.members)?;
        let (conv, created) = match req.kind {
            Kind::Group => {
                let group = NewGroup {
                    id: req.id,
                    name: req.name.unwrap_or_default(),
                    icon_url: req.icon_url.unwrap_or_default(),
                    data: req.data,
                    members: req.members,
                    ..NewGroup::default()
                };
                (self.create_group(app, actor, group).await?, true)
            }
            Kind::Direct => {
                if req.id.is_some() {
                    return Err(Error::invalid(
                        "a direct conversation's id is chosen by the server",
                    ));
                }
                // Checked whether or not the pair has a conversation already.
                check_conversation_fields(
                    req.name.as_deref(),
                    req.icon_url.as_deref(),
                    req.data.as_ref(),
                )?;
                let mut members = req.members;
                members.sort();
                let (a, b, create_missing) = match actor {
                    Actor::Backend => match members.as_slice() {
                        [a, b] => (a.clone(), b.clone(), true),
                        _ => {
                            return Err(Error::invalid(
                                "a direct conversation needs exactly two distinct members",
                            ))
                        }
                    },
                    Actor::User(me) => {
                        let others: Vec<&String> = members.iter().filter(|m| *m != me).collect();
                        match others.as_slice() {
                            [other] => (me.to_owned(), (*other).clone(), false),
                            _ => {
                                return Err(Error::invalid(
                                    "a direct conversation needs exactly one other member",
                                ))
                            }
                        }
                    }
                };
                let (conv, created) = self
                    .start_direct_created(app, &a, &b, create_missing)
                    .await?;
                let extras = req.name.is_some() || req.icon_url.is_some() || req.data.is_some();
                if created && extras {
                    self.store
                        .update_conversation(
                            app,
                            &conv.id,
                            req.name.as_deref(),
                            req.icon_url.as_deref(),
                            req.data.as_ref(),
                        )
                        .await?;
                }
                (conv, created)
            }
        };
        // Answer the conversation as the caller sees it (the backend: no viewer fields).
        let viewer = match actor {
            Actor::User(u) => Some(u),
            Actor::Backend => None,
        };
        let conv = self
            .store
            .get_conversation(app, &conv.id, viewer)
            .await?
            .ok_or_else(Error::internal)?;
        Ok((conv, created))
    }

    /// The app's conversations (backend) or the user's own, latest activity first.
    pub async fn conversations_page(
        &self,
        app: &str,
        actor: Actor<'_>,
        page: &PageRequest,
    ) -> Result<Page<Conversation>> {
        let b = page.bounds()?;
        match actor {
            Actor::Backend => self.store.list_conversations(app, b.cursor, b.limit).await,
            Actor::User(me) => {
                self.store
                    .user_conversations(app, me, b.cursor, b.limit)
                    .await
            }
        }
    }

    /// Members of a conversation `actor` may see, by user id.
    pub async fn members_page(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        page: &PageRequest,
    ) -> Result<Page<Member>> {
        let b = page.bounds()?;
        self.visible_conversation(app, actor, conv).await?;
        self.store.members(app, conv, b.cursor, b.limit).await
    }

    /// `add_members` with the ids checked first.
    pub async fn add_members_request(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        users: &[String],
    ) -> Result<Vec<Member>> {
        let users = distinct(users.to_vec(), MAX_MEMBERS_PER_REQUEST, "user_ids")?;
        check_user_ids(&users)?;
        self.add_members(app, actor, conv, &users).await
    }

    // ----- messages

    /// A history page: `after` pages forward, `before` (or neither) backward.
    pub async fn history_request(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        req: &HistoryRequest,
    ) -> Result<Page<Message>> {
        if req.before.is_some() && req.after.is_some() {
            return Err(Error::invalid("give before or after, not both"));
        }
        if req.before.is_some_and(|s| s < 1) || req.after.is_some_and(|s| s < 0) {
            return Err(Error::invalid(
                "before must be a seq of at least 1, after at least 0",
            ));
        }
        let b = req.page.bounds()?;
        let query = HistoryQuery {
            before: req.before,
            after: req.after,
            cursor: b.cursor.map(str::to_owned),
            limit: b.limit,
        };
        self.history(app, actor, conv, &query).await
    }

    /// Sends a message for `actor`: a user sends as themself; the backend names
    /// the sender, or sends a system message.
    pub async fn send_request(
        &self,
        app: &str,
        actor: Actor<'_>,
        conv: &str,
        input: SendInput,
    ) -> Result<Sent> {
        let sender_id = match (actor, input.system, input.sender_id) {
            (Actor::User(_), true, _) => {
                return Err(Error::denied("only the backend may send system messages"))
            }
            (Actor::User(me), false, None) => me.to_owned(),
            (Actor::User(me), false, Some(sender)) if sender != me => {
                return Err(Error::denied("a user token may only send as its own user"))
            }
            (_, _, Some(sender)) => sender,
            (Actor::Backend, true, None) => SYSTEM_SENDER.to_owned(),
            (Actor::Backend, false, None) => {
                return Err(Error::invalid(
                    "sender_id is required (or send kind \"system\")",
                ))
            }
        };
        let msg = NewMessage {
            sender_id,
            kind: if input.system { "system" } else { "user" }.to_owned(),
            text: input.text,
            data: input.data,
            client_id: input.client_id.filter(|c| !c.is_empty()),
            reply_to: input.reply_to.map(message_seq).transpose()?,
            attachments: Vec::new(),
        };
        self.send_with_attachments(app, actor, conv, msg, &input.attachment_ids)
            .await
    }

    // ----- tokens

    /// Mints a user token with the app's newest HS256 key.
    pub async fn mint_token(&self, app: &str, input: MintInput) -> Result<Minted> {
        if !valid_user_id(&input.user_id) {
            return Err(Error::invalid(
                "user_id must be 1-128 characters of A-Z a-z 0-9 . _ @ : -",
            ));
        }
        let max = self.config.limits.max_token_lifetime_secs;
        let ttl = input.ttl_seconds.unwrap_or(DEFAULT_TOKEN_TTL_SECS.min(max));
        if !(1..=max).contains(&ttl) {
            return Err(Error::invalid(format!("ttl_seconds must be 1 to {max}")));
        }
        let groups = distinct(input.groups, MAX_TOKEN_GROUPS, "groups")?;
        if let Some(bad) = groups.iter().find(|g| !valid_conversation_id(g)) {
            return Err(Error::invalid(format!(
                "groups names an invalid conversation id: {bad:?}"
            )));
        }
        if input.name.as_ref().is_some_and(|n| n.len() > 256) {
            return Err(Error::invalid("name is longer than 256 bytes"));
        }
        let key = self
            .store
            .minting_key(app)
            .await?
            .ok_or_else(|| Error::invalid("this app has no HS256 signing key to mint with"))?;
        let now = chrono::Utc::now().timestamp();
        let token = mint_hs256(
            &key,
            &input.user_id,
            ttl,
            &groups,
            input.name.as_deref(),
            now,
        )?;
        Ok(Minted {
            token,
            expires_at_ms: now.saturating_add(ttl).saturating_mul(1000),
        })
    }
}

/// A field given as `null` is `Some(None)`; left out, `None` (with
/// `#[serde(default, deserialize_with = "given")]`): "remove it" and "leave
/// it" told apart, for settings changed in part.
pub fn given<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::distinct;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_list_is_capped_counting_duplicates_then_collapsed_in_order() {
        assert_eq!(
            distinct(list(&["b", "a", "b", "c", "a"]), 5, "ids").unwrap(),
            list(&["b", "a", "c"])
        );
        // Duplicates count against the cap: the check costs nothing.
        let err = distinct(vec!["a".to_owned(); 6], 5, "ids").unwrap_err();
        assert!(err.message.contains("at most 5"), "{err:?}");
        assert!(distinct(Vec::new(), 5, "ids").unwrap().is_empty());
    }
}
