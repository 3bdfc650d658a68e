//! The before-send hook of each app (migration 0010): where it is, its signing
//! secret as sealed by `outbound::secrets` (the store never sees it in the
//! clear), its timeout and its failure mode. `node::hooks` checks every field
//! before it is written and makes the calls.

use super::columns::Flag;
use super::Store;
use crate::error::Result;

/// An app's hook as stored.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HookRow {
    pub url: String,
    /// `outbound::secrets::SecretBox::seal` of the signing secret.
    pub secret: String,
    pub timeout_ms: i64,
    #[sqlx(try_from = "Flag")]
    pub fail_open: bool,
    pub updated_at: i64,
}

impl std::fmt::Debug for HookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookRow")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .field("fail_open", &self.fail_open)
            .finish()
    }
}

impl Store {
    /// The app's before-send hook, if it has one.
    pub async fn before_send_hook(&self, app_id: &str) -> Result<Option<HookRow>> {
        Ok(sqlx::query_as(
            "SELECT url, secret, timeout_ms, fail_open, updated_at FROM before_send_hooks WHERE app_id = $1",
        )
        .bind(app_id)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Whether `sender` already has a message with this `client_id` in the
    /// conversation: a retried send, which the store answers with the stored
    /// message (the unique index `messages_client_id` serves the lookup).
    pub async fn client_id_used(
        &self,
        app_id: &str,
        conv: &str,
        sender: &str,
        client_id: &str,
    ) -> Result<bool> {
        Ok(self
            .client_id_seq(app_id, conv, sender, client_id)
            .await?
            .is_some())
    }

    /// The seq of `sender`'s message with this `client_id`, if any.
    pub async fn client_id_seq(
        &self,
        app_id: &str,
        conv: &str,
        sender: &str,
        client_id: &str,
    ) -> Result<Option<i64>> {
        let seq: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM messages WHERE app_id = $1 AND conversation_id = $2 AND sender_id = $3 AND client_id = $4",
        )
        .bind(app_id)
        .bind(conv)
        .bind(sender)
        .bind(client_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(seq)
    }
}

/// Writes (`Some`) or removes (`None`) an app's hook inside an app-settings
/// transaction (`Store::update_app_settings`).
pub(super) async fn write_hook(
    tx: &mut super::Tx<'_>,
    app_id: &str,
    hook: Option<&HookRow>,
) -> Result<()> {
    match hook {
        None => {
            sqlx::query("DELETE FROM before_send_hooks WHERE app_id = $1")
                .bind(app_id)
                .execute(&mut **tx)
                .await?;
        }
        Some(h) => {
            sqlx::query(
                "INSERT INTO before_send_hooks (app_id, url, secret, timeout_ms, fail_open, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (app_id) DO UPDATE SET url = excluded.url, secret = excluded.secret,
                    timeout_ms = excluded.timeout_ms, fail_open = excluded.fail_open,
                    updated_at = excluded.updated_at",
            )
            .bind(app_id)
            .bind(&h.url)
            .bind(&h.secret)
            .bind(h.timeout_ms)
            .bind(i64::from(h.fail_open))
            .bind(h.updated_at)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
