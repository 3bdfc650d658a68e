//! The FCM sender's credentials: a Google service account, and the OAuth 2.0
//! access token got for it by the JWT bearer grant (RFC 7523, "JSON Web Token
//! (JWT) Profile for OAuth 2.0 Client Authentication and Authorization
//! Grants", as Google's "Using OAuth 2.0 for Server to Server Applications"
//! applies it): a JWT signed RS256 with the account's private key, header
//! `kid` = `private_key_id`, claims `iss` = `client_email`, `scope`,
//! `aud` = `token_uri`, `iat`, `exp` = `iat` + 3600, POSTed as
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`.
//! The answer's token is kept until five minutes before its `expires_in`.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::answer::{exchange, reason_text, retry_after, unix_seconds};
use crate::{Error, Outcome, Result};

/// Google's token endpoint, for an account file without `token_uri`.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The scope that lets a token send FCM messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long an assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;
/// A token is replaced this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A Google service account, read from the JSON key file the Firebase
/// console hands out.
#[derive(Clone)]
pub struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key_id: String,
    token_uri: Url,
    signing: EncodingKey,
}

#[derive(Deserialize)]
struct AccountFile {
    project_id: Option<String>,
    client_email: Option<String>,
    private_key_id: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
}

impl ServiceAccount {
    /// Reads a service-account key file (`type: service_account`).
    pub fn from_json(json: &str) -> Result<Self> {
        let file: AccountFile = serde_json::from_str(json).map_err(|e| {
            Error::Credentials(format!("the service-account file is not JSON: {e}"))
        })?;
        let field = |value: Option<String>, name: &str| {
            value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                Error::Credentials(format!("the service-account file has no {name}"))
            })
        };
        let project_id = field(file.project_id, "project_id")?;
        let project_ok = project_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b));
        if !project_ok || project_id.len() > 100 {
            return Err(Error::Credentials(
                "project_id has characters a Google project id does not".into(),
            ));
        }
        let client_email = field(file.client_email, "client_email")?;
        let private_key_id = field(file.private_key_id, "private_key_id")?;
        let private_key = field(file.private_key, "private_key")?;
        let token_uri = file.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI);
        let token_uri = Url::parse(token_uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| Error::Credentials("token_uri is not an http(s) URL".into()))?;
        let signing = EncodingKey::from_rsa_pem(private_key.as_bytes())
            .map_err(|_| Error::Credentials("private_key is not a PEM RSA private key".into()))?;
        Ok(ServiceAccount {
            project_id,
            client_email,
            private_key_id,
            token_uri,
            signing,
        })
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    pub fn token_uri(&self) -> &Url {
        &self.token_uri
    }

    /// The signed assertion of the JWT bearer grant, issued at `now`.
    pub(crate) fn assertion(&self, now: SystemTime) -> Result<String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
        }
        let iat = unix_seconds(now);
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.private_key_id.clone());
        jsonwebtoken::encode(
            &header,
            &Claims {
                iss: &self.client_email,
                scope: SCOPE,
                aud: self.token_uri.as_str(),
                iat,
                exp: iat + ASSERTION_LIFETIME,
            },
            &self.signing,
        )
        .map_err(|e| Error::Credentials(format!("signing the OAuth assertion: {e}")))
    }
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri.as_str())
            .finish_non_exhaustive()
    }
}

/// An access token and when to replace it.
#[derive(Clone)]
pub(crate) struct AccessToken {
    pub(crate) token: String,
    pub(crate) refresh_at: Instant,
}

/// What the token endpoint gave.
pub(crate) enum Fetched {
    Token(AccessToken),
    /// It is busy or failing: the push is to be retried.
    Busy(Outcome),
}

/// Asks the token endpoint for an access token.
pub(crate) async fn fetch(http: &reqwest::Client, account: &ServiceAccount) -> Result<Fetched> {
    let assertion = account.assertion(SystemTime::now())?;
    let request = http
        .post(account.token_uri.clone())
        .form(&[("grant_type", GRANT_TYPE), ("assertion", &assertion)]);
    let reply = exchange(request).await?;
    let fetched = token_answer(reply.status, &reply.headers, &reply.body, Instant::now());
    tracing::debug!(
        provider = "fcm",
        status = reply.status,
        ok = matches!(fetched, Ok(Fetched::Token(_))),
        "access token requested"
    );
    fetched
}

/// Reads the token endpoint's answer (RFC 6749 sections 5.1 and 5.2).
pub(crate) fn token_answer(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: Instant,
) -> Result<Fetched> {
    #[derive(Deserialize)]
    struct Granted {
        access_token: String,
        expires_in: u64,
    }
    #[derive(Deserialize)]
    struct Refused {
        error: Option<String>,
        error_description: Option<String>,
    }
    match status {
        200 => {
            let granted: Granted = serde_json::from_slice(body).map_err(|_| {
                Error::Answer("the token endpoint's 200 has no access_token and expires_in".into())
            })?;
            let lifetime = Duration::from_secs(granted.expires_in);
            let keep = lifetime.saturating_sub(EXPIRY_MARGIN).max(lifetime / 2);
            Ok(Fetched::Token(AccessToken {
                token: granted.access_token,
                refresh_at: now + keep,
            }))
        }
        429 | 500..=599 => Ok(Fetched::Busy(Outcome::Retry {
            after: retry_after(headers, SystemTime::now()),
            reason: format!("token endpoint: {status} {}", reason_text(body)),
        })),
        400..=499 => {
            let reason = match serde_json::from_slice::<Refused>(body) {
                Ok(Refused {
                    error: Some(error),
                    error_description,
                }) => reason_text(
                    format!("{error}: {}", error_description.unwrap_or_default()).as_bytes(),
                ),
                _ => reason_text(body),
            };
            Err(Error::Unauthorized { status, reason })
        }
        _ => Err(Error::Answer(format!(
            "the token endpoint answered {status}: {}",
            reason_text(body)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    #[test]
    fn an_account_file_names_what_it_lacks() {
        for (json, missing) in [
            ("{}", "project_id"),
            (r#"{"project_id":"p-1"}"#, "client_email"),
            (
                r#"{"project_id":"p-1","client_email":"a@b"}"#,
                "private_key_id",
            ),
            (
                r#"{"project_id":"p-1","client_email":"a@b","private_key_id":"k"}"#,
                "private_key",
            ),
        ] {
            match ServiceAccount::from_json(json) {
                Err(Error::Credentials(text)) => assert!(text.contains(missing), "{text}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        let bad_key = r#"{"project_id":"p-1","client_email":"a@b","private_key_id":"k","private_key":"nope"}"#;
        assert!(matches!(
            ServiceAccount::from_json(bad_key),
            Err(Error::Credentials(_))
        ));
        assert!(matches!(
            ServiceAccount::from_json("not json"),
            Err(Error::Credentials(_))
        ));
        let bad_project =
            r#"{"project_id":"P 1","client_email":"a@b","private_key_id":"k","private_key":"x"}"#;
        assert!(matches!(
            ServiceAccount::from_json(bad_project),
            Err(Error::Credentials(_))
        ));
    }

    #[test]
    fn a_token_is_kept_until_five_minutes_before_it_expires() {
        let now = Instant::now();
        let body = br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#;
        match token_answer(200, &HeaderMap::new(), body, now).unwrap() {
            Fetched::Token(t) => {
                assert_eq!(t.token, "ya29.x");
                assert_eq!(t.refresh_at - now, Duration::from_secs(3299));
            }
            Fetched::Busy(o) => panic!("{o:?}"),
        }
        // A short-lived token is kept for half its life, not a negative time.
        let body = br#"{"access_token":"t","expires_in":120}"#;
        match token_answer(200, &HeaderMap::new(), body, now).unwrap() {
            Fetched::Token(t) => assert_eq!(t.refresh_at - now, Duration::from_secs(60)),
            Fetched::Busy(o) => panic!("{o:?}"),
        }
    }

    #[test]
    fn token_endpoint_refusals_and_failures() {
        let refused = br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        match token_answer(400, &HeaderMap::new(), refused, Instant::now()) {
            Err(Error::Unauthorized {
                status: 400,
                reason,
            }) => {
                assert_eq!(reason, "invalid_grant: Invalid JWT Signature.")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a refusal was taken"),
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        match token_answer(503, &headers, b"down", Instant::now()) {
            Ok(Fetched::Busy(Outcome::Retry { after, .. })) => {
                assert_eq!(after, Some(Duration::from_secs(7)))
            }
            _ => panic!("503 is worth a retry"),
        }
        assert!(matches!(
            token_answer(200, &HeaderMap::new(), b"{}", Instant::now()),
            Err(Error::Answer(_))
        ));
    }
}
