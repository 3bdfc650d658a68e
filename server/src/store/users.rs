//! Users of an app: created by the backend or on first connect from token claims.

use serde_json::Value;
use sqlx::{sqlite::SqliteRow, Row};

use super::{decode_cursor, encode_cursor, now_ms, parse_json, Millis, Page, Store, User};
use crate::auth;
use crate::error::{Error, Result};

pub const MAX_USER_DATA_BYTES: usize = 4096;

/// Fields of a create or update; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct UserPatch {
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub data: Option<Value>,
}

const USER_COLUMNS: &str =
    "id, name, avatar_url, data, created_at, updated_at, deactivated, last_seen, tokens_valid_after";

fn user_from_row(r: &SqliteRow) -> User {
    User {
        id: r.get(0),
        name: r.get(1),
        avatar_url: r.get(2),
        data: parse_json(r.get::<&str, _>(3)),
        created_at: Millis(r.get(4)),
        updated_at: Millis(r.get(5)),
        deactivated: r.get::<i64, _>(6) != 0,
        last_seen: r.get::<Option<i64>, _>(7).map(Millis),
        tokens_valid_after: r.get(8),
    }
}

fn check_patch(patch: &UserPatch) -> Result<()> {
    if let Some(name) = &patch.name {
        if name.len() > 256 {
            return Err(Error::invalid("name is longer than 256 bytes"));
        }
    }
    if let Some(url) = &patch.avatar_url {
        if url.len() > 2048 {
            return Err(Error::invalid("avatar_url is longer than 2048 bytes"));
        }
    }
    if let Some(data) = &patch.data {
        if !data.is_object() {
            return Err(Error::invalid("data must be a JSON object"));
        }
        if data.to_string().len() > MAX_USER_DATA_BYTES {
            return Err(Error::too_large("user data is larger than 4 KiB"));
        }
    }
    Ok(())
}

impl Store {
    /// Creates the user, or updates the given fields of an existing one.
    /// Returns the user and whether it was created.
    pub async fn upsert_user(
        &self,
        app: &str,
        id: &str,
        patch: &UserPatch,
    ) -> Result<(User, bool)> {
        if !auth::valid_user_id(id) {
            return Err(Error::invalid(
                "user id must be 1-128 characters of A-Z a-z 0-9 . _ @ : -",
            ));
        }
        check_patch(patch)?;
        let now = now_ms();
        let data = patch.data.as_ref().map(Value::to_string);
        let created = sqlx::query(
            "INSERT INTO users (app_id, id, name, avatar_url, data, created_at, updated_at)
             VALUES ($1, $2, COALESCE($3, ''), COALESCE($4, ''), COALESCE($5, '{}'), $6, $6)
             ON CONFLICT (app_id, id) DO NOTHING",
        )
        .bind(app)
        .bind(id)
        .bind(&patch.name)
        .bind(&patch.avatar_url)
        .bind(&data)
        .bind(now)
        .execute(&self.writer)
        .await?
        .rows_affected()
            > 0;
        if !created && (patch.name.is_some() || patch.avatar_url.is_some() || data.is_some()) {
            self.update_user(app, id, patch).await?;
        }
        let user = self.get_user(app, id).await?.ok_or_else(Error::internal)?;
        Ok((user, created))
    }

    pub async fn update_user(&self, app: &str, id: &str, patch: &UserPatch) -> Result<User> {
        check_patch(patch)?;
        let done = sqlx::query(
            "UPDATE users SET name = COALESCE($3, name), avatar_url = COALESCE($4, avatar_url),
             data = COALESCE($5, data), updated_at = $6 WHERE app_id = $1 AND id = $2",
        )
        .bind(app)
        .bind(id)
        .bind(&patch.name)
        .bind(&patch.avatar_url)
        .bind(patch.data.as_ref().map(Value::to_string))
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("user"));
        }
        self.get_user(app, id)
            .await?
            .ok_or_else(|| Error::not_found("user"))
    }

    pub async fn get_user(&self, app: &str, id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE app_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(app)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(user_from_row))
    }

    pub async fn get_users(&self, app: &str, ids: &[String]) -> Result<Vec<User>> {
        let mut users = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(u) = self.get_user(app, id).await? {
                users.push(u);
            }
        }
        Ok(users)
    }

    /// Users by id order, optionally filtered by a search over id and name.
    pub async fn list_users(
        &self,
        app: &str,
        q: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<User>> {
        let after = match cursor {
            Some(c) => decode_cursor(c, 1)?.remove(0),
            None => String::new(),
        };
        let pattern = q.map(|q| {
            let escaped = q
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{}%", escaped.to_lowercase())
        });
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE app_id = $1 AND id > $2
             AND ($3 IS NULL OR LOWER(id) LIKE $3 ESCAPE '\\' OR LOWER(name) LIKE $3 ESCAPE '\\')
             ORDER BY id LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(app)
            .bind(&after)
            .bind(&pattern)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let mut items: Vec<User> = rows.iter().map(user_from_row).collect();
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|u| encode_cursor(&[&u.id]))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub async fn set_last_seen(&self, app: &str, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE users SET last_seen = $3 WHERE app_id = $1 AND id = $2")
            .bind(app)
            .bind(id)
            .bind(at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
