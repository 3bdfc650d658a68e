//! Push devices and the settings that decide whether a user is pushed at all
//! (migration 0011): the credentials a user's devices registered, a member's
//! `muted` and a user's "do not disturb until". `node::devices` checks every
//! field before it is written.

use serde::Serialize;
use utoipa::ToSchema;

use super::columns::Flag;
use super::{now_ms, Millis, Store};
use crate::error::{Error, Result};

/// The most devices one user keeps: registering one more removes the device
/// updated longest ago (a phone reinstalled many times leaves stale tokens).
pub const MAX_DEVICES_PER_USER: i64 = 25;

/// A registered push credential.
#[derive(Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Device {
    /// `dev_` and a ULID, made by the server.
    pub id: String,
    #[serde(skip)]
    pub user_id: String,
    /// `apns`, `apns_voip` (a PushKit token), `fcm` or `webpush`.
    pub provider: String,
    /// The APNs device token (hex), the FCM registration token, or the Web
    /// Push subscription's endpoint URL.
    pub token: String,
    /// Web Push: the subscription's P-256 public key (base64url).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub p256dh: String,
    /// Web Push: the subscription's authentication secret (base64url).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth: String,
    /// APNs: the bundle id the token belongs to (empty: the app's).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub topic: String,
    /// APNs: the token is for the sandbox (development) environment.
    #[sqlx(try_from = "Flag")]
    pub sandbox: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A push credential lets whoever holds it write to the device: only
        // its provider and id reach logs.
        f.debug_struct("Device")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// A credential to register, checked by the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewDevice {
    pub provider: String,
    pub token: String,
    pub p256dh: String,
    pub auth: String,
    pub topic: String,
    pub sandbox: bool,
}

const DEVICE_COLUMNS: &str =
    "id, user_id, provider, token, p256dh, auth, topic, sandbox, created_at, updated_at";

impl Store {
    /// Registers `device` for `user`: a credential already registered (for
    /// this user or another of the app) is moved to `user` and updated, keeping
    /// its id. Past [`MAX_DEVICES_PER_USER`], the user's device updated longest
    /// ago is removed. One transaction.
    pub async fn register_device(
        &self,
        app: &str,
        user: &str,
        device: &NewDevice,
    ) -> Result<Device> {
        super::retrying(|| self.register_device_once(app, user, device)).await
    }

    async fn register_device_once(
        &self,
        app: &str,
        user: &str,
        device: &NewDevice,
    ) -> Result<Device> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let id = format!("dev_{}", ulid::Ulid::new());
        let row: Device = sqlx::query_as(&format!(
            "INSERT INTO push_devices (app_id, id, user_id, provider, token, p256dh, auth, topic, sandbox, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
             ON CONFLICT (app_id, provider, token) DO UPDATE SET
                 user_id = excluded.user_id, p256dh = excluded.p256dh, auth = excluded.auth,
                 topic = excluded.topic, sandbox = excluded.sandbox, updated_at = excluded.updated_at
             RETURNING {DEVICE_COLUMNS}"
        ))
        .bind(app)
        .bind(&id)
        .bind(user)
        .bind(&device.provider)
        .bind(&device.token)
        .bind(&device.p256dh)
        .bind(&device.auth)
        .bind(&device.topic)
        .bind(i64::from(device.sandbox))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        // The oldest beyond the cap go; never the one just registered (its
        // `updated_at` is the newest).
        sqlx::query(
            "DELETE FROM push_devices WHERE app_id = $1 AND user_id = $2 AND id NOT IN (
                 SELECT id FROM push_devices WHERE app_id = $1 AND user_id = $2
                 ORDER BY updated_at DESC, id DESC LIMIT $3)",
        )
        .bind(app)
        .bind(user)
        .bind(MAX_DEVICES_PER_USER)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// `user`'s devices, most recently updated first (at most
    /// [`MAX_DEVICES_PER_USER`]).
    pub async fn devices_of(&self, app: &str, user: &str) -> Result<Vec<Device>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {DEVICE_COLUMNS} FROM push_devices WHERE app_id = $1 AND user_id = $2
             ORDER BY updated_at DESC, id DESC"
        ))
        .bind(app)
        .bind(user)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Removes `user`'s device `id`; false when they have none by that id.
    pub async fn delete_device(&self, app: &str, user: &str, id: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM push_devices WHERE app_id = $1 AND user_id = $2 AND id = $3")
                .bind(app)
                .bind(user)
                .bind(id)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes `user`'s device holding `token` (any provider); false when
    /// they have none.
    pub async fn delete_device_by_token(&self, app: &str, user: &str, token: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM push_devices WHERE app_id = $1 AND user_id = $2 AND token = $3",
        )
        .bind(app)
        .bind(user)
        .bind(token)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets `user`'s `muted` in `conv`; false when they are not a member.
    pub async fn set_muted(&self, app: &str, conv: &str, user: &str, muted: bool) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE members SET muted = $4 WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3",
        )
        .bind(app)
        .bind(conv)
        .bind(user)
        .bind(i64::from(muted))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// `user`'s "do not disturb until" (ms), None when unset or unknown user.
    pub async fn dnd_until(&self, app: &str, user: &str) -> Result<Option<i64>> {
        let until: Option<Option<i64>> =
            sqlx::query_scalar("SELECT dnd_until FROM users WHERE app_id = $1 AND id = $2")
                .bind(app)
                .bind(user)
                .fetch_optional(&self.reader)
                .await?;
        Ok(until.flatten())
    }

    /// Sets (or with None clears) `user`'s "do not disturb until".
    pub async fn set_dnd_until(&self, app: &str, user: &str, until: Option<i64>) -> Result<()> {
        let done = sqlx::query("UPDATE users SET dnd_until = $3 WHERE app_id = $1 AND id = $2")
            .bind(app)
            .bind(user)
            .bind(until)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("user"));
        }
        Ok(())
    }
}
