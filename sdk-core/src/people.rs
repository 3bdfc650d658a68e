//! The calls of a chat screen about people and groups: members with their
//! profiles, users by id, the app's directory, one's own profile, editing a
//! group, roles, deleting a group, blocks and the total unread count. Reads
//! are idempotent (sent again after a reconnect); the changes are too (each
//! sets a value, so applying it twice is applying it once).

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as Reply};

use crate::calls::{conversation, data, ok, unexpected};
use crate::client::{Call, Client};
use crate::error::Result;

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(role: &str) -> Option<Role> {
        match role {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// Changes to the user's own profile; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileUpdate {
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    /// A JSON object, replacing the profile's `data`.
    pub data: Option<serde_json::Value>,
}

/// Changes to a group; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationUpdate {
    pub name: Option<String>,
    pub icon_url: Option<String>,
    /// A JSON object, replacing the conversation's `data`.
    pub data: Option<serde_json::Value>,
}

/// A page of a list: its items and the cursor of the next page (`None` on the
/// last one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    fn new(items: Vec<T>, next_cursor: String) -> Self {
        Self {
            items,
            next_cursor: Some(next_cursor).filter(|c| !c.is_empty()),
        }
    }
}

impl Client {
    /// A page of a conversation's members in user id order, each with its
    /// profile (`member.user`). `limit`: 1 to 100, default 50.
    pub fn members(
        &self,
        conversation_id: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Call<Page<v1::Member>> {
        let command = Command::Members(v1::MembersRequest {
            conversation_id: conversation_id.into(),
            cursor: cursor.unwrap_or_default().into(),
            limit: limit.unwrap_or(0),
        });
        self.request(command, true, |r| match r {
            Reply::Members(m) => Ok(Page::new(m.members, m.next_cursor)),
            other => unexpected(other),
        })
    }

    /// Profiles and presence of users by id (1 to 100): the user themself and
    /// people sharing a conversation with them; others are left out, as
    /// unknown ids are. The presence also reaches the cache.
    pub fn users(&self, user_ids: &[&str]) -> Call<v1::UsersResult> {
        let command = Command::Users(v1::UsersRequest {
            user_ids: user_ids.iter().map(|u| (*u).to_owned()).collect(),
        });
        self.request(command, true, |r| match r {
            Reply::Users(u) => Ok(u),
            other => unexpected(other),
        })
    }

    /// The app's user directory: users whose id or name contains `query` (2
    /// to 64 characters), at most `limit` (default 20, at most 50), without
    /// their `data`. `permission_denied` unless the app turned the directory on.
    pub fn search_users(&self, query: &str, limit: Option<u32>) -> Call<Vec<v1::User>> {
        let command = Command::SearchUsers(v1::SearchUsersRequest {
            query: query.into(),
            limit: limit.unwrap_or(0),
        });
        self.request(command, true, |r| match r {
            Reply::Users(u) => Ok(u.users),
            other => unexpected(other),
        })
    }

    /// Changes the user's own profile; resolves with it (and [`Client::user`]
    /// answers it from then on).
    pub fn update_profile(&self, update: ProfileUpdate) -> Call<v1::User> {
        let command = data(update.data.as_ref()).map(|data| {
            Command::UpdateProfile(v1::UpdateProfileRequest {
                name: update.name,
                avatar_url: update.avatar_url,
                data,
            })
        });
        self.checked_request(command, |r| match r {
            Reply::User(v1::UserResult { user: Some(u) }) => Ok(u),
            other => unexpected(other),
        })
    }

    /// Changes a group's name, icon or data (its owners and admins). Every
    /// member gets `conversation_updated`; a new name is told in history.
    pub fn update_conversation(
        &self,
        conversation_id: &str,
        update: ConversationUpdate,
    ) -> Call<v1::Conversation> {
        let command = data(update.data.as_ref()).map(|data| {
            Command::UpdateConversation(v1::ConversationUpdateRequest {
                conversation_id: conversation_id.into(),
                name: update.name,
                icon_url: update.icon_url,
                data,
            })
        });
        self.checked_request(command, conversation)
    }

    /// Sets a member's role: admins make members and admins, only owners make
    /// owners or change an owner's role, and a group keeps one owner.
    pub fn set_role(&self, conversation_id: &str, user_id: &str, role: Role) -> Call<v1::Member> {
        let command = Command::SetRole(v1::SetRoleRequest {
            conversation_id: conversation_id.into(),
            user_id: user_id.into(),
            role: role.as_str().into(),
        });
        self.request(command, true, |r| match r {
            Reply::Member(v1::MemberResult { member: Some(m) }) => Ok(m),
            other => unexpected(other),
        })
    }

    /// Deletes a group for everyone (its owners only), with its messages.
    /// Every member gets `member_left` for themself.
    pub fn delete_conversation(&self, conversation_id: &str) -> Call<()> {
        let command = Command::DeleteConversation(v1::DeleteConversationRequest {
            conversation_id: conversation_id.into(),
        });
        self.request(command, true, ok)
    }

    /// A page of the users this user blocks, in user id order.
    pub fn blocks(&self, cursor: Option<&str>, limit: Option<u32>) -> Call<Page<v1::Block>> {
        let command = Command::Blocks(v1::BlocksRequest {
            cursor: cursor.unwrap_or_default().into(),
            limit: limit.unwrap_or(0),
        });
        self.request(command, true, |r| match r {
            Reply::Blocks(b) => Ok(Page::new(b.blocks, b.next_cursor)),
            other => unexpected(other),
        })
    }

    /// The user's total unread count over all their conversations, from the
    /// server (muted ones count; hidden ones count 0 until a new message shows
    /// them). [`Client::total_unread`] sums the cached conversations instead,
    /// without a round trip.
    pub fn unread_total(&self) -> Call<u64> {
        self.request(Command::Unread(v1::UnreadRequest {}), true, |r| match r {
            Reply::Unread(u) => Ok(u.total),
            other => unexpected(other),
        })
    }

    /// A request whose command could not be made (bad `data`) fails at once.
    fn checked_request<T>(&self, command: Result<Command>, map: fn(Reply) -> Result<T>) -> Call<T> {
        match command {
            Ok(command) => self.request(command, true, map),
            Err(err) => self.failed(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_refuse_others() {
        for role in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Owner"), None);
    }
}
