//! Uploads and message attachments (migration 0015). An upload's life:
//! `uploading` (tus fills it) → `ready` (every byte arrived and passed the
//! checks, `node::files`) → `attached` (claimed by a send, then given its
//! message's seq in the send's own transaction) → `deleted` (its message,
//! conversation or user went, or it was not written to nor attached for a
//! day) → `gone` (the sweeper removed its bytes; the row stays a day after
//! its creation, so it still counts in its uploader's daily quota).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::columns::Flag;
use super::{now_ms, Store};
use crate::error::{Error, Result};

/// How long an upload may stay unattached (or claimed by a send that never
/// committed) before the sweeper removes it.
pub const ORPHAN_AFTER_MS: i64 = 24 * 3600 * 1000;

/// An upload as the store keeps it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Upload {
    pub id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub name: String,
    pub declared_type: String,
    pub size: i64,
    pub state: String,
    pub content_type: String,
    pub width: i64,
    pub height: i64,
    #[sqlx(try_from = "Flag")]
    pub thumbnail: bool,
    pub blurhash: String,
    pub message_seq: Option<i64>,
    pub created_at: i64,
}

const UPLOAD_COLUMNS: &str = "id, conversation_id, user_id, name, declared_type, size, state, \
     content_type, width, height, thumbnail, blurhash, message_seq, created_at";

/// A file attached to a message, as it is stored in the message and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    /// The upload's id (`upl_…`).
    pub id: String,
    /// The file name the uploader gave.
    pub name: String,
    /// The type sniffed from the bytes (the declared one when the bytes have
    /// no recognisable signature).
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Images: pixels, after the EXIF orientation is applied; 0 otherwise.
    #[serde(default)]
    pub width: i64,
    #[serde(default)]
    pub height: i64,
    /// Whether a thumbnail (at most 320 px) was made.
    #[serde(default)]
    pub thumbnail: bool,
    /// Images: a BlurHash to show while the thumbnail loads; empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blurhash: String,
}

impl From<&Upload> for Attachment {
    fn from(u: &Upload) -> Self {
        Self {
            id: u.id.clone(),
            name: u.name.clone(),
            content_type: u.content_type.clone(),
            size: u.size,
            width: u.width,
            height: u.height,
            thumbnail: u.thumbnail,
            blurhash: u.blurhash.clone(),
        }
    }
}

/// An upload to create, checked by the node.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub conversation_id: String,
    pub user_id: String,
    pub name: String,
    pub declared_type: String,
    pub size: i64,
}

/// What the server derived from a complete upload's bytes.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    pub content_type: String,
    pub width: i64,
    pub height: i64,
    pub thumbnail: bool,
    pub blurhash: String,
    /// The served file's bytes (an image re-encoded differs from its upload).
    pub size: i64,
}

/// An app's file limits; `None`: the server's default (the size) or no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct FileLimits {
    /// The largest file, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<i64>,
    /// Allowed types (`image/png`, or `image/*` for a family); absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// Bytes one user may upload in 24 hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_daily_bytes: Option<i64>,
    /// Bytes the app may keep stored in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_total_bytes: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct LimitsRow {
    file_max_bytes: Option<i64>,
    file_types: Option<String>,
    file_user_daily_bytes: Option<i64>,
    file_app_total_bytes: Option<i64>,
}

/// A deleted upload whose bytes the sweeper removes.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Swept {
    pub app_id: String,
    pub id: String,
}

impl Store {
    /// An app's file limits; `None` when there is no such app.
    pub async fn file_limits(&self, app: &str) -> Result<Option<FileLimits>> {
        let row: Option<LimitsRow> = sqlx::query_as(
            "SELECT file_max_bytes, file_types, file_user_daily_bytes, file_app_total_bytes
             FROM apps WHERE id = $1",
        )
        .bind(app)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| FileLimits {
            max_bytes: r.file_max_bytes,
            types: r
                .file_types
                .map(|t| t.split(',').map(str::to_owned).collect()),
            user_daily_bytes: r.file_user_daily_bytes,
            app_total_bytes: r.file_app_total_bytes,
        }))
    }

    /// Creates an upload, after checking the user's daily and the app's total
    /// quota in the same transaction (the app's row locked on PostgreSQL, so
    /// two nodes cannot both take the last bytes).
    pub async fn create_upload(
        &self,
        app: &str,
        upload: &NewUpload,
        limits: &FileLimits,
    ) -> Result<Upload> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        sqlx::query(&format!("SELECT id FROM apps WHERE id = $1{}", self.lock()))
            .bind(app)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(daily) = limits.user_daily_bytes {
            let used: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(SUM(size) AS BIGINT) FROM uploads
                 WHERE app_id = $1 AND user_id = $2 AND created_at > $3",
            )
            .bind(app)
            .bind(&upload.user_id)
            .bind(now - 24 * 3600 * 1000)
            .fetch_one(&mut *tx)
            .await?;
            if used.unwrap_or(0) + upload.size > daily {
                return Err(Error::too_large(
                    "this user's upload quota for the last 24 hours is used up",
                ));
            }
        }
        if let Some(total) = limits.app_total_bytes {
            let used: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(SUM(size) AS BIGINT) FROM uploads WHERE app_id = $1 AND state NOT IN ('deleted', 'gone')",
            )
            .bind(app)
            .fetch_one(&mut *tx)
            .await?;
            if used.unwrap_or(0) + upload.size > total {
                return Err(Error::too_large("the app's file storage quota is used up"));
            }
        }
        let id = format!("upl_{}", ulid::Ulid::new().to_string().to_lowercase());
        let row: Upload = sqlx::query_as(&format!(
            "INSERT INTO uploads (app_id, id, conversation_id, user_id, name, declared_type, size,
                 state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'uploading', $8, $8)
             RETURNING {UPLOAD_COLUMNS}"
        ))
        .bind(app)
        .bind(&id)
        .bind(&upload.conversation_id)
        .bind(&upload.user_id)
        .bind(&upload.name)
        .bind(&upload.declared_type)
        .bind(upload.size)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// One upload, in any state but `deleted`.
    pub async fn upload(&self, app: &str, id: &str) -> Result<Option<Upload>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE app_id = $1 AND id = $2 AND state NOT IN ('deleted', 'gone')"
        ))
        .bind(app)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Uploads by id (any state but `deleted`), in no particular order.
    pub async fn uploads(&self, app: &str, ids: &[String]) -> Result<Vec<Upload>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = (0..ids.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE app_id = $1 AND id IN ({marks}) AND state NOT IN ('deleted', 'gone')"
        );
        let mut query = sqlx::query_as(&sql).bind(app);
        for id in ids {
            query = query.bind(id);
        }
        Ok(query.fetch_all(&self.reader).await?)
    }

    /// `uploading` → `ready`, with what was derived from the bytes; false
    /// when it is no longer uploading (deleted meanwhile).
    pub async fn upload_ready(&self, app: &str, id: &str, derived: &Derived) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE uploads SET state = 'ready', content_type = $3, width = $4, height = $5,
                 thumbnail = $6, blurhash = $7, updated_at = $8, size = $9
             WHERE app_id = $1 AND id = $2 AND state = 'uploading'",
        )
        .bind(app)
        .bind(id)
        .bind(&derived.content_type)
        .bind(derived.width)
        .bind(derived.height)
        .bind(i64::from(derived.thumbnail))
        .bind(&derived.blurhash)
        .bind(now_ms())
        .bind(derived.size)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// An upload still arriving was written to: it is not an orphan.
    pub async fn touch_upload(&self, app: &str, id: &str) -> Result<()> {
        self.change_arriving(app, id, "").await
    }

    /// Marks an upload whose bytes were refused deleted (its files go with
    /// the next sweep); only while it is still arriving.
    pub async fn refuse_upload(&self, app: &str, id: &str) -> Result<()> {
        self.change_arriving(app, id, ", state = 'deleted'").await
    }

    /// Sets `updated_at` (and `more`, a fixed SQL assignment) on an upload
    /// still arriving.
    async fn change_arriving(&self, app: &str, id: &str, more: &str) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE uploads SET updated_at = $3{more}
             WHERE app_id = $1 AND id = $2 AND state = 'uploading'"
        ))
        .bind(app)
        .bind(id)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Claims `ids` for a send of `user` in `conv`: each must be `ready`, this
    /// user's, in this conversation. All or none: on any miss nothing changes
    /// and the error says which. The send's transaction then records the
    /// message's seq on them (`group_commit`); a failed send releases them.
    pub async fn claim_uploads(
        &self,
        app: &str,
        conv: &str,
        user: &str,
        ids: &[String],
    ) -> Result<Vec<Upload>> {
        let mut tx = self.writer.begin().await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<Upload> = sqlx::query_as(&format!(
                "UPDATE uploads SET state = 'attached', updated_at = $5
                 WHERE app_id = $1 AND id = $2 AND conversation_id = $3 AND user_id = $4
                     AND state = 'ready'
                 RETURNING {UPLOAD_COLUMNS}"
            ))
            .bind(app)
            .bind(id)
            .bind(conv)
            .bind(user)
            .bind(now_ms())
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some(row) => claimed.push(row),
                None => {
                    return Err(Error::new(
                        mkondo_proto::ErrorCode::NotFound,
                        format!(
                            "attachment {id} is not a complete upload of yours in this \
                             conversation, or is attached already"
                        ),
                    ))
                }
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Gives claimed uploads back (a send that failed): `attached` without a
    /// message → `ready`.
    pub async fn release_uploads(&self, app: &str, ids: &[String]) -> Result<()> {
        for id in ids {
            sqlx::query(
                "UPDATE uploads SET state = 'ready', updated_at = $3
                 WHERE app_id = $1 AND id = $2 AND state = 'attached' AND message_seq IS NULL",
            )
            .bind(app)
            .bind(id)
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        }
        Ok(())
    }

    /// Marks orphans deleted — uploads never attached, or claimed by a send
    /// that never committed, for [`ORPHAN_AFTER_MS`] — and returns up to
    /// `limit` deleted uploads whose bytes are to go.
    pub async fn uploads_to_sweep(&self, orphan_after_ms: i64, limit: i64) -> Result<Vec<Swept>> {
        let now = now_ms();
        sqlx::query(
            "UPDATE uploads SET state = 'deleted', updated_at = $1
             WHERE (state IN ('uploading', 'ready') OR (state = 'attached' AND message_seq IS NULL))
                 AND updated_at < $2",
        )
        .bind(now)
        .bind(now - orphan_after_ms)
        .execute(&self.writer)
        .await?;
        Ok(sqlx::query_as(
            "SELECT app_id, id FROM uploads WHERE state = 'deleted' ORDER BY updated_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }

    /// A deleted upload whose bytes are gone: its row stays (`gone`) for a
    /// day, so it still counts in its uploader's daily quota.
    pub async fn forget_upload(&self, app: &str, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE uploads SET state = 'gone' WHERE app_id = $1 AND id = $2 AND state = 'deleted'",
        )
        .bind(app)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Deletes the rows of uploads gone for more than the quota's day.
    pub async fn purge_gone_uploads(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM uploads WHERE state = 'gone' AND created_at < $1")
            .bind(now_ms() - 24 * 3600 * 1000)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Replaces an app's file limits inside an app-settings transaction (the
/// node merged and checked them).
pub(crate) async fn write_file_limits(
    tx: &mut super::Tx<'_>,
    app: &str,
    limits: &FileLimits,
) -> Result<()> {
    sqlx::query(
        "UPDATE apps SET file_max_bytes = $2, file_types = $3, file_user_daily_bytes = $4,
             file_app_total_bytes = $5 WHERE id = $1",
    )
    .bind(app)
    .bind(limits.max_bytes)
    .bind(limits.types.as_ref().map(|t| t.join(",")))
    .bind(limits.user_daily_bytes)
    .bind(limits.app_total_bytes)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Which uploads a delete takes with it.
pub(crate) enum UploadsOf<'a> {
    /// A message's (by conversation and seq).
    Message(&'a str, i64),
    /// Every upload in a conversation.
    Conversation(&'a str),
    /// A user's: with `erase` (their messages become tombstones) all of
    /// them, else those in no message.
    User(&'a str, bool),
}

/// Marks the uploads `of` names deleted, inside the caller's transaction (a
/// message's, conversation's or user's delete); the sweeper removes the bytes.
pub(crate) async fn delete_uploads(
    tx: &mut super::Tx<'_>,
    app: &str,
    of: UploadsOf<'_>,
) -> Result<()> {
    let (filter, key, seq) = match of {
        UploadsOf::Message(conv, seq) => {
            ("conversation_id = $3 AND message_seq = $4", conv, Some(seq))
        }
        UploadsOf::Conversation(conv) => ("conversation_id = $3", conv, None),
        UploadsOf::User(user, true) => ("user_id = $3", user, None),
        UploadsOf::User(user, false) => ("user_id = $3 AND message_seq IS NULL", user, None),
    };
    let sql = format!(
        "UPDATE uploads SET state = 'deleted', updated_at = $2 WHERE app_id = $1 AND {filter}"
    );
    let mut query = sqlx::query(&sql).bind(app).bind(now_ms()).bind(key);
    if let Some(seq) = seq {
        query = query.bind(seq);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
