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
//!   `TokenPolicy::max_lifetime_secs` (plus leeway), whatever its `iat` claims:
//!   without `iat`, counted from now. Both are clamped (at most 30 days, 5 minutes).
//! - A new HS256 secret has at least 32 bytes (`key_usable`).
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
use mkondo_proto::{ErrorCode, Reason};
use rand::{Rng as _, RngCore as _};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// Tokens longer than this are refused unread (`Malformed`); a real one is far smaller.
pub const MAX_TOKEN_LEN: usize = 32 * 1024;
/// The shortest HS256 secret accepted for a new signing key (RFC 7518 §3.2: a
/// key of at least the hash's size, 256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// The longest a token may live, whatever the policy says: 30 days.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 30 * 86_400;
/// The most clock skew a policy may tolerate: 5 minutes.
pub const MAX_LEEWAY_SECS: i64 = 300;

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

/// Limits applied to every user token. `verify` clamps them: the lifetime to
/// 1 s – `MAX_TOKEN_LIFETIME_SECS`, the leeway to 0 – `MAX_LEEWAY_SECS`.
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

impl TokenClaims {
    /// `exp` in unix milliseconds, saturating at the `i64` bounds.
    pub fn expires_at_ms(&self) -> i64 {
        self.exp.saturating_mul(1000)
    }

    /// `iat` in unix milliseconds (0 without one: issued before any revocation
    /// point), saturating at the `i64` bounds.
    pub fn issued_at_ms(&self) -> i64 {
        self.iat.unwrap_or(0).saturating_mul(1000)
    }
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

    /// The stable reason on the wire (`bad_signature`, ...), for clients and logs.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Malformed => Reason::Malformed,
            Self::AlgNone => Reason::AlgNone,
            Self::MissingKid => Reason::MissingKid,
            Self::UnknownKid => Reason::UnknownKid,
            Self::AlgMismatch => Reason::AlgMismatch,
            Self::BadSignature => Reason::BadSignature,
            Self::Expired => Reason::Expired,
            Self::NotYetValid => Reason::NotYetValid,
            Self::MissingSub => Reason::MissingSub,
            Self::InvalidSub => Reason::InvalidSub,
            Self::MissingApp => Reason::MissingApp,
            Self::WrongApp => Reason::WrongApp,
            Self::MissingExp => Reason::MissingExp,
            Self::LifetimeTooLong => Reason::LifetimeTooLong,
            Self::KeyUnusable => Reason::KeyUnusable,
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

/// Whether a key may be stored as a new signing key: its material parses for
/// its algorithm, and an HS256 secret has at least `MIN_HS256_SECRET_BYTES`.
/// (A shorter HS256 key stored before this rule still verifies: refusing it
/// would log every user out at an upgrade; the operator rotates it.)
pub fn key_usable(key: &SigningKey) -> bool {
    if key.alg == KeyAlg::Hs256 && key.material.len() < MIN_HS256_SECRET_BYTES {
        return false;
    }
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
    // Whatever the policy says, within sane bounds (see `TokenPolicy`).
    let leeway = policy.leeway_secs.clamp(0, MAX_LEEWAY_SECS);
    let max_lifetime = policy.max_lifetime_secs.clamp(1, MAX_TOKEN_LIFETIME_SECS);

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
    if exp.saturating_sub(issued) > max_lifetime.saturating_add(leeway) {
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
mod tests;
