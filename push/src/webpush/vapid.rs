//! VAPID, RFC 8292 ("Voluntary Application Server Identification for Web
//! Push"): the application server signs a JWT (ES256, RFC 7515/7519) whose
//! `aud` is the push service's origin, `exp` at most 24 hours ahead and
//! `sub` a `mailto:` or `https:` contact, and sends it with its public key
//! as `Authorization: vapid t=<JWT>, k=<base64url uncompressed point>`
//! (section 3). A browser subscribes with that public key as its
//! `applicationServerKey`, and the push service then takes pushes for the
//! subscription only when they are signed by the matching private key.

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use p256::SecretKey;
use serde::Serialize;

use crate::answer::{decode_b64url, encode_b64url, random_p256_key};
use crate::{Error, Result};

/// An application server's VAPID key pair (P-256).
#[derive(Clone)]
pub struct VapidKey {
    secret: SecretKey,
    /// The same key as jsonwebtoken (ring) wants it: PKCS#8 with the public
    /// key inside.
    signing: EncodingKey,
    public: [u8; 65],
}

impl VapidKey {
    /// A new key pair from the operating system's generator.
    pub fn generate() -> Self {
        Self::from_secret(random_p256_key()).expect("a freshly generated P-256 key encodes")
    }

    /// A key pair from its private key as stored: the 32-byte scalar in
    /// base64url (with or without padding), the form `web-push` and most
    /// VAPID tools print.
    pub fn from_private_base64url(text: &str) -> Result<Self> {
        let bytes = decode_b64url("VAPID private key", text)
            .map_err(|_| Error::Credentials("the VAPID private key is not base64url".into()))?;
        if bytes.len() != 32 {
            return Err(Error::Credentials(format!(
                "a VAPID private key is 32 bytes, this one {}",
                bytes.len()
            )));
        }
        let secret = SecretKey::from_slice(&bytes).map_err(|_| {
            Error::Credentials("the VAPID private key is not a P-256 scalar".into())
        })?;
        Self::from_secret(secret)
    }

    fn from_secret(secret: SecretKey) -> Result<Self> {
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| Error::Credentials(format!("VAPID key: {e}")))?;
        let public: [u8; 65] = secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .try_into()
            .expect("an uncompressed P-256 point is 65 bytes");
        Ok(VapidKey {
            signing: EncodingKey::from_ec_der(der.as_bytes()),
            secret,
            public,
        })
    }

    /// The private key to store (seal it: it is the app's identity towards
    /// every push service), in the form [`VapidKey::from_private_base64url`]
    /// reads.
    pub fn private_base64url(&self) -> String {
        encode_b64url(&self.secret.to_bytes())
    }

    /// The public key, an uncompressed P-256 point (65 bytes, 0x04 first).
    pub fn public_key(&self) -> &[u8; 65] {
        &self.public
    }

    /// The public key in base64url: what the web SDK passes to
    /// `PushManager.subscribe({ applicationServerKey })`, and the `k` of the
    /// `Authorization` header.
    pub fn application_server_key(&self) -> String {
        encode_b64url(&self.public)
    }

    /// The `Authorization` header value for a push service at `audience`
    /// (an origin, `https://host[:port]`), valid until `expires` (Unix
    /// seconds; RFC 8292 section 2: at most 24 hours ahead).
    pub fn authorization(&self, audience: &str, contact: &str, expires: u64) -> Result<String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            aud: &'a str,
            exp: u64,
            sub: &'a str,
        }
        let jwt = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &Claims {
                aud: audience,
                exp: expires,
                sub: contact,
            },
            &self.signing,
        )
        .map_err(|e| Error::Credentials(format!("signing the VAPID token: {e}")))?;
        Ok(format!(
            "vapid t={jwt}, k={}",
            self.application_server_key()
        ))
    }
}

impl fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.application_server_key())
            .finish_non_exhaustive()
    }
}

/// Checks a VAPID contact: RFC 8292 section 2.1 asks for a `mailto:` or an
/// `https:` URI.
pub(crate) fn check_contact(contact: &str) -> Result<()> {
    let scheme_ok = contact.starts_with("mailto:") || contact.starts_with("https://");
    if !scheme_ok || contact.len() > 256 || contact.chars().any(char::is_control) {
        return Err(Error::invalid(
            "VAPID contact",
            "must be a mailto: or https: URI of at most 256 bytes",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_key_comes_back_the_same() {
        let key = VapidKey::generate();
        let again = VapidKey::from_private_base64url(&key.private_base64url()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(key.public_key()[0], 4);
        assert_eq!(key.application_server_key().len(), 87);
    }

    #[test]
    fn the_rfc_8291_sender_key_gives_its_public_key() {
        let key = VapidKey::from_private_base64url("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")
            .unwrap();
        assert_eq!(
            key.application_server_key(),
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
        );
    }

    #[test]
    fn bad_private_keys_are_credential_errors() {
        for bad in [
            "",
            "AQID",
            "!!!",
            &encode_b64url(&[0u8; 32]),
            &encode_b64url(&[0xff; 32]),
        ] {
            let err = VapidKey::from_private_base64url(bad).unwrap_err();
            assert!(matches!(err, Error::Credentials(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn the_header_has_a_token_and_the_public_key() {
        let key = VapidKey::generate();
        let header = key
            .authorization(
                "https://push.example.net",
                "mailto:ops@example.com",
                2_000_000_000,
            )
            .unwrap();
        let (t, k) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .unwrap();
        assert_eq!(k, key.application_server_key());
        assert_eq!(t.split('.').count(), 3);
    }

    #[test]
    fn debug_shows_no_private_key() {
        let key = VapidKey::generate();
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.application_server_key()));
        assert!(!shown.contains(&key.private_base64url()));
    }

    #[test]
    fn contacts_are_mailto_or_https() {
        assert!(check_contact("mailto:ops@example.com").is_ok());
        assert!(check_contact("https://example.com/contact").is_ok());
        for bad in ["ops@example.com", "http://example.com", "mailto:a\nb", ""] {
            assert!(check_contact(bad).is_err(), "{bad}");
        }
    }
}
