//! Authentication primitives: user tokens (JWTs signed by the customer's backend
//! with an app's signing key) and API keys (backend access, the key names its app).
//!
//! This module exists so that every entry point (WebSocket, gRPC, REST, CLI) checks
//! credentials the same way, and so that each way a token can be wrong has its own
//! stable reason (`TokenError::reason`) that logs, metrics and clients can rely on.
//!
//! Invariants it keeps:
//! - A token is only accepted when its header `alg` is exactly the algorithm of the
//!   key named by its `kid`: `none` (any case) is refused before anything else, and
//!   an HS256 token is never checked against an RSA/EC/Ed public key used as an HMAC
//!   secret (nor the reverse) — the key's type decides, never the token.
//! - Every claim check is done here, explicitly, against a `now` passed in by the
//!   caller; the JWT library only checks the signature.
//! - Clock skew is tolerated by `TokenPolicy::leeway_secs` in both directions
//!   (`exp`, `nbf`, `iat`), and a token may not live longer than
//!   `TokenPolicy::max_lifetime_secs` (plus leeway), whatever its `iat` claims.
//! - No input makes these functions panic: tokens are size-capped, split and decoded
//!   by hand, and all arithmetic on claimed times saturates.
//! - API keys are random (≥ 190 bits), stored only as `hex(sha256(plaintext))`, and
//!   carry their app id in clear so a request can be routed before the lookup.
//! - HS256 secrets are used as the UTF-8 bytes of the secret string, exactly as the
//!   customers' JWT libraries use a string secret.

use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mkondo_proto::ErrorCode;
use rand::{Rng as _, RngCore as _};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// Tokens longer than this are refused unread (`Malformed`); a real one is far smaller.
pub const MAX_TOKEN_LEN: usize = 32 * 1024;

/// The signature algorithms a signing key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    Hs256,
    Rs256,
    Es256,
    EdDsa,
}

impl KeyAlg {
    pub const ALL: [KeyAlg; 4] = [Self::Hs256, Self::Rs256, Self::Es256, Self::EdDsa];

    /// The JOSE name, as it appears in a token header and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// Parses a JOSE name; exact (case-sensitive), as JOSE `alg` values are.
    pub fn parse(s: &str) -> Option<KeyAlg> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One signing key of an app, looked up by the `kid` of a token's header.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub app_id: String,
    pub alg: KeyAlg,
    /// HS256: the shared secret (used as its UTF-8 bytes); others: a PEM public key.
    pub material: String,
}

impl fmt::Debug for SigningKey {
    // The HS256 material is a secret: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("app_id", &self.app_id)
            .field("alg", &self.alg)
            .field("material", &"<redacted>")
            .finish()
    }
}

/// Limits applied to every user token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// The longest a token may live (`exp - iat`), in seconds. Default 24 h.
    pub max_lifetime_secs: i64,
    /// Clock skew tolerated on `exp`, `nbf`, `iat` and the lifetime, in seconds. Default 30.
    pub leeway_secs: i64,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            max_lifetime_secs: 86_400,
            leeway_secs: 30,
        }
    }
}

/// The parts of a token header needed to find its key. Read unverified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    pub kid: String,
    pub alg: String,
}

/// The claims of a verified user token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The `app` claim (equal to the signing key's app).
    pub app_id: String,
    /// The `sub` claim, a valid user id.
    pub user_id: String,
    pub exp: i64,
    pub iat: Option<i64>,
    pub nbf: Option<i64>,
    pub name: Option<String>,
    pub avatar: Option<String>,
    /// Conversation ids the user joins on connect (empty when absent).
    pub groups: Vec<String>,
}

/// Why a token was refused. `reason()` is stable and machine-readable.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm \"none\" is not accepted")]
    AlgNone,
    #[error("the token header has no kid")]
    MissingKid,
    #[error("the token's kid names no known signing key")]
    UnknownKid,
    #[error("the token's algorithm does not match its signing key")]
    AlgMismatch,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no sub claim")]
    MissingSub,
    #[error("the token's sub claim is not a valid user id")]
    InvalidSub,
    #[error("the token has no app claim")]
    MissingApp,
    #[error("the token's app claim does not match its signing key")]
    WrongApp,
    #[error("the token has no exp claim")]
    MissingExp,
    #[error("the token's lifetime exceeds the maximum allowed")]
    LifetimeTooLong,
    #[error("the signing key cannot be used")]
    KeyUnusable,
}

impl TokenError {
    /// The wire error code: `token_expired` (the client should fetch a new token)
    /// for an expired token, `invalid_token` for everything else.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Expired => ErrorCode::TokenExpired,
            _ => ErrorCode::InvalidToken,
        }
    }

    /// A stable snake_case reason, for logs, metrics and error details.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::AlgNone => "alg_none",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::AlgMismatch => "alg_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingSub => "missing_sub",
            Self::InvalidSub => "invalid_sub",
            Self::MissingApp => "missing_app",
            Self::WrongApp => "wrong_app",
            Self::MissingExp => "missing_exp",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::KeyUnusable => "key_unusable",
        }
    }
}

/// Splits a compact JWS into exactly three parts.
fn split_token(token: &str) -> Result<[&str; 3], TokenError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok([h, p, s]),
        _ => Err(TokenError::Malformed),
    }
}

/// Decodes one base64url part into a JSON object.
fn decode_json_object(part: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed),
    }
}

/// Reads the header without verifying anything: rejects alg "none" (any case) and a
/// missing kid. Must not panic on any input.
pub fn peek_header(token: &str) -> Result<TokenHeader, TokenError> {
    let [header, _, _] = split_token(token)?;
    let header = decode_json_object(header)?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(TokenError::Malformed),
    };
    if alg.trim().eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    // RFC 7515 §4.1.11: extensions we do not understand must be refused; we understand none.
    if header.contains_key("crit") {
        return Err(TokenError::Malformed);
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        _ => return Err(TokenError::MissingKid),
    };
    Ok(TokenHeader { kid, alg })
}

/// Builds the verification key for a signing key; `KeyUnusable` when it does not parse.
fn decoding_key(key: &SigningKey) -> Result<DecodingKey, TokenError> {
    let pem = key.material.as_bytes();
    let decoded = match key.alg {
        KeyAlg::Hs256 if key.material.is_empty() => return Err(TokenError::KeyUnusable),
        KeyAlg::Hs256 => Ok(DecodingKey::from_secret(pem)),
        KeyAlg::Rs256 => DecodingKey::from_rsa_pem(pem),
        KeyAlg::Es256 => DecodingKey::from_ec_pem(pem),
        KeyAlg::EdDsa => DecodingKey::from_ed_pem(pem),
    };
    decoded.map_err(|_| TokenError::KeyUnusable)
}

/// Whether a signing key's material parses for its algorithm (checked before storing it).
pub fn key_usable(key: &SigningKey) -> bool {
    decoding_key(key).is_ok()
}

fn map_jwt_error(err: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::AlgMismatch,
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            TokenError::KeyUnusable
        }
        _ => TokenError::Malformed,
    }
}

/// A NumericDate claim: absent or null → `None`; a number → seconds (fractions
/// truncated, out-of-range values saturated); anything else → `Malformed`.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    // `as` saturates at the i64 bounds.
                    Some(f) if f.is_finite() => Ok(Some(f as i64)),
                    _ => Err(TokenError::Malformed),
                }
            }
        }
        Some(_) => Err(TokenError::Malformed),
    }
}

/// An optional string claim: absent or null → `None`; a string → it; else `Malformed`.
fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::Malformed),
    }
}

/// Full verification against the key the caller looked up by kid (the caller maps
/// "no such kid" to `UnknownKid`).
///
/// Checks, in this order: the header (`Malformed`, `AlgNone`, `MissingKid`, and
/// `UnknownKid` if its kid is not `key.kid`); header alg equals key.alg
/// (`AlgMismatch`); signature (`BadSignature`); `app` present (`MissingApp`) and
/// equal to key.app_id (`WrongApp`); `sub` present (`MissingSub`) and a valid user
/// id (`InvalidSub`); `exp` present (`MissingExp`) and `now < exp + leeway`
/// (`Expired`); `nbf` and `iat` not after `now + leeway` (`NotYetValid`); lifetime
/// `exp - min(iat, now)` (`exp - now` when iat is absent) not above
/// `max_lifetime + leeway` (`LifetimeTooLong`). Claims of the wrong JSON type
/// (e.g. a string `exp`, a non-list `groups`) are `Malformed`.
pub fn verify(
    token: &str,
    key: &SigningKey,
    policy: &TokenPolicy,
    now: i64,
) -> Result<TokenClaims, TokenError> {
    let header = peek_header(token)?;
    if header.kid != key.kid {
        return Err(TokenError::UnknownKid);
    }
    if KeyAlg::parse(&header.alg) != Some(key.alg) {
        return Err(TokenError::AlgMismatch);
    }
    let decoding = decoding_key(key)?;
    let leeway = policy.leeway_secs.max(0);

    // The library checks the signature (and that the header alg is the key's); the
    // claims are all checked below, so that each failure has its own error.
    let mut validation = Validation::new(key.alg.jwt_algorithm());
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = leeway.unsigned_abs();
    let data =
        jsonwebtoken::decode::<Value>(token, &decoding, &validation).map_err(map_jwt_error)?;
    let claims = match data.claims {
        Value::Object(map) => map,
        _ => return Err(TokenError::Malformed),
    };

    let app_id = match claims.get("app") {
        None | Some(Value::Null) => return Err(TokenError::MissingApp),
        Some(Value::String(app)) if *app == key.app_id => app.clone(),
        Some(_) => return Err(TokenError::WrongApp),
    };
    let user_id = match claims.get("sub") {
        None | Some(Value::Null) => return Err(TokenError::MissingSub),
        Some(Value::String(sub)) if valid_user_id(sub) => sub.clone(),
        Some(_) => return Err(TokenError::InvalidSub),
    };
    let exp = numeric_date(&claims, "exp")?.ok_or(TokenError::MissingExp)?;
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    let nbf = numeric_date(&claims, "nbf")?;
    let iat = numeric_date(&claims, "iat")?;
    let latest_ok = now.saturating_add(leeway);
    if nbf.is_some_and(|nbf| nbf > latest_ok) || iat.is_some_and(|iat| iat > latest_ok) {
        return Err(TokenError::NotYetValid);
    }
    // A future `iat` (within leeway) must not shorten the lifetime it claims.
    let issued = iat.map_or(now, |iat| iat.min(now));
    if exp.saturating_sub(issued) > policy.max_lifetime_secs.saturating_add(leeway) {
        return Err(TokenError::LifetimeTooLong);
    }

    let name = optional_string(&claims, "name")?;
    let avatar = optional_string(&claims, "avatar")?;
    let groups = match claims.get("groups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|g| g.as_str().map(str::to_owned).ok_or(TokenError::Malformed))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(TokenError::Malformed),
    };

    Ok(TokenClaims {
        app_id,
        user_id,
        exp,
        iat,
        nbf,
        name,
        avatar,
        groups,
    })
}

/// Mints an HS256 token (for `mkondo token`, `POST /v1/tokens`, the dev demo).
/// Claims: sub, app (the key's app), iat=now, exp=now+ttl, optional name, groups
/// (omitted when empty). Header kid is the key's.
///
/// Errors: `KeyUnusable` when the key is not a non-empty HS256 secret, `InvalidSub`
/// for an invalid user id, `Expired` when `ttl_secs` is not positive.
pub fn mint_hs256(
    key: &SigningKey,
    user_id: &str,
    ttl_secs: i64,
    groups: &[String],
    name: Option<&str>,
    now: i64,
) -> Result<String, TokenError> {
    if key.alg != KeyAlg::Hs256 || key.material.is_empty() {
        return Err(TokenError::KeyUnusable);
    }
    if !valid_user_id(user_id) {
        return Err(TokenError::InvalidSub);
    }
    if ttl_secs <= 0 {
        return Err(TokenError::Expired);
    }
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::from(user_id));
    claims.insert("app".into(), Value::from(key.app_id.as_str()));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now.saturating_add(ttl_secs)));
    if let Some(name) = name {
        claims.insert("name".into(), Value::from(name));
    }
    if !groups.is_empty() {
        claims.insert("groups".into(), Value::from(groups.to_vec()));
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(
        &header,
        &Value::Object(claims),
        &EncodingKey::from_secret(key.material.as_bytes()),
    )
    .map_err(|_| TokenError::KeyUnusable)
}

/// A user id: 1–128 characters of `[A-Za-z0-9._@:-]`.
pub fn valid_user_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b':' | b'-'))
}

/// A new signing key id: `k_` and 16 random lowercase hex characters.
pub fn new_kid() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("k_{}", hex::encode(bytes))
}

/// A new HS256 secret: 32 random bytes, base64url without padding (43 characters).
pub fn new_hs256_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

const API_KEY_PREFIX: &str = "mk_";
const API_KEY_SECRET_LEN: usize = 32;
/// How many characters of the random part the display prefix shows.
const API_KEY_PREFIX_SECRET_CHARS: usize = 8;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly made API key: the plaintext is shown once, only the hash is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub plaintext: String,
    /// `hex(sha256(plaintext))`.
    pub hash: String,
    /// `mk_<app_id>_` and the first 8 random characters: enough to tell an app's
    /// keys apart when listing or revoking them, useless to authenticate.
    pub prefix: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("plaintext", &"<redacted>")
            .field("hash", &self.hash)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Makes an API key `mk_<app_id>_<32 random base62 characters>` (≈ 190 bits).
pub fn new_api_key(app_id: &str) -> NewApiKey {
    let mut rng = rand::rng();
    let secret: String = (0..API_KEY_SECRET_LEN)
        .map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())]))
        .collect();
    let plaintext = format!("{API_KEY_PREFIX}{app_id}_{secret}");
    let prefix = format!(
        "{API_KEY_PREFIX}{app_id}_{}",
        &secret[..API_KEY_PREFIX_SECRET_CHARS]
    );
    NewApiKey {
        hash: hash_api_key(&plaintext),
        plaintext,
        prefix,
    }
}

/// The stored form of an API key: `hex(sha256(plaintext))`.
pub fn hash_api_key(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// The app id an API key names; `None` when the string is not of our format.
pub fn api_key_app(plaintext: &str) -> Option<&str> {
    let rest = plaintext.strip_prefix(API_KEY_PREFIX)?;
    let (app, secret) = rest.rsplit_once('_')?;
    let secret_ok =
        secret.len() == API_KEY_SECRET_LEN && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    (secret_ok && !app.is_empty()).then_some(app)
}

/// Whether a bearer credential is an API key rather than a user token (JWTs start
/// with base64url of `{`, never with `mk_`).
pub fn looks_like_api_key(bearer: &str) -> bool {
    bearer.starts_with(API_KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RSA_PRIVATE: &str = include_str!("../tests/fixtures/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("../tests/fixtures/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("../tests/fixtures/ec_private.pem");
    const EC_PUBLIC: &str = include_str!("../tests/fixtures/ec_public.pem");
    const ED_PRIVATE: &str = include_str!("../tests/fixtures/ed25519_private.pem");
    const ED_PUBLIC: &str = include_str!("../tests/fixtures/ed25519_public.pem");

    const NOW: i64 = 1_700_000_000;
    const SECRET: &str = "test-secret-0123456789abcdef";

    fn policy() -> TokenPolicy {
        TokenPolicy::default()
    }

    fn key(alg: KeyAlg, material: &str) -> SigningKey {
        SigningKey {
            kid: "k_test".into(),
            app_id: "app1".into(),
            alg,
            material: material.into(),
        }
    }

    fn hs_key() -> SigningKey {
        key(KeyAlg::Hs256, SECRET)
    }

    fn claims() -> Value {
        json!({ "sub": "alice", "app": "app1", "iat": NOW, "exp": NOW + 3600 })
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    /// Signs arbitrary claims with jsonwebtoken, header `{alg, kid: "k_test"}`.
    fn sign(alg: Algorithm, enc: &EncodingKey, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some("k_test".into());
        jsonwebtoken::encode(&header, claims, enc).unwrap()
    }

    fn sign_hs(claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            claims,
        )
    }

    /// A token with a hand-made header, HMAC-signed with SECRET.
    fn sign_raw_header(header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", b64(header), b64(claims));
        let enc = EncodingKey::from_secret(SECRET.as_bytes());
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &enc, Algorithm::HS256).unwrap();
        format!("{message}.{sig}")
    }

    fn check(token: &str) -> Result<TokenClaims, TokenError> {
        verify(token, &hs_key(), &policy(), NOW)
    }

    #[test]
    fn valid_hs256() {
        let got = check(&sign_hs(&claims())).unwrap();
        assert_eq!(
            got,
            TokenClaims {
                app_id: "app1".into(),
                user_id: "alice".into(),
                exp: NOW + 3600,
                iat: Some(NOW),
                nbf: None,
                name: None,
                avatar: None,
                groups: vec![],
            }
        );
    }

    #[test]
    fn valid_asymmetric_tokens() {
        let cases = [
            (
                KeyAlg::Rs256,
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
                RSA_PUBLIC,
            ),
            (
                KeyAlg::Es256,
                Algorithm::ES256,
                EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
                EC_PUBLIC,
            ),
            (
                KeyAlg::EdDsa,
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
                ED_PUBLIC,
            ),
        ];
        for (alg, jwt_alg, enc, public) in cases {
            let k = key(alg, public);
            assert!(key_usable(&k), "{alg}");
            let full = with(
                with(claims(), "name", json!("Alice")),
                "avatar",
                json!("https://example.invalid/a.png"),
            );
            let token = sign(jwt_alg, &enc, &full);
            assert_eq!(peek_header(&token).unwrap().alg, alg.as_str());
            let got = verify(&token, &k, &policy(), NOW).unwrap();
            assert_eq!(got.user_id, "alice");
            assert_eq!(got.name.as_deref(), Some("Alice"));
            assert_eq!(got.avatar.as_deref(), Some("https://example.invalid/a.png"));

            // Tampered payload: same header and signature, other user.
            let parts: Vec<&str> = token.split('.').collect();
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                b64(&with(claims(), "sub", json!("mallory"))),
                parts[2]
            );
            assert_eq!(
                verify(&forged, &k, &policy(), NOW),
                Err(TokenError::BadSignature),
                "{alg}"
            );
        }
    }

    #[test]
    fn foreign_and_tampered_signatures() {
        // The Ed25519 token checked against an EC key: type mismatch at key level.
        let enc = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
        let token = sign(Algorithm::EdDSA, &enc, &claims());
        assert_eq!(
            verify(&token, &key(KeyAlg::Es256, EC_PUBLIC), &policy(), NOW),
            Err(TokenError::AlgMismatch)
        );
        // A well-formed ES256 token whose signature bytes were altered.
        let other = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        let token = sign(Algorithm::ES256, &other, &claims());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
        sig[10] ^= 0x55;
        parts[2] = URL_SAFE_NO_PAD.encode(sig);
        assert_eq!(
            verify(
                &parts.join("."),
                &key(KeyAlg::Es256, EC_PUBLIC),
                &policy(),
                NOW
            ),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn bad_signature_wrong_secret() {
        let token = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"another secret"),
            &claims(),
        );
        assert_eq!(check(&token), Err(TokenError::BadSignature));
        // Signature stripped.
        let stripped = token.rsplit_once('.').unwrap().0.to_owned() + ".";
        assert_eq!(check(&stripped), Err(TokenError::BadSignature));
    }

    #[test]
    fn alg_none_rejected() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let token = format!(
                "{}.{}.",
                b64(&json!({ "alg": alg, "kid": "k_test" })),
                b64(&claims())
            );
            assert_eq!(peek_header(&token), Err(TokenError::AlgNone), "{alg}");
            assert_eq!(check(&token), Err(TokenError::AlgNone), "{alg}");
        }
    }

    #[test]
    fn alg_key_confusion_rejected() {
        // HS256 token against an RS256 key.
        let token = sign_hs(&claims());
        assert_eq!(
            verify(&token, &key(KeyAlg::Rs256, RSA_PUBLIC), &policy(), NOW),
            Err(TokenError::AlgMismatch)
        );
        // The classic confusion: HMAC-signed with the public PEM as the secret.
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            &claims(),
        );
        assert_eq!(
            verify(&forged, &key(KeyAlg::Rs256, RSA_PUBLIC), &policy(), NOW),
            Err(TokenError::AlgMismatch)
        );
        // RS256 token against an HS256 key.
        let enc = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let token = sign(Algorithm::RS256, &enc, &claims());
        assert_eq!(check(&token), Err(TokenError::AlgMismatch));
        // Algorithms we do not support at all.
        for alg in ["HS512", "RS512", "hs256", "PS256", "whatever"] {
            let token = sign_raw_header(&json!({ "alg": alg, "kid": "k_test" }), &claims());
            assert_eq!(check(&token), Err(TokenError::AlgMismatch), "{alg}");
        }
    }

    #[test]
    fn missing_kid() {
        let no_kid = sign_raw_header(&json!({ "alg": "HS256", "typ": "JWT" }), &claims());
        assert_eq!(peek_header(&no_kid), Err(TokenError::MissingKid));
        assert_eq!(check(&no_kid), Err(TokenError::MissingKid));
        for kid in [json!(""), json!(7), json!(null)] {
            let token = sign_raw_header(&json!({ "alg": "HS256", "kid": kid }), &claims());
            assert_eq!(peek_header(&token), Err(TokenError::MissingKid));
        }
        let token = sign_hs(&claims());
        assert_eq!(
            peek_header(&token),
            Ok(TokenHeader {
                kid: "k_test".into(),
                alg: "HS256".into()
            })
        );
        // A key that is not the one the header names.
        let mut other = hs_key();
        other.kid = "k_other".into();
        assert_eq!(
            verify(&token, &other, &policy(), NOW),
            Err(TokenError::UnknownKid)
        );
    }

    #[test]
    fn expiry_and_leeway() {
        let at = |exp: i64| check(&sign_hs(&with(claims(), "exp", json!(exp))));
        assert!(at(NOW - 10).is_ok(), "within leeway");
        assert!(at(NOW - 29).is_ok(), "within leeway");
        assert_eq!(at(NOW - 30), Err(TokenError::Expired));
        assert_eq!(at(NOW - 31), Err(TokenError::Expired));
        assert_eq!(at(NOW - 3600), Err(TokenError::Expired));
        assert_eq!(at(i64::MIN), Err(TokenError::Expired));
        assert_eq!(TokenError::Expired.code(), ErrorCode::TokenExpired);
        assert_eq!(TokenError::BadSignature.code(), ErrorCode::InvalidToken);
        // Fractional NumericDate is accepted.
        assert_eq!(at(0), Err(TokenError::Expired));
        let frac = check(&sign_hs(&with(claims(), "exp", json!(NOW as f64 + 60.5)))).unwrap();
        assert_eq!(frac.exp, NOW + 60);
    }

    #[test]
    fn not_yet_valid() {
        let nbf = |nbf: i64| check(&sign_hs(&with(claims(), "nbf", json!(nbf))));
        assert_eq!(nbf(NOW + 31), Err(TokenError::NotYetValid));
        assert_eq!(nbf(NOW + 600), Err(TokenError::NotYetValid));
        assert_eq!(nbf(NOW + 30).unwrap().nbf, Some(NOW + 30));
        assert!(nbf(NOW - 100).is_ok());
        // An iat in the future beyond leeway is as suspicious as an nbf.
        let iat = check(&sign_hs(&with(claims(), "iat", json!(NOW + 600))));
        assert_eq!(iat, Err(TokenError::NotYetValid));
    }

    #[test]
    fn missing_and_invalid_sub() {
        assert_eq!(
            check(&sign_hs(&without(claims(), "sub"))),
            Err(TokenError::MissingSub)
        );
        assert_eq!(
            check(&sign_hs(&with(claims(), "sub", json!(null)))),
            Err(TokenError::MissingSub)
        );
        let long = "a".repeat(129);
        for bad in [
            json!("al ice"),
            json!(""),
            json!(long),
            json!("alice/bob"),
            json!("émile"),
            json!(42),
        ] {
            assert_eq!(
                check(&sign_hs(&with(claims(), "sub", bad.clone()))),
                Err(TokenError::InvalidSub),
                "{bad}"
            );
        }
        let ok = "a".repeat(128);
        assert_eq!(
            check(&sign_hs(&with(claims(), "sub", json!(ok))))
                .unwrap()
                .user_id,
            ok
        );
    }

    #[test]
    fn missing_and_wrong_app() {
        assert_eq!(
            check(&sign_hs(&without(claims(), "app"))),
            Err(TokenError::MissingApp)
        );
        assert_eq!(
            check(&sign_hs(&with(claims(), "app", json!("app2")))),
            Err(TokenError::WrongApp)
        );
        assert_eq!(
            check(&sign_hs(&with(claims(), "app", json!(["app1"])))),
            Err(TokenError::WrongApp)
        );
    }

    #[test]
    fn missing_exp() {
        assert_eq!(
            check(&sign_hs(&without(claims(), "exp"))),
            Err(TokenError::MissingExp)
        );
        assert_eq!(
            check(&sign_hs(&with(claims(), "exp", json!("tomorrow")))),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn lifetime() {
        let max = policy().max_lifetime_secs;
        let at = |c: Value| check(&sign_hs(&c));
        assert!(at(with(claims(), "exp", json!(NOW + max + 30))).is_ok());
        assert_eq!(
            at(with(claims(), "exp", json!(NOW + max + 31))),
            Err(TokenError::LifetimeTooLong)
        );
        // Without iat the lifetime counts from now.
        let no_iat = without(claims(), "iat");
        assert!(at(with(no_iat.clone(), "exp", json!(NOW + max))).is_ok());
        assert_eq!(
            at(with(no_iat, "exp", json!(NOW + 10 * max))),
            Err(TokenError::LifetimeTooLong)
        );
        // An old iat: the token's whole lifetime counts.
        let old = with(claims(), "iat", json!(NOW - max));
        assert_eq!(
            at(with(old, "exp", json!(NOW + 3600))),
            Err(TokenError::LifetimeTooLong)
        );
        // A future iat (within leeway) does not stretch the allowance.
        let future = with(claims(), "iat", json!(NOW + 30));
        assert_eq!(
            at(with(future, "exp", json!(NOW + max + 45))),
            Err(TokenError::LifetimeTooLong)
        );
        // Extreme values saturate instead of overflowing.
        assert_eq!(
            at(with(claims(), "exp", json!(u64::MAX))),
            Err(TokenError::LifetimeTooLong)
        );
        assert_eq!(
            at(with(claims(), "iat", json!(i64::MIN))),
            Err(TokenError::LifetimeTooLong)
        );
        let strict = TokenPolicy {
            max_lifetime_secs: 60,
            leeway_secs: 0,
        };
        let token = sign_hs(&claims());
        assert_eq!(
            verify(&token, &hs_key(), &strict, NOW),
            Err(TokenError::LifetimeTooLong)
        );
    }

    #[test]
    fn claim_types() {
        let got = check(&sign_hs(&with(claims(), "groups", json!(["g1", "g2"])))).unwrap();
        assert_eq!(got.groups, vec!["g1".to_owned(), "g2".to_owned()]);
        for (name, bad) in [
            ("groups", json!("g1")),
            ("groups", json!([1])),
            ("name", json!(5)),
            ("avatar", json!({})),
            ("nbf", json!("x")),
            ("iat", json!(true)),
        ] {
            assert_eq!(
                check(&sign_hs(&with(claims(), name, bad))),
                Err(TokenError::Malformed),
                "{name}"
            );
        }
        // Unknown claims are ignored, including an audience.
        assert!(check(&sign_hs(&with(claims(), "aud", json!("someone")))).is_ok());
        // Non-object payloads.
        for payload in [json!([1, 2]), json!("x"), json!(null)] {
            assert_eq!(check(&sign_hs(&payload)), Err(TokenError::Malformed));
        }
        // Critical header extensions are refused.
        let crit = sign_raw_header(
            &json!({ "alg": "HS256", "kid": "k_test", "crit": ["exp"] }),
            &claims(),
        );
        assert_eq!(check(&crit), Err(TokenError::Malformed));
    }

    #[test]
    fn garbage_inputs() {
        let valid = sign_hs(&claims());
        let parts: Vec<&str> = valid.split('.').collect();
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        let huge_dots = format!("{}.{}.{}", parts[0], "A".repeat(MAX_TOKEN_LEN), parts[2]);
        let garbage = [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "a".into(),
            "a.b".into(),
            "a.b.c".into(),
            "a.b.c.d.e".into(),
            "!!!.???.***".into(),
            format!("{valid}.x"),
            format!("{}.{}", parts[0], parts[1]),
            format!("{}..{}", parts[0], parts[2]),
            format!(".{}.{}", parts[1], parts[2]),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}", b64(&json!("str")), parts[1], parts[2]),
            format!("{}.{}.{}", b64(&json!([])), parts[1], parts[2]),
            format!("{}.{}.{}", b64(&json!({ "kid": "k" })), parts[1], parts[2]),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
                parts[1],
                parts[2]
            ),
            format!("{}.%%%.{}", parts[0], parts[2]),
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(b"not json"),
                parts[2]
            ),
            huge,
            huge_dots,
            "\u{0}\u{0}.\u{0}.\u{0}".into(),
            "ü.ß.€".into(),
        ];
        for token in &garbage {
            let shown: String = token.chars().take(40).collect();
            assert!(check(token).is_err(), "{shown}");
            for alg in KeyAlg::ALL {
                let material = match alg {
                    KeyAlg::Hs256 => SECRET,
                    KeyAlg::Rs256 => RSA_PUBLIC,
                    KeyAlg::Es256 => EC_PUBLIC,
                    KeyAlg::EdDsa => ED_PUBLIC,
                };
                assert!(verify(token, &key(alg, material), &policy(), NOW).is_err());
            }
        }
        assert_eq!(peek_header(""), Err(TokenError::Malformed));
        assert_eq!(peek_header("a.b.c.d.e"), Err(TokenError::Malformed));
        assert_eq!(check("a.b"), Err(TokenError::Malformed));
        // The signature is checked before the payload is read.
        assert_eq!(
            check(&format!("{}.%%%.{}", parts[0], parts[2])),
            Err(TokenError::BadSignature)
        );
        // A correctly signed payload that is not base64url JSON.
        let message = format!("{}.%%%", parts[0]);
        let enc = EncodingKey::from_secret(SECRET.as_bytes());
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &enc, Algorithm::HS256).unwrap();
        assert_eq!(
            check(&format!("{message}.{sig}")),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn unusable_keys() {
        let token = sign_hs(&claims());
        assert_eq!(
            verify(&token, &key(KeyAlg::Hs256, ""), &policy(), NOW),
            Err(TokenError::KeyUnusable)
        );
        for (alg, material) in [
            (KeyAlg::Rs256, "not a pem"),
            (KeyAlg::Rs256, EC_PUBLIC),
            (KeyAlg::Es256, RSA_PUBLIC),
            (
                KeyAlg::Es256,
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            ),
            (KeyAlg::EdDsa, EC_PUBLIC),
            (KeyAlg::EdDsa, ""),
        ] {
            let k = key(alg, material);
            assert!(!key_usable(&k), "{alg}");
            let header = json!({ "alg": alg.as_str(), "kid": "k_test" });
            let token = format!("{}.{}.AAAA", b64(&header), b64(&claims()));
            assert_eq!(
                verify(&token, &k, &policy(), NOW),
                Err(TokenError::KeyUnusable),
                "{alg}"
            );
        }
        assert!(key_usable(&hs_key()));
        assert!(!format!("{:?}", hs_key()).contains(SECRET));
    }

    #[test]
    fn mint_round_trip() {
        let groups = vec!["general".to_owned(), "random".to_owned()];
        let token = mint_hs256(&hs_key(), "alice", 600, &groups, Some("Alice"), NOW).unwrap();
        assert_eq!(peek_header(&token).unwrap().kid, "k_test");
        let got = check(&token).unwrap();
        assert_eq!(
            got,
            TokenClaims {
                app_id: "app1".into(),
                user_id: "alice".into(),
                exp: NOW + 600,
                iat: Some(NOW),
                nbf: None,
                name: Some("Alice".into()),
                avatar: None,
                groups,
            }
        );
        // Groups omitted when empty, name when None.
        let token = mint_hs256(&hs_key(), "bob", 60, &[], None, NOW).unwrap();
        let payload = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap();
        let payload: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            payload,
            json!({ "sub": "bob", "app": "app1", "iat": NOW, "exp": NOW + 60 })
        );
        // Expires like any other token.
        assert_eq!(
            verify(&token, &hs_key(), &policy(), NOW + 90),
            Err(TokenError::Expired)
        );
        // A minted token with a too-long ttl is refused by verify.
        let long = mint_hs256(&hs_key(), "bob", 2 * 86_400, &[], None, NOW).unwrap();
        assert_eq!(check(&long), Err(TokenError::LifetimeTooLong));

        assert_eq!(
            mint_hs256(&key(KeyAlg::Rs256, RSA_PUBLIC), "a", 60, &[], None, NOW),
            Err(TokenError::KeyUnusable)
        );
        assert_eq!(
            mint_hs256(&key(KeyAlg::Hs256, ""), "a", 60, &[], None, NOW),
            Err(TokenError::KeyUnusable)
        );
        assert_eq!(
            mint_hs256(&hs_key(), "a b", 60, &[], None, NOW),
            Err(TokenError::InvalidSub)
        );
        assert_eq!(
            mint_hs256(&hs_key(), "a", 0, &[], None, NOW),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn user_ids() {
        for ok in ["a", "alice", "A.b_c@d:e-f", "0", "z".repeat(128).as_str()] {
            assert!(valid_user_id(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "a\n",
            "é",
            "a+b",
            "a#",
            "z".repeat(129).as_str(),
        ] {
            assert!(!valid_user_id(bad), "{bad}");
        }
    }

    #[test]
    fn generated_identifiers() {
        let kid = new_kid();
        assert_eq!(kid.len(), 18);
        assert!(kid.starts_with("k_"));
        assert!(kid[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(new_kid(), kid);

        let secret = new_hs256_secret();
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 32);
        assert_ne!(new_hs256_secret(), secret);
        // A generated secret works end to end.
        let k = key(KeyAlg::Hs256, &secret);
        let token = mint_hs256(&k, "alice", 60, &[], None, NOW).unwrap();
        assert!(verify(&token, &k, &policy(), NOW).is_ok());
    }

    #[test]
    fn api_keys() {
        let k = new_api_key("app1");
        assert!(k.plaintext.starts_with("mk_app1_"));
        assert_eq!(k.plaintext.len(), "mk_app1_".len() + 32);
        assert_eq!(k.hash, hash_api_key(&k.plaintext));
        assert_eq!(k.hash.len(), 64);
        assert!(k.plaintext.starts_with(&k.prefix));
        assert_eq!(k.prefix.len(), "mk_app1_".len() + 8);
        assert!(!format!("{k:?}").contains(&k.plaintext));
        assert_eq!(api_key_app(&k.plaintext), Some("app1"));
        assert!(looks_like_api_key(&k.plaintext));

        let other = new_api_key("app1");
        assert_ne!(other.plaintext, k.plaintext);
        assert_ne!(other.prefix, k.prefix);
        assert_ne!(other.hash, k.hash);

        // Known vector: sha256("abc").
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );

        // App ids with underscores still parse (the random part never has one).
        let odd = new_api_key("my_app");
        assert_eq!(api_key_app(&odd.plaintext), Some("my_app"));

        for bad in [
            "",
            "mk_",
            "mk_app1",
            "mk__0123456789abcdef0123456789abcdef",
            "mk_app1_short",
            "mk_app1_0123456789abcdef0123456789abcde!",
            "xk_app1_0123456789abcdef0123456789abcdef",
            "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        ] {
            assert_eq!(api_key_app(bad), None, "{bad}");
        }
        assert!(!looks_like_api_key(&sign_hs(&claims())));
        assert!(!looks_like_api_key(""));
    }

    #[test]
    fn names_and_reasons() {
        for alg in KeyAlg::ALL {
            assert_eq!(KeyAlg::parse(alg.as_str()), Some(alg));
        }
        assert_eq!(KeyAlg::parse("EdDSA"), Some(KeyAlg::EdDsa));
        assert_eq!(KeyAlg::parse("hs256"), None);
        assert_eq!(KeyAlg::parse("none"), None);
        let all = [
            TokenError::Malformed,
            TokenError::AlgNone,
            TokenError::MissingKid,
            TokenError::UnknownKid,
            TokenError::AlgMismatch,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::MissingSub,
            TokenError::InvalidSub,
            TokenError::MissingApp,
            TokenError::WrongApp,
            TokenError::MissingExp,
            TokenError::LifetimeTooLong,
            TokenError::KeyUnusable,
        ];
        let reasons: HashSet<_> = all.iter().map(TokenError::reason).collect();
        assert_eq!(reasons.len(), all.len());
        assert!(reasons
            .iter()
            .all(|r| r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        assert_eq!(TokenError::AlgNone.reason(), "alg_none");
        assert_eq!(TokenError::LifetimeTooLong.reason(), "lifetime_too_long");
    }
}
