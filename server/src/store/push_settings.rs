//! An app's push settings (migration 0012): the provider credentials, sealed
//! by `outbound::secrets` (the store never sees them in the clear), and the
//! preview mode. `node::push_settings` checks and seals them.

use super::Store;
use crate::error::Result;

/// An app's push settings as stored. An empty sealed field: that provider is
/// not configured.
#[derive(Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct PushSettingsRow {
    pub apns_key: String,
    pub apns_key_id: String,
    pub apns_team_id: String,
    pub apns_topic: String,
    pub fcm_service_account: String,
    pub fcm_project_id: String,
    pub fcm_client_email: String,
    pub vapid_private_key: String,
    pub vapid_public_key: String,
    pub vapid_subject: String,
    pub preview: String,
    pub updated_at: i64,
}

impl std::fmt::Debug for PushSettingsRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSettingsRow")
            .field("apns_key_id", &self.apns_key_id)
            .field("apns_team_id", &self.apns_team_id)
            .field("apns_topic", &self.apns_topic)
            .field("fcm_project_id", &self.fcm_project_id)
            .field("vapid_public_key", &self.vapid_public_key)
            .field("preview", &self.preview)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "apns_key, apns_key_id, apns_team_id, apns_topic, fcm_service_account, \
     fcm_project_id, fcm_client_email, vapid_private_key, vapid_public_key, vapid_subject, \
     preview, updated_at";

impl Store {
    /// The app's push settings, if it set any.
    pub async fn push_settings(&self, app_id: &str) -> Result<Option<PushSettingsRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM push_settings WHERE app_id = $1"
        ))
        .bind(app_id)
        .fetch_optional(&self.reader)
        .await?)
    }
}

/// Writes an app's push settings whole, inside an app-settings transaction
/// (`Store::update_app_settings`). The first write also sets where the push
/// worker starts in the app's event feed: its head now, so the app's history
/// is not pushed.
pub(super) async fn write_push_settings(
    tx: &mut super::Tx<'_>,
    engine: super::Engine,
    app_id: &str,
    row: &PushSettingsRow,
) -> Result<()> {
    let head = super::events::head_in(tx, engine, app_id).await?;
    sqlx::query(&format!(
        "INSERT INTO push_settings (app_id, {COLUMNS}, cursor_xact, cursor_pos)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (app_id) DO UPDATE SET
             apns_key = excluded.apns_key, apns_key_id = excluded.apns_key_id,
             apns_team_id = excluded.apns_team_id, apns_topic = excluded.apns_topic,
             fcm_service_account = excluded.fcm_service_account,
             fcm_project_id = excluded.fcm_project_id, fcm_client_email = excluded.fcm_client_email,
             vapid_private_key = excluded.vapid_private_key,
             vapid_public_key = excluded.vapid_public_key, vapid_subject = excluded.vapid_subject,
             preview = excluded.preview, updated_at = excluded.updated_at"
    ))
    .bind(app_id)
    .bind(&row.apns_key)
    .bind(&row.apns_key_id)
    .bind(&row.apns_team_id)
    .bind(&row.apns_topic)
    .bind(&row.fcm_service_account)
    .bind(&row.fcm_project_id)
    .bind(&row.fcm_client_email)
    .bind(&row.vapid_private_key)
    .bind(&row.vapid_public_key)
    .bind(&row.vapid_subject)
    .bind(&row.preview)
    .bind(row.updated_at)
    .bind(head.xact)
    .bind(head.pos)
    .execute(&mut **tx)
    .await?;
    // New settings may be the credentials a provider refused: the pushes
    // waiting for them are due now.
    sqlx::query(
        "UPDATE push_sends SET next_at = 0 WHERE app_id = $1 AND lease_owner IS NULL \
         AND attempts > 0",
    )
    .bind(app_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
