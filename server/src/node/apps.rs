//! Apps, their credentials and the server's own state, as the operator API, the
//! two backend APIs' authentication and the process around the node (readiness,
//! shutdown, `mkondo dev`) need them. Every adapter reaches the store through
//! these; none holds it.

use std::time::Duration;

use mkondo_proto::{DisconnectCode, ErrorCode, Reason};

use super::hooks::HookInput;
use super::origins::{self, BrowserOrigin};
use super::push_settings::PushInput;
use super::Node;
use crate::auth::{self, KeyAlg, TokenClaims};
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::store::{AppCreds, AppOverview, AppSettingsChange, CreatedApiKey, KeyRow};

/// The settings of an app to change (`Node::update_app`); a field `None`
/// stays as it is.
#[derive(Debug, Default)]
pub struct AppChange {
    pub auto_create_users: Option<bool>,
    pub user_directory: Option<bool>,
    pub allowed_origins: Option<Vec<String>>,
    /// `Some(None)` removes the hook.
    pub before_send_hook: Option<Option<HookInput>>,
    pub push: Option<PushInput>,
    pub files: Option<super::files::FilesInput>,
}

/// How long a graceful shutdown waits for sessions to write their goodbye.
const SESSION_DRAIN: Duration = Duration::from_secs(5);

/// What the node is missing to serve, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    ShuttingDown,
    Broker,
    Database,
}

impl NotReady {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ShuttingDown => "shutting down",
            Self::Broker => "broker unavailable",
            Self::Database => "database unavailable",
        }
    }
}

/// The `demo` app of `mkondo dev`, as the process found or made it.
#[derive(Debug)]
pub enum DemoApp {
    Created(AppCreds),
    /// It existed, with the API key printed when it was created.
    Existing,
}

impl Node {
    // ----- the process around the node

    /// The server's limits (read-only: the transports size their buffers by them).
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// The database setting (its `Display` hides a password).
    pub fn database_setting(&self) -> &crate::config::DatabaseUrl {
        &self.config.database
    }

    /// Cancelled when the node starts shutting down.
    pub fn shutdown_signal(&self) -> tokio_util::sync::CancellationToken {
        self.shutdown.clone()
    }

    /// Whether the node can serve: not shutting down, broker subscribed, database answering.
    pub async fn readiness(&self) -> std::result::Result<(), NotReady> {
        if self.shutdown.is_cancelled() {
            return Err(NotReady::ShuttingDown);
        }
        if !self.broker.ready() {
            return Err(NotReady::Broker);
        }
        self.store.ping().await.map_err(|_| NotReady::Database)
    }

    /// Starts a graceful shutdown: sessions are told to reconnect elsewhere.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
        self.hub.close_all(DisconnectCode::Shutdown);
    }

    /// Ends a graceful shutdown once the listener has stopped: waits (a bounded
    /// time) for every session to write its goodbye and for the push worker
    /// to record what it sent, then closes the database.
    pub async fn finish_shutdown(&self) {
        self.sessions.close();
        let _ = tokio::time::timeout(SESSION_DRAIN, self.sessions.wait()).await;
        self.workers.close();
        let _ = tokio::time::timeout(SESSION_DRAIN, self.workers.wait()).await;
        self.store.close().await;
    }

    /// The `demo` app for `mkondo dev`: created with its credentials, allowing
    /// any browser origin (development: the web SDK's browser tests run their
    /// pages on ports of their own), or found as it is (no new API key on
    /// every start, its origins as the developer left them).
    pub async fn ensure_demo_app(&self, id: &str) -> Result<DemoApp> {
        if self.store.get_app(id).await?.is_none() {
            let creds = self.store.create_app(id, Some(id)).await?;
            let any = AppChange {
                allowed_origins: Some(vec![origins::ANY.to_owned()]),
                ..AppChange::default()
            };
            self.update_app(id, any).await?;
            return Ok(DemoApp::Created(creds));
        }
        Ok(DemoApp::Existing)
    }

    /// Mints a development token with the app's newest HS256 key (`mkondo dev`'s
    /// `/dev/token`; the backend APIs use `mint_token` with its input rules).
    pub async fn mint_dev_token(&self, app: &str, user: &str, ttl_secs: i64) -> Result<String> {
        let key = self
            .store
            .minting_key(app)
            .await?
            .ok_or_else(|| Error::invalid("the app has no HS256 signing key"))?;
        let now = chrono::Utc::now().timestamp();
        auth::mint_hs256(&key, user, ttl_secs, &[], Some(user), now)
            .map_err(|e| Error::invalid(format!("cannot mint a token: {e}")))
    }

    // ----- credentials

    /// The app an API key belongs to; an unknown or revoked key is refused.
    pub async fn app_for_api_key(&self, key: &str) -> Result<String> {
        self.store.app_for_api_key(key).await?.ok_or_else(|| {
            Error::unauthenticated("unknown or revoked API key").with_reason(Reason::InvalidApiKey)
        })
    }

    /// A user token's claims for a request/response API: verified as on connect,
    /// the browser's origin checked against the token's app, and the user
    /// created from them (joining its `groups`) when seen first.
    pub async fn authenticate_user_request(
        &self,
        token: &str,
        origin: Option<&BrowserOrigin>,
    ) -> Result<TokenClaims> {
        let claims = self.authenticate(token).await?;
        self.check_origin(&claims.app_id, origin).await?;
        if self
            .store
            .get_user(&claims.app_id, &claims.user_id)
            .await?
            .is_none()
        {
            self.user_for_claims(&claims).await?;
        }
        Ok(claims)
    }

    /// `not_found` when the operator API is off (no secret configured), so it
    /// cannot be probed for; checked before any credential is looked at.
    pub fn require_operator_api(&self) -> Result<()> {
        self.operator_secret().map(|_| ())
    }

    /// Whether `given` is the operator secret (`not_found` when the API is off).
    pub fn check_operator_secret(&self, given: &str) -> Result<()> {
        if !same_secret(given, self.operator_secret()?) {
            return Err(Error::unauthenticated("wrong operator secret")
                .with_reason(Reason::InvalidOperatorSecret));
        }
        Ok(())
    }

    fn operator_secret(&self) -> Result<&str> {
        match &self.config.operator_secret {
            Some(secret) => Ok(secret.expose()),
            None => Err(Error::new(
                ErrorCode::NotFound,
                "the operator API is off: start the server with --operator-secret",
            )
            .with_reason(Reason::OperatorApiOff)),
        }
    }

    // ----- the operator API

    /// Every app, with its key ids and API-key prefixes (never secrets).
    pub async fn app_overviews(&self) -> Result<Vec<AppOverview>> {
        self.store.app_overviews().await
    }

    /// A new app with an HS256 signing key and an API key, shown this once.
    pub async fn create_app(&self, name: &str, id: Option<&str>) -> Result<AppCreds> {
        self.store.create_app(name, id).await
    }

    /// Changes an app's settings: `auto_create_users` (whether a token for a user
    /// the app does not know creates them; the server-wide setting must allow
    /// it too), `user_directory` (whether its users may search the directory;
    /// see `people.rs`), `allowed_origins` (replaced whole; see `origins.rs`) and the
    /// before-send hook (`Some(None)` removes it; a new one gets a new signing
    /// secret, answered this once; see `hooks.rs`) and the push settings
    /// (each provider set or removed; see `push_settings.rs`). Every field is checked
    /// before anything is written, and all are written in one transaction.
    /// Answers the app as listed.
    pub async fn update_app(&self, app: &str, change: AppChange) -> Result<AppOverview> {
        let origins = change
            .allowed_origins
            .map(origins::allow_list)
            .transpose()?;
        let hook = match change.before_send_hook {
            None => None,
            Some(None) => Some(None),
            Some(Some(input)) => Some(Some(self.prepare_hook(input).await?)),
        };
        let push = match change.push {
            Some(input) => Some(self.prepare_push_settings(app, input).await?),
            None => None,
        };
        let files = match change.files {
            Some(input) => Some(self.prepare_file_limits(app, input).await?),
            None => None,
        };
        let row = hook.as_ref().map(|h| h.as_ref().map(|(row, _)| row));
        if !self
            .store
            .update_app_settings(
                app,
                &AppSettingsChange {
                    auto_create_users: change.auto_create_users,
                    user_directory: change.user_directory,
                    allowed_origins: origins.as_deref(),
                    before_send_hook: row,
                    push: push.as_ref(),
                    files: files.as_ref(),
                },
            )
            .await?
        {
            return Err(Error::not_found("app"));
        }
        if origins.is_some() {
            self.origins_changed();
        }
        if hook.is_some() {
            self.hook_changed(app);
        }
        let mut overview = self
            .store
            .app_overview(app)
            .await?
            .ok_or_else(|| Error::not_found("app"))?;
        if let (Some(Some((_, secret))), Some(shown)) = (hook, overview.before_send_hook.as_mut()) {
            shown.secret = Some(secret);
        }
        Ok(overview)
    }

    /// A new signing key: HS256 made here (no public key), or a given public key.
    pub async fn add_signing_key(
        &self,
        app: &str,
        alg: KeyAlg,
        public_key: Option<String>,
    ) -> Result<KeyRow> {
        if alg == KeyAlg::Hs256 && public_key.is_some() {
            return Err(Error::invalid(
                "HS256 keys are generated by the server: give no public_key",
            ));
        }
        self.store.add_signing_key(app, alg, public_key).await
    }

    /// Another API key for the app, shown this once.
    pub async fn create_api_key(&self, app: &str) -> Result<CreatedApiKey> {
        self.store.create_api_key_named(app).await
    }

    /// Revokes the API key with this prefix.
    pub async fn revoke_api_key(&self, app: &str, prefix: &str) -> Result<()> {
        self.require_app(app).await?;
        if !self.store.revoke_api_key(app, prefix).await? {
            return Err(Error::not_found("API key"));
        }
        Ok(())
    }

    /// `not_found` unless the app exists.
    pub async fn require_app(&self, app: &str) -> Result<()> {
        match self.store.get_app(app).await? {
            Some(_) => Ok(()),
            None => Err(Error::not_found("app")),
        }
    }
}

/// Compares two secrets in time independent of where they differ (and of their
/// lengths): their SHA-256 digests are compared with no early exit.
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest as _, Sha256};
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret("operator-secret-0123", "operator-secret-0123"));
        assert!(!same_secret("operator-secret-0124", "operator-secret-0123"));
        assert!(!same_secret("operator-secret-012", "operator-secret-0123"));
        assert!(!same_secret("", "operator-secret-0123"));
    }
}
