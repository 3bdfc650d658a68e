//! APNs token-based authentication (Apple, "Establishing a token-based
//! connection to APNs"): a provider token is a JWT signed with ES256 by the
//! app's `.p8` key, header `{alg: ES256, kid: <key id>}`, claims
//! `{iss: <team id>, iat: <now>}`. Apple refuses a token older than an hour
//! (`ExpiredProviderToken`) and one replaced more often than every 20
//! minutes (`TooManyProviderTokenUpdates`), so one token is shared by every
//! push and replaced after [`TOKEN_REFRESH`].

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use p256::SecretKey;
use serde::Serialize;

use crate::answer::{pem_to_der, unix_seconds};
use crate::{Error, Result};

/// A provider token is replaced when it is this old: inside Apple's window
/// (no more often than every 20 minutes, never older than 60).
pub const TOKEN_REFRESH: Duration = Duration::from_secs(50 * 60);

/// An app's APNs signing key: the `.p8` file Apple hands out once, with the
/// key's id and the developer team's id.
#[derive(Clone)]
pub struct ApnsKey {
    key_id: String,
    team_id: String,
    signing: EncodingKey,
}

impl ApnsKey {
    /// Reads a `.p8` key (PKCS#8 PEM, P-256). `key_id` and `team_id` are
    /// Apple's 10-character identifiers.
    pub fn from_p8(pem: &str, key_id: &str, team_id: &str) -> Result<Self> {
        for (name, id) in [("key id", key_id), ("team id", team_id)] {
            if id.len() != 10 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(Error::Credentials(format!(
                    "an APNs {name} is 10 letters and digits"
                )));
            }
        }
        // Read by p256 and written back: ring (under jsonwebtoken) wants the
        // public key inside the PKCS#8 document, which not every tool writes.
        let secret = pem_to_der(pem, "PRIVATE KEY")
            .and_then(|der| SecretKey::from_pkcs8_der(&der).ok())
            .ok_or_else(|| {
                Error::Credentials(
                    "the APNs key is not a PKCS#8 PEM P-256 private key (.p8)".into(),
                )
            })?;
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| Error::Credentials(format!("APNs key: {e}")))?;
        Ok(ApnsKey {
            key_id: key_id.to_owned(),
            team_id: team_id.to_owned(),
            signing: EncodingKey::from_ec_der(der.as_bytes()),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// A provider token issued at `iat`.
    pub(crate) fn sign(&self, iat: SystemTime) -> Result<String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            iat: u64,
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        // Apple's header is `{alg, kid}` alone.
        header.typ = None;
        jsonwebtoken::encode(
            &header,
            &Claims {
                iss: &self.team_id,
                iat: unix_seconds(iat),
            },
            &self.signing,
        )
        .map_err(|e| Error::Credentials(format!("signing the APNs provider token: {e}")))
    }
}

impl fmt::Debug for ApnsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsKey")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .finish_non_exhaustive()
    }
}

/// The provider token in use and when it was made.
#[derive(Default)]
pub(crate) struct TokenCache {
    current: Mutex<Option<(String, Instant)>>,
}

impl TokenCache {
    /// The token to send: the cached one while younger than
    /// [`TOKEN_REFRESH`], else a new one.
    pub(crate) fn get(&self, key: &ApnsKey, now: Instant, wall: SystemTime) -> Result<String> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, made)) = current.as_ref() {
            if now.saturating_duration_since(*made) < TOKEN_REFRESH {
                return Ok(token.clone());
            }
        }
        let token = key.sign(wall)?;
        *current = Some((token.clone(), now));
        Ok(token)
    }

    /// Forgets `token` if it is still the current one (APNs called it
    /// expired or invalid); a token another push already replaced stays.
    pub(crate) fn invalidate(&self, token: &str) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|(t, _)| t == token) {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::decode_b64url;
    use base64::Engine as _;

    /// A `.p8` as Apple writes it: PKCS#8 in PEM, 64 characters a line.
    fn p8() -> String {
        let der = crate::answer::random_p256_key().to_pkcs8_der().unwrap();
        let base64 = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
        let lines: Vec<&str> = base64
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn the_token_has_apples_header_and_claims() {
        let key = ApnsKey::from_p8(&p8(), "ABC123DEFG", "DEF123GHIJ").unwrap();
        let token = key
            .sign(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&decode_b64url("h", parts[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "ES256", "kid": "ABC123DEFG"})
        );
        let claims: serde_json::Value =
            serde_json::from_slice(&decode_b64url("c", parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"iss": "DEF123GHIJ", "iat": 1_700_000_000})
        );
        // ES256: r || s, 64 bytes.
        assert_eq!(decode_b64url("s", parts[2]).unwrap().len(), 64);
    }

    #[test]
    fn the_token_is_reused_then_replaced_after_fifty_minutes() {
        let key = ApnsKey::from_p8(&p8(), "ABC123DEFG", "DEF123GHIJ").unwrap();
        let cache = TokenCache::default();
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let first = cache.get(&key, t0, wall).unwrap();
        let minute = Duration::from_secs(60);
        assert_eq!(
            cache
                .get(&key, t0 + 49 * minute, wall + 49 * minute)
                .unwrap(),
            first
        );
        let renewed = cache
            .get(&key, t0 + 50 * minute, wall + 50 * minute)
            .unwrap();
        assert_ne!(renewed, first);
        // Invalidating an old token leaves the current one alone.
        cache.invalidate(&first);
        assert_eq!(
            cache
                .get(&key, t0 + 51 * minute, wall + 51 * minute)
                .unwrap(),
            renewed
        );
        cache.invalidate(&renewed);
        assert_ne!(
            cache
                .get(&key, t0 + 51 * minute, wall + 51 * minute)
                .unwrap(),
            renewed
        );
    }

    #[test]
    fn bad_keys_and_ids_are_credential_errors() {
        let pem = p8();
        for (pem, kid, team) in [
            ("not a key", "ABC123DEFG", "DEF123GHIJ"),
            (pem.as_str(), "short", "DEF123GHIJ"),
            (pem.as_str(), "ABC123DEFG", "DEF-23GHIJ"),
        ] {
            let err = ApnsKey::from_p8(pem, kid, team).unwrap_err();
            assert!(matches!(err, Error::Credentials(_)), "{err}");
        }
    }

    #[test]
    fn debug_shows_no_key() {
        let pem = p8();
        let key = ApnsKey::from_p8(&pem, "ABC123DEFG", "DEF123GHIJ").unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("ABC123DEFG"));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!shown.contains(&body[10..40]));
    }
}
