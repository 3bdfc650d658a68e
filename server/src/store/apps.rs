//! Apps (tenants), their signing keys and their API keys. API keys are stored only
//! as a SHA-256 hash; the plaintext is returned once, at creation.

use serde::Serialize;

use super::columns::{Flag, StringList};
use super::{now_ms, retrying, Millis, Store, Tx};
use crate::auth::{self, KeyAlg, SigningKey};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AppRow {
    #[sqlx(rename = "id")]
    pub app_id: String,
    pub name: String,
    pub created_at: i64,
    #[sqlx(try_from = "Flag")]
    pub auto_create_users: bool,
    #[sqlx(try_from = "Flag")]
    pub user_directory: bool,
    #[serde(skip)]
    pub tokens_valid_after: i64,
    /// Normalised origins, or `*` (`node::origins`).
    #[sqlx(try_from = "StringList")]
    pub allowed_origins: Vec<String>,
}

/// A signing key as created: its secret, for HS256, shown this once.
#[derive(Clone, Serialize, utoipa::ToSchema)]
#[schema(as = SigningKey)]
pub struct KeyRow {
    pub kid: String,
    /// `HS256`, `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    /// The HS256 secret; present only when just created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

// Credentials are serialized once, for their owner; `Debug` (logs, panics)
// never shows them.
const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl std::fmt::Debug for AppCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCreds")
            .field("app_id", &self.app_id)
            .field("name", &self.name)
            .field("signing_key", &self.signing_key)
            .field("api_key", &REDACTED)
            .finish()
    }
}

impl std::fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("api_key", &REDACTED)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The columns an [`AppRow`] is read from (`FromRow`, by name).
const APP_COLUMNS: &str =
    "id, name, created_at, auto_create_users, user_directory, tokens_valid_after, allowed_origins";

/// A row of `signing_keys`; its `alg` is checked as it becomes a [`SigningKey`].
#[derive(sqlx::FromRow)]
struct SigningKeyRow {
    kid: String,
    app_id: String,
    alg: String,
    material: String,
}

impl SigningKeyRow {
    /// None for an algorithm this server does not know: such a key verifies nothing.
    fn into_key(self) -> Option<SigningKey> {
        Some(SigningKey {
            alg: KeyAlg::parse(&self.alg)?,
            kid: self.kid,
            app_id: self.app_id,
            material: self.material,
        })
    }
}

/// What `mkondo app create` prints: the credentials, shown once.
#[derive(Clone, Serialize, utoipa::ToSchema)]
#[schema(as = AppCredentials)]
pub struct AppCreds {
    pub app_id: String,
    pub name: String,
    pub signing_key: KeyRow,
    /// Shown this once.
    pub api_key: String,
}

impl Store {
    pub async fn create_app(&self, name: &str, app_id: Option<&str>) -> Result<AppCreds> {
        if name.trim().is_empty() || name.len() > 200 {
            return Err(Error::invalid("app name must be 1-200 characters"));
        }
        let app_id = match app_id {
            Some(id) if auth::valid_user_id(id) && !id.contains('_') => id.to_owned(),
            Some(_) => return Err(Error::invalid("invalid app id")),
            None => format!("app{}", &ulid::Ulid::new().to_string().to_lowercase()[16..]),
        };
        let now = now_ms();
        let kid = auth::new_kid();
        let secret = auth::new_hs256_secret();
        let api_key = auth::new_api_key(&app_id);
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO apps (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&app_id)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(Error::new(
                mkondo_proto::ErrorCode::AlreadyExists,
                "app already exists",
            ));
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, app_id, alg, material, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&kid)
        .bind(&app_id)
        .bind(KeyAlg::Hs256.as_str())
        .bind(&secret)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO api_keys (hash, app_id, prefix, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&api_key.hash)
        .bind(&app_id)
        .bind(&api_key.prefix)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AppCreds {
            app_id,
            name: name.to_owned(),
            signing_key: KeyRow {
                kid,
                alg: KeyAlg::Hs256.as_str().to_owned(),
                secret: Some(secret),
            },
            api_key: api_key.plaintext,
        })
    }

    pub async fn get_app(&self, app_id: &str) -> Result<Option<AppRow>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(app_id)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub async fn find_app_by_name(&self, name: &str) -> Result<Option<AppRow>> {
        let sql =
            format!("SELECT {APP_COLUMNS} FROM apps WHERE name = $1 ORDER BY created_at LIMIT 1");
        Ok(sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub async fn list_apps(&self) -> Result<Vec<AppRow>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY created_at");
        Ok(sqlx::query_as(&sql).fetch_all(&self.reader).await?)
    }

    /// Adds a signing key: an HS256 secret (generated when `material` is None) or a
    /// public key PEM for RS256 / ES256 / EdDSA.
    pub async fn add_signing_key(
        &self,
        app_id: &str,
        alg: KeyAlg,
        material: Option<String>,
    ) -> Result<KeyRow> {
        if self.get_app(app_id).await?.is_none() {
            return Err(Error::not_found("app"));
        }
        let (material, secret) = match (alg, material) {
            (KeyAlg::Hs256, None) => {
                let s = auth::new_hs256_secret();
                (s.clone(), Some(s))
            }
            (KeyAlg::Hs256, Some(s)) => (s.clone(), Some(s)),
            (_, Some(pem)) => (pem, None),
            (_, None) => {
                return Err(Error::invalid(
                    "a public key is required for this algorithm",
                ))
            }
        };
        let kid = auth::new_kid();
        let key = SigningKey {
            kid: kid.clone(),
            app_id: app_id.to_owned(),
            alg,
            material: material.clone(),
        };
        if alg == KeyAlg::Hs256 && material.len() < auth::MIN_HS256_SECRET_BYTES {
            return Err(Error::invalid(format!(
                "an HS256 secret must have at least {} bytes",
                auth::MIN_HS256_SECRET_BYTES
            )));
        }
        if !auth::key_usable(&key) {
            return Err(Error::invalid("the key does not parse for this algorithm"));
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, app_id, alg, material, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&kid)
        .bind(app_id)
        .bind(alg.as_str())
        .bind(&material)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(KeyRow {
            kid,
            alg: alg.as_str().to_owned(),
            secret,
        })
    }

    pub async fn signing_key(&self, kid: &str) -> Result<Option<SigningKey>> {
        let row: Option<SigningKeyRow> =
            sqlx::query_as("SELECT kid, app_id, alg, material FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.and_then(SigningKeyRow::into_key))
    }

    /// The newest HS256 key of an app: what `mkondo token` and `POST /v1/tokens` sign with.
    pub async fn minting_key(&self, app_id: &str) -> Result<Option<SigningKey>> {
        let kid: Option<String> = sqlx::query_scalar(
            "SELECT kid FROM signing_keys WHERE app_id = $1 AND alg = 'HS256' ORDER BY created_at DESC LIMIT 1",
        )
        .bind(app_id)
        .fetch_optional(&self.reader)
        .await?;
        match kid {
            Some(kid) => self.signing_key(&kid).await,
            None => Ok(None),
        }
    }

    pub async fn create_api_key(&self, app_id: &str) -> Result<String> {
        Ok(self.create_api_key_named(app_id).await?.api_key)
    }

    /// The app an API key belongs to, if the key exists and is not revoked.
    pub async fn app_for_api_key(&self, plaintext: &str) -> Result<Option<String>> {
        let hash = auth::hash_api_key(plaintext);
        Ok(
            sqlx::query_scalar(
                "SELECT app_id FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
            )
            .bind(hash)
            .fetch_optional(&self.reader)
            .await?,
        )
    }

    pub async fn revoke_api_key(&self, app_id: &str, prefix: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE app_id = $2 AND prefix = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(app_id)
        .bind(prefix)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// An `allowed_origins` value read alone; one that does not parse is `internal`,
/// as a column that does not decode (store/columns.rs).
fn origin_list(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|err| {
        tracing::error!(%err, "an app's allowed_origins is not a JSON array of strings");
        Error::internal()
    })
}

/// A signing key as listed (never its material).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at: Millis,
}

/// An API key as listed: its display prefix, never the key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ApiKeyInfo {
    pub prefix: String,
    pub created_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Millis>,
}

/// The settings of an app to change (`Store::update_app_settings`); a field
/// `None` stays as it is.
#[derive(Default)]
pub struct AppSettingsChange<'a> {
    pub auto_create_users: Option<bool>,
    pub user_directory: Option<bool>,
    pub allowed_origins: Option<&'a [String]>,
    /// `Some(None)` removes the hook.
    pub before_send_hook: Option<Option<&'a super::hooks::HookRow>>,
    pub push: Option<&'a super::push_settings::PushSettingsRow>,
    pub files: Option<&'a super::files::FileLimits>,
}

/// An app as its operator sees it (`mkondo app list`, `GET /v1/admin/apps`):
/// key ids and API-key prefixes, never secrets.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = App)]
pub struct AppOverview {
    pub app_id: String,
    pub name: String,
    pub created_at: Millis,
    pub auto_create_users: bool,
    /// Whether its users may search the directory (`search_users`).
    pub user_directory: bool,
    /// The browser origins its web frontends may call from (REST and WebSocket),
    /// besides the server's own; `*` allows any (development).
    pub allowed_origins: Vec<String>,
    /// The before-send hook, if the app has one (`node::hooks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_send_hook: Option<HookInfo>,
    /// The push providers it configured (never their keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushInfo>,
    /// Its file limits (a limit not set: the server's default size, no quota).
    pub files: super::files::FileLimits,
    pub signing_keys: Vec<KeyInfo>,
    pub api_keys: Vec<ApiKeyInfo>,
}

/// An app's push settings as the operator sees them: which providers are set,
/// with what identifies their credentials, never the keys.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PushSettings)]
pub struct PushInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apns: Option<ApnsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fcm: Option<FcmInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_push: Option<WebPushInfo>,
    /// What a message push shows: `full` (its text), `generic` ("New
    /// message") or `none` (no alert text).
    pub preview: String,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ApnsInfo {
    pub key_id: String,
    pub team_id: String,
    /// The bundle id pushes go to when a device names none.
    pub topic: String,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct FcmInfo {
    pub project_id: String,
    pub client_email: String,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WebPushInfo {
    /// The VAPID public key (base64url, uncompressed P-256): the web SDK's
    /// `applicationServerKey`.
    pub public_key: String,
    /// The contact pushes are signed with (`mailto:` or `https:`).
    pub subject: String,
}

impl From<&super::push_settings::PushSettingsRow> for PushInfo {
    fn from(row: &super::push_settings::PushSettingsRow) -> Self {
        Self {
            apns: (!row.apns_key.is_empty()).then(|| ApnsInfo {
                key_id: row.apns_key_id.clone(),
                team_id: row.apns_team_id.clone(),
                topic: row.apns_topic.clone(),
            }),
            fcm: (!row.fcm_service_account.is_empty()).then(|| FcmInfo {
                project_id: row.fcm_project_id.clone(),
                client_email: row.fcm_client_email.clone(),
            }),
            web_push: (!row.vapid_private_key.is_empty()).then(|| WebPushInfo {
                public_key: row.vapid_public_key.clone(),
                subject: row.vapid_subject.clone(),
            }),
            preview: row.preview.clone(),
        }
    }
}

/// An app's before-send hook as the operator sees it: its signing secret only
/// in the answer that set it.
#[derive(Clone, Serialize, utoipa::ToSchema)]
#[schema(as = BeforeSendHook)]
pub struct HookInfo {
    /// Called with every user message and edit before it is stored.
    pub url: String,
    /// How long the server waits for the answer (ms).
    pub timeout_ms: i64,
    /// With no usable answer in time: true stores the message as sent, false
    /// refuses it (`unavailable`, reason `hook_failed`).
    pub fail_open: bool,
    /// The secret the calls are signed with (`Mkondo-Signature`), shown this
    /// once: only in the answer that set the hook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for HookInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookInfo")
            .field("url", &self.url)
            .field("timeout_ms", &self.timeout_ms)
            .field("fail_open", &self.fail_open)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// A new API key: the key itself is shown this once; the prefix names it later.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    /// Shown this once.
    pub api_key: String,
    /// Names the key when listing or revoking it.
    pub prefix: String,
}

/// A row of the `revocations` table: sessions to close, written by the CLI for
/// running servers to act on.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Revocation {
    pub id: i64,
    pub app_id: String,
    pub user_id: Option<String>,
    pub kid: Option<String>,
    pub issued_before: Option<i64>,
    #[sqlx(try_from = "i64")]
    pub code: u16,
}

/// Whether a change made without the server is also recorded for running
/// servers to close the sessions it affects (the CLI), or not (the server
/// closes them itself, through the broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// The server making the change closes the sessions itself.
    No,
    /// Record a row in `revocations`, with this disconnect code.
    WithCode(u16),
}

// Key management and revocation.
impl Store {
    /// Every app with its keys, oldest first.
    pub async fn app_overviews(&self) -> Result<Vec<AppOverview>> {
        let apps = self.list_apps().await?;
        let mut out = Vec::with_capacity(apps.len());
        for app in apps {
            out.push(self.overview(app).await?);
        }
        Ok(out)
    }

    /// One app with its keys; `None` when there is no such app.
    pub async fn app_overview(&self, app_id: &str) -> Result<Option<AppOverview>> {
        match self.get_app(app_id).await? {
            Some(app) => Ok(Some(self.overview(app).await?)),
            None => Ok(None),
        }
    }

    async fn overview(&self, app: AppRow) -> Result<AppOverview> {
        let before_send_hook = self.before_send_hook(&app.app_id).await?.map(|h| HookInfo {
            url: h.url,
            timeout_ms: h.timeout_ms,
            fail_open: h.fail_open,
            secret: None,
        });
        let push = self
            .push_settings(&app.app_id)
            .await?
            .map(|row| PushInfo::from(&row));
        let files = self.file_limits(&app.app_id).await?.unwrap_or_default();
        Ok(AppOverview {
            files,
            push,
            before_send_hook,
            signing_keys: self.signing_keys(&app.app_id).await?,
            api_keys: self.api_keys(&app.app_id).await?,
            app_id: app.app_id,
            name: app.name,
            created_at: Millis(app.created_at),
            auto_create_users: app.auto_create_users,
            user_directory: app.user_directory,
            allowed_origins: app.allowed_origins,
        })
    }

    /// Sets the app's own `auto_create_users`; false when there is no such app.
    pub async fn set_auto_create_users(&self, app_id: &str, on: bool) -> Result<bool> {
        let updated = sqlx::query("UPDATE apps SET auto_create_users = $1 WHERE id = $2")
            .bind(i64::from(on))
            .bind(app_id)
            .execute(&self.writer)
            .await?;
        Ok(updated.rows_affected() > 0)
    }

    /// Changes an app's settings in one transaction (a field `None` stays as it
    /// is); false, and nothing changed, when there is no such app. The origins
    /// are stored as given: `node::origins` checks and normalises them first;
    /// the hook likewise (`node::hooks`): `Some(None)` removes it; the push
    /// settings are written whole (`node::push_settings` merges them).
    pub async fn update_app_settings(
        &self,
        app_id: &str,
        change: &AppSettingsChange<'_>,
    ) -> Result<bool> {
        let origins = change
            .allowed_origins
            .map(serde_json::to_string)
            .transpose()
            .map_err(|_| Error::internal())?;
        let mut tx = self.writer.begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM apps WHERE id = $1")
            .bind(app_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        for (column, on) in [
            ("auto_create_users", change.auto_create_users),
            ("user_directory", change.user_directory),
        ] {
            if let Some(on) = on {
                sqlx::query(&format!("UPDATE apps SET {column} = $1 WHERE id = $2"))
                    .bind(i64::from(on))
                    .bind(app_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(origins) = origins {
            sqlx::query("UPDATE apps SET allowed_origins = $1 WHERE id = $2")
                .bind(origins)
                .bind(app_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(hook) = change.before_send_hook {
            super::hooks::write_hook(&mut tx, app_id, hook).await?;
        }
        if let Some(push) = change.push {
            super::push_settings::write_push_settings(&mut tx, self.engine, app_id, push).await?;
        }
        if let Some(files) = change.files {
            super::files::write_file_limits(&mut tx, app_id, files).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// One app's allowed origins; `None` when there is no such app.
    pub async fn allowed_origins(&self, app_id: &str) -> Result<Option<Vec<String>>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT allowed_origins FROM apps WHERE id = $1")
                .bind(app_id)
                .fetch_optional(&self.reader)
                .await?;
        text.as_deref().map(origin_list).transpose()
    }

    /// Every app's allowed origins, together (duplicates possible): what a
    /// browser's preflight is answered from, before any credential is seen.
    pub async fn all_allowed_origins(&self) -> Result<Vec<String>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT allowed_origins FROM apps WHERE allowed_origins <> '[]'")
                .fetch_all(&self.reader)
                .await?;
        let mut all = Vec::new();
        for text in rows {
            all.extend(origin_list(&text)?);
        }
        Ok(all)
    }

    /// The app's signing keys, oldest first.
    pub async fn signing_keys(&self, app_id: &str) -> Result<Vec<KeyInfo>> {
        Ok(sqlx::query_as(
            "SELECT kid, alg, created_at FROM signing_keys WHERE app_id = $1 ORDER BY created_at, kid",
        )
        .bind(app_id)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Removes a signing key: tokens naming its kid are refused from now on. The
    /// app's last key cannot be removed (nobody could sign in any more).
    pub async fn remove_signing_key(
        &self,
        app_id: &str,
        kid: &str,
        announce: Announce,
    ) -> Result<()> {
        retrying(|| self.remove_signing_key_once(app_id, kid, announce)).await
    }

    async fn remove_signing_key_once(
        &self,
        app_id: &str,
        kid: &str,
        announce: Announce,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT kid FROM signing_keys WHERE app_id = $1")
                .bind(app_id)
                .fetch_all(&mut *tx)
                .await?;
        if !keys.iter().any(|k| k == kid) {
            return Err(Error::not_found("signing key"));
        }
        if keys.len() == 1 {
            return Err(Error::denied(
                "cannot remove the app's last signing key: add another first",
            ));
        }
        sqlx::query("DELETE FROM signing_keys WHERE app_id = $1 AND kid = $2")
            .bind(app_id)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        if let Announce::WithCode(code) = announce {
            record_revocation(&mut tx, app_id, Some(kid), None, code).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Refuses every token of the app issued (`iat`, ms) before `valid_after`;
    /// never moves the point back. False when there is no such app.
    pub async fn revoke_app_tokens(
        &self,
        app_id: &str,
        valid_after: i64,
        announce: Announce,
    ) -> Result<bool> {
        retrying(|| self.revoke_app_tokens_once(app_id, valid_after, announce)).await
    }

    async fn revoke_app_tokens_once(
        &self,
        app_id: &str,
        valid_after: i64,
        announce: Announce,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE apps SET tokens_valid_after =
                 CASE WHEN tokens_valid_after > $2 THEN tokens_valid_after ELSE $2 END
             WHERE id = $1",
        )
        .bind(app_id)
        .bind(valid_after)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Announce::WithCode(code) = announce {
            record_revocation(&mut tx, app_id, None, Some(valid_after), code).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The app's API keys (revoked ones too), oldest first.
    pub async fn api_keys(&self, app_id: &str) -> Result<Vec<ApiKeyInfo>> {
        Ok(sqlx::query_as(
            "SELECT prefix, created_at, revoked_at FROM api_keys WHERE app_id = $1 ORDER BY created_at, prefix",
        )
        .bind(app_id)
        .fetch_all(&self.reader)
        .await?)
    }

    /// A new API key, with the prefix that names it when listing or revoking it.
    pub async fn create_api_key_named(&self, app_id: &str) -> Result<CreatedApiKey> {
        if self.get_app(app_id).await?.is_none() {
            return Err(Error::not_found("app"));
        }
        let key = auth::new_api_key(app_id);
        sqlx::query(
            "INSERT INTO api_keys (hash, app_id, prefix, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.hash)
        .bind(app_id)
        .bind(&key.prefix)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(CreatedApiKey {
            api_key: key.plaintext,
            prefix: key.prefix,
        })
    }

    /// The newest row of `revocations` (0 when empty): where a server starts watching.
    pub async fn last_revocation_id(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM revocations")
                .fetch_one(&self.reader)
                .await?,
        )
    }

    /// Rows of `revocations` after `id`, in order.
    pub async fn revocations_after(&self, id: i64) -> Result<Vec<Revocation>> {
        Ok(sqlx::query_as(
            "SELECT id, app_id, user_id, kid, issued_before, code FROM revocations
             WHERE id > $1 ORDER BY id LIMIT 100",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?)
    }
}

/// Appends a row to `revocations` inside the caller's transaction. Ids are
/// allocated as MAX + 1 within it: SQLite's single writer serializes them; on
/// PostgreSQL two writers taking the same id collide on the primary key and the
/// later one runs again (`retrying`), so ids still appear in commit order.
async fn record_revocation(
    tx: &mut Tx<'_>,
    app_id: &str,
    kid: Option<&str>,
    issued_before: Option<i64>,
    code: u16,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO revocations (id, app_id, user_id, kid, issued_before, code, created_at)
         SELECT COALESCE(MAX(id), 0) + 1, $1, NULL, $2, $3, $4, $5 FROM revocations",
    )
    .bind(app_id)
    .bind(kid)
    .bind(issued_before)
    .bind(i64::from(code))
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_credential() {
        let key = KeyRow {
            kid: "k_1".into(),
            alg: "HS256".into(),
            secret: Some("hs256-secret-material".into()),
        };
        let creds = AppCreds {
            app_id: "app1".into(),
            name: "main".into(),
            signing_key: key.clone(),
            api_key: "mk_app1_plaintextkey".into(),
        };
        let created = CreatedApiKey {
            api_key: "mk_app1_anotherplaintext".into(),
            prefix: "mk_app1_ano".into(),
        };
        let printed = format!("{key:?} {creds:?} {created:?}");
        for secret in ["hs256-secret-material", "plaintextkey", "anotherplaintext"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(
            printed.contains("k_1") && printed.contains("mk_app1_ano"),
            "{printed}"
        );
    }
}
